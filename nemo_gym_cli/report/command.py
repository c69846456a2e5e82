"""``ng_report``: compare variants (models, sampling, routing) over their scored rollouts.

This module is the command: it turns the arguments (Hydra overrides, or bare paths for
convenience) into ``ReportOptions``, checks that the ``report`` extra is installed, then
reads (``load``), computes (``stats``), samples trajectories (``trajectories``) and writes
``report.json``, ``report.md`` and ``report.html`` (``render``), printing the table.
With ``+baseline`` it exits 1 when a variant is significantly worse than the baseline on
the tasks both ran (``report/gate.py``); with ``$GITHUB_STEP_SUMMARY`` set it appends the
table there too.

Usage errors (no or missing inputs, an unknown key, a bad value, nothing to report, a
task file given instead of an output, a report of other inputs in the way, the extra not
installed) are ``ConfigError``: one line, exit code 2.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nemo_gym_cli.errors import ConfigError

__all__ = ["ReportOptions", "report"]

#: The packages of the ``report`` extra, checked before anything imports them.
EXTRA_PACKAGES = ("numpy", "matplotlib", "jinja2", "msgspec", "latex2mathml")


@dataclass(frozen=True)
class ReportOptions:
    """Options of ``ng_report`` (Hydra keys of the same names)."""

    #: output JSONL files and sweep directories; bare paths on the command line add to it
    inputs: list[str]
    #: where report.{json,md,html} go (default: <sweep dir>/report; for files report_<stems>/
    #: beside the first)
    report_dir: Path | None = None
    #: replace a report of other inputs found in report_dir (else that is a usage error)
    overwrite: bool = False
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
    #: an output or sweep folder: exit 1 when a variant is significantly worse than it
    baseline: str | None = None
    #: significance level of that gate
    gate_alpha: float = 0.05
    #: a drop in mean reward that gate tolerates
    gate_margin: float = 0.0
    #: reward the "cheapest within a margin of the best" pick may give up
    margin: float = 0.02
    #: tasks the projected costs are for (None: the tasks of the inputs)
    project_tasks: int | None = None

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
            baseline=str(options["baseline"]) if options.get("baseline") else None,
            gate_alpha=_alpha(options),
            gate_margin=_number(options, "gate_margin", 0.0, float, 0),
            margin=_number(options, "margin", 0.02, float, 0),
            project_tasks=_number(options, "project_tasks", None, int, 1) if "project_tasks" in options else None,
            overwrite=_flag(options, "overwrite"),
        )


def _alpha(options: dict[str, Any]) -> float:
    alpha = _number(options, "gate_alpha", 0.05, float)
    if not 0 < alpha < 1:
        raise ConfigError(f"+gate_alpha must be between 0 and 1 (a significance level such as 0.05), got {alpha!r}")
    return float(alpha)


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


def _flag(options: dict[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "false"):
        return str(value).lower() == "true"
    raise ConfigError(f"+{key} must be true or false, got {value!r}")


def _check_extra() -> None:
    missing = []
    for name in EXTRA_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(
            f"ng_report needs {', '.join(missing)} (the report extra): pip install -e '.[report]' in a clone of "
            "nemo-gym-cli"
        )


def report(args: list[str]) -> int:
    """Run ``ng_report`` with ``args``; returns the exit code."""
    opts = ReportOptions.from_args(args)
    _check_extra()
    if opts.baseline:
        from nemo_gym_cli.report.gate import check_gate_ready

        check_gate_ready(opts.baseline)
    from nemo_gym_cli.report import render
    from nemo_gym_cli.report.adaptive import find_race, race_summary
    from nemo_gym_cli.report.load import load
    from nemo_gym_cli.report.sources import check_report_dir, default_report_dir, find_sources
    from nemo_gym_cli.report.stats import analyse
    from nemo_gym_cli.report.trajectories import sample_trajectories
    from nemo_gym_cli.report.verdict import decide

    started = time.perf_counter()
    warnings: list[str] = []
    sources = find_sources(opts.inputs, warnings)
    report_dir = opts.report_dir or default_report_dir(opts.inputs)
    replacing = check_report_dir(report_dir, opts.inputs, overwrite=opts.overwrite)
    records = load(sources, group_by=opts.group_by)
    if not len(records):
        where = ", ".join(str(s.path) for s in sources)
        raise ConfigError(f"no rollouts to report: {where} hold no rows and no failures")
    _refuse_task_files(records)
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
    verdict = decide(analysis, margin=opts.margin, project_tasks=opts.project_tasks)
    report_dir.mkdir(parents=True, exist_ok=True)
    trajectories = sample_trajectories(analysis, report_dir, opts.viewer_tasks)
    race = find_race(opts.inputs, warnings)  # an adaptive sweep's (+adaptive=true)
    doc = render.document(analysis, opts.inputs, warnings, verdict)
    if race is not None:
        doc["adaptive"] = race
    files = {
        "report.json": render.dumps(doc),
        "report.md": render.markdown(analysis, opts.inputs, warnings, verdict).encode(),
        "report.html": render.html(analysis, opts.inputs, warnings, trajectories, verdict, race=race).encode(),
    }
    for name, data in files.items():
        (report_dir / name).write_bytes(data)
    tasks = int((analysis.task_rollouts > 0).any(axis=0).sum())
    print(f"{len(analysis.variants)} variants, {int(analysis.keep.sum())} rollouts over {tasks} tasks")
    print(render.terminal(analysis, groups=bool(opts.group_by), verdict=verdict))
    if race is not None:
        print(race_summary(race))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(f"wrote {report_dir / 'report.html'}, report.md and report.json in {elapsed:.1f} s{replacing}")
    code, verdicts = _gate(opts)
    _step_summary(analysis, verdicts, render)
    return code


def _gate(opts: ReportOptions) -> tuple[int, list[str]]:
    """The ``+baseline`` regression gate over the report's inputs (``report/gate.py``)."""
    if not opts.baseline:
        return 0, []
    from nemo_gym_cli.report.gate import gate

    results = gate(
        opts.inputs, opts.baseline, alpha=opts.gate_alpha, margin=opts.gate_margin, seed=opts.seed,
        n_boot=opts.bootstrap_resamples, n_perm=opts.permutations,
    )  # fmt: skip
    for result in results:
        print(result.line(), file=sys.stderr if result.worse else sys.stdout)
    return (1 if any(r.worse for r in results) else 0), [r.line() for r in results]


