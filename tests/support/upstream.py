"""Seeing what goes upstream: a recording proxy for the adapter, an httpx ``Wire`` for the
client in isolation, and an address that refuses connections.

``RecordingProxy`` is a server of ours like any other: put it between the ``openai_model``
adapter and the emulator, and it keeps what the adapter sends (method, path, headers, JSON
body) and the most requests it ever had in flight at once::

    factories = {
        "emulator": emulator(),
        "proxy": lambda spec: RecordingProxy.from_fields({"upstream": "emulator"}, spec),
        "model": ...,  # openai_base_url = the proxy's URL + "/api/v1"
    }

``HttpxWire`` is a ``Wire`` over an ``httpx.AsyncClient``: with ``httpx.MockTransport`` a
test scripts each upstream reply exactly (a header, a body no emulator sends, a request held
until the test lets it go), for ``UpstreamClient`` on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
from pydantic import Field
from starlette.responses import Response

from nemo_gym_cli.providers.upstream import Reply, WireTimeout, WireUnreachable
from nemo_gym_cli.server import Request, Server, ServerConfig, route
from nemo_gym_cli.wire import loads
from support.ports import refusing_port

__all__ = ["HttpxWire", "RecordingProxy", "refusing_url"]

# Hop-by-hop and framing headers: the proxy's own server sets them for its answer.
_NOT_FORWARDED = frozenset(("content-length", "transfer-encoding", "connection", "content-encoding", "date", "server"))


class HttpxWire:
    """A ``Wire`` over ``client``; httpx's exceptions become ``WireTimeout`` /
    ``WireUnreachable`` (``refused`` when the message says the connection was refused)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            resp = await self.client.request(method, url, headers=dict(headers), content=content, **extra)
        except httpx.TimeoutException as exc:
            raise WireTimeout(type(exc).__name__) from None
        except httpx.ConnectError as exc:
            raise WireUnreachable(f"ConnectError: {exc}", refused="refused" in str(exc).lower()) from None
        except httpx.TransportError as exc:
            raise WireUnreachable(f"{type(exc).__name__}: {exc}") from None
        return Reply(resp.status_code, resp.headers, resp.content, url)


class RecordingProxy(Server):
    """Forwards OpenRouter's routes to another instance and records every request."""

    class Config(ServerConfig):
        upstream: str = Field("emulator", description="the instance requests are forwarded to")

    def __init__(self, config: Any = None, spec: Any = None) -> None:
        super().__init__(config, spec)
        #: every request: ``{"method", "path", "headers" (lower-case names), "json"}``
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]

    async def start(self) -> None:
        base = self.spec.server_urls[self.config.upstream]
        self.client = await self.enter(httpx.AsyncClient(base_url=base, timeout=60, trust_env=False))

    @route("POST", "/api/v1/chat/completions")
    @route("POST", "/api/v1/responses")
    @route("GET", "/api/v1/models")
    @route("GET", "/api/v1/key")
    async def forward(self, request: Request) -> Response:
        body = await request.body()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "json": loads(body) if body else None,
            }
        )
        headers = {k: v for k, v in request.headers.items() if k not in ("host", "content-length")}
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            resp = await self.client.request(request.method, request.path, headers=headers, content=body)
        finally:
            self.in_flight -= 1
        kept = {k: v for k, v in resp.headers.items() if k.lower() not in _NOT_FORWARDED}
        return Response(resp.content, status_code=resp.status_code, headers=kept)


@contextmanager
def refusing_url(path: str = "/api/v1") -> Iterator[str]:
    """A loopback URL whose port is taken but not listening: every connection to it is
    refused, and nothing else can start listening there while the context is open."""
    with refusing_port() as port:
        yield f"http://127.0.0.1:{port}{path}"
