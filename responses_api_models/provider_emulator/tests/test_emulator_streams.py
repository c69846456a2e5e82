"""The emulator's newer surface: streamed /responses, GET /models/{id}, structured outputs,
and the drip and cut faults; what a client that hangs up leaves in its stats."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.server import asgi
from responses_api_models.provider_emulator.app import ProviderEmulator
from responses_api_models.provider_emulator.structured import minimal_instance, structured
from support.emulator import KEY, RESPONSES_PARAMS, WEATHER_TOOL, emulated, stats

AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "openai/gpt-4o-mini"


def client(**fields: Any) -> TestClient:
    return TestClient(asgi(ProviderEmulator.from_fields(fields)), headers=AUTH)


def events_of(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of every SSE event; comments skipped."""
    out = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        name = next((line[7:] for line in lines if line.startswith("event: ")), "")
        data = next(line[6:] for line in lines if line.startswith("data: "))
        out.append((name, json.loads(data) if data != "[DONE]" else {}))
    return out


# --- streamed /responses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "item_events"),
    [
        (
            RESPONSES_PARAMS,
            [
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
            ],
        ),
        (
            {"input": "say hello"},
            ["response.output_item.added", "response.content_part.added", "response.output_text.delta+"]
            + ["response.output_text.done", "response.content_part.done", "response.output_item.done"],
        ),
    ],
)
def test_a_streamed_responses_answer_is_the_documented_event_sequence(params: dict, item_events: list) -> None:
    with client() as c:
        plain = c.post("/api/v1/responses", json={"model": MODEL, **params}).json()
        resp = c.post("/api/v1/responses", json={"model": MODEL, **params, "stream": True})
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.text.startswith(": OPENROUTER PROCESSING\n\n")
    events = events_of(resp.text)
    kinds = [data["type"] for _, data in events]
    words = len(plain["output"][0].get("content", [{}])[0].get("text", "").split(" "))
    expected = [k for e in item_events for k in ([e[:-1]] * words if e.endswith("+") else [e])]
    assert kinds == ["response.created", "response.in_progress", *expected, "response.completed"]
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    created, final = events[0][1]["response"], events[-1][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"] == final["id"]
    assert final["output"][0]["type"] == plain["output"][0]["type"]
    assert final["usage"] == plain["usage"] and final["usage"]["input_tokens_details"]["cache_write_tokens"] == 0
    deltas = "".join(d.get("delta", "") for _, d in events if d["type"].endswith(".delta"))
    item = final["output"][0]
    assert deltas == (item.get("arguments") or item["content"][0]["text"])


def test_a_streamed_responses_error_200_fault_is_an_error_event() -> None:
    with client(fault_schedule={1: "error_200"}) as c:
        resp = c.post("/api/v1/responses", json={"model": MODEL, "input": "hi", "stream": True})
        counted = c.get("/emulator/stats").json()
    kinds = [data["type"] for _, data in events_of(resp.text)]
    assert kinds == ["response.created", "response.in_progress", "error"]
    assert counted["completions"] == 0


# --- GET /models/{id} ----------------------------------------------------------------------------


def test_one_model_is_served_by_its_id_with_the_slash_and_a_variant_and_an_unknown_one_is_a_404() -> None:
    with client() as c:
        one = c.get("/api/v1/models/openai/gpt-4o-mini")
        also = c.get("/v1/models/meta-llama/llama-3.3-70b-instruct:free")
        variant = c.get("/api/v1/models/openai/gpt-4o-mini:nitro")
        unknown = c.get("/api/v1/models/acme/nothing")
        listed = c.get("/api/v1/models").json()["data"]
    assert one.status_code == 200 and one.json() == next(m for m in listed if m["id"] == MODEL)
    assert {"id", "object", "created", "owned_by"} <= set(one.json()) and one.json()["owned_by"] == "openai"
    assert also.json()["id"] == "meta-llama/llama-3.3-70b-instruct:free"
    assert variant.json()["id"] == MODEL
    assert unknown.status_code == 404 and "acme/nothing is not a valid model ID" in unknown.json()["error"]["message"]


# --- structured outputs -------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 2},
        "temperature_c": {"type": "integer", "minimum": -50},
        "conditions": {"type": "array", "items": {"$ref": "#/$defs/condition"}, "minItems": 1},
        "note": {"type": "string"},
    },
    "required": ["city", "temperature_c", "conditions"],
    "$defs": {"condition": {"enum": ["sunny", "rainy"]}},
}


def test_a_json_schema_response_format_gets_a_minimal_instance_of_the_schema() -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "weather as json"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": SCHEMA, "strict": True}},
    }
    with client() as c:
        chat = c.post("/api/v1/chat/completions", json=body).json()
        text = {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}}
        responses = c.post("/api/v1/responses", json={"model": MODEL, "input": "weather", "text": text}).json()
        as_object = c.post("/api/v1/chat/completions", json={**body, "response_format": {"type": "json_object"}})
    expected = {"city": "xx", "temperature_c": -50, "conditions": ["sunny"]}
    assert json.loads(chat["choices"][0]["message"]["content"]) == expected
    assert json.loads(responses["output"][0]["content"][0]["text"]) == expected
    assert responses["text"] == text  # echoed
    assert json.loads(as_object.json()["choices"][0]["message"]["content"]) == {}


