"""A small OpenAI-shaped upstream for the interop suite: the known-good peer.

Its bodies and streams follow the official SDK's types and OpenAI's documented event
sequences to the letter, so the SDK probe (``sdk_probe.py``) must find nothing wrong with it:
that proves the probe, and every failure it reports against our servers is theirs.

Its scripted policy plays NeMo Gym's ``example_session_state_mgmt`` tasks ("add 1 then add 2
then get the count": ``increment_counter`` once per number, then ``get_counter_value``, then
an answer), so stateful environments can be played to reward 1.0 when sessions work and 0.0
when they do not. Any other tool gets one call (``get_weather`` with the city from "sf" /
"in <City>"), then a text answer; no tools, a text answer.

    python tests/interop/reference_upstream.py --port 8123   # serves /v1/{models,chat/completions,responses}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

MODEL = "reference/scripted"
CREATED = 1_700_000_000


def _id(prefix: str, *parts: Any) -> str:
    return prefix + hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _tokens(value: Any) -> int:
    return max(1, len(json.dumps(value)) // 4)


# --------------------------------------------------------------------------- policy


def _tool_names(tools: list[dict[str, Any]]) -> list[str]:
    return [(t.get("function") or t).get("name", "") for t in tools or []]


def decide(user_text: str, calls: list[tuple[str, str]], last_output: str | None, tools: list[str]) -> dict[str, Any]:
    """The next step: ``{"call": (name, arguments)}`` or ``{"text": ...}``.

    ``calls`` are the (name, arguments) of the function calls made so far in this turn.
    """
    if "increment_counter" in tools:
        numbers = [int(n) for n in re.findall(r"add\s+(-?\d+)", user_text)]
        done = [c for c in calls if c[0] == "increment_counter"]
        if len(done) < len(numbers):
            return {"call": ("increment_counter", json.dumps({"count": numbers[len(done)]}))}
        if "get_counter_value" in tools and not any(c[0] == "get_counter_value" for c in calls):
            return {"call": ("get_counter_value", "{}")}
        return {"text": f"The count is {last_output}."}
    if tools and not calls:
        name = tools[0]
        city = "San Francisco" if re.search(r"\bsf\b", user_text.lower()) else None
        if city is None:
            found = re.search(r"\bin ([A-Z][a-zA-Z]+(?: [A-Z][a-zA-Z]+)*)", user_text)
            city = found.group(1) if found else "Paris"
        return {"call": (name, json.dumps({"city": city}))}
    if last_output is not None:
        return {"text": f"Here is what I found: {last_output}"}
    return {"text": f"Hello! You said: {user_text}"}


# --------------------------------------------------------------------------- Responses API


def _responses_state(body: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str | None]:
    items = body.get("input")
    if isinstance(items, str):
        return items, [], None
    user_text, calls, last_output = "", [], None
    for item in items or []:
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            content = item.get("content")
            user_text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
            calls, last_output = [], None
        elif kind == "function_call":
            calls.append((item.get("name", ""), item.get("arguments", "")))
        elif kind == "function_call_output":
            last_output = item.get("output")
    return user_text, calls, last_output


def _response(body: dict[str, Any], output: list[dict[str, Any]], status: str, rid: str) -> dict[str, Any]:
    """A ``Response`` with every field the SDK's model declares (``openai.types.responses.Response``)."""
    usage = None
    if status == "completed":
        inp, out = _tokens(body.get("input")), _tokens(output)
        usage = {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }
    return {
        "id": rid,
        "object": "response",
        "created_at": float(CREATED),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": body.get("model") or MODEL,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": False,
        "temperature": body.get("temperature", 1.0),
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _output_item(step: dict[str, Any], rid: str, status: str = "completed") -> dict[str, Any]:
    if "call" in step:
        name, arguments = step["call"]
        return {
            "type": "function_call",
            "id": _id("fc_", rid),
            "call_id": _id("call_", rid),
            "name": name,
            "arguments": arguments if status == "completed" else "",
            "status": status,
        }
    content = [{"type": "output_text", "text": step["text"], "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": _id("msg_", rid),
        "role": "assistant",
        "status": status,
        "content": content if status == "completed" else [],
    }


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def _response_events(body: dict[str, Any], step: dict[str, Any], rid: str) -> AsyncIterator[bytes]:
    """The documented event sequence of one streamed response with one output item."""
    seq = iter(range(1_000_000))
    item = _output_item(step, rid)
    yield _sse(
        {"type": "response.created", "sequence_number": next(seq), "response": _response(body, [], "in_progress", rid)}
    )
    yield _sse(
        {
            "type": "response.in_progress",
            "sequence_number": next(seq),
            "response": _response(body, [], "in_progress", rid),
        }
    )
    added = _output_item(step, rid, status="in_progress")
    yield _sse({"type": "response.output_item.added", "sequence_number": next(seq), "output_index": 0, "item": added})
    if item["type"] == "function_call":
        args = item["arguments"]
        for i in range(0, len(args), 8):
            yield _sse(
                {
                    "type": "response.function_call_arguments.delta",
                    "sequence_number": next(seq),
                    "item_id": item["id"],
                    "output_index": 0,
                    "delta": args[i : i + 8],
                }
            )
        yield _sse(
            {
                "type": "response.function_call_arguments.done",
                "sequence_number": next(seq),
                "item_id": item["id"],
                "output_index": 0,
                "name": item["name"],  # required by openai 2.6.1 (NeMo Gym's pin), optional later
                "arguments": args,
            }
        )
    else:
        text = item["content"][0]["text"]
        where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield _sse({"type": "response.content_part.added", "sequence_number": next(seq), **where, "part": empty})
        for word in re.findall(r"\S+\s*", text):
            yield _sse(
                {
                    "type": "response.output_text.delta",
                    "sequence_number": next(seq),
                    **where,
                    "delta": word,
                    "logprobs": [],
                }
            )
        yield _sse(
            {"type": "response.output_text.done", "sequence_number": next(seq), **where, "text": text, "logprobs": []}
        )
        yield _sse(
            {"type": "response.content_part.done", "sequence_number": next(seq), **where, "part": item["content"][0]}
        )
    yield _sse({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": item})
    yield _sse(
        {
            "type": "response.completed",
            "sequence_number": next(seq),
            "response": _response(body, [item], "completed", rid),
        }
    )


async def responses(request: Request) -> Any:
    body = await request.json()
    user_text, calls, last_output = _responses_state(body)
    step = decide(user_text, calls, last_output, _tool_names(body.get("tools")))
    rid = _id("resp_", body.get("input"))
    if body.get("stream"):
        return StreamingResponse(_response_events(body, step, rid), media_type="text/event-stream")
    return JSONResponse(_response(body, [_output_item(step, rid)], "completed", rid))


# --------------------------------------------------------------------------- Chat Completions


def _chat_state(body: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str | None]:
    user_text, calls, last_output = "", [], None
    for msg in body.get("messages") or []:
        role = msg.get("role")
        if role == "user":
            content = msg.get("content")
            user_text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content or [])
            calls, last_output = [], None
        elif role == "assistant":
            for call in msg.get("tool_calls") or []:
                calls.append((call["function"]["name"], call["function"]["arguments"]))
        elif role == "tool":
            last_output = msg.get("content")
    return user_text, calls, last_output


def _chat_usage(body: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = _tokens(body.get("messages")), _tokens(step)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


async def _chat_chunks(body: dict[str, Any], step: dict[str, Any], cid: str) -> AsyncIterator[bytes]:
    base = {"id": cid, "object": "chat.completion.chunk", "created": CREATED, "model": body.get("model") or MODEL}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return f"data: {json.dumps({**base, 'choices': [choice]})}\n\n".encode()

    yield chunk({"role": "assistant", "content": "" if "text" in step else None})
    if "call" in step:
        name, arguments = step["call"]
        yield chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": _id("call_", cid),
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )
        for i in range(0, len(arguments), 8):
            yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i : i + 8]}}]})
        yield chunk({}, "tool_calls")
    else:
        for word in re.findall(r"\S+\s*", step["text"]):
            yield chunk({"content": word})
        yield chunk({}, "stop")
    if (body.get("stream_options") or {}).get("include_usage"):
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': _chat_usage(body, step)})}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def chat_completions(request: Request) -> Any:
    body = await request.json()
    user_text, calls, last_output = _chat_state(body)
    step = decide(user_text, calls, last_output, _tool_names(body.get("tools")))
    cid = _id("chatcmpl-", body.get("messages"))
    if body.get("stream"):
        return StreamingResponse(_chat_chunks(body, step, cid), media_type="text/event-stream")
    if "call" in step:
        name, arguments = step["call"]
        call = {"id": _id("call_", cid), "type": "function", "function": {"name": name, "arguments": arguments}}
        message = {"role": "assistant", "content": None, "refusal": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": step["text"], "refusal": None}
        finish = "stop"
    return JSONResponse(
        {
            "id": cid,
            "object": "chat.completion",
            "created": CREATED,
            "model": body.get("model") or MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": _chat_usage(body, step),
        }
    )


async def models(request: Request) -> JSONResponse:
    return JSONResponse(
        {"object": "list", "data": [{"id": MODEL, "object": "model", "created": CREATED, "owned_by": "interop"}]}
    )


def create_app() -> Starlette:
    routes = []
    for prefix in ("/v1", ""):
        routes += [
            Route(f"{prefix}/models", models),
            Route(f"{prefix}/chat/completions", chat_completions, methods=["POST"]),
            Route(f"{prefix}/responses", responses, methods=["POST"]),
        ]
    return Starlette(routes=routes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
