"""The report's plots, drawn by matplotlib as SVG text to inline in ``report.html``.

Inline SVG keeps the report one file that works offline, needs no charting JavaScript, and
stays sharp at any zoom. Sizes stay bounded whatever the input: distributions are drawn
from percentiles (never one mark per rollout) and the task heatmap has at most
``HEATMAP_ROWS`` rows, binning tasks of similar difficulty beyond that.

Each function returns ``None`` when its data is absent (no costs, no latencies, no subsets);
the report says so instead of drawing an empty plot. Figures are built with
``matplotlib.figure.Figure`` directly: no pyplot, no global figure state, no GUI backend.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from typing import Any, cast

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from nemo_gym_cli.report.stats import Analysis

__all__ = [
    "HEATMAP_ROWS",
    "cost_distribution",
    "race",
    "heatmap",
    "latency_distribution",
    "reward_by_group",
    "reward_vs_cost",
]

#: Most rows of the task heatmap; more tasks are binned by difficulty.
HEATMAP_ROWS = 60
_COLORS = cast(Any, matplotlib.colormaps["tab10"]).colors  # a ListedColormap: its colour list


def _color(i: int) -> tuple[float, float, float]:
    return _COLORS[i % len(_COLORS)]


def _svg(fig: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element: text kept as text (small, searchable), no date,
    ids salted with the plot's name so several SVGs can share one page."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def reward_vs_cost(a: Analysis) -> str | None:
    """Mean reward (95% CI) against cost per rollout, the Pareto frontier drawn and ringed."""
    points = [
        (i, v) for i, v in enumerate(a.variants) if v.cost.per_rollout_usd is not None and v.reward.mean is not None
    ]
    if not points:
        return None
    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    for i, v in points:
        low, high = v.reward.ci95_low or 0.0, v.reward.ci95_high or 0.0
        mean = v.reward.mean or 0.0
        cost = v.cost.per_rollout_usd or 0.0
        ax.errorbar(cost, mean, yerr=[[mean - low], [high - mean]], fmt="o", color=_color(i), capsize=3)
        ax.annotate(v.name, (cost, mean), textcoords="offset points", xytext=(6, 4), fontsize=8)
    frontier = sorted(
        (v.cost.per_rollout_usd or 0.0, v.reward.mean or 0.0) for _, v in points if v.name in set(a.pareto)
    )
    if frontier:
        xs, ys = zip(*frontier, strict=True)
        ax.step(xs, ys, where="post", color="0.3", linestyle="--", linewidth=1, label="Pareto frontier")
        ax.scatter(xs, ys, s=160, facecolors="none", edgecolors="0.3", linewidths=1)
    costs = [v.cost.per_rollout_usd or 0.0 for _, v in points]
    if min(costs) > 0 and max(costs) / min(costs) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("cost per rollout (USD)")
    ax.set_ylabel("mean reward (95% CI)")
    ax.grid(alpha=0.3)
    if frontier:
        ax.legend(fontsize=8, loc="lower right")
    return _svg(fig, "reward_vs_cost")


def heatmap(a: Analysis) -> str | None:
    """Tasks (rows, hardest on top) x variants, coloured by each task's mean reward."""
    names = [v.name for v in a.variants]
    ran = (a.task_rollouts > 0).any(axis=0)
    if not ran.any() or not names:
        return None
    matrix = a.task_reward[:, ran].T  # tasks x variants
    keys = [k for k, r in zip(a.records.task_keys, cast("list[bool]", ran.tolist()), strict=True) if r]
    with _quiet():
        difficulty = np.nanmean(matrix, axis=1)
    order = np.argsort(difficulty, kind="stable")
    matrix = matrix[order]
    binned = len(order) > HEATMAP_ROWS
    if binned:
        bins = np.array_split(np.arange(len(order)), HEATMAP_ROWS)
        with _quiet():
            matrix = np.vstack([np.nanmean(matrix[b], axis=0) for b in bins])
        per_row = f"{len(bins[-1])}-{len(bins[0])}"
    fig = Figure(figsize=(1.6 + 0.9 * len(names), 1.6 + 0.16 * len(matrix)))
    ax = fig.add_subplot()
    cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="0.85")
    finite = matrix[np.isfinite(matrix)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    high = max(1.0, float(finite.max())) if finite.size else 1.0
    image = ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", cmap=cmap, vmin=low, vmax=high)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    if binned:
        ax.set_yticks([])
        ax.set_ylabel(f"{len(order)} tasks, hardest at the top\n(each row: {per_row} tasks of similar difficulty)")
    else:
        ax.set_yticks(range(len(order)), [_task_label(keys[i]) for i in order], fontsize=7)
        ax.set_ylabel("task (hardest at the top)")
    fig.colorbar(image, ax=ax, label="mean reward (grey: not run)", shrink=0.8)
    return _svg(fig, "heatmap")


def _task_label(key: int | str) -> str:
    return f"#{key}" if isinstance(key, int) else str(key)[2:10]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """All-NaN slices are expected (a task no variant scored): no RuntimeWarning for them."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def reward_by_group(a: Analysis) -> str | None:
    """Mean task reward per subset (``group_by``) and variant, as grouped horizontal bars."""
    if not a.groups:
        return None
    names = [v.name for v in a.variants]
    rows = a.groups
    fig = Figure(figsize=(7.5, 1.2 + 0.22 * len(rows) * max(1, len(names)) ** 0.6))
    ax = fig.add_subplot()
    height = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        values = [row.reward.get(name) for row in rows]
        ys = [k + i * height for k in range(len(rows))]
        ax.barh(ys, [v if v is not None else 0.0 for v in values], height=height, color=_color(i), label=name)
    ax.set_yticks([k + 0.4 - height / 2 for k in range(len(rows))], [f"{r.value} ({r.tasks})" for r in rows])
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"mean reward by {a.records.group_by} (tasks)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig, "reward_by_group")


def _distribution(a: Analysis, column: str, label: str, name: str) -> str | None:
    r = a.records
    values = np.frombuffer(getattr(r, column), np.float64)
    variant = np.frombuffer(r.variant, np.int16)
    ok = a.keep & ~np.frombuffer(r.failed, np.int8).astype(bool) & ~np.isnan(values)
    stats, labels = [], []
    for i, v in enumerate(a.variants):
        mine = values[ok & (variant == i)]
        if not mine.size:
            continue
        p5, p25, p50, p75, p95 = np.percentile(mine, [5, 25, 50, 75, 95]).tolist()
        stats.append({"med": p50, "q1": p25, "q3": p75, "whislo": p5, "whishi": p95, "mean": float(mine.mean())})
        labels.append(f"{v.name}\n(n={mine.size})")
    if not stats:
        return None
    fig = Figure(figsize=(1.8 + 1.1 * len(stats), 3.6))
    ax = fig.add_subplot()
    ax.bxp(stats, showfliers=False, showmeans=True, patch_artist=True)
    for i, patch in enumerate(ax.patches):
        patch.set_facecolor((*_color(i), 0.35))
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig, name)


def latency_distribution(a: Analysis) -> str | None:
    """Latency per rollout (``_ng_latency_s``): box 25-75%, whiskers 5-95%, median, mean."""
    return _distribution(a, "latency", "latency per rollout (s); whiskers 5-95%", "latency")


def cost_distribution(a: Analysis) -> str | None:
    """Cost per succeeded rollout: box 25-75%, whiskers 5-95%, median, mean."""
    return _distribution(a, "cost", "cost per rollout (USD); whiskers 5-95%", "cost")


def race(doc: dict[str, Any]) -> str | None:
    """An adaptive sweep's race: each pair's confidence sequence for the difference of mean
    rewards against the tasks both ran (a band per pair, to where one of them left), the
    lines 0 and +-margin, and each drop marked where it happened."""
    rounds = doc.get("rounds") or []
    if not rounds:
        return None
    pairs: dict[str, list[tuple[int, float, float]]] = {}
    for r in rounds:
        for key, (low, high, n) in r["race"]["pairs"].items():
            points = pairs.setdefault(key, [])
            if n and (not points or points[-1][0] != n):
                points.append((int(n), float(low), float(high)))
    fig = Figure(figsize=(7.5, 4.2))
    ax = fig.add_subplot()
    for i, (key, points) in enumerate(pairs.items()):
        if not points:
            continue
        a, b = key.split("|", 1)
        # each round's interval drawn over the round's tasks, ending where it was computed
        xs = [0] + [p[0] for p in points]
        lows = [points[0][1]] + [p[1] for p in points]
        highs = [points[0][2]] + [p[2] for p in points]
        ax.fill_between(xs, lows, highs, step="pre", alpha=0.18, color=_color(i))
        ax.step(xs, lows, where="pre", color=_color(i), linewidth=1.2, label=f"{a} - {b}")
        ax.step(xs, highs, where="pre", color=_color(i), linewidth=1.2)
    margin = float((doc.get("settings") or {}).get("margin") or 0.0)
    ax.axhline(0.0, color="0.2", linewidth=0.8)
    if margin:
        for y in (margin, -margin):
            ax.axhline(y, color="0.5", linewidth=0.8, linestyle=":")
    for d in doc.get("drops") or []:
        ax.axvline(d["tasks"], color="0.4", linewidth=0.8, linestyle="--")
        ax.annotate(f"{d['variant']} out", (d["tasks"], 0.95), rotation=90, fontsize=7, ha="right", va="top")
    ax.set_ylim(-1.02, 1.02)
    ax.set_xlabel("tasks both variants ran")
    ax.set_ylabel("mean reward difference (confidence sequence)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _svg(fig, "race")