def _step_summary(analysis: Any, verdicts: list[str], render: Any) -> None:
    """The variants table and paired comparisons, appended to ``$GITHUB_STEP_SUMMARY``."""
    from nemo_gym_cli.report.step_summary import VARIABLE, append_step_summary, markdown_table

    if not os.environ.get(VARIABLE):
        return
    lines = ["### ng_report", "", *markdown_table(*render.summary_rows(analysis)), ""]
    lines += [f"- {c.sentence}" for c in analysis.comparisons]
    lines += [f"- {v}" for v in verdicts]
    path = append_step_summary("\n".join(lines) + "\n")
    print(f"step summary appended to {path}")


def _refuse_task_files(records: Any) -> None:
    """A file whose rows have neither a reward nor a response holds tasks, not rollouts (an
    input file named by mistake): a report of it would be "(unknown model) reward 0"."""
    import numpy as np

    failed = np.frombuffer(records.failed, np.int8).astype(bool)
    scored = ~np.isnan(np.frombuffer(records.reward, np.float64))
    answered = (np.frombuffer(records.model, np.int16) >= 0) | (np.frombuffer(records.tokens_in, np.int64) >= 0)
    source = np.frombuffer(records.source, np.int16)
    rollouts = np.bincount(source[failed | scored | answered], minlength=len(records.sources))
    rows = np.bincount(source, minlength=len(records.sources))
    for s, n, ok in zip(records.sources, rows.tolist(), rollouts.tolist(), strict=True):
        if n and not ok:
            raise ConfigError(
                f"{s.path} holds tasks, not rollouts: none of its {n} rows has a reward or a response "
                "(an input file?); name what ng_collect_rollouts wrote (its +output_jsonl_fpath)"
            )


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
