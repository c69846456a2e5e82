"""What ``ng_report`` reads: the output files a user points at, and what lies beside them.

A user names output JSONL files, sweep directories, or both. Each becomes one or more
``Source``s: an output file with its ``<stem>_failures.jsonl`` and ``<stem>_metrics.json``
(both optional), and, in a sweep with a ``sweep.json`` manifest, the variant that file
holds and the model that variant asked for. Nothing here reads rows: this is the cheap,
up-front step where a wrong path is a usage error (exit 2) before any work is done.

The collector is changing in parallel, so everything beside the rows is read
defensively: a missing or malformed metrics file is a warning, never a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import orjson

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.outputs import OutputFiles

__all__ = ["MANIFEST", "Source", "check_report_dir", "default_report_dir", "find_sources", "input_identity"]

#: The sweep manifest's file name inside a sweep directory (the collector's name for it).
MANIFEST = OutputFiles.MANIFEST


@dataclass(frozen=True)
class Source:
    """One output file and what belongs to it."""

    #: the output JSONL (it may be missing when every rollout of a variant failed)
    path: Path
    #: ``<stem>_failures.jsonl`` when it exists
    failures: Path | None
    #: the ``<stem>_metrics.json`` document when it exists and parses
    metrics: dict[str, Any] | None
    #: the variant every row of this file belongs to (from the manifest), else None
    variant: str | None = None
    #: the model that variant requested (from the manifest), else None
    model: str | None = None
    #: the manifest's overrides of that variant
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def run(self) -> dict[str, Any] | None:
        """The metrics file's ``run`` object (what the collection ran), if any."""
        run = (self.metrics or {}).get("run")
        return run if isinstance(run, dict) else None

    @property
    def rollouts_per_s(self) -> float | None:
        """Throughput of the collection that wrote this file, from its metrics file."""
        doc = self.metrics or {}
        rate = doc.get("rollouts_per_s")
        if _number(rate):
            return float(rate)
        wall, rollouts = doc.get("wall_time_s"), doc.get("rollouts")
        if _number(wall) and _number(rollouts) and wall > 0:
            return float(rollouts) / float(wall)
        return None


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metrics(output: Path, warnings: list[str]) -> dict[str, Any] | None:
    path = OutputFiles(output).metrics
    if not path.is_file():
        return None
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        warnings.append(f"{path}: not readable JSON ({exc}); its run details and rollouts/s are left out")
        return None
    if not isinstance(doc, dict):
        warnings.append(f"{path}: not a JSON object; left out")
        return None
    return doc


def _source(output: Path, warnings: list[str], **manifest: Any) -> Source:
    failures = OutputFiles(output).failures
    return Source(
        path=output,
        failures=failures if failures.is_file() else None,
        metrics=_metrics(output, warnings),
        **manifest,
    )


def _is_output(path: Path) -> bool:
    """An output file: not a failures file, nor the collector's materialized inputs."""
    return path.suffix == ".jsonl" and not OutputFiles.is_companion(path)


