"""HTTP for every server of ours: declared routes, one router, one error envelope.

A server declares its endpoints as methods marked with ``@route(method, path)`` (the bases
do this for ``/run``, ``/verify``, tools, ``/v1/responses``, ...). ``Router`` is the ASGI
app built from them once, at start-up:

- dispatch is a dict lookup on ``(method, path)``, then a short list of ``{param}`` patterns:
  cheap enough that no second, faster path exists beside it;
- a route that cannot be served (two handlers for one route, an unsupported pattern) is an
  error when the router is built, not a silent 404 later;
- every exception a handler raises becomes the error envelope of ``errors.envelope``: one
  shape for every server, every route, 404 and 405 included; an exception in the user's own
  code (a verifier, a tool) is one line naming it, not retryable, its traceback in the
  server's errors log once (``usercode.py``);
- middleware wraps the whole router (``Server.middleware``), so it sees every request;
- the ASGI lifespan calls ``Server.start`` / ``Server.stop``: per-server clients open and
  close there, in tests (``TestClient(asgi(server))``) as in production.

A handler takes a ``Request`` and returns a JSON-able value (sent as 200 JSON), or any
ASGI response object (a Starlette ``Response``, e.g. ``StreamingResponse`` for SSE).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nemo_gym_cli.errors import HTTPError, NemoGymError, envelope
from nemo_gym_cli.redaction import MASK
from nemo_gym_cli.server import usercode
from nemo_gym_cli.wire import dumps, loads

if TYPE_CHECKING:
    from nemo_gym_cli.server.base import Server

__all__ = ["ClientGone", "Handler", "Request", "RouteSpec", "Router", "cookie_pairs", "route", "set_cookie_header"]

log = logging.getLogger(__name__)

Handler = Callable[["Request"], Awaitable[Any]]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON_HEADER = (b"content-type", b"application/json")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SEGMENT = re.compile(r"[A-Za-z0-9_.~-]*")


@dataclass(frozen=True)
class RouteSpec:
    """One endpoint: method, path (``{name}`` segments allowed), and whether the handler
    is cancelled when the client disconnects before the answer (long upstream calls)."""

    method: str
    path: str
    cancel_on_disconnect: bool = False


def route(method: str, path: str, *, cancel_on_disconnect: bool = False) -> Callable[[Any], Any]:
    """Declare a server method ``async def handler(self, request: Request)`` as an endpoint."""

    def mark(fn: Any) -> Any:
        routes = list(getattr(fn, "__ng_routes__", ()))
        routes.append(RouteSpec(method.upper(), path, cancel_on_disconnect))
        fn.__ng_routes__ = tuple(routes)
        return fn

    return mark


def cookie_pairs(header: bytes) -> Iterator[tuple[str, str]]:
    """The ``(name, value)`` pairs of one ``Cookie`` header, in order (quotes dropped)."""
    for part in header.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            yield key, value.strip().strip('"')


def set_cookie_header(name: str, value: str) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header for a session cookie (HttpOnly, path /, no expiry)."""
    return (b"set-cookie", f"{name}={value}; HttpOnly; Path=/; SameSite=lax".encode())


class ClientGone(Exception):
    """The client disconnected before the answer: there is no one to answer."""


