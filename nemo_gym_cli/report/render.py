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
from nemo_gym_cli.report.stats import SIGNIFICANCE, Analysis, VariantFigures

__all__ = ["document", "html", "markdown", "shown_ks", "summary_rows", "terminal"]

SCHEMA_VERSION = 1


# --------------------------------------------------------------------------- formatting


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.3g}"


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


def terminal(a: Analysis, *, groups: bool = False) -> str:
    """A compact table (one line per variant) and the paired comparisons, for stdout; with
    ``groups`` (``+group_by`` given), the reward by subset too."""
    header, rows = summary_rows(a)
    ks = shown_ks(a)
    keep = [*_TERMINAL_COLUMNS[:5], *([f"pass@{ks[-1]}"] if ks[-1] > 1 else []), *_TERMINAL_COLUMNS[5:]]
    index = [header.index(c) for c in keep]
    table = [[header[i] for i in index]] + [[row[i] for i in index] for row in rows]
    lines = _aligned(table[0], table[1:])
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


def document(a: Analysis, inputs: list[str], warnings: list[str]) -> dict[str, Any]:
    """Every figure of the report, as ``report.json`` holds it."""
    r = a.records
    return {
        "generated_by": "ng_report",
        "schema_version": SCHEMA_VERSION,
        "inputs": inputs,
        "sources": [str(s.path) for s in r.sources],
        "settings": {
            "pass_threshold": a.pass_threshold,
            "seed": a.seed,
            "bootstrap_resamples": a.n_boot,
            "permutations": a.n_perm,
            "significance": SIGNIFICANCE,
            "group_by": r.group_by,
        },
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
            ]
        )
    return header, rows


def markdown(a: Analysis, inputs: list[str], warnings: list[str]) -> str:
    header, rows = summary_rows(a)
    lines = ["# Model comparison", "", "Inputs: " + ", ".join(f"`{i}`" for i in inputs), "", _settings_line(a), ""]
    lines += ["## Variants", "", *_md_table(header, rows), ""]
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
    race: dict[str, Any] | None = None,
) -> str:
    """``report.html``: one file, no external fetches."""
    figures = [
        ("reward_vs_cost", "Reward against cost", plots.reward_vs_cost(a), "No variant reports cost (usage.cost)."),
        ("heatmap", "Reward per task", plots.heatmap(a), "No task has a rollout."),
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
    context = {
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
