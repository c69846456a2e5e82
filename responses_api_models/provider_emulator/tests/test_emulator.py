"""The provider emulator over HTTP, through the app production serves (``asgi(server)``
under Starlette's TestClient, or on loopback where timing or sockets matter): shapes,
costs, routing, scripts, accuracy, latency, errors in the kernel's envelope, faults,
streaming, its config, and ``ng_emulator``."""

from __future__ import annotations

import asyncio
import json
import math
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server import ServerSpec, asgi
from responses_api_models.provider_emulator.app import ProviderEmulator
from responses_api_models.provider_emulator.cli import main
from support.cli import BIN, run_cli
from support.emulator import KEY, WEATHER_TOOL, emulated, stats
from support.ports import bound_socket

AUTH = {"Authorization": f"Bearer {KEY}"}
SF = [{"role": "user", "content": "what's it like in sf?"}]
SPEC = ServerSpec(name="provider_emulator", server_type="responses_api_models", implementation="provider_emulator")


@contextmanager
def client(key: str | None = KEY, **fields: Any) -> Iterator[TestClient]:
    """The emulator with these config fields, its lifespan run; requests carry ``key``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with TestClient(asgi(ProviderEmulator.from_fields(fields)), headers=headers) as c:
        yield c


def chat(c: TestClient, prefix: str = "/api/v1", **body: Any) -> httpx.Response:
    body.setdefault("model", "openai/gpt-4o-mini")
    body.setdefault("messages", SF)
    return c.post(f"{prefix}/chat/completions", json=body)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    """The error of an answer in the kernel's envelope (checked to be one)."""
    body = resp.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert {"message", "type", "code", "retryable"} <= set(error), error
    assert error["code"] == resp.status_code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and isinstance(error["retryable"], bool)
    return error


