"""The head server: tells clients where every server instance is and whether it is ready.

It answers with names, types, implementations, URLs, pids and readiness, never with config
fields: those may hold API keys. A bare Starlette app: it runs inside ``ng_run``'s own
process, which should not pay FastAPI's import time before starting the servers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from nemo_gym_cli.wire import JSONResponse

__all__ = ["create_head_app"]


def create_head_app(describe: Callable[[], list[dict[str, Any]]]) -> Starlette:
    """``describe()`` returns the current instance table (see ``Supervisor.describe``)."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "name": "head_server", "type": "head_server"})

    async def instances(request: Request) -> JSONResponse:
        return JSONResponse({"instances": describe()})

    return Starlette(routes=[Route("/health", health), Route("/instances", instances)])
