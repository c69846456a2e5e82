"""The provider emulator: a local server that answers like OpenRouter, offline.

Same wire format as ``https://openrouter.ai/api/v1`` (routes under ``/api/v1`` and ``/v1``):
``POST /chat/completions`` (also streamed), ``POST /responses`` (stateless, converted to
chat and back with ``nemo_gym_cli.conversion``), ``GET /models``, ``GET /key``; usage with ``cost``,
OpenRouter's error shapes, ``models`` fallback lists, and injectable faults (rate limits,
5xx, 200-with-error bodies, stalls, malformed bodies). Answers come from the deterministic
scripted policy in ``emulator_policy``. ``GET /emulator/stats`` reports what happened.

Built for tests and benchmarks, so a request is cheap: plain Starlette routes, orjson, no
per-request validation or logging, precomputed bodies where possible.

    build_app(EmulatorConfig(...))   an ASGI app, for tests
    create_app(spec)                 the same from a ServerSpec (run under ``ng_run``)

The config lives in ``emulator_config.py``, the ``ng_emulator`` command in ``emulator_cli.py``.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from nemo_gym_cli import emulator_policy as policy
from nemo_gym_cli.conversion import chat_to_responses_response, responses_to_chat_request
from nemo_gym_cli.emulator_config import (
    _NO_FAULT,
    API_PREFIXES,
    FAULT_KINDS,
    EmulatorConfig,
    EmulatorModel,
    config_problems,
)
from nemo_gym_cli.errors import ConfigError, NemoGymError
from nemo_gym_cli.servers import ServerSpec, create_server_app
from nemo_gym_cli.wire import JSONResponse, dumps, loads

__all__ = ["FAULT_KINDS", "EmulatorConfig", "EmulatorModel", "build_app", "create_app"]

# --- error bodies (OpenRouter's shape) -----------------------------------------------------


def _error(status: int, message: str, http_headers: dict[str, str] | None = None, **metadata: Any) -> Response:
    body: dict[str, Any] = {"code": status, "message": message}
    if metadata:
        body["metadata"] = metadata
    return JSONResponse({"error": body}, status_code=status, headers=http_headers)


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
_ROUTING_VARIANTS = frozenset(("nitro", "floor", "online", "thinking"))
_IMMEDIATE_FAULTS = frozenset(("429", "429_bare", *_STATUS_FAULTS))
_DONE = b"data: [DONE]\n\n"
_KEEPALIVE = b": OPENROUTER PROCESSING\n\n"


def _price_string(price: float) -> str:
    return format(Decimal(repr(price)), "f")


@dataclass(slots=True)
class _Plan:
    """One answer, decided: which model serves, what it says, what it costs."""

    gen_id: str
    model: EmulatorModel
    message: dict[str, Any]
    finish: str
    prompt_tokens: int
    completion_tokens: int
    cost: float

    def usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "cost": self.cost,
            "is_byok": False,
            "prompt_tokens_details": {"cached_tokens": 0},
            "cost_details": {"upstream_inference_cost": None},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }


class _Stats:
    def __init__(self) -> None:
        self.by_endpoint: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.errors: Counter[int] = Counter()
        self.served: Counter[str] = Counter()
        self.completion_requests = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost = 0.0

    def bill(self, plan: _Plan) -> None:
        self.served[plan.model.id] += 1
        self.prompt_tokens += plan.prompt_tokens
        self.completion_tokens += plan.completion_tokens
        self.cost += plan.cost

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": sum(self.by_endpoint.values()),
            "by_endpoint": dict(self.by_endpoint),
            "completion_requests": self.completion_requests,
            "completions": sum(self.served.values()),
            "served_by_model": dict(self.served),
            "faults": dict(self.faults),
            "errors_by_status": {str(k): v for k, v in self.errors.items()},
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
        }


class _Emulator:
    """The routes and their state; one per app."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.models = {m.id: m for m in config.models}
        self.default_model = config.models[0]
        self.latency = config.latency_ms / 1000
        self.models_body = dumps({"data": [_model_entry(m) for m in config.models]})
        self._nonce = secrets.token_hex(4)
        self.reset()

    def reset(self) -> None:
        self.stats = _Stats()
        self._rng = random.Random(self.config.fault_seed)
        self._generations = 0

    # -- helpers ---------------------------------------------------------------------------

    def _fail(self, status: int, message: str, http_headers: dict[str, str] | None = None, **meta: Any) -> Response:
        self.stats.errors[status] += 1
        return _error(status, message, http_headers, **meta)

    def _key_status(self, request: Request) -> tuple[Response | None, int | None]:
        """(a 401 answer if the bearer key is missing or rejected, the key's reject code)."""
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return self._fail(401, "No auth credentials found"), None
        code = self.config.reject_keys.get(key) if self.config.reject_keys else None
        if code == 401:
            return self._fail(401, "User not found."), code
        return None, code

    def _auth(self, request: Request) -> Response | None:
        denied, code = self._key_status(request)
        if denied is None and code == 402:
            return self._fail(402, _CREDITS_MESSAGE)
        return denied

    async def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = loads(await request.body())
        except ValueError as exc:
            return self._fail(400, f"Request body is not valid JSON: {exc}")
        if not isinstance(body, dict):
            return self._fail(400, f"Request body must be a JSON object, got {type(body).__name__}")
        return body

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

    def _status_fault(self, kind: str) -> Response:
        self.stats.faults[kind] += 1
        if kind == "429":
            retry_after = self.config.retry_after_seconds
            reset_ms = int((time.time() + retry_after) * 1000)
            headers = {
                "Retry-After": _seconds(retry_after),
                "X-RateLimit-Limit": "20",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset_ms),
            }
            return self._fail(
                429,
                "Rate limit exceeded: free-models-per-min. ",
                headers,
                headers=headers,
                error_type="rate_limit_exceeded",
            )
        if kind == "429_bare":
            return self._fail(
                429,
                "Provider returned error",
                provider_name="Emulator",
                raw="The model is temporarily rate-limited upstream. Please retry shortly.",
                error_type="rate_limit_exceeded",
            )
        status, message, error_type = _STATUS_FAULTS[kind]
        return self._fail(status, message, provider_name="Emulator", error_type=error_type)

    def _error_200(self, plan: _Plan) -> dict[str, Any]:
        self.stats.faults["error_200"] += 1
        return {
            "id": plan.gen_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": plan.model.id,
            "provider": plan.model.provider,
            "error": {
                "code": 502,
                "message": "Provider returned error",
                "metadata": {
                    "provider_name": plan.model.provider,
                    "raw": "upstream connection reset mid-generation (emulated)",
                    "error_type": "provider_unavailable",
                },
            },
        }

    # -- the chat path ---------------------------------------------------------------------

    def _plan(self, body: dict[str, Any]) -> _Plan | Response:
        """Route the request (model, ``models`` fallbacks) and decide the answer."""
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._fail(400, 'Input required: specify "prompt" or "messages"')
        if not all(isinstance(m, dict) for m in messages):
            return self._fail(400, "Every entry of messages must be an object")
        tools = body.get("tools") or None
        if tools is not None and not isinstance(tools, list):
            return self._fail(400, f"tools must be a list, got {type(tools).__name__}")
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
            return self._fail(400, f"max_tokens must be a positive integer, got {max_tokens!r}")
        candidates = self._candidates(body)
        if isinstance(candidates, Response):
            return candidates
        prompt_tokens = policy.prompt_tokens(messages, tools)
        failure: Response | None = None
        for requested in candidates:
            model = self._lookup(requested)
            if model is None:
                failure = self._fail(404, f"{requested} is not a valid model ID")
            elif model.id in self.config.down_models:
                status = self.config.down_models[model.id]
                failure = self._fail(
                    status,
                    _DOWN_MESSAGES[status],
                    model=model.id,
                    error_type="provider_unavailable",
                )
            elif tools and not model.supports_tools:
                failure = self._fail(404, _TOOLS_MESSAGE)
            elif prompt_tokens + (max_tokens or 0) > model.context_length:
                failure = self._fail(
                    400,
                    _context_message(model.context_length, prompt_tokens, max_tokens),
                    error_type="context_length_exceeded",
                )
            else:
                return self._answer(model, messages, tools, body.get("tool_choice"), prompt_tokens, max_tokens)
        assert failure is not None
        return failure

    def _candidates(self, body: dict[str, Any]) -> list[str] | Response:
        model, fallbacks = body.get("model"), body.get("models")
        if fallbacks is not None and (
            not isinstance(fallbacks, list) or not all(isinstance(m, str) for m in fallbacks)
        ):
            return self._fail(400, f"models must be a list of model ids, got {fallbacks!r}")
        if model is not None and not isinstance(model, str):
            return self._fail(400, f"model must be a string, got {model!r}")
        if fallbacks:
            return [model, *(m for m in fallbacks if m != model)] if model else fallbacks
        return [model or self.default_model.id]

    def _lookup(self, requested: str) -> EmulatorModel | None:
        model = self.models.get(requested)
        if model is None:
            # a gateway's provider prefix, OpenRouter's routing-variant suffixes
            base = requested.removeprefix("openrouter:")
            model = self.models.get(base)
            if model is None:
                head, sep, suffix = base.rpartition(":")
                if sep and suffix in _ROUTING_VARIANTS:
                    model = self.models.get(head)
        return model

    def _answer(
        self,
        model: EmulatorModel,
        messages: list[dict[str, Any]],
        tools: list[Any] | None,
        tool_choice: Any,
        prompt_tokens: int,
        max_tokens: int | None,
    ) -> _Plan:
        message = policy.respond(messages, tools, tool_choice)
        completion_tokens = policy.completion_tokens(message)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        if max_tokens is not None and completion_tokens > max_tokens:
            message = policy.truncate(message, max_tokens)
            completion_tokens, finish = max_tokens, "length"
        self._generations += 1
        return _Plan(
            gen_id=f"gen-{self._nonce}{self._generations:08d}",
            model=model,
            message=message,
            finish=finish,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=prompt_tokens * model.prompt_price + completion_tokens * model.completion_price,
        )

    def _completion(self, plan: _Plan) -> dict[str, Any]:
        self.stats.bill(plan)
        message = {
            "role": "assistant",
            "content": plan.message["content"],
            "refusal": None,
            "reasoning": None,
        }
        if "tool_calls" in plan.message:
            message["tool_calls"] = plan.message["tool_calls"]
        return {
            "id": plan.gen_id,
            "provider": plan.model.provider,
            "model": plan.model.id,
            "object": "chat.completion",
            "created": int(time.time()),
            "choices": [
                {
                    "logprobs": None,
                    "finish_reason": plan.finish,
                    "native_finish_reason": plan.finish,
                    "index": 0,
                    "message": message,
                }
            ],
            "usage": plan.usage(),
        }

    async def chat(self, request: Request) -> Response:
        return await self._handle(request, "chat.completions", None)

    async def responses(self, request: Request) -> Response:
        return await self._handle(request, "responses", self._responses_to_chat)

    def _responses_to_chat(self, params: dict[str, Any]) -> dict[str, Any] | Response:
        """Stateless like OpenRouter's: no stored responses, no server-side history."""
        if params.get("previous_response_id") is not None:
            return self._fail(
                400,
                "previous_response_id is not supported: the Responses API is stateless"
                " here; send the full conversation in input",
            )
        if params.get("store") is True:
            return self._fail(400, "store: true is not supported: the Responses API is stateless")
        if params.get("stream") is True:
            return self._fail(400, "stream: true is not supported by the emulator's /responses")
        try:
            return responses_to_chat_request(params)
        except NemoGymError as exc:
            return self._fail(400, str(exc))

    async def _handle(
        self,
        request: Request,
        endpoint: str,
        to_chat: Callable[[dict[str, Any]], dict[str, Any] | Response] | None,
    ) -> Response:
        """One completion request: auth, faults, routing, the answer, in that order."""
        self.stats.by_endpoint[endpoint] += 1
        denied = self._auth(request)
        if denied is not None:
            return denied
        params = await self._body(request)
        if isinstance(params, Response):
            return params
        body = params if to_chat is None else to_chat(params)
        if isinstance(body, Response):
            return body
        fault = self._next_fault()
        if fault in _IMMEDIATE_FAULTS:
            return self._status_fault(fault)  # type: ignore[arg-type]
        if fault == "stall":
            self.stats.faults["stall"] += 1
            await asyncio.sleep(self.config.stall_seconds)
        plan = self._plan(body)
        if isinstance(plan, Response):
            return plan
        if to_chat is None and body.get("stream") is True:
            return StreamingResponse(
                self._stream(plan, fault),
                media_type="text/event-stream",
                headers={"X-Generation-Id": plan.gen_id, "Cache-Control": "no-cache"},
            )
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "error_200":
            error_body = self._error_200(plan)
            return JSONResponse(error_body if to_chat is None else {"error": error_body["error"]})
        answer: dict[str, Any] = self._completion(plan)
        if to_chat is not None:
            answer = chat_to_responses_response(answer, request=params)
        raw = dumps(answer)
        if fault == "malformed":
            self.stats.faults["malformed"] += 1
            raw = raw[: len(raw) // 2]
        headers = {"X-Generation-Id": plan.gen_id}
        return Response(raw, media_type="application/json", headers=headers)

    async def _stream(self, plan: _Plan, fault: str | None) -> AsyncIterator[bytes]:
        yield _KEEPALIVE
        if self.latency:
            await asyncio.sleep(self.latency)
        head = {
            "id": plan.gen_id,
            "provider": plan.model.provider,
            "model": plan.model.id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
        }

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            choice = {
                "index": 0,
                "delta": delta,
                "finish_reason": finish,
                "native_finish_reason": finish,
                "logprobs": None,
            }
            return b"data: " + dumps({**head, "choices": [choice], **extra}) + b"\n\n"

        if fault == "error_200":
            error = self._error_200(plan)["error"]
            yield chunk({"role": "assistant", "content": ""}, "error", error=error) + _DONE
            return
        message = plan.message
        parts = [chunk({"role": "assistant", "content": ""})]
        words = message["content"].split(" ") if message["content"] else []
        for i, word in enumerate(words):
            parts.append(chunk({"content": word if i == 0 else " " + word}))
        for i, call in enumerate(message.get("tool_calls") or ()):
            fn = call["function"]
            start = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": fn["name"], "arguments": ""},
            }
            parts.append(chunk({"tool_calls": [start]}))
            parts.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]}))
        if fault == "malformed":
            self.stats.faults["malformed"] += 1
            yield b"".join(parts) + b'data: {"id":"' + plan.gen_id.encode() + b'","choi\n\n' + _DONE
            return
        parts.append(chunk({}, plan.finish))
        self.stats.bill(plan)
        parts.append(b"data: " + dumps({**head, "choices": [], "usage": plan.usage()}) + b"\n\n")
        parts.append(_DONE)
        yield b"".join(parts)

    # -- other routes ----------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        self.stats.by_endpoint["models"] += 1
        return Response(self.models_body, media_type="application/json")

    async def key_info(self, request: Request) -> Response:
        """OpenRouter's ``GET /key``: 401 for a missing or rejected key; a key in
        ``reject_keys`` as 402 is valid but its credit limit is used up."""
        self.stats.by_endpoint["key"] += 1
        denied, code = self._key_status(request)
        if denied is not None:
            return denied
        broke = code == 402
        info = {
            "label": "emulator key",  # OpenRouter shows a redacted key here; we show none
            "limit": 1.0 if broke else None,
            "usage": 1.0 if broke else self.stats.cost,
            "limit_remaining": 0.0 if broke else None,
            "is_free_tier": False,
            "is_provisioning_key": False,
            "rate_limit": {"requests": -1, "interval": "10s"},
        }
        return JSONResponse({"data": info})

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(self.stats.as_dict())

    async def reset_stats(self, request: Request) -> Response:
        self.reset()
        return JSONResponse({"status": "reset"})