def content_of(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return resp.json()["choices"][0]["message"]["content"]


def tool_call_turn(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return {"role": "assistant", "content": "", "tool_calls": [call]}


# --- answers ----------------------------------------------------------------------------------


def test_a_chat_completion_has_openrouter_shape_and_costs_tokens_times_price() -> None:
    with client() as c:
        resp = chat(c, tools=[WEATHER_TOOL])
    assert resp.status_code == 200
    body = resp.json()
    assert body["id"].startswith("gen-")
    assert resp.headers["X-Generation-Id"] == body["id"]
    assert body["object"] == "chat.completion"
    assert body["model"] == "openai/gpt-4o-mini"
    assert body["provider"] == "OpenAI"
    assert isinstance(body["created"], int)
    (choice,) = body["choices"]
    assert choice["index"] == 0
    assert choice["finish_reason"] == "tool_calls"
    assert choice["native_finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["role"] == "assistant"
    assert message["reasoning"] is None
    (call,) = message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "San Francisco"}

    usage = body["usage"]
    prompt_chars = len(SF[0]["content"]) + len(json.dumps([WEATHER_TOOL], separators=(",", ":")))
    completion_chars = len("get_weather") + len(call["function"]["arguments"])
    assert usage["prompt_tokens"] == math.ceil(prompt_chars / 4)
    assert usage["completion_tokens"] == math.ceil(completion_chars / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["cost"] == usage["prompt_tokens"] * 1.5e-7 + usage["completion_tokens"] * 6e-7
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["is_byok"] is False
    assert usage["cost_details"] == {"upstream_inference_cost": None}


def test_both_prefixes_serve_and_a_tool_output_turn_is_answered_with_text() -> None:
    messages = [
        *SF,
        tool_call_turn("get_weather", '{"city":"San Francisco"}'),
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"city": "San Francisco", "condition": "sunny", "temperature": 18}',
        },
    ]
    with client() as c:
        resp = chat(c, "/v1", messages=messages, tools=[WEATHER_TOOL])
    assert resp.status_code == 200
    (choice,) = resp.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "In San Francisco it is sunny, 18 °C."
    assert "tool_calls" not in choice["message"]


def test_an_unknown_model_is_a_404_naming_it() -> None:
    with client() as c:
        resp = chat(c, model="nobody/nothing")
    assert resp.status_code == 404
    assert error_of(resp)["message"] == "nobody/nothing is not a valid model ID"


def test_a_routing_variant_suffix_and_a_gateway_prefix_resolve_to_the_model() -> None:
    with client() as c:
        nitro = chat(c, model="openai/gpt-4o-mini:nitro")
        prefixed = chat(c, model="openrouter:anthropic/claude-3.5-sonnet")
    assert nitro.json()["model"] == "openai/gpt-4o-mini"
    assert prefixed.json()["model"] == "anthropic/claude-3.5-sonnet"


def test_tools_sent_to_a_model_without_tool_support_are_a_404() -> None:
    with client() as c:
        resp = chat(c, model="gryphe/mythomax-l2-13b", tools=[WEATHER_TOOL])
        without_tools = chat(c, model="gryphe/mythomax-l2-13b")
    assert resp.status_code == 404
    assert error_of(resp)["message"].startswith("No endpoints found that support tool use.")
    assert without_tools.status_code == 200


def test_a_prompt_over_the_context_length_is_a_400() -> None:
    long = [{"role": "user", "content": "x" * 4 * 4000}]
    with client() as c:
        resp = chat(c, model="gryphe/mythomax-l2-13b", messages=long, max_tokens=200)
    assert resp.status_code == 400
    error = error_of(resp)
    assert error["message"].startswith("This endpoint's maximum context length is 4096 tokens.")
    assert "4200 tokens (4000 of text input, 200 in the output)" in error["message"]
    assert error["type"] == "context_length_exceeded"
    assert error["metadata"]["error_type"] == "context_length_exceeded"


def test_max_tokens_truncates_the_answer_with_finish_reason_length() -> None:
    with client() as c:
        resp = chat(c, messages=[{"role": "user", "content": "tell me a long story " * 5}], max_tokens=3)
    (choice,) = resp.json()["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == 'You asked: "'
    assert resp.json()["usage"]["completion_tokens"] == 3


def test_fallback_models_skip_a_down_model_and_name_the_one_that_served() -> None:
    with client(down_models=["openai/gpt-4o-mini"]) as c:
        resp = chat(c, models=["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"])
        alone = chat(c)
        counted = c.get("/emulator/stats").json()
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"] == "anthropic/claude-3.5-sonnet"
    assert body["provider"] == "Anthropic"
    usage = body["usage"]
    assert usage["cost"] == usage["prompt_tokens"] * 3e-6 + usage["completion_tokens"] * 1.5e-5
    assert alone.status_code == 502
    assert error_of(alone)["metadata"]["model"] == "openai/gpt-4o-mini"
    assert counted["served_by_model"] == {"anthropic/claude-3.5-sonnet": 1}
    assert counted["cost"] == usage["cost"]


def test_models_lists_the_configured_models_with_string_prices() -> None:
    with client() as c:
        resp = c.get("/v1/models")
    models = {m["id"]: m for m in resp.json()["data"]}
    assert "emulator/scripted-tool-caller" in models
    mini = models["openai/gpt-4o-mini"]
    assert mini["pricing"]["prompt"] == "0.00000015"
    assert mini["pricing"]["completion"] == "0.0000006"
    assert mini["context_length"] == 128000
    assert {"tools", "tool_choice"} <= set(mini["supported_parameters"])
    assert "tools" not in models["gryphe/mythomax-l2-13b"]["supported_parameters"]
    assert mini["architecture"]["modality"] == "text->text"


def test_key_info_reports_usage_and_a_used_up_limit() -> None:
    broke = "sk-or-v1-broke"
    with client(reject_keys={broke: 402}) as c:
        chat(c)
        ok = c.get("/api/v1/key").json()["data"]
        used_up = c.get("/v1/key", headers={"Authorization": f"Bearer {broke}"}).json()["data"]
        missing = c.get("/api/v1/key", headers={"Authorization": ""})
    assert ok["limit"] is None and ok["usage"] > 0
    assert used_up["limit_remaining"] == 0.0
    assert missing.status_code == 401 and error_of(missing)["message"] == "No auth credentials found"


# --- the Responses API ------------------------------------------------------------------------


def test_the_responses_endpoint_answers_with_a_responses_object() -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER_TOOL["function"]["parameters"]}
    with client() as c:
        resp = c.post(
            "/api/v1/responses",
            json={"model": "anthropic/claude-3.5-sonnet", "input": "what's it like in sf?", "tools": [tool]},
        )
        counted = c.get("/emulator/stats").json()
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "response" and body["status"] == "completed"
    assert body["model"] == "anthropic/claude-3.5-sonnet"
    assert resp.headers["X-Generation-Id"] == body["id"].replace("resp_", "gen-")
    (call,) = [item for item in body["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "San Francisco"}
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["cost"] > 0
    assert counted["by_endpoint"] == {"responses": 1}
    assert counted["completions"] == 1


def test_the_responses_endpoint_reads_function_call_items_as_the_assistant_turn() -> None:
    items = [
        *SF,
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"city": "Paris", "condition": "rain"}'},
    ]
    with client() as c:
        resp = c.post("/v1/responses", json={"input": items, "instructions": "be brief"})
    (message,) = resp.json()["output"]
    assert message["type"] == "message"
    assert message["content"][0]["text"] == "In Paris it is rain."


@pytest.mark.parametrize("stateful", [{"previous_response_id": "resp_1"}, {"store": True}])
def test_the_responses_endpoint_is_stateless(stateful: dict[str, Any]) -> None:
    with client() as c:
        resp = c.post("/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi", **stateful})
    assert resp.status_code == 400
    assert next(iter(stateful)) in error_of(resp)["message"]


def test_the_responses_endpoint_gets_faults_too() -> None:
    with client(fault_schedule={1: "503", 2: "error_200"}) as c:
        first = c.post("/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi"})
        second = c.post("/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi"})
    assert first.status_code == 503
    assert second.status_code == 200
    assert set(second.json()) == {"error"}


