"""The base of every model server: the OpenAI surface agents and SDKs call.

    class MyModel(ModelServer):
        async def responses(self, body: dict) -> dict:          # a Responses object
            ...
        async def chat_completions(self, body: dict) -> dict:   # a chat completion
            ...
        async def models(self) -> list[dict]:                   # what /v1/models lists
            ...

Routes: ``POST /v1/responses``, ``POST /v1/chat/completions`` (the body checked to be a JSON
object; the handler cancelled when the caller disconnects, so a provider call never
outlives its caller) and ``GET /v1/models`` (OpenAI's list shape). A method a server does
not implement answers 404 in the envelope.

Streaming is the base's, once for every model server: with ``stream: true`` the subclass
answers as usual (``stream`` and ``stream_options`` taken out of the body) and the base
renders the complete answer as the stream OpenAI documents (``openai/streams.py``):
Responses events from ``response.created`` to ``response.completed``, or chat chunks with
the usage (``stream_options.include_usage``) and ``[DONE]``. An error before the answer is
the usual JSON envelope, as OpenAI answers one. A subclass that returns an ASGI response
(its own stream) is served as is.

What a model server serves is declared by its ``Config`` (a ``ModelServerConfig``), so the
collector can ask any implementation the same questions from the config alone, before the
server starts and without knowing its name (``Served``): ``model_key`` names the key of the
configured model, ``allowed_models`` the other models a request may name, ``upstream_keys``
the keys of the upstream whose ``/models`` prices its answers, ``answer_keys`` the other keys
that change what it answers. With a ``model_key``, the base refuses (400) a request naming a
model that is neither (a sweep's variant is never answered by another model) and lists both
at ``GET /v1/models``; ``asked_model`` tells the subclass which one to send.

An agent names the repeat a request belongs to in the ``x-ng-rollout-index`` header (the
row's ``_ng_rollout_index``); ``rollout_index()`` gives it to the subclass (a response cache
keys on it: ``server/cache.py``). A value that is not a non-negative integer is a 400.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from pydantic import Field
from starlette.responses import Response

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.openai.streams import SSE_MEDIA_TYPE, chat_sse, response_sse
from nemo_gym_cli.server.base import Server
from nemo_gym_cli.server.config import ServerConfig
from nemo_gym_cli.server.http import Request, route
from nemo_gym_cli.server.spec import ROLLOUT_INDEX_HEADER

__all__ = ["ModelServer", "ModelServerConfig", "Served", "UpstreamKeys", "declared_config"]


class UpstreamKeys(NamedTuple):
    """The config keys of the upstream a model server forwards to."""

    base_url: str
    api_key: str
    headers: str


@dataclass(frozen=True)
class Served:
    """What a model server's config says it serves, read from its keys without starting it."""

    #: the model it answers with when a request names none (None: it names none)
    model: str | None
    #: the other models a request may name
    allowed_models: tuple[str, ...] = ()
    #: the upstream whose ``/models`` prices its answers: base URL, API key, headers
    base_url: str | None = None
    api_key: str = field(default="", repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    #: the keys that change what it answers, with their values (may hold secrets)
    answer: dict[str, Any] = field(default_factory=dict, repr=False)
    #: the key of ``model``, for messages
    model_key: str | None = None

    @property
    def models(self) -> list[str]:
        """The configured model, then the allowed ones, once each."""
        first = [self.model] if self.model else []
        return list(dict.fromkeys([*first, *self.allowed_models]))


class ModelServerConfig(ServerConfig):
    """Keys every model server has, and the names of its own keys that say what it serves."""

    #: the key of the model it answers with (None: it answers whatever a request names)
    model_key: ClassVar[str | None] = None
    #: the keys of the upstream whose ``/models`` prices its answers (None: no upstream)
    upstream_keys: ClassVar[UpstreamKeys | None] = None
    #: the other keys that change what it answers (not how it is reached or retried)
    answer_keys: ClassVar[tuple[str, ...]] = ()

    allowed_models: list[str] = Field(
        default_factory=list,
        description="other models a request may name in 'model'; a sweep's +models fills it",
    )

    @classmethod
    def served(cls, fields: Mapping[str, Any]) -> Served:
        """What an instance with these (unvalidated) keys serves; a key of the wrong type
        reads as absent (the server's own config check names it when it starts)."""
        model = fields.get(cls.model_key) if cls.model_key else None
        allowed = fields.get("allowed_models")
        out: dict[str, Any] = {}
        if cls.upstream_keys is not None:
            base, key, headers = (fields.get(k) for k in cls.upstream_keys)
            out["base_url"] = str(base) if base is not None else None
            out["api_key"] = str(key or "")
            out["headers"] = {str(k): str(v) for k, v in headers.items()} if isinstance(headers, dict) else {}
        keys = {cls.model_key, *cls.answer_keys} - {None}
        return Served(
            model=model if isinstance(model, str) else None,
            allowed_models=tuple(str(m) for m in allowed) if isinstance(allowed, list) else (),
            answer={k: v for k, v in fields.items() if k in keys},  # in the config's order
            model_key=cls.model_key,
            **out,
        )


def declared_config(entrypoint: str, server_type: str, implementation: str) -> type[ModelServerConfig] | None:
    """The config class of the model server at ``entrypoint``, which declares what it serves;
    None when it is no model server, declares nothing, or cannot be imported here (its own
    start says why)."""
    from nemo_gym_cli.server.serve import import_implementation, server_class

    try:
        cls = server_class(import_implementation(entrypoint, server_type, implementation))
    except Exception:  # noqa: BLE001 - the user's code: its server's start reports the error
        return None
    if not issubclass(cls, ModelServer) or not issubclass(cls.Config, ModelServerConfig):
        return None
    return cls.Config


_STREAM_KEYS = ("stream", "stream_options")
#: The repeat index of the request being answered (None: its caller named none).
_ROLLOUT_INDEX: ContextVar[int | None] = ContextVar("ng_rollout_index", default=None)
_SSE_HEADERS = {"cache-control": "no-cache"}


class ModelServer(Server):
    """A model server: Responses API and Chat Completions in, whatever backs them out."""

    server_type = "responses_api_models"
    Config: ClassVar[type[ServerConfig]] = ModelServerConfig
    _created = int(time.time())

    def served(self) -> Served | None:
        """What this server serves, from its config (None: its config declares nothing)."""
        config = self.config
        if not isinstance(config, ModelServerConfig):
            return None
        return type(config).served(config.model_dump())

    def model_setting(self) -> str:
        """The override that sets this server's model, for messages: ``+emulator_model`` when
        the file that set it says ``${emulator_model}``, else the instance's own key."""
        key = getattr(type(self.config), "model_key", None) or "model"
        spec = self.spec
        source = spec.sources.get(key, "")
        if source.endswith((".yaml", ".yml")):
            raw = _raw_value(source, [spec.name, spec.server_type, spec.implementation, key])
            named = _INTERPOLATION.fullmatch(raw) if isinstance(raw, str) else None
            if named is not None:
                return f"+{named.group(1)}"
        return f"++{spec.where}.{key}"

    def asked_model(self, body: dict[str, Any]) -> str | None:
        """The model a request asks for when it is not the configured one (None: the
        configured one). A model neither configured nor allowed is a 400 naming the served
        ones and the key to change, so no request is answered by another model than it asked."""
        config = self.config
        key = getattr(type(config), "model_key", None)
        if key is None:
            return None
        configured = getattr(config, key)
        asked = body.get("model")
        listed = body.get("models")
        names = [asked, *listed] if isinstance(listed, list) else [asked]
        allowed = [configured, *config.allowed_models]
        for name in names:
            if name is not None and name != "" and name not in allowed:
                where = self.spec.where
                raise HTTPError(
                    400,
                    f"model {name!r} is not allowed by {where}: it serves {allowed} ({key} and "
                    f"allowed_models); add {name!r} to {where}.allowed_models (ng_collect_rollouts "
                    "+models=[...] does when it starts the servers), or leave 'model' out of the request",
                    kind="model_not_allowed",
                    retryable=False,
                )
        return asked if asked and asked != configured else None

    def rollout_index(self) -> int | None:
        """The repeat index of the rollout the request being answered belongs to (the
        ``x-ng-rollout-index`` header its agent sent); None when the caller sent none."""
        return _ROLLOUT_INDEX.get()

    async def responses(self, body: dict[str, Any]) -> Any:
        """Answer a Responses create request with a Responses object (or an ASGI response)."""
        raise HTTPError(404, f"{self.describe()} does not serve the Responses API")

    async def chat_completions(self, body: dict[str, Any]) -> Any:
        """Answer a Chat Completions request with a chat completion (or an ASGI response)."""
        raise HTTPError(404, f"{self.describe()} does not serve Chat Completions")

    async def models(self) -> list[dict[str, Any]]:
        """The models served, as ``/v1/models`` entries (``id``, ``object``, ``created``,
        ``owned_by``: OpenAI's ``Model``): by default the configured and allowed ones."""
        served = self.served()
        owner = self.spec.implementation
        return [
            {"id": m, "object": "model", "created": self._created, "owned_by": owner}
            for m in (served.models if served else [])
        ]

    @route("POST", "/v1/responses", cancel_on_disconnect=True)
    async def http_responses(self, request: Request) -> Any:
        body = await request.json_object()
        self.asked_model(body)
        token = _ROLLOUT_INDEX.set(_rollout_index(request))
        try:
            return await self._answer_responses(body)
        finally:
            _ROLLOUT_INDEX.reset(token)

    async def _answer_responses(self, body: dict[str, Any]) -> Any:
        if body.get("stream") is not True:
            return await self.responses(body)
        answer = await self.responses(_unstreamed(body))
        if callable(answer) or not isinstance(answer, dict):
            return answer
        return Response(response_sse(answer), media_type=SSE_MEDIA_TYPE, headers=_SSE_HEADERS)

    @route("POST", "/v1/chat/completions", cancel_on_disconnect=True)
    async def http_chat_completions(self, request: Request) -> Any:
        body = await request.json_object()
        self.asked_model(body)
        token = _ROLLOUT_INDEX.set(_rollout_index(request))
        try:
            return await self._answer_chat(body)
        finally:
            _ROLLOUT_INDEX.reset(token)

    async def _answer_chat(self, body: dict[str, Any]) -> Any:
        if body.get("stream") is not True:
            return await self.chat_completions(body)
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        answer = await self.chat_completions(_unstreamed(body))
        if callable(answer) or not isinstance(answer, dict):
            return answer
        return Response(chat_sse(answer, usage=usage), media_type=SSE_MEDIA_TYPE, headers=_SSE_HEADERS)

    @route("GET", "/v1/models")
    async def http_models(self, request: Request) -> dict[str, Any]:
        return {"object": "list", "data": await self.models()}


#: A value that is another top-level key: ``${emulator_model}`` (not a resolver's ``${ng_url:x}``).
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


#: Where the toolkit's own config files are (the repository root for an editable install).
_TOOLKIT_ROOT = Path(__file__).resolve().parent.parent.parent


def _raw_value(source: str, path: list[str]) -> Any:
    """The value at ``path`` in the config file ``source`` as written (interpolations kept);
    None when it cannot be read. Config sources are shown relative to the working directory
    or the toolkit's root."""
    import yaml

    for root in (Path.cwd(), _TOOLKIT_ROOT):
        try:
            node: Any = yaml.safe_load((root / source).read_text())
        except (OSError, yaml.YAMLError):
            continue
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        return node
    return None


def _rollout_index(request: Request) -> int | None:
    """The ``x-ng-rollout-index`` header's value; a malformed one is a 400."""
    raw = request.headers.get(ROLLOUT_INDEX_HEADER)
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise HTTPError(
            400,
            f"header {ROLLOUT_INDEX_HEADER} must be a non-negative integer (the rollout's repeat index), "
            f"got {raw[:40]!r}",
            kind="bad_request",
            retryable=False,
        )
    return int(raw)


def _unstreamed(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _STREAM_KEYS}
