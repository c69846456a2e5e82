"""Rollout rows -> compact columns, in one streaming pass.

A report over hundreds of thousands of rollouts cannot hold the rows: each is 1-2 KB of
JSON, most of it the trajectory. Each row is parsed once and reduced to a fixed-size
record in typed arrays (about 70 bytes a rollout): variant, task, rollout, reward, cost,
tokens, latency, served model, provider, whether a fallback model served, and where the
row is (file, byte offset, line) so the few trajectories the HTML shows are read again
later. Strings (variants, models, providers, failure kinds, subset values) are interned
to small integer codes.

Who a row belongs to:

- variant: the sweep manifest's (by file), else the row's ``_ng_variant``, else the file's
  stem when several files are read, else the model requested (``_ng_requested_model``)
  or served (``response.model``);
- task: ``_ng_task_index``; NeMo Gym 0.2.1 rows have none, so a hash of
  ``responses_create_params.input``; its rollout: ``_ng_rollout_index``, else the order in
  which the task's rows appear.

Nothing in a row is required: a missing reward, usage, cost or latency is counted (the
report says how many) and the row still counts as a rollout.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from nemo_gym_cli.report.records import MAX_LINE_WARNINGS, Merger, Records
from nemo_gym_cli.report.rows import (
    NotAnObject,
    Response,
    RowReader,
    Usage,
    count,
    dotted,
    input_key,
    number,
    same_model,
)
from nemo_gym_cli.report.sources import Source

__all__ = ["load"]

#: Fields whose presence picks the default ``group_by`` (first match in the first row).
AUTO_GROUP_FIELDS = ("subset", "subject", "category", "meta.category")
#: A requested model that is a router: whatever serves it is not a fallback.
ROUTERS = frozenset(("openrouter/auto",))
#: Input size from which rows are read by several processes (forking costs ~50 ms).
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
#: Bytes of rows per job of a worker process (small enough to keep both cores busy).
CHUNK_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class _Chunk:
    """The rows of one source whose lines start in ``[start, end)``."""

    source_id: int
    source: Source
    group_by: str
    several: bool  # several sources: a row without _ng_variant is its file's stem's
    start: int = 0
    end: int = 1 << 62


#: Indices and counts past these are nonsense; they are "missing" rather than an overflow.
_INT32, _INT62 = 1 << 31, 1 << 62
_NO_RESPONSE = Response()
_NO_USAGE = Usage()


class _Reader:
    """Reads one chunk of rows, or one failures file, into a ``Records`` of its own.

    Line numbers are counted from the chunk's start (``_merge`` adds the lines before it)."""

    def __init__(self, chunk: _Chunk) -> None:
        self.chunk = chunk
        self.r = Records(sources=[chunk.source])
        self.task_ids: dict[int | str, int] = {}

    def task_id(self, key: int | str) -> int:
        tid = self.task_ids.get(key)
        if tid is None:
            tid = self.task_ids[key] = len(self.r.task_keys)
            self.r.task_keys.append(key)
            self.r.task_group.append(-1)
        return tid

    def bad_line(self, line_no: int, what: str) -> None:
        self.r.skipped_lines += 1
        if len(self.r.bad_lines) < MAX_LINE_WARNINGS:
            self.r.bad_lines.append((line_no, what))

    def read_rows(self) -> Records:
        """The chunk's rows. Variant: the manifest's; else a row's ``_ng_variant``, else the
        file's stem (several sources), else the model requested or served. Rollout: -1 where
        the row does not say (``_merge`` numbers those in reading order).

        The loop is the report's hot path (~1 µs a row besides decoding): one tuple a row,
        turned into columns at the end; floats and ints pass through unchecked when their
        type is already right (a JSON decoder yields no NaN or infinity)."""
        chunk, r = self.chunk, self.r
        source = chunk.source
        manifest_model = source.model
        fixed = r.variants.code(source.variant) if source.variant else None
        default = source.path.stem if chunk.several else None
        reader = RowReader(chunk.group_by)
        read, group_value, grouped = reader.read, reader.group_value, bool(reader.group_parts)
        task_ids, task_group = self.task_ids, r.task_group
        variant_code, model_code, provider_code = r.variants.code, r.models.code, r.providers.code
        fallbacks: dict[tuple[str | None, str | None], int] = {}
        out: list[tuple[Any, ...]] = []
        append = out.append
        line_no = 0
        with source.path.open("rb") as f:
            if chunk.start:
                f.seek(chunk.start - 1)
                f.readline()  # the line holding byte start-1 began earlier: the previous chunk's
            offset, end = f.tell(), chunk.end
            for line in f:
                if offset >= end:
                    break
                start = offset
                offset += len(line)
                line_no += 1
                try:
                    row = read(line)
                except NotAnObject as exc:
                    self.bad_line(line_no, str(exc))
                    continue
                except ValueError:
                    if line.strip():
                        self.bad_line(line_no, "not valid JSON")
                    continue
                key = row.task_index if type(row.task_index) is int else input_key(row)
                if key is None:
                    self.bad_line(line_no, "no _ng_task_index and no responses_create_params.input")
                    continue
                task = task_ids.get(key)
                if task is None:
                    task = self.task_id(key)
                response = row.response or _NO_RESPONSE
                served = response.model if type(response.model) is str and response.model else None
                requested = row.requested or manifest_model
                requested = requested if type(requested) is str else None
                variant = fixed
                if variant is None:
                    name = row.variant
                    if type(name) is str and name:
                        variant = variant_code(name)
                    else:
                        variant = variant_code(default or requested or served or "(unknown model)")
                if grouped and task_group[task] < 0:
                    value = group_value(row)
                    if value is not None:
                        task_group[task] = r.groups.code(str(value)[:80])
                usage = response.usage or _NO_USAGE
                provider, rollout, reward, cost = response.provider, row.rollout_index, row.reward, usage.cost
                tokens_in, tokens_out, latency = usage.input_tokens, usage.output_tokens, row.latency
                fallback = fallbacks.get((requested, served))
                if fallback is None:
                    fallback = fallbacks[(requested, served)] = _fallback(requested, served)
                append(
                    (
                        variant,
                        task,
                        rollout if type(rollout) is int and 0 <= rollout < _INT32 else -1,
                        reward if type(reward) is float else number(reward),
                        cost if type(cost) is float else number(cost),
                        tokens_in if type(tokens_in) is int and 0 <= tokens_in < _INT62 else count(tokens_in),
                        tokens_out if type(tokens_out) is int and 0 <= tokens_out < _INT62 else count(tokens_out),
                        latency if type(latency) is float else number(latency),
                        model_code(served) if served else -1,
                        provider_code(provider) if type(provider) is str and provider else -1,
                        fallback,
                        requested,
                        start,
                        line_no,
                    )
                )
        r.lines = line_no
        if out:
            columns = list(zip(*out, strict=True))
            names: tuple[str, ...] = (
                "variant",
                "task",
                "rollout",
                "reward",
                "cost",
                "tokens_in",
                "tokens_out",
                "latency",
            )
            names += ("model", "provider", "fallback")
            for name, column in zip(names, columns, strict=False):
                setattr(r, name, array(getattr(r, name).typecode, column))
            r.offset, r.line = array("q", columns[12]), array("i", columns[13])
            r.failed, r.kind = array("b", bytes(len(out))), array("h", [-1]) * len(out)
            for (variant, requested), n in Counter(zip(columns[0], columns[11], strict=True)).items():
                if requested is not None:
                    r.requested.setdefault(variant, Counter())[requested] += n
        return r

    def read_failures(self, path: Path, variant: str | None) -> Records:
        """The failed rollouts of ``<stem>_failures.jsonl``: ``variant``'s when the source
        says whose they are, else each row's ``_ng_variant``."""
        r = self.r
        r.failures_file = True
        fixed = r.variants.code(variant) if variant else None
        offset = 0
        with path.open("rb") as f:
            for line_no, line in enumerate(f, start=1):
                start = offset
                offset += len(line)
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    if line.strip():
                        self.bad_line(line_no, "not valid JSON")
                    continue
                if type(row) is not dict:
                    self.bad_line(line_no, "not a JSON object")
                    continue
                name = row.get("_ng_variant")
                row_variant = r.variants.code(name) if fixed is None and type(name) is str and name else fixed
                if row_variant is None:
                    r.unattributed_failures += 1
                    continue
                task_index = row.get("_ng_task_index")
                rollout = row.get("_ng_rollout_index")
                kind = row.get("error_type")
                r.variant.append(row_variant)
                r.task.append(self.task_id(task_index) if type(task_index) is int else -1)
                r.rollout.append(rollout if type(rollout) is int and 0 <= rollout < _INT32 else -1)
                r.failed.append(1)
                r.reward.append(math.nan)
                r.cost.append(number(row.get("cost_usd")))
                r.tokens_in.append(-1)
                r.tokens_out.append(-1)
                r.latency.append(math.nan)
                r.model.append(-1)
                r.provider.append(-1)
                r.fallback.append(-1)
                r.kind.append(r.kinds.code(str(kind) if kind else "unknown"))
                r.offset.append(start)
                r.line.append(line_no)
        return r