# --- scripts ----------------------------------------------------------------------------------

WEATHER_SCRIPT = [
    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
    {"text": "It is rainy in Paris.", "wrong": {"text": "It is sunny in Oslo."}},
]


def test_a_scripted_row_plays_its_tool_call_turn_then_its_text_turn() -> None:
    script = {"emulator_script": json.dumps(WEATHER_SCRIPT)}  # a JSON string: metadata values are strings
    with client() as c:
        first = chat(c, tools=[WEATHER_TOOL], metadata=script)
        call = first.json()["choices"][0]["message"]["tool_calls"][0]
        conversation = [
            *SF,
            tool_call_turn("get_weather", call["function"]["arguments"], call["id"]),
            {"role": "tool", "tool_call_id": call["id"], "content": '{"condition": "sunny"}'},
        ]
        second = chat(c, tools=[WEATHER_TOOL], messages=conversation, metadata=script)
    assert first.json()["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}  # not the heuristic's sf
    assert second.json()["choices"][0]["finish_reason"] == "stop"
    assert content_of(second) == "It is rainy in Paris."


def test_a_script_given_as_a_list_drives_the_responses_api() -> None:
    script = {"emulator_script": WEATHER_SCRIPT}
    user = {"role": "user", "content": "weather?"}
    with client() as c:
        first = c.post("/api/v1/responses", json={"input": [user], "metadata": script}).json()
        (call,) = first["output"]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}
        second = c.post("/api/v1/responses", json={"input": [user, call, output], "metadata": script}).json()
    assert call["type"] == "function_call" and call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert [item["type"] for item in second["output"]] == ["message"]
    assert second["output"][0]["content"][0]["text"] == "It is rainy in Paris."


def test_past_the_end_of_its_script_a_model_repeats_the_last_text_or_says_done() -> None:
    past_the_end = [*SF, {"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]
    with client() as c:
        repeated = chat(c, messages=past_the_end, metadata={"emulator_script": WEATHER_SCRIPT})
        done = chat(c, messages=past_the_end, metadata={"emulator_script": [{"tool_calls": [{"name": "f"}]}]})
    assert content_of(repeated) == "It is rainy in Paris."
    assert content_of(done) == "Done."


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("[{'text': 'single quotes'}]", "metadata.emulator_script is not valid JSON"),
        ("[]", "metadata.emulator_script must be a non-empty list of turns"),
        ({"text": "not a list"}, "metadata.emulator_script must be a non-empty list of turns"),
        ([{"text": 5}], "emulator_script turn 0: text must be a string, got int"),
        ([{"tool_calls": {"name": "f"}}], "emulator_script turn 0: tool_calls must be a list"),
        ([{"tool_calls": [{"arguments": {}}]}], "emulator_script turn 0: tool_calls[0] needs a name"),
    ],
)
def test_a_malformed_script_is_a_400_saying_what_is_wrong(script: Any, said: str) -> None:
    with client() as c:
        resp = chat(c, metadata={"emulator_script": script})
        counted = c.get("/emulator/stats").json()
    assert resp.status_code == 400
    error = error_of(resp)
    assert error["message"].startswith(said) and error["retryable"] is False
    assert counted["completions"] == 0


# --- accuracy and latency ---------------------------------------------------------------------


