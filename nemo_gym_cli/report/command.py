"""``ng_report``: compare variants (models, sampling, routing) over their scored rollouts.

This module is the command: it turns the arguments (Hydra overrides, or bare paths for
convenience) into ``ReportOptions``, checks that the ``report`` extra is installed, then
reads (``load``), computes (``stats``), samples trajectories (``trajectories``) and writes
``report.json``, ``report.md`` and ``report.html`` (``render``), printing the table.

Usage errors (no or missing inputs, an unknown key, a bad value, nothing to report, the
extra not installed) are ``ConfigError``: one line, exit code 2.
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_gym_cli.errors import ConfigError

__all__ = ["ReportOptions", "report"]

#: The packages of the ``report`` extra, checked before anything imports them.
EXTRA_PACKAGES = ("numpy", "matplotlib", "jinja2", "msgspec")


@dataclass(frozen=True)
class ReportOptions:
    """Options of ``ng_report`` (Hydra keys of the same names)."""

    #: output JSONL files and sweep directories; bare paths on the command line add to it
    inputs: list[str]
    #: where report.{json,md,html} go (default: <sweep dir>/report, or report/ beside the first file)
    report_dir: Path | None = None
    #: a rollout passes when its reward is at least this (pass@k, solved tasks)
    pass_threshold: float = 1.0
    #: dotted row field to break the reward down by (default: subset, subject, category or
    #: meta.category when the rows have one; "none": no breakdown)
    group_by: str | None = None
    #: seed of every bootstrap and permutation (same inputs + seed = same report)
    seed: int = 0
    #: bootstrap resamples behind each 95% interval
    bootstrap_resamples: int = 2000
    #: sign flips behind each paired p-value
    permutations: int = 10000
    #: most tasks whose trajectories report.html embeds
    viewer_tasks: int = 200

    @classmethod
    def from_args(cls, args: list[str]) -> ReportOptions:
        """Parse ``+key=value`` overrides and bare paths (``ng_report results/sweep/``)."""
        overrides = [a for a in args if "=" in a]
        paths = [a for a in args if "=" not in a]
        unknown_flags = [p for p in paths if p.startswith("-")]
        if unknown_flags:
            raise ConfigError(f"unknown option {unknown_flags[0]!r}; see ng_report --help")
        options = _overrides(overrides)
        known = {f.name for f in cls.__dataclass_fields__.values()}
        extra = sorted(set(options) - known)
        if extra:
            raise ConfigError(f"unknown key +{extra[0]}; ng_report knows: {', '.join(sorted(known))}")
        inputs = options.get("inputs")
        if inputs is None:
            inputs = []
        elif isinstance(inputs, (str, Path)):
            inputs = [str(inputs)]
        elif isinstance(inputs, list):
            inputs = [str(i) for i in inputs]
        else:
            raise ConfigError(f"+inputs must be a path or a list of paths, got {inputs!r}")
        group_by = options.get("group_by")
        report_dir = options.get("report_dir")
        return cls(
            inputs=inputs + paths,
            report_dir=Path(str(report_dir)).expanduser() if report_dir else None,
            pass_threshold=_number(options, "pass_threshold", 1.0, float),
            group_by=None if group_by is None else ("" if str(group_by).lower() == "none" else str(group_by)),
            seed=_number(options, "seed", 0, int, 0),
            bootstrap_resamples=_number(options, "bootstrap_resamples", 2000, int, 100),
            permutations=_number(options, "permutations", 10000, int, 100),
            viewer_tasks=_number(options, "viewer_tasks", 200, int, 0),
        )


def _overrides(args: list[str]) -> dict[str, Any]:
    if not args:
        return {}
    from omegaconf import OmegaConf

    from nemo_gym_cli.config import parse_overrides

    cfg, _ = parse_overrides(args)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _number(options: dict[str, Any], key: str, default: Any, typ: type, minimum: float | None = None) -> Any:
    value = options.get(key, default)
    try:
        value = typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"+{key} must be a {typ.__name__}, got {value!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"+{key} must be at least {minimum}, got {value!r}")
    return value


def _check_extra() -> None:
    missing = []
    for name in EXTRA_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"ng_report needs {', '.join(missing)} (the report extra): pip install 'nemo-gym-cli[report]'"
        )


def report(args: list[str]) -> int:
    """Run ``ng_report`` with ``args``; returns the exit code."""
    opts = ReportOptions.from_args(args)
    _check_extra()
    from nemo_gym_cli.report import render
    from nemo_gym_cli.report.adaptive import find_race, race_summary
    from nemo_gym_cli.report.load import load
    from nemo_gym_cli.report.sources import default_report_dir, find_sources
    from nemo_gym_cli.report.stats import analyse
    from nemo_gym_cli.report.trajectories import sample_trajectories

    started = time.perf_counter()
    warnings: list[str] = []
    sources = find_sources(opts.inputs, warnings)
    records = load(sources, group_by=opts.group_by)
    if not len(records):
        where = ", ".join(str(s.path) for s in sources)
        raise ConfigError(f"no rollouts to report: {where} hold no rows and no failures")
    analysis = analyse(
        records,
        pass_threshold=opts.pass_threshold,
        seed=opts.seed,
        n_boot=opts.bootstrap_resamples,
        n_perm=opts.permutations,
    )
    warnings += records.line_warnings + analysis.warnings + _gaps(analysis) + _empty(records)
    if opts.group_by and not analysis.groups:
        warnings.append(f"+group_by={opts.group_by}: no row has this field, so there is no reward by subset")
    report_dir = opts.report_dir or default_report_dir(opts.inputs)
    report_dir.mkdir(parents=True, exist_ok=True)
    trajectories = sample_trajectories(analysis, report_dir, opts.viewer_tasks)
    race = find_race(opts.inputs, warnings)  # an adaptive sweep's (+adaptive=true)
    doc = render.document(analysis, opts.inputs, warnings)
    if race is not None:
        doc["adaptive"] = race
    files = {
        "report.json": render.dumps(doc),
        "report.md": render.markdown(analysis, opts.inputs, warnings).encode(),
        "report.html": render.html(analysis, opts.inputs, warnings, trajectories, race=race).encode(),
    }
    for name, data in files.items():
        (report_dir / name).write_bytes(data)
    tasks = int((analysis.task_rollouts > 0).any(axis=0).sum())
    print(f"{len(analysis.variants)} variants, {int(analysis.keep.sum())} rollouts over {tasks} tasks")
    print(render.terminal(analysis, groups=bool(opts.group_by)))
    if race is not None:
        print(race_summary(race))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"wrote {report_dir / 'report.html'}, report.md and report.json in {elapsed:.1f} s")
    return 0


def _empty(records: Any) -> list[str]:
    """Warnings for sources that gave nothing (an empty file beside others)."""
    import numpy as np

    counts = np.bincount(np.frombuffer(records.source, np.int16), minlength=len(records.sources))
    return [
        f"{s.path}: no rows and no failures: left out" for s, n in zip(records.sources, counts, strict=True) if not n
    ]


def _gaps(a: Any) -> list[str]:
    """Warnings for figures that rest on incomplete rows."""
    out = []
    for v in a.variants:
        for count, what in (
            (v.rollouts_without_reward, "have no reward (counted 0 in the headline mean)"),
            (v.rollouts_without_usage, "have no usage (tokens left out)"),
            (v.cost.rollouts_without_cost, "have no cost (the cost figures are a lower bound)"),
        ):
            if count:
                out.append(f"{v.name}: {count} of {v.succeeded} rollouts {what}")
    if a.records.unattributed_failures:
        out.append(
            f"{a.records.unattributed_failures} failed rollouts could not be given a variant (a file holding "
            "several variants whose failure rows carry no _ng_variant): left out"
        )
    return out
