"""The files a collection writes beside its output, named in one place.

``OutputFiles(output)`` names everything that belongs to one output ``<stem>.jsonl``:
``<stem>_metrics.json``, ``<stem>_failures.jsonl``, ``<stem>_materialized_inputs.jsonl``,
``<stem>_aggregate_metrics.json`` (NeMo Gym 0.7's summary), a
dry run's pilot ``<stem>_dry_run.jsonl``, and a sweep's folder ``<stem>/`` holding one
``<variant>.jsonl`` per variant and the manifest ``sweep.json``. The collector writes through
it and ``ng_report`` finds files through it, so the two never disagree on a name.

The writers: ``write_metrics`` (atomically: never a half-written metrics file),
``materialize_inputs`` (the input row of every rollout in the output, as NeMo Gym's reward
profiling reads it) and ``write_sweep`` (the manifest, keeping an earlier run's variants).
This module stays light: ``ng_report`` imports it before anything heavy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_gym_cli.wire import dumps, dumps_line, loads

__all__ = ["OutputFiles", "SweepEntry", "write_metrics", "write_sweep"]


@dataclass(frozen=True)
class OutputFiles:
    """The names of the files of one output ``<stem>.jsonl``."""

    output: Path

    METRICS = "_metrics.json"
    FAILURES = "_failures.jsonl"
    MATERIALIZED_INPUTS = "_materialized_inputs.jsonl"
    DRY_RUN = "_dry_run.jsonl"
    #: NeMo Gym 0.7's per-environment-server summary (``collect/aggregate.py``)
    AGGREGATE_METRICS = "_aggregate_metrics.json"
    #: the sweep manifest's name inside a sweep folder
    MANIFEST = "sweep.json"
    #: an adaptive sweep's race, inside the sweep folder (``collect/adaptive.py``)
    ADAPTIVE = "adaptive.json"
    #: its journal: the settings, then one line per round, appended (not ``.jsonl``: a folder
    #: read without its manifest takes every ``.jsonl`` for an output)
    ADAPTIVE_JOURNAL = "adaptive_rounds.ndjson"

    def _beside(self, suffix: str) -> Path:
        return self.output.with_name(self.output.stem + suffix)

    @property
    def metrics(self) -> Path:
        return self._beside(self.METRICS)

    @property
    def failures(self) -> Path:
        return self._beside(self.FAILURES)

    @property
    def materialized_inputs(self) -> Path:
        return self._beside(self.MATERIALIZED_INPUTS)

    @property
    def aggregate_metrics(self) -> Path:
        return self._beside(self.AGGREGATE_METRICS)

    @property
    def dry_run(self) -> Path:
        """The output of a ``+dry_run`` pilot of this output."""
        return self._beside(self.DRY_RUN)

    @property
    def sweep_folder(self) -> Path:
        return self.output.with_suffix("")

    @property
    def manifest(self) -> Path:
        return self.sweep_folder / self.MANIFEST

    @property
    def adaptive(self) -> Path:
        return self.sweep_folder / self.ADAPTIVE

    @property
    def adaptive_journal(self) -> Path:
        return self.sweep_folder / self.ADAPTIVE_JOURNAL

    def variant(self, name: str) -> Path:
        """The output of variant ``name`` of a sweep into this output."""
        return self.sweep_folder / f"{name}.jsonl"

    @classmethod
    def is_companion(cls, path: Path) -> bool:
        """A ``.jsonl`` that belongs to an output rather than being one (failures, inputs)."""
        return path.name.endswith((cls.FAILURES, cls.MATERIALIZED_INPUTS))

    @classmethod
    def of_failures(cls, path: Path) -> OutputFiles | None:
        """The output whose failures file ``path`` is (None: it is not one)."""
        if not path.name.endswith(cls.FAILURES):
            return None
        return cls(path.with_name(path.name[: -len(cls.FAILURES)] + ".jsonl"))


def write_metrics(output: Path, doc: dict[str, Any]) -> None:
    """``<stem>_metrics.json``, replaced atomically: never a half-written metrics file."""
    path = OutputFiles(output).metrics
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(dumps(doc))
    tmp.replace(path)


def write_materialized_inputs(output: Path, rows: Iterable[dict[str, Any]]) -> None:
    """``<stem>_materialized_inputs.jsonl``: ``rows`` (each rollout's input row), atomically."""
    path = OutputFiles(output).materialized_inputs
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for row in rows:
            f.write(dumps_line(row))
    tmp.replace(path)


@dataclass(frozen=True)
class SweepEntry:
    """One variant's line of ``sweep.json``."""

    name: str
    output: Path
    model: str | None
    overrides: Mapping[str, Any]
    status: str


def write_sweep(output: Path, input_path: Path, entries: list[SweepEntry]) -> None:
    """``sweep.json``: this run's variants, kept in the order of an earlier manifest of the
    folder over the same input, whose other variants stay (resuming one variant, or adding
    one, leaves the rest in the report)."""
    manifest = OutputFiles(output).manifest
    current = {
        e.name: {
            "name": e.name,
            "output": e.output.name,
            "model": e.model,
            "overrides": dict(e.overrides),
            "status": e.status,
        }
        for e in entries
    }
    try:
        earlier = loads(manifest.read_bytes())
    except (OSError, ValueError):
        earlier = None
    variants = []
    if isinstance(earlier, dict) and earlier.get("input") == str(input_path):
        for entry in earlier.get("variants") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                variants.append(current.pop(entry["name"], entry))
    variants += current.values()
    manifest.write_bytes(dumps({"input": str(input_path), "variants": variants}))
