"""Responses API <-> Chat Completions, both ways, for requests and for answers.

A model server receives Responses requests from agents and forwards them to an
OpenAI-compatible upstream (OpenRouter, vLLM, the emulator) that mostly speaks only Chat
Completions; the reverse pair serves ``/v1/chat/completions`` over a Responses upstream.

    responses_to_chat_request    Responses create params  -> chat request body
    chat_to_responses_response   chat completion          -> Responses object
    chat_to_responses_request    chat request body        -> Responses create params
    responses_to_chat_response   Responses object         -> chat completion
    complete_response            any Responses object     -> one with every field OpenAI's
                                                             Response model has (the 30 of
                                                             openai 2.6.1, NeMo Gym's rows),
                                                             ``created_at`` a float, usage
                                                             complete for both SDK versions

Usage objects between the two APIs' names are ``usage``'s.

Pure functions on plain dicts, on the hot path: no I/O, no logging, no pydantic, no deep
copies (large values such as tool schemas are shared with the input, not copied). Bad
requests raise ``InputError``; upstream answers that are errors raise ``UpstreamError``.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from nemo_gym_cli.errors import InputError, UpstreamError
from nemo_gym_cli.openai.errors import classify_error, error_object
from nemo_gym_cli.openai.usage import complete_usage, usage_as_chat, usage_as_responses
from nemo_gym_cli.wire import dumps, is_number

__all__ = [
    "LOGPROBS_INCLUDE",
    "chat_to_responses_request",
    "chat_to_responses_response",
    "responses_to_chat_request",
    "responses_to_chat_response",
    "complete_response",
]

#: The ``include`` entry that asks a Responses API for the output text's logprobs.
LOGPROBS_INCLUDE = "message.output_text.logprobs"

_TEXT_PARTS = frozenset(("input_text", "output_text", "text"))
_EMPTY_PARAMETERS = {"type": "object", "properties": {}}
# Request fields converted by hand, and fields only the other API knows: neither passes through.
_RESPONSES_CONVERTED = frozenset(
    ("model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "text", "top_logprobs")
)
_RESPONSES_ONLY = frozenset(
    ("store", "include", "truncation", "background", "stream", "stream_options", "max_tool_calls")
)
_CHAT_CONVERTED = frozenset(
    ("messages", "tools", "tool_choice", "max_tokens", "max_completion_tokens", "n")
    + ("response_format", "reasoning_effort", "logprobs")
)
_CHAT_ONLY = frozenset(("stream", "stream_options"))
# The fields of OpenAI's Response model (openai 2.6.1: what NeMo Gym writes in its rows).
_RESPONSE_FIELDS = frozenset(
    ("id", "created_at", "error", "incomplete_details", "instructions", "metadata", "model", "object", "output")
    + ("parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p", "background", "conversation")
    + ("max_output_tokens", "max_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "reasoning")
    + ("safety_identifier", "service_tier", "status", "text", "top_logprobs", "truncation", "usage", "user")
)
_TEXT_FORMAT = {"format": {"type": "text"}}  # shared, never changed: serialised as is
# Response.service_tier's values in the SDK's model: anything else a provider says is dropped.
_SERVICE_TIERS = frozenset(("auto", "default", "flex", "scale", "priority"))
_INCOMPLETE_BY_FINISH = {"length": "max_output_tokens", "content_filter": "content_filter"}
_FINISH_BY_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


# --- Responses request -> chat request -----------------------------------------------------


def responses_to_chat_request(params: dict, *, model: str | None = None) -> dict:
    """Responses create params -> Chat Completions request body; `model` overrides the param.

    Unknown fields (OpenRouter's ``provider``, ``models``, ``top_k``, ...) pass through;
    ``None`` values are dropped (they mean "not given"); ``stream`` is dropped (the caller
    decides). Raises ``InputError`` for what a stateless chat upstream cannot do.
    """
    for key in ("previous_response_id", "conversation"):
        if params.get(key) is not None:
            raise InputError(
                f"{key}={params[key]!r} is not supported: the upstream is stateless: send the full history in input"
            )
    body: dict[str, Any] = {}
    if (model := model or params.get("model")) is not None:
        body["model"] = model
    body["messages"] = _input_to_messages(params.get("input"), params.get("instructions"))
    if tools := params.get("tools"):
        if not isinstance(tools, list):
            raise InputError(f"tools must be a list of tool objects, got {_clip(tools)}")
        body["tools"] = [_tool_to_chat(tool, i) for i, tool in enumerate(tools)]
    if (choice := params.get("tool_choice")) is not None:
        if isinstance(choice, dict) and choice.get("type") == "function":
            choice = {"type": "function", "function": {"name": choice.get("name")}}
        elif not isinstance(choice, str):
            raise InputError(
                f"tool_choice {choice!r} is not supported: use 'auto', 'none', 'required' "
                "or {'type': 'function', 'name': ...}"
            )
        body["tool_choice"] = choice
    if params.get("max_output_tokens") is not None:
        body["max_tokens"] = params["max_output_tokens"]
    text = params.get("text")
    fmt = text.get("format") if isinstance(text, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        if fmt["type"] == "json_schema":
            schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        else:
            body["response_format"] = {"type": fmt["type"]}  # json_object
    # Chat Completions returns logprobs only with `logprobs: true`; top_logprobs alone is a 400.
    include = params.get("include")
    if params.get("top_logprobs") is not None:
        body["logprobs"] = True
        body["top_logprobs"] = params["top_logprobs"]
    elif isinstance(include, list) and LOGPROBS_INCLUDE in include:
        body["logprobs"] = True
    for key, value in params.items():
        if value is not None and key not in _RESPONSES_CONVERTED and key not in _RESPONSES_ONLY:
            body[key] = value
    return body


def _input_to_messages(items: Any, instructions: Any) -> list[dict]:
    messages: list[dict] = []
    if instructions:
        messages.append({"role": "system", "content": _text_of(instructions, "instructions")})
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
        return messages
    if not isinstance(items, list):
        raise InputError(f"input must be a string or a list of items, got {_clip(items)}")
    # The assistant message the next function_call joins: the consecutive calls of one turn
    # (and the text right before them) are ONE chat message with several tool_calls.
    turn: dict | None = None
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"input[{i}] must be an object, got {_clip(item)}")
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role == "developer":
                # Many OpenAI-compatible providers (and most chat templates) reject or ignore
                # the `developer` role; `system` means the same to them.
                role = "system"
            elif role not in ("user", "system", "assistant"):
                raise InputError(f"input[{i}] has role {role!r}: use user, system, developer or assistant")
            message = {"role": role, "content": _content_to_chat(item.get("content"), i)}
            messages.append(message)
            turn = message if role == "assistant" else None
        elif kind == "function_call":
            function = {"name": item.get("name"), "arguments": _arguments(item)}
            call = {"id": item.get("call_id") or item.get("id"), "type": "function"}
            call["function"] = function
            if turn is None:
                turn = {"role": "assistant", "content": None}
                messages.append(turn)
            elif turn["content"] == "":
                turn["content"] = None
            turn.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = item.get("output")
            if not isinstance(output, str):
                output = (
                    _joined_text(output)
                    if isinstance(output, list) and _is_text_parts(output)
                    else dumps(output).decode()
                )
            call_id = item.get("call_id")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
            turn = None
        elif kind != "reasoning":
            raise InputError(
                f"input[{i}] has type {kind!r}, which a Chat Completions upstream cannot take: "
                "send message, function_call, function_call_output or reasoning items"
            )
        # Reasoning items are dropped, and don't end a turn: providers disagree on how (and
        # whether) to take past reasoning back, and chat templates mostly strip it anyway.
    if not messages:
        raise InputError("the request has no input and no instructions: send at least one message")
    return messages


def _content_to_chat(content: Any, index: int) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    if _is_text_parts(content):
        return _joined_text(content)
    parts: list[dict] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image":
            image: dict[str, Any] = {"url": part.get("image_url") or part.get("file_id")}
            if part.get("detail") is not None:
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InputError(
                f"input[{index}] has a content part of type {kind!r}: use input_text, output_text or input_image"
            )
    return parts


def _tool_to_chat(tool: Any, index: int) -> dict:
    if not isinstance(tool, dict):
        raise InputError(f"tools[{index}] must be an object, got {_clip(tool)}")
    if tool.get("type") != "function":
        raise InputError(
            f"tools[{index}] has type {tool.get('type')!r}: only function tools are supported "
            "(the upstream speaks Chat Completions); drop it or define it as a function"
        )
    function: dict[str, Any] = {"name": tool.get("name")}
    if tool.get("description") is not None:
        function["description"] = tool["description"]
    function["parameters"] = tool.get("parameters") or _EMPTY_PARAMETERS
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


# --- chat completion -> Responses object ---------------------------------------------------


def chat_to_responses_response(completion: dict, *, request: dict | None = None) -> dict:
    """Chat completion (as returned by the upstream) -> Responses object.

    `request` = the Responses params, echoed (tools, tool_choice, temperature, ...). Raises
    ``UpstreamError`` when the completion is an error (OpenRouter answers some errors with a
    200 and an ``error`` body) or is not a completion at all.
    """
    if not isinstance(completion, dict):
        raise _bad_response(completion)
    _raise_if_error_body(completion)
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _bad_response(completion)
    finish = choices[0].get("finish_reason")
    if finish == "error":
        native = choices[0].get("native_finish_reason")
        raise UpstreamError(
            f"the upstream stopped the generation with an error (native reason {native!r}); retry the request",
            kind="server",
            retryable=True,
        )
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise _bad_response(completion)

    content = message.get("content")
    calls = message.get("tool_calls") or []
    if not (content is None or isinstance(content, (str, list))) or not isinstance(calls, list):
        raise _bad_response(completion)  # a message whose content or tool calls have no usable shape
    rid = completion["id"] if isinstance(completion.get("id"), str) and completion["id"] else _new_id()
    output: list[dict] = []
    reasoning, text = _split_reasoning(message)
    if reasoning:
        summary = [{"type": "summary_text", "text": reasoning}]
        output.append({"type": "reasoning", "id": f"rs_{rid}", "summary": summary})
    if text:
        part: dict[str, Any] = {"type": "output_text", "text": text, "annotations": []}
        logprobs = _logprobs_to_responses(choices[0].get("logprobs"))
        if logprobs is not None:
            part["logprobs"] = logprobs
        item: dict[str, Any] = {"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": "completed"}
        item["content"] = [part]
        output.append(item)
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise _bad_response(completion)  # a tool call without a function name cannot be run
        call_id = call.get("id")
        output.append(
            {
                "type": "function_call",
                "id": f"fc_{rid}_{i}",
                "call_id": call_id if isinstance(call_id, str) and call_id else f"call_{rid}_{i}",
                "name": function["name"],
                "arguments": _arguments(function),
                "status": "completed",
            }
        )

    reason = _INCOMPLETE_BY_FINISH.get(finish) if isinstance(finish, str) else None  # stop, tool_calls...: completed
    request = request or {}
    created: Any = completion.get("created")
    response = {
        "id": rid,
        "object": "response",
        "created_at": float(created) if is_number(created) and created else time.time(),
        "model": next((m for m in (completion.get("model"), request.get("model")) if isinstance(m, str)), "unknown"),
        "output": output,
        "status": "incomplete" if reason else "completed",
        "incomplete_details": {"reason": reason} if reason else None,
        "error": None,
        "usage": usage_as_responses(completion.get("usage")),
        **_echo(request),
    }
    tier = completion.get("service_tier")
    if tier in _SERVICE_TIERS:
        response["service_tier"] = tier
    if isinstance(completion.get("provider"), str):
        response["provider"] = completion["provider"]
    return response


def _echo(request: dict) -> dict[str, Any]:
    """The Response fields that echo the request (the rest of OpenAI's Response model)."""
    get = request.get
    text = get("text")
    tier = get("service_tier")
    return {
        "instructions": get("instructions"),
        "tools": get("tools") or [],
        "tool_choice": get("tool_choice") or "auto",
        "temperature": get("temperature"),
        "top_p": get("top_p"),
        "max_output_tokens": get("max_output_tokens"),
        "parallel_tool_calls": get("parallel_tool_calls") is not False,
        "metadata": get("metadata") or {},
        "background": False,  # answered at once, never in the background
        "conversation": None,  # stateless: a conversation is refused
        "max_tool_calls": get("max_tool_calls"),
        "previous_response_id": None,  # stateless: refused too
        "prompt": get("prompt"),
        "prompt_cache_key": get("prompt_cache_key"),
        "reasoning": get("reasoning"),
        "safety_identifier": get("safety_identifier"),
        "service_tier": tier if tier in _SERVICE_TIERS else None,
        "text": text if isinstance(text, dict) and text.get("format") else _TEXT_FORMAT,
        "top_logprobs": get("top_logprobs"),
        "truncation": get("truncation") or "disabled",
        "user": get("user"),
    }


def complete_response(response: dict, request: dict | None = None) -> dict:
    """``response`` (a Responses object from anywhere: an upstream, another model server)
    with every field of OpenAI's ``Response`` model: the missing ones echo ``request`` or
    take their defaults; ``created_at`` becomes a float and ``usage`` complete. Fields it
    has stay as they are; extra fields (``provider``) too. A new dict; the input is kept."""
    out = dict(response)
    if not _RESPONSE_FIELDS.issubset(out):  # an answer of ours has them all already
        for key, value in _echo(request or {}).items():
            out.setdefault(key, value)
    out.setdefault("object", "response")
    out.setdefault("error", None)
    out.setdefault("incomplete_details", None)
    out.setdefault("status", "completed")
    created: Any = out.get("created_at")
    out["created_at"] = float(created) if is_number(created) else time.time()
    if isinstance(out.get("usage"), dict):
        out["usage"] = complete_usage(out["usage"])
    return out


def _logprobs_to_responses(logprobs: Any) -> list[dict] | None:
    """A chat choice's ``logprobs`` -> an output_text part's: every token with its ``bytes``
    (computed where the provider left them out) and its ``top_logprobs``."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    return [_logprob(entry, top=True) for entry in content if isinstance(entry, dict)]


def _logprob(entry: dict, *, top: bool) -> dict:
    token = str(entry.get("token") or "")
    raw = entry.get("bytes")
    value: Any = entry.get("logprob")
    out: dict[str, Any] = {
        "token": token,
        "bytes": raw if isinstance(raw, list) else list(token.encode()),
        "logprob": float(value) if is_number(value) else 0.0,
    }
    if top:
        tops = entry.get("top_logprobs")
        out["top_logprobs"] = [_logprob(t, top=False) for t in tops or [] if isinstance(t, dict)]
    return out


def _logprobs_to_chat(parts: list[dict]) -> dict | None:
    """Output_text parts' ``logprobs`` -> a chat choice's ``logprobs`` (None when none came)."""
    entries = [e for part in parts for e in (part.get("logprobs") or []) if isinstance(e, dict)]
    if not entries and not any(isinstance(part.get("logprobs"), list) for part in parts):
        return None
    return {"content": [_logprob(e, top=True) for e in entries], "refusal": None}


def _split_reasoning(message: dict) -> tuple[str, str]:
    """(reasoning, text): the reasoning field, else the texts of OpenRouter's
    ``reasoning_details`` (sent alone by some providers), else a leading <think> block of
    the content."""
    reasoning = message.get("reasoning") or message.get("reasoning_content") or ""
    if not isinstance(reasoning, str):
        reasoning = ""
    if not reasoning and message.get("reasoning_details"):
        reasoning = _details_text(message["reasoning_details"])
    text = message.get("content") or ""
    if isinstance(text, list):
        text = _joined_text(text)
    if not isinstance(text, str):
        text = ""
    stripped = text.lstrip()
    if stripped.startswith("<think>"):
        thought, closed, tail = stripped[len("<think>") :].partition("</think>")
    elif not reasoning and "</think>" in text:
        # "...</think>answer": the chat template put <think> in the prompt (DeepSeek-R1,
        # Qwen3 on vLLM without a reasoning parser).
        thought, closed, tail = text.partition("</think>")
    else:
        return reasoning, text
    # No closing tag: the generation was cut short while thinking, there is no answer.
    return reasoning or thought.strip(), tail.lstrip() if closed else ""


def _details_text(details: Any) -> str:
    """The readable text of ``reasoning_details``: its ``reasoning.text`` and
    ``reasoning.summary`` entries (``reasoning.encrypted`` has none)."""
    if not isinstance(details, list):
        return ""
    texts = []
    for entry in details:
        if isinstance(entry, dict):
            text = entry.get("text") if entry.get("type") == "reasoning.text" else entry.get("summary")
            if isinstance(text, str):
                texts.append(text)
    return "".join(texts)


# --- chat request -> Responses request -----------------------------------------------------


def chat_to_responses_request(body: dict) -> dict:
    """Chat Completions request body -> Responses create params (for a Responses upstream).

    The first message, when system or developer, becomes ``instructions``. ``store``
    defaults to False: the upstream is used statelessly (OpenRouter rejects ``store: true``).
    Unknown fields pass through; ``None`` values and ``stream`` are dropped.
    """
    if body.get("n") not in (None, 1):
        raise InputError(f"n={body['n']!r} is not supported by a Responses upstream: send n=1")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError(f"messages must be a non-empty list, got {_clip(messages)}")
    params: dict[str, Any] = {}
    start = 0
    if isinstance(messages[0], dict) and messages[0].get("role") in ("system", "developer"):
        params["instructions"] = _text_of(messages[0].get("content"), "messages[0].content")
        start = 1
    items: list[dict] = []
    for i in range(start, len(messages)):
        items.extend(_message_to_items(messages[i], i))
    params["input"] = items
    if body.get("tools"):
        params["tools"] = [_tool_to_responses(tool, i) for i, tool in enumerate(body["tools"])]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        choice = {"type": "function", "name": choice["function"].get("name")}
    if choice is not None:
        params["tool_choice"] = choice
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens is not None:
        params["max_output_tokens"] = max_tokens
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type"):
        params["text"] = {"format": {"type": fmt["type"], **(fmt.get("json_schema") or {})}}
    if body.get("reasoning_effort") is not None and body.get("reasoning") is None:
        params["reasoning"] = {"effort": body["reasoning_effort"]}
    if body.get("logprobs") is True:
        include: list[Any] = body["include"] if isinstance(body.get("include"), list) else []
        params["include"] = [*include, LOGPROBS_INCLUDE] if LOGPROBS_INCLUDE not in include else include
    for key, value in body.items():
        if value is not None and key not in _CHAT_CONVERTED and key not in _CHAT_ONLY:
            params[key] = value
    params.setdefault("store", False)
    return params


def _message_to_items(message: Any, index: int) -> list[dict]:
    if not isinstance(message, dict):
        raise InputError(f"messages[{index}] must be an object, got {_clip(message)}")
    role = message.get("role")
    content = message.get("content")
    if role == "tool":
        output = content if isinstance(content, str) else _joined_text(content or [])
        call_id = message.get("tool_call_id")
        return [{"type": "function_call_output", "call_id": call_id, "output": output}]
    if role not in ("user", "system", "developer", "assistant"):
        raise InputError(f"messages[{index}] has role {role!r}: use system, developer, user, assistant or tool")
    items: list[dict] = []
    # Past reasoning (message.reasoning) is dropped, as in the other direction.
    if content or not message.get("tool_calls"):
        text_type = "output_text" if role == "assistant" else "input_text"
        converted = _content_to_responses(content, text_type)
        items.append({"type": "message", "role": role, "content": converted})
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        item = {"type": "function_call", "call_id": call.get("id"), "name": function.get("name")}
        item["arguments"] = _arguments(function)
        items.append(item)
    return items


def _content_to_responses(content: Any, text_type: str) -> Any:
    if content is None or isinstance(content, str):
        return content or ""
    parts: list[dict] = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            parts.append({"type": text_type, "text": part.get("text", "")})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            if isinstance(image, str):
                image = {"url": image}
            detail = image.get("detail") or "auto"
            parts.append({"type": "input_image", "image_url": image.get("url"), "detail": detail})
        else:
            parts.append(part)  # already Responses-shaped, or the upstream will say why not
    return parts


def _tool_to_responses(tool: dict, index: int) -> dict:
    function = tool.get("function")
    if tool.get("type") != "function" or not isinstance(function, dict):
        raise InputError(f"tools[{index}] has type {tool.get('type')!r}: only function tools are supported")
    flat = {"type": "function", "name": function.get("name")}
    for key in ("description", "parameters", "strict"):
        if function.get(key) is not None:
            flat[key] = function[key]
    flat.setdefault("parameters", _EMPTY_PARAMETERS)
    return flat


# --- Responses object -> chat completion ---------------------------------------------------


def responses_to_chat_response(response: dict) -> dict:
    """Responses object -> chat completion (for /v1/chat/completions over a Responses upstream).

    Raises ``UpstreamError`` for an error body, a ``failed`` response, or no ``output``.
    """
    if not isinstance(response, dict):
        raise _bad_response(response)
    _raise_if_error_body(response)
    output = response.get("output")
    if not isinstance(output, list):
        raise _bad_response(response)
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict] = []
    parts: list[dict] = []
    for item in output:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            found = [p for p in item.get("content") or [] if isinstance(p, dict) and p.get("type") in _TEXT_PARTS]
            texts.extend(part.get("text", "") for part in found)
            parts.extend(found)
        elif kind == "function_call":
            function = {"name": item.get("name"), "arguments": _arguments(item)}
            calls.append({"id": item.get("call_id"), "type": "function", "function": function})
        elif kind == "reasoning":
            # OpenAI puts reasoning in `summary`, vLLM in `content` (reasoning_text parts).
            parts = (item.get("summary") or []) + (item.get("content") or [])
            thoughts.extend(part["text"] for part in parts if part.get("text"))
        # Other output types (hosted tools) can't have been asked for: ignored.
    text = "".join(texts)
    message: dict[str, Any] = {"role": "assistant", "content": text or (None if calls else "")}
    if calls:
        message["tool_calls"] = calls
    if thoughts:
        message["reasoning"] = "\n\n".join(thoughts)
    reason = (response.get("incomplete_details") or {}).get("reason")
    finish = "tool_calls" if calls else _FINISH_BY_INCOMPLETE.get(reason, "stop") if isinstance(reason, str) else "stop"
    completion = {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": int(response.get("created_at") or time.time()),
        "model": response.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": _logprobs_to_chat(parts)}],
        "usage": usage_as_chat(response.get("usage")),
    }
    if isinstance(response.get("provider"), str):
        completion["provider"] = response["provider"]
    return completion


# --- shared ----------------------------------------------------------------------------------


def _raise_if_error_body(body: dict) -> None:
    """Raise the ``UpstreamError`` an error body (``{"error": {...}}``, any status) stands for."""
    error = error_object(body)
    if error is not None:
        raise classify_error(None, error)


def _bad_response(body: Any) -> UpstreamError:
    return UpstreamError(
        f"the upstream answer is not a completion: {_clip(body)}; retry, and check that the "
        "base URL points at an OpenAI-compatible API",
        kind="bad_response",
        retryable=True,
    )


def _arguments(holder: dict) -> str:
    arguments = holder.get("arguments")
    if arguments is None or arguments == "":
        return "{}"
    return arguments if isinstance(arguments, str) else dumps(arguments).decode()


def _is_text_parts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(part, dict) and part.get("type") in _TEXT_PARTS for part in value)


def _joined_text(parts: list) -> str:
    # "\n", as vLLM joins the text parts of one message: keeps two parts' words apart.
    return "\n".join(part.get("text", "") for part in parts if isinstance(part, dict))


def _text_of(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if _is_text_parts(value):
        return _joined_text(value)
    raise InputError(f"{where} must be text, got {_clip(value)}")


def _new_id() -> str:
    return f"resp_{secrets.token_hex(12)}"


def _clip(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
