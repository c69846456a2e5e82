"""A run's summary as Markdown for GitHub Actions' job page (``$GITHUB_STEP_SUMMARY``).

GitHub renders whatever a step appends to the file that variable names as Markdown on the
run's summary page; nothing is written when it is unset (a local run). The collector
appends one table of its variants and the gates' verdicts; ``ng_report`` its comparison.
Appending, never truncating: several steps of one job share the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["append_step_summary", "collection_markdown", "markdown_table"]

#: The environment variable GitHub Actions sets to the step's summary file.
VARIABLE = "GITHUB_STEP_SUMMARY"


def markdown_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """A GitHub-flavoured Markdown table (``|`` in a cell escaped)."""

    def cells(values: list[str]) -> str:
        return "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in values) + " |"

    return [cells(header), "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |", *map(cells, rows)]


def _number(value: Any, form: str) -> str:
    return format(value, form) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def collection_markdown(docs: dict[str, dict[str, Any]], verdicts: list[str]) -> str:
    """The collector's summary: one row per variant (its metrics document), then each gate's line."""
    header = ["variant", "output", "rollouts", "failed", "mean reward", "pass@k", "cost", "rollouts/s", "status"]
    rows = []
    for name, doc in docs.items():
        reward = doc.get("reward") or {}
        k = doc.get("num_repeats")
        pass_k = f"pass@{k} {_number(doc.get(f'pass@{k}'), '.3f')}" if k else "-"
        rows.append(
            [
                name or (doc.get("run") or {}).get("requested_model") or "(config model)",
                f"`{doc.get('output', '')}`",
                str(doc.get("rollouts", "-")),
                str(doc.get("failed", "-")),
                _number(reward.get("mean"), ".4f"),
                pass_k,
                "$" + _number(doc.get("cost_usd"), ".6f"),
                _number(doc.get("rollouts_per_s"), ".1f"),
                str(doc.get("status", "-")),
            ]
        )
    lines = ["### ng_collect_rollouts", "", *markdown_table(header, rows), ""]
    lines += [f"- {verdict}" for verdict in verdicts]
    return "\n".join(lines) + "\n"


def append_step_summary(markdown: str) -> Path | None:
    """Append ``markdown`` to ``$GITHUB_STEP_SUMMARY``; the file, or None when it is unset."""
    target = os.environ.get(VARIABLE)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as f:
        f.write(markdown if markdown.endswith("\n") else markdown + "\n")
        f.write("\n")
    return path
