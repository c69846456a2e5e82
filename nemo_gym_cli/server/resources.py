"""The base of every environment: tools as typed methods, per-rollout sessions, a verifier.

    class Calculator(ResourcesServer):
        @tool
        async def add(self, a: float, b: float) -> float:
            \"\"\"Add two numbers.\"\"\"
            return a + b

        async def verify(self, session: dict, body: dict) -> dict:
            return {"reward": float(final_text(body).strip() == body["expected"])}

Routes (declared once here):

- ``POST /seed_session``: start a rollout's state from its task row (``seed_session``);
- ``POST /<tool>``: one per ``@tool`` method; the body is the tool's arguments, validated
  against the schema the method's type hints give (a bad call is a 422 the model sees);
- ``GET /tools``: every tool's function schema (a data row may leave ``tools`` out: the
  agent then offers these);
- ``POST /verify``: score the finished trajectory; answers the body plus ``reward`` and any
  other metrics ``verify`` returns.

Sessions: the agent names the rollout in the ``x-ng-session-id`` header (ours) or in the
``ng_session`` cookie (NeMo Gym's agents carry cookies, not our header). Without the header,
``/seed_session`` starts a new session and sets the cookie, and every other answer (tool
calls, ``/verify``, errors and 404s included) sets it again: NeMo Gym's agent replaces the
cookies it holds with each tool answer's ``Set-Cookie``, so an answer without it would drop
the session for the rest of the rollout. ``session`` is a dict kept from ``/seed_session``
until ``/verify``.

CPU-heavy work (a symbolic verifier, running code) goes through ``await self.offload(fn,
*args)``: a pool of worker processes with a timeout, so the event loop never stalls and a
hung check is a recorded failure, not a hung server; with ``ray_enabled: true``, Ray tasks
on the cluster the servers run on, with the same contract (``ray_offload.py``).
"""

from __future__ import annotations

import inspect
import re
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from nemo_gym_cli.errors import ConfigError, HTTPError, NemoGymError, ToolError
from nemo_gym_cli.server.aggregate import aggregate_metrics
from nemo_gym_cli.server.base import Server
from nemo_gym_cli.server.config import ServerConfig
from nemo_gym_cli.server.http import Request, RouteSpec, cookie_pairs, route, set_cookie_header
from nemo_gym_cli.server.spec import SESSION_COOKIE, SESSION_HEADER, new_session_id
from nemo_gym_cli.wire import is_number

__all__ = ["ResourcesServer", "Tool", "ToolError", "final_text", "function_calls", "tool"]

#: Sessions kept at most; older ones (rollouts that never reached /verify) are dropped.
MAX_SESSIONS = 100_000


class Tool:
    """One tool: its name, description, argument model and JSON schema, and the method."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        doc = inspect.getdoc(fn) or ""
        self.description = description if description is not None else _summary(doc)
        params = list(inspect.signature(fn).parameters.values())[1:]  # after self
        self.takes_session = bool(params) and params[0].name == "session"
        if self.takes_session:
            params = params[1:]
        hints = get_type_hints(fn, include_extras=True)
        self.model_arg: str | None = None
        if len(params) == 1 and _is_model(hints.get(params[0].name)):
            self.args_model: type[BaseModel] = hints[params[0].name]
            self.model_arg = params[0].name
        else:
            arg_docs = _arg_docs(doc)
            fields: dict[str, Any] = {}
            for p in params:
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    raise TypeError(f"tool {self.name!r}: *args/**kwargs are not supported; name each argument")
                annotation = hints.get(p.name, Any)
                default = ... if p.default is p.empty else p.default
                if p.name in arg_docs and not _has_field_info(annotation):
                    fields[p.name] = (annotation, Field(default, description=arg_docs[p.name]))
                else:
                    fields[p.name] = (annotation, default)
            self.args_model = create_model(  # type: ignore[call-overload]
                f"{self.name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
            )
        self.parameters = _clean_schema(self.args_model.model_json_schema())

    def schema(self) -> dict[str, Any]:
        """The function tool as a Responses API ``tools`` entry (``strict`` included: NeMo
        Gym's agents require the key)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": False,
        }

    def parse(self, args: Any) -> dict[str, Any]:
        """Validated keyword arguments for the method; a bad call is a ``ToolError``."""
        if not isinstance(args, dict):
            raise ToolError(f"{self.name}: the arguments must be a JSON object, got {type(args).__name__}")
        try:
            value = self.args_model.model_validate(args)
        except ValidationError as exc:
            problems = "; ".join(
                f"argument {'.'.join(str(p) for p in e['loc']) or '(all)'}: "
                + ("unknown argument" if e["type"] == "extra_forbidden" else e["msg"])
                for e in exc.errors(include_url=False, include_input=False)
            )
            expected = ", ".join(self.parameters.get("properties", {})) or "none"
            raise ToolError(f"{self.name}: {problems} (arguments: {expected})") from None
        if self.model_arg is not None:
            return {self.model_arg: value}
        return {name: getattr(value, name) for name in type(value).model_fields}