def test_a_model_with_accuracy_one_half_answers_wrong_on_a_fixed_half_of_the_tasks() -> None:
    models = [{"id": "acme/coin", "accuracy": 0.5}, {"id": "acme/other-coin", "accuracy": 0.5}, {"id": "acme/sure"}]
    script = {"emulator_script": [{"text": "right", "wrong": {"text": "wrong"}}]}
    tasks = [[{"role": "user", "content": f"task number {i}"}] for i in range(200)]
    with client(models=models) as c:

        def answers(model: str, n: int = len(tasks)) -> list[str]:
            return [content_of(chat(c, model=model, messages=task, metadata=script)) for task in tasks[:n]]

        coin, again = answers("acme/coin"), answers("acme/coin")
        other, sure = answers("acme/other-coin", 50), answers("acme/sure", 50)
    assert set(coin) == {"right", "wrong"}  # the script's `wrong` turn, on the tasks it gets wrong
    assert 80 <= coin.count("wrong") <= 120
    assert again == coin  # the same task, the same way
    assert other != coin[:50]  # which tasks: per model
    assert set(sure) == {"right"}


def test_a_seed_samples_a_task_again_and_the_same_seed_answers_the_same_way() -> None:
    script = {"emulator_script": [{"text": "right", "wrong": {"text": "wrong"}}]}
    task = [{"role": "user", "content": "one task, sampled with many seeds"}]
    with client(models=[{"id": "acme/coin", "accuracy": 0.5}]) as c:

        def answers() -> list[str]:
            return [content_of(chat(c, model="acme/coin", messages=task, metadata=script, seed=s)) for s in range(60)]

        first, again = answers(), answers()
    assert 15 <= first.count("wrong") <= 45  # one task, but each seed its own draw
    assert again == first


def test_at_temperature_0_every_seed_answers_alike_and_another_temperature_draws_other_tasks() -> None:
    script = {"emulator_script": [{"text": "right", "wrong": {"text": "wrong"}}]}
    tasks = [[{"role": "user", "content": f"task number {i}"}] for i in range(100)]
    with client(models=[{"id": "acme/coin", "accuracy": 0.5}]) as c:

        def answers(task: list[dict[str, Any]], temperature: float | None, seeds: range) -> list[str]:
            extra = {} if temperature is None else {"temperature": temperature}
            return [
                content_of(chat(c, model="acme/coin", messages=task, metadata=script, seed=s, **extra)) for s in seeds
            ]

        greedy = answers(tasks[0], 0, range(30))
        sampled = answers(tasks[0], 1.0, range(30))
        cold = [answers(t, 0, range(1))[0] for t in tasks]
        warm = [answers(t, 1.0, range(1))[0] for t in tasks]
        again = [answers(t, 1.0, range(1))[0] for t in tasks]
    assert len(set(greedy)) == 1  # greedy: the seed changes nothing
    assert set(sampled) == {"right", "wrong"}  # sampling: each seed its own draw
    assert warm == again  # the same temperature and seed, the same answers
    assert warm != cold and 30 <= warm.count("wrong") <= 70  # another temperature, other tasks wrong


def test_a_scripted_answer_quotes_what_the_tool_returned() -> None:
    turns = [
        {"tool_calls": [{"name": "count", "arguments": {"word": "banana"}}]},
        {"tool_calls": [{"name": "double", "arguments": {"n": "{tool_output:count.count}"}}]},
        {"text": "count said {tool_output:count.count}, double said {tool_output}; {tool_output.nothing}"},
    ]
    script = {"emulator_script": turns}
    asked = [{"role": "user", "content": "count the a's"}]
    with client() as c:
        first = chat(c, messages=asked, metadata=script).json()["choices"][0]["message"]["tool_calls"][0]
        counted = [
            *asked,
            {"role": "assistant", "content": "", "tool_calls": [first]},
            {"role": "tool", "tool_call_id": first["id"], "content": '{"count": 3}'},
        ]
        second = chat(c, messages=counted, metadata=script).json()["choices"][0]["message"]["tool_calls"][0]
        doubled = [
            *counted,
            {"role": "assistant", "content": "", "tool_calls": [second]},
            {"role": "tool", "tool_call_id": second["id"], "content": "6"},
        ]
        final = content_of(chat(c, messages=doubled, metadata=script))
    assert json.loads(second["function"]["arguments"]) == {"n": 3}  # a whole placeholder keeps its type
    assert final == "count said 3, double said 6; (no such tool output)"


