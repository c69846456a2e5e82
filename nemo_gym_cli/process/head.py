"""The head server: tells clients where every server instance is and whether it is ready.

Routes, in the kernel's one envelope:

- ``GET /instances`` (ours): names, types, implementations, URLs, pids, readiness, and
  each instance's ``replicas`` (several on a Ray cluster: URL, pid, Ray node, readiness);
- ``GET /server_instances`` and ``GET /global_config_dict_yaml`` (NeMo Gym's): its
  collector and servers find each other through these, in its shapes (the 13 keys of its
  instance rows; the config as YAML inside a JSON string). The config goes out with every
  secret redacted (values under names that say key, token, secret or password, credentials
  and secret query parameters in URLs, and each such value wherever else it was copied):
  no HTTP response of ours carries a key (``nemo_gym_cli/redaction.py``). Every agent that no
  environment server fronts gets the ``legacy_agent`` entry NeMo Gym 0.7's ``ng_run``
  generates for it (its collector reaches agents only through one), pointing at the agent
  itself: our agents answer ``/run`` directly, where a relay would only forward.

It runs inside ``ng_run``'s process, in a thread of its own under uvicorn (which leaves
signal handling to the main thread there): the supervisor's loop stays ours.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nemo_gym_cli.nemo_gym.hosting import RELAY, generated_environment_servers
from nemo_gym_cli.redaction import REDACTED, Scrubber, redact, redact_url, secret_values
from nemo_gym_cli.server.base import Server, asgi
from nemo_gym_cli.server.http import Request, route
from nemo_gym_cli.server.spec import ServerSpec

if TYPE_CHECKING:
    from nemo_gym_cli.config import GlobalConfig

__all__ = ["REDACTED", "HeadServer", "redact", "redact_url", "serve_in_thread"]


class HeadServer(Server):
    """Serves the supervisor's instance table and the (redacted) config."""

    def __init__(self, config: GlobalConfig, describe: Callable[[], list[dict[str, Any]]]) -> None:
        super().__init__(spec=ServerSpec(name="head_server", server_type="head_server", implementation="head"))
        self.global_config = config
        self.describe_instances = describe
        # Every value held under a secret-looking name, wherever else it was copied to (an
        # interpolation can put a key in a header or a URL): scrubbed from every answer.
        found = secret_values(config.options)
        for inst in config.instances.values():
            found += secret_values(inst.fields)
        self.scrubber = Scrubber(found)
        self._first_seen: dict[tuple[str | None, int], float] = {}

    @route("GET", "/instances")
    async def instances(self, request: Request) -> dict[str, Any]:
        return {"instances": self.describe_instances()}

    @route("GET", "/server_instances")
    async def server_instances(self, request: Request) -> list[dict[str, Any]]:
        """NeMo Gym's shape, its 13 keys: ``name`` is the implementation (``simple_agent``),
        the instance is ``process_name`` and ``config_path``. An instance with several
        replicas (on a Ray cluster) has a row per replica, its first replica's first."""
        now = time.time()
        out = []
        for row in self.describe_instances():
            inst = self.global_config.instances.get(row["name"])
            entrypoint = Path(inst.entrypoint) if inst is not None else None
            for replica in row.get("replicas") or [row]:
                started = self._start_time(replica["pid"], replica.get("node_id"))
                out.append(
                    {
                        "config_path": row["name"],
                        "dir_path": str(entrypoint.parent) if entrypoint is not None else None,
                        "entrypoint": entrypoint.name if entrypoint is not None else None,
                        "host": replica["host"],
                        "name": row.get("implementation") or (inst.implementation if inst is not None else None),
                        "pid": replica["pid"],
                        "port": replica["port"],
                        "process_name": row["name"],
                        "server_type": row["type"],
                        "start_time": started,
                        "status": "success" if replica["ready"] else "connection_error",
                        "uptime_seconds": None if started is None else max(0.0, now - started),
                        "url": replica["url"] or None,
                    }
                )
        return out

    def _start_time(self, pid: int | None, node_id: str | None = None) -> float | None:
        """When process ``pid`` started (epoch seconds): from /proc where there is one (and it
        runs on this machine, not on some Ray node), else when the head first saw it."""
        if pid is None:
            return None
        key = (node_id, pid)
        if key not in self._first_seen:
            self._first_seen[key] = (_proc_start_time(pid) if node_id is None else None) or time.time()
        return self._first_seen[key]

    @route("GET", "/global_config_dict_yaml")
    async def global_config_dict_yaml(self, request: Request) -> str:
        """The config as YAML in a JSON string, as NeMo Gym's head serves it (its collector
        reads each agent's host and port from it), every secret redacted."""
        import yaml

        return yaml.safe_dump(self.global_config_dict(), sort_keys=False)

    def global_config_dict(self) -> dict[str, Any]:
        """The config as NeMo Gym's servers expect it: every instance with host and port."""
        rows = {row["name"]: row for row in self.describe_instances()}
        urls = {name: row["url"] for name, row in rows.items() if row["url"]}
        out: dict[str, Any] = dict(redact(self.global_config.bind(urls), scrubber=self.scrubber))
        for name, inst in self.global_config.instances.items():
            row = rows.get(name, {})
            fields = inst.spec(urls).fields
            out[name] = {
                inst.server_type: {
                    inst.implementation: {
                        **redact(fields, scrubber=self.scrubber),
                        "entrypoint": inst.entrypoint.rsplit("/", 1)[-1],
                        "host": row.get("host") or inst.host,
                        "port": row.get("port"),
                    }
                }
            }
        for agent, name in generated_environment_servers(self.global_config.instances).items():
            out[name] = {
                "environment_servers": {
                    RELAY: {
                        "entrypoint": "app.py",
                        "agent_server": {"type": "responses_api_agents", "name": agent},
                        "host": rows.get(agent, {}).get("host") or self.global_config.instances[agent].host,
                        "port": rows.get(agent, {}).get("port"),
                    }
                }
            }
        out["head_server"] = {"host": self.global_config.head_host, "port": self.global_config.head_port}
        return out


def _proc_start_time(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def serve_in_thread(server: HeadServer, sock: Any) -> Callable[[], None]:
    """Serve ``server`` on the listening socket ``sock`` from a daemon thread; returns a
    function that stops it (and waits up to 3 s)."""
    import uvicorn

    userver = uvicorn.Server(
        uvicorn.Config(asgi(server), access_log=False, log_level="warning", lifespan="off", loop="asyncio")
    )
    thread = threading.Thread(target=userver.run, kwargs={"sockets": [sock]}, name="head-server", daemon=True)
    thread.start()

    def stop() -> None:
        userver.should_exit = True
        thread.join(3.0)

    return stop
