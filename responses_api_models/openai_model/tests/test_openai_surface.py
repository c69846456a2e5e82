"""The adapter's OpenAI surface and its upstream streaming: ``stream: true`` to its callers
(rendered by the ModelServer base), ``GET /v1/models``, ``upstream_stream`` (assembled,
retried when broken), the total deadline, cancellation when the caller hangs up, what a
request cost beyond its answer, and URLs with credentials never shown."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx
import pytest

from nemo_gym_cli.errors import ConfigError, UpstreamError
from nemo_gym_cli.openai.streams import assemble_responses
from nemo_gym_cli.server import Request, Server, route
from responses_api_models.openai_model.tests.test_openai_model_app import model_server, openai_model, post
from support.emulator import CHAT, KEY, MODEL, RESPONSES_PARAMS, emulated, emulator, stats
from support.servers import serving
from support.upstream import RecordingProxy, refusing_url

RESPONSE_EVENTS_TOOL = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.function_call_arguments.delta",
    "response.function_call_arguments.done",
    "response.output_item.done",
    "response.completed",
]


def sse(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]


# --- stream: true to our callers, /v1/models --------------------------------------------------


@pytest.mark.parametrize("upstream_api", ["chat_completions", "responses"])
def test_a_streamed_responses_request_gets_the_documented_events_of_the_same_answer(upstream_api: str) -> None:
    with emulated() as upstream, model_server(upstream, upstream_api=upstream_api) as url:
        plain = post(url, "/v1/responses", RESPONSES_PARAMS).json()
        streamed = post(url, "/v1/responses", {**RESPONSES_PARAMS, "stream": True})
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse(streamed.text)
    assert [e["type"] for e in events] == RESPONSE_EVENTS_TOOL
    assert [e["sequence_number"] for e in events] == list(range(7))
    assert f"event: {events[0]['type']}\ndata: " in streamed.text
    final = assemble_responses(streamed.content)
    assert final["output"][0]["arguments"] == plain["output"][0]["arguments"] == '{"city":"San Francisco"}'
    assert events[4]["name"] == "get_weather"  # function_call_arguments.done names the function
    assert final["usage"]["cost"] == plain["usage"]["cost"] and final["usage"]["retries"] == {}


def test_a_streamed_chat_request_gets_chunks_then_the_usage_then_done() -> None:
    with emulated() as upstream, model_server(upstream) as url:
        body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        streamed = post(url, "/v1/chat/completions", body)
        without_usage = post(url, "/v1/chat/completions", {**CHAT, "stream": True})
    chunks = sse(streamed.text)
    assert streamed.text.endswith("data: [DONE]\n\n")
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["cost"] > 0
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["choices"] for c in sse(without_usage.text))  # no usage chunk unless asked


def test_models_lists_the_configured_model_its_fallbacks_and_the_allowed_models_in_openai_s_shape() -> None:
    fields = {"fallback_models": ["openai/gpt-4o-mini"], "allowed_models": ["anthropic/claude-3.5-sonnet"]}
    with emulated() as upstream:
        with model_server(upstream, **fields, preflight=False) as url:
            listed = httpx.get(url + "/v1/models", timeout=10).json()
    assert listed["object"] == "list"
    assert [m["id"] for m in listed["data"]] == [MODEL, "openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"]
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in listed["data"])
    assert [m["owned_by"] for m in listed["data"]] == ["emulator", "openai", "anthropic"]


def test_a_failed_streamed_request_is_the_json_envelope() -> None:
    with emulated(reject_keys={KEY: 401}) as upstream, model_server(upstream, preflight=False) as url:
        resp = post(url, "/v1/responses", {**RESPONSES_PARAMS, "stream": True})
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "auth"


# --- upstream_stream ----------------------------------------------------------------------------


@pytest.mark.parametrize("upstream_api", ["chat_completions", "responses"])
def test_upstream_stream_asks_for_a_stream_and_assembles_the_same_answer_and_cost(upstream_api: str) -> None:
    factories = {
        "emulator": emulator(),
        "proxy": RecordingProxy.from_spec,
        "model": lambda spec: openai_model(
            spec.server_urls["proxy"] + "/api/v1", upstream_stream=True, upstream_api=upstream_api
        )(spec),
    }
    with serving(factories) as stack:
        answer = post(stack.urls["model"], "/v1/responses", RESPONSES_PARAMS).json()
        chat = post(stack.urls["model"], "/v1/chat/completions", CHAT).json()
        billed = stats(stack.urls["emulator"])
        sent = [r["json"] for r in stack.servers["proxy"].posts()]
    assert all(s["stream"] is True for s in sent)
    if upstream_api == "chat_completions":
        assert all(s["stream_options"] == {"include_usage": True} for s in sent)
    assert answer["output"][0]["name"] == "get_weather" and answer["model"] == MODEL
    assert chat["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert answer["usage"]["cost"] + chat["usage"]["cost"] == pytest.approx(billed["cost"])  # from the final chunk
    assert answer["usage"]["input_tokens"] + chat["usage"]["prompt_tokens"] == billed["prompt_tokens"]


@pytest.mark.parametrize("upstream_api", ["chat_completions", "responses"])
def test_a_mid_stream_error_and_a_stream_cut_short_are_retried_and_counted(upstream_api: str) -> None:
    with emulated(fault_schedule={1: "error_200", 2: "cut", 3: "ok"}) as upstream:
        with model_server(upstream, upstream_stream=True, upstream_api=upstream_api, preflight=False) as url:
            answer = post(url, "/v1/responses", RESPONSES_PARAMS).json()
        billed = stats(upstream)
    assert answer["output"][0]["name"] == "get_weather"
    assert answer["usage"]["retries"] == {"server": 1, "bad_response": 1}
    assert answer["usage"]["unpriced_calls"] == 1  # the cut stream was billed; its cost never came
    assert billed["completions"] == 2 and billed["completion_requests"] == 3


def test_a_malformed_body_with_a_generation_id_is_an_unpriced_call() -> None:
    with emulated(fault_schedule={1: "malformed"}) as upstream, model_server(upstream, preflight=False) as url:
        answer = post(url, "/v1/responses", RESPONSES_PARAMS).json()
    assert answer["usage"]["retries"] == {"bad_response": 1} and answer["usage"]["unpriced_calls"] == 1


class BrokenUpstream(Server):
    """Answers every completion with a 200 whose choice finished with "error", usage and cost
    included (OpenRouter can bill a generation that failed)."""

    @route("POST", "/api/v1/chat/completions")
    async def complete(self, request: Request) -> dict[str, Any]:
        usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13, "cost": 0.002}
        choice = {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "error"}
        return {"id": "gen-x", "choices": [choice], "usage": usage}


def test_the_error_envelope_carries_what_failed_attempts_reported_and_their_retries() -> None:
    factories = {
        "broken": lambda spec: BrokenUpstream(spec=spec),
        "model": lambda spec: openai_model(spec.server_urls["broken"] + "/api/v1", preflight=False, max_attempts=3)(
            spec
        ),
    }
    with serving(factories) as stack:
        resp = post(stack.urls["model"], "/v1/responses", RESPONSES_PARAMS)
    assert resp.status_code == 502 and resp.json()["error"]["retryable"] is False
    usage = resp.json()["usage"]
    assert usage["cost"] == pytest.approx(0.006) and usage["input_tokens"] == 30 and usage["output_tokens"] == 9
    assert usage["retries"] == {"server": 2} and usage["unpriced_calls"] == 0


# --- deadlines and callers that hang up -------------------------------------------------------


def test_a_body_dripping_a_byte_a_second_ends_at_the_total_deadline() -> None:
    with emulated(fault_rate=1.0, fault_kinds=["drip"], drip_interval_s=1.0) as upstream:
        fields = {"preflight": False, "total_timeout_s": 1.0, "read_timeout_s": 30.0, "max_attempts": 1}
        with model_server(upstream, **fields) as url:
            started = time.monotonic()
            resp = post(url, "/v1/responses", RESPONSES_PARAMS)
            took = time.monotonic() - started
    assert resp.status_code == 504 and resp.json()["error"]["type"] == "timeout"
    assert "total_timeout_s" in resp.json()["error"]["message"]
    assert took < 10  # the whole body would take minutes at a byte a second


def test_the_model_server_cancels_its_upstream_request_when_its_caller_hangs_up() -> None:
    with emulated(latency_ms=10_000) as upstream, model_server(upstream, preflight=False) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/responses", json=RESPONSES_PARAMS, timeout=0.5)
        deadline = time.monotonic() + 8
        while stats(upstream)["cancelled"] < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        counted = stats(upstream)
    assert counted["cancelled"] == 1 and counted["completions"] == 0  # the emulator saw it go away


# --- URLs with credentials ----------------------------------------------------------------------


def test_a_key_or_password_in_the_base_url_is_in_no_message_log_line_or_answer(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = ("s3cret-PASSWORD", "sk-in-query-0123456789")
    with refusing_url("") as closed:
        base = closed.replace("http://", f"http://proxyuser:{secrets[0]}@") + f"/api/v1?key={secrets[1]}"
        fields = {"openai_api_key": "", "preflight": False, "max_attempts": 2}
        with serving({"model": openai_model(base, **fields)}) as stack:
            resp = post(stack.urls["model"], "/v1/responses", RESPONSES_PARAMS)
            listed = httpx.get(stack.urls["model"] + "/v1/models", timeout=10)
        with pytest.raises(UpstreamError) as preflight:  # the start-up check's message too
            with serving({"model": openai_model(base, openai_api_key="", preflight_timeout_s=0.2)}):
                pass
        with pytest.raises(ConfigError) as both:  # credentials in the URL and a key: one line, redacted
            with serving({"model": openai_model(base)}):
                pass
    assert resp.status_code == 502 and "cannot reach" in resp.json()["error"]["message"]
    assert "proxyuser" not in resp.json()["error"]["message"]
    shown = "\n".join([resp.text, listed.text, caplog.text, str(preflight.value), str(both.value)])
    for secret in secrets:
        assert secret not in shown, secret
    assert "://<redacted>@127.0.0.1" in resp.json()["error"]["message"]
    assert "?key=<redacted>" in resp.json()["error"]["message"]
    assert "carries credentials" in str(both.value)
