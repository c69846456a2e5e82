"""Base for resources servers: tools as methods, per-rollout session state, ``/verify``.

A resources server subclasses ``ResourcesServer``, marks each tool method with ``@tool`` and
implements ``verify``. ``create_resources_app`` serves:

- ``POST /seed_session``: start a rollout's state (body: the task row),
- ``POST /<tool name>``: one per tool (body: the tool's arguments),
- ``POST /verify``: score the finished trajectory; returns the body plus ``reward``.

The agent sends the same ``x-ng-session-id`` header on every call of one rollout.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request

from nemo_gym_cli.servers import SESSION_HEADER, ServerSpec, create_server_app, read_json
from nemo_gym_cli.wire import JSONResponse

__all__ = ["ResourcesServer", "create_resources_app", "tool"]

ToolMethod = Callable[[Any, dict[str, Any], dict[str, Any]], Awaitable[Any]]

#: Sessions kept at most; older ones (rollouts that never reached /verify) are dropped.
MAX_SESSIONS = 100_000


def tool(method: ToolMethod) -> ToolMethod:
    """Mark ``async def name(self, session, args)`` as the tool ``POST /name``."""
    method.__ng_tool__ = True  # type: ignore[attr-defined]
    return method


class ResourcesServer:
    """An environment: tools that act on per-rollout ``session`` state, and a verifier."""

    def __init__(self) -> None:
        self.sessions: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def tools(self) -> dict[str, ToolMethod]:
        return {
            name: getattr(self, name)
            for name in dir(type(self))
            if getattr(getattr(type(self), name), "__ng_tool__", False)
        }

    def session(self, session_id: str) -> dict[str, Any]:
        state = self.sessions.get(session_id)
        if state is None:
            state = self.sessions[session_id] = {}
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return state

    async def seed_session(self, session: dict[str, Any], row: dict[str, Any]) -> None:
        """Set up the rollout's state from its task row. Default: nothing."""

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Score ``body`` (the task row plus ``response``); return at least ``reward``."""
        raise NotImplementedError


def create_resources_app(spec: ServerSpec, server: ResourcesServer) -> FastAPI:
    app = create_server_app(spec)
    app.state.resources = server

    async def seed_session(request: Request) -> JSONResponse:
        row = await read_json(request)
        session = server.session(request.headers.get(SESSION_HEADER, ""))
        await server.seed_session(session, row)
        return JSONResponse({})

    async def verify(request: Request) -> JSONResponse:
        body = await read_json(request)
        session_id = request.headers.get(SESSION_HEADER, "")
        session = server.sessions.pop(session_id, None) or {}
        metrics = await server.verify(session, body)
        return JSONResponse({**body, **metrics})

    # Plain routes: served by DirectRoutes without FastAPI's per-request stack (hot path).
    app.add_route("/seed_session", seed_session, methods=["POST"])
    app.add_route("/verify", verify, methods=["POST"])
    for name, method in server.tools().items():
        app.add_route(f"/{name}", _tool_endpoint(server, method), methods=["POST"], name=name)
    return app


def _tool_endpoint(server: ResourcesServer, method: ToolMethod) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def endpoint(request: Request) -> JSONResponse:
        args = await read_json(request)
        if not isinstance(args, dict):
            return JSONResponse({"error": {"message": f"tool arguments must be a JSON object, got {args!r}"}}, 400)
        session = server.session(request.headers.get(SESSION_HEADER, ""))
        return JSONResponse(await method(session, args))

    return endpoint
