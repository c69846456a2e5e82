"""The head server: tells clients where every server instance is and whether it is ready.

Routes, in the kernel's one envelope:

- ``GET /instances`` (ours): names, types, implementations, URLs, pids, readiness;
- ``GET /server_instances`` and ``GET /global_config_dict_yaml`` (NeMo Gym's): its
  collector and servers find each other through these. The config goes out with every
  secret redacted (keys whose names say key, token, secret or password, and credentials
  inside URLs): no HTTP response of ours carries a key.

It runs inside ``ng_run``'s process, in a thread of its own under uvicorn (which leaves
signal handling to the main thread there): the supervisor's loop stays ours.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.server.base import Server, asgi
from nemo_gym_cli.server.http import Request, route
from nemo_gym_cli.server.spec import ServerSpec

__all__ = ["HeadServer", "redact", "redact_url", "serve_in_thread"]

_SECRET_NAME = re.compile(r"key|token|secret|password|authorization", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<cred>[^@/\s]+)@", re.IGNORECASE)
REDACTED = "<redacted>"


def redact_url(text: str) -> str:
    """``text`` with any ``user:password@`` of a URL in it replaced."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def redact(value: Any, name: str = "") -> Any:
    """``value`` with every secret-looking key's value and URL credentials redacted."""
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, name) for v in value]
    if name and _SECRET_NAME.search(name) and value not in (None, ""):
        return REDACTED
    if isinstance(value, str):
        return redact_url(value)
    return value


class HeadServer(Server):
    """Serves the supervisor's instance table and the (redacted) config."""

    def __init__(self, config: GlobalConfig, describe: Callable[[], list[dict[str, Any]]]) -> None:
        super().__init__(spec=ServerSpec(name="head_server", server_type="head_server", implementation="head"))
        self.global_config = config
        self.describe_instances = describe

    @route("GET", "/instances")
    async def instances(self, request: Request) -> dict[str, Any]:
        return {"instances": self.describe_instances()}

    @route("GET", "/server_instances")
    async def server_instances(self, request: Request) -> list[dict[str, Any]]:
        return [
            {
                "name": row["name"],
                "server_type": row["type"],
                "process_name": row["name"],
                "host": row["host"],
                "port": row["port"],
                "url": row["url"],
                "pid": row["pid"],
                "status": "success" if row["ready"] else "connection_error",
            }
            for row in self.describe_instances()
        ]

    @route("GET", "/global_config_dict_yaml")
    async def global_config_dict_yaml(self, request: Request) -> str:
        import yaml

        return yaml.safe_dump(self.global_config_dict(), sort_keys=False)

    def global_config_dict(self) -> dict[str, Any]:
        """The config as NeMo Gym's servers expect it: every instance with host and port."""
        rows = {row["name"]: row for row in self.describe_instances()}
        urls = {name: row["url"] for name, row in rows.items() if row["url"]}
        out: dict[str, Any] = dict(redact(self.global_config.bind(urls)))
        for name, inst in self.global_config.instances.items():
            row = rows.get(name, {})
            fields = inst.spec(urls).fields
            out[name] = {
                inst.server_type: {
                    inst.implementation: {
                        **redact(fields),
                        "entrypoint": inst.entrypoint.rsplit("/", 1)[-1],
                        "host": row.get("host") or inst.host,
                        "port": row.get("port"),
                    }
                }
            }
        out["head_server"] = {"host": self.global_config.head_host, "port": self.global_config.head_port}
        return out


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