def tool(fn: Any = None, *, name: str | None = None, description: str | None = None) -> Any:
    """Mark ``async def name(self, [session,] arg: type, ...)`` as the tool ``POST /name``.

    The JSON schema comes from the type hints (or one pydantic model argument), the
    description from the docstring's first paragraph, argument descriptions from its
    ``Args:`` section or ``Annotated[type, Field(description=...)]``. Raise ``ToolError``
    to tell the model what was wrong with its call.
    """

    def mark(method: Any) -> Any:
        method.__ng_tool__ = {"name": name, "description": description}
        return method

    return mark(fn) if fn is not None else mark


class ResourcesServer(Server):
    """An environment: ``@tool`` methods acting on per-rollout ``session`` state, ``verify``."""

    server_type = "resources_servers"

    class Config(ServerConfig):
        offload_workers: int = Field(2, ge=1, description="worker processes for offload() (CPU-heavy checks)")
        offload_timeout_s: float = Field(30.0, gt=0, description="longest one offload() call may run")
        ray_enabled: bool = Field(
            False, description="run offload() calls as Ray tasks on the cluster ng_run runs on (+ray.address)"
        )
        ray_num_cpus: float = Field(1.0, gt=0, description="CPUs one offload() call reserves on the Ray cluster")

    #: Route names the base serves: a tool may not take one.
    RESERVED: ClassVar[frozenset[str]] = frozenset(("seed_session", "verify", "tools", "health"))

    def __init__(self, config: Any = None, spec: Any = None) -> None:
        super().__init__(config, spec)
        self.sessions: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.tools: dict[str, Tool] = {}
        for attr in dir(type(self)):
            meta = getattr(getattr(type(self), attr, None), "__ng_tool__", None)
            if meta is None:
                continue
            t = Tool(getattr(type(self), attr), **meta)
            if t.name in self.RESERVED or t.name in self.tools:
                raise NemoGymError(f"{type(self).__name__}: tool name {t.name!r} clashes with a route; rename it")
            self.tools[t.name] = t
        self._pool: Any = None

    # ------------------------------------------------------------------ what subclasses write

    async def seed_session(self, session: dict[str, Any], row: dict[str, Any]) -> None:
        """Set up the rollout's state from its task row. Default: nothing."""

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        """Score ``body`` (the task row plus ``response``); return at least ``reward``."""
        raise NotImplementedError(f"{type(self).__name__} must implement verify()")

    def compute_metrics(self, tasks: list[list[dict[str, Any]]]) -> dict[str, Any]:
        """Metrics of a whole run beyond the per-field statistics (NeMo Gym 0.7's hook of the
        same name): ``tasks`` are its verify rows grouped by task; what is returned joins
        ``agent_metrics`` of ``POST /aggregate_metrics``. Default: none."""
        return {}

    def key_metrics(self, agent_metrics: dict[str, Any]) -> dict[str, Any]:
        """The headline figures of a run (0.7's ``get_key_metrics``). Default: every mean."""
        return {k: v for k, v in agent_metrics.items() if k.startswith("mean/")}

    async def offload(self, fn: Callable[..., Any], *args: Any, timeout: float | None = None) -> Any:
        """Run ``fn(*args)`` (a module-level function) in a worker process, or as a Ray task
        with ``ray_enabled``; raises ``HTTPError`` 500 ``offload_timeout`` (not retried) when
        it runs past ``timeout``, ``offload_error`` when it raises."""
        if self._pool is None:
            from nemo_gym_cli.server.offload import WorkerPool

            self._pool = WorkerPool(self.config.offload_workers)
            await self.enter(self._pool)
        return await self._pool.run(fn, args, timeout or self.config.offload_timeout_s)

    async def startup(self) -> None:
        if self.config.ray_enabled:  # joining the cluster takes a moment: before serving, not on a request
            self._pool = await self.enter(self._ray_offload())
        await super().startup()

    def _ray_offload(self) -> Any:
        where = f"{self.spec.where}.ray_enabled"
        if self.spec.ray_address is None:
            raise ConfigError(
                f"{where}: offload() runs on the Ray cluster the servers run on; place them on one with "
                "+ray.address=local (this machine), auto or host:port (docs/scale-out.md)"
            )
        try:
            from nemo_gym_cli.server.ray_offload import RayOffload
        except ModuleNotFoundError as exc:
            if exc.name != "ray":
                raise
            raise ConfigError(f"{where} needs Ray: pip install -e '.[ray]' in a clone of nemo-gym-cli") from None
        return RayOffload(self.spec.ray_address, self.config.ray_num_cpus)

    # ------------------------------------------------------------------ sessions

    def session_id(self, request: Request) -> str | None:
        """The rollout's session: the header, else the one the cookie flow found
        (``SessionCookies``), else None (a call outside any rollout)."""
        return request.headers.get(SESSION_HEADER) or request.scope.get(_SCOPE_KEY)

    def middleware(self) -> list[Callable[[Any], Any]]:
        return [*super().middleware(), SessionCookies]

    def _session(self, session_id: str | None) -> dict[str, Any]:
        if session_id is None:
            return {}  # a call outside any rollout: nothing to keep
        state = self.sessions.get(session_id)
        if state is None:
            state = self.sessions[session_id] = {}
            if len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return state

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[tuple[RouteSpec, Any]]:
        out = super().routes()
        for t in self.tools.values():
            out.append((RouteSpec("POST", f"/{t.name}"), self._endpoint(t)))
        return out

    def _endpoint(self, t: Tool) -> Callable[[Request], Any]:
        method = getattr(self, t.fn.__name__)

        async def call_tool(request: Request) -> Any:
            kwargs = t.parse(await request.json())
            if t.takes_session:
                result = method(self._session(self.session_id(request)), **kwargs)
            else:
                result = method(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result.model_dump() if isinstance(result, BaseModel) else result

        return call_tool

    @route("POST", "/seed_session")
    async def http_seed_session(self, request: Request) -> dict[str, Any]:
        row = await request.json_object()
        session_id = self.session_id(request) or new_session_id()
        self.sessions.pop(session_id, None)  # a new rollout starts from nothing
        await self.seed_session(self._session(session_id), row)
        return {}

    @route("GET", "/tools")
    async def http_tools(self, request: Request) -> list[dict[str, Any]]:
        return [t.schema() for t in self.tools.values()]

    @route("POST", "/aggregate_metrics")
    async def http_aggregate_metrics(self, request: Request) -> dict[str, Any]:
        """NeMo Gym 0.7's summary of a run's verify rows (``server/aggregate.py``)."""
        rows = (await request.json_object()).get("verify_responses")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise HTTPError(400, "POST /aggregate_metrics: the body needs 'verify_responses', a list of row objects")
        return aggregate_metrics(rows, compute_metrics=self.compute_metrics, key_metrics=self.key_metrics)

    @route("POST", "/verify")
    async def http_verify(self, request: Request) -> dict[str, Any]:
        body = await request.json_object()
        response = body.get("response")
        if not isinstance(response, dict) or not isinstance(response.get("output", []), list):
            raise HTTPError(
                400, "POST /verify: the body needs 'response', the rollout's Responses object with an 'output' list"
            )
        session_id = self.session_id(request)
        session = (self.sessions.pop(session_id, None) if session_id else None) or {}
        metrics = await self.verify(session, body)
        if not isinstance(metrics, dict) or not is_number(metrics.get("reward")):
            raise NemoGymError(
                f"{type(self).__name__}.verify returned {type(metrics).__name__} without a numeric 'reward'"
            )
        return {**body, **metrics}


# --- NeMo Gym's cookie flow ---------------------------------------------------------------

_SCOPE_KEY = "ng_session"
_COOKIE_PREFIX = f"{SESSION_COOKIE}=".encode()
_SESSION_HEADER = SESSION_HEADER.encode()


class SessionCookies:
    """ASGI middleware: sessions for agents that carry cookies instead of our header.

    A request with the ``x-ng-session-id`` header passes through untouched (our agents: no
    cookie traffic on the hot path). Otherwise the session is the ``ng_session`` cookie's,
    or, on ``/seed_session``, a new one; it is put in the scope for ``session_id`` and
    sent back as ``Set-Cookie`` on the answer, whatever the answer is.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = None
        for name, value in scope["headers"]:
            if name == _SESSION_HEADER:
                await self.app(scope, receive, send)
                return
            if name == b"cookie" and _COOKIE_PREFIX in value:
                cookie = next((v for k, v in cookie_pairs(value) if k == SESSION_COOKIE), None) or None
        session_id = new_session_id() if scope["path"] == "/seed_session" else cookie
        if session_id is None:
            await self.app(scope, receive, send)
            return
        scope[_SCOPE_KEY] = session_id
        header = set_cookie_header(SESSION_COOKIE, session_id)

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


# --- reading a trajectory -------------------------------------------------------------------


def final_text(body: dict[str, Any]) -> str:
    """The text of the rollout's last assistant message ("" if it ended without one)."""
    output = (body.get("response") or {}).get("output") or []
    for item in reversed(output):
        if isinstance(item, dict) and item.get("type") == "message" and item.get("role", "assistant") == "assistant":
            content = item.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(
                    p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
                )
            return ""
    return ""


def function_calls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The rollout's function calls, in order: ``{"name", "arguments" (str), "call_id"}``."""
    output = (body.get("response") or {}).get("output") or []
    return [i for i in output if isinstance(i, dict) and i.get("type") == "function_call"]


# --- schema helpers ---------------------------------------------------------------------------


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _has_field_info(annotation: Any) -> bool:
    from pydantic.fields import FieldInfo

    return any(isinstance(m, FieldInfo) for m in getattr(annotation, "__metadata__", ()))


def _summary(doc: str) -> str:
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


_ARG_LINE = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?\s*:\s*(.+)$")


def _arg_docs(doc: str) -> dict[str, str]:
    """``name: description`` lines of a docstring's ``Args:`` section."""
    out: dict[str, str] = {}
    _, found, section = doc.partition("Args:")
    if not found:
        return out
    for line in section.splitlines()[1:]:
        if line.strip() and not line.startswith((" ", "\t")):
            break
        match = _ARG_LINE.match(line)
        if match:
            out[match.group(1)] = match.group(2).strip()
    return out


def _clean_schema(schema: Any) -> Any:
    """Pydantic's JSON schema without its ``title`` keys (noise in every prompt)."""
    if isinstance(schema, dict):
        return {k: _clean_schema(v) for k, v in schema.items() if k != "title" or not isinstance(v, str)}
    if isinstance(schema, list):
        return [_clean_schema(v) for v in schema]
    return schema
