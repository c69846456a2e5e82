"""How adaptive sweeps (``+adaptive=true``) decide: error rate, right winners and cost, by simulation.

    .venv/bin/python benchmarks/adaptive.py                  # 1,000 seeded runs per setting
    .venv/bin/python benchmarks/adaptive.py --runs 200 --markdown

No servers: each run draws every variant's reward on every task from per-task reward
probabilities, and drives the same ``Race`` (``nemo_gym_cli/collect/race.py``) over a seeded
random task order as ``ng_collect_rollouts +adaptive=true`` does, round by round. Settings:

- **identical**: three variants with the same per-task reward probabilities (task
  difficulty drawn from Beta(2, 2), each variant's reward an independent draw from it), at
  the emulated models' prices, 1,000 tasks. Every drop, and so every winner by
  elimination, is a false claim: its rate must stay at or under ``alpha``.
- **emulated**: the three emulated models of ``configs/offline_sweep.yaml`` (accuracy 0.55,
  0.75, 0.92; the emulator gets each task wrong independently per model, with probability
  1 - accuracy) at the cost per rollout they bill on math's problems, over 240 tasks (as
  many as math's ``data/problems.jsonl``) and 480 (``generate.py -n 480``, the offline test's
  set), and for ``within_margin`` over 960. The right winner is the objective's answer on the
  true accuracies. ``within_margin`` runs at three margins: at 0.2 medium (0.17 below large)
  is inside by only 0.03, about 1.3 standard errors of a 480-task sweep's paired difference
  (sqrt((0.92 * 0.08 + 0.75 * 0.25) / 480) = 0.023), so even the full sweep's own decision is
  wrong about one time in ten there: a question too close to call at that size. At 0.25 medium
  is 0.08 inside and small 0.12 outside; at 0.3, 0.13 inside and 0.07 outside.

Besides the race's own figures, each run gives the full sweep's decision on the same draws
(the objective applied to every variant's mean over every task): how often it is right, and
how often the race names the same winner. The runs are split by how the race ended: with
its guarantee (a confident end) or at the task limit (the leader so far, no guarantee).

Cost is rollouts x cost per rollout; a full sweep runs every task on every variant.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nemo_gym_cli.collect.race import Race, RaceRules, answer  # noqa: E402

#: the emulated models: accuracy, and USD per rollout billed on math's problems (measured: a
#: full offline sweep of data/problems.jsonl, each variant's cost / 240 rollouts)
EMULATED = {"small": (0.55, 7.34e-06), "medium": (0.75, 5.96e-05), "large": (0.92, 5.11e-04)}


@dataclass(frozen=True)
class Setting:
    name: str
    rules: RaceRules
    tasks: int
    identical: bool


@dataclass(frozen=True)
class Run:
    """What one simulated race did, against the full sweep on the same draws."""

    false_claim: bool  # identical: any drop claiming a difference; emulated: a confident wrong end
    right: bool  # identical: no false claim; emulated: the race's winner is the right one
    full_right: bool | None  # the full sweep's decision is the right one (identical: no right one)
    same_as_full: bool  # the race names the full sweep's winner
    confident: bool  # ended with the guarantee (else at the task limit)
    cost: float  # against a full sweep's
    rounds: int


def settings() -> list[Setting]:
    out = []
    for rules in (
        RaceRules("best", 0.05, 0.02),
        RaceRules("within_margin", 0.05, 0.05),
        RaceRules("target", 0.05, 0.02, 0.5),
    ):
        out.append(Setting("identical", rules, 1000, True))
    for rules, tasks in (
        (RaceRules("best", 0.05, 0.02), 240),
        (RaceRules("best", 0.05, 0.02), 480),
        (RaceRules("within_margin", 0.05, 0.2), 480),
        (RaceRules("within_margin", 0.05, 0.2), 960),
        (RaceRules("within_margin", 0.05, 0.25), 480),
        (RaceRules("within_margin", 0.05, 0.25), 960),
        (RaceRules("within_margin", 0.05, 0.3), 960),
        (RaceRules("target", 0.05, 0.02, 0.5), 480),
        (RaceRules("target", 0.05, 0.02, 0.85), 480),
    ):
        out.append(Setting("emulated", rules, tasks, False))
    return out


def right_answer(rules: RaceRules) -> str | None:
    """The objective's answer on the emulated models' true accuracies."""
    return answer(rules, {k: a for k, (a, _) in EMULATED.items()}, {k: c for k, (_, c) in EMULATED.items()})


def simulate(setting: Setting, seed: int, round_tasks: int) -> Run:
    """One seeded race over freshly drawn rewards, and the full sweep's decision on them."""
    rng = np.random.default_rng(seed)
    names = list(EMULATED)
    costs = {n: EMULATED[n][1] for n in names}
    n = setting.tasks
    if setting.identical:
        p = rng.beta(2, 2, size=n)
        rewards = {k: (rng.random(n) < p).astype(float) for k in names}
    else:
        rewards = {k: (rng.random(n) < EMULATED[k][0]).astype(float) for k in names}
    order = list(range(n))
    random.Random(seed).shuffle(order)
    race = Race(names, setting.rules)
    spent = 0.0
    start = 0
    while race.ended is None:
        block = order[start : start + round_tasks]
        if not block:
            race.stop("task_limit")
            break
        start += len(block)
        spent += sum(costs[k] for k in race.live) * len(block)
        race.add_round({k: rewards[k][block].tolist() for k in race.live}, costs)
    full = n * sum(costs.values())
    full_decision = answer(setting.rules, {k: float(rewards[k].mean()) for k in names}, costs)
    if setting.identical:
        # Equal means (0.5, the mean of Beta(2, 2)): a drop as "beaten" or "below the target 0.5"
        # claims what is not so; "a cheaper one reaches the target" is true.
        false_claim = any(d.rule in ("beaten", "margin", "below_target") for d in race.drops)
        right, full_right = not false_claim, None
    else:
        truth = right_answer(setting.rules)
        false_claim = race.winner != truth and race.confident
        right, full_right = race.winner == truth, full_decision == truth
    return Run(false_claim, right, full_right, race.winner == full_decision, race.confident, spent / full, race.rounds)