def _from_manifest(directory: Path, warnings: list[str]) -> list[Source]:
    manifest = directory / MANIFEST
    try:
        doc = orjson.loads(manifest.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(
            f"{manifest} is not readable JSON ({exc}); fix it, or remove it to read every .jsonl"
        ) from None
    entries = doc.get("variants") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(
            f'{manifest} has no "variants" list; expected {{"variants": [{{"name": ..., "output": ...}}]}}'
        )
    sources: list[Source] = []
    named: set[Path] = set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("output"):
            raise ConfigError(f"{manifest}: variants[{i}] needs a name and an output, got {entry!r}")
        output = directory / str(entry["output"])
        named.add(output.resolve())
        model = entry.get("model")
        overrides = entry.get("overrides") if isinstance(entry.get("overrides"), dict) else {}
        if not output.is_file() and not OutputFiles(output).failures.is_file():
            warnings.append(f"{manifest}: variant {entry['name']!r} has no output {output} (not run yet?): left out")
            continue
        sources.append(
            _source(
                output, warnings, variant=str(entry["name"]), model=str(model) if model else None, overrides=overrides
            )
        )
    for path in sorted(directory.glob("*.jsonl")):
        if _is_output(path) and path.resolve() not in named:
            warnings.append(f"{manifest} does not name {path.name}: left out of the report")
    return sources


def _from_directory(directory: Path, warnings: list[str]) -> list[Source]:
    if (directory / MANIFEST).is_file():
        return _from_manifest(directory, warnings)
    outputs = [p for p in sorted(directory.glob("*.jsonl")) if _is_output(p)]
    if not outputs:
        raise ConfigError(f"{str(directory)!r} holds no output .jsonl files and no {MANIFEST}; name the files instead")
    return [_source(p, warnings) for p in outputs]


def find_sources(inputs: list[str], warnings: list[str]) -> list[Source]:
    """The sources of the paths a user named; a path that does not exist is a ``ConfigError``."""
    if not inputs:
        raise ConfigError(
            "no inputs: name output JSONL files or a sweep directory, e.g. ng_report results/sweep/ "
            "or ng_report +inputs=[results/a.jsonl,results/b.jsonl]"
        )
    sources: list[Source] = []
    seen: set[Path] = set()
    for entry in inputs:
        path = Path(entry).expanduser()
        named = OutputFiles.of_failures(path)
        if named is not None:  # the failures file named: read its output with it
            path = named.output
        if path.is_dir():
            found = _from_directory(path, warnings)
        elif path.is_file() or OutputFiles(path).failures.is_file():  # every rollout may have failed
            found = [_source(path, warnings)]
        else:
            raise ConfigError(f"input {entry!r} does not exist (looked in {Path.cwd()})")
        for source in found:
            key = source.path.resolve()
            if key not in seen:
                seen.add(key)
                sources.append(source)
    return sources


def default_report_dir(inputs: list[str]) -> Path:
    """``<dir>/report`` for one sweep directory; for files (or several inputs)
    ``report_<stem>+<stem>/`` beside the first, so a report of two files of a sweep never
    lands in the sweep's own ``report/``."""
    first = Path(inputs[0]).expanduser()
    if len(inputs) == 1 and first.is_dir():
        return first / "report"
    stems = [Path(i).expanduser().stem or Path(i).expanduser().resolve().name for i in inputs]
    name = "+".join(stems)
    if len(name) > 60:
        name = f"{stems[0]}+{len(stems) - 1}_more"
    return (first if first.is_dir() else first.parent) / f"report_{name}"


#: The files a report directory holds.
REPORT_FILES = ("report.json", "report.md", "report.html")


def input_identity(inputs: list[str]) -> list[str]:
    """What a report is of: its inputs as absolute paths, sorted (a sweep directory stays
    one input however many variants it holds, so re-reporting a grown sweep replaces its
    own report)."""
    return sorted(str(Path(i).expanduser().resolve()) for i in inputs)


def check_report_dir(report_dir: Path, inputs: list[str], *, overwrite: bool) -> str:
    """Refuse (``ConfigError``) to replace a report of other inputs in ``report_dir`` unless
    ``overwrite``; returns a note for the "wrote" line when a report is replaced."""
    present = [n for n in REPORT_FILES if (report_dir / n).is_file()]
    if not present:
        return ""
    theirs: list[str] | None = None
    try:
        doc = orjson.loads((report_dir / "report.json").read_bytes())
        listed = (doc.get("input_paths") or doc.get("inputs")) if isinstance(doc, dict) else None
        if isinstance(listed, list):
            theirs = input_identity([str(x) for x in listed])
    except (OSError, orjson.JSONDecodeError):
        pass
    if theirs == input_identity(inputs):
        return " (replacing the report of the same inputs)"
    if overwrite:
        return " (replacing the report of other inputs: +overwrite=true)"
    what = (
        "the report of " + ", ".join(Path(t).name for t in theirs)
        if theirs
        else f"a report ({present[0]}) that does not say what it is of"
    )
    raise ConfigError(
        f"{report_dir} already holds {what}; write this one elsewhere with "
        "+report_dir=<another folder>, or replace it with +overwrite=true"
    )
