"""One decided answer (``Plan``), rendered the ways OpenRouter sends it: a chat completion,
chat completion chunks (SSE), a Responses object, Responses stream events (SSE). Written for
the emulator alone: it shares no code with the adapter's conversion or streams, so a bug
there cannot cancel out here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nemo_gym_cli.wire import dumps

from .config import EmulatorModel
from .policy import reasoning_tokens

__all__ = [
    "DONE",
    "KEEPALIVE",
    "Plan",
    "chat_chunks",
    "chat_completion",
    "error_200",
    "responses_events",
    "responses_object",
]

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": OPENROUTER PROCESSING\n\n"


@dataclass(slots=True)
class Plan:
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
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "cost_details": {"upstream_inference_cost": None},
            "completion_tokens_details": {"reasoning_tokens": reasoning_tokens(self.message)},
        }


def reasoning_details(text: str) -> list[dict[str, Any]]:
    """OpenRouter's structured form of a reasoning text (sent beside ``reasoning``)."""
    return [{"type": "reasoning.text", "text": text, "signature": None, "id": None, "format": "unknown", "index": 0}]


def chat_completion(plan: Plan) -> dict[str, Any]:
    reasoning = plan.message.get("reasoning")
    message = {"role": "assistant", "content": plan.message["content"], "refusal": None, "reasoning": reasoning}
    if reasoning:
        message["reasoning_details"] = reasoning_details(reasoning)
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


def error_200(plan: Plan) -> dict[str, Any]:
    """OpenRouter's 200 answer that is an error: no choices, an ``error`` object."""
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


def chat_chunks(plan: Plan, *, error: bool = False, malformed: bool = False) -> Iterator[bytes]:
    """The SSE events of a streamed chat completion: the role, the words, each tool call's
    name then arguments, the finish reason, then usage in a chunk with empty choices."""
    head = {
        "id": plan.gen_id,
        "provider": plan.model.provider,
        "model": plan.model.id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
    }

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish, "logprobs": None}
        return b"data: " + dumps({**head, "choices": [choice], **extra}) + b"\n\n"

    if error:
        yield chunk({"role": "assistant", "content": ""}, "error", error=error_200(plan)["error"])
        yield DONE
        return
    yield chunk({"role": "assistant", "content": ""})
    reasoning = plan.message.get("reasoning")
    for i, word in enumerate(reasoning.split(" ") if reasoning else ()):  # thoughts stream first
        piece = word if i == 0 else " " + word
        yield chunk({"content": "", "reasoning": piece, "reasoning_details": reasoning_details(piece)})
    words = plan.message["content"].split(" ") if plan.message["content"] else []
    for i, word in enumerate(words):
        yield chunk({"content": word if i == 0 else " " + word})
    for i, call in enumerate(plan.message.get("tool_calls") or ()):
        fn = call["function"]
        start = {"index": i, "id": call["id"], "type": "function", "function": {"name": fn["name"], "arguments": ""}}
        yield chunk({"tool_calls": [start]})
        yield chunk({"tool_calls": [{"index": i, "function": {"arguments": fn["arguments"]}}]})
    if malformed:
        yield b'data: {"id":"' + plan.gen_id.encode() + b'","choi\n\n'
        yield DONE
        return
    yield chunk({}, plan.finish)
    yield b"data: " + dumps({**head, "choices": [], "usage": plan.usage()}) + b"\n\n"
    yield DONE


