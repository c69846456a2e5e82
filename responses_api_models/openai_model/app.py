"""openai_model: the Responses API in front of any OpenAI-compatible provider.

``POST /v1/responses`` and ``POST /v1/chat/completions``. The upstream speaks Chat
Completions (``upstream_api: chat_completions``, the default: every OpenAI-compatible
provider does) or the Responses API (``upstream_api: responses``); requests and answers are
converted as needed (``nemo_gym_cli.conversion``). Retries, failover and the concurrency
cap live in ``nemo_gym_cli.upstream``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from nemo_gym_cli import conversion
from nemo_gym_cli.errors import InputError, UpstreamError
from nemo_gym_cli.servers import ServerSpec, create_server_app, read_json
from nemo_gym_cli.upstream import Upstream, UpstreamClient
from nemo_gym_cli.wire import JSONResponse

log = logging.getLogger("openai_model")


class AlternativeUpstream(BaseModel):
    base_url: str = Field(description="base URL of another OpenAI-compatible endpoint")
    api_key: str = Field("", description="its API key", repr=False)
    model: str | None = Field(None, description="model name there (default: openai_model)")


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
    max_concurrency: int = Field(64, ge=1, description="most concurrent upstream requests of this server")
    default_headers: dict[str, str] = Field(default_factory=dict, description="extra headers on every request")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="fields merged into every request body")
    fallback_models: list[str] = Field(default_factory=list, description="sent as OpenRouter's 'models' list")
    alternative_upstreams: list[AlternativeUpstream] = Field(
        default_factory=list, description="tried in order when the first upstream is down"
    )


class OpenAIModel:
    def __init__(self, config: OpenAIModelConfig, client: UpstreamClient) -> None:
        self.config = config
        self.client = client
        self._reported: set[str] = set()

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {**self.config.extra_body, **body}
        body.pop("stream", None)
        if self.config.fallback_models:
            body["models"] = [self.config.openai_model, *self.config.fallback_models]
        return body

    def report(self, exc: UpstreamError) -> None:
        """Print an error the user must act on once, not once per rollout."""
        if exc.kind not in self._reported:
            self._reported.add(exc.kind)
            log.error("%s", exc)

    async def responses(self, params: dict[str, Any]) -> dict[str, Any]:
        tools_sent = bool(params.get("tools"))
        if self.config.upstream_api == "responses":
            body = self._body({k: v for k, v in params.items() if k not in ("store", "previous_response_id")})
            response, upstream = await self.client.post("responses", body, tools_sent=tools_sent)
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
                "responses", params, tools_sent=tools_sent, parse=conversion.responses_to_chat_response
            )
            return answer
        answer, _ = await self.client.post("chat/completions", self._body(body), tools_sent=tools_sent)
        return answer


def _error_response(exc: Exception) -> JSONResponse:
    if isinstance(exc, UpstreamError):
        status = exc.status if exc.status and 400 <= exc.status < 600 and not exc.retryable else 502
        return JSONResponse(exc.to_body(), status)
    return JSONResponse({"error": {"message": str(exc), "type": "bad_request", "code": 400}}, 400)


def create_app(spec: ServerSpec) -> FastAPI:
    config = OpenAIModelConfig.model_validate(spec.fields)
    upstreams = [Upstream(config.openai_base_url, config.openai_api_key, config.openai_model)]
    upstreams += [
        Upstream(u.base_url, u.api_key, u.model or config.openai_model) for u in config.alternative_upstreams
    ]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s)
        limits = httpx.Limits(max_connections=config.max_concurrency, max_keepalive_connections=config.max_concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            client = UpstreamClient(
                http,
                upstreams,
                max_attempts=config.max_attempts,
                max_concurrency=config.max_concurrency,
                headers=config.default_headers,
            )
            app.state.model = OpenAIModel(config, client)
            yield

    app = create_server_app(spec, lifespan=lifespan)

    @app.post("/v1/responses")
    async def responses(request: Request) -> JSONResponse:
        params = await read_json(request)
        try:
            return JSONResponse(await app.state.model.responses(params))
        except UpstreamError as exc:
            app.state.model.report(exc)
            return _error_response(exc)
        except InputError as exc:
            return _error_response(exc)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> JSONResponse:
        body = await read_json(request)
        try:
            return JSONResponse(await app.state.model.chat_completions(body))
        except UpstreamError as exc:
            app.state.model.report(exc)
            return _error_response(exc)
        except InputError as exc:
            return _error_response(exc)

    return app
