"""NeMo Gym 0.7's ``POST /aggregate_metrics``: a run's verify rows summed up, in its shapes.

NeMo Gym 0.7's collector (and ``gym eval aggregate``) sends every finished row of a run to
its environment server, which hands them to the resources server; what comes back is
written beside the output as ``<stem>_aggregate_metrics.json`` and is what ``gym eval
compare`` reads. Our resources servers answer it with ``aggregate_metrics(rows)`` (agents
and our ``legacy_agent`` relay forward it), so 0.7's tools work on our servers and on our
outputs. The shapes are 0.7's (``nemo_gym/config_types.py`` ``AggregateMetrics``):

- ``agent_metrics``: ``mean/``, ``max/``, ``min/``, ``median/``, ``std/`` (sample std) of
  every numeric field of the rows (``reward``, other metrics, booleans as 0/1, and the
  token counts of ``response.usage``), then, with more than one repeat, each repeat's mean
  summarised across repeats (``mean_across_repeats/mean/reward``, ``se_...``, a 95%
  t-interval ``ci_low_95_...``/``ci_high_95_...``), and ``num_repeats``;
- ``key_metrics``: the ``mean/`` entries (a server may choose others);
- ``group_level_metrics``: the same statistics per task, with ``rollout_infos``;
- ``repeat_level_metrics``: per repeat index, across tasks (with more than one repeat).

Rows with ``mask_sample`` true are left out of every figure and counted under
``coverage/*``, as 0.7 does. Standard library only: servers do not install numpy.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["aggregate_metrics", "t_interval"]

TASK = "_ng_task_index"
ROLLOUT = "_ng_rollout_index"

Row = dict[str, Any]


def _numbers(row: Row) -> dict[str, float]:
    """The numeric fields of a verify row: top-level ones (not ``_``-prefixed) and the
    token counts of ``response.usage``."""
    out: dict[str, float] = {}
    response = row.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    for source in (row, usage if isinstance(usage, dict) else {}):
        for key, value in source.items():
            if not isinstance(key, str) or key.startswith("_") or key in ("response", "mask_sample"):
                continue
            if isinstance(value, bool):
                out[key] = float(value)
            elif isinstance(value, (int, float)) and math.isfinite(value):
                out[key] = float(value)
    return out


def _rollout_numbers(row: Row) -> dict[str, Any]:
    """A ``rollout_infos`` entry's figures, in 0.7's order: the reward, the usage counts,
    then the row's other numeric fields (booleans as 0/1)."""
    out: dict[str, Any] = {}
    if "reward" in row:
        out["reward"] = row["reward"]
    response = row.get("response")
    usage = response.get("usage") if isinstance(response, dict) else None
    for source, skip in ((usage if isinstance(usage, dict) else {}, ()), (row, ("reward", "response", "mask_sample"))):
        for key, value in source.items():
            if isinstance(key, str) and not key.startswith("_") and key not in skip:
                if isinstance(value, bool):
                    out[key] = int(value)
                elif isinstance(value, (int, float)):
                    out[key] = value
    return out


def _describe(columns: dict[str, list[float]]) -> dict[str, float]:
    """mean, max, min, median and sample std of each column (std 0 for one value)."""
    out: dict[str, float] = {}
    for stat in ("mean", "max", "min", "median", "std"):
        for name, values in columns.items():
            if not values:
                continue
            if stat == "mean":
                out[f"mean/{name}"] = statistics.fmean(values)
            elif stat == "max":
                out[f"max/{name}"] = max(values)
            elif stat == "min":
                out[f"min/{name}"] = min(values)
            elif stat == "median":
                out[f"median/{name}"] = statistics.median(values)
            else:
                out[f"std/{name}"] = statistics.stdev(values) if len(values) > 1 else 0.0
    return out