def _seconds(value: float) -> str:
    """A Retry-After value: whole seconds as an integer, else the float ("0.5")."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


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
        "top_provider": {
            "context_length": model.context_length,
            "max_completion_tokens": None,
            "is_moderated": False,
        },
        "supported_parameters": params,
    }


# --- app factories --------------------------------------------------------------------------


def build_app(config: EmulatorConfig | None = None, *, spec: ServerSpec | None = None) -> FastAPI:
    """The emulator as an ASGI app. State lives on the app (``app.state.emulator``)."""
    config = config or EmulatorConfig()
    spec = spec or ServerSpec(
        name="emulator",
        server_type="provider_emulators",
        implementation="openrouter",
        host="127.0.0.1",
        port=0,
    )
    app = create_server_app(spec, title="OpenRouter emulator")
    emulator = _Emulator(config)
    app.state.emulator = emulator
    # Plain Starlette routes: no FastAPI dependency resolution or validation per request.
    for prefix in API_PREFIXES:
        app.add_route(f"{prefix}/chat/completions", emulator.chat, methods=["POST"])
        app.add_route(f"{prefix}/responses", emulator.responses, methods=["POST"])
        app.add_route(f"{prefix}/models", emulator.list_models, methods=["GET"])
        app.add_route(f"{prefix}/key", emulator.key_info, methods=["GET"])
    app.add_route("/emulator/stats", emulator.get_stats, methods=["GET"])
    app.add_route("/emulator/reset", emulator.reset_stats, methods=["POST"])
    return app


def create_app(spec: ServerSpec) -> FastAPI:
    """The emulator as a server instance: its config is ``spec.fields``."""
    try:
        config = EmulatorConfig.model_validate(spec.fields)
    except ValidationError as exc:
        raise ConfigError(
            f"instance {spec.name!r}: invalid emulator config: {config_problems(exc)} (see docs/emulator.md)"
        ) from None
    return build_app(config, spec=spec)