class Request:
    """What a handler sees of one HTTP request: headers, cookies, body, path parameters.

    ``set_cookie`` and ``response_headers`` add headers to the answer, whatever it is.
    """

    __slots__ = ("scope", "_receive", "_body", "_headers", "_cookies", "path_params", "response_headers")

    def __init__(self, scope: Scope, receive: Receive, path_params: dict[str, str] | None = None) -> None:
        self.scope = scope
        self._receive = receive
        self._body: bytes | None = None
        self._headers: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None
        self.path_params = path_params or {}
        self.response_headers: list[tuple[bytes, bytes]] = []

    @property
    def method(self) -> str:
        return self.scope["method"]

    @property
    def path(self) -> str:
        return self.scope["path"]

    @property
    def headers(self) -> dict[str, str]:
        """Request headers, names lower-cased (the last of repeated ones)."""
        if self._headers is None:
            self._headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}
        return self._headers

    @property
    def cookies(self) -> dict[str, str]:
        if self._cookies is None:
            jar: dict[str, str] = {}
            for name, value in self.scope["headers"]:
                if name == b"cookie":
                    jar.update(cookie_pairs(value))
            self._cookies = jar
        return self._cookies

    def set_cookie(self, name: str, value: str) -> None:
        """Send ``Set-Cookie`` with the answer (HttpOnly, path /, session lifetime)."""
        self.response_headers.append(set_cookie_header(name, value))

    async def body(self) -> bytes:
        if self._body is None:
            chunks = []
            while True:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._body

    async def json(self) -> Any:
        """The body as JSON (an empty body is ``{}``); not JSON is a 400 naming the problem."""
        body = await self.body()
        if not body:
            return {}
        try:
            return loads(body)
        except ValueError as exc:
            raise HTTPError(400, f"{self.method} {self.path}: the request body is not valid JSON ({exc})") from None

    async def json_object(self) -> dict[str, Any]:
        """The body as a JSON object; anything else is a 400 naming what came."""
        data = await self.json()
        if not isinstance(data, dict):
            raise HTTPError(
                400, f"{self.method} {self.path}: the request body must be a JSON object, got {type(data).__name__}"
            )
        return data

    async def wait_disconnect(self) -> None:
        """Return when the client goes away (call only after the body was read)."""
        while (await self._receive())["type"] != "http.disconnect":
            pass


#: NeMo Gym 0.7's agents call a model server at ``<base>/ng-rollout/<rollout id>/v1/...`` (the
#: id keys its per-rollout capture); its servers route the rest of the path.
_ROLLOUT_PREFIX = "/ng-rollout/"
_TOKEN_CAPTURE = "training-token-capture"


def _without_rollout_prefix(method: str, path: str) -> str:
    """``path`` without NeMo Gym 0.7's ``/ng-rollout/<id>`` prefix. Its training-token capture
    (``/ng-rollout/<id>/training-token-capture/...``) is refused, not served without capture."""
    _, _, rest = path[len(_ROLLOUT_PREFIX) :].partition("/")
    if rest.split("/", 1)[0] == _TOKEN_CAPTURE:
        raise HTTPError(
            501,
            f"{method} {path}: NeMo Gym's training-token capture is not supported here; "
            "collect without it (its observability and token-capture options off)",
            kind="not_supported",
        )
    return "/" + rest


