"""``ng reverify`` on a 10,000-row output: rows re-scored per second, against the environment's
own verify speed.

    .venv/bin/python benchmarks/reverify.py             # mcqa, math, the shop: 10,000 rows each
    .venv/bin/python benchmarks/reverify.py --rows 2000 --env mcqa --env multi_step_tools

Each output is written as the collector writes one (task fields, a recorded ``response``, a
``reward``, the stamps), from the shipped mcqa questions cycled and from freshly generated
math problems, half with the right reply and half with a wrong one. ``ng reverify`` then runs
as a user runs it (a process, ``+config_paths``: it starts the resources server alone) and its
``<stem>_reverify.json`` gives the rows/s; the wall time of the whole command (start-up
included) is printed beside. mcqa's verify costs microseconds, so its figure is the HTTP
round trips' (``/seed_session`` + ``/verify`` a row); math's verify is math-verify in the
server's offload pool, which bounds it: compare with ``benchmarks/verify.py``'s
``math: POST /verify`` row. mcqa's and math's rows have no tool calls (nothing to replay).

``multi_step_tools`` rows carry tool calls (3.1 a row on average): freshly generated shop
tasks whose emulator script is played through ``World`` in this process, each call and its
output recorded as simple_agent records them, reward 1. Its output is re-scored twice: with
the replay of the tool calls (the default: 1 + calls + 1 requests a row, and every reward
comes back) and with ``+replay_tool_calls=false`` (what ``ng reverify`` did before the
replay: fewer requests, and the rows whose tools changed the shop score 0).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from itertools import cycle, islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from resources_servers.math.generate import generate as generate_math  # noqa: E402
from resources_servers.multi_step_tools.generate import generate as generate_shop  # noqa: E402
from resources_servers.multi_step_tools.world import ToolCallError, World, verify_world  # noqa: E402

ENVIRONMENTS = {
    "mcqa": "+config_paths=[configs/offline_model.yaml,resources_servers/mcqa/configs/mcqa.yaml]",
    "math": "+config_paths=[configs/offline_model.yaml,resources_servers/math/configs/math.yaml]",
    "multi_step_tools": (
        "+config_paths=[configs/offline_model.yaml,resources_servers/multi_step_tools/configs/multi_step_tools.yaml]"
    ),
}


def _script(row: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(row["responses_create_params"]["metadata"]["emulator_script"])


def _output_row(i: int, row: dict[str, Any], agent: str) -> dict[str, Any]:
    step = _script(row)[0]
    text = step["text"] if i % 2 == 0 else step.get("wrong", {}).get("text", "no idea")
    return {
        **row,
        "response": {
            "id": f"resp_{i}",
            "object": "response",
            "model": "emulator/scripted-tool-caller",
            "status": "completed",
            "output": [
                {"type": "message", "role": "assistant", "id": f"msg_{i}", "status": "completed",
                 "content": [{"type": "output_text", "text": text, "annotations": []}]}
            ],
            "usage": {"input_tokens": 60, "output_tokens": 12, "total_tokens": 72, "cost": 0.0000072},
        },
        "reward": 1.0 if i % 2 == 0 else 0.0,
        "agent_ref": {"name": agent},
        "_ng_task_index": i,
        "_ng_rollout_index": 0,
        "_ng_latency_s": 0.2,
    }  # fmt: skip


def _shop_row(i: int, row: dict[str, Any]) -> dict[str, Any]:
    """A shop task played as simple_agent plays it: each turn's calls, then their outputs."""
    world = World.from_seed(row["world"])
    output: list[dict[str, Any]] = []
    calls = 0
    for turn in _script(row):
        if "text" in turn:
            output.append(
                {"type": "message", "role": "assistant", "id": f"msg_{i}", "status": "completed",
                 "content": [{"type": "output_text", "text": turn["text"], "annotations": []}]}
            )  # fmt: skip
            continue
        answers = []
        for call in turn["tool_calls"]:
            call_id = f"call_{i}_{calls}"
            calls += 1
            output.append(
                {"type": "function_call", "name": call["name"], "arguments": json.dumps(call["arguments"]),
                 "call_id": call_id, "id": f"fc_{call_id}", "status": "completed"}
            )  # fmt: skip
            try:
                result = world.call(call["name"], call["arguments"])
            except ToolCallError as exc:
                result = {"error": str(exc)}
            answers.append(
                {"type": "function_call_output", "call_id": call_id, "output": json.dumps(result), "id": None,
                 "status": "completed"}
            )  # fmt: skip
        output += answers
    return {
        **row,
        "response": {"id": f"resp_{i}", "object": "response", "model": "emulator/scripted-tool-caller",
                     "status": "completed", "output": output,
                     "usage": {"input_tokens": 900, "output_tokens": 40, "total_tokens": 940, "cost": 0.0001}},
        **{k: v for k, v in verify_world(world, row).items() if k != "state_diff"},
        "agent_ref": {"name": "multi_step_tools_simple_agent"},
        "_ng_task_index": i,
        "_ng_rollout_index": 0,
        "_ng_latency_s": 0.4,
    }  # fmt: skip


def write_output(env: str, rows: int, path: Path) -> None:
    if env == "multi_step_tools":
        with path.open("w") as f:
            for i, row in enumerate(generate_shop(rows, seed=3)):
                f.write(json.dumps(_shop_row(i, row)) + "\n")
        return
    if env == "mcqa":
        shipped = [json.loads(line) for line in (ROOT / "resources_servers/mcqa/data/questions.jsonl").open()]
        source = islice(cycle(shipped), rows)
    else:
        source = generate_math(rows, seed=3)
    with path.open("w") as f:
        for i, row in enumerate(source):
            f.write(json.dumps(_output_row(i, row, f"{env}_simple_agent")) + "\n")


def measure(env: str, rows: int, concurrency: int, folder: Path, replay: bool = True) -> dict[str, Any]:
    output = folder / f"{env}_{rows}.jsonl"
    if not output.exists():
        write_output(env, rows, output)
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "ng_reverify"), ENVIRONMENTS[env], f"+input_jsonl_fpath={output}",
         f"+concurrency={concurrency}", "+overwrite=true", *([] if replay else ["+replay_tool_calls=false"])],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ng_reverify failed ({done.returncode}): {done.stderr}")
    record = json.loads((folder / f"{env}_{rows}_reverified_reverify.json").read_text())
    return {
        "environment": env if replay else f"{env}, +replay_tool_calls=false",
        "tool_calls": record.get("tool_calls_replayed", 0),
        "rows": record["rescored"],
        "concurrency": concurrency,
        "rows_per_s": record["rows_per_s"],
        "re-scoring_s": record["wall_time_s"],
        "command_s": round(wall, 2),
        "changed": record["changed_rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--env", action="append", choices=sorted(ENVIRONMENTS))
    args = parser.parse_args()
    print(f"CPython {platform.python_version()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(
        "| environment | rows | tool calls replayed | concurrency | rows/s | re-scoring s | whole command s "
        "| rewards changed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.env or ["mcqa", "math", "multi_step_tools"]:
            for replay in (True, False) if env == "multi_step_tools" else (True,):
                r = measure(env, args.rows, args.concurrency, Path(tmp), replay)
                print(
                    f"| {r['environment']} | {r['rows']:,} | {r['tool_calls']:,} | {r['concurrency']} | "
                    f"{r['rows_per_s']:,.0f} | {r['re-scoring_s']:.1f} | {r['command_s']:.1f} | {r['changed']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