def test_a_model_that_gets_a_task_wrong_calls_the_tool_for_another_city() -> None:
    with client(models=[{"id": "acme/lost", "accuracy": 0.0}, {"id": "acme/sure"}]) as c:
        wrong = chat(c, model="acme/lost", tools=[WEATHER_TOOL])
        right = chat(c, model="acme/sure", tools=[WEATHER_TOOL])
    city = json.loads(wrong.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])["city"]
    assert city not in ("San Francisco", "")
    assert "San Francisco" in right.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]


@pytest.mark.anyio
async def test_a_model_s_latency_delays_its_own_answers_and_blocks_no_other_request() -> None:
    # The emulator's latency is a minute, one model's its own zero: the slow requests are
    # still waiting (deterministically) while the fast model answers.
    models = [{"id": "acme/slow", "latency_ms": 60_000}, {"id": "acme/fast", "latency_ms": 0}, {"id": "acme/default"}]
    with emulated(models=models, latency_ms=60_000) as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30, trust_env=False) as http:

            def ask(model: str) -> asyncio.Task[httpx.Response]:
                return asyncio.ensure_future(
                    http.post("/api/v1/chat/completions", json={"model": model, "messages": SF})
                )

            waiting = [ask("acme/slow"), ask("acme/default")]
            while (await http.get("/emulator/stats")).json()["completion_requests"] < 2:  # both arrived
                await asyncio.sleep(0.005)
            fast = await ask("acme/fast")
            counted = (await http.get("/emulator/stats")).json()
            assert not any(task.done() for task in waiting)
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
    assert fast.status_code == 200 and fast.json()["model"] == "acme/fast"
    assert counted["completion_requests"] == 3
    assert counted["served_by_model"] == {"acme/fast": 1}


# --- errors and faults ------------------------------------------------------------------------


def test_a_missing_key_is_a_401() -> None:
    with client(key=None) as c:
        resp = chat(c)
    assert resp.status_code == 401
    assert error_of(resp) == {
        "message": "No auth credentials found",
        "type": "unauthorized",
        "code": 401,
        "retryable": False,
    }


@pytest.mark.parametrize(("status", "message"), [(401, "User not found."), (402, "Insufficient credits")])
def test_rejected_keys_get_401_or_402_without_echoing_the_key(status: int, message: str) -> None:
    bad = f"sk-or-v1-rejected-{status}"
    with client(key=bad, reject_keys={bad: status}) as c:
        answers = [chat(c), c.post("/api/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi"})]
    for resp in answers:
        assert resp.status_code == status
        assert error_of(resp)["message"].startswith(message)
        assert bad not in resp.text
    assert bad not in repr(ProviderEmulator.from_fields({"reject_keys": {bad: status}}).config)


def test_a_429_fault_carries_retry_after_and_rate_limit_headers() -> None:
    with client(fault_schedule={1: "429"}, retry_after_seconds=0.5) as c:
        before_ms = int(time.time() * 1000)
        resp = chat(c)
        after_ms = int(time.time() * 1000)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "0.5"
    assert resp.headers["X-RateLimit-Limit"] == "20"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    reset = int(resp.headers["X-RateLimit-Reset"])  # epoch ms: now + Retry-After
    assert before_ms + 500 <= reset <= after_ms + 501
    error = error_of(resp)
    assert error["type"] == "rate_limit_exceeded" and error["retryable"] is True
    assert error["metadata"]["headers"]["X-RateLimit-Reset"] == str(reset)


def test_a_bare_429_fault_has_no_rate_limit_headers() -> None:
    with client(fault_schedule={1: "429_bare"}) as c:
        resp = chat(c)
    assert resp.status_code == 429
    assert "retry-after" not in resp.headers
    assert not [h for h in resp.headers if h.lower().startswith("x-ratelimit")]
    assert error_of(resp)["metadata"]["provider_name"] == "Emulator"


@pytest.mark.parametrize("status", [500, 502, 503, 524, 529])
def test_status_faults_answer_their_status_in_the_envelope(status: int) -> None:
    with client(fault_schedule={1: str(status)}) as c:
        resp = chat(c)
    assert resp.status_code == status
    error = error_of(resp)
    assert error["retryable"] is True and error["metadata"]["provider_name"] == "Emulator"


def test_an_error_200_fault_is_a_200_with_an_error_body_and_no_choices() -> None:
    with client(fault_schedule={1: "error_200"}) as c:
        resp = chat(c)
    assert resp.status_code == 200
    body = resp.json()
    assert "choices" not in body
    assert body["error"]["code"] == 502
    assert body["error"]["message"] == "Provider returned error"


