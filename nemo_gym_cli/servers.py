"""What every server of ours shares: its spec, the app factory base, health, sessions.

A server process is started with a ``ServerSpec`` (see ``serve.py``); the implementation's
``app.py`` exposes ``create_app(spec) -> ASGI app``. ``create_server_app`` gives the common
FastAPI app: ``GET /health``, orjson responses, and the lifespan that owns per-app resources.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from nemo_gym_cli.spec import SESSION_HEADER, ServerRef, ServerSpec, new_session_id
from nemo_gym_cli.wire import JSONResponse, loads

__all__ = [
    "SESSION_HEADER",
    "DirectRoutes",
    "ServerRef",
    "ServerSpec",
    "create_server_app",
    "new_session_id",
    "read_json",
]

log = logging.getLogger(__name__)


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
        # FastAPI's native OpenTelemetry hook checks its providers on every request
        # (~50 us a hop); our servers don't export traces.
        telemetry={"tracing": False, "metrics": False, "logs": False},
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


class DirectRoutes:
    """Serves an app's plain Starlette routes (``app.add_route``) without its middleware stack.

    Hot endpoints (``/run``, ``/v1/responses``, tools, ...) are registered as plain routes
    taking a ``Request``; FastAPI's stack of middleware, routing and exception layers costs
    more than the endpoint itself at thousands of requests a second. This wrapper looks the
    path up in a dict and calls the endpoint directly; everything else (``/health``,
    ``/docs``, lifespan) goes to the app unchanged. Each call is still a real HTTP exchange.
    """

    def __init__(self, app: Any) -> None:
        self.app: ASGIApp = app
        self.routes: dict[tuple[str, str], Callable[[Request], Any]] = {}
        for route in getattr(app, "routes", ()):
            if type(route) is Route and "{" not in route.path:  # FastAPI's APIRoute is a subclass
                for method in route.methods or ():
                    self.routes[(method, route.path)] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.routes.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self.app
                try:
                    response = await endpoint(Request(scope, receive))
                except HTTPException as exc:
                    response = JSONResponse(
                        {"error": {"message": exc.detail, "code": exc.status_code}}, exc.status_code
                    )
                except Exception as exc:  # the app's own 500 handler is bypassed: do its job
                    log.exception("%s %s failed", scope["method"], scope["path"])
                    response = JSONResponse(
                        {
                            "error": {
                                "message": f"internal error: {type(exc).__name__}: {exc}",
                                "code": 500,
                            }
                        },
                        500,
                    )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
