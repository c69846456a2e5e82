"""The conversations the HTML viewer shows: a bounded sample, read again by file offset.

The report must stay small and fast to open whatever the input size, so it embeds at most
``MAX_TASKS`` tasks, each variant's first rollout of each, with long texts cut at
``MAX_TEXT`` characters and at most ``MAX_ITEMS`` items a conversation. Every trajectory
names its file and line, so the full row is one click or one editor jump away.

The sample is deterministic (the same inputs give the same report): tasks that the most
variants ran come first, half of the places go to tasks where the variants disagree (the
informative ones), and ties are broken by a hash of the task's identity, not by file order.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from nemo_gym_cli.report.formulas import segments
from nemo_gym_cli.report.money import usd
from nemo_gym_cli.report.stats import Analysis

__all__ = ["MAX_ITEMS", "MAX_TASKS", "MAX_TEXT", "sample_trajectories"]

MAX_TASKS = 200
MAX_TEXT = 1500
MAX_ITEMS = 40
#: Characters of a row's other fields (all but the conversation) shown beside it.
MAX_FIELDS = 4000
_LABEL = 120


def _cut(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters in the file]"


def _text(content: Any) -> str:
    """A message's text: a string, or the text of its content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict):
                text = part.get("text") if isinstance(part.get("text"), str) else None
                parts.append(text if text is not None else f"[{part.get('type', 'part')}]")
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return "" if content is None else orjson.dumps(content).decode()


def _pretty(value: Any) -> str:
    """JSON (a value, or a string holding an object or array) indented; other text as it is."""
    if isinstance(value, str):
        if not value.lstrip().startswith(("{", "[")):
            return value
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _prose(item: dict[str, Any]) -> dict[str, Any]:
    """A message or reasoning item, with its formulas as MathML (``formulas.segments``)."""
    math = segments(item["text"])
    if math is not None:
        item["math"] = math
    return item


def _item(item: Any) -> dict[str, Any]:
    """One Responses item (or chat message) as ``{kind, role?, name?, text, math?}``: tool
    arguments and JSON outputs indented, formulas in messages and reasoning as MathML."""
    if not isinstance(item, dict):
        return _prose({"kind": "message", "role": "user", "text": _cut(_text(item))})
    kind = item.get("type")
    if kind in (None, "message"):
        return _prose(
            {"kind": "message", "role": str(item.get("role") or "assistant"), "text": _cut(_text(item.get("content")))}
        )
    if kind == "function_call":
        return {"kind": "call", "name": str(item.get("name") or "?"), "text": _cut(_pretty(item.get("arguments")))}
    if kind == "function_call_output":
        output = item.get("output")
        return {"kind": "output", "text": _cut(_pretty(output) if isinstance(output, str) else _text(output))}
    if kind == "reasoning":
        summary = item.get("summary") or item.get("content")
        return _prose({"kind": "reasoning", "text": _cut(_text(summary))})
    return {"kind": str(kind), "text": _cut(_pretty(item))}


def _fields(row: dict[str, Any]) -> str:
    """The row without its conversation (shown as items) and with its tools by name only
    (the same for every run of a task): reward, usage, the verifier's fields. Compact JSON:
    the page indents it when it is opened, so the report carries no indentation."""
    rest = dict(row)
    params = rest.get("responses_create_params")
    if isinstance(params, dict):
        rest["responses_create_params"] = {k: v for k, v in params.items() if k != "input"}
        tools = params.get("tools")
        if isinstance(tools, list):
            rest["responses_create_params"]["tools"] = [
                t.get("name") or (t.get("function") or {}).get("name") if isinstance(t, dict) else t for t in tools
            ]
    response = rest.get("response")
    if isinstance(response, dict):
        rest["response"] = {k: v for k, v in response.items() if k != "output"}
    return _cut(orjson.dumps(rest, option=orjson.OPT_NON_STR_KEYS).decode(), MAX_FIELDS)


def _items(items: Any) -> tuple[list[dict[str, Any]], int]:
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        return [], 0
    return [_item(i) for i in items[:MAX_ITEMS]], max(0, len(items) - MAX_ITEMS)


def _label(items: list[dict[str, Any]]) -> str:
    for item in items:
        if item.get("role") == "user" and item.get("text"):
            return " ".join(item["text"].split())[:_LABEL]
    return ""


