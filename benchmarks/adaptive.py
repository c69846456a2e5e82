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
  set). The right winner is the objective's answer on the true accuracies.

Cost is rollouts x cost per rollout; a full sweep runs every task on every variant.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nemo_gym_cli.collect.race import Race, RaceRules  # noqa: E402

#: the emulated models: accuracy, and USD per rollout billed on math's problems (measured: a
#: full offline sweep of data/problems.jsonl, each variant's cost / 240 rollouts)
EMULATED = {"small": (0.55, 7.34e-06), "medium": (0.75, 5.96e-05), "large": (0.92, 5.11e-04)}


@dataclass(frozen=True)
class Setting:
    name: str
    rules: RaceRules
    tasks: int
    identical: bool
    right: str | None  # the right winner (identical: none may be declared)


def settings() -> list[Setting]:
    out = []
    for rules in (
        RaceRules("best", 0.05, 0.02),
        RaceRules("within_margin", 0.05, 0.05),
        RaceRules("target", 0.05, 0.02, 0.5),
    ):
        out.append(Setting("identical", rules, 1000, True, None))
    for rules, right, tasks in (
        (RaceRules("best", 0.05, 0.02), "large", 240),
        (RaceRules("best", 0.05, 0.02), "large", 480),
        (RaceRules("within_margin", 0.05, 0.2), "medium", 480),
        (RaceRules("target", 0.05, 0.02, 0.5), "small", 480),
        (RaceRules("target", 0.05, 0.02, 0.85), "large", 480),
    ):
        out.append(Setting("emulated", rules, tasks, False, right))
    return out


def simulate(setting: Setting, seed: int, round_tasks: int) -> tuple[bool, bool, float, int]:
    """One run: (a false claim was made, the winner was right, cost against a full sweep, rounds)."""
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
    if setting.identical:
        # Equal means (0.5, the mean of Beta(2, 2)): a drop as "beaten" or "below the target 0.5"
        # claims what is not so; "a cheaper one reaches the target" is true.
        false_claim = any(d.rule in ("beaten", "margin", "below_target") for d in race.drops)
        right = not false_claim
    else:
        false_claim = race.winner != setting.right and race.confident
        right = race.winner == setting.right
    return false_claim, right, spent / full, race.rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--round-tasks", type=int, default=20)
    parser.add_argument("--markdown", action="store_true", help="print the table for docs/benchmarks.md")
    args = parser.parse_args()
    rows = []
    for setting in settings():
        started = time.perf_counter()
        results = [simulate(setting, seed, args.round_tasks) for seed in range(args.runs)]
        false = sum(r[0] for r in results) / args.runs
        right = sum(r[1] for r in results) / args.runs
        cost = sum(r[2] for r in results) / args.runs
        rounds = sum(r[3] for r in results) / args.runs
        se = math.sqrt(max(false * (1 - false), 1e-12) / args.runs)
        rules = setting.rules
        what = rules.objective + (f" {rules.target:g}" if rules.target is not None else "")
        what += f", margin {rules.margin:g}" if rules.objective != "target" else ""
        rows.append(
            (
                setting.name,
                what,
                setting.tasks,
                f"{false:.3f} ± {se:.3f}",
                f"{right:.3f}",
                f"{cost:.3f}",
                f"{rounds:.1f}",
            )
        )
        print(
            f"{setting.name:9} {what:28} tasks={setting.tasks:5} false claims={false:.3f}±{se:.3f} "
            f"right={right:.3f} cost/full={cost:.3f} rounds={rounds:.1f} ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    if args.markdown:
        print()
        print("| setting | objective | tasks | false claims (± s.e.) | right winner | cost / full sweep | rounds |")
        print("|---|---|---:|---:|---:|---:|---:|")
        for row in rows:
            print("| " + " | ".join(str(c) for c in row) + " |")


if __name__ == "__main__":
    main()