def _fallback(requested: str | None, served: str | None) -> int:
    """1: another model than the requested one served; 0: the requested one; -1: unknown."""
    if requested is None or served is None or requested in ROUTERS:
        return -1
    return 0 if same_model(requested, served) else 1


def _read_chunk(chunk: _Chunk) -> Records:
    return _Reader(chunk).read_rows()


def _auto_group(sources: list[Source]) -> str:
    """The first of ``AUTO_GROUP_FIELDS`` that the first row read has as a scalar, else ''."""
    for source in sources:
        if not source.path.is_file():
            continue
        with source.path.open("rb") as f:
            for line in f:
                try:
                    row = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if type(row) is not dict:
                    continue
                for name in AUTO_GROUP_FIELDS:
                    value = dotted(row, name.split("."))
                    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                        return name
                return ""
    return ""


def _chunks(sources: list[Source], group_by: str, chunk_bytes: int) -> list[_Chunk]:
    chunks = []
    for source_id, source in enumerate(sources):
        size = source.path.stat().st_size if source.path.is_file() else 0
        for start in range(0, max(size, 1), chunk_bytes):
            chunks.append(_Chunk(source_id, source, group_by, len(sources) > 1, start, start + chunk_bytes))
    return [c for c in chunks if c.source.path.is_file()]


