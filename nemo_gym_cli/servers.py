"""What every server of ours shares: its spec, the app factory base, health, sessions.

A server process is started with a ``ServerSpec`` (see ``serve.py``); the implementation's
``app.py`` exposes ``create_app(spec) -> ASGI app``. ``create_server_app`` gives the common
FastAPI app: ``GET /health``, orjson responses, and the lifespan that owns per-app resources.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.wire import JSONResponse

__all__ = ["SESSION_HEADER", "ServerRef", "ServerSpec", "create_server_app", "new_session_id"]

#: The header an agent sends with every call of one rollout to a resources server, so the
#: resources server can keep per-rollout state (NeMo Gym uses a cookie for the same purpose).
SESSION_HEADER = "x-ng-session-id"


def new_session_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class ServerRef:
    """A reference from one instance's config to another: ``{type: ..., name: ...}``."""

    type: str
    name: str

    @classmethod
    def parse(cls, value: Any, where: str) -> ServerRef:
        if not isinstance(value, dict) or not {"type", "name"} <= value.keys():
            raise ConfigError(f"{where} must be a server reference {{type: ..., name: ...}}, got {value!r}")
        return cls(type=str(value["type"]), name=str(value["name"]))


@dataclass(frozen=True)
class ServerSpec:
    """Everything a server process needs: who it is, where it listens, its own config.

    ``fields`` are the instance's resolved config fields (they may hold secrets: never log or
    return them). ``server_urls`` maps every instance name to its base URL, so references
    resolve without asking anyone.
    """

    name: str
    server_type: str
    implementation: str
    host: str
    port: int
    fields: dict[str, Any] = field(default_factory=dict)
    server_urls: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, ref: ServerRef | dict[str, Any], where: str = "server reference") -> str:
        """Base URL of the instance ``ref`` names."""
        ref = ref if isinstance(ref, ServerRef) else ServerRef.parse(ref, where)
        try:
            return self.server_urls[ref.name]
        except KeyError:
            known = ", ".join(sorted(self.server_urls)) or "none"
            raise ConfigError(f"{where} names instance {ref.name!r}, which does not exist (instances: {known})") from None


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
    from fastapi import HTTPException

    from nemo_gym_cli.wire import loads

    body = await request.body()
    try:
        return loads(body) if body else {}
    except ValueError as exc:
        raise HTTPException(400, f"request body is not valid JSON: {exc}") from None