def _columns(rows: Iterable[dict[str, float]]) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = defaultdict(list)
    for numbers in rows:
        for name, value in numbers.items():
            columns[name].append(value)
    return dict(columns)


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (Lentz's continued fraction)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * result / a


def _t_cdf(t: float, df: int) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def _t_quantile(p: float, df: int) -> float:
    """Student's t quantile, by bisection on the CDF (df >= 1, 0.5 < p < 1)."""
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if _t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def t_interval(mean: float, sem: float, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The two-sided t-interval ``mean ± t(n-1) * sem``; None for fewer than two values."""
    if n <= 1:
        return None
    if sem == 0:
        return mean, mean
    half = _t_quantile(0.5 + confidence / 2.0, n - 1) * sem
    return mean - half, mean + half


def _repeat_level(by_repeat: dict[int, list[tuple[int, dict[str, float]]]], tasks: int) -> list[dict[str, Any]]:
    out = []
    for rollout in sorted(by_repeat):
        members = by_repeat[rollout]
        entry: dict[str, Any] = {
            ROLLOUT: rollout,
            "sample_count": len({task for task, _ in members}),
            "missing_count": tasks - len({task for task, _ in members}),
        }
        columns = _columns(numbers for _, numbers in members)
        for name in sorted(columns):  # 0.7 (pandas' Index.difference) sorts these columns
            values = columns[name]
            n = len(values)
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if n > 1 else 0.0
            sem = std / math.sqrt(n)
            quartiles = statistics.quantiles(values, n=4, method="inclusive") if n > 1 else [values[0]] * 3
            entry.update(
                {
                    f"mean/{name}": mean,
                    f"median/{name}": statistics.median(values),
                    f"std/{name}": std,
                    f"sem/{name}": sem,
                    f"min/{name}": min(values),
                    f"max/{name}": max(values),
                    f"p25/{name}": quartiles[0],
                    f"p75/{name}": quartiles[2],
                }
            )
            if (ci := t_interval(mean, sem, n)) is not None:
                entry[f"ci_low_95/{name}"], entry[f"ci_high_95/{name}"] = ci
        out.append(entry)
    return out


def _across_repeats(repeat_level: list[dict[str, Any]]) -> dict[str, float]:
    """Each repeat's ``mean/<field>`` treated as one observation, summarised across repeats."""
    columns: dict[str, list[float]] = defaultdict(list)
    for entry in repeat_level:
        for key, value in entry.items():
            if key.startswith("mean/"):
                columns[key].append(value)
    out: dict[str, float] = {}
    for key, values in columns.items():
        n = len(values)
        mean = statistics.fmean(values)
        std = statistics.stdev(values) if n > 1 else 0.0
        se = std / math.sqrt(n)
        out[f"mean_across_repeats/{key}"] = mean
        out[f"median_across_repeats/{key}"] = statistics.median(values)
        out[f"std_across_repeats/{key}"] = std
        out[f"min_across_repeats/{key}"] = min(values)
        out[f"max_across_repeats/{key}"] = max(values)
        out[f"se_across_repeats/{key}"] = se
        if (ci := t_interval(mean, se, n)) is not None:
            out[f"ci_low_95_across_repeats/{key}"], out[f"ci_high_95_across_repeats/{key}"] = ci
    return out


def aggregate_metrics(
    rows: list[Row],
    *,
    compute_metrics: Callable[[list[list[Row]]], dict[str, Any]] | None = None,
    key_metrics: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """0.7's ``AggregateMetrics`` of ``rows`` (verify rows with ``_ng_task_index`` and
    ``_ng_rollout_index``). ``compute_metrics`` gets the scored rows grouped by task and
    adds to ``agent_metrics``; ``key_metrics`` picks the headline figures from them."""
    empty: dict[str, Any] = {
        "group_level_metrics": [],
        "agent_metrics": {},
        "key_metrics": {},
        "perf_summary": None,
        "repeat_level_metrics": [],
    }
    if not rows:
        return empty
    scored = [r for r in rows if not r.get("mask_sample")]
    masked = len(rows) - len(scored)
    coverage: dict[str, Any] = {}
    if masked:
        measured = {r.get(TASK, 0) for r in scored}
        coverage = {
            "coverage/measured_rollouts": len(scored),
            "coverage/masked_rollouts": masked,
            "coverage/measured_tasks": len(measured),
            "coverage/fully_masked_tasks": len({r.get(TASK, 0) for r in rows} - measured),
        }
    if not scored:
        return {**empty, "agent_metrics": dict(coverage), "key_metrics": dict(coverage)}

    by_task: dict[int, list[Row]] = defaultdict(list)
    by_repeat: dict[int, list[tuple[int, dict[str, float]]]] = defaultdict(list)
    numbers_of: list[dict[str, float]] = []
    for row in scored:
        task, rollout = int(row.get(TASK, 0)), int(row.get(ROLLOUT, 0))
        numbers = _numbers(row)
        numbers_of.append(numbers)
        by_task[task].append(row)
        by_repeat[rollout].append((task, numbers))
    # 0.7 counts what it was sent: a task's expected rollouts are the scored rows it got (a
    # masked row is not expected; a rollout never sent is not known here).
    expected = {task: len(members) for task, members in by_task.items()}

    groups = []
    for task in sorted(by_task):
        members = sorted(by_task[task], key=lambda r: int(r.get(ROLLOUT, 0)))
        infos = []
        for row in members:
            info: dict[str, Any] = {
                "rollout_id": f"{task}:{int(row.get(ROLLOUT, 0))}",
                TASK: task,
                ROLLOUT: int(row.get(ROLLOUT, 0)),
            }
            info.update(_rollout_numbers(row))
            infos.append(info)
        group: dict[str, Any] = {TASK: task, **_describe(_columns(_numbers(r) for r in members))}
        group.update(
            {
                # 0.7 profiles synthetic input rows here, so its "sample" is always this.
                "sample": {"agent_ref": {"name": "agent"}},
                "num_rollouts": len(members),
                "expected_num_rollouts": expected[task],
                "missing_num_rollouts": expected[task] - len(members),
                "reward_profile_completion_pct": 100.0 * len(members) / expected[task],
                "rollout_infos": infos,
            }
        )
        groups.append(group)

    agent: dict[str, Any] = _describe(_columns(numbers_of))
    repeat_level = _repeat_level(by_repeat, len(by_task)) if len(by_repeat) > 1 else []
    agent.update(_across_repeats(repeat_level))
    agent.update(coverage)
    if compute_metrics is not None:
        agent.update(compute_metrics([by_task[t] for t in sorted(by_task)]))
    agent["num_repeats"] = len({int(r.get(ROLLOUT, 0)) for r in rows})
    keys = key_metrics(agent) if key_metrics is not None else {k: v for k, v in agent.items() if k.startswith("mean/")}
    keys = {**keys, **coverage}
    return {
        "group_level_metrics": groups,
        "agent_metrics": agent,
        "key_metrics": keys,
        "perf_summary": None,
        "repeat_level_metrics": repeat_level,
    }
