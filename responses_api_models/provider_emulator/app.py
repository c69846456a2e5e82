"""provider_emulator: a model server that answers like OpenRouter, offline.

An ordinary model server (``ModelServer``), started like any other: it is the provider the
``openai_model`` adapter talks to in ``configs/offline.yaml``, in tests and in benchmarks,
and it runs alone as ``ng_emulator``. Same wire format as ``https://openrouter.ai/api/v1``
(routes under ``/api/v1`` and ``/v1``): ``POST /chat/completions`` and ``POST /responses``
(stateless; both also streamed), ``GET /models``, ``GET /models/{author}/{slug}``,
``GET /key``; usage with ``cost``, OpenRouter's error bodies (in the kernel's envelope,
``metadata`` included), ``models`` fallback lists, structured outputs (``response_format``
/ ``text.format``: the answer is JSON of the schema), and injectable faults (rate limits,
5xx, 200-with-error bodies, stalls, malformed bodies, a body dripping a byte at a time, a
stream cut short). ``GET /emulator/stats`` reports what happened, requests whose client
went away included.

What a model answers: the turn a task row scripts (``metadata.emulator_script``), else the
configured policy (``policy.py``); per model, ``accuracy`` below 1 makes it answer wrong on
that share of tasks (deterministically), and ``latency_ms`` and prices differ, so offline
sweeps compare models that really differ.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from decimal import Decimal
from typing import Any

from starlette.responses import Response, StreamingResponse

from nemo_gym_cli.errors import ConfigError, HTTPError
from nemo_gym_cli.providers.model_ids import ROUTING_VARIANTS, split
from nemo_gym_cli.server import ModelServer, Request, route
from nemo_gym_cli.wire import dumps, loads

from . import policy, structured
from .answers import KEEPALIVE, Plan, chat_chunks, chat_completion, error_200, responses_events, responses_object
from .config import FAULT_KINDS, EmulatorConfig, EmulatorModel

__all__ = ["FAULT_KINDS", "EmulatorConfig", "EmulatorModel", "ProviderEmulator"]

_NO_FAULT = ("", "none", "ok")
_CREDITS_MESSAGE = "Insufficient credits. Add more using https://openrouter.ai/settings/credits"
_TOOLS_MESSAGE = (
    "No endpoints found that support tool use. To learn more about provider routing, visit: "
    "https://openrouter.ai/docs/provider-routing"
)
_DOWN_MESSAGES = {
    502: "Your chosen model is down or we received an invalid response from it.",
    503: "There is no available model provider that meets your routing requirements.",
}
# kind -> (status, message, error_type); the 429s are built per request (time-dependent).
_STATUS_FAULTS = {
    "500": (500, "Internal Server Error", "server_error"),
    "502": (502, "Provider returned error", "provider_unavailable"),
    "503": (503, _DOWN_MESSAGES[503], "provider_unavailable"),
    "524": (524, "Provider timed out before sending a response", "timeout"),
    "529": (529, "Provider returned error: overloaded", "provider_overloaded"),
}
_IMMEDIATE_FAULTS = frozenset(("429", "429_bare", *_STATUS_FAULTS))


class _Stats:
    def __init__(self) -> None:
        self.by_endpoint: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.served: Counter[str] = Counter()
        self.cost_by_model: dict[str, float] = {}
        self.completion_requests = 0
        self.cancelled = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0
        self.cost_by_fault: dict[str, float] = {}  # of billed answers given a fault (malformed, cut, ...)

    def bill(self, plan: Plan, fault: str | None) -> None:
        self.served[plan.model.id] += 1
        self.prompt_tokens += plan.prompt_tokens
        self.completion_tokens += plan.completion_tokens
        self.cost += plan.cost
        self.cost_by_model[plan.model.id] = self.cost_by_model.get(plan.model.id, 0.0) + plan.cost
        if fault:
            self.cost_by_fault[fault] = self.cost_by_fault.get(fault, 0.0) + plan.cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": sum(self.by_endpoint.values()),
            "by_endpoint": dict(self.by_endpoint),
            "completion_requests": self.completion_requests,
            "cancelled": self.cancelled,
            "completions": sum(self.served.values()),
            "served_by_model": dict(self.served),
            "faults": dict(self.faults),
            "errors_by_status": {str(k): v for k, v in self.errors.items()},
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "cost_by_model": dict(self.cost_by_model),
            "cost_by_fault": dict(self.cost_by_fault),
        }


class ProviderEmulator(ModelServer):
    """The emulator's routes and state (one per server)."""

    Config = EmulatorConfig

    def __init__(self, config: Any = None, spec: Any = None) -> None:
        super().__init__(config, spec)
        config = self.config
        self.by_id = {m.id: m for m in config.models}  # not "models": the base's method
        self.default_model = config.models[0]
        self.entries = {m.id: _model_entry(m) for m in config.models}
        self.models_body = dumps({"object": "list", "data": list(self.entries.values())})
        try:
            self.policy = policy.load_policy(config.policy)
        except (ValueError, ImportError) as exc:
            raise ConfigError(f"{self.spec.where}.policy: {exc}") from None
        self._nonce = secrets.token_hex(4)
        self.reset()

    def reset(self) -> None:
        self.stats = _Stats()
        self._rng = random.Random(self.config.fault_seed)
        self._generations = 0

    # -- helpers ---------------------------------------------------------------------------

    def _fail(
        self,
        status: int,
        message: str,
        http_headers: dict[str, str] | None = None,
        error_type: str | None = None,
        **meta: Any,
    ) -> HTTPError:
        """An OpenRouter error answer (the envelope with ``code``, ``message``, ``metadata``)."""
        self.stats.errors[status] += 1
        if error_type is not None:
            meta["error_type"] = error_type
        return HTTPError(
            status, message, kind=error_type, headers=http_headers, extra={"metadata": meta} if meta else None
        )

    def _key_status(self, request: Request) -> int | None:
        """The reject code of the request's key (401 raised for a missing or rejected key)."""
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise self._fail(401, "No auth credentials found")
        code = self.config.reject_keys.get(key) if self.config.reject_keys else None
        if code == 401:
            raise self._fail(401, "User not found.")
        return code

    def _auth(self, request: Request) -> None:
        if self._key_status(request) == 402:
            raise self._fail(402, _CREDITS_MESSAGE)

    def _next_fault(self) -> str | None:
        """The fault for the next completion request (counted 1-based), if any."""
        stats = self.stats
        stats.completion_requests += 1
        scheduled = self.config.fault_schedule.get(stats.completion_requests)
        if scheduled is not None:
            return None if scheduled in _NO_FAULT else scheduled
        config = self.config
        if config.fault_rate and config.fault_kinds and self._rng.random() < config.fault_rate:
            return self._rng.choice(config.fault_kinds)
        return None

    def _status_fault(self, kind: str) -> HTTPError:
        self.stats.faults[kind] += 1
        if kind == "429":
            retry_after = self.config.retry_after_seconds
            headers = {
                "Retry-After": _seconds(retry_after),
                "X-RateLimit-Limit": "20",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int((time.time() + retry_after) * 1000)),
            }
            return self._fail(
                429, "Rate limit exceeded: free-models-per-min. ", headers, "rate_limit_exceeded", headers=headers
            )
        if kind == "429_bare":
            return self._fail(
                429,
                "Provider returned error",
                None,
                "rate_limit_exceeded",
                provider_name="Emulator",
                raw="The model is temporarily rate-limited upstream. Please retry shortly.",
            )
        status, message, error_type = _STATUS_FAULTS[kind]
        return self._fail(status, message, None, error_type, provider_name="Emulator")

    # -- deciding the answer ---------------------------------------------------------------

    def _plan(self, body: dict[str, Any], messages: list[dict[str, Any]]) -> Plan:
        """Route the request (model, ``models`` fallbacks) and decide the answer."""
        tools = body.get("tools") or None
        if tools is not None and not isinstance(tools, list):
            raise self._fail(400, f"tools must be a list, got {type(tools).__name__}")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens", body.get("max_output_tokens")))
        if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
            raise self._fail(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
        try:
            script = policy.script_of(body)
        except policy.ScriptError as exc:
            raise self._fail(400, str(exc)) from None
        prompt_tokens = policy.prompt_tokens(messages, tools)
        failure: HTTPError | None = None
        for requested in self._candidates(body):
            model = self._lookup(requested)
            if model is None:
                failure = self._fail(404, f"{requested} is not a valid model ID")
            elif model.id in self.config.down_models:
                status = self.config.down_models[model.id]
                failure = self._fail(status, _DOWN_MESSAGES[status], None, "provider_unavailable", model=model.id)
            elif tools and not model.supports_tools:
                failure = self._fail(404, _TOOLS_MESSAGE)
            elif prompt_tokens + (max_tokens or 0) > model.context_length:
                failure = self._fail(
                    400,
                    _context_message(model.context_length, prompt_tokens, max_tokens),
                    None,
                    "context_length_exceeded",
                )
            else:
                key = policy.draw_key(messages, body.get("seed"), body.get("temperature"))
                plan = self._answer(
                    model, messages, tools, body.get("tool_choice"), script, prompt_tokens, max_tokens, key
                )
                fmt = structured.response_format(body)
                if fmt is not None and not plan.message.get("tool_calls") and plan.finish != "length":
                    content = structured.structured(plan.message["content"] or "", fmt)
                    plan.message = {**plan.message, "content": content}
                    plan.completion_tokens = policy.completion_tokens(plan.message)
                    plan.cost = prompt_tokens * model.prompt_price + plan.completion_tokens * model.completion_price
                return plan
        assert failure is not None
        raise failure

    def _candidates(self, body: dict[str, Any]) -> list[str]:
        model, fallbacks = body.get("model"), body.get("models")
        if fallbacks is not None and (
            not isinstance(fallbacks, list) or not all(isinstance(m, str) for m in fallbacks)
        ):
            raise self._fail(400, f"models must be a list of model ids, got {fallbacks!r}")
        if model is not None and not isinstance(model, str):
            raise self._fail(400, f"model must be a string, got {model!r}")
        if fallbacks:
            return [model, *(m for m in fallbacks if m != model)] if model else fallbacks
        return [model or self.default_model.id]

    def _lookup(self, requested: str) -> EmulatorModel | None:
        """The served model a requested id names: exactly, or without a gateway prefix and
        an OpenRouter routing variant."""
        model = self.by_id.get(requested)
        if model is None:
            _, stem, variant = split(requested)
            model = self.by_id.get(f"{stem}:{variant}" if variant else stem)
            if model is None and variant in ROUTING_VARIANTS:
                model = self.by_id.get(stem)
        return model

    def _answer(
        self,
        model: EmulatorModel,
        messages: list[dict[str, Any]],
        tools: list[Any] | None,
        tool_choice: Any,
        script: list[dict[str, Any]] | None,
        prompt_tokens: int,
        max_tokens: int | None,
        key: str,
    ) -> Plan:
        wrong = policy.gets_wrong(model.id, model.accuracy, key)
        try:
            if script is not None:
                message = policy.scripted(script, messages, wrong)
            else:
                message = self.policy(messages, tools, tool_choice, wrong)
        except policy.ScriptError as exc:
            raise self._fail(400, str(exc)) from None
        completion_tokens = policy.completion_tokens(message)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        if max_tokens is not None and completion_tokens > max_tokens:
            message = policy.truncate(message, max_tokens)
            completion_tokens, finish = max_tokens, "length"
        self._generations += 1
        return Plan(
            gen_id=f"gen-{self._nonce}{self._generations:08d}",
            model=model,
            message=message,
            finish=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=prompt_tokens * model.prompt_price + completion_tokens * model.completion_price,
        )

    # -- the completion routes --------------------------------------------------------------

    @route("POST", "/api/v1/chat/completions", cancel_on_disconnect=True)
    async def http_chat_completions(self, request: Request) -> Any:
        return await self._complete(request, "chat.completions")

    @route("POST", "/api/v1/responses", cancel_on_disconnect=True)
    async def http_responses(self, request: Request) -> Any:
        return await self._complete(request, "responses")

    async def _complete(self, request: Request, endpoint: str) -> Any:
        """One completion request: auth, faults, routing, the answer, in that order."""
        try:
            return await self._completion(request, endpoint)
        except asyncio.CancelledError:
            self.stats.cancelled += 1  # the client went away (cancel_on_disconnect)
            raise

    async def _completion(self, request: Request, endpoint: str) -> Any:
        self.stats.by_endpoint[endpoint] += 1
        self._auth(request)
        try:
            body = loads(await request.body())
        except ValueError as exc:
            raise self._fail(400, f"Request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise self._fail(400, f"Request body must be a JSON object, got {type(body).__name__}")
        responses = endpoint == "responses"
        messages = self._responses_messages(body) if responses else self._chat_messages(body)
        fault = self._next_fault()
        if fault in _IMMEDIATE_FAULTS:
            raise self._status_fault(fault)  # type: ignore[arg-type]
        if fault == "stall":
            self.stats.faults["stall"] += 1
            await asyncio.sleep(self.config.stall_seconds)
        plan = self._plan(body, messages)
        latency = plan.model.latency_ms if plan.model.latency_ms is not None else self.config.latency_ms
        headers = {"X-Generation-Id": plan.gen_id}
        if body.get("stream") is True:
            if responses:
                events = list(responses_events(plan, body, error=fault == "error_200"))
            else:
                events = list(chat_chunks(plan, error=fault == "error_200", malformed=fault == "malformed"))
            if fault == "cut":
                events = events[: max(1, len(events) // 2)]
            return StreamingResponse(
                self._stream(plan, fault, latency / 1000, events),
                media_type="text/event-stream",
                headers={**headers, "Cache-Control": "no-cache"},
            )
        if latency:
            await asyncio.sleep(latency / 1000)
        if fault == "error_200":
            self.stats.faults["error_200"] += 1
            body_200 = error_200(plan)
            return body_200 if not responses else {"error": body_200["error"]}
        self.stats.bill(plan, fault)
        raw = dumps(responses_object(plan, body) if responses else chat_completion(plan))
        if fault in ("malformed", "cut"):
            self.stats.faults[fault] += 1
            raw = raw[: len(raw) // 2]
        if fault in ("drip", "cut"):
            if fault == "drip":
                self.stats.faults["drip"] += 1
            return StreamingResponse(self._drip([raw], fault == "drip"), media_type="application/json", headers=headers)
        return Response(raw, media_type="application/json", headers=headers)

    def _chat_messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise self._fail(400, 'Input required: specify "prompt" or "messages"')
        if not all(isinstance(m, dict) for m in messages):
            raise self._fail(400, "Every entry of messages must be an object")
        return messages

    def _responses_messages(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Stateless like OpenRouter's: no stored responses, no server-side history."""
        if body.get("previous_response_id") is not None:
            raise self._fail(
                400,
                "previous_response_id is not supported: the Responses API is stateless here; send the full"
                " conversation in input",
            )
        if body.get("store") is True:
            raise self._fail(400, "store: true is not supported: the Responses API is stateless")
        try:
            return policy.messages_from_responses(body)
        except ValueError as exc:
            raise self._fail(400, str(exc)) from None

    async def _stream(self, plan: Plan, fault: str | None, latency: float, events: list[bytes]) -> Any:
        """A streamed answer: OpenRouter's keep-alive comment, the latency, the events (one
        byte at a time for ``drip``; half of them for ``cut``)."""
        try:
            yield KEEPALIVE
            if latency:
                await asyncio.sleep(latency)
            if fault in ("error_200", "malformed", "cut", "drip"):
                self.stats.faults[fault] += 1
            if fault != "error_200":
                self.stats.bill(plan, fault)  # a stream cut short or broken was still generated: billed
            async for piece in self._drip(events, fault == "drip"):
                yield piece
        except (asyncio.CancelledError, GeneratorExit):
            self.stats.cancelled += 1
            raise

    async def _drip(self, parts: list[bytes], drip: bool) -> Any:
        if not drip:
            yield b"".join(parts)
            return
        for byte in b"".join(parts):
            yield bytes((byte,))
            await asyncio.sleep(self.config.drip_interval_s)

    # -- other routes ----------------------------------------------------------------------

    @route("GET", "/api/v1/models")
    async def http_models(self, request: Request) -> Response:
        self.stats.by_endpoint["models"] += 1
        return Response(self.models_body, media_type="application/json")

    @route("GET", "/api/v1/models/{author}/{slug}")
    @route("GET", "/v1/models/{author}/{slug}")
    @route("GET", "/api/v1/models/{model_id}")
    @route("GET", "/v1/models/{model_id}")
    async def http_model(self, request: Request) -> dict[str, Any]:
        """One model (OpenAI's ``GET /models/{id}``; OpenRouter's ids have a slash)."""
        self.stats.by_endpoint["models"] += 1
        params = request.path_params
        model_id = params.get("model_id") or f"{params.get('author')}/{params.get('slug')}"
        model = self._lookup(model_id)
        if model is None:
            raise self._fail(404, f"{model_id} is not a valid model ID")
        return self.entries[model.id]

    @route("GET", "/api/v1/key")
    @route("GET", "/v1/key")
    async def key_info(self, request: Request) -> dict[str, Any]:
        """OpenRouter's ``GET /key``: 401 for a missing or rejected key; a key in
        ``reject_keys`` as 402 is valid but its credit limit is used up."""
        self.stats.by_endpoint["key"] += 1
        broke = self._key_status(request) == 402
        info = {
            "label": "emulator key",  # OpenRouter shows a redacted key here; we show none
            "limit": 1.0 if broke else None,
            "usage": 1.0 if broke else self.stats.cost,
            "limit_remaining": 0.0 if broke else None,
            "is_free_tier": False,
            "is_provisioning_key": False,
            "rate_limit": {"requests": -1, "interval": "10s"},
        }
        return {"data": info}

    @route("GET", "/emulator/stats")
    async def get_stats(self, request: Request) -> dict[str, Any]:
        return self.stats.as_dict()

    @route("POST", "/emulator/reset")
    async def reset_stats(self, request: Request) -> dict[str, Any]:
        self.reset()
        return {"status": "reset"}


def _seconds(value: float) -> str:
    """A Retry-After value: whole seconds as an integer, else the float ("0.5")."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _price_string(price: float) -> str:
    return format(Decimal(repr(price)), "f")


def _context_message(context_length: int, prompt_tokens: int, max_tokens: int | None) -> str:
    output = max_tokens or 0
    return (
        f"This endpoint's maximum context length is {context_length} tokens. However, you "
        f"requested about {prompt_tokens + output} tokens ({prompt_tokens} of text input, "
        f"{output} in the output). Please reduce the length of either one, or use the "
        '"middle-out" transform to compress your prompt automatically.'
    )


def _model_entry(model: EmulatorModel) -> dict[str, Any]:
    params = ["max_tokens", "temperature", "top_p", "stop", "seed", "response_format"]
    if model.supports_tools:
        params += ["tools", "tool_choice", "parallel_tool_calls"]
    return {
        "id": model.id,
        "object": "model",
        "owned_by": model.id.split("/", 1)[0],
        "canonical_slug": model.id,
        "name": model.name or model.id,
        "created": model.created,
        "description": f"{model.name or model.id}, served by the local OpenRouter emulator.",
        "context_length": model.context_length,
        "architecture": {
            "modality": "text->text",
            "input_modalities": ["text"],
            "output_modalities": ["text"],
            "tokenizer": "Other",
            "instruct_type": None,
        },
        "pricing": {
            "prompt": _price_string(model.prompt_price),
            "completion": _price_string(model.completion_price),
            "request": "0",
            "image": "0",
        },
        "top_provider": {"context_length": model.context_length, "max_completion_tokens": None, "is_moderated": False},
        "supported_parameters": params,
    }