def share(runs: list[Run], test: Callable[[Run], bool | None]) -> float | None:
    values = [test(r) for r in runs]
    return sum(bool(v) for v in values) / len(values) if values and None not in values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--round-tasks", type=int, default=20)
    parser.add_argument("--markdown", action="store_true", help="print the table for docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    began = time.perf_counter()
    for setting in settings():
        started = time.perf_counter()
        runs = [simulate(setting, seed, args.round_tasks) for seed in range(args.runs)]
        false = share(runs, lambda r: r.false_claim) or 0.0
        se = math.sqrt(max(false * (1 - false), 1e-12) / args.runs)
        confident = [r for r in runs if r.confident]
        at_limit = [r for r in runs if not r.confident]
        rules = setting.rules
        what = rules.objective + (f" {rules.target:g}" if rules.target is not None else "")
        what += f", margin {rules.margin:g}" if rules.objective != "target" else ""
        if not setting.identical:
            what += f" ({right_answer(rules)})"
        figures = {
            "false claims": f"{false:.3f} ± {se:.3f}",
            "right": fmt(share(runs, lambda r: r.right)),
            "full sweep right": fmt(share(runs, lambda r: r.full_right)),
            "same as full": fmt(share(runs, lambda r: r.same_as_full)),
            "confident": fmt(len(confident) / len(runs)),
            "right if confident": fmt(share(confident, lambda r: r.right)),
            "right at limit": fmt(share(at_limit, lambda r: r.right)),
            "cost/full": fmt(sum(r.cost for r in runs) / len(runs)),
            "rounds": f"{sum(r.rounds for r in runs) / len(runs):.1f}",
        }
        rows.append((setting.name, what, str(setting.tasks), *figures.values()))
        shown = " ".join(f"{k}={v}" for k, v in figures.items())
        print(
            f"{setting.name:9} {what:34} tasks={setting.tasks:4} {shown} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    print(f"{len(rows)} settings x {args.runs} runs in {time.perf_counter() - began:.0f} s", flush=True)
    if args.markdown:
        print()
        print(
            "| setting | objective (right answer) | tasks | false claims (± s.e.) | right winner | full sweep right "
            "| same as full sweep | confident ends | right: confident end | right: task limit | cost / full sweep "
            "| rounds |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
