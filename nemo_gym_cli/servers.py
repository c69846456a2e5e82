"""What every server of ours shares: its spec, the app factory base, health, sessions.

A server process is started with a ``ServerSpec`` (see ``serve.py``); the implementation's
``app.py`` exposes ``create_app(spec) -> ASGI app``. ``create_server_app`` gives the common
FastAPI app: ``GET /health``, orjson responses, and the lifespan that owns per-app resources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from nemo_gym_cli.spec import SESSION_HEADER, ServerRef, ServerSpec, new_session_id
from nemo_gym_cli.wire import JSONResponse, loads

__all__ = ["SESSION_HEADER", "ServerRef", "ServerSpec", "create_server_app", "new_session_id", "read_json"]


def create_server_app(
    spec: ServerSpec,
    *,
    lifespan: Callable[[FastAPI], Any] | None = None,
    title: str | None = None,
) -> FastAPI:
    """A FastAPI app with ``GET /health`` and orjson responses.

    ``lifespan`` is an async context manager factory taking the app: open per-app resources
    (HTTP clients) there and store them on ``app.state``.
    """

    @asynccontextmanager
    async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    app = FastAPI(
        title=title or f"{spec.implementation} ({spec.name})",
        lifespan=_lifespan,
        default_response_class=JSONResponse,
    )
    app.state.spec = spec

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "name": spec.name, "type": spec.server_type})

    return app


async def read_json(request: Request) -> Any:
    """The request body as JSON; a body that is not JSON becomes a 400 naming the problem."""
    body = await request.body()
    try:
        return loads(body) if body else {}
    except ValueError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