class Router:
    """The ASGI app of one server: its declared routes, the envelope, the lifespan."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.exact: dict[tuple[str, str], tuple[Handler, RouteSpec]] = {}
        self.patterns: list[tuple[str, re.Pattern[str], Handler, RouteSpec]] = []
        self.paths: set[str] = set()
        for spec, handler in server.routes():
            self.add(spec, handler)
        self.app: Callable[[Scope, Receive, Send], Awaitable[None]] = self._app
        for middleware in reversed(server.middleware()):
            self.app = middleware(self.app)

    def add(self, spec: RouteSpec, handler: Handler) -> None:
        """Register one route; a duplicate or an unsupported pattern is an error now."""
        where = f"{type(self.server).__name__}: route {spec.method} {spec.path}"
        if not spec.path.startswith("/"):
            raise NemoGymError(f"{where}: a path must start with '/'")
        if "{" in spec.path:
            parts = []
            for segment in spec.path.split("/")[1:]:
                param = _PARAM.fullmatch(segment)
                if param:
                    parts.append(f"(?P<{param.group(1)}>[^/]+)")
                elif "{" in segment or "}" in segment or not _SEGMENT.fullmatch(segment):
                    raise NemoGymError(f"{where}: unsupported path segment {segment!r}; use /literal/{{name}}")
                else:
                    parts.append(re.escape(segment))
            pattern = re.compile("/" + "/".join(parts))
            if any(m == spec.method and p.pattern == pattern.pattern for m, p, _, _ in self.patterns):
                raise NemoGymError(f"{where} is declared twice")
            self.patterns.append((spec.method, pattern, handler, spec))
        else:
            if (spec.method, spec.path) in self.exact:
                raise NemoGymError(f"{where} is declared twice")
            self.exact[(spec.method, spec.path)] = (handler, spec)
        self.paths.add(spec.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def _find(self, method: str, path: str) -> tuple[Handler, RouteSpec, dict[str, str]]:
        found = self.exact.get((method, path))
        if found is not None:
            return found[0], found[1], {}
        if path.startswith(_ROLLOUT_PREFIX):  # once: a prefix inside the rest is the rest's
            path = _without_rollout_prefix(method, path)
            found = self.exact.get((method, path))
            if found is not None:
                return found[0], found[1], {}
        allowed = [m for (m, p) in self.exact if p == path]
        for m, pattern, handler, spec in self.patterns:
            match = pattern.fullmatch(path)
            if match:
                if m == method:
                    return handler, spec, match.groupdict()
                allowed.append(m)
        if allowed:
            raise HTTPError(405, f"{method} {path} is not allowed; use {' or '.join(sorted(set(allowed)))}")
        raise HTTPError(404, f"no route {method} {path} on {self.server.describe()}; routes: {self._listing()}")

    def _listing(self) -> str:
        routes = sorted({f"{m} {p}" for (m, p) in self.exact} | {f"{m} {p.pattern}" for m, p, _, _ in self.patterns})
        shown = ", ".join(routes[:12])
        return shown + (f" and {len(routes) - 12} more" if len(routes) > 12 else "")

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets: not served

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            handler, spec, request.path_params = self._find(scope["method"], scope["path"])
            if spec.cancel_on_disconnect:
                result = await self._until_disconnect(handler, request)
            else:
                result = await handler(request)
        except ClientGone:
            return  # nobody to answer
        except asyncio.CancelledError:
            # The server is shutting down and gave up waiting for this request: answer that
            # (the caller may retry elsewhere) instead of a traceback of the cancellation.
            with contextlib.suppress(Exception):
                error = HTTPError(503, f"{self.server.describe()} is shutting down", kind="unavailable")
                status, body = envelope(error)
                await _send_json(send, status, dumps(body), [])
            return
        except Exception as exc:  # every failure, one envelope
            frame = None if isinstance(exc, NemoGymError) else usercode.user_frame(exc)
            if frame is not None:  # the user's code failed: one line, the traceback in the errors log
                status, body = envelope(_user_error(exc, frame))
            else:
                status, body = envelope(exc)
            if frame is None and status >= 500 and not isinstance(exc, NemoGymError):
                log.exception("%s %s failed in %s", scope["method"], scope["path"], self.server.describe())
            body["error"]["message"] = MASK.scrub(str(body["error"]["message"]))  # a key never in an answer
            headers = list(request.response_headers)
            for name, value in getattr(exc, "headers", {}).items():
                headers.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
            await _send_json(send, status, dumps(body), headers)
            return
        if callable(result):  # an ASGI response
            if request.response_headers:
                result.raw_headers.extend(request.response_headers)
            await result(scope, receive, send)
            return
        await _send_json(send, 200, dumps(result), request.response_headers)

    async def _until_disconnect(self, handler: Handler, request: Request) -> Any:
        """Run the handler; cancel it if the client disconnects first (no one would read
        the answer, and an upstream call must not outlive its caller)."""
        await request.body()
        work = asyncio.ensure_future(handler(request))
        gone = asyncio.ensure_future(request.wait_disconnect())
        try:
            await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not work.done():
            work.cancel()
            raise ClientGone
        return work.result()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.server.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.server.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def _user_error(exc: BaseException, frame: Any) -> HTTPError:
    """The answer to an exception in the user's code (``usercode.py``): one line naming it,
    printed once per distinct error, not retryable unless it is the kind that clears."""
    line, first = usercode.errors_log.record(exc, frame)
    if first:
        print(usercode.USER_ERROR_PREFIX + line, file=sys.stderr, flush=True)
    return HTTPError(500, line, kind=usercode.USER_ERROR_KIND, retryable=usercode.retryable(exc))


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    raw = [_JSON_HEADER, (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
