"""openai_model: the Responses API in front of any OpenAI-compatible provider.

``POST /v1/responses`` and ``POST /v1/chat/completions`` (the ``ModelServer`` base's routes).
The upstream speaks Chat Completions (``upstream_api: chat_completions``, the default: every
OpenAI-compatible provider does) or the Responses API (``upstream_api: responses``);
requests and answers are converted as needed (``nemo_gym_cli.openai.conversion``).
Retries, failover and the concurrency cap live in ``nemo_gym_cli.providers.upstream``, the
start-up check in ``nemo_gym_cli.providers.catalogue``. One aiohttp session per server
carries every upstream request. ``upstream_stream: true`` asks the provider for a stream
and assembles it (long generations through proxies; ``openai/streams.py``); streaming to
this server's own callers (``stream: true``) is the ``ModelServer`` base's, whatever the
upstream does. ``GET /v1/models`` lists the configured model, its fallbacks and the allowed
models.

Which model a request gets: without ``model`` (or naming ``openai_model``) the configured
one, with its ``fallback_models``; naming one of ``allowed_models``, that one alone (no
fallbacks: a comparison of models must not be served by another); naming anything else (in
``model`` or OpenRouter's ``models`` list), a 400 that says which models are allowed and
which key to change, so no request is ever silently answered by another model than it
asked for (the ``ModelServer`` base's check, which ``Config.model_key`` below points at the
configured model). A sweep (``ng_collect_rollouts +models=[...]``) fills ``allowed_models``.

``metadata.emulator_script`` (a task row's scripted answers, which only the offline provider
emulator reads) is taken out of every request unless ``emulator_metadata: true`` (the offline
configs): the scripts hold the expected answers, and must not reach a real provider.

Every Responses answer's ``usage`` says what the request cost beyond the answer's own
tokens: ``retries`` (``{kind: count}``, the upstream retries made for it), ``unpriced_calls``
(answers billed whose cost could not be read) and, summed in, the usage failed attempts
reported; an error's envelope carries the same in its ``usage``, so a run's cost counts
every upstream call.

With ``cache: true`` (``ng_collect_rollouts`` / ``ng_run`` ``+cache=true`` sets it) a request
answered before is answered again from the response cache (``nemo_gym_cli.server.cache``),
without an upstream call. The key is what can change the answer: the first upstream's URL
(redacted; an instance of the same config by its name, not its port) and API, the body
sent upstream after conversion (messages or input, tools, sampling parameters, seed,
provider routing, response format...), the model and fallbacks sent, a digest of
``default_headers``, and the rollout's repeat index (the agent's ``x-ng-rollout-index``
header). The answer's ``usage.response_cache`` says ``{hits, misses, saved_usd}``; a hit's
``cost`` is 0 and ``saved_usd`` what the answer cost when it was paid for. Errors,
truncated answers and answers without usage are never stored.

At start-up the server checks the upstream once (``preflight``): a rejected key, an unknown
model or an unreachable provider stops it with one message saying what to do, instead of
failing every rollout later. Provider errors reach the agent in the error envelope
(``{"error": {"message", "code", "type", "retryable"}}``) and are logged once per kind.
"""

from __future__ import annotations

import hashlib
import logging
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nemo_gym_cli.errors import ConfigError, UpstreamError
from nemo_gym_cli.openai import conversion, streams
from nemo_gym_cli.openai.usage import add_usage, usage_as_chat, usage_as_responses
from nemo_gym_cli.providers.catalogue import preflight
from nemo_gym_cli.providers.model_ids import split
from nemo_gym_cli.providers.upstream import AiohttpWire, Tally, Upstream, UpstreamClient
from nemo_gym_cli.redaction import redact_url
from nemo_gym_cli.server import ModelServer
from nemo_gym_cli.server.cache import CachingModelServerConfig, ResponseCache, answer_cost, cache_key, cacheable
from nemo_gym_cli.server.model import UpstreamKeys
from nemo_gym_cli.wire import dumps

log = logging.getLogger("openai_model")


