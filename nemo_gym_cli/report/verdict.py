"""The report's verdict: which variant to pick for which goal, how sure, and what it costs.

The figures of ``stats`` say how each variant did; a user comparing models wants a choice.
Three goals, each answered with the confidence the paired comparisons give:

- **best reward**: the highest mean reward. When the paired test cannot tell it from
  another variant (p >= 0.05), they are *indistinguishable* and the cheapest of them is
  the pick: paying more for a difference the data cannot show is not a choice.
- **best reward per dollar**: the most reward per dollar spent (mean reward / cost per
  rollout), against the runner-up as a ratio with a 95% interval. The interval comes from
  the delta method on the log of the ratio, paired over the tasks both ran (linear in the
  number of tasks, where a bootstrap of a ratio of sums would resample every task).
- **cheapest within a margin**: the cheapest variant whose reward is at most ``margin``
  below the best's. It is *shown* within the margin when the paired 95% interval of its
  difference to the best stays above ``-margin`` (a non-inferiority reading), else the
  sentence says the data cannot rule out a larger loss.

Then the price of each upgrade, cheapest to dearest: extra dollars per task over extra
tasks solved (per task, so variants that ran different numbers of tasks still compare),
and what ``project_tasks`` tasks would cost with each variant at the rollouts per task
of this input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nemo_gym_cli.report.money import usd
from nemo_gym_cli.report.stats import Analysis, Comparison, VariantFigures

__all__ = ["DEFAULT_MARGIN", "Pick", "Projection", "Upgrade", "Verdict", "decide"]

#: Reward a cheaper variant may give up and still count as "as good" (``+margin``).
DEFAULT_MARGIN = 0.02
_Z95 = 1.959963984540054


@dataclass(frozen=True)
class Pick:
    """One goal's answer."""

    goal: str  # "best reward", "best reward per dollar", "cheapest within the margin"
    variant: str | None  # None: no variant has the figures this goal needs
    #: the 95% figures back the pick (see the module doc for each goal); None: no test applies
    #: (one variant, no cost, nothing cheaper within the margin)
    confident: bool | None
    sentence: str
    #: the goal's figures (differences, intervals, p-values, ratios), full precision
    figures: dict[str, Any]


@dataclass(frozen=True)
class Upgrade:
    """Moving from a cheaper variant to a dearer one."""

    source: str
    target: str
    extra_usd_per_task: float
    extra_solved_share: float  # solved tasks / tasks of target minus that of source
    usd_per_extra_solved_task: float | None  # None: the dearer one solves no more
    sentence: str


@dataclass(frozen=True)
class Projection:
    """What ``tasks`` tasks would cost with one variant, at this input's rollouts a task."""

    variant: str
    tasks: int
    rollouts_per_task: float
    cost_usd: float | None
    solved_tasks: float


@dataclass(frozen=True)
class Verdict:
    margin: float
    project_tasks: int
    picks: list[Pick]
    upgrades: list[Upgrade]
    projections: list[Projection]


def _num(value: float) -> str:
    return f"{value:.3f}"


def _p(p: float | None) -> str:
    if p is None:
        return "p=-"
    return f"p={p:.3f}" if p >= 0.001 else "p<0.001"


def _comparison(a: Analysis, x: str, y: str) -> Comparison | None:
    return next((c for c in a.comparisons if {c.a, c.b} == {x, y}), None)


def _difference(c: Comparison, better: str) -> tuple[float, float, float]:
    """The paired difference ``better - other`` and its interval, in that orientation."""
    assert c.diff is not None and c.ci95_low is not None and c.ci95_high is not None
    if c.b == better:
        return c.diff, c.ci95_low, c.ci95_high
    return -c.diff, -c.ci95_high, -c.ci95_low


def _figures(c: Comparison, better: str) -> str:
    diff, low, high = _difference(c, better)
    return f"{diff:+.3f} (95% CI {low:+.3f}..{high:+.3f}, {_p(c.p_value)})"