def _choose(a: Analysis, limit: int) -> list[int]:
    """Up to ``limit`` task ids, half of them where variants disagree; see the module doc."""
    ran = a.task_rollouts > 0
    count = ran.sum(axis=0)
    candidates = np.flatnonzero(count > 0)
    if len(candidates) == 0:
        return []
    cells = np.where(ran[:, candidates], a.task_reward[:, candidates], np.nan)
    spread = np.zeros(len(candidates))
    several = count[candidates] > 1
    if several.any():
        spread[several] = np.nanmax(cells[:, several], axis=0) - np.nanmin(cells[:, several], axis=0)
    keys = a.records.task_keys

    def rank(i: int) -> tuple[int, int]:
        return (-int(count[candidates[i]]), zlib.crc32(str(keys[candidates[i]]).encode()))

    disagree = sorted(np.flatnonzero(spread > 0).tolist(), key=rank)[: limit // 2]
    taken = set(disagree)
    rest = sorted((i for i in range(len(candidates)) if i not in taken), key=rank)[: limit - len(disagree)]
    chosen = [int(candidates[i]) for i in disagree + rest]
    return sorted(chosen, key=lambda t: (isinstance(keys[t], str), keys[t]))


def _read_line(handles: dict[Path, Any], path: Path, offset: int) -> dict[str, Any] | None:
    f = handles.get(path)
    if f is None:
        f = handles[path] = path.open("rb")
    f.seek(offset)
    try:
        row = orjson.loads(f.readline())
    except orjson.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None


def sample_trajectories(a: Analysis, report_dir: Path, limit: int = MAX_TASKS) -> list[dict[str, Any]]:
    """The viewer's tasks: per task its prompt and, per variant that ran it, one rollout."""
    r = a.records
    chosen = _choose(a, limit)
    if not chosen:
        return []
    task = np.frombuffer(r.task, np.int32)
    failed = np.frombuffer(r.failed, np.int8)
    rollout = np.frombuffer(r.rollout, np.int32)
    variant = np.frombuffer(r.variant, np.int16)
    picked: dict[tuple[int, int], int] = {}  # (task, variant) -> record: a success before a failure
    for i in np.flatnonzero(a.keep & np.isin(task, chosen)).tolist():
        key = (int(task[i]), int(variant[i]))
        best = picked.get(key)
        if best is None or (failed[i], rollout[i]) < (failed[best], rollout[best]):
            picked[key] = i
    names = r.variants.names
    tasks: dict[int, dict[str, Any]] = {
        t: {"task": _display_key(r.task_keys[t]), "label": "", "input": [], "group": _group(a, t), "runs": []}
        for t in chosen
    }
    handles: dict[Path, Any] = {}
    try:
        for (t, v), i in sorted(picked.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            source = r.sources[r.source[i]]
            path = source.failures if failed[i] and source.failures else source.path
            row = _read_line(handles, path, r.offset[i]) or {}
            entry = tasks[t]
            run: dict[str, Any] = {
                "variant": names[v],
                "rollout": int(rollout[i]),
                "rollouts": int(a.task_rollouts[v, t]),
                "task_reward": _finite(a.task_reward[v, t]),
                "where": f"{path}:{r.line[i]}",
                "href": Path(os.path.relpath(path.resolve(), report_dir.resolve())).as_posix(),
                "failed": bool(failed[i]),
                "fields": _fields(row),
            }
            if failed[i]:
                run["items"] = [
                    {"kind": "error", "text": _cut(f"{row.get('error_type', 'failed')}: {row.get('message', '')}")}
                ]
                run["more_items"] = 0
            else:
                response: dict[str, Any] = row["response"] if isinstance(row.get("response"), dict) else {}
                run["items"], run["more_items"] = _items(response.get("output"))
                run.update(
                    reward=_finite(r.reward[i]),
                    model=response.get("model"),
                    provider=response.get("provider"),
                    cost=_finite(r.cost[i]),
                    cost_text=usd(_finite(r.cost[i])),
                    latency=_finite(r.latency[i]),
                )
                if not entry["input"]:
                    params = row.get("responses_create_params")
                    entry["input"], _ = _items(params.get("input") if isinstance(params, dict) else None)
                    entry["label"] = _label(entry["input"])
            entry["runs"].append(run)
    finally:
        for f in handles.values():
            f.close()
    return [tasks[t] for t in chosen]


def _display_key(key: int | str) -> str:
    return str(key) if isinstance(key, int) else key[2:]


def _group(a: Analysis, t: int) -> str | None:
    code = a.records.task_group[t]
    return a.records.groups.names[code] if code >= 0 else None


def _finite(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
