"""Hosting NeMo Gym's own servers: how ``ng_run`` starts one the way NeMo Gym 0.7's does.

A NeMo Gym server is its folder's entrypoint run by an interpreter that has the ``nemo_gym``
package (``environments.py``), with the contract 0.7's ``ng_run`` gives its children
(cli/env.py:478-538, server_utils.py:1330-1450 of the 0.7.0 wheel):

- cwd = the server's folder, argv = ``<env python> <entrypoint>`` (nothing else: the config
  holds keys, which never go on a command line);
- ``NEMO_GYM_CONFIG_PATH`` = the instance's name, ``NEMO_GYM_CONFIG_DICT`` = the whole config
  in NeMo Gym's shape as YAML, every instance with its host and port, ``head_server`` and the
  reserved keys a child reads with plain ``[]`` (``dry_run``). Keys travel in clear text in
  that variable, exactly as NeMo Gym's own ``ng_run`` passes them;
- ``PYTHONPATH`` = the server's folder, ``VIRTUAL_ENV``/``PATH`` of its environment.

We add what 0.7 lacks: each runs in its own session (Ctrl-C in a terminal reaches only us)
and dies with us (``PR_SET_PDEATHSIG``: SIGKILL when ng_run's thread that spawned it ends,
however ng_run ends).

``environment_server_name`` is 0.7's naming rule for the ``legacy_agent`` relay it generates
for an agent without an environment server (global_config.py:1876-1886), shared by the head
server (which lists one per such agent of ours) and the collector (which stamps the name).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nemo_gym_cli.config import GlobalConfig, ServerInstance

__all__ = [
    "RELAY",
    "ENVIRONMENT_SERVER_SUFFIX",
    "child_environment",
    "config_dict",
    "die_with_parent",
    "environment_server_name",
    "generated_environment_servers",
    "imports_nemo_gym",
    "spawn_nemo_gym_server",
]

ENVIRONMENT_SERVER_SUFFIX = "_environment_server"
_IMPORT = re.compile(r"^\s*(?:from\s+nemo_gym[\s.]|import\s+nemo_gym\b)", re.MULTILINE)
_PR_SET_PDEATHSIG = 1


#: The implementation of the relay 0.7's ``ng_run`` generates for an agent without an
#: environment server (the ``_ng_result_type`` of rows that went through it).
RELAY = "legacy_agent"


def imports_nemo_gym(entrypoint: Path) -> bool:
    """Whether ``entrypoint`` imports the ``nemo_gym`` package (read as text, never imported)."""
    try:
        return _IMPORT.search(entrypoint.read_text(errors="replace")) is not None
    except OSError:
        return False


def environment_server_name(agent_name: str, implementation: str, taken: Iterable[str] = ()) -> str:
    """The name NeMo Gym 0.7 gives the relay it generates for agent ``agent_name`` (of
    implementation ``implementation``, e.g. ``simple_agent``): the agent's name without
    ``_<implementation>`` (else without ``_agent``) + ``_environment_server``; a name in
    ``taken`` becomes ``<agent>_environment_server`` (suffix repeated while still taken)."""
    stem = agent_name.removesuffix(f"_{implementation}").removesuffix(implementation).rstrip("_")
    if stem == agent_name:
        stem = agent_name.removesuffix("_agent").rstrip("_")
    name = f"{stem or implementation}{ENVIRONMENT_SERVER_SUFFIX}"
    taken = set(taken)
    if name in taken:
        name = f"{agent_name}{ENVIRONMENT_SERVER_SUFFIX}"
    while name in taken:
        name += ENVIRONMENT_SERVER_SUFFIX
    return name


def generated_environment_servers(instances: Mapping[str, ServerInstance]) -> dict[str, str]:
    """For every agent no environment server references: agent name -> the name of the
    relay 0.7's ``ng_run`` would generate for it (``environment_server_name``)."""
    fronted: set[str] = set()
    for inst in instances.values():
        if inst.server_type == "environment_servers":
            for key, ref in inst.fields.items():
                if isinstance(ref, dict) and (
                    ref.get("type") == "responses_api_agents" or (key == "agent_server" and ref.get("type") is None)
                ):
                    fronted.add(str(ref.get("name")))
    taken = set(instances)
    out: dict[str, str] = {}
    for name in sorted(instances):
        inst = instances[name]
        if inst.server_type == "responses_api_agents" and name not in fronted:
            out[name] = environment_server_name(name, inst.implementation, taken)
            taken.add(out[name])
    return out


def _escaped(value: Any) -> Any:
    """Values with ``${`` escaped: the child's OmegaConf must not read them as interpolations."""
    if isinstance(value, str):
        return value.replace("${", "\\${") if "${" in value else value
    if isinstance(value, dict):
        return {k: _escaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escaped(v) for v in value]
    return value


def config_dict(config: GlobalConfig, urls: Mapping[str, str], ray_address: str | None = None) -> dict[str, Any]:
    """The config in NeMo Gym's shape, as a child of its ``ng_run`` receives it: every other
    top-level key, every instance with ``entrypoint``, ``host`` and ``port``, ``head_server``,
    ``dry_run: false`` and, given one, the Ray cluster to join (``ray_head_node_address``,
    ``ray_head.py``). Keys in clear text (it goes to the child's environment only)."""
    out: dict[str, Any] = {k: v for k, v in config.bind(dict(urls)).items() if k not in ("nemo_gym", "ray")}
    for name, inst in config.instances.items():
        url = urls.get(name, "")
        port = int(url.rsplit(":", 1)[1]) if url else inst.port
        out[name] = {
            inst.server_type: {
                inst.implementation: {
                    **inst.spec(dict(urls)).fields,
                    "entrypoint": os.path.relpath(inst.entrypoint, inst.folder) if inst.folder else "app.py",
                    "host": inst.host,
                    "port": port,
                }
            }
        }
    out["head_server"] = {"host": config.head_host, "port": config.head_port}
    out["dry_run"] = False
    if ray_address:
        out["ray_head_node_address"] = ray_address
    return _escaped(out)


def child_environment(
    python: Path, folder: str, name: str, config_yaml: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a NeMo Gym server: ours without our venv, plus its own (and
    ``extra``: what joining this run's Ray cluster needs, ``ray_head.py``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    venv = python.parent.parent
    ours = os.environ.get("VIRTUAL_ENV")
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not (ours and p == f"{ours}/bin")]
    env.update(
        VIRTUAL_ENV=str(venv),
        PATH=os.pathsep.join([str(venv / "bin"), *path]),
        PYTHONPATH=folder,
        NEMO_GYM_CONFIG_PATH=name,
        NEMO_GYM_CONFIG_DICT=config_yaml,
    )
    env.update(extra or {})
    return env


def die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the session and our stop() still end it


async def spawn_nemo_gym_server(
    python: Path, entrypoint: str, folder: str, env: dict[str, str], out: int
) -> asyncio.subprocess.Process:
    """Start ``<python> <entrypoint>`` in ``folder``, in its own session, output to ``out``."""
    return await asyncio.create_subprocess_exec(
        str(python),
        os.path.relpath(entrypoint, folder),
        cwd=folder,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out,
        stderr=out,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
