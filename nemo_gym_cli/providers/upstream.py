"""The model provider, seen from the ``openai_model`` adapter: one call, one answer or one error.

``UpstreamClient.post`` sends a request to an OpenAI-compatible base URL (OpenRouter, a
gateway, vLLM, the emulator) and returns the decoded JSON body, or raises ``UpstreamError``
with a message the user can act on. On the way it:

- caps concurrent upstream requests (a semaphore), so thousands of rollouts do not become
  thousands of simultaneous provider calls;
- retries 408, 429, 5xx, connection errors, timeouts, malformed bodies and errors reported
  inside a 200 body, with exponential backoff and full jitter, honouring ``Retry-After``
  (seconds or an HTTP date; else ``X-RateLimit-Reset``), up to ``max_attempts`` in all;
  never retries 400/401/402/403/404;
- moves to the next alternative upstream when one is down (connection error or 5xx), at
  once (no backoff for an upstream not tried yet);
- sends the upstream's model with its fallbacks (OpenRouter's ``models`` list), or, when the
  caller names another model (``model=``), that model alone, under its own name, on every
  upstream: what serves is what was asked, never a fallback;
- is the ONE layer that retries a provider: when ``max_attempts`` run out the error says
  "gave up after N attempts" and is not retryable, so no caller multiplies the attempts;
- streams the answer when asked (``stream=``): the request goes with ``stream: true`` and
  the events are assembled into one answer (``openai/streams.py``); a mid-stream error
  or a stream cut short is retried like any failure;
- keeps a ``Tally`` of what each request cost beyond its answer: retries by kind, answers
  billed whose cost could not be read (``unpriced``: a broken 200 body with a generation
  id), and the usage failed attempts reported;
- logs retries without flooding (``RetryLog``): the first of each kind in a minute in full,
  with attempt number, target and reason, then one summary line a minute ("retried 57 more
  rate_limit errors in the last 60 s"); never the key nor a URL's credentials (messages
  are scrubbed of both). Nothing is logged on the success path.

The provider's catalogue (``GET /models``, ``GET /key``) and the start-up check built on it
are in ``catalogue``; errors are classified in ``nemo_gym_cli.openai.errors``.

The bytes travel over a ``Wire``: ``AiohttpWire`` in the server (an aiohttp session's pool
stays cheap with many requests in flight: measured 0.24 ms of client CPU per upstream call
at 64 in flight, against 3.1 ms for an httpx 0.28 client). A wire translates its library's
exceptions into ``WireTimeout`` / ``WireUnreachable`` at the edge; tests may bring their own
(``tests/support``). Each request has a read timeout (the longest silence) and a total one
(``total_timeout_s``: a body dripping a byte a second ends there too).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import aiohttp

from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.openai.errors import classify_error
from nemo_gym_cli.openai.streams import Assembled, is_sse
from nemo_gym_cli.openai.usage import add_usage
from nemo_gym_cli.redaction import redact_url
from nemo_gym_cli.wire import dumps, loads

__all__ = [
    "AiohttpWire",
    "Reply",
    "RetryLog",
    "Tally",
    "Upstream",
    "UpstreamClient",
    "Wire",
    "WireTimeout",
    "WireUnreachable",
    "auth_headers",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

# --- the wire: bytes out, bytes in --------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """An HTTP answer, whatever library fetched it. ``headers`` is case-insensitive."""

    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str

    def json(self) -> Any:
        """The body decoded, or ``None`` when it is not JSON."""
        try:
            return loads(self.content)
        except ValueError:
            return None

    def text(self, limit: int = 300) -> str:
        return self.content[:limit].decode("utf-8", "replace")


class WireTimeout(Exception):
    """No answer (or no more bytes of it) within the timeout."""


class WireUnreachable(Exception):
    """No connection, or it broke; ``refused``: nothing listens there (yet)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class Wire(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply: ...


class AiohttpWire:
    """A ``Wire`` over one ``aiohttp.ClientSession`` (the server's, opened in its lifespan).

    Proxies come from the environment (``HTTPS_PROXY``, ``NO_PROXY``...), looked up once per
    origin: aiohttp's own ``trust_env`` does that, and a netrc lookup, in a thread on every
    request.
    """

    def __init__(self, session: aiohttp.ClientSession, *, env_proxies: bool = True) -> None:
        self.session = session
        self._env_proxies = env_proxies
        self._proxies: dict[str, str | None] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        pool_size: int,
        connect_timeout_s: float,
        read_timeout_s: float,
        total_timeout_s: float | None = None,
    ) -> AsyncIterator[AiohttpWire]:
        """A wire with its own session: at most ``pool_size`` connections; ``read_timeout_s``
        is the longest silence while waiting for an answer (a stall ends there),
        ``total_timeout_s`` the longest a request may take, body included (a drip ends there)."""
        timeout = aiohttp.ClientTimeout(total=total_timeout_s, connect=connect_timeout_s, sock_read=read_timeout_s)
        connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
            yield cls(session)

    def _proxy(self, url: str) -> str | None:
        scheme, _, rest = url.partition("://")
        origin = f"{scheme}://{rest.split('/', 1)[0]}"
        if origin not in self._proxies:
            proxy = None
            if self._env_proxies:
                host = urllib.parse.urlsplit(url).hostname or ""
                if not urllib.request.proxy_bypass(host):
                    proxy = urllib.request.getproxies().get(scheme)
            self._proxies[origin] = proxy
        return self._proxies[origin]

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None = None,
        timeout: float | None = None,
    ) -> Reply:
        extra: dict[str, Any] = {}
        if timeout is not None:
            extra["timeout"] = aiohttp.ClientTimeout(total=timeout)
        if proxy := self._proxy(url):
            extra["proxy"] = proxy
        try:
            async with self.session.request(method, url, data=content, headers=headers, **extra) as resp:
                return Reply(resp.status, resp.headers, await resp.read(), url)
        except TimeoutError as exc:  # before ClientError: aiohttp's timeouts are both
            raise WireTimeout(type(exc).__name__) from None
        except aiohttp.ClientConnectorError as exc:
            refused = isinstance(exc.os_error, ConnectionRefusedError)
            raise WireUnreachable(f"{type(exc).__name__}: {exc}", refused=refused) from None
        except aiohttp.ClientError as exc:
            raise WireUnreachable(f"{type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Upstream:
    """One OpenAI-compatible endpoint: base URL, key and model name (passed through as is).

    ``fallback_models`` go out as OpenRouter's ``models`` list, after ``model``;
    ``allowed_models`` are the other models a request may ask for here (checked at start-up).
    """

    base_url: str
    api_key: str = field(repr=False)
    model: str
    fallback_models: tuple[str, ...] = ()
    allowed_models: tuple[str, ...] = ()

    def __repr__(self) -> str:  # never show the key
        return f"Upstream(base_url={self.shown_url!r}, model={self.model!r})"

    @property
    def shown_url(self) -> str:
        """The base URL as messages show it: credentials (``user:key@``) and secret query
        parameters (``?key=``) redacted."""
        return redact_url(self.base_url)

    def scrub(self, text: str) -> str:
        """``text`` without the key (some providers echo it in error messages) and without
        the base URL's credentials."""
        if self.api_key and len(self.api_key) > 3:
            text = text.replace(self.api_key, "<key>")
        return redact_url(text.replace(self.base_url, self.shown_url))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _retry_after(resp: Reply, error: Any) -> float | None:
    """The wait the provider asked for: ``Retry-After``, else ``X-RateLimit-Reset`` (epoch ms)
    of a 429, else the error body's ``availability.retry_after`` / ``metadata.headers``."""
    wait = parse_retry_after(resp.headers.get("retry-after"))
    if wait is not None:
        return wait
    reset = resp.headers.get("x-ratelimit-reset")
    if reset and resp.status == 429:
        try:
            return max(0.0, float(reset) / 1000 - time.time())
        except ValueError:
            pass
    if isinstance(error, dict):
        hint = (error.get("availability") or {}).get("retry_after")
        if isinstance(hint, (int, float)) and not isinstance(hint, bool):
            return max(0.0, float(hint))
        headers = (error.get("metadata") or {}).get("headers")
        if isinstance(headers, dict):
            return parse_retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    return None


class Tally:
    """What one request cost beyond its answer: ``retries`` by kind (attempts that failed
    and were tried again), ``unpriced`` (answers billed whose cost could not be read: a
    broken 200 body or a cut stream with a generation id) and ``usage``, summed, of failed
    attempts that reported one (in the upstream API's names)."""

    __slots__ = ("retries", "unpriced", "usage")

    def __init__(self) -> None:
        self.retries: dict[str, int] = {}
        self.unpriced = 0
        self.usage: dict[str, Any] = {}

    def retried(self, kind: str) -> None:
        self.retries[kind] = self.retries.get(kind, 0) + 1

    def extras(self) -> dict[str, Any]:
        """The keys the adapter adds to an answer's ``usage``."""
        return {"retries": dict(self.retries), "unpriced_calls": self.unpriced}


class RetryLog:
    """Retry lines without a flood: the first retry of each kind in a ``window`` is logged in
    full; the rest are counted, and one line at the window's end says how many."""

    def __init__(self, logger: logging.Logger, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.log = logger
        self.window_s = window_s
        self.clock = clock
        self._opened: dict[str, float] = {}  # kind -> when its window opened (its full line)
        self._quiet: Counter[str] = Counter()  # retries of each kind not logged in this window
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def retry(self, kind: str, message: str, *args: Any) -> None:
        now = self.clock()
        opened = self._opened.get(kind)
        if opened is None or now - opened >= self.window_s:
            self.flush(kind)
            self._opened[kind] = now
            self.log.warning(message, *args)
            return
        self._quiet[kind] += 1
        if kind not in self._timers:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._timers[kind] = loop.call_later(max(0.0, opened + self.window_s - now), self.flush, kind)

    def flush(self, kind: str | None = None) -> None:
        """Log the summary line of ``kind`` (every kind when None) if retries were counted."""
        for k in [kind] if kind is not None else list(self._quiet):
            timer = self._timers.pop(k, None)
            if timer is not None:
                timer.cancel()
            count = self._quiet.pop(k, 0)
            if count:
                opened = self._opened.get(k, self.clock())
                seconds = min(self.window_s, self.clock() - opened)
                self.log.warning("retried %d more %s errors in the last %.0f s", count, k, seconds)


class UpstreamClient:
    """Posts JSON to a provider with retries, failover and a concurrency cap.

    ``wire`` is the server's one shared client; its timeouts apply to every attempt.
    """

    def __init__(
        self,
        wire: Wire,
        upstreams: list[Upstream],
        *,
        max_attempts: int = 6,
        max_concurrency: int = 256,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        headers: dict[str, str] | None = None,
        retry_log: RetryLog | None = None,
    ) -> None:
        if not upstreams:
            raise ValueError("at least one upstream is needed")
        self.wire = wire
        self.upstreams = upstreams
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.retry_log = retry_log or RetryLog(log)
        self._gate = asyncio.Semaphore(max_concurrency)
        self._headers = [_headers(u, headers) for u in upstreams]
        self._current = 0  # index of the upstream in use; moves on when one is down

    @property
    def upstream(self) -> Upstream:
        return self.upstreams[self._current]

    async def post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        tools_sent: bool = False,
        parse: Callable[[dict[str, Any]], Any] | None = None,
        stream: Callable[[bytes], Assembled] | None = None,
        tally: Tally | None = None,
        model: str | None = None,
    ) -> tuple[Any, Upstream]:
        """POST ``body`` (``model``, and ``models`` when there are fallbacks, set per upstream)
        to ``<base>/<path>``; returns the answer (passed through ``parse``, whose retryable
        ``UpstreamError`` is retried like any other) and the upstream that gave it.

        ``model``: send this model instead of the upstream's, without its fallbacks.

        ``stream``: ask for a stream (``stream: true``) and assemble it with this function
        (``streams.assemble_chat`` / ``assemble_responses``). ``tally`` is filled in with
        the retries, unpriced answers and failed attempts' usage. Raises ``UpstreamError``;
        after ``max_attempts`` it is not retryable (this is the layer that retries)."""
        tally = tally if tally is not None else Tally()
        last: UpstreamError | None = None
        tried = {self._current}
        for attempt in range(1, self.max_attempts + 1):
            index = self._current
            upstream = self.upstreams[index]
            if model is not None and model != upstream.model:
                upstream = replace(upstream, model=model, fallback_models=())
            wait: float | None = None
            try:
                data = await self._once(index, upstream, path, body, tools_sent, stream, tally)
                if parse is None:
                    return data, upstream
                try:
                    return parse(data), upstream
                except UpstreamError as exc:
                    if isinstance(data, dict) and isinstance(data.get("usage"), dict):
                        add_usage(tally.usage, data["usage"])  # a failed answer that still counted tokens
                    if not exc.retryable:
                        raise
                    last = exc
            except _Retry as retry:
                last, wait = retry.error, retry.wait
                if retry.down and len(self.upstreams) > 1 and self._current == index:
                    self._current = (index + 1) % len(self.upstreams)
            if attempt == self.max_attempts:
                break
            if self._current not in tried:  # failing over: no reason to wait
                delay = 0.0
                tried.add(self._current)
            elif wait is not None and wait > self.max_retry_after_s:
                raise UpstreamError(
                    f"{last} (the provider asks to wait {wait:.0f} s before retrying, more than "
                    f"max_retry_after_s={self.max_retry_after_s:g}: lower the request rate, "
                    "raise max_retry_after_s, or add fallback_models)",
                    status=last.status,
                    kind=last.kind,
                    retryable=False,  # this layer decided not to wait: no caller should retry it
                )
            elif wait is not None:
                delay = wait
            else:
                ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
                delay = random.uniform(0, ceiling)
            tally.retried(last.kind)
            self.retry_log.retry(
                last.kind,
                "upstream %s attempt %d/%d failed (%s): %s; retrying in %.2f s%s",
                upstream.shown_url,
                attempt,
                self.max_attempts,
                last.kind,
                last,
                delay,
                f" via {self.upstream.shown_url}" if self.upstream is not upstream else "",
            )
            await asyncio.sleep(delay)
        assert last is not None
        raise UpstreamError(
            f"{last} (gave up after {self.max_attempts} attempts)",
            status=last.status,
            kind=last.kind,
            retryable=False,  # this layer retried already: a caller retrying would multiply attempts
        )

    async def _once(
        self,
        index: int,
        upstream: Upstream,
        path: str,
        body: dict[str, Any],
        tools_sent: bool,
        stream: Callable[[bytes], Assembled] | None,
        tally: Tally,
    ) -> dict[str, Any]:
        url = f"{upstream.base_url.rstrip('/')}/{path}"
        if upstream.fallback_models:
            body = {**body, "models": [upstream.model, *upstream.fallback_models]}
        if stream is not None:
            body = {**body, "stream": True}
            if path.endswith("chat/completions"):
                body["stream_options"] = {"include_usage": True}
        payload = dumps({**body, "model": upstream.model})
        async with self._gate:
            try:
                resp = await self.wire.request("POST", url, content=payload, headers=self._headers[index])
            except WireTimeout as exc:
                error = UpstreamError(
                    f"{_shown(upstream, path)} timed out ({exc}); raise read_timeout_s (the longest silence) or "
                    "total_timeout_s (the longest request) if generations are this long",
                    kind="timeout",
                    retryable=True,
                )
                raise _Retry(error) from None
            except WireUnreachable as exc:
                error = UpstreamError(
                    f"cannot reach {_shown(upstream, path)}: {upstream.scrub(str(exc))}",
                    kind="connection",
                    retryable=True,
                )
                raise _Retry(error, down=True) from None
        status = resp.status
        billed = bool(resp.headers.get("x-generation-id"))
        if stream is not None and status < 400 and is_sse(resp.headers.get("content-type"), resp.content):
            try:
                return stream(resp.content)
            except UpstreamError as exc:
                if billed or exc.generation_id:
                    if exc.kind == "bad_response":  # cut short or unreadable: billed, cost unknown
                        tally.unpriced += 1
                if not exc.retryable:
                    raise
                raise _Retry(exc) from None
        data = resp.json()
        err = data.get("error") if isinstance(data, dict) else None
        if status < 400 and isinstance(data, dict):
            # OpenRouter reports some errors in a 200: an error body without choices, or a
            # choice that finished with "error".
            choices = data.get("choices")
            if choices and isinstance(choices, list) and isinstance(choices[0], dict):
                if choices[0].get("finish_reason") != "error":
                    return data
                err = err or {"message": "the generation stopped with finish_reason 'error'"}
            elif not err or data.get("output"):
                return data
            if isinstance(data.get("usage"), dict):
                add_usage(tally.usage, data["usage"])
            error = classify_error(None, err, upstream, tools_sent=tools_sent)
        elif data is None and status < 400:
            if billed:
                tally.unpriced += 1
            error = UpstreamError(
                f"{_shown(upstream, path)} answered {status} with a body that is not JSON: "
                f"{upstream.scrub(repr(resp.content[:200]))}",
                status=status,
                kind="bad_response",
                retryable=True,
            )
        elif status < 400:
            error = UpstreamError(
                f"{_shown(upstream, path)} answered {status} with {type(data).__name__}, not an object",
                status=status,
                kind="bad_response",
                retryable=True,
            )
        else:
            if not err:  # vLLM's flat {"object": "error", "message": ...}, or not JSON at all
                err = data if isinstance(data, dict) and "message" in data else resp.text()
            error = classify_error(status, err, upstream, tools_sent=tools_sent)
        if not error.retryable:
            raise error
        raise _Retry(error, wait=_retry_after(resp, err), down=status >= 500 and status != 529)


def _shown(upstream: Upstream, path: str) -> str:
    """The URL of ``path`` as messages show it (credentials redacted)."""
    return f"{upstream.shown_url.rstrip('/')}/{path}"


class _Retry(Exception):
    def __init__(self, error: UpstreamError, *, wait: float | None = None, down: bool = False) -> None:
        self.error = error
        self.wait = wait
        self.down = down


def auth_headers(upstream: Upstream, extra: dict[str, str] | None = None) -> dict[str, str]:
    """``extra`` plus the key as ``Authorization: Bearer`` (when there is one)."""
    headers = dict(extra or {})
    if upstream.api_key:
        headers["authorization"] = f"Bearer {upstream.api_key}"
    return headers


def _headers(upstream: Upstream, extra: dict[str, str] | None) -> dict[str, str]:
    return {**auth_headers(upstream, extra), "content-type": "application/json"}
