"""The report's plots, drawn by matplotlib as SVG text to inline in ``report.html``.

Inline SVG keeps the report one file that works offline, needs no charting JavaScript, and
stays sharp at any zoom. Sizes stay bounded whatever the input: distributions are drawn
from percentiles (never one mark per rollout). The per-task view is a table, not a plot
(``task_view``): a picture cannot label 10,000 tasks. Money axes read like the tables
(``money.usd``, never ``1e-6``) and turn logarithmic when prices span more than
``LOG_SPAN`` times, so a cheap model is not flattened at 0 by a dear one.

Plots share one width (``WIDTH`` inches): the page lays them two a row, each scaled to
its column (so alike), each card as tall as its own plot: no card is stretched blank to
its neighbour's size.

Each function returns ``None`` when its data is absent (no costs, no latencies, no subsets);
the report says so instead of drawing an empty plot. Figures are built with
``matplotlib.figure.Figure`` directly: no pyplot, no global figure state, no GUI backend.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from typing import Any, cast

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from nemo_gym_cli.report.money import usd_tick
from nemo_gym_cli.report.stats import Analysis

__all__ = ["LOG_SPAN", "cost_distribution", "latency_distribution", "race", "reward_by_group", "reward_vs_cost"]

#: Width of every plot, inches (two fit side by side in a 1400-pixel window).
WIDTH = 6.4
#: Largest over smallest positive amount past which a money axis is logarithmic.
LOG_SPAN = 20
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
    fig = Figure(figsize=(WIDTH, 3.6))
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
    _money_axis(ax, "x", [v.cost.per_rollout_usd or 0.0 for _, v in points])
    ax.set_xlabel("cost per rollout")
    ax.set_ylabel("mean reward (95% CI)")
    ax.grid(alpha=0.3)
    if frontier:
        ax.legend(fontsize=8, loc="lower right")
    return _svg(fig, "reward_vs_cost")


def _money_axis(ax: Any, which: str, values: list[float]) -> None:
    """Dollar tick labels (``money.usd``) on axis ``which`` ("x" or "y"); a log scale when
    ``values`` span more than ``LOG_SPAN`` times."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > LOG_SPAN:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        decades = math.log10(max(positive) / min(positive))
        axis.set_major_locator(LogLocator(base=10, subs=(1.0,) if decades > 3 else (1.0, 2.0, 5.0)))
        axis.set_minor_formatter(NullFormatter())
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: usd_tick(value)))


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
    fig = Figure(figsize=(WIDTH, 1.2 + 0.22 * len(rows) * max(1, len(names)) ** 0.6))
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


def _distribution(a: Analysis, column: str, label: str, name: str, money: bool = False) -> str | None:
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
    fig = Figure(figsize=(WIDTH, 3.6))
    ax = fig.add_subplot()
    ax.bxp(stats, showfliers=False, showmeans=True, patch_artist=True)
    for i, patch in enumerate(ax.patches):
        patch.set_facecolor((*_color(i), 0.35))
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    if money:
        _money_axis(ax, "y", [s[k] for s in stats for k in ("whislo", "whishi")])
    ax.set_ylabel(label)
    ax.grid(axis="y", alpha=0.3)
    return _svg(fig, name)


def latency_distribution(a: Analysis) -> str | None:
    """Latency per rollout (``_ng_latency_s``): box 25-75%, whiskers 5-95%, median, mean."""
    return _distribution(a, "latency", "latency per rollout (s); whiskers 5-95%", "latency")


def cost_distribution(a: Analysis) -> str | None:
    """Cost per succeeded rollout: box 25-75%, whiskers 5-95%, median, mean."""
    return _distribution(a, "cost", "cost per rollout; whiskers 5-95%", "cost", money=True)


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
