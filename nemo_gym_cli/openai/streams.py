"""Server-sent events both ways: a complete answer rendered as OpenAI's stream, and an
upstream's stream assembled into one answer.

    response_sse(response)             Responses object -> the documented event sequence (bytes)
    chat_sse(completion, usage=...)    chat completion  -> chat.completion.chunk lines + [DONE]
    assemble_chat(body)                a streamed chat completion (bytes) -> one completion
    assemble_responses(body)           a streamed Responses answer (bytes) -> one Response

Rendering follows OpenAI's streaming docs event by event (the SDKs' stream helpers check the
order and the identities): ``response.created``, ``response.in_progress``, per output item
``response.output_item.added``, its parts and deltas (``response.content_part.added``,
``response.output_text.delta``/``.done``, ``response.content_part.done``;
``response.function_call_arguments.delta``/``.done`` with ``name``; reasoning summaries),
``response.output_item.done``, then ``response.completed`` (``.incomplete`` or ``.failed``
by status), every event with a ``sequence_number`` from 0. Chat: the role, the reasoning,
the content, each tool call's name then its arguments, the finish reason, the usage (with
``stream_options.include_usage``), ``data: [DONE]``. A complete answer goes out as one body:
the model server renders what it already has (``ModelServer`` streams for every model).

Assembling reads what OpenRouter sends: ``: OPENROUTER PROCESSING`` comments are ignored,
usage (and ``cost``) comes from the last chunk, an error chunk (``{"error": ...}``, a choice
that finished with ``error``, a Responses ``error`` or ``response.failed`` event) raises a
retryable ``UpstreamError``, and so does a stream that stops before its end (``[DONE]``, a
terminal Responses event): the caller retries it like any other failure.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.openai.errors import classify_error
from nemo_gym_cli.wire import dumps, loads

__all__ = [
    "SSE_MEDIA_TYPE",
    "Assembled",
    "assemble_chat",
    "assemble_responses",
    "chat_chunks",
    "chat_sse",
    "is_sse",
    "read_sse",
    "response_events",
    "response_sse",
]

SSE_MEDIA_TYPE = "text/event-stream"
DONE = b"data: [DONE]\n\n"
_TERMINAL = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}


# --- rendering: a complete Responses object as its event stream ----------------------------


def response_events(response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The events OpenAI sends for ``response``, in order, each with its ``sequence_number``."""
    seq = 0

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {"type": kind, "sequence_number": seq - 1, **fields}

    rid = response.get("id") or f"resp_{secrets.token_hex(12)}"
    response = {**response, "id": rid}
    pending = {**response, "status": "in_progress", "output": [], "usage": None, "incomplete_details": None}
    pending["error"] = None
    yield event("response.created", response=pending)
    yield event("response.in_progress", response=pending)
    output: list[dict[str, Any]] = []
    for index, item in enumerate(response.get("output") or []):
        if not isinstance(item, dict):
            continue
        kind = str(item.get("type"))
        item = {**item, "id": item.get("id") or f"{_ID_PREFIX.get(kind, 'item')}_{rid}_{index}"}
        item_id = item["id"]
        if kind == "message":
            added = {**item, "status": "in_progress", "content": []}
            yield event("response.output_item.added", output_index=index, item=added)
            for c, part in enumerate(item.get("content") or []):
                yield from _part_events(event, item_id, index, c, part)
        elif kind == "function_call":
            arguments = item.get("arguments") or ""
            added = {**item, "arguments": "", "status": "in_progress"}
            yield event("response.output_item.added", output_index=index, item=added)
            yield event("response.function_call_arguments.delta", item_id=item_id, output_index=index, delta=arguments)
            yield event(
                "response.function_call_arguments.done",
                item_id=item_id,
                output_index=index,
                arguments=arguments,
                name=item.get("name"),
            )
        elif kind == "reasoning":
            yield event("response.output_item.added", output_index=index, item={**item, "summary": []})
            for s, part in enumerate(item.get("summary") or []):
                text = part.get("text", "") if isinstance(part, dict) else ""
                where = {"item_id": item_id, "output_index": index, "summary_index": s}
                yield event("response.reasoning_summary_part.added", **where, part={"type": "summary_text", "text": ""})
                yield event("response.reasoning_summary_text.delta", **where, delta=text)
                yield event("response.reasoning_summary_text.done", **where, text=text)
                done = {"type": "summary_text", "text": text}
                yield event("response.reasoning_summary_part.done", **where, part=done)
        else:
            yield event("response.output_item.added", output_index=index, item=item)
        if kind in ("message", "function_call") and item.get("status") in (None, "in_progress"):
            item = {**item, "status": "completed"}
        output.append(item)
        yield event("response.output_item.done", output_index=index, item=item)
    final = {**response, "output": output}
    yield event(_TERMINAL.get(str(final.get("status")), "response.completed"), response=final)


