"""The head server: tells clients where every server instance is and whether it is ready.

It answers with names, types, implementations, URLs, pids and readiness, never with config
fields: those may hold API keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from nemo_gym_cli.wire import JSONResponse

__all__ = ["create_head_app"]


def create_head_app(describe: Callable[[], list[dict[str, Any]]]) -> FastAPI:
    """``describe()`` returns the current instance table (see ``Supervisor.describe``)."""
    app = FastAPI(title="nemo_gym head server", default_response_class=JSONResponse)

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "name": "head_server", "type": "head_server"})

    @app.get("/instances")
    async def instances() -> JSONResponse:
        return JSONResponse({"instances": describe()})

    return app
