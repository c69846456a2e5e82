"""Drive an OpenAI-compatible server with the official ``openai`` SDK and validate what it sends.

Runs inside an interop venv that has the SDK (never imported by pytest itself; Python >= 3.9,
no project imports)::

    .interop/openai-sdk/bin/python tests/interop/sdk_probe.py <base_url> <model> > report.json

For each check it records whether the SDK call worked and, on the raw HTTP bodies and SSE
events, every ``model_validate`` error of the SDK's own pydantic models (``ChatCompletion``,
``ChatCompletionChunk``, ``Response``, the ``ResponseStreamEvent`` union, ``Model``), plus
the event sequence next to the one OpenAI documents. The report is one JSON object:
``{"sdk_version": ..., "checks": {name: {"ok": bool, "errors": [str], "events": [str]}}}``.
"""

from __future__ import annotations

import json
import sys
import traceback
import typing
from typing import Any

import openai
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import ValidationError

try:  # openai >= 3 depends on httpx2 (same API) instead of httpx
    import httpx2 as httpx
except ImportError:  # pragma: no cover - openai 2.x (the NeMo Gym venv)
    import httpx

# With tools offered, the weather question gets a tool call; without tools, the plain one text.
WEATHER = "what's it like in sf?"
PLAIN = "say hello"
CHAT_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
RESPONSES_TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": False,
    }
]


def _event_models() -> dict[str, Any]:
    """Event ``type`` -> its model class, from the SDK's ``ResponseStreamEvent`` union."""
    union = ResponseStreamEvent
    while typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    models = {}
    for cls in typing.get_args(union):
        (literal,) = typing.get_args(cls.model_fields["type"].annotation)
        models[literal] = cls
    return models


EVENT_MODELS = _event_models()

# The lifecycle and per-item event sequences of a streamed response, as OpenAI documents them
# (https://platform.openai.com/docs/api-reference/responses-streaming) and the SDK's own
# ResponseStreamState expects; "+" marks an event that repeats once or more.
RESPONSE_HEAD = ["response.created", "response.in_progress"]
RESPONSE_MESSAGE = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta+",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
]
RESPONSE_FUNCTION_CALL = [
    "response.output_item.added",
    "response.function_call_arguments.delta+",
    "response.function_call_arguments.done",
    "response.output_item.done",
]
RESPONSE_TAIL = ["response.completed"]


def _errors(exc: ValidationError, where: str) -> list[str]:
    return [f"{where}: {'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r:.80})" for e in exc.errors()]


def _validate(model: Any, data: Any, where: str) -> list[str]:
    try:
        model.model_validate(data)
    except ValidationError as exc:
        return _errors(exc, where)
    return []


def _collapse(types: list[str]) -> list[str]:
    """Consecutive repeats of a delta event become one ``<type>+``."""
    out: list[str] = []
    for t in types:
        marked = t + "+" if t.endswith(".delta") else t
        if out and out[-1] == marked and marked.endswith("+"):
            continue
        out.append(marked)
    return out


def expected_response_events(output: list[dict[str, Any]]) -> list[str]:
    seq = list(RESPONSE_HEAD)
    for item in output:
        seq += RESPONSE_FUNCTION_CALL if item.get("type") == "function_call" else RESPONSE_MESSAGE
    return seq + RESPONSE_TAIL


def read_sse(response: httpx.Response) -> tuple[list[dict[str, Any]], list[str]]:
    """SSE events ``{"event": name or None, "data": text}`` and framing problems."""
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    ctype = response.headers.get("content-type", "")
    if not ctype.startswith("text/event-stream"):
        problems.append(f"content-type is {ctype!r}, not text/event-stream")
    event: dict[str, Any] = {"event": None, "data": []}
    for line in response.iter_lines():
        if line == "":
            if event["data"]:
                events.append({"event": event["event"], "data": "\n".join(event["data"])})
            event = {"event": None, "data": []}
        elif line.startswith(":"):
            continue  # comment / keep-alive
        elif line.startswith("event:"):
            event["event"] = line[6:].strip()
        elif line.startswith("data:"):
            event["data"].append(line[5:].lstrip(" "))
        else:
            problems.append(f"not an SSE line: {line[:120]!r}")
    if event["data"]:
        events.append({"event": event["event"], "data": "\n".join(event["data"])})
    return events, problems