_ID_PREFIX = {"message": "msg", "function_call": "fc", "reasoning": "rs"}


def _part_events(event: Any, item_id: str, index: int, c: int, part: Any) -> Iterator[dict[str, Any]]:
    where = {"item_id": item_id, "output_index": index, "content_index": c}
    if not isinstance(part, dict):
        return
    if part.get("type") == "output_text":
        text = part.get("text") or ""
        logprobs = [_delta_logprob(lp) for lp in part.get("logprobs") or [] if isinstance(lp, dict)]
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield event("response.content_part.added", **where, part=empty)
        yield event("response.output_text.delta", **where, delta=text, logprobs=logprobs)
        yield event("response.output_text.done", **where, text=text, logprobs=logprobs)
        yield event("response.content_part.done", **where, part={"annotations": [], **part})
    elif part.get("type") == "refusal":
        refusal = part.get("refusal") or ""
        yield event("response.content_part.added", **where, part={"type": "refusal", "refusal": ""})
        yield event("response.refusal.delta", **where, delta=refusal)
        yield event("response.refusal.done", **where, refusal=refusal)
        yield event("response.content_part.done", **where, part=part)


def _delta_logprob(entry: dict[str, Any]) -> dict[str, Any]:
    """An output_text logprob as a delta event carries it: token, logprob, top_logprobs."""
    tops = [{"token": t.get("token"), "logprob": t.get("logprob")} for t in entry.get("top_logprobs") or []]
    return {"token": entry.get("token", ""), "logprob": entry.get("logprob", 0.0), "top_logprobs": tops}


def response_sse(response: dict[str, Any]) -> bytes:
    """``response`` as one SSE body: ``event: <type>`` and ``data: <json>`` per event."""
    out = bytearray()
    for ev in response_events(response):
        out += b"event: " + ev["type"].encode() + b"\ndata: " + dumps(ev) + b"\n\n"
    return bytes(out)


# --- rendering: a complete chat completion as chunks ------------------------------------------