def test_a_scripted_text_that_is_json_is_the_structured_answer() -> None:
    script = json.dumps([{"text": '{"city": "Oslo", "temperature_c": 3, "conditions": ["rainy"]}'}])
    body = {
        "model": MODEL,
        "input": "weather",
        "metadata": {"emulator_script": script},
        "text": {"format": {"type": "json_schema", "name": "w", "schema": SCHEMA}},
    }
    with client() as c:
        answer = c.post("/api/v1/responses", json=body).json()
    assert json.loads(answer["output"][0]["content"][0]["text"])["city"] == "Oslo"


def test_tool_calls_are_not_turned_into_json() -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "what's it like in sf?"}],
        "tools": [WEATHER_TOOL],
        "response_format": {"type": "json_object"},
    }
    with client() as c:
        message = c.post("/api/v1/chat/completions", json=body).json()["choices"][0]["message"]
    assert message["tool_calls"][0]["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string"}, ""),
        ({"type": ["null", "number"], "exclusiveMinimum": 0}, 1),
        ({"type": "boolean"}, False),
        ({"anyOf": [{"type": "integer", "minimum": 3}, {"type": "string"}]}, 3),
        ({"allOf": [{"properties": {"a": {"const": 1}}, "required": ["a"]}, {"required": []}]}, {"a": 1}),
        ({"type": "object", "properties": {"b": {"default": "d"}}, "required": ["b"]}, {"b": "d"}),
        ({"items": {"type": "integer"}, "minItems": 2}, [0, 0]),
    ],
)
def test_minimal_instances_satisfy_their_schema(schema: dict, value: Any) -> None:
    assert minimal_instance(schema) == value


def test_a_structured_answer_keeps_text_that_parses_and_replaces_text_that_does_not() -> None:
    fmt = {"type": "json_schema", "schema": {"type": "object", "required": ["a"], "properties": {"a": {}}}}
    assert structured('{"a": 1}', fmt) == '{"a": 1}'
    assert json.loads(structured("It is sunny.", fmt)) == {"a": ""}
    assert structured("[1]", {"type": "json_object", "schema": {}}) == "{}"


# --- drip, cut, and clients that hang up --------------------------------------------------------


def _asgi_messages(server: ProviderEmulator, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive the app with one request; every ASGI message it sends back."""
    sent: list[dict[str, Any]] = []
    raw = json.dumps(body).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"authorization", f"Bearer {KEY}".encode()), (b"content-type", b"application/json")],
        "query_string": b"",
    }
    state = {"sent": False}

    async def receive() -> dict[str, Any]:
        if not state["sent"]:
            state["sent"] = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asgi(server)(scope, receive, send))
    return sent


@pytest.mark.parametrize("stream", [False, True])
def test_a_drip_fault_sends_the_whole_answer_one_byte_at_a_time(stream: bool) -> None:
    server = ProviderEmulator.from_fields({"fault_schedule": {1: "drip", 2: "ok"}, "drip_interval_s": 0})
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    dripped = _asgi_messages(server, "/api/v1/chat/completions", body)
    whole = _asgi_messages(server, "/api/v1/chat/completions", body)
    pieces = [m["body"] for m in dripped if m["type"] == "http.response.body" and m.get("body")]
    normal = b"".join(m.get("body", b"") for m in whole if m["type"] == "http.response.body")
    skip = 1 if stream else 0  # the keep-alive comment comes in one piece
    assert all(len(p) == 1 for p in pieces[skip:]) and len(pieces) > 100
    joined = b"".join(pieces)
    if stream:  # ids and timestamps differ between two answers: compare shapes
        assert joined.endswith(b"data: [DONE]\n\n") and joined.count(b"\n\n") == normal.count(b"\n\n")
    else:
        assert json.loads(joined)["choices"][0]["message"] == json.loads(normal)["choices"][0]["message"]
    assert server.stats.faults == {"drip": 1} and server.stats.as_dict()["completions"] == 2


def test_a_cut_fault_stops_a_stream_before_its_end_and_a_body_halfway() -> None:
    with client(fault_schedule={1: "cut", 2: "cut", 3: "cut"}) as c:
        chat = c.post(
            "/api/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "stream": True},
        )
        responses = c.post("/api/v1/responses", json={"model": MODEL, "input": "hello", "stream": True})
        plain = c.post(
            "/api/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}
        )
        counted = c.get("/emulator/stats").json()
    assert chat.status_code == 200 and "[DONE]" not in chat.text and chat.text.count("data: {") >= 2
    assert "response.created" in responses.text and "response.completed" not in responses.text
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain.text)
    assert plain.headers["x-generation-id"].startswith("gen-")
    assert counted["faults"] == {"cut": 3} and counted["completions"] == 3  # generated, so billed


def test_a_client_that_hangs_up_is_counted_as_cancelled() -> None:
    with emulated(latency_ms=5000) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/api/v1/responses", json={"model": MODEL, "input": "hi"}, headers=AUTH, timeout=0.3)
        deadline = time.monotonic() + 5
        while stats(url)["cancelled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        counted = stats(url)
    assert counted["cancelled"] == 1 and counted["completions"] == 0