def _cost(v: VariantFigures) -> float | None:
    return v.cost.per_rollout_usd


def _best_reward(a: Analysis, ranked: list[VariantFigures]) -> Pick:
    goal = "best reward"
    best = ranked[0]
    assert best.reward.mean is not None
    if len(ranked) == 1:
        return Pick(goal, best.name, None, f"{best.name}: reward {_num(best.reward.mean)} (the only variant)", {})
    tied = [best]
    for v in ranked[1:]:
        c = _comparison(a, best.name, v.name)
        if c is not None and c.diff is not None and not c.significant:
            tied.append(v)
    runner_up = ranked[1]
    if len(tied) == 1:
        c = _comparison(a, best.name, runner_up.name)
        if c is None or c.diff is None:
            return Pick(
                goal, best.name, False, f"{best.name}: reward {_num(best.reward.mean)} (ran no task in common)", {}
            )
        diff, low, high = _difference(c, best.name)
        return Pick(
            goal,
            best.name,
            True,
            f"{best.name} is best: beats {runner_up.name} by {_figures(c, best.name)}",
            {"runner_up": runner_up.name, "diff": diff, "ci95_low": low, "ci95_high": high, "p_value": c.p_value},
        )
    costed = [v for v in tied if _cost(v) is not None]
    pick = min(costed, key=lambda v: _cost(v) or 0.0) if costed else best
    other = runner_up if pick is best else pick
    c = _comparison(a, best.name, other.name)
    assert c is not None and c.diff is not None
    diff, low, high = _difference(c, best.name)
    names = _join([v.name for v in tied])
    why = f"{best.name} ahead of {other.name} by {_figures(c, best.name)}"
    if pick is best:
        choice = f"{best.name}, the highest" if not costed else f"{best.name}, the cheapest of them too"
    else:
        choice = f"{pick.name}, the cheapest of them"
    return Pick(
        goal,
        pick.name,
        False,
        f"{names} are indistinguishable on reward ({why}): pick {choice}",
        {
            "indistinguishable": [v.name for v in tied],
            "highest": best.name,
            "compared_with": other.name,
            "diff": diff,
            "ci95_low": low,
            "ci95_high": high,
            "p_value": c.p_value,
        },
    )


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _task_costs(a: Analysis) -> np.ndarray:
    """variants x tasks: mean cost per rollout of each task (0 where unknown or not run)."""
    r = a.records
    task = np.frombuffer(r.task, np.int32)
    rows = a.keep & (task >= 0)
    n_variants, n_tasks = len(r.variants), len(r.task_keys)
    cell = np.frombuffer(r.variant, np.int16)[rows].astype(np.int64) * n_tasks + task[rows]
    cost = np.nan_to_num(np.frombuffer(r.cost, np.float64)[rows])
    sums = np.bincount(cell, weights=cost, minlength=n_variants * n_tasks).reshape(n_variants, n_tasks)
    return sums / np.maximum(a.task_rollouts, 1)


def efficiency_ratio(
    reward_a: np.ndarray, cost_a: np.ndarray, reward_b: np.ndarray, cost_b: np.ndarray
) -> tuple[float, float, float, float]:
    """(ratio, 95% low, 95% high, p) of a's reward per dollar over b's, paired over tasks.

    Reward per dollar is mean(reward) / mean(cost); the log of the ratio of the two has the
    per-task influence (r_a/R_a - c_a/C_a) - (r_b/R_b - c_b/C_b) (delta method), whose
    standard error gives a normal interval on the log scale and a two-sided p-value."""
    ra, ca, rb, cb = (float(x.mean()) for x in (reward_a, cost_a, reward_b, cost_b))
    log_ratio = math.log(ra / ca) - math.log(rb / cb)
    z = (reward_a / ra - cost_a / ca) - (reward_b / rb - cost_b / cb)
    se = float(z.std(ddof=1)) / math.sqrt(len(z)) if len(z) > 1 else math.inf
    if se == 0:
        p = 0.0 if log_ratio else 1.0
    else:
        p = math.erfc(abs(log_ratio) / se / math.sqrt(2))
    return math.exp(log_ratio), math.exp(log_ratio - _Z95 * se), math.exp(log_ratio + _Z95 * se), p