def responses_object(plan: Plan, params: dict[str, Any]) -> dict[str, Any]:
    """The answer as a Responses API object, echoing the request's settings."""
    rid = f"resp_{plan.gen_id.removeprefix('gen-')}"
    output: list[dict[str, Any]] = []
    if plan.message.get("reasoning"):
        summary = [{"type": "summary_text", "text": plan.message["reasoning"]}]
        output.append({"type": "reasoning", "id": f"rs_{rid}", "summary": summary, "encrypted_content": None})
    if plan.message["content"]:
        output.append(
            {
                "type": "message",
                "id": f"msg_{rid}",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": plan.message["content"], "annotations": [], "logprobs": []}
                ],
            }
        )
    for i, call in enumerate(plan.message.get("tool_calls") or ()):
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{rid}_{i}",
                "call_id": call["id"],
                "name": call["function"]["name"],
                "arguments": call["function"]["arguments"],
                "status": "completed",
            }
        )
    incomplete = plan.finish == "length"
    return {
        "id": rid,
        "object": "response",
        "created_at": float(int(time.time())),
        "model": plan.model.id,
        "provider": plan.model.provider,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "error": None,
        "output": output,
        "usage": {
            "input_tokens": plan.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": plan.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens(plan.message)},
            "total_tokens": plan.prompt_tokens + plan.completion_tokens,
            "cost": plan.cost,
            "is_byok": False,
            "cost_details": {"upstream_inference_cost": None},
        },
        "instructions": params.get("instructions"),
        "tools": params.get("tools") or [],
        "tool_choice": params.get("tool_choice") or "auto",
        "parallel_tool_calls": params.get("parallel_tool_calls") is not False,
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "max_output_tokens": params.get("max_output_tokens"),
        "metadata": params.get("metadata") or {},
        "store": False,
        "text": params.get("text") or {"format": {"type": "text"}},
        "reasoning": params.get("reasoning") or {"effort": None, "summary": None},
        "truncation": params.get("truncation") or "disabled",
        "background": False,
        "conversation": None,
        "max_tool_calls": params.get("max_tool_calls"),
        "previous_response_id": None,
        "prompt": None,
        "prompt_cache_key": params.get("prompt_cache_key"),
        "safety_identifier": params.get("safety_identifier"),
        "service_tier": "default",
        "top_logprobs": params.get("top_logprobs"),
        "user": params.get("user"),
    }


def responses_events(plan: Plan, params: dict[str, Any], *, error: bool = False) -> Iterator[bytes]:
    """The SSE events of a streamed Responses answer, as OpenAI documents them: created,
    in_progress, each item added, its text or arguments in deltas, done, then completed
    (or, with ``error``, an ``error`` event: a provider failing mid-generation)."""
    final = responses_object(plan, params)
    seq = iter(range(1_000_000))

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(seq), **fields}
        return b"event: " + kind.encode() + b"\ndata: " + dumps(data) + b"\n\n"

    start = {**final, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    yield event("response.created", response=start)
    yield event("response.in_progress", response=start)
    if error:
        yield event("error", code="server_error", message="Provider returned error (emulated)", param=None)
        return
    for index, item in enumerate(final["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "message":
            yield event(
                "response.output_item.added", output_index=index, item={**item, "status": "in_progress", "content": []}
            )
            part = item["content"][0]
            yield event("response.content_part.added", **where, content_index=0, part={**part, "text": ""})
            words = part["text"].split(" ")
            for i, word in enumerate(words):
                delta = word if i == 0 else " " + word
                yield event("response.output_text.delta", **where, content_index=0, delta=delta, logprobs=[])
            yield event("response.output_text.done", **where, content_index=0, text=part["text"], logprobs=[])
            yield event("response.content_part.done", **where, content_index=0, part=part)
        elif item["type"] == "reasoning":
            yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
            text = item["summary"][0]["text"]
            at = {**where, "summary_index": 0}
            yield event("response.reasoning_summary_part.added", **at, part={"type": "summary_text", "text": ""})
            for i, word in enumerate(text.split(" ")):
                yield event("response.reasoning_summary_text.delta", **at, delta=word if i == 0 else " " + word)
            yield event("response.reasoning_summary_text.done", **at, text=text)
            yield event("response.reasoning_summary_part.done", **at, part=item["summary"][0])
        else:
            added = {**item, "arguments": "", "status": "in_progress"}
            yield event("response.output_item.added", output_index=index, item=added)
            arguments = item["arguments"]
            half = len(arguments) // 2
            for piece in (arguments[:half], arguments[half:]):
                yield event("response.function_call_arguments.delta", **where, delta=piece)
            yield event("response.function_call_arguments.done", **where, arguments=arguments, name=item["name"])
        yield event("response.output_item.done", output_index=index, item=item)
    kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
    yield event(kind, response=final)