def test_a_malformed_fault_body_is_not_json() -> None:
    with client(fault_schedule={1: "malformed"}) as c:
        resp = chat(c)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.content.startswith(b'{"id":"gen-')
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


def test_a_stall_fault_outlasts_a_client_timeout_and_the_next_request_is_answered() -> None:
    with emulated(fault_schedule={1: "stall"}, stall_seconds=3600) as url:
        with httpx.Client(base_url=url, headers=AUTH, trust_env=False) as http:
            with pytest.raises(httpx.ReadTimeout):
                http.post("/api/v1/chat/completions", json={"messages": SF}, timeout=0.2)
            after = http.post("/api/v1/chat/completions", json={"messages": SF}, timeout=10)
        counted = stats(url)
    assert after.status_code == 200
    assert counted["faults"] == {"stall": 1}


def test_a_stall_fault_answers_normally_after_stall_seconds() -> None:
    with client(fault_schedule={1: "stall"}, stall_seconds=0.01) as c:
        resp = chat(c)
        counted = c.get("/emulator/stats").json()
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    assert counted["faults"] == {"stall": 1} and counted["completions"] == 1


def test_the_fault_schedule_hits_exactly_the_listed_requests() -> None:
    with client(fault_schedule={2: "503", 4: "error_200"}) as c:
        answers = [chat(c) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 503, 200, 200, 200]
    assert ["choices" in r.json() for r in answers] == [True, False, True, False, True]
    # the list form: entry i is request i + 1, null means no fault
    with client(fault_schedule=[None, "500", "ok", "429_bare"]) as c:
        statuses = [chat(c).status_code for _ in range(5)]
    assert statuses == [200, 500, 200, 429, 200]


def statuses(n: int, **fields: Any) -> list[int]:
    with client(**fields) as c:
        return [chat(c).status_code for _ in range(n)]


def test_a_fault_rate_with_a_seed_gives_the_same_faults_every_time() -> None:
    fields = {"fault_rate": 0.3, "fault_kinds": ["500", "503"]}
    first = statuses(60, fault_seed=7, **fields)
    again = statuses(60, fault_seed=7, **fields)
    other = statuses(60, fault_seed=8, **fields)
    assert first == again
    assert first != other
    assert 6 <= sum(s != 200 for s in first) <= 30
    assert set(first) == {200, 500, 503}
    assert statuses(3, fault_rate=1.0, fault_kinds=["529"]) == [529] * 3


def test_reset_restarts_the_request_numbering_and_the_fault_draws() -> None:
    with client(fault_schedule={1: "500"}, fault_rate=0.5, fault_kinds=["503"]) as c:
        first = [chat(c).status_code for _ in range(10)]
        c.post("/emulator/reset")
        again = [chat(c).status_code for _ in range(10)]
    assert first[0] == 500 and again == first


# Every way the emulator refuses a request: (config fields, method, path, body, headers, status)
CHAT_PATH = "/api/v1/chat/completions"
REFUSALS = {
    "no key": ({}, "POST", CHAT_PATH, {"messages": SF}, {"Authorization": ""}, 401),
    "rejected key": ({"reject_keys": {KEY: 401}}, "POST", CHAT_PATH, {"messages": SF}, None, 401),
    "no credits": ({"reject_keys": {KEY: 402}}, "POST", "/v1/responses", {"input": "hi"}, None, 402),
    "not json": ({}, "POST", CHAT_PATH, b"{nope", None, 400),
    "not an object": ({}, "POST", CHAT_PATH, [1, 2], None, 400),
    "no messages": ({}, "POST", CHAT_PATH, {"messages": []}, None, 400),
    "a message not an object": ({}, "POST", CHAT_PATH, {"messages": ["hi"]}, None, 400),
    "tools not a list": ({}, "POST", CHAT_PATH, {"messages": SF, "tools": "get_weather"}, None, 400),
    "max_tokens 0": ({}, "POST", CHAT_PATH, {"messages": SF, "max_tokens": 0}, None, 400),
    "models not a list": ({}, "POST", CHAT_PATH, {"messages": SF, "models": "a/b"}, None, 400),
    "model not a string": ({}, "POST", CHAT_PATH, {"messages": SF, "model": 7}, None, 400),
    "empty script": ({}, "POST", CHAT_PATH, {"messages": SF, "metadata": {"emulator_script": "[]"}}, None, 400),
    "input not a list": ({}, "POST", "/v1/responses", {"input": 7}, None, 400),
    "unknown item": ({}, "POST", "/v1/responses", {"input": [{"type": "image"}]}, None, 400),
    "unknown model": ({}, "POST", CHAT_PATH, {"messages": SF, "model": "a/b"}, None, 404),
    "model down": (
        {"down_models": {"openai/gpt-4o-mini": 503}},
        "POST",
        "/v1/chat/completions",
        {"messages": SF, "model": "openai/gpt-4o-mini"},
        None,
        503,
    ),
    **{
        f"fault {kind}": ({"fault_schedule": {1: kind}}, "POST", CHAT_PATH, {"messages": SF}, None, int(kind[:3]))
        for kind in ("429", "429_bare", "500", "502", "524", "529")
    },
    "no such route": ({}, "GET", "/api/v1/nothing-here", None, None, 404),
    "wrong method": ({}, "GET", CHAT_PATH, None, None, 405),
}