def _per_dollar(a: Analysis, ranked: list[VariantFigures]) -> Pick:
    goal = "best reward per dollar"
    priced = [v for v in ranked if (_cost(v) or 0.0) > 0 and v.reward.mean is not None]
    free = [v for v in ranked if _cost(v) == 0]
    if free:
        top = free[0]
        return Pick(goal, top.name, None, f"{top.name} reports no cost ($0): any reward it gives is free", {})
    if not priced:
        return Pick(goal, None, None, "no variant reports a cost (usage.cost): nothing to weigh", {})

    def per_dollar(v: VariantFigures) -> float:
        return (v.reward.mean or 0.0) / (_cost(v) or 1.0)

    order = sorted(priced, key=per_dollar, reverse=True)
    top = order[0]
    if per_dollar(top) == 0:
        return Pick(goal, None, None, "no variant earns any reward: nothing to weigh", {})
    unit = (_cost(top) or 0.0) / (top.reward.mean or 1.0)
    head = f"{top.name}: {usd(unit)} per unit of reward"
    figures: dict[str, Any] = {"usd_per_reward": unit}
    if len(order) == 1:
        return Pick(goal, top.name, None, f"{head} (the only variant with a cost)", figures)
    second = order[1]
    figures["runner_up"] = second.name
    if per_dollar(second) == 0:
        return Pick(goal, top.name, True, f"{head}; {second.name} and the others earn no reward", figures)
    i, j = (a.records.variants.names.index(v.name) for v in (top, second))
    common = (a.task_rollouts[i] > 0) & (a.task_rollouts[j] > 0)
    costs = _task_costs(a)
    reward_i, reward_j = a.task_reward[i, common], a.task_reward[j, common]
    cost_i, cost_j = costs[i, common], costs[j, common]
    if not common.any() or min(reward_i.mean(), reward_j.mean(), cost_i.mean(), cost_j.mean()) <= 0:
        ratio = per_dollar(top) / per_dollar(second)
        figures["ratio"] = ratio
        sentence = f"{head}, {ratio:.2f}x the reward per dollar of {second.name} (no interval: too few tasks)"
        return Pick(goal, top.name, False, sentence, figures)
    ratio, low, high, p = efficiency_ratio(reward_i, cost_i, reward_j, cost_j)
    figures.update(ratio=ratio, ci95_low=low, ci95_high=high, p_value=p, tasks=int(common.sum()))
    confident = low > 1
    tail = "" if confident else f": not distinguishable from {second.name} at 95%"
    sentence = (
        f"{head}, {ratio:.2f}x the reward per dollar of {second.name} (95% CI {low:.2f}x..{high:.2f}x, {_p(p)}){tail}"
    )
    return Pick(goal, top.name, confident, sentence, figures)


