"""The report's figures: per variant, per pair of variants, per subset; numpy throughout.

Definitions (docs/compare.md explains them for readers):

- A *task*'s reward is the mean over its rollouts, a failed rollout or one without a reward
  counting 0. A variant's headline **reward** is the mean of its tasks' rewards (the mean
  over rollouts when every task has as many), with a 95% **bootstrap** interval: tasks
  resampled with replacement, ``n_boot`` times, the 2.5th and 97.5th percentiles of the
  resampled means. ``mean_succeeded`` is the plain mean over rollouts that have a reward.
- **pass@k** for every k up to the most rollouts a task has: per task with n rollouts of
  which c reached ``pass_threshold``, the unbiased estimator 1 - C(n-c, k) / C(n, k),
  averaged over the tasks with n >= k.
- A task is **solved** when its reward (mean over its rollouts) reaches ``pass_threshold``;
  cost per solved task = the variant's total cost / its solved tasks.
- **Paired comparison** of two variants, on the tasks both ran: d = reward_b - reward_a per
  task; the mean of d, a 95% paired bootstrap interval (tasks resampled), and a two-sided
  p-value from a sign-flip permutation test (under "no difference" each d is as likely
  +d as -d; p = (1 + #{|mean of flipped d| >= |mean d|}) / (1 + n_perm)).

Resampling is exact but cheap: a mean over resampled tasks depends only on how often each
distinct value is drawn, so with few distinct values (binary rewards, a few repeats) a
resample is one multinomial draw over those values instead of a draw per task. Every
random stream is seeded from ``seed`` and the variants' names: a report is reproducible,
and adding a variant does not move another's interval.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nemo_gym_cli.report.records import Records

__all__ = ["Analysis", "Comparison", "GroupRow", "VariantFigures", "analyse", "bootstrap_means", "sign_flip_p"]

#: Distinct values up to which a resample is a multinomial draw over the values.
_FEW_VALUES = 512
#: Elements per block when resampling task by task (bounds memory).
_BLOCK = 4_000_000
#: Subsets shown one by one; the rest are pooled as "(other)".
MAX_GROUPS = 30
SIGNIFICANCE = 0.05


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(n.encode()) for n in names)])


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_boot`` resamples (with replacement, same size) of ``values``."""
    n = len(values)
    if n == 0:
        return np.zeros(0)
    distinct, counts = np.unique(values, return_counts=True)
    if len(distinct) <= _FEW_VALUES:
        draws = rng.multinomial(n, counts / n, size=n_boot)
        return draws @ distinct / n
    out = np.empty(n_boot)
    step = max(1, _BLOCK // n)
    for start in range(0, n_boot, step):
        rows = min(step, n_boot - start)
        out[start : start + rows] = values[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return out


def sign_flip_p(diffs: np.ndarray, n_perm: int, rng: np.random.Generator) -> float:
    """Two-sided p-value of "mean(diffs) is 0" by random sign flips of the paired differences."""
    n = len(diffs)
    observed = abs(diffs.mean()) if n else 0.0
    nonzero = np.abs(diffs[diffs != 0])
    if observed == 0 or len(nonzero) == 0:
        return 1.0
    distinct, counts = np.unique(nonzero, return_counts=True)
    if len(distinct) <= _FEW_VALUES:
        positive = rng.binomial(counts, 0.5, size=(n_perm, len(distinct)))
        flipped = np.abs((2 * positive - counts) @ distinct) / n
    else:
        flipped = np.empty(n_perm)
        step = max(1, _BLOCK // len(nonzero))
        for start in range(0, n_perm, step):
            rows = min(step, n_perm - start)
            signs = rng.integers(0, 2, size=(rows, len(nonzero))) * 2 - 1
            flipped[start : start + rows] = np.abs(signs @ nonzero) / n
    extreme = np.count_nonzero(flipped >= observed * (1 - 1e-9))
    return float((1 + extreme) / (1 + n_perm))


def pass_at_k(n: np.ndarray, c: np.ndarray) -> tuple[dict[int, float], dict[int, int]]:
    """pass@k (unbiased estimator) for k = 1..max(n), averaged over tasks with n >= k, and
    how many tasks each k averages over."""
    values: dict[int, float] = {}
    tasks: dict[int, int] = {}
    if len(n) == 0:
        return values, tasks
    pairs, counts = np.unique(np.stack([n, c], axis=1), axis=0, return_counts=True)
    for k in range(1, int(n.max()) + 1):
        total, weight = 0.0, 0
        for (ni, ci), count in zip(pairs.tolist(), counts.tolist(), strict=True):
            if ni >= k:
                total += count * (1 - math.comb(ni - ci, k) / math.comb(ni, k))
                weight += count
        values[k], tasks[k] = total / weight, weight
    return values, tasks


@dataclass(frozen=True)
class Reward:
    mean: float | None  # failures and rows without a reward count 0; mean of task means
    ci95_low: float | None
    ci95_high: float | None
    mean_succeeded: float | None  # over rollouts that have a reward
    scored_rollouts: int


@dataclass(frozen=True)
class Cost:
    total_usd: float | None  # rows and failures that say what they cost; None: none says
    per_rollout_usd: float | None
    per_solved_task_usd: float | None
    rollouts_without_cost: int  # succeeded rollouts whose usage has no cost


@dataclass(frozen=True)
class Latency:
    p50_s: float | None
    p95_s: float | None
    samples: int


@dataclass(frozen=True)
class Fallback:
    rollouts: int  # served by another model than the one requested
    known: int  # rollouts whose requested and served model are both known
    share: float | None


@dataclass(frozen=True)
class CacheFigures:
    """A variant's model calls answered from the response cache (its runs' metrics files)."""

    hits: int
    misses: int
    saved_usd: float  # what the hits' answers cost when they were paid for


@dataclass(frozen=True)
class VariantFigures:
    name: str
    sources: list[str]
    requested_models: dict[str, int]
    overrides: dict[str, Any]
    run: dict[str, Any] | None
    rollouts: int  # succeeded + failed
    succeeded: int
    failed: int
    failures_by_kind: dict[str, int]
    tasks: int
    solved_tasks: int
    reward: Reward
    pass_at_k: dict[int, float]
    pass_at_k_tasks: dict[int, int]
    tokens_in: int
    tokens_out: int
    rollouts_without_usage: int
    rollouts_without_reward: int
    cost: Cost
    latency: Latency
    rollouts_per_s: float | None
    models: dict[str, int]
    providers: dict[str, int]
    fallback: Fallback
    response_cache: CacheFigures | None = None  # None: collected without +cache=true


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str  # the better of the two on these tasks (diff >= 0)
    tasks: int
    diff: float | None  # mean over common tasks of reward_b - reward_a
    ci95_low: float | None
    ci95_high: float | None
    p_value: float | None
    significant: bool
    sentence: str


@dataclass(frozen=True)
class GroupRow:
    value: str
    tasks: int
    reward: dict[str, float | None]  # variant -> mean task reward in this subset


@dataclass
class Analysis:
    """Everything the renderers need: the figures, and the arrays behind the plots."""

    records: Records
    keep: np.ndarray  # rollouts counted (duplicates and stale failures dropped)
    task_rollouts: np.ndarray  # variants x tasks: rollouts (0: not run)
    task_passes: np.ndarray  # variants x tasks: rollouts that passed
    task_reward: np.ndarray  # variants x tasks: mean reward (NaN: not run)
    variants: list[VariantFigures]
    comparisons: list[Comparison]
    groups: list[GroupRow]
    pareto: list[str]
    pass_threshold: float
    seed: int
    n_boot: int
    n_perm: int
    warnings: list[str] = field(default_factory=list)


def _counted(r: Records, warnings: list[str]) -> np.ndarray:
    """Which rollouts count: the first row of each (variant, task, rollout), and a failure
    only when no row of the same rollout exists (a stale failures file)."""
    variant, task = np.frombuffer(r.variant, np.int16), np.frombuffer(r.task, np.int32)
    rollout, failed = np.frombuffer(r.rollout, np.int32), np.frombuffer(r.failed, np.int8).astype(bool)
    keep = np.ones(len(variant), bool)
    has_task = task >= 0
    span = int(rollout.max()) + 1 if len(rollout) else 1
    key = (variant.astype(np.int64) * max(len(r.task_keys), 1) + task) * span + rollout
    rows = np.flatnonzero(has_task & ~failed)
    first = np.zeros(len(rows), bool)
    first[np.unique(key[rows], return_index=True)[1]] = True
    keep[rows[~first]] = False
    fails = np.flatnonzero(has_task & failed)
    stale = np.isin(key[fails], key[rows])
    fresh = np.zeros(len(fails), bool)
    fresh[np.unique(key[fails], return_index=True)[1]] = True
    keep[fails[stale | ~fresh]] = False
    if (~first).sum():
        warnings.append(f"{int((~first).sum())} duplicate rows (same variant, task and rollout): only the first counts")
    if stale.sum():
        warnings.append(
            f"{int(stale.sum())} failures have a row for the same rollout (a stale failures file): left out"
        )
    return keep


def _named_counts(codes: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    return {names[i]: int(c) for i, c in sorted(enumerate(counts), key=lambda x: -x[1]) if c}


def _variant(a: Analysis, v: int, name: str) -> VariantFigures:
    r, keep = a.records, a.keep
    mine = keep & (np.frombuffer(r.variant, np.int16) == v)
    failed = np.frombuffer(r.failed, np.int8).astype(bool)
    ok, bad = mine & ~failed, mine & failed
    reward = np.frombuffer(r.reward, np.float64)
    n, c = a.task_rollouts[v], a.task_passes[v]
    ran = n > 0
    task_means = a.task_reward[v, ran]
    headline = Reward(None, None, None, None, 0)
    scored = ok & ~np.isnan(reward)
    if task_means.size:
        boot = bootstrap_means(task_means, a.n_boot, _rng(a.seed, name))
        low, high = np.percentile(boot, [2.5, 97.5])
        mean_ok = float(reward[scored].mean()) if scored.any() else None
        headline = Reward(float(task_means.mean()), float(low), float(high), mean_ok, int(scored.sum()))
    pass_k, pass_k_tasks = pass_at_k(n[ran].astype(np.int64), c[ran].astype(np.int64))
    solved = int((task_means >= a.pass_threshold).sum())
    cost = np.frombuffer(r.cost, np.float64)[mine]
    total = float(np.nansum(cost)) if (~np.isnan(cost)).any() else None
    rollouts = int(mine.sum())
    tok_in, tok_out = np.frombuffer(r.tokens_in, np.int64)[ok], np.frombuffer(r.tokens_out, np.int64)[ok]
    latency = np.frombuffer(r.latency, np.float64)[ok]
    latency = latency[~np.isnan(latency)]
    p50, p95 = (float(x) for x in np.percentile(latency, [50, 95])) if latency.size else (None, None)
    fallback = np.frombuffer(r.fallback, np.int8)[ok]
    known = int((fallback >= 0).sum())
    source_ids = sorted(set(np.frombuffer(r.source, np.int16)[mine].tolist()))
    sources = [r.sources[i] for i in source_ids]
    rate = None
    if len(sources) == 1:
        only_mine = not (keep & (np.frombuffer(r.source, np.int16) == source_ids[0]) & ~mine).any()
        rate = sources[0].rollouts_per_s if only_mine else None
    runs = {str(s.path): s.run for s in sources if s.run}
    return VariantFigures(
        name=name,
        sources=[str(s.path) for s in sources],
        requested_models=dict(r.requested.get(v, Counter()).most_common()),
        overrides=next((s.overrides for s in sources if s.overrides), {}),
        run=next(iter(runs.values())) if len(runs) == 1 else (runs or None),
        rollouts=rollouts,
        succeeded=int(ok.sum()),
        failed=int(bad.sum()),
        failures_by_kind=_named_counts(np.frombuffer(r.kind, np.int16)[bad], r.kinds.names),
        tasks=int(ran.sum()),
        solved_tasks=solved,
        reward=headline,
        pass_at_k=pass_k,
        pass_at_k_tasks=pass_k_tasks,
        tokens_in=int(tok_in[tok_in >= 0].sum()),
        tokens_out=int(tok_out[tok_out >= 0].sum()),
        rollouts_without_usage=int((tok_in < 0).sum()),
        rollouts_without_reward=int((ok & np.isnan(reward)).sum()),
        cost=Cost(
            total_usd=total,
            per_rollout_usd=total / rollouts if total is not None and rollouts else None,
            per_solved_task_usd=total / solved if total is not None and solved else None,
            rollouts_without_cost=int(np.isnan(np.frombuffer(r.cost, np.float64)[ok]).sum()),
        ),
        latency=Latency(p50, p95, int(latency.size)),
        rollouts_per_s=rate,
        models=_named_counts(np.frombuffer(r.model, np.int16)[ok], r.models.names),
        providers=_named_counts(np.frombuffer(r.provider, np.int16)[ok], r.providers.names),
        fallback=Fallback(int((fallback == 1).sum()), known, float((fallback == 1).sum() / known) if known else None),
        response_cache=_cache_figures([s.metrics for s in sources]),
    )


def _cache_figures(docs: list[dict[str, Any] | None]) -> CacheFigures | None:
    """The response cache's counts summed over the metrics files of a variant's outputs."""
    found = (d.get("response_cache") for d in docs if isinstance(d, dict))
    blocks: list[dict[str, Any]] = [b for b in found if isinstance(b, dict)]
    if not blocks:
        return None

    def total(key: str) -> float:
        values = (b.get(key) for b in blocks)
        return sum(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))

    return CacheFigures(int(total("hits")), int(total("misses")), float(total("saved_usd")))


def _format_p(p: float) -> str:
    return f"p={p:.3f}" if p >= 0.001 else "p<0.001"


def _compare(a: Analysis, i: int, j: int) -> Comparison:
    names = [v.name for v in a.variants]
    common = (a.task_rollouts[i] > 0) & (a.task_rollouts[j] > 0)
    d = a.task_reward[j, common] - a.task_reward[i, common]
    if d.size and d.mean() < 0:
        i, j, d = j, i, -d
    first, second = names[i], names[j]
    if not d.size:
        return Comparison(
            first, second, 0, None, None, None, None, False, f"{first} and {second} ran no task in common"
        )
    rng = _rng(a.seed, *sorted((first, second)))
    low, high = (float(x) for x in np.percentile(bootstrap_means(d, a.n_boot, rng), [2.5, 97.5]))
    p = sign_flip_p(d, a.n_perm, rng)
    diff = float(d.mean())
    figures = f"{diff:+.3f}, 95% CI {low:+.3f}..{high:+.3f}, {_format_p(p)} (n={d.size} tasks)"
    significant = p < SIGNIFICANCE and diff != 0
    if significant:
        sentence = f"{second} beats {first} by {figures}"
    else:
        sentence = f"no significant difference between {second} and {first}: {figures}"
    return Comparison(first, second, int(d.size), diff, low, high, p, significant, sentence)


def _groups(a: Analysis) -> list[GroupRow]:
    r = a.records
    if not r.group_by or not len(r.groups):
        return []
    group = np.frombuffer(r.task_group, np.int32)
    ran_any = (a.task_rollouts > 0).any(axis=0)
    counts = np.bincount(group[ran_any & (group >= 0)], minlength=len(r.groups))
    order = [g for g in np.argsort(-counts, kind="stable").tolist() if counts[g]]
    shown, pooled = order[:MAX_GROUPS], order[MAX_GROUPS:]
    selections = [(r.groups.names[g], group == g) for g in shown]
    if pooled:
        selections.append(("(other)", np.isin(group, pooled)))
    if (ran_any & (group < 0)).any():
        selections.append(("(none)", group < 0))
    rows = []
    for value, tasks in selections:
        reward: dict[str, float | None] = {}
        for v, figures in enumerate(a.variants):
            cells = a.task_reward[v, tasks & (a.task_rollouts[v] > 0)]
            reward[figures.name] = float(cells.mean()) if cells.size else None
        rows.append(GroupRow(value, int((tasks & ran_any).sum()), reward))
    return rows


def _pareto(variants: list[VariantFigures]) -> list[str]:
    """Variants no other beats on both cost per rollout (lower) and reward (higher)."""
    points = [
        (v.name, v.cost.per_rollout_usd, v.reward.mean)
        for v in variants
        if v.cost.per_rollout_usd is not None and v.reward.mean is not None
    ]
    return [
        name
        for name, cost, reward in points
        if not any(c <= cost and m >= reward and (c < cost or m > reward) for _, c, m in points)
    ]


def analyse(
    records: Records, *, pass_threshold: float = 1.0, seed: int = 0, n_boot: int = 2000, n_perm: int = 10000
) -> Analysis:
    """All figures of the report from the rollouts read."""
    warnings: list[str] = []
    keep = _counted(records, warnings)
    n_variants, n_tasks = len(records.variants), len(records.task_keys)
    task = np.frombuffer(records.task, np.int32)
    failed = np.frombuffer(records.failed, np.int8).astype(bool)
    reward = np.frombuffer(records.reward, np.float64)
    rows = keep & (task >= 0)
    cell = np.frombuffer(records.variant, np.int16)[rows].astype(np.int64) * n_tasks + task[rows]
    scored = ~failed & ~np.isnan(reward)
    score = np.where(scored, reward, 0.0)[rows]
    passed = (scored & (reward >= pass_threshold))[rows]
    size = n_variants * n_tasks
    n = np.bincount(cell, minlength=size).reshape(n_variants, n_tasks)
    sums = np.bincount(cell, weights=score, minlength=size).reshape(n_variants, n_tasks)
    passes = np.bincount(cell, weights=passed, minlength=size).reshape(n_variants, n_tasks)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(n > 0, sums / np.maximum(n, 1), np.nan)
    a = Analysis(records, keep, n, passes.astype(np.int64), means, [], [], [], [], pass_threshold, seed, n_boot, n_perm)
    a.variants = [_variant(a, v, name) for v, name in enumerate(records.variants.names)]
    a.comparisons = [_compare(a, i, j) for i in range(n_variants) for j in range(i + 1, n_variants)]
    a.groups = _groups(a)
    a.pareto = _pareto(a.variants)
    a.warnings = warnings
    return a
