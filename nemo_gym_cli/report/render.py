"""The report in four forms: a terminal table, ``report.md``, ``report.json``, ``report.html``.

All four show the same figures from one ``Analysis``; the table rows are built once
(``summary_rows``) so the forms cannot disagree. ``report.json`` holds every figure, full
precision, for scripts; ``report.html`` is one self-contained file (inline CSS, JavaScript
and SVG, data embedded as JSON) rendered by jinja2 with autoescaping, so text from rows
(model output, tool arguments) can never become markup.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jinja2
import orjson
from markupsafe import Markup

from nemo_gym_cli.report import plots
from nemo_gym_cli.report.money import usd
from nemo_gym_cli.report.sources import input_identity
from nemo_gym_cli.report.stats import SIGNIFICANCE, Analysis, VariantFigures
from nemo_gym_cli.report.task_view import task_view
from nemo_gym_cli.report.verdict import Verdict

__all__ = ["document", "html", "markdown", "shown_ks", "summary_rows", "terminal"]

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- formatting


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


_usd = usd


def _count(value: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.3g}{unit}"
    return str(value)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def shown_ks(a: Analysis) -> list[int]:
    """The k of pass@k worth a column: 1, 2, 4, 8, ... and the largest any variant allows."""
    top = max((max(v.pass_at_k) for v in a.variants if v.pass_at_k), default=1)
    ks = [k for k in (2**i for i in range(top.bit_length())) if k <= top]
    return ks + ([top] if top not in ks else [])


def _interval(v: VariantFigures) -> str:
    r = v.reward
    if r.mean is None:
        return "-"
    return f"{r.mean:.3f} [{r.ci95_low:.3f}, {r.ci95_high:.3f}]"


def summary_rows(a: Analysis) -> tuple[list[str], list[list[str]]]:
    """The variants table: header and one row of display strings per variant."""
    ks = shown_ks(a)
    header = [
        "variant",
        "rollouts",
        "failed",
        "reward [95% CI]",
        "reward (succeeded)",
        *(f"pass@{k}" for k in ks),
        "solved tasks",
        "tokens in/out",
        "cost",
        "$/rollout",
        "$/solved task",
        "latency p50/p95 s",
        "rollouts/s",
        "fallback served",
    ]
    rows = []
    for v in a.variants:
        latency = "-" if v.latency.p50_s is None else f"{v.latency.p50_s:.2f} / {v.latency.p95_s:.2f}"
        rows.append(
            [
                v.name,
                str(v.rollouts),
                str(v.failed),
                _interval(v),
                _fmt(v.reward.mean_succeeded),
                *(_fmt(v.pass_at_k.get(k)) for k in ks),
                f"{v.solved_tasks}/{v.tasks}",
                f"{_count(v.tokens_in)} / {_count(v.tokens_out)}",
                _usd(v.cost.total_usd),
                _usd(v.cost.per_rollout_usd),
                _usd(v.cost.per_solved_task_usd),
                latency,
                _fmt(v.rollouts_per_s, ".1f"),
                _share(v.fallback.share),
            ]
        )
    return header, rows


_TERMINAL_COLUMNS = (
    "variant",
    "rollouts",
    "failed",
    "reward [95% CI]",
    "pass@1",
    "cost",
    "$/rollout",
    "$/solved task",
    "latency p50/p95 s",
    "fallback served",
)


def verdict_lines(v: Verdict | None) -> list[str]:
    """The verdict as plain lines (terminal and report.md share them)."""
    if v is None or not v.picks:
        return []
    lines = ["Verdict (95% confidence from the paired comparisons):"]
    lines += [f"  {p.goal}: {p.sentence}" for p in v.picks]
    if v.upgrades:
        lines.append("Upgrades, cheapest first (extra dollars per extra solved task):")
        lines += [f"  {u.sentence}" for u in v.upgrades]
    if v.projections:
        lines.append(f"Projected cost of {v.project_tasks:,} tasks (at this input's rollouts per task):")
        lines += [
            f"  {p.variant}: {usd(p.cost_usd)} ({p.rollouts_per_task:.3g} rollouts a task, "
            f"~{p.solved_tasks:,.0f} solved)"
            for p in v.projections
        ]
    return lines


def projection_table(v: Verdict) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "rollouts a task", f"cost of {v.project_tasks:,} tasks", "solved (expected)"]
    rows = [[p.variant, f"{p.rollouts_per_task:.3g}", usd(p.cost_usd), f"{p.solved_tasks:,.0f}"] for p in v.projections]
    return header, rows


def upgrade_table(v: Verdict) -> tuple[list[str], list[list[str]]]:
    header = ["upgrade", "extra cost a task", f"extra solved tasks (of {v.project_tasks:,})", "$ per extra solved task"]
    rows = [
        [
            f"{u.source} -> {u.target}",
            ("+" if u.extra_usd_per_task >= 0 else "") + usd(u.extra_usd_per_task),
            f"{u.extra_solved_share * v.project_tasks:+.1f}",
            usd(u.usd_per_extra_solved_task) if u.usd_per_extra_solved_task is not None else "not worth it",
        ]
        for u in v.upgrades
    ]
    return header, rows


def terminal(a: Analysis, *, groups: bool = False, verdict: Verdict | None = None) -> str:
    """The verdict, a compact table (one line per variant) and the paired comparisons, for
    stdout; with ``groups`` (``+group_by`` given), the reward by subset too."""
    header, rows = summary_rows(a)
    ks = shown_ks(a)
    keep = [*_TERMINAL_COLUMNS[:5], *([f"pass@{ks[-1]}"] if ks[-1] > 1 else []), *_TERMINAL_COLUMNS[5:]]
    index = [header.index(c) for c in keep]
    table = [[header[i] for i in index]] + [[row[i] for i in index] for row in rows]
    lines = _aligned(table[0], table[1:])
    if verdict is not None and verdict.picks:
        lines = [*verdict_lines(verdict), "", *lines]
    if note := cache_note(a):
        lines.append(note)
    if a.comparisons:
        lines.append("")
        lines.extend(c.sentence for c in a.comparisons)
    if groups and a.groups:
        lines += ["", f"reward by {a.records.group_by}:", *_aligned(*group_table(a))]
    return "\n".join(lines)


def _aligned(header: list[str], rows: list[list[str]]) -> list[str]:
    """``header`` and ``rows`` as plain columns: the first left-aligned, the others right."""
    table = [header, *rows]
    widths = [max(len(line[c]) for line in table) for c in range(len(header))]
    return [
        "  ".join(
            cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in table
    ]


# --------------------------------------------------------------------------- report.json


def document(a: Analysis, inputs: list[str], warnings: list[str], verdict: Verdict | None = None) -> dict[str, Any]:
    """Every figure of the report, as ``report.json`` holds it."""
    r = a.records
    return {
        "generated_by": "ng_report",
        "schema_version": SCHEMA_VERSION,
        "inputs": inputs,
        "sources": [str(s.path) for s in r.sources],
        "input_paths": input_identity(inputs),
        "settings": {
            "pass_threshold": a.pass_threshold,
            "seed": a.seed,
            "bootstrap_resamples": a.n_boot,
            "permutations": a.n_perm,
            "significance": SIGNIFICANCE,
            "group_by": r.group_by,
        },
        "verdict": dataclasses.asdict(verdict) if verdict is not None else None,
        "variants": [dataclasses.asdict(v) for v in a.variants],
        "comparisons": [dataclasses.asdict(c) for c in a.comparisons],
        "pareto_frontier": a.pareto,
        "groups": [dataclasses.asdict(g) for g in a.groups],
        "input_quality": {
            "skipped_lines": r.skipped_lines,
            "unattributed_failures": r.unattributed_failures,
        },
        "warnings": warnings,
    }


def dumps(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


# --------------------------------------------------------------------------- report.md


def _md_table(header: list[str], rows: list[list[str]], *, numbers: bool = True) -> list[str]:
    def cells(values: list[str]) -> str:
        return "| " + " | ".join(v.replace("|", "\\|") for v in values) + " |"

    align = ["---"] + ["---:" if numbers else "---"] * (len(header) - 1)
    return [cells(header), "| " + " | ".join(align) + " |", *(cells(r) for r in rows)]


def _settings_line(a: Analysis) -> str:
    return (
        f"pass threshold {a.pass_threshold:g}; 95% intervals from {a.n_boot} bootstrap resamples over tasks; "
        f"p-values from {a.n_perm} sign flips; seed {a.seed}"
    )


def group_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    header = [f"{a.records.group_by}", "tasks", *(v.name for v in a.variants)]
    rows = [[g.value, str(g.tasks), *(_fmt(g.reward.get(v.name)) for v in a.variants)] for g in a.groups]
    return header, rows


def served_table(a: Analysis) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "requested", "served by (rollouts)", "providers (rollouts)", "fallback served", "failures"]
    cached = any(v.response_cache is not None for v in a.variants)
    if cached:
        header.append("from response cache")
    rows = []
    for v in a.variants:
        rows.append(
            [
                v.name,
                ", ".join(v.requested_models) or "-",
                ", ".join(f"{m} ({n})" for m, n in v.models.items()) or "-",
                ", ".join(f"{p} ({n})" for p, n in v.providers.items()) or "-",
                "-" if v.fallback.share is None else f"{v.fallback.rollouts}/{v.fallback.known}",
                ", ".join(f"{k} ({n})" for k, n in v.failures_by_kind.items()) or "-",
                *([cache_cell(v)] if cached else []),
            ]
        )
    return header, rows


def cache_cell(v: VariantFigures) -> str:
    """``hits/model calls, $saved saved`` of a variant collected with +cache=true, else ``-``."""
    c = v.response_cache
    if c is None:
        return "-"
    return f"{c.hits}/{c.hits + c.misses} calls, ${c.saved_usd:.6f} saved"


def cache_note(a: Analysis) -> str | None:
    """One line naming the variants answered (partly) from the response cache: their cost
    counts $0 for those calls, and the comparison of cost is not a comparison of prices."""
    cached = [f"{v.name} ({cache_cell(v)})" for v in a.variants if v.response_cache and v.response_cache.hits]
    if not cached:
        return None
    return "served from the response cache (those calls cost $0 here): " + "; ".join(cached)


def markdown(a: Analysis, inputs: list[str], warnings: list[str], verdict: Verdict | None = None) -> str:
    header, rows = summary_rows(a)
    lines = ["# Model comparison", "", "Inputs: " + ", ".join(f"`{i}`" for i in inputs), "", _settings_line(a), ""]
    if verdict is not None and verdict.picks:
        lines += ["## Verdict", "", *(f"- **{p.goal}**: {p.sentence}" for p in verdict.picks), ""]
        if verdict.upgrades:
            lines += ["Upgrades, cheapest first:", "", *_md_table(*upgrade_table(verdict)), ""]
        if verdict.projections:
            lines += ["Projected cost:", "", *_md_table(*projection_table(verdict)), ""]
    lines += ["## Variants", "", *_md_table(header, rows), ""]
    if note := cache_note(a):
        lines += [note[0].upper() + note[1:], ""]
    if a.pareto:
        lines += [f"Pareto frontier (reward against cost per rollout): {', '.join(a.pareto)}", ""]
    if a.comparisons:
        lines += ["## Paired comparisons", "", *(f"- {c.sentence}" for c in a.comparisons), ""]
    if a.groups:
        lines += [f"## Reward by {a.records.group_by}", "", *_md_table(*group_table(a)), ""]
    lines += ["## Models, providers and failures", "", *_md_table(*served_table(a), numbers=False), ""]
    runs = [(v.name, v.overrides, v.run) for v in a.variants if v.overrides or v.run]
    if runs:
        lines += ["## Run details", ""]
        for name, overrides, run in runs:
            detail = {k: val for k, val in (("overrides", overrides), ("run", run)) if val}
            lines += [
                f"### {name}",
                "",
                "```json",
                orjson.dumps(detail, option=orjson.OPT_INDENT_2).decode(),
                "```",
                "",
            ]
    if warnings:
        lines += ["## Warnings", "", *(f"- {w}" for w in warnings), ""]
    lines += ["Definitions of every figure: docs/compare.md in nemo-gym-cli.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- report.html


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def race_context(race: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``race.html.j2`` shows of an adaptive sweep's race (None: not one)."""
    if race is None:
        return None
    from nemo_gym_cli.report.adaptive import race_rows, race_summary

    header, rows = race_rows(race)
    settings = race.get("settings") or {}
    svg = plots.race(race)
    return {
        "summary": race_summary(race),
        "header": header,
        "rows": rows,
        "svg": Markup(svg) if svg else None,
        "alpha": settings.get("alpha"),
        "comparisons": race.get("comparisons"),
        "path": race.get("path"),
    }