def _within_margin(a: Analysis, ranked: list[VariantFigures], margin: float) -> Pick:
    goal = f"cheapest within {margin:g} of the best"
    best = ranked[0]
    assert best.reward.mean is not None
    near = [v for v in ranked if (v.reward.mean or 0.0) >= best.reward.mean - margin and _cost(v) is not None]
    if not near:
        return Pick(goal, None, None, "no variant reports a cost (usage.cost): nothing to weigh", {})
    pick = min(near, key=lambda v: (_cost(v) or 0.0, -(v.reward.mean or 0.0)))
    if pick is best:
        sentence = f"{best.name}: no variant within {margin:g} of its reward ({_num(best.reward.mean)}) costs less"
        cheaper = [v for v in ranked if _cost(v) is not None and (_cost(v) or 0.0) < (_cost(best) or 0.0)]
        if cheaper:
            nearest = cheaper[0]  # ranked: the best reward among the cheaper ones
            gap = best.reward.mean - (nearest.reward.mean or 0.0)
            sentence += (
                f"; the closest cheaper one, {nearest.name}, is {gap:.3f} lower at {usd(_cost(nearest))} a rollout"
            )
        return Pick(goal, best.name, None, sentence, {"best": best.name})
    c = _comparison(a, best.name, pick.name)
    saving = f"{usd(_cost(pick))} a rollout against {usd(_cost(best))}"
    head = (
        f"{pick.name}: reward {_num(pick.reward.mean or 0.0)} against the best's {_num(best.reward.mean)} "
        f"({best.name}), {saving}"
    )
    if c is None or c.diff is None:
        return Pick(goal, pick.name, False, f"{head} (ran no task in common with {best.name})", {"best": best.name})
    diff, low, high = _difference(c, pick.name)
    confident = low >= -margin
    shown = (
        f"within the margin at 95% (difference {_figures(c, pick.name)})"
        if confident
        else f"difference {_figures(c, pick.name)}: a loss larger than {margin:g} is not ruled out"
    )
    figures = {"best": best.name, "diff": diff, "ci95_low": low, "ci95_high": high, "p_value": c.p_value}
    return Pick(goal, pick.name, confident, f"{head}; {shown}", figures)


def _upgrades(variants: list[VariantFigures], tasks: int) -> list[Upgrade]:
    costed = [v for v in variants if v.cost.total_usd is not None and v.tasks and v.reward.mean is not None]
    costed.sort(key=lambda v: ((v.cost.total_usd or 0.0) / v.tasks, v.name))
    out: list[Upgrade] = []
    chain: VariantFigures | None = None
    for v in costed:
        if chain is None:
            chain = v
            continue
        extra_cost = (v.cost.total_usd or 0.0) / v.tasks - (chain.cost.total_usd or 0.0) / chain.tasks
        extra_share = v.solved_tasks / v.tasks - chain.solved_tasks / chain.tasks
        extra_tasks = extra_share * tasks
        if extra_share > 0:
            price = extra_cost / extra_share
            sentence = (
                f"{chain.name} -> {v.name}: {_signed_usd(extra_cost)} a task for {extra_tasks:+.1f} solved tasks "
                f"of {tasks}: {usd(price)} per extra solved task"
            )
            out.append(Upgrade(chain.name, v.name, extra_cost, extra_share, price, sentence))
            chain = v
        else:
            sentence = (
                f"{chain.name} -> {v.name}: {_signed_usd(extra_cost)} a task and {extra_tasks:+.1f} solved tasks "
                f"of {tasks}: not worth it"
            )
            out.append(Upgrade(chain.name, v.name, extra_cost, extra_share, None, sentence))
    return out


def _signed_usd(value: float) -> str:
    return usd(value) if value < 0 else "+" + usd(value)


def _projections(variants: list[VariantFigures], tasks: int) -> list[Projection]:
    out = []
    for v in variants:
        if not v.tasks:
            continue
        per_task = None if v.cost.total_usd is None else v.cost.total_usd / v.tasks
        out.append(
            Projection(
                v.name,
                tasks,
                v.rollouts / v.tasks,
                None if per_task is None else per_task * tasks,
                v.solved_tasks / v.tasks * tasks,
            )
        )
    return out


def decide(a: Analysis, *, margin: float = DEFAULT_MARGIN, project_tasks: int | None = None) -> Verdict:
    """The verdict on ``a``: picks per goal, upgrade prices, projected costs."""
    tasks = project_tasks or int((a.task_rollouts > 0).any(axis=0).sum())
    ranked = sorted(
        (v for v in a.variants if v.reward.mean is not None),
        key=lambda v: (-(v.reward.mean or 0.0), _cost(v) if _cost(v) is not None else math.inf, v.name),
    )
    picks = []
    if ranked:
        picks = [_best_reward(a, ranked), _per_dollar(a, ranked), _within_margin(a, ranked, margin)]
    return Verdict(margin, tasks, picks, _upgrades(a.variants, tasks), _projections(a.variants, tasks))
