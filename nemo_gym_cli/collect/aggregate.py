"""``<stem>_aggregate_metrics.json``: NeMo Gym 0.7's per-environment-server summary of a run.

0.7's collector writes it beside every output (a JSON list, one entry per environment server
a run used: ``agent_ref``, ``_ng_environment_server``, ``agent_metrics``, ``key_metrics``,
``group_level_metrics``, ``repeat_level_metrics``), and ``gym eval compare`` reads only it.
The figures are those of ``server/aggregate.py`` (what 0.7's ``/aggregate_metrics``
computes); here rows are grouped by environment server (else agent) and sent as 0.7 sends
them, without their trajectories (``response`` keeps only ``usage``).

``merge_shards`` is ``ng eval aggregate`` (0.7's ``gym eval aggregate``): shard outputs
merged into one file in (task, rollout) order, then summarised, with no server running.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nemo_gym_cli.errors import InputError
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.server.aggregate import aggregate_metrics
from nemo_gym_cli.wire import dumps, dumps_line, loads

__all__ = [
    "aggregate_metrics_path",
    "entries",
    "merge_shards",
    "slim",
    "with_figures",
    "write_aggregate_metrics",
    "write_aggregate_metrics_entries",
]

#: Row keys 0.7 strips before /aggregate_metrics (the trajectory, not the figures).
_HEAVY = ("responses_create_params", "ng_agent_observations", "ng_model_call_capture", "ng_trajectory")


def aggregate_metrics_path(output: Path) -> Path:
    return OutputFiles(output).aggregate_metrics


def slim(row: dict[str, Any]) -> dict[str, Any]:
    """A row as 0.7 sends it to ``/aggregate_metrics``: no trajectory, the usage kept."""
    out = {k: v for k, v in row.items() if k not in _HEAVY and k != "response"}
    response = row.get("response")
    if isinstance(response, dict):
        out["response"] = {k: response[k] for k in ("usage", "incomplete_details") if k in response}
    return out


def _label(row: dict[str, Any]) -> tuple[str, str | None]:
    ref = row.get("agent_ref")
    name = ref.get("name") if isinstance(ref, dict) else None
    agent = name if isinstance(name, str) else "agent"
    server = row.get("_ng_environment_server")
    return agent, server if isinstance(server, str) else None


def entries(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One 0.7 aggregate entry per (agent, environment server) of ``rows``."""
    groups: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(_label(row), []).append(slim(row))
    out = []
    for (agent, server), members in groups.items():
        entry: dict[str, Any] = {"agent_ref": {"name": agent}}
        if server is not None:
            entry["_ng_environment_server"] = server
        out.append(with_figures(entry, aggregate_metrics(members)))
    return out


#: An entry's figures, in 0.7's order (``perf_summary`` only when there is one).
FIGURES = ("agent_metrics", "key_metrics", "group_level_metrics", "repeat_level_metrics", "perf_summary")


def with_figures(entry: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    """``entry`` (its ``agent_ref`` and ``_ng_environment_server``) with the figures of an
    ``/aggregate_metrics`` answer, in 0.7's order."""
    out = {k: v for k, v in entry.items() if k in ("agent_ref", "_ng_environment_server")}
    out.update({k: figures[k] for k in FIGURES if k in figures and (k != "perf_summary" or figures[k] is not None)})
    return out


def write_aggregate_metrics(output: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write ``<stem>_aggregate_metrics.json`` of ``rows`` beside ``output``; its path."""
    path = aggregate_metrics_path(output)
    write_aggregate_metrics_entries(path, entries(rows))
    return path


def write_aggregate_metrics_entries(path: Path, found: list[dict[str, Any]]) -> None:
    """Write 0.7's aggregate entries to ``path`` (atomically: never half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(dumps(found))
    tmp.replace(path)


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = loads(line)
            except ValueError:
                raise InputError(
                    f"{path}:{number}: not a JSON object (a torn last line? resume the run first)"
                ) from None
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: not a JSON object")
            yield row


def merge_shards(input_glob: str, output: Path) -> tuple[int, list[Path], Path]:
    """``ng eval aggregate``: every row of the outputs ``input_glob`` matches (a glob, or
    comma-separated globs; ``*_failures`` and ``*_materialized_inputs`` files skipped) into
    ``output`` in (task, rollout) order, and its aggregate metrics beside it."""
    shards = sorted(
        {
            Path(p)
            for pattern in input_glob.split(",")
            if pattern.strip()
            for p in glob.glob(pattern.strip())
            if Path(p).suffix == ".jsonl" and not Path(p).stem.endswith(("_failures", "_materialized_inputs"))
        }
    )
    shards = [p for p in shards if p.resolve() != output.resolve()]
    if not shards:
        raise InputError(f"no rollout files match {input_glob!r} (.jsonl, not *_failures or *_materialized_inputs)")
    rows = [row for shard in shards for row in _rows(shard)]
    rows.sort(key=lambda r: (int(r.get("_ng_task_index", 0) or 0), int(r.get("_ng_rollout_index", 0) or 0)))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    with tmp.open("wb") as f:
        for row in rows:
            f.write(dumps_line(row))
    tmp.replace(output)
    return len(rows), shards, write_aggregate_metrics(output, rows)
