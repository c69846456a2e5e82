"""JSON over HTTP between our own servers.

``JSONClient`` is the hot path: every rollout makes about eight calls through it. It runs on
aiohttp, whose pool stays flat with thousands of requests in flight: measured on 2 cores
against one local server (docs/benchmarks.md), 67 us of client CPU per request at 64 in
flight and 179 us at 2,048, against 2,564 us and 7,205 us for httpx 0.28 (whose pool scans
every connection, with a syscall each, on every request) and 347/523 us for httpx on an
aiohttp transport. One session per process, opened in the app's lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from nemo_gym_cli.errors import ServerError
from nemo_gym_cli.wire import dumps, loads

__all__ = ["DEFAULT_POOL_SIZE", "JSONClient", "open_json_client"]

DEFAULT_POOL_SIZE = 256
_JSON_HEADERS = {"content-type": "application/json"}


class JSONClient:
    """POST/GET JSON to our servers over one aiohttp session; errors become ``ServerError``."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, url: str, payload: Any, *, headers: dict[str, str] | None = None) -> Any:
        hdrs = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
        return await self._request("POST", url, dumps(payload), hdrs)

    async def get(self, url: str) -> Any:
        return await self._request("GET", url, None, None)

    async def _request(self, method: str, url: str, data: bytes | None, headers: dict[str, str] | None) -> Any:
        try:
            async with self.session.request(method, url, data=data, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
        except TimeoutError:
            raise ServerError(f"{method} {url} timed out", url=url) from None
        except aiohttp.ClientError as exc:
            raise ServerError(f"cannot reach {url}: {exc}; is the server running (ng_run)?", url=url) from None
        return _decode_body(status, body, method, url)


@asynccontextmanager
async def open_json_client(
    *, pool_size: int = DEFAULT_POOL_SIZE, timeout: float = 600.0, connect_timeout: float = 10.0
) -> AsyncIterator[JSONClient]:
    """A ``JSONClient`` with its own session; at most ``pool_size`` connections (further
    requests queue inside aiohttp's connector, which stays cheap with thousands waiting)."""
    connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, use_dns_cache=True)
    session = aiohttp.ClientSession(
        connector=connector,
        # sock_connect, not connect: aiohttp's `connect` also counts the wait for a free
        # pooled connection, which at high concurrency is queueing, not a dead server.
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout),
        trust_env=False,
        skip_auto_headers=("User-Agent",),
    )
    try:
        yield JSONClient(session)
    finally:
        await session.close()


def _decode_body(status: int, body: bytes, method: str, url: str) -> Any:
    if status >= 400:
        detail = body[:500].decode("utf-8", "replace")
        try:
            data = loads(body)
            err = data.get("error") or data.get("detail") if isinstance(data, dict) else None
            if isinstance(err, dict):
                detail = str(err.get("message") or err)
            elif err:
                detail = str(err)
        except ValueError:
            pass
        raise ServerError(f"{method} {url} answered {status}: {detail}", url=url, status=status)
    try:
        return loads(body)
    except ValueError:
        raise ServerError(f"{method} {url} answered with a body that is not JSON: {body[:200]!r}", url=url) from None
