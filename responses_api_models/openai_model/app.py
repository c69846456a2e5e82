"""openai_model: the Responses API in front of any OpenAI-compatible provider.

``POST /v1/responses`` and ``POST /v1/chat/completions``. The upstream speaks Chat
Completions (``upstream_api: chat_completions``, the default: every OpenAI-compatible
provider does) or the Responses API (``upstream_api: responses``); requests and answers are
converted as needed (``nemo_gym_cli.conversion``). Retries, failover and the concurrency
cap live in ``nemo_gym_cli.upstream``, the start-up check in ``nemo_gym_cli.models_list``.
One aiohttp session per server carries every upstream request (``transport`` swaps in an
httpx client, for tests).

At start-up the server checks the upstream once (``preflight``): a rejected key, an unknown
model or an unreachable provider stops it with one message saying what to do, instead of
failing every rollout later. Provider errors reach the agent as a structured error body
(``{"error": {"message", "code", "type", "retryable"}}``) and are logged once per kind.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from nemo_gym_cli import conversion
from nemo_gym_cli.errors import ConfigError, InputError, UpstreamError
from nemo_gym_cli.models_list import preflight
from nemo_gym_cli.servers import ServerSpec, create_server_app, read_json
from nemo_gym_cli.upstream import AiohttpWire, HttpxWire, Upstream, UpstreamClient, Wire
from nemo_gym_cli.wire import JSONResponse

if TYPE_CHECKING:  # only tests hand in an httpx transport
    import httpx

log = logging.getLogger("openai_model")


class AlternativeUpstream(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="base URL of another OpenAI-compatible endpoint")
    api_key: str = Field("", description="its API key", repr=False)
    model: str | None = Field(None, description="model name there (default: openai_model)")
    fallback_models: list[str] | None = Field(
        None,
        description="its 'models' fallback list (default: fallback_models when model is unset)",
    )


class OpenAIModelConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    openai_base_url: str = Field(description="OpenAI-compatible base URL, e.g. https://openrouter.ai/api/v1")
    openai_api_key: str = Field("", description="API key sent as 'Authorization: Bearer'", repr=False)
    openai_model: str = Field(description="model name, passed through untouched (e.g. openrouter:x/y)")
    upstream_api: Literal["chat_completions", "responses"] = Field(
        "chat_completions", description="which API the upstream speaks"
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="TCP/TLS connect timeout")
    read_timeout_s: float = Field(300.0, gt=0, description="longest wait for response bytes (long generations)")
    max_attempts: int = Field(6, ge=1, description="attempts per request, the first included")
    backoff_base_s: float = Field(0.5, ge=0, description="first retry waits up to this (doubling, full jitter)")
    backoff_max_s: float = Field(30.0, ge=0, description="longest backoff between two attempts")
    max_retry_after_s: float = Field(120.0, ge=0, description="longest Retry-After honoured")
    max_concurrency: int = Field(
        256,
        ge=1,
        description="most concurrent upstream requests of this server; with latency L it bounds"
        " model calls to max_concurrency / L per second",
    )
    default_headers: dict[str, str] = Field(default_factory=dict, description="extra headers on every request")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="fields merged into every request body")
    fallback_models: list[str] = Field(default_factory=list, description="sent as OpenRouter's 'models' list")
    alternative_upstreams: list[AlternativeUpstream] = Field(
        default_factory=list, description="tried in order when the first upstream is down"
    )
    preflight: bool = Field(True, description="check key and model at start-up; false skips it")
    preflight_timeout_s: float = Field(
        10.0, gt=0, description="how long start-up waits for an upstream that refuses connections"
    )

    def upstreams(self) -> list[Upstream]:
        """The first upstream, then the alternatives in order."""
        first = (self.openai_base_url, self.openai_api_key, self.openai_model)
        out = [Upstream(*first, tuple(self.fallback_models))]
        for alt in self.alternative_upstreams:
            # Without a model of its own it names models the same way: same fallbacks.
            inherited = [] if alt.model else self.fallback_models
            fallbacks = inherited if alt.fallback_models is None else alt.fallback_models
            model = alt.model or self.openai_model
            out.append(Upstream(alt.base_url, alt.api_key, model, tuple(fallbacks)))
        return out


def parse_config(fields: dict[str, Any], name: str = "openai_model") -> OpenAIModelConfig:
    """Validate the instance's fields; problems are named without their values (keys!)."""
    try:
        return OpenAIModelConfig.model_validate(fields)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigError(
            f"instance {name!r}: invalid openai_model config: {problems} "
            "(see responses_api_models/openai_model/README.md)"
        ) from None


