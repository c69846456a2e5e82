"""The per-task view of ``report.html``: every task's reward per variant, as data.

A picture of 10,000 tasks cannot label them, and binning them into rows of "1-2 tasks"
hides which task is which. So the page gets the numbers instead (a few bytes a cell) and
draws a sortable, searchable, paged table: one row a task, labelled (index, subset, the
prompt's start where the viewer has it), a coloured cell per variant that links to that
variant's trajectory when the viewer embeds it. Past ``MAX_TASKS`` tasks the page would
grow past a few MiB: the tasks where variants disagree come first, then the rest in a
fixed hash order, and the page says how many it holds.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from nemo_gym_cli.report.stats import Analysis

__all__ = ["MAX_TASKS", "task_view"]

#: Most tasks the per-task table holds (about 50 bytes a task: 0.5 MiB at 5 variants).
MAX_TASKS = 10_000


def task_view(a: Analysis, trajectories: list[dict[str, Any]], limit: int = MAX_TASKS) -> dict[str, Any]:
    """``{"variants", "tasks": [[key, subset, label, in_viewer, [reward or None per variant]]], "total"}``."""
    ran = a.task_rollouts > 0
    candidates = np.flatnonzero(ran.any(axis=0))
    keys = a.records.task_keys
    total = len(candidates)
    if total > limit:
        with np.errstate(invalid="ignore"):
            cells = np.where(ran[:, candidates], a.task_reward[:, candidates], np.nan)
            spread = np.nan_to_num(np.nanmax(cells, axis=0) - np.nanmin(cells, axis=0))
        order = sorted(range(total), key=lambda i: (-int(spread[i] > 0), zlib.crc32(str(keys[candidates[i]]).encode())))
        candidates = np.sort(candidates[order[:limit]])
    sampled = {str(t["task"]): t for t in trajectories}
    groups = a.records.groups.names
    rewards = np.round(a.task_reward, 3)
    rows = []
    for t in candidates.tolist():
        key = _display_key(keys[t])
        code = a.records.task_group[t]
        in_viewer = key in sampled
        rows.append(
            [
                key,
                groups[code] if code >= 0 else None,
                sampled[key]["label"][:80] if in_viewer else "",
                in_viewer,
                [float(rewards[v, t]) if ran[v, t] else None for v in range(len(a.variants))],
            ]
        )
    return {"variants": [v.name for v in a.variants], "tasks": rows, "total": total}


def _display_key(key: int | str) -> str:
    return str(key) if isinstance(key, int) else key[2:]
