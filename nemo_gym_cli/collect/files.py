"""Rollout files: lazy task input, crash-safe JSONL output with resume, the failures file.

Memory stays flat in the input size: input is read line by line; the set of rollouts already
written (for resume) is a bitset indexed by ``task * num_repeats + rollout``. An adaptive
sweep, whose rounds take the tasks in a random order, reads them through a ``TaskIndex``:
16 bytes per task.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nemo_gym_cli.errors import InputError
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.wire import dumps_line, loads

__all__ = [
    "DoneSet",
    "FailuresFile",
    "InputRow",
    "OutputFile",
    "TaskIndex",
    "count_tasks",
    "failures_path",
    "metrics_path",
    "read_tasks",
]


@dataclass(frozen=True, slots=True)
class InputRow:
    task_index: int
    line_number: int
    row: dict[str, Any] | None  # None when the line is not a JSON object
    error: str = ""


def read_tasks(path: Path, limit: int | None = None) -> Iterator[InputRow]:
    """Yield the input's tasks lazily: the n-th non-blank line is task n (0-based).

    A line that is not a JSON object is yielded with ``row=None`` and an ``error`` naming its
    line number, so the caller can report it and go on."""
    task_index = 0
    with path.open("rb") as f:
        for line_number, line in enumerate(f, start=1):
            if limit is not None and task_index >= limit:
                return
            if not line.strip():
                continue
            yield _input_row(path, task_index, line_number, line)
            task_index += 1


def _input_row(path: Path, task_index: int, line_number: int, line: bytes) -> InputRow:
    try:
        row = loads(line)
    except ValueError as exc:
        return InputRow(task_index, line_number, None, f"{path}:{line_number}: not valid JSON ({exc})")
    if isinstance(row, dict):
        return InputRow(task_index, line_number, row)
    error = f"{path}:{line_number}: a row must be a JSON object, got {type(row).__name__}"
    return InputRow(task_index, line_number, None, error)


class TaskIndex:
    """Where each task's line starts in the input, found in one pass without parsing; then
    any task is one seek and one line away.

    Why: an adaptive sweep's rounds take the tasks in a random order, a block a round.
    Reading the input from its start up to a round's last task (far into the file, the order
    being random) every round read it about once a round: tasks^2 / round size lines over a
    race. With the index, a race reads each task it runs once more, and the whole file once.
    The tasks are numbered as ``read_tasks`` numbers them (non-blank lines, up to ``limit``);
    the input must not change under a run (its digest is checked at the start, as always)."""

    def __init__(self, path: Path, limit: int | None = None) -> None:
        self.path = path
        self._offsets = array("q")  # byte offset of each task's line
        self._lines = array("q")  # its line number (1-based), for the errors
        offset = 0
        with path.open("rb") as f:
            for line_number, line in enumerate(f, start=1):
                if limit is not None and len(self._offsets) >= limit:
                    break
                if line.strip():
                    self._offsets.append(offset)
                    self._lines.append(line_number)
                offset += len(line)

    def __len__(self) -> int:
        return len(self._offsets)

    def read(self, tasks: Iterable[int]) -> list[InputRow]:
        """The rows of ``tasks``, in task order (as ``read_tasks`` would yield them)."""
        out = []
        with self.path.open("rb") as f:
            for task in sorted(set(tasks)):
                if not 0 <= task < len(self._offsets):
                    raise IndexError(f"{self.path} has no task {task} (it has {len(self._offsets)})")
                f.seek(self._offsets[task])
                out.append(_input_row(self.path, task, self._lines[task], f.readline()))
        return out


def count_tasks(path: Path, limit: int | None = None) -> int:
    """Number of non-blank lines (capped at ``limit``), counted without parsing."""
    n = 0
    if limit is not None and limit <= 0:
        return 0
    with path.open("rb") as f:
        for line in f:
            if line.strip():
                n += 1
                if limit is not None and n >= limit:
                    break
    return n


class DoneSet:
    """Which ``(task, rollout)`` pairs are already in the output: one bit each.

    Only pairs of this run are tracked (``0 <= rollout < num_repeats``, ``task >= 0``);
    others are never "in" the set and ``add`` refuses them.
    """

    def __init__(self, num_repeats: int) -> None:
        self.k = num_repeats
        self.bits = bytearray()
        self.count = 0

    def _pos(self, task: int, rollout: int) -> int:
        if task < 0 or not 0 <= rollout < self.k:
            return -1
        return task * self.k + rollout

    def add(self, task: int, rollout: int) -> bool:
        """Mark a pair done; False if it already was (a duplicate) or is not of this run."""
        pos = self._pos(task, rollout)
        if pos < 0:
            return False
        byte, bit = divmod(pos, 8)
        if byte >= len(self.bits):
            self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits) // 2 + 64)))
        if self.bits[byte] >> bit & 1:
            return False
        self.bits[byte] |= 1 << bit
        self.count += 1
        return True

    def __contains__(self, pair: tuple[int, int]) -> bool:
        pos = self._pos(*pair)
        if pos < 0:
            return False
        byte, bit = divmod(pos, 8)
        return byte < len(self.bits) and bool(self.bits[byte] >> bit & 1)

    def __len__(self) -> int:
        return self.count


def metrics_path(output: Path) -> Path:
    """``<output stem>_metrics.json`` beside the output (named by ``OutputFiles``)."""
    return OutputFiles(output).metrics


def failures_path(output: Path) -> Path:
    """``<output stem>_failures.jsonl`` beside the output (named by ``OutputFiles``)."""
    return OutputFiles(output).failures


class OutputFile:
    """The output JSONL: each row written with one ``write`` and flushed before it counts.

    On resume, a torn last line (a crash mid-write) is cut off, and the rows already there
    are read back once so they are neither redone nor written twice.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: IO[bytes] | None = None

    def existing_rows(self) -> Iterator[dict[str, Any]]:
        """Rows already in the file, after truncating a torn or unparsable last line."""
        if not self.path.exists():
            return
        self._truncate_torn_tail()
        with self.path.open("rb") as f:
            for line_number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = loads(line)
                except ValueError:
                    raise InputError(
                        f"{self.path}:{line_number}: existing output line is not valid JSON; "
                        "fix or remove that line, then resume"
                    ) from None
                if isinstance(row, dict):
                    yield row

    def _truncate_torn_tail(self) -> None:
        size = self.path.stat().st_size
        if size == 0:
            return
        with self.path.open("rb+") as f:
            # Find the last newline; anything after it is a torn row.
            pos, chunk = size, 65536
            tail_start = 0
            while pos > 0:
                start = max(0, pos - chunk)
                f.seek(start)
                data = f.read(pos - start)
                idx = data.rfind(b"\n")
                if idx >= 0:
                    tail_start = start + idx + 1
                    break
                pos = start
            if tail_start < size:
                f.seek(tail_start)
                tail = f.read()
                try:
                    loads(tail)  # a complete row that only lacks its newline: keep it
                    f.seek(size)
                    f.write(b"\n")
                except ValueError:
                    f.truncate(tail_start)

    def open(self, *, append: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("ab" if append else "wb")

    def write(self, row: dict[str, Any]) -> None:
        assert self._f is not None
        self._f.write(dumps_line(row))
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None


class FailuresFile:
    """``<output stem>_failures.jsonl``: one line per rollout that failed for good.

    Created on the first failure. A new run (or a resume) starts by removing the previous
    one: its rollouts are not in the output, so this run tries them again.
    """

    def __init__(self, output: Path) -> None:
        self.path = failures_path(output)
        self._f: IO[bytes] | None = None

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self.path.open("ab")
        self._f.write(dumps_line(record))
        self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