@pytest.mark.parametrize(("fields", "method", "path", "body", "headers", "status"), REFUSALS.values(), ids=REFUSALS)
def test_every_emulator_error_is_the_kernel_envelope(
    fields: dict[str, Any], method: str, path: str, body: Any, headers: dict[str, str] | None, status: int
) -> None:
    content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    with client(**fields) as c:
        resp = c.request(method, path, content=content, headers=headers)
        counted = c.get("/emulator/stats").json()
    assert resp.status_code == status
    assert resp.headers["content-type"] == "application/json"
    error_of(resp)
    if method == "POST":  # the emulator's own refusals are counted, the router's are not
        assert counted["errors_by_status"] == {str(status): 1}


def test_stats_count_requests_faults_errors_and_cost() -> None:
    with client(fault_schedule={1: "429"}) as c:
        limited = chat(c)
        ok = chat(c).json()
        chat(c, model="nobody/nothing")
        c.get("/api/v1/models")
        counted = c.get("/emulator/stats").json()
        c.post("/emulator/reset")
        after_reset = c.get("/emulator/stats").json()
    assert limited.headers["Retry-After"] == "1"
    assert counted["requests"] == 4
    assert counted["by_endpoint"] == {"chat.completions": 3, "models": 1}
    assert counted["completion_requests"] == 3
    assert counted["completions"] == 1
    assert counted["faults"] == {"429": 1}
    assert counted["errors_by_status"] == {"429": 1, "404": 1}
    assert counted["cost"] == ok["usage"]["cost"]
    assert counted["prompt_tokens"] == ok["usage"]["prompt_tokens"]
    assert after_reset["requests"] == 0 and after_reset["cost"] == 0


# --- streaming --------------------------------------------------------------------------------


