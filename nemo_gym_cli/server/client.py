"""JSON over HTTP between our own servers (and NeMo Gym's).

``JSONClient`` is the hot path: every rollout makes about eight calls through it. It runs on
aiohttp, whose pool stays flat with thousands of requests in flight: measured on 2 cores
against one local server (docs/benchmarks.md), 67 us of client CPU per request at 64 in
flight and 179 us at 2,048, against 2,564 us and 7,205 us for httpx 0.28. One session per
process, opened in the server's ``start`` (or the collector's run).

The session keeps no cookies of its own (one session serves every rollout at once): a
caller that needs a server's cookies (NeMo Gym's resources servers keep rollout state in
one) reads them from ``exchange`` and sends them back itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from nemo_gym_cli.errors import ServerError
from nemo_gym_cli.wire import dumps, loads

__all__ = ["DEFAULT_POOL_SIZE", "Answer", "JSONClient", "cookie_header", "open_json_client"]

DEFAULT_POOL_SIZE = 256
_JSON_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful answer: its JSON body and the cookies it set."""

    data: Any
    cookies: dict[str, str]


class JSONClient:
    """POST/GET JSON over one aiohttp session; every failure becomes ``ServerError``
    (``status`` None when no HTTP answer came; ``kind``/``retryable`` from the envelope)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, url: str, payload: Any, *, headers: dict[str, str] | None = None) -> Any:
        hdrs = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
        return (await self._request("POST", url, dumps(payload), hdrs, False)).data

    async def get(self, url: str, *, headers: dict[str, str] | None = None) -> Any:
        return (await self._request("GET", url, None, headers, False)).data

    async def exchange(
        self, method: str, url: str, payload: Any = None, *, headers: dict[str, str] | None = None
    ) -> Answer:
        """Like ``post``/``get``, also returning the cookies the answer set."""
        data = None if payload is None else dumps(payload)
        hdrs = _JSON_HEADERS if headers is None else {**_JSON_HEADERS, **headers}
        return await self._request(method, url, data, hdrs, True)

    async def _request(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str] | None, cookies: bool
    ) -> Answer:
        try:
            async with self.session.request(method, url, data=data, headers=headers) as resp:
                body = await resp.read()
                status = resp.status
                jar = {k: m.value for k, m in resp.cookies.items()} if cookies else {}
        except TimeoutError:
            raise ServerError(f"{method} {url} timed out", url=url, kind="timeout") from None
        except aiohttp.ClientError as exc:
            raise ServerError(f"cannot reach {url}: {exc}; is the server running (ng_run)?", url=url) from None
        if status >= 400:
            try:
                decoded: Any = loads(body)
            except ValueError:
                decoded = body[:500].decode("utf-8", "replace")
            raise ServerError.from_answer(status, decoded, method, url)
        try:
            return Answer(loads(body), jar)
        except ValueError:
            raise ServerError(
                f"{method} {url} answered with a body that is not JSON: {body[:200]!r}", url=url, kind="bad_response"
            ) from None


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    """A ``Cookie`` header carrying ``cookies`` (empty dict: no header)."""
    if not cookies:
        return {}
    return {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}


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
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    try:
        yield JSONClient(session)
    finally:
        await session.close()
