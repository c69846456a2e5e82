"""What a run ran, recorded in its metrics file, and the check that a resume runs the same.

The ``run`` record of ``<stem>_metrics.json``: the toolkit version, start and end time, where
the servers came from (started for this run, or a running head server), the agent, the
model asked for, the input (path, SHA-256, rows), the options, the sampling parameters
merged into every row, and the resolved config with every secret redacted (plus a
fingerprint of what defines the experiment: the agent's, its environment's and its model's
config). It is written when the run starts and again when it ends, so a run killed outright
still says what it was.

``check_resume`` compares the record of the run being resumed with this one's and refuses
(naming each difference) when the rows would not be of the same experiment: another model,
agent, input, number of repeats, sampling parameters or server config.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from nemo_gym_cli.collect.model_servers import model_server_of, served
from nemo_gym_cli.collect.options import CollectOptions, Variant
from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.errors import InputError
from nemo_gym_cli.process.head import redact
from nemo_gym_cli.wire import dumps

__all__ = ["check_resume", "input_digest", "now", "requested_model", "run_record"]

#: The fields of the record that must match for a resume to continue the same experiment.
COMPARED = ("agent", "requested_model", "input_sha256", "num_repeats", "responses_create_params", "config_sha256")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def toolkit_version() -> str:
    try:
        return metadata.version("nemo-gym-cli")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def input_digest(path: Path) -> str:
    """SHA-256 of the input file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def requested_model(config: GlobalConfig, agent: str | None, variant: Variant | None) -> str | None:
    """The model this run asks for: the variant's, else the one the agent's model server
    says it serves."""
    if variant is not None and variant.model is not None:
        return variant.model
    target = model_server_of(config, agent)
    declared = served(target) if target is not None else None
    return declared.model if declared is not None else None


def experiment(config: GlobalConfig, agent: str | None) -> dict[str, Any]:
    """What defines the experiment a run's rows belong to: the agent's config, its
    environment's, and what its model server asks the provider for (not timeouts, retries
    or fault injection: a resume after fixing those continues the same experiment)."""
    inst = config.instances.get(agent or "")
    if inst is None:
        return {}
    out: dict[str, Any] = {"agent": redact(inst.fields)}
    for role in ("resources_server", "model_server"):
        ref = inst.fields.get(role)
        target = config.instances.get(ref.get("name", "")) if isinstance(ref, dict) else None
        if target is None:
            continue
        fields = target.fields
        if role == "model_server":  # the keys its config says change what it answers
            declared = served(target)
            fields = declared.answer if declared is not None else {}
        out[role] = {"implementation": target.implementation, **redact(fields)}
    return out


def _config(config: GlobalConfig) -> dict[str, Any]:
    """The resolved config, secrets redacted, without what changes per run (ports)."""
    instances = {
        name: {inst.server_type: {inst.implementation: redact(inst.fields)}} for name, inst in config.instances.items()
    }
    return {"instances": instances}


def run_record(
    opts: CollectOptions,
    config: GlobalConfig,
    *,
    lane: str,
    variant: Variant | None,
    servers: str,
    agents: Mapping[str, Any],
    input_sha256: str,
    num_tasks: int,
    started_at: str,
) -> dict[str, Any]:
    resolved = _config(config)
    defining = experiment(config, opts.agent_name)
    params = dict(opts.responses_create_params)
    if variant is not None:
        params.update(variant.params())
    return {
        "toolkit_version": toolkit_version(),
        "started_at": started_at,
        "ended_at": None,
        "servers": servers,
        "agents": sorted(agents),
        "agent": opts.agent_name,
        "variant": lane or None,
        "requested_model": requested_model(config, opts.agent_name, variant),
        "input": {"path": str(opts.input_path), "sha256": input_sha256, "tasks": num_tasks},
        "input_sha256": input_sha256,
        "num_repeats": opts.num_repeats,
        "limit": opts.limit,
        "responses_create_params": redact(params),
        "options": redact(opts.model_dump(mode="json", exclude={"variants", "models"})),
        "config": resolved,
        "config_sha256": hashlib.sha256(dumps(defining)).hexdigest() if defining else None,
    }


def check_resume(previous: dict[str, Any] | None, current: dict[str, Any], output: Path) -> None:
    """Refuse to resume ``output`` with a run that differs from the one that wrote it."""
    if not isinstance(previous, dict):
        return
    differences = []
    for key in COMPARED:
        before, after = previous.get(key), current.get(key)
        if key == "config_sha256" and (before is None or after is None):
            continue  # a run against a running ng_run does not know the servers' config
        if before != after:
            differences.append(f"{key}: {_short(before)} then, {_short(after)} now")
    if differences:
        raise InputError(
            f"cannot resume {str(output)!r}: it was collected differently ({'; '.join(differences)}); "
            "resuming would mix rows of two experiments: choose another +output_jsonl_fpath, or run the same "
            "command as before"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:40] + "..." + text[-20:]
