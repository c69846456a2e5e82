"""An adaptive sweep (``+adaptive=true``): the variants race in rounds, and stop paying once
the question is answered.

The tasks are put in one random order (seeded by ``+adaptive_seed``, the same for every
variant). Round k runs the k-th block of ``+round_tasks`` tasks (each ``+num_repeats``
times) on every variant still in the race, through the ordinary collector (``Lane.only``
limits a lane to the round's tasks): the same files, the same resume, every row kept. The
input is indexed once (``files.TaskIndex``: each task's byte offset), and each round reads
only its own tasks' lines, once for all the lanes; the race's outputs and failures files
are read forward from where the last round stopped.
After each round the ``Race`` (``race.py``) updates each pair's confidence sequence and
drops the variants that cannot win; the race ends when the objective is answered, at
``+max_cost_usd`` or when the tasks run out, and says which.

A variant's reward on a task is the mean over its rollouts, a failed rollout counting 0 (as
in ``ng_report``); rewards must lie in ``[0, 1]`` (the guarantee needs bounds). Its cost
per rollout is what it has cost so far (failed attempts included).

``<sweep folder>/adaptive.json`` holds the settings and, per finished round, what the race
was fed (each live variant's task rewards, costs so far), what it concluded (each pair's
interval, the drops) and the end. ``adaptive_rounds.ndjson``, its journal, gets each round
as one appended line when the round ends; the record is rewritten (atomically) after rounds
1, 2, 4, 8, ..., every ``SNAPSHOT_S`` seconds, when the run stops and at the end, so its
cost stays linear in the rounds. ``+resume=true`` replays the journal's rounds (a line torn
by a crash is cut), so a resumed sweep reaches the decision the uninterrupted one would have
(a round cut short is run to its end first, from the rows already in the outputs).
``ng_report`` draws the race from the record (from the journal's rounds after a crash).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_gym_cli.collect.collector import BudgetSpent, Collector, Lane
from nemo_gym_cli.collect.files import TaskIndex
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.race import Drop, Race, RaceRules
from nemo_gym_cli.errors import ConfigError, InputError
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.report.adaptive import describe_end, read_journal
from nemo_gym_cli.wire import dumps, dumps_line, loads

__all__ = ["ADAPTIVE_FILE", "AdaptiveSweep", "task_order"]

#: The race's record, inside the sweep folder.
ADAPTIVE_FILE = OutputFiles.ADAPTIVE
#: The record is rewritten at least this often (seconds) while the race runs; the journal
#: has every round.
SNAPSHOT_S = 30.0


def task_order(num_tasks: int, seed: int) -> list[int]:
    """The tasks in the race's order: a permutation seeded by ``seed`` (``random.Random``'s
    shuffle: the same on every Python the toolkit runs on)."""
    order = list(range(num_tasks))
    random.Random(seed).shuffle(order)
    return order


def _drop(d: Drop) -> dict[str, Any]:
    return {"variant": d.variant, "round": d.round, "tasks": d.tasks, "rule": d.rule, "reason": d.reason, "by": d.by}


def adaptive_path(output: Path) -> Path:
    return OutputFiles(output).adaptive


@dataclass
class _Rewards:
    """A lane's rewards, read from its output as it grows (and from its failures: 0)."""

    lane: Lane
    offset: int = 0
    seen: dict[tuple[int, int], float] = field(default_factory=dict)
    failed_offset: int = 0
    failed: set[tuple[int, int]] = field(default_factory=set)

    def refresh(self) -> None:
        path = self.lane.out.path
        if not path.exists():
            return
        with path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a torn last line waits for the next read
        for line in data[:end].splitlines():
            try:
                row = loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict):
                continue
            task, rollout = row.get("_ng_task_index"), row.get("_ng_rollout_index")
            if isinstance(task, int) and isinstance(rollout, int) and (task, rollout) not in self.seen:
                self.seen[(task, rollout)] = self._reward(row, path, task)
        self.offset += end

    @staticmethod
    def _reward(row: dict[str, Any], path: Path, task: int) -> float:
        value = row.get("reward")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return 0.0  # no reward counts 0, as in the report
        if not 0.0 <= value <= 1.0:
            raise InputError(
                f"{path}: task {task} has reward {value!r}; +adaptive=true needs rewards in [0, 1] (its "
                "confidence sequences rest on the bounds): rescale the environment's reward, or sweep without it"
            )
        return float(value)

    def refresh_failed(self) -> None:
        """Read the failures file forward from where the last round stopped (a rollout that
        failed for good is in it once; a resume starts the file over, and this sweep with it)."""
        path = self.lane.failures.path
        if not path.exists():
            return
        with path.open("rb") as f:
            f.seek(self.failed_offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            try:
                row = loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                task, rollout = row.get("_ng_task_index"), row.get("_ng_rollout_index")
                if isinstance(task, int) and isinstance(rollout, int):
                    self.failed.add((task, rollout))
        self.failed_offset += end

    def task_rewards(self, block: list[int], repeats: int) -> list[float] | None:
        """Each task's mean reward over its rollouts (failures 0); None if a rollout of the
        block is neither in the output nor failed (the round did not finish)."""
        self.refresh()
        self.refresh_failed()
        failed = self.failed
        out = []
        for task in block:
            total = 0.0
            for r in range(repeats):
                if (task, r) in self.seen:
                    total += self.seen[(task, r)]
                elif (task, r) not in failed:
                    return None
            out.append(total / repeats)
        return out


class AdaptiveSweep:
    """The rounds of one adaptive sweep over ``lanes`` (one per variant)."""

    def __init__(self, opts: CollectOptions, lanes: list[Lane], num_tasks: int, note: Callable[[str], None]) -> None:
        self.opts, self.lanes, self.note = opts, lanes, note
        self.num_tasks = num_tasks
        self.path = adaptive_path(opts.output_path)
        self.journal = OutputFiles(opts.output_path).adaptive_journal
        self._written = time.monotonic()  # when the record was last rewritten
        self.rules = RaceRules(opts.objective, opts.alpha, opts.margin, opts.target_reward)
        self.settings = {
            "objective": opts.objective,
            "alpha": opts.alpha,
            "margin": opts.margin,
            "target_reward": opts.target_reward,
            "round_tasks": opts.round_tasks,
            "seed": opts.adaptive_seed,
            "tasks": num_tasks,
            "num_repeats": opts.num_repeats,
            "variants": [lane.name for lane in lanes],
        }
        self.order = task_order(num_tasks, opts.adaptive_seed)
        self.race = Race([lane.name for lane in lanes], self.rules)
        self.rounds: list[dict[str, Any]] = []
        self.end: dict[str, Any] | None = None
        self._rewards = {lane.name: _Rewards(lane) for lane in lanes}

    # ------------------------------------------------------------------ state

    def load(self) -> None:
        """On resume, replay the recorded rounds (refusing other settings); else start over.
        The rounds are the journal's (the record lags it after a crash); a record without a
        journal (written before there was one) still resumes, and the journal is rebuilt."""
        if self.opts.resuming:
            recorded = self._recorded()
            if recorded is not None:
                for entry in recorded:
                    self.race.add_round(entry["rewards"], entry["costs"])
                    self.rounds.append(entry)
                self.note(
                    f"adaptive sweep: resuming after round {len(self.rounds)} ({', '.join(self.race.live)} in the race)"
                )
                return
        self.path.unlink(missing_ok=True)
        self._start_journal([])

    def _recorded(self) -> list[dict[str, Any]] | None:
        """The rounds recorded by an earlier run of this race (None: there is none)."""
        settings, rounds, good = read_journal(self.journal)
        where = self.journal
        if settings is not None:
            with self.journal.open("r+b") as f:
                f.truncate(good)  # a line torn by a crash goes: the next round is appended after the whole ones
        elif self.path.exists():
            try:
                doc = loads(self.path.read_bytes())
            except (OSError, ValueError) as exc:
                raise InputError(
                    f"{self.path} is not readable JSON ({exc}); remove it to start the race over"
                ) from None
            settings = doc.get("settings") if isinstance(doc, dict) else None
            rounds = list(doc.get("rounds") or []) if isinstance(doc, dict) else []
            where = self.path
        else:
            return None
        if settings != self.settings:
            differ = sorted(
                k for k in self.settings if not isinstance(settings, dict) or settings.get(k) != self.settings[k]
            )
            raise ConfigError(
                f"{where} records a race with other settings ({', '.join(differ)}); resume with the same "
                "+objective, +alpha, +margin, +target_reward, +round_tasks, +adaptive_seed, variants and tasks, "
                "or write to another +output_jsonl_fpath"
            )
        if where == self.path:
            self._start_journal(rounds)
        return rounds

    def _start_journal(self, rounds: list[dict[str, Any]]) -> None:
        self.journal.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.journal.with_name(self.journal.name + ".tmp")
        tmp.write_bytes(b"".join(dumps_line(x) for x in [{"settings": self.settings}, *rounds]))
        tmp.replace(self.journal)

    def _append(self, entry: dict[str, Any]) -> None:
        """Journal one round (one write, flushed: a crash tears at most this line), then
        rewrite the record when due: after rounds 1, 2, 4, 8, ... and at least every
        ``SNAPSHOT_S`` seconds. Rewriting it after every round cost rounds^2 (485 of 603 s
        over 5,000 rounds: docs/benchmarks.md)."""
        with self.journal.open("ab") as f:
            f.write(dumps_line(entry))
        k = len(self.rounds)
        if k & (k - 1) == 0 or time.monotonic() - self._written >= SNAPSHOT_S:
            self.write()

    def write(self) -> None:
        """Rewrite the record (``adaptive.json``), atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(dumps(self.document()))
        tmp.replace(self.path)
        self._written = time.monotonic()

    def document(self) -> dict[str, Any]:
        race = self.race
        return {
            "settings": self.settings,
            "comparisons": self.rules.sequences(len(self.lanes)),
            "level_per_comparison": race.level,
            "rounds": self.rounds,
            "drops": [_drop(d) for d in race.drops],
            "live": list(race.live),
            "end": self.end,
        }

    # ------------------------------------------------------------------ running

    def spent(self) -> dict[str, tuple[float, int]]:
        """Each variant's cost so far and its rollouts (failures included)."""
        return {
            lane.name: (lane.metrics.total_cost, lane.metrics.succeeded + lane.metrics.failed) for lane in self.lanes
        }

    def _full_cost(self, spent: dict[str, tuple[float, int]]) -> float | None:
        """What every task on every variant would have cost, at each variant's cost per rollout so far."""
        total = 0.0
        for cost, rollouts in spent.values():
            if not rollouts:
                return None
            total += cost / rollouts * self.num_tasks * self.opts.num_repeats
        return total

    async def run(self, collector: Collector) -> None:
        """Run rounds until the race ends (or the run stops: budget, Ctrl-C, a dead server)."""
        opts, race = self.opts, self.race
        size, repeats = opts.round_tasks, opts.num_repeats
        index: TaskIndex | None = None  # built on the first round run (none if the race is over)
        while race.ended is None:
            k = len(self.rounds)
            block = self.order[k * size : (k + 1) * size]
            if not block:
                race.stop("task_limit")
                break
            if index is None:
                index = TaskIndex(opts.input_path, opts.limit)
                if len(index) != self.num_tasks:
                    raise InputError(
                        f"{opts.input_path} changed during the run ({len(index)} tasks now, {self.num_tasks} at the "
                        "start); restore it, or start the race over without +resume=true"
                    )
            rows = index.read(block)  # once for every lane
            outstanding = {}
            for lane in self.lanes:
                live = lane.name in race.live
                lane.only(rows if live else [])
                lane.out.open(append=True)
                outstanding[lane.name] = (
                    sum((t, r) not in lane.done for t in block for r in range(repeats)) if live else 0
                )
            await collector.run(outstanding)
            if isinstance(collector.stopped, BudgetSpent):
                race.stop("budget")
                break
            if collector.fatal is not None or collector.stop_event.is_set():
                self.write()
                return  # interrupted: resumable; the race is not over
            rewards = {}
            for name in race.live:
                got = self._rewards[name].task_rewards(block, repeats)
                if got is None:
                    self.write()
                    return  # a rollout of the round is missing: resume runs it
                rewards[name] = got
            spent = self.spent()
            costs = {n: (c / r if r else 0.0) for n, (c, r) in spent.items()}
            dropped = race.add_round(rewards, costs)
            self.rounds.append(
                {
                    "round": k + 1,
                    "tasks": block,
                    "rewards": rewards,
                    "costs": costs,
                    "spent_usd": {n: c for n, (c, _) in spent.items()},
                    "rollouts": {n: r for n, (_, r) in spent.items()},
                    "race": race.history[-1],
                    "drops": [_drop(d) for d in dropped],
                }
            )
            for d in dropped:
                self.note(f"adaptive sweep: round {k + 1}: {d.variant} dropped after {d.tasks} tasks: {d.reason}")
            self._append(self.rounds[-1])
        self._finish()

    def _finish(self) -> None:
        race = self.race
        spent = self.spent()
        total = sum(c for c, _ in spent.values())
        self.end = {
            "reason": race.ended,
            "winner": race.winner,
            "confident": race.confident,
            "rounds": race.rounds,
            "spent_usd": total,
            "spent_by_variant_usd": {n: c for n, (c, _) in spent.items()},
            "rollouts": {n: r for n, (_, r) in spent.items()},
            "full_sweep_usd_estimate": self._full_cost(spent),
        }
        self.write()

    def summary(self) -> str:
        """One paragraph for the terminal: who won, why the race ended, what it cost."""
        end = self.end
        if end is None:
            return (
                f"adaptive sweep: interrupted after round {len(self.rounds)}; re-run with +resume=true to continue "
                f"the race ({', '.join(self.race.live)} still in it)"
            )
        return describe_end(end, self.settings)