def chat_chunks(completion: dict[str, Any], *, usage: bool = False) -> Iterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects OpenAI streams for ``completion``."""
    head = {k: v for k, v in completion.items() if k not in ("choices", "usage", "object")}
    head["object"] = "chat.completion.chunk"

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": logprobs}]}

    for choice in completion.get("choices") or []:
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        calls = message.get("tool_calls") or []
        content = message.get("content")
        role = message.get("role") or "assistant"
        yield chunk(index, {"role": role, "content": "" if content or not calls else None})
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        if isinstance(reasoning, str) and reasoning:
            yield chunk(index, {"reasoning": reasoning})
        if isinstance(content, str) and content:
            yield chunk(index, {"content": content}, logprobs=choice.get("logprobs"))
        if message.get("refusal"):
            yield chunk(index, {"refusal": message["refusal"]})
        for i, call in enumerate(calls):
            function = call.get("function") or {}
            start = {"index": i, "id": call.get("id"), "type": "function"}
            start["function"] = {"name": function.get("name"), "arguments": ""}
            yield chunk(index, {"tool_calls": [start]})
            arguments = function.get("arguments") or ""
            yield chunk(index, {"tool_calls": [{"index": i, "function": {"arguments": arguments}}]})
        yield chunk(index, {}, choice.get("finish_reason") or "stop")
    if usage and completion.get("usage") is not None:
        yield {**head, "choices": [], "usage": completion["usage"]}


def chat_sse(completion: dict[str, Any], *, usage: bool = False) -> bytes:
    """``completion`` as one SSE body of ``data: <chunk>`` lines ending with ``[DONE]``."""
    out = bytearray()
    for chunk in chat_chunks(completion, usage=usage):
        out += b"data: " + dumps(chunk) + b"\n\n"
    return bytes(out + DONE)


# --- reading a stream ---------------------------------------------------------------------------


def is_sse(content_type: str | None, body: bytes) -> bool:
    """Whether an answer is an event stream (by its type, else by how its body starts)."""
    if content_type and content_type.split(";", 1)[0].strip().lower() == SSE_MEDIA_TYPE:
        return True
    head = body.lstrip()[:6]
    return head.startswith((b"data:", b"event:", b":"))


def read_sse(body: bytes) -> list[tuple[str | None, str]]:
    """``(event name, data)`` of each event in ``body``; comments (``: OPENROUTER
    PROCESSING``) and fields other than ``event``/``data`` are skipped."""
    events: list[tuple[str | None, str]] = []
    name: str | None = None
    data: list[str] = []
    for raw in body.decode("utf-8", "replace").splitlines():
        if not raw:
            if data:
                events.append((name, "\n".join(data)))
            name, data = None, []
        elif raw.startswith(":"):
            continue
        elif raw.startswith("data:"):
            data.append(raw[5:].removeprefix(" "))
        elif raw.startswith("event:"):
            name = raw[6:].strip()
    if data:
        events.append((name, "\n".join(data)))
    return events


class Assembled(dict):  # type: ignore[type-arg]
    """An assembled answer; ``generation_id`` is the provider's id seen in the stream (for
    billing: a stream cut short was still billed)."""

    generation_id: str | None = None


def _cut(what: str, body: bytes, generation_id: str | None) -> UpstreamError:
    return UpstreamError(
        f"the stream ended before {what} ({len(body)} bytes); retrying",
        kind="bad_response",
        retryable=True,
        generation_id=generation_id,
    )


def _unreadable(chunk: Any, generation_id: str | None) -> UpstreamError:
    return UpstreamError(
        f"the stream has a chunk of no known shape ({dumps(chunk)[:200].decode('utf-8', 'replace')}); retrying",
        kind="bad_response",
        retryable=True,
        generation_id=generation_id,
    )


def _stream_error(error: Any, generation_id: str | None) -> UpstreamError:
    found = classify_error(None, error if isinstance(error, dict) else {"message": str(error)})
    # A provider failing mid-generation: the same request may well succeed (OpenRouter).
    return UpstreamError(
        f"mid-stream error: {found}",
        status=found.status,
        kind=found.kind,
        retryable=True,
        generation_id=generation_id,
    )


def assemble_chat(body: bytes) -> Assembled:
    """A streamed chat completion as the one completion it adds up to."""
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage: Any = None
    done = False
    generation_id: str | None = None
    for _, data in read_sse(body):
        if data.strip() == "[DONE]":
            done = True
            break
        try:
            chunk = loads(data)
        except ValueError:
            raise _cut("a readable chunk", body, generation_id) from None
        if not isinstance(chunk, dict):
            continue
        if generation_id is None and isinstance(chunk.get("id"), str):
            generation_id = chunk["id"]
        if not isinstance(chunk.get("choices") or [], list):
            raise _unreadable(chunk, generation_id)
        for key in ("id", "created", "model", "provider", "system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                head.setdefault(key, chunk[key])
        if chunk.get("error") is not None:
            raise _stream_error(chunk["error"], generation_id)
        if chunk.get("usage") is not None:
            usage = chunk["usage"]
        try:
            for delta_choice in chunk.get("choices") or []:
                _add_delta(choices, delta_choice, generation_id)
        except (AttributeError, TypeError, ValueError):  # a chunk of no known shape
            raise _unreadable(chunk, generation_id) from None
    if not done:
        raise _cut("data: [DONE]", body, generation_id)
    out = Assembled(head, object="chat.completion", choices=[_choice(i, choices[i]) for i in sorted(choices)])
    if usage is not None:
        out["usage"] = usage
    out.generation_id = generation_id
    return out


def _add_delta(choices: dict[int, dict[str, Any]], choice: Any, generation_id: str | None) -> None:
    if not isinstance(choice, dict):
        return
    index = choice.get("index") or 0
    delta = choice.get("delta") or {}
    if not isinstance(index, int) or not isinstance(delta, dict):
        raise TypeError("a choice of no known shape")
    state = choices.setdefault(index, {"content": [], "reasoning": [], "calls": {}, "logprobs": None})
    if delta.get("role"):
        state["role"] = delta["role"]
    if isinstance(delta.get("content"), str):
        state["content"].append(delta["content"])
    for key in ("reasoning", "reasoning_content"):
        if isinstance(delta.get(key), str):
            state["reasoning"].append(delta[key])
    if isinstance(delta.get("refusal"), str):
        state["refusal"] = state.get("refusal", "") + delta["refusal"]
    for call in delta.get("tool_calls") or []:
        call_index = call.get("index") or 0
        function = call.get("function") or {}
        if not isinstance(call_index, int) or not isinstance(function, dict):
            raise TypeError("a tool call of no known shape")
        slot = state["calls"].setdefault(call_index, {"arguments": []})
        if call.get("id"):
            slot["id"] = call["id"]
        if function.get("name"):
            slot["name"] = function["name"]
        if isinstance(function.get("arguments"), str):
            slot["arguments"].append(function["arguments"])
    logprobs = choice.get("logprobs")
    if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
        state["logprobs"] = state["logprobs"] or {"content": [], "refusal": None}
        state["logprobs"]["content"].extend(logprobs["content"])
    if choice.get("finish_reason") is not None:
        state["finish_reason"] = choice["finish_reason"]
        if choice.get("native_finish_reason") is not None:
            state["native_finish_reason"] = choice["native_finish_reason"]
        if choice["finish_reason"] == "error":
            error = choice.get("error") or {"message": "the generation stopped with an error"}
            raise _stream_error(error, generation_id)


def _choice(index: int, state: dict[str, Any]) -> dict[str, Any]:
    content = "".join(state["content"])
    message: dict[str, Any] = {"role": state.get("role", "assistant"), "content": content}
    if state["reasoning"]:
        message["reasoning"] = "".join(state["reasoning"])
    if state.get("refusal"):
        message["refusal"] = state["refusal"]
    calls = [
        {
            "id": slot.get("id"),
            "type": "function",
            "function": {"name": slot.get("name"), "arguments": "".join(slot["arguments"])},
        }
        for _, slot in sorted(state["calls"].items())
    ]
    if calls:
        message["tool_calls"] = calls
        message["content"] = content or None
    choice: dict[str, Any] = {"index": index, "message": message, "finish_reason": state.get("finish_reason")}
    choice["logprobs"] = state["logprobs"]
    if "native_finish_reason" in state:
        choice["native_finish_reason"] = state["native_finish_reason"]
    return choice


def assemble_responses(body: bytes) -> Assembled:
    """A streamed Responses answer as the Response its terminal event carries (with the
    items of ``response.output_item.done`` when that event left them out)."""
    items: dict[int, Any] = {}
    generation_id: str | None = None
    for name, data in read_sse(body):
        if data.strip() == "[DONE]":
            continue
        try:
            event = loads(data)
        except ValueError:
            raise _cut("a readable event", body, generation_id) from None
        if not isinstance(event, dict):
            continue
        kind = event.get("type") or name
        response = event.get("response")
        if generation_id is None and isinstance(response, dict) and isinstance(response.get("id"), str):
            generation_id = response["id"]
        if kind == "error":
            raise _stream_error(event.get("error") or event, generation_id)
        if kind == "response.output_item.done" and isinstance(event.get("output_index"), int):
            items[event["output_index"]] = event.get("item")
        if kind in ("response.completed", "response.incomplete", "response.failed") and isinstance(response, dict):
            if kind == "response.failed":
                raise _stream_error(response.get("error") or {"message": "the response failed"}, generation_id)
            out = Assembled(response)
            if not out.get("output") and items:
                out["output"] = [items[i] for i in sorted(items)]
            out.generation_id = generation_id
            return out
    raise _cut("its response.completed event", body, generation_id)