def test_streaming_sends_a_keepalive_deltas_the_final_usage_and_done() -> None:
    with client() as c:
        resp = chat(c, tools=[WEATHER_TOOL], stream=True)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in resp.text.split("\n") if line]
    assert lines[0] == ": OPENROUTER PROCESSING"
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in lines[1:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == resp.headers["X-Generation-Id"] for c in chunks)
    arguments = "".join(
        call["function"].get("arguments", "")
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert json.loads(arguments) == {"city": "San Francisco"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert chunks[-1]["usage"]["cost"] > 0


def test_streamed_text_deltas_join_into_the_non_streamed_answer() -> None:
    question = [{"role": "user", "content": "hello there"}]
    with client() as c:
        plain = chat(c, messages=question).json()
        streamed = chat(c, messages=question, stream=True)
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in streamed.text.split("\n")
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    )
    assert text == plain["choices"][0]["message"]["content"]


@pytest.mark.parametrize("kind", ["error_200", "malformed"])
def test_a_streamed_fault_breaks_the_stream_as_openrouter_does(kind: str) -> None:
    with client(fault_schedule={1: kind}) as c:
        resp = chat(c, stream=True)
        counted = c.get("/emulator/stats").json()
    assert resp.status_code == 200 and resp.text.endswith("data: [DONE]\n\n")
    # A broken stream was generated all the same: billed, as the non-streamed malformed body is.
    assert counted["faults"] == {kind: 1} and counted["completions"] == (kind == "malformed")
    if kind == "error_200":
        (chunk,) = [json.loads(line[6:]) for line in resp.text.split("\n") if line.startswith("data: {")]
        assert chunk["choices"][0]["finish_reason"] == "error" and chunk["error"]["code"] == 502
    else:
        with pytest.raises(json.JSONDecodeError):
            for line in resp.text.split("\n"):
                if line.startswith("data: {"):
                    json.loads(line[6:])


# --- config -----------------------------------------------------------------------------------


def test_fields_are_read_into_the_typed_config() -> None:
    fields = {
        "latency_ms": 5,
        "fault_kinds": [429, "503"],
        "down_models": ["openai/gpt-4o-mini"],
        "fault_schedule": {"3": "stall"},
        "reject_keys": {"sk-or-v1-x": "402"},
    }
    config = ProviderEmulator.from_fields(fields, SPEC).config
    assert config.latency_ms == 5.0
    assert config.fault_kinds == ["429", "503"]
    assert config.down_models == {"openai/gpt-4o-mini": 502}
    assert config.fault_schedule == {3: "stall"}
    assert config.reject_keys == {"sk-or-v1-x": 402}


def test_bad_fields_are_one_config_error_line_naming_each_and_never_a_key() -> None:
    fields = {"fault_rate": 2, "fault_kinds": ["418"], "reject_keys": {"sk-or-v1-secret": 403}}
    with pytest.raises(ConfigError) as info:
        ProviderEmulator.from_fields(fields, SPEC)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("provider_emulator.responses_api_models.provider_emulator.")
    assert "fault_rate" in message and "fault_kinds" in message and "reject_keys" in message
    assert "sk-or-v1-secret" not in message


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"fault_rate": True}, ".fault_rate: Input should be a valid number (got True)"),
        ({"fault_rat": 0.1}, ".fault_rat: unknown key; did you mean 'fault_rate'?"),
        ({"models": [{"id": "a/b", "acuracy": 0.5}]}, ".models.0.acuracy: unknown key; did you mean 'accuracy'?"),
        ({"models": [{"id": "a/b", "accuracy": 1.5}]}, ".models.0.accuracy: Input should be less than or equal to 1"),
        ({"models": []}, ".models: Value error, at least one model is needed"),
        ({"policy": "nope"}, ".policy: unknown policy 'nope'"),
        ({"down_models": [[]]}, ".down_models: Value error, a list of down models holds model ids (strings)"),
    ],
)
def test_an_emulator_config_error_is_one_line_saying_what_to_fix(fields: dict[str, Any], said: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProviderEmulator.from_fields(fields, SPEC)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("provider_emulator.responses_api_models.provider_emulator" + said)


# --- ng_emulator ------------------------------------------------------------------------------


def test_ng_emulator_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--host",
        "--port",
        "--latency-ms",
        "--fault-rate",
        "--fault-kinds",
        "--fault-seed",
        "--retry-after-seconds",
        "--stall-seconds",
    ):
        assert option in out
    assert "default: 8000" in out


def test_ng_emulator_with_a_bad_option_value_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--port", "0", "--fault-kinds", "418"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ng_emulator: error: ng_emulator.responses_api_models.provider_emulator.fault_kinds.0: ")
    assert err.count("\n") == 1


def _first_line_matching(proc: subprocess.Popen[str], pattern: str, timeout: float = 30) -> re.Match[str]:
    """The first stderr line of ``proc`` matching ``pattern`` (read in a thread: a process
    that never prints it fails the test instead of hanging it)."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    seen = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"ng_emulator printed no line matching {pattern!r}: {seen}") from None
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found


@pytest.mark.e2e
def test_ng_emulator_on_port_0_prints_the_port_it_got_and_serves_there() -> None:
    proc = subprocess.Popen(
        [str(BIN / "ng_emulator"), "--port", "0", "--fault-kinds", "429"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        # The banner comes after the port is bound and listening: no waiting for readiness.
        banner = _first_line_matching(proc, r"OpenRouter-compatible API at (http://127\.0\.0\.1:(\d+))/api/v1")
        assert int(banner.group(2)) != 0
        with httpx.Client(base_url=banner.group(1), timeout=10, trust_env=False) as http:
            resp = http.post(
                "/api/v1/chat/completions",
                headers=AUTH,
                json={"model": "emulator/scripted-tool-caller", "messages": SF, "tools": [WEATHER_TOOL]},
            )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert resp.status_code == 200
    assert resp.json()["model"] == "emulator/scripted-tool-caller"
    args = resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"city": "San Francisco"}


@pytest.mark.e2e
def test_ng_emulator_on_a_busy_port_exits_2_with_one_line() -> None:
    with bound_socket() as busy:
        port = busy.getsockname()[1]
        result = run_cli("ng_emulator", "--port", str(port), timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"ng_emulator: error: cannot listen on 127.0.0.1:{port} (")
    assert "choose another --port (0 picks a free one)" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