def html(
    a: Analysis,
    inputs: list[str],
    warnings: list[str],
    trajectories: list[dict[str, Any]],
    verdict: Verdict | None = None,
    race: dict[str, Any] | None = None,
) -> str:
    """``report.html``: one file, no external fetches."""
    figures = [
        ("reward_vs_cost", "Reward against cost", plots.reward_vs_cost(a), "No variant reports cost (usage.cost)."),
        (
            "reward_by_group",
            f"Reward by {a.records.group_by or 'subset'}",
            plots.reward_by_group(a),
            "No subset field (use +group_by=<dotted row field>).",
        ),
        ("latency", "Latency per rollout", plots.latency_distribution(a), "No row has _ng_latency_s."),
        ("cost", "Cost per rollout", plots.cost_distribution(a), "No row has a cost (usage.cost)."),
    ]
    header, rows = summary_rows(a)
    tasks = task_view(a, trajectories)
    shown = len(tasks["tasks"])
    task_note = (
        f"{shown:,} tasks, one row each; a cell is the task's mean reward for that variant"
        + (f"; the {len(trajectories)} tasks of the viewer link to their trajectories" if trajectories else "")
        + (
            f". The page holds {shown:,} of {tasks['total']:,} tasks (those where the variants differ first); "
            "report.json has every figure."
            if shown < tasks["total"]
            else "."
        )
    )
    context = {
        "verdict": verdict if verdict is not None and verdict.picks else None,
        "upgrades": upgrade_table(verdict) if verdict is not None and verdict.upgrades else None,
        "projections": projection_table(verdict) if verdict is not None and verdict.projections else None,
        "task_view": tasks,
        "task_note": task_note,
        "inputs": inputs,
        "settings": _settings_line(a),
        "header": header,
        "rows": rows,
        "pareto": a.pareto,
        "comparisons": a.comparisons,
        "groups": group_table(a) if a.groups else None,
        "group_by": a.records.group_by,
        "served": served_table(a),
        "runs": [
            (v.name, orjson.dumps({"overrides": v.overrides, "run": v.run}, option=orjson.OPT_INDENT_2).decode())
            for v in a.variants
            if v.overrides or v.run
        ],
        "figures": [(key, title, Markup(svg) if svg else None, missing) for key, title, svg, missing in figures],
        "warnings": warnings,
        "variants": [v.name for v in a.variants],
        "pass_threshold": a.pass_threshold,
        "trajectories": trajectories,
        "race": race_context(race),
    }
    return _environment().get_template("report.html.j2").render(**context)
