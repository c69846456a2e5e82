"""What an adaptive sweep's rounds cost the collector itself, over a large input: reading the
input, reading back the outputs, writing the race's record.

    .venv/bin/python benchmarks/adaptive_rounds.py                         # 100,000 tasks, rounds of 20
    .venv/bin/python benchmarks/adaptive_rounds.py --tasks 10000 --max-rounds 0

No servers: the real ``AdaptiveSweep`` drives the real ``Collector`` and lanes (three
variants, files on disk), but a rollout is answered in-process (``InstantClient``: a reward
of 0 or 1 from the task's index, the same for every variant, so the race never ends early:
``best`` at margin 0 cannot tell identical variants apart, and runs until the tasks run out
or ``--max-rounds`` rounds are done). So the time is the collector's own per-round work.
Input reading is timed around ``collect.collector.read_tasks`` (what each lane's jobs read)
and, where it exists, ``files.TaskIndex`` (the one-pass index and each round's reads); the
outputs' read-back around ``_Rewards.task_rewards``; the record around ``AdaptiveSweep.write``
(and, where it exists, the journal's per-round append with the record's rewrites when due
around ``AdaptiveSweep._append``).
It runs against whichever ``nemo_gym_cli`` ``--root`` holds (default: this checkout), so the
same script measures a before and an after.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--tasks", type=int, default=100_000)
parser.add_argument("--round-tasks", type=int, default=20)
parser.add_argument("--max-rounds", type=int, default=0, help="stop after this many rounds (0: every round)")
parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="the checkout to time")
args = parser.parse_args()
sys.path.insert(0, str(args.root))

from nemo_gym_cli.collect import adaptive, collector, files  # noqa: E402
from nemo_gym_cli.collect.adaptive import AdaptiveSweep  # noqa: E402
from nemo_gym_cli.collect.collector import Collector  # noqa: E402
from nemo_gym_cli.collect.metrics import Progress  # noqa: E402
from nemo_gym_cli.collect.options import CollectOptions  # noqa: E402
from nemo_gym_cli.collect.run import lanes_of  # noqa: E402

spent: defaultdict[str, float] = defaultdict(float)


def timed(what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*a: Any, **k: Any) -> Any:
        started = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[what] += time.perf_counter() - started

    return wrapper


def timed_iter(what: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """A generator function whose every step counts (the lanes read the input lazily)."""

    def wrapper(*a: Any, **k: Any) -> Any:
        it = fn(*a, **k)
        while True:
            started = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                spent[what] += time.perf_counter() - started
            yield item

    return wrapper


collector.read_tasks = timed_iter("input", collector.read_tasks)  # type: ignore[assignment]
if hasattr(files, "TaskIndex"):
    files.TaskIndex.__init__ = timed("input", files.TaskIndex.__init__)  # type: ignore[method-assign]
    files.TaskIndex.read = timed("input", files.TaskIndex.read)  # type: ignore[method-assign]
adaptive._Rewards.task_rewards = timed("outputs", adaptive._Rewards.task_rewards)  # type: ignore[method-assign]
AdaptiveSweep.write = timed("record", AdaptiveSweep.write)  # type: ignore[method-assign]
if hasattr(AdaptiveSweep, "_append"):  # the journal's append, and the record's rewrite when due
    AdaptiveSweep._append = timed("journal", AdaptiveSweep._append)  # type: ignore[method-assign]


class InstantClient:
    """Answers every rollout at once: reward 1 on tasks whose index is odd."""

    async def post(self, url: str, payload: Any) -> Any:
        return {"reward": float(payload["_ng_task_index"] % 2), "response": {"output": []}}

    async def get(self, url: str) -> Any:
        return {}


def generate(path: Path, n: int) -> None:
    with path.open("wb") as f:
        for i in range(n):
            question = f"What is {i} + {2 * i}? Give the answer in \\boxed{{}}."
            f.write(
                orjson.dumps(
                    {
                        "responses_create_params": {"input": [{"role": "user", "content": question}]},
                        "question": question,
                        "expected_answer": str(3 * i),
                    }
                )
                + b"\n"
            )


async def main(folder: Path) -> None:
    problems = folder / "problems.jsonl"
    generate(problems, args.tasks)
    opts = CollectOptions.from_config(
        {
            "input_jsonl_fpath": str(problems),
            "output_jsonl_fpath": str(folder / "race.jsonl"),
            "agent_name": "bench",
            "models": ["a/one", "b/two", "c/three"],
            "adaptive": True,
            "objective": "best",
            "margin": 0.0,
            "round_tasks": args.round_tasks,
            "concurrency": 30,
        }
    )
    lanes = lanes_of(opts)
    stop = asyncio.Event()
    coll = Collector(
        opts, {"bench": "http://127.0.0.1:9"}, InstantClient(), stop, Progress(3600.0), restart_hint="", lanes=lanes
    )
    coll.prepare_output(args.tasks)
    sweep = AdaptiveSweep(opts, lanes, args.tasks, lambda line: None)
    sweep.load()
    if args.max_rounds:
        write = sweep.write

        def write_and_stop() -> None:
            write()
            if len(sweep.rounds) >= args.max_rounds:
                stop.set()  # the next round starts no rollout, and the sweep returns

        sweep.write = write_and_stop  # type: ignore[method-assign]
    started = time.perf_counter()
    await sweep.run(coll)
    wall = time.perf_counter() - started
    rounds = len(sweep.rounds)
    print(
        f"{args.tasks:,} tasks, rounds of {args.round_tasks}, 3 variants, root {args.root}: {rounds} rounds "
        f"({sweep.race.ended or 'stopped'}) in {wall:.1f} s ({wall / max(rounds, 1) * 1000:.1f} ms a round); "
        f"reading the input {spent['input']:.2f} s ({spent['input'] / max(rounds, 1) * 1000:.2f} ms a round), "
        f"the outputs {spent['outputs']:.2f} s, writing the record {spent['record']:.2f} s, journal and record "
        f"{spent['journal']:.2f} s "
        f"(adaptive.json {sweep.path.stat().st_size / 1e6:.1f} MB)",
        flush=True,
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
