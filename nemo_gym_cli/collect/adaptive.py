"""An adaptive sweep (``+adaptive=true``): the variants race in rounds, and stop paying once
the question is answered.

The tasks are put in one random order (seeded by ``+adaptive_seed``, the same for every
variant). Round k runs the k-th block of ``+round_tasks`` tasks (each ``+num_repeats``
times) on every variant still in the race, through the ordinary collector (``Lane.only``
limits a lane to the round's tasks): the same files, the same resume, every row kept.
After each round the ``Race`` (``race.py``) updates each pair's confidence sequence and
drops the variants that cannot win; the race ends when the objective is answered, at
``+max_cost_usd`` or when the tasks run out, and says which.

A variant's reward on a task is the mean over its rollouts, a failed rollout counting 0 (as
in ``ng_report``); rewards must lie in ``[0, 1]`` (the guarantee needs bounds). Its cost
per rollout is what it has cost so far (failed attempts included).

``<sweep folder>/adaptive.json`` holds the settings and, per finished round, what the race
was fed (each live variant's task rewards, costs so far), what it concluded (each pair's
interval, the drops) and the end. It is written, atomically, after each round, and read
back on ``+resume=true``: the race is replayed from the recorded rounds, so a resumed sweep
reaches the decision the uninterrupted one would have (a round cut short is run to its end
first, from the rows already in the outputs). ``ng_report`` draws the race from it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_gym_cli.collect.collector import BudgetSpent, Collector, Lane
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.race import Race, RaceRules
from nemo_gym_cli.errors import ConfigError, InputError
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.report.adaptive import describe_end
from nemo_gym_cli.wire import dumps, loads

__all__ = ["ADAPTIVE_FILE", "AdaptiveSweep", "task_order"]

#: The race's record, inside the sweep folder.
ADAPTIVE_FILE = OutputFiles.ADAPTIVE


def task_order(num_tasks: int, seed: int) -> list[int]:
    """The tasks in the race's order: a permutation seeded by ``seed`` (``random.Random``'s
    shuffle: the same on every Python the toolkit runs on)."""
    order = list(range(num_tasks))
    random.Random(seed).shuffle(order)
    return order


def adaptive_path(output: Path) -> Path:
    return OutputFiles(output).adaptive


@dataclass
class _Rewards:
    """A lane's rewards, read from its output as it grows (and from its failures: 0)."""

    lane: Lane
    offset: int = 0
    seen: dict[tuple[int, int], float] = field(default_factory=dict)

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

    def failed(self) -> set[tuple[int, int]]:
        path = self.lane.failures.path
        out: set[tuple[int, int]] = set()
        if not path.exists():
            return out
        for line in path.read_bytes().splitlines():
            try:
                row = loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                task, rollout = row.get("_ng_task_index"), row.get("_ng_rollout_index")
                if isinstance(task, int) and isinstance(rollout, int):
                    out.add((task, rollout))
        return out

    def task_rewards(self, block: list[int], repeats: int) -> list[float] | None:
        """Each task's mean reward over its rollouts (failures 0); None if a rollout of the
        block is neither in the output nor failed (the round did not finish)."""
        self.refresh()
        failed = self.failed()
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
        """On resume, replay the recorded rounds (refusing other settings); else start over."""
        if not self.opts.resuming or not self.path.exists():
            self.path.unlink(missing_ok=True)
            return
        try:
            doc = loads(self.path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.path} is not readable JSON ({exc}); remove it to start the race over") from None
        earlier = doc.get("settings") if isinstance(doc, dict) else None
        if earlier != self.settings:
            differ = sorted(
                k for k in self.settings if not isinstance(earlier, dict) or earlier.get(k) != self.settings[k]
            )
            raise ConfigError(
                f"{self.path} records a race with other settings ({', '.join(differ)}); resume with the same "
                "+objective, +alpha, +margin, +target_reward, +round_tasks, +adaptive_seed, variants and tasks, "
                "or write to another +output_jsonl_fpath"
            )
        for recorded in doc.get("rounds") or []:
            self.race.add_round(recorded["rewards"], recorded["costs"])
            self.rounds.append(recorded)
        self.note(f"adaptive sweep: resuming after round {len(self.rounds)} ({', '.join(self.race.live)} in the race)")

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(dumps(self.document()))
        tmp.replace(self.path)

    def document(self) -> dict[str, Any]:
        race = self.race
        return {
            "settings": self.settings,
            "comparisons": self.rules.sequences(len(self.lanes)),
            "level_per_comparison": race.level,
            "rounds": self.rounds,
            "drops": [
                {
                    "variant": d.variant,
                    "round": d.round,
                    "tasks": d.tasks,
                    "rule": d.rule,
                    "reason": d.reason,
                    "by": d.by,
                }
                for d in race.drops
            ],
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
        while race.ended is None:
            k = len(self.rounds)
            block = self.order[k * size : (k + 1) * size]
            if not block:
                race.stop("task_limit")
                break
            tasks = frozenset(block)
            outstanding = {}
            for lane in self.lanes:
                live = lane.name in race.live
                lane.only(tasks if live else frozenset())
                lane.out.open(append=True)
                outstanding[lane.name] = (
                    sum((t, r) not in lane.done for t in block for r in range(repeats)) if live else 0
                )
            await collector.run(outstanding)
            if isinstance(collector.stopped, BudgetSpent):
                race.stop("budget")
                break
            if collector.fatal is not None or collector.stop_event.is_set():
                return  # interrupted: resumable; the race is not over
            rewards = {}
            for name in race.live:
                got = self._rewards[name].task_rewards(block, repeats)
                if got is None:
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
                }
            )
            for d in dropped:
                self.note(f"adaptive sweep: round {k + 1}: {d.variant} dropped after {d.tasks} tasks: {d.reason}")
            self.write()
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
