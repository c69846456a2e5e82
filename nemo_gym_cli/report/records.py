"""The rollouts read, as columns: ``Records``, and ``Merger``, which joins the parts that
reader processes return.

One rollout is one entry in each typed array (about 70 bytes), so half a million rollouts
fit in tens of MiB. Strings (variants, models, providers, failure kinds, subset values)
are interned to small integer codes (``Names``); a task is a dense id whose identity is
kept in ``task_keys``. Each reader numbers its own codes, tasks and lines; ``Merger``
renumbers them into one ``Records`` in reading order.
"""

from __future__ import annotations

from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nemo_gym_cli.report.sources import Source

__all__ = ["MAX_LINE_WARNINGS", "Merger", "Names", "Records"]

#: Bad lines named one by one in the warnings; the rest are counted.
MAX_LINE_WARNINGS = 10


class Names:
    """Strings interned to dense integer codes, in order of first appearance."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = []
        self._codes: dict[str, int] = {}
        for name in names or ():
            self.code(name)

    def code(self, name: str) -> int:
        code = self._codes.get(name)
        if code is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Records:
    """Every rollout read (rows, then failures), one entry per rollout in each array.

    Missing numbers are NaN (floats) or -1 (ints and codes); ``fallback`` is 1 when another
    model than the requested one served, 0 when the requested one did, -1 when unknown.
    """

    sources: list[Source]
    variants: Names = field(default_factory=Names)
    models: Names = field(default_factory=Names)
    providers: Names = field(default_factory=Names)
    kinds: Names = field(default_factory=Names)
    groups: Names = field(default_factory=Names)
    #: a task's identity: ``_ng_task_index`` (int) or ``"h:<hash of the input>"``
    task_keys: list[int | str] = field(default_factory=list)
    #: each task's subset (a ``groups`` code), -1 when its rows lack the field
    task_group: array = field(default_factory=lambda: array("i"))
    group_by: str | None = None
    variant: array = field(default_factory=lambda: array("h"))
    task: array = field(default_factory=lambda: array("i"))
    rollout: array = field(default_factory=lambda: array("i"))
    failed: array = field(default_factory=lambda: array("b"))
    reward: array = field(default_factory=lambda: array("d"))
    cost: array = field(default_factory=lambda: array("d"))
    tokens_in: array = field(default_factory=lambda: array("q"))
    tokens_out: array = field(default_factory=lambda: array("q"))
    latency: array = field(default_factory=lambda: array("d"))
    model: array = field(default_factory=lambda: array("h"))
    provider: array = field(default_factory=lambda: array("h"))
    fallback: array = field(default_factory=lambda: array("b"))
    kind: array = field(default_factory=lambda: array("h"))
    source: array = field(default_factory=lambda: array("h"))
    offset: array = field(default_factory=lambda: array("q"))
    line: array = field(default_factory=lambda: array("i"))
    #: requested models seen per variant code (row field or manifest)
    requested: dict[int, Counter[str]] = field(default_factory=dict)
    #: lines skipped: not JSON, not an object, or no task identity
    skipped_lines: int = 0
    #: the first skipped lines, each as ``file:line: why``
    line_warnings: list[str] = field(default_factory=list)
    #: failure rows of a file holding several variants that do not say whose they are
    unattributed_failures: int = 0
    # a part's own (``_Reader``): its first bad lines, lines read, whether a failures file
    bad_lines: list[tuple[int, str]] = field(default_factory=list)
    lines: int = 0
    failures_file: bool = False

    def __len__(self) -> int:
        return len(self.variant)


def _remap(values: array, table: list[int]) -> array:
    """``table[v]`` for each code ``v``, -1 staying -1 (numpy: this runs once a rollout)."""
    lookup = np.array([*table, -1], dtype=np.int64)  # index -1 is the appended -1
    codes = np.frombuffer(values, dtype=np.dtype(values.typecode)).astype(np.int64)
    out = array(values.typecode)
    out.frombytes(lookup[codes].astype(np.dtype(values.typecode)).tobytes())
    return out


class Merger:
    """Appends parts (chunks, failures files) to one ``Records``: codes and task ids made
    global, line numbers counted from the start of each file, missing rollout indices
    numbered in reading order."""

    def __init__(self, sources: list[Source], group_by: str) -> None:
        self.out = Records(sources=sources, group_by=group_by or None)
        for source in sources:  # the manifest's order is the report's order
            if source.variant:
                self.out.variants.code(source.variant)
        self.task_ids: dict[int | str, int] = {}
        self.next_rollout: Counter[tuple[int, int]] = Counter()
        self.lines_before: Counter[Path] = Counter()
        self.bad_lines: list[str] = []

    def add(self, source_id: int, part: Records) -> None:
        out = self.out
        source = out.sources[source_id]
        path = source.failures if part.failures_file and source.failures else source.path
        base = self.lines_before[path]
        self.lines_before[path] += part.lines
        vmap = [out.variants.code(n) for n in part.variants.names]
        gmap = [out.groups.code(n) for n in part.groups.names]
        tmap = []
        for key, group in zip(part.task_keys, part.task_group, strict=True):
            tid = self.task_ids.get(key)
            if tid is None:
                tid = self.task_ids[key] = len(out.task_keys)
                out.task_keys.append(key)
                out.task_group.append(-1)
            if group >= 0 and out.task_group[tid] < 0:
                out.task_group[tid] = gmap[group]
            tmap.append(tid)
        variant, task, rollout = _remap(part.variant, vmap), _remap(part.task, tmap), part.rollout
        if -1 in rollout:  # NeMo Gym rows: a task's repeats in reading order
            rollout = array("i", rollout)
            for i, value in enumerate(rollout):
                if value < 0:
                    pair = (variant[i], task[i])
                    rollout[i] = self.next_rollout[pair]
                    self.next_rollout[pair] += 1
        out.variant.extend(variant)
        out.task.extend(task)
        out.rollout.extend(rollout)
        out.model.extend(_remap(part.model, [out.models.code(n) for n in part.models.names]))
        out.provider.extend(_remap(part.provider, [out.providers.code(n) for n in part.providers.names]))
        out.kind.extend(_remap(part.kind, [out.kinds.code(n) for n in part.kinds.names]))
        lines = part.line
        if base:
            lines = array("i")
            lines.frombytes((np.frombuffer(part.line, np.int32) + base).astype(np.int32).tobytes())
        out.line.extend(lines)
        for name in ("failed", "reward", "cost", "tokens_in", "tokens_out", "latency", "fallback", "offset"):
            getattr(out, name).extend(getattr(part, name))
        out.source.extend(array("h", [source_id]) * len(part.variant))
        for code, counter in part.requested.items():
            out.requested.setdefault(vmap[code], Counter()).update(counter)
        out.skipped_lines += part.skipped_lines
        out.unattributed_failures += part.unattributed_failures
        self.bad_lines.extend(f"{path}:{n + base}: {what}; line skipped" for n, what in part.bad_lines)

    def finish(self) -> Records:
        out = self.out
        shown = self.bad_lines[:MAX_LINE_WARNINGS]
        if out.skipped_lines > len(shown):
            shown.append(f"... and {out.skipped_lines - len(shown)} more lines skipped")
        out.line_warnings = shown
        return out