class AlternativeUpstream(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    base_url: str = Field(description="base URL of another OpenAI-compatible endpoint")
    api_key: str = Field("", description="its API key", repr=False)
    model: str | None = Field(None, description="model name there (default: openai_model)")
    fallback_models: list[str] | None = Field(
        None, description="its 'models' fallback list (default: fallback_models when model is unset)"
    )


class OpenAIModel(ModelServer):
    """The two endpoints over one ``UpstreamClient``."""

    class Config(CachingModelServerConfig):
        # What it serves, for the collector (the ModelServer base checks requests against it).
        model_key = "openai_model"
        upstream_keys = UpstreamKeys("openai_base_url", "openai_api_key", "default_headers")
        answer_keys = ("openai_base_url", "upstream_api", "extra_body", "fallback_models")

        openai_base_url: str = Field(description="OpenAI-compatible base URL, e.g. https://openrouter.ai/api/v1")
        openai_api_key: str = Field("", description="API key sent as 'Authorization: Bearer'", repr=False)
        openai_model: str = Field(description="model name, passed through untouched (e.g. openrouter:x/y)")
        upstream_api: Literal["chat_completions", "responses"] = Field(
            "chat_completions", description="which API the upstream speaks"
        )
        connect_timeout_s: float = Field(10.0, gt=0, description="TCP/TLS connect timeout")
        read_timeout_s: float = Field(300.0, gt=0, description="longest wait for response bytes (long generations)")
        total_timeout_s: float = Field(
            600.0, gt=0, description="longest one upstream request may take, its body included (a drip ends here)"
        )
        upstream_stream: bool = Field(
            False,
            description="ask the provider for a stream and assemble it (keeps long generations alive through"
            " proxies; OpenRouter's keep-alive comments are ignored)",
        )
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
        fallback_models: list[str] = Field(
            default_factory=list, description="sent as OpenRouter's 'models' list (for openai_model only)"
        )
        allowed_models: list[str] = Field(
            default_factory=list,
            description="other models a request may name in 'model' (sent as asked, without fallbacks);"
            " a sweep's +models fills it",
        )
        emulator_metadata: bool = Field(
            False,
            description="keep metadata.emulator_script in requests (only the provider emulator reads it;"
            " never true for a real provider: the scripts hold the answers)",
        )
        alternative_upstreams: list[AlternativeUpstream] = Field(
            default_factory=list, description="tried in order when the first upstream is down"
        )
        preflight: bool = Field(True, description="check key and model at start-up; false skips it")
        preflight_timeout_s: float = Field(
            10.0, gt=0, description="how long start-up waits for an upstream that refuses connections"
        )

        def upstreams(self) -> list[Upstream]:
            """The first upstream, then the alternatives in order."""
            allowed = tuple(self.allowed_models)
            first = Upstream(
                self.openai_base_url, self.openai_api_key, self.openai_model, tuple(self.fallback_models), allowed
            )
            out = [first]
            for alt in self.alternative_upstreams:
                # Without a model of its own it names models the same way: same fallbacks, and
                # the allowed models are checked there too.
                inherited = [] if alt.model else self.fallback_models
                fallbacks = inherited if alt.fallback_models is None else alt.fallback_models
                model = alt.model or self.openai_model
                out.append(Upstream(alt.base_url, alt.api_key, model, tuple(fallbacks), () if alt.model else allowed))
            return out

    client: UpstreamClient
    #: the response cache (None: cache is off)
    cache: ResponseCache | None = None

    async def start(self) -> None:
        config = self.config
        upstreams = config.upstreams()
        for upstream in upstreams:
            if upstream.api_key and urllib.parse.urlsplit(upstream.base_url).username is not None:
                raise ConfigError(
                    f"{self.spec.where}: the base URL {upstream.shown_url} carries credentials (user:password@) "
                    "and an API key is set too: an HTTP request can carry only one of them; drop one"
                )
        wire = await self.enter(
            AiohttpWire.open(
                pool_size=config.max_concurrency,
                connect_timeout_s=config.connect_timeout_s,
                read_timeout_s=config.read_timeout_s,
                total_timeout_s=config.total_timeout_s,
            )
        )
        self._created = int(time.time())
        if config.preflight:
            try:
                warnings = await preflight(
                    wire,
                    upstreams,
                    timeout_s=config.preflight_timeout_s,
                    headers=config.default_headers,
                    model_setting=self.model_setting(),
                )
            except UpstreamError as exc:
                raise UpstreamError(
                    f"start-up check failed: {exc} (preflight: false skips this check)",
                    status=exc.status,
                    kind=exc.kind,
                    retryable=exc.retryable,
                ) from None
            for warning in warnings:
                log.warning("start-up check: %s", warning)
        self.client = UpstreamClient(
            wire,
            upstreams,
            max_attempts=config.max_attempts,
            max_concurrency=config.max_concurrency,
            backoff_base_s=config.backoff_base_s,
            backoff_max_s=config.backoff_max_s,
            max_retry_after_s=config.max_retry_after_s,
            headers=config.default_headers,
        )
        self._reported: set[str] = set()
        if config.cache:
            self.cache = await ResponseCache.open(
                Path(config.cache_path), ttl_s=config.cache_ttl_s, refresh=config.cache_refresh
            )
            headers = dumps(sorted(config.default_headers.items()))
            self._headers_digest = hashlib.sha256(headers).hexdigest()[:16]
            self._cache_url = _instance_url(upstreams[0].base_url, self.spec.server_urls)

    async def stop(self) -> None:
        self.client.retry_log.flush()  # the last summary line of retries not logged in full
        if self.cache is not None:
            await self.cache.close()

    async def models(self) -> list[dict[str, Any]]:
        """The configured model, then every fallback, allowed and alternative upstream's model."""
        ids: list[str] = []
        for upstream in self.config.upstreams():
            for model in (upstream.model, *upstream.fallback_models, *upstream.allowed_models):
                if model not in ids:
                    ids.append(model)
        return [{"id": m, "object": "model", "created": self._created, "owned_by": _owner(m)} for m in ids]

    def _body(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.config.extra_body:
            body = {**self.config.extra_body, **body}
        body.pop("stream", None)  # the base streams to our callers; upstream_stream decides upstream
        body.pop("stream_options", None)
        metadata = body.get("metadata")
        if not self.config.emulator_metadata and isinstance(metadata, dict) and "emulator_script" in metadata:
            rest = {k: v for k, v in metadata.items() if k != "emulator_script"}
            if rest:
                body["metadata"] = rest
            else:
                del body["metadata"]
        return body

    def _report(self, exc: UpstreamError) -> None:
        """Log an error the user must act on once per kind, not once per rollout."""
        if exc.kind not in self._reported:
            self._reported.add(exc.kind)
            log.error("%s", exc)

    async def responses(self, body: dict[str, Any]) -> dict[str, Any]:
        model = self.asked_model(body)
        tally = Tally()
        # Failed attempts' usage is in the upstream API's names; the answer's are Responses'.
        names = usage_as_responses if self.config.upstream_api == "chat_completions" else None
        try:
            response = await self._responses(body, tally, model)
        except UpstreamError as exc:
            self._report(exc)
            exc.usage = _failed_usage(tally, names)
            raise
        response["usage"] = _with_tally(response.get("usage"), tally, names)
        return response

    async def chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        model = self.asked_model(body)
        tally = Tally()
        names = usage_as_chat if self.config.upstream_api == "responses" else None
        try:
            answer = await self._chat_completions(body, tally, model)
        except UpstreamError as exc:
            self._report(exc)
            exc.usage = _failed_usage(tally, names)
            raise
        answer["usage"] = _with_tally(answer.get("usage"), tally, names)
        return answer

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        tools_sent: bool,
        parse: Callable[[dict[str, Any]], Any] | None = None,
        stream: Any = None,
        tally: Tally,
        model: str | None,
    ) -> Any:
        """The upstream's answer to ``body`` at ``path`` (passed through ``parse``): from the
        response cache when it holds one, else from the upstream (then stored if it may be)."""
        cache = self.cache
        if cache is None:
            answer, _ = await self.client.post(
                path, body, tools_sent=tools_sent, parse=parse, stream=stream, tally=tally, model=model
            )
            return answer
        key, request = cache_key(self._cache_parts(path, body, model))
        hit = await cache.get(key)
        if hit is not None:
            data = hit.answer
            usage = data["usage"]  # cacheable() made sure there is one
            usage["cost"] = 0.0  # nothing paid now; what it cost then is what the hit saved
            details = usage.get("cost_details")
            if isinstance(details, dict) and isinstance(details.get("upstream_inference_cost"), (int, float)):
                details["upstream_inference_cost"] = 0.0
            usage["response_cache"] = {"hits": 1, "misses": 0, "saved_usd": hit.cost or 0.0}
            return parse(data) if parse is not None else data
        paid: list[tuple[bytes, float | None]] = []

        def keep(data: dict[str, Any]) -> Any:
            # The raw answer, serialised before the conversion reads (and may share) its parts;
            # kept only once it parsed (a retried attempt's is replaced by the next one's).
            raw = (dumps(data), answer_cost(data)) if cacheable(data) else None
            answer = parse(data) if parse is not None else data
            paid[:] = [raw] if raw is not None else []
            return answer

        answer, _ = await self.client.post(
            path, body, tools_sent=tools_sent, parse=keep, stream=stream, tally=tally, model=model
        )
        if paid:
            cache.put(key, request, *paid[0])
        if isinstance(answer, dict):
            usage = answer.get("usage")
            if not isinstance(usage, dict):
                usage = answer["usage"] = {}
            usage["response_cache"] = {"hits": 0, "misses": 1, "saved_usd": 0.0}
        return answer

    def _cache_parts(self, path: str, body: dict[str, Any], model: str | None) -> dict[str, Any]:
        """What the cache key of a request holds: everything that can change its answer."""
        upstream = self.client.upstreams[0]  # the configured one: failover does not change the key
        named = model is not None and model != upstream.model
        return {
            "url": f"{self._cache_url.rstrip('/')}/{path}",
            "model": model if named else upstream.model,
            "models": [] if named else list(upstream.fallback_models),
            "headers": self._headers_digest,
            "body": body,
            "rollout": self.rollout_index(),
        }

    async def _responses(self, params: dict[str, Any], tally: Tally, model: str | None) -> dict[str, Any]:
        tools_sent = bool(params.get("tools"))
        stream = self.config.upstream_stream
        if self.config.upstream_api == "responses":
            body = {k: v for k, v in params.items() if k not in ("store", "previous_response_id")}
            body["store"] = False
            response = await self._post(
                "responses",
                self._body(body),
                tools_sent=tools_sent,
                parse=lambda data: conversion.complete_response(_check_responses(data), params),
                stream=streams.assemble_responses if stream else None,
                tally=tally,
                model=model,
            )
            return response
        chat = self._body(conversion.responses_to_chat_request(params))
        response = await self._post(
            "chat/completions",
            chat,
            tools_sent=tools_sent,
            parse=lambda data: conversion.chat_to_responses_response(data, request=params),
            stream=streams.assemble_chat if stream else None,
            tally=tally,
            model=model,
        )
        return response

    async def _chat_completions(self, body: dict[str, Any], tally: Tally, model: str | None) -> dict[str, Any]:
        tools_sent = bool(body.get("tools"))
        stream = self.config.upstream_stream
        if self.config.upstream_api == "responses":
            params = self._body(conversion.chat_to_responses_request(body))
            answer = await self._post(
                "responses",
                params,
                tools_sent=tools_sent,
                parse=conversion.responses_to_chat_response,
                stream=streams.assemble_responses if stream else None,
                tally=tally,
                model=model,
            )
            return answer
        answer = await self._post(
            "chat/completions",
            self._body(dict(body)),
            tools_sent=tools_sent,
            stream=streams.assemble_chat if stream else None,
            tally=tally,
            model=model,
        )
        return dict(answer)


Names = Callable[[dict[str, Any]], dict[str, Any]] | None


def _instance_url(base_url: str, server_urls: dict[str, str]) -> str:
    """``base_url`` as the cache keys it: redacted, and an instance of this config (the
    emulator of the offline configs, on a free port that changes every run) by its name."""
    for name, url in server_urls.items():
        root = url.rstrip("/")
        if base_url == root or base_url.startswith(root + "/"):
            return f"ng_url:{name}{base_url[len(root) :]}"
    return redact_url(base_url)


def _owner(model: str) -> str:
    """Who a model id says made it: ``anthropic`` of ``openrouter:anthropic/claude-3.5-sonnet``."""
    _, stem, _ = split(model)
    return stem.split("/", 1)[0] if "/" in stem else "openai_model"


def _failed_usage(tally: Tally, names: Names) -> dict[str, Any]:
    """What a request's failed attempts cost: the usage they reported (in the answer's
    names), its retries and unpriced answers; empty when there was nothing."""
    if not tally.usage and not tally.retries and not tally.unpriced:
        return {}
    out = (names(tally.usage) if names else dict(tally.usage)) if tally.usage else {}
    out.update(tally.extras())
    return out


def _with_tally(usage: Any, tally: Tally, names: Names) -> dict[str, Any]:
    """An answer's usage plus what its request cost beyond it (in place)."""
    out = usage if isinstance(usage, dict) else {}  # the answer's own, fresh from the conversion
    if tally.usage:
        add_usage(out, names(tally.usage) if names else tally.usage)
    out.update(tally.extras())
    return out


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