class Probe:
    def __init__(self, base_url: str, model: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.client = openai.OpenAI(base_url=self.base_url, api_key="sk-interop-probe", max_retries=0, timeout=30)
        self.http = httpx.Client(timeout=30, headers={"Authorization": "Bearer sk-interop-probe"})
        self.checks: dict[str, dict[str, Any]] = {}

    def run(self, name: str, fn: Any) -> None:
        result: dict[str, Any] = {"ok": False, "errors": [], "events": []}
        try:
            fn(result)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            result["errors"].append(f"{type(exc).__name__}: {exc}"[:600])
            result["traceback"] = traceback.format_exc(limit=3)[-1500:]
        result["ok"] = not result["errors"]
        self.checks[name] = result

    # ------------------------------------------------------------------ models

    def models_list(self, r: dict[str, Any]) -> None:
        ids = [m.id for m in self.client.models.list()]
        if not ids:
            r["errors"].append("models.list() returned no models")
        raw = self.http.get(self.base_url + "/models")
        raw.raise_for_status()
        for i, item in enumerate(raw.json().get("data", [])):
            r["errors"] += _validate(Model, item, f"data[{i}]")

    # ------------------------------------------------------------------ chat

    def _chat_body(self, text: str, **extra: Any) -> dict[str, Any]:
        body = {"model": self.model, "messages": [{"role": "user", "content": text}], **extra}
        return {**body, "tools": CHAT_TOOLS} if text == WEATHER else body

    def chat(self, r: dict[str, Any], text: str) -> None:
        completion = self.client.chat.completions.create(**self._chat_body(text))
        if not completion.choices:
            r["errors"].append("SDK: completion has no choices")
        raw = self.http.post(self.base_url + "/chat/completions", json=self._chat_body(text))
        raw.raise_for_status()
        r["errors"] += _validate(ChatCompletion, raw.json(), "body")

    def chat_stream(self, r: dict[str, Any], text: str) -> None:
        chunks = list(self.client.chat.completions.create(**self._chat_body(text), stream=True))
        if not chunks:
            r["errors"].append("SDK: stream=True gave no chunks")
        body = self._chat_body(text, stream=True, stream_options={"include_usage": True})
        with self.http.stream("POST", self.base_url + "/chat/completions", json=body) as raw:
            raw.raise_for_status()
            events, problems = read_sse(raw)
        r["errors"] += problems
        if not events or events[-1]["data"] != "[DONE]":
            r["errors"].append("the stream does not end with data: [DONE]")
        ids = set()
        for i, ev in enumerate(events):
            if ev["data"] == "[DONE]":
                r["events"].append("[DONE]")
                continue
            data = json.loads(ev["data"])
            ids.add(data.get("id"))
            choice = (data.get("choices") or [{}])[0]
            delta = choice.get("delta") or {}
            kind = (
                "usage"
                if not data.get("choices")
                else "finish"
                if choice.get("finish_reason")
                else "role"
                if "role" in delta
                else "tool_calls"
                if delta.get("tool_calls")
                else "content"
            )
            r["events"].append(kind)
            r["errors"] += _validate(ChatCompletionChunk, data, f"chunk[{i}]")
        if len(ids) > 1:
            r["errors"].append(f"chunks carry different ids: {sorted(map(str, ids))}")
        # The SDK's accumulating helper (ChatCompletionStreamState) must rebuild the message.
        with self.client.chat.completions.stream(**self._chat_body(text)) as stream:
            for _ in stream:
                pass
            final = stream.get_final_completion()
        if not final.choices:
            r["errors"].append("SDK stream helper: final completion has no choices")

    # ------------------------------------------------------------------ responses

    def _responses_body(self, text: str, **extra: Any) -> dict[str, Any]:
        body = {"model": self.model, "input": text, **extra}
        return {**body, "tools": RESPONSES_TOOLS} if text == WEATHER else body

    def responses(self, r: dict[str, Any], text: str) -> None:
        response = self.client.responses.create(**self._responses_body(text))
        if not response.output:
            r["errors"].append("SDK: response has no output")
        raw = self.http.post(self.base_url + "/responses", json=self._responses_body(text))
        raw.raise_for_status()
        r["errors"] += _validate(Response, raw.json(), "body")

    def responses_stream(self, r: dict[str, Any], text: str) -> None:
        events_sdk = list(self.client.responses.create(**self._responses_body(text), stream=True))
        if not events_sdk:
            r["errors"].append("SDK: stream=True gave no events")
        with self.http.stream(
            "POST", self.base_url + "/responses", json=self._responses_body(text, stream=True)
        ) as raw:
            raw.raise_for_status()
            events, problems = read_sse(raw)
        r["errors"] += problems
        final_output: list[dict[str, Any]] = []
        last_seq = -1
        for i, ev in enumerate(events):
            if ev["data"] == "[DONE]":
                continue
            data = json.loads(ev["data"])
            kind = data.get("type")
            r["events"].append(kind)
            if ev["event"] is not None and ev["event"] != kind:
                r["errors"].append(f"event[{i}]: SSE 'event: {ev['event']}' but data type {kind!r}")
            seq = data.get("sequence_number")
            if isinstance(seq, int):
                if seq <= last_seq:
                    r["errors"].append(f"event[{i}] {kind}: sequence_number {seq} after {last_seq}")
                last_seq = seq
            model = EVENT_MODELS.get(kind)
            if model is None:
                r["errors"].append(f"event[{i}]: {kind!r} is not a ResponseStreamEvent type")
            else:
                r["errors"] += _validate(model, data, f"event[{i}] {kind}")
            if kind == "response.completed":
                final_output = (data.get("response") or {}).get("output") or []
                r["errors"] += _validate(Response, data.get("response"), f"event[{i}] {kind}.response")
        got, want = _collapse(r["events"]), expected_response_events(final_output)
        if got != want:
            r["errors"].append(f"event sequence {got} differs from the documented {want}")
        # The SDK's accumulating helper (ResponseStreamState) checks order and identities.
        with self.client.responses.stream(**self._responses_body(text)) as stream:
            for _ in stream:
                pass
            final = stream.get_final_response()
        if not final.output:
            r["errors"].append("SDK stream helper: final response has no output")

    def all(self) -> dict[str, Any]:
        self.run("models_list", self.models_list)
        for label, text in (("tool_call", WEATHER), ("text", PLAIN)):
            self.run(f"chat_{label}", lambda r, t=text: self.chat(r, t))
            self.run(f"chat_stream_{label}", lambda r, t=text: self.chat_stream(r, t))
            self.run(f"responses_{label}", lambda r, t=text: self.responses(r, t))
            self.run(f"responses_stream_{label}", lambda r, t=text: self.responses_stream(r, t))
        return {"sdk_version": openai.__version__, "base_url": self.base_url, "checks": self.checks}


def main() -> None:
    base_url, model = sys.argv[1], sys.argv[2]
    json.dump(Probe(base_url, model).all(), sys.stdout, indent=1)


if __name__ == "__main__":
    main()