def load(
    sources: list[Source],
    *,
    group_by: str | None = None,
    workers: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
) -> Records:
    """Read every source once into ``Records``.

    ``group_by=None`` picks a subset field itself (``AUTO_GROUP_FIELDS``); ``""`` groups by
    nothing. Rows are read in chunks of ``chunk_bytes`` by ``workers`` forked processes
    (default: one a core once the input is large enough to pay for them)."""
    group = _auto_group(sources) if group_by is None else group_by
    chunks = _chunks(sources, group, chunk_bytes)
    if workers is None:
        size = sum(s.path.stat().st_size for s in sources if s.path.is_file())
        workers = (os.cpu_count() or 1) if size >= PARALLEL_MIN_BYTES else 1
    if workers > 1 and len(chunks) > 1:
        context = multiprocessing.get_context("fork")  # the parent holds no threads or sockets yet
        with context.Pool(min(workers, len(chunks))) as pool:
            parts = pool.map(_read_chunk, chunks, chunksize=1)
    else:
        parts = [_read_chunk(chunk) for chunk in chunks]
    merger = Merger(sources, group)
    seen: dict[int, set[str]] = {}
    for chunk, part in zip(chunks, parts, strict=True):
        merger.add(chunk.source_id, part)
        seen.setdefault(chunk.source_id, set()).update(part.variants.names[c] for c in set(part.variant))
    for source_id, source in enumerate(sources):  # failures last: whose they are depends on the rows
        if source.failures is None:
            continue
        names = seen.get(source_id, set())
        if source.variant:
            variant: str | None = source.variant
        elif len(names) == 1:
            variant = next(iter(names))
        elif not names:  # every rollout failed: the file's own variant
            variant = source.path.stem
        else:
            variant = None  # each failure row's _ng_variant
        reader = _Reader(_Chunk(source_id, source, group, len(sources) > 1))
        merger.add(source_id, reader.read_failures(source.failures, variant))
    return merger.finish()
