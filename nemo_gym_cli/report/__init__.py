"""``ng_report``: the model-comparison report over scored rollouts.

    sources.py       which files a user's paths name (sweep manifest, failures, metrics)
    rows.py          the fields read of a row (msgspec), task identity, fallback models
    load.py          rows -> compact columns, streaming, in parallel for large inputs
    records.py       the columns (Records) and how the readers' parts are joined
    stats.py         per-variant figures, bootstrap intervals, pass@k, paired tests
    trajectories.py  the bounded sample of conversations the HTML viewer shows
    plots.py         matplotlib figures as inline SVG
    render.py        terminal table, report.md, report.json, report.html (jinja2)
    command.py       the command: options, the extra's check, the run

Kept free of imports on purpose: numpy, matplotlib, jinja2 and msgspec come with the optional
``report`` extra, and nothing else in the toolkit may need them.
"""

from __future__ import annotations

__all__ = ["report"]


def report(args: list[str]) -> int:
    """Run ``ng_report`` with Hydra-style ``args`` (and bare paths); returns the exit code."""
    from nemo_gym_cli.report.command import report as run

    return run(args)