class OpenAIModel:
    """The two endpoints' logic over one ``UpstreamClient``."""

    def __init__(self, config: OpenAIModelConfig, client: UpstreamClient) -> None:
        self.config = config
        self.client = client
        self._extra = config.extra_body
        self._reported: set[str] = set()

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self._extra:
            body = {**self._extra, **body}
        body.pop("stream", None)  # answers are whole JSON bodies, never streamed
        return body

    def report(self, exc: UpstreamError) -> None:
        """Log an error the user must act on once per kind, not once per rollout."""
        if exc.kind not in self._reported:
            self._reported.add(exc.kind)
            log.error("%s", exc)

    async def responses(self, params: dict[str, Any]) -> dict[str, Any]:
        tools_sent = bool(params.get("tools"))
        if self.config.upstream_api == "responses":
            body = {k: v for k, v in params.items() if k not in ("store", "previous_response_id")}
            body["store"] = False
            response, _ = await self.client.post(
                "responses", self._body(body), tools_sent=tools_sent, parse=_check_responses
            )
            return response
        chat = self._body(conversion.responses_to_chat_request(params))
        response, _ = await self.client.post(
            "chat/completions",
            chat,
            tools_sent=tools_sent,
            parse=lambda data: conversion.chat_to_responses_response(data, request=params),
        )
        return response

    async def chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        tools_sent = bool(body.get("tools"))
        if self.config.upstream_api == "responses":
            params = self._body(conversion.chat_to_responses_request(body))
            answer, _ = await self.client.post(
                "responses",
                params,
                tools_sent=tools_sent,
                parse=conversion.responses_to_chat_response,
            )
            return answer
        answer, _ = await self.client.post("chat/completions", self._body(dict(body)), tools_sent=tools_sent)
        return answer


def _check_responses(data: dict[str, Any]) -> dict[str, Any]:
    """A Responses object from the upstream, passed on as is if it has an output list."""
    if isinstance(data.get("output"), list):
        return data
    raise UpstreamError(
        f"the upstream answer is not a Responses object (keys {sorted(data)[:8]}); check that "
        "the base URL serves the Responses API, or set upstream_api: chat_completions",
        kind="bad_response",
        retryable=True,
    )


def _error_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, UpstreamError):
        if exc.kind == "timeout":
            status = 504
        elif exc.status and 400 <= exc.status < 600 and not exc.retryable:
            status = exc.status
        else:
            status = 502
        return JSONResponse(exc.to_body(), status)
    return JSONResponse({"error": {"message": str(exc), "type": "bad_request", "code": 400}}, 400)


class _HideTraceback(logging.Filter):
    """Drops uvicorn's traceback of a failed start-up check: the one-line message says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not (text.startswith("Traceback") and "UpstreamError" in text)


def create_app(spec: ServerSpec, *, transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The model server. ``transport`` replaces the network (tests: ``httpx.ASGITransport``)."""
    config = parse_config(spec.fields, spec.name)
    upstreams = config.upstreams()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _open_wire(config, transport) as wire:
            if config.preflight:
                await _preflight(wire, upstreams, config)
            client = UpstreamClient(
                wire,
                upstreams,
                max_attempts=config.max_attempts,
                max_concurrency=config.max_concurrency,
                backoff_base_s=config.backoff_base_s,
                backoff_max_s=config.backoff_max_s,
                max_retry_after_s=config.max_retry_after_s,
                headers=config.default_headers,
            )
            app.state.model = OpenAIModel(config, client)
            yield

    app = create_server_app(spec, lifespan=lifespan)

    # Plain Starlette routes, served by DirectRoutes without FastAPI's stack (hot path).
    def route(method: str) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            model: OpenAIModel = request.app.state.model
            try:
                return JSONResponse(await getattr(model, method)(await read_json(request)))
            except UpstreamError as exc:
                model.report(exc)
                return _error_response(exc)
            except InputError as exc:
                return _error_response(exc)

        return endpoint

    responses, chat_completions = route("responses"), route("chat_completions")
    app.add_route("/v1/responses", responses, methods=["POST"])
    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])
    return app


@asynccontextmanager
async def _open_wire(config: OpenAIModelConfig, transport: httpx.AsyncBaseTransport | None) -> AsyncIterator[Wire]:
    """The server's one client for the upstream, with its timeouts and pool size."""
    if transport is not None:
        import httpx

        timeout = httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
            yield HttpxWire(http)
        return
    async with AiohttpWire.open(
        pool_size=config.max_concurrency,
        connect_timeout_s=config.connect_timeout_s,
        read_timeout_s=config.read_timeout_s,
    ) as wire:
        yield wire


async def _preflight(http: Wire, upstreams: list[Upstream], config: OpenAIModelConfig) -> None:
    try:
        warnings = await preflight(
            http, upstreams, timeout_s=config.preflight_timeout_s, headers=config.default_headers
        )
    except UpstreamError as exc:
        log.error("start-up check failed: %s (set preflight: false to skip this check)", exc)
        logging.getLogger("uvicorn.error").addFilter(_HideTraceback())
        raise
    for warning in warnings:
        log.warning("start-up check: %s", warning)
