"""The OpenRouter emulator over HTTP: shapes, costs, routing, errors, faults, streaming."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest

from nemo_gym_cli.emulator import EmulatorConfig, build_app, create_app
from nemo_gym_cli.emulator_cli import main
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.servers import ServerSpec

pytestmark = pytest.mark.anyio

KEY = "sk-or-v1-test"
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
SF = [{"role": "user", "content": "what's it like in sf?"}]


def _client(config: EmulatorConfig | None = None, *, key: str | None = KEY) -> httpx.AsyncClient:
    app = build_app(config or EmulatorConfig())
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://emulator", headers=headers)


async def _chat(client: httpx.AsyncClient, prefix: str = "/api/v1", **body) -> httpx.Response:
    body.setdefault("model", "openai/gpt-4o-mini")
    body.setdefault("messages", SF)
    return await client.post(f"{prefix}/chat/completions", json=body)


def _error_of(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]


async def test_chat_completion_has_openrouter_shape_and_cost_is_tokens_times_price() -> None:
    async with _client() as client:
        resp = await _chat(client, tools=[WEATHER])
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
    prompt_chars = len(SF[0]["content"]) + len(json.dumps([WEATHER], separators=(",", ":")))
    completion_chars = len("get_weather") + len(call["function"]["arguments"])
    assert usage["prompt_tokens"] == math.ceil(prompt_chars / 4)
    assert usage["completion_tokens"] == math.ceil(completion_chars / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["cost"] == usage["prompt_tokens"] * 1.5e-7 + usage["completion_tokens"] * 6e-7
    assert usage["prompt_tokens_details"] == {"cached_tokens": 0}
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["is_byok"] is False
    assert usage["cost_details"] == {"upstream_inference_cost": None}


async def test_both_prefixes_serve_and_tool_output_turn_answers_with_text() -> None:
    messages = [
        *SF,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"San Francisco"}'},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": '{"city": "San Francisco", "condition": "sunny", "temperature": 18}',
        },
    ]
    async with _client() as client:
        resp = await _chat(client, "/v1", messages=messages, tools=[WEATHER])
    assert resp.status_code == 200
    (choice,) = resp.json()["choices"]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "In San Francisco it is sunny, 18 °C."
    assert "tool_calls" not in choice["message"]


async def test_unknown_model_is_a_404_naming_it() -> None:
    async with _client() as client:
        resp = await _chat(client, model="nobody/nothing")
    assert resp.status_code == 404
    error = _error_of(resp)
    assert error["code"] == 404
    assert error["message"] == "nobody/nothing is not a valid model ID"


async def test_routing_variant_suffix_and_gateway_prefix_resolve_to_the_model() -> None:
    async with _client() as client:
        nitro = await _chat(client, model="openai/gpt-4o-mini:nitro")
        prefixed = await _chat(client, model="openrouter:anthropic/claude-3.5-sonnet")
    assert nitro.json()["model"] == "openai/gpt-4o-mini"
    assert prefixed.json()["model"] == "anthropic/claude-3.5-sonnet"


async def test_tools_sent_to_a_model_without_tool_support_are_a_404() -> None:
    async with _client() as client:
        resp = await _chat(client, model="gryphe/mythomax-l2-13b", tools=[WEATHER])
        without_tools = await _chat(client, model="gryphe/mythomax-l2-13b")
    assert resp.status_code == 404
    assert _error_of(resp)["message"].startswith("No endpoints found that support tool use.")
    assert without_tools.status_code == 200


async def test_prompt_over_the_context_length_is_a_400() -> None:
    long = [{"role": "user", "content": "x" * 4 * 4000}]
    async with _client() as client:
        resp = await _chat(client, model="gryphe/mythomax-l2-13b", messages=long, max_tokens=200)
    assert resp.status_code == 400
    error = _error_of(resp)
    assert error["message"].startswith("This endpoint's maximum context length is 4096 tokens.")
    assert "4200 tokens (4000 of text input, 200 in the output)" in error["message"]
    assert error["metadata"]["error_type"] == "context_length_exceeded"


async def test_max_tokens_truncates_the_answer_with_finish_reason_length() -> None:
    async with _client() as client:
        resp = await _chat(
            client,
            messages=[{"role": "user", "content": "tell me a long story " * 5}],
            max_tokens=3,
        )
    (choice,) = resp.json()["choices"]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == 'You asked: "'
    assert resp.json()["usage"]["completion_tokens"] == 3


async def test_latency_delays_answers_without_blocking_other_requests() -> None:
    async with _client(EmulatorConfig(latency_ms=200)) as client:
        started = time.monotonic()
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(_chat, client)
        elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 0.6


async def test_fallback_models_skip_a_down_model_and_name_the_one_that_served() -> None:
    config = EmulatorConfig(down_models=["openai/gpt-4o-mini"])
    async with _client(config) as client:
        resp = await _chat(client, models=["openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"])
        alone = await _chat(client)
        stats = (await client.get("/emulator/stats")).json()
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"] == "anthropic/claude-3.5-sonnet"
    assert body["provider"] == "Anthropic"
    usage = body["usage"]
    assert usage["cost"] == usage["prompt_tokens"] * 3e-6 + usage["completion_tokens"] * 1.5e-5
    assert alone.status_code == 502
    assert _error_of(alone)["metadata"]["model"] == "openai/gpt-4o-mini"
    assert stats["served_by_model"] == {"anthropic/claude-3.5-sonnet": 1}
    assert stats["cost"] == usage["cost"]


async def test_missing_key_is_a_401() -> None:
    async with _client(key=None) as client:
        resp = await _chat(client)
    assert resp.status_code == 401
    assert _error_of(resp) == {"code": 401, "message": "No auth credentials found"}


@pytest.mark.parametrize(("status", "message"), [(401, "User not found."), (402, "Insufficient credits")])
async def test_rejected_keys_get_401_or_402_without_echoing_the_key(status: int, message: str) -> None:
    bad = f"sk-or-v1-rejected-{status}"
    async with _client(EmulatorConfig(reject_keys={bad: status}), key=bad) as client:
        chat = await _chat(client)
        responses = await client.post("/api/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi"})
    for resp in (chat, responses):
        assert resp.status_code == status
        assert _error_of(resp)["message"].startswith(message)
        assert bad not in resp.text
    assert bad not in repr(EmulatorConfig(reject_keys={bad: status}))


async def test_429_fault_carries_retry_after_and_rate_limit_headers() -> None:
    config = EmulatorConfig(fault_schedule={1: "429"}, retry_after_seconds="0.5")
    before_ms = time.time() * 1000
    async with _client(config) as client:
        resp = await _chat(client)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "0.5"
    assert resp.headers["X-RateLimit-Limit"] == "20"
    assert resp.headers["X-RateLimit-Remaining"] == "0"
    reset = int(resp.headers["X-RateLimit-Reset"])
    assert before_ms + 400 <= reset <= time.time() * 1000 + 600
    error = _error_of(resp)
    assert error["code"] == 429
    assert error["metadata"]["headers"]["X-RateLimit-Reset"] == str(reset)


async def test_bare_429_fault_has_no_rate_limit_headers() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "429_bare"})) as client:
        resp = await _chat(client)
    assert resp.status_code == 429
    assert "retry-after" not in resp.headers
    assert not [h for h in resp.headers if h.lower().startswith("x-ratelimit")]
    assert _error_of(resp)["code"] == 429


@pytest.mark.parametrize("status", [500, 502, 503, 524, 529])
async def test_status_faults_answer_their_status_in_openrouter_shape(status: int) -> None:
    async with _client(EmulatorConfig(fault_schedule={1: str(status)})) as client:
        resp = await _chat(client)
    assert resp.status_code == status
    assert _error_of(resp)["code"] == status


async def test_error_200_fault_is_a_200_with_an_error_body_and_no_choices() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "error_200"})) as client:
        resp = await _chat(client)
    assert resp.status_code == 200
    body = resp.json()
    assert "choices" not in body
    assert body["error"]["code"] == 502
    assert body["error"]["message"] == "Provider returned error"


async def test_malformed_fault_body_is_not_json() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "malformed"})) as client:
        resp = await _chat(client)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.content.startswith(b'{"id":"gen-')
    with pytest.raises(json.JSONDecodeError):
        json.loads(resp.content)


async def test_stall_fault_outlasts_a_client_timeout() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "stall"}, stall_seconds=30)) as client:
        # ASGITransport does not enforce httpx timeouts, so the client's deadline is explicit
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.2):
                await _chat(client)
        stats = (await client.get("/emulator/stats")).json()
    assert stats["faults"] == {"stall": 1}


async def test_stall_fault_answers_after_stall_seconds() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "stall"}, stall_seconds=0.3)) as client:
        started = time.monotonic()
        resp = await _chat(client)
        elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert resp.json()["choices"][0]["finish_reason"] == "stop"
    assert elapsed >= 0.3


async def test_fault_schedule_hits_exactly_the_listed_requests() -> None:
    async with _client(EmulatorConfig(fault_schedule={2: "503", 4: "error_200"})) as client:
        answers = [await _chat(client) for _ in range(5)]
    assert [r.status_code for r in answers] == [200, 503, 200, 200, 200]
    assert ["choices" in r.json() for r in answers] == [True, False, True, False, True]
    # the list form: entry i is request i + 1, null means no fault
    async with _client(EmulatorConfig(fault_schedule=[None, "500", "ok", "429_bare"])) as client:
        statuses = [(await _chat(client)).status_code for _ in range(5)]
    assert statuses == [200, 500, 200, 429, 200]


async def _statuses(config: EmulatorConfig, n: int) -> list[int]:
    async with _client(config) as client:
        return [(await _chat(client)).status_code for _ in range(n)]


async def test_fault_rate_with_a_seed_gives_a_stable_count() -> None:
    config = EmulatorConfig(fault_rate=0.3, fault_kinds=["500", "503"], fault_seed=7)
    first = await _statuses(config, 60)
    again = await _statuses(config, 60)
    other = await _statuses(config.model_copy(update={"fault_seed": 8}), 60)
    assert first == again
    assert first != other
    faults = sum(s != 200 for s in first)
    assert 6 <= faults <= 30
    assert set(first) == {200, 500, 503}
    assert await _statuses(EmulatorConfig(fault_rate=1.0, fault_kinds=["529"]), 3) == [529] * 3


async def test_streaming_sends_keepalive_deltas_final_usage_and_done() -> None:
    async with _client() as client:
        resp = await _chat(client, tools=[WEATHER], stream=True)
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


async def test_streamed_text_deltas_join_into_the_non_streamed_answer() -> None:
    question = [{"role": "user", "content": "hello there"}]
    async with _client() as client:
        plain = (await _chat(client, messages=question)).json()
        streamed = await _chat(client, messages=question, stream=True)
    text = "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in streamed.text.split("\n")
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    )
    assert text == plain["choices"][0]["message"]["content"]


async def test_stats_count_requests_faults_errors_and_cost() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "429"})) as client:
        limited = await _chat(client)
        ok = (await _chat(client)).json()
        await _chat(client, model="nobody/nothing")
        await client.get("/api/v1/models")
        stats = (await client.get("/emulator/stats")).json()
        await client.post("/emulator/reset")
        after_reset = (await client.get("/emulator/stats")).json()
    assert limited.headers["Retry-After"] == "1"
    assert stats["requests"] == 4
    assert stats["by_endpoint"] == {"chat.completions": 3, "models": 1}
    assert stats["completion_requests"] == 3
    assert stats["completions"] == 1
    assert stats["faults"] == {"429": 1}
    assert stats["errors_by_status"] == {"429": 1, "404": 1}
    assert stats["cost"] == ok["usage"]["cost"]
    assert stats["prompt_tokens"] == ok["usage"]["prompt_tokens"]
    assert after_reset["requests"] == 0 and after_reset["cost"] == 0


async def test_models_lists_configured_models_with_string_prices() -> None:
    async with _client() as client:
        resp = await client.get("/v1/models")
    models = {m["id"]: m for m in resp.json()["data"]}
    assert "emulator/scripted-tool-caller" in models
    mini = models["openai/gpt-4o-mini"]
    assert mini["pricing"]["prompt"] == "0.00000015"
    assert mini["pricing"]["completion"] == "0.0000006"
    assert mini["context_length"] == 128000
    assert {"tools", "tool_choice"} <= set(mini["supported_parameters"])
    assert "tools" not in models["gryphe/mythomax-l2-13b"]["supported_parameters"]
    assert mini["architecture"]["modality"] == "text->text"


async def test_responses_endpoint_answers_through_the_chat_path() -> None:
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": WEATHER["function"]["parameters"],
    }
    async with _client() as client:
        resp = await client.post(
            "/api/v1/responses",
            json={
                "model": "anthropic/claude-3.5-sonnet",
                "input": "what's it like in sf?",
                "tools": [tool],
            },
        )
        stats = (await client.get("/emulator/stats")).json()
    assert resp.status_code == 200
    body = resp.json()
    assert body["object"] == "response"
    assert body["model"] == "anthropic/claude-3.5-sonnet"
    assert resp.headers["X-Generation-Id"] == body["id"]
    (call,) = [item for item in body["output"] if item["type"] == "function_call"]
    assert call["name"] == "get_weather"
    assert json.loads(call["arguments"]) == {"city": "San Francisco"}
    assert stats["by_endpoint"] == {"responses": 1}
    assert stats["completions"] == 1


@pytest.mark.parametrize("stateful", [{"previous_response_id": "resp_1"}, {"store": True}])
async def test_responses_endpoint_is_stateless(stateful: dict) -> None:
    async with _client() as client:
        resp = await client.post("/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi", **stateful})
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == 400


async def test_responses_endpoint_gets_faults_too() -> None:
    async with _client(EmulatorConfig(fault_schedule={1: "503", 2: "error_200"})) as client:
        first = await client.post("/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi"})
        second = await client.post("/v1/responses", json={"model": "openai/gpt-4o-mini", "input": "hi"})
    assert first.status_code == 503
    assert second.status_code == 200
    assert set(second.json()) == {"error"}


async def test_bad_json_is_a_400_in_openrouter_shape() -> None:
    async with _client() as client:
        resp = await client.post("/api/v1/chat/completions", content=b"{nope")
    assert resp.status_code == 400
    assert _error_of(resp)["code"] == 400


def test_create_app_reads_spec_fields_and_names_bad_ones() -> None:
    spec = ServerSpec(
        name="upstream",
        server_type="provider_emulators",
        implementation="openrouter",
        host="127.0.0.1",
        port=1,
        fields={"latency_ms": 5, "fault_kinds": [429, "503"]},
    )
    app = create_app(spec)
    assert app.state.emulator.config.fault_kinds == ["429", "503"]
    assert app.state.emulator.latency == 0.005
    fields = {"fault_rate": 2, "fault_kinds": ["418"], "reject_keys": {"sk-or-v1-secret": 403}}
    with pytest.raises(ConfigError) as info:
        create_app(ServerSpec(**{**spec.__dict__, "fields": fields}))
    message = str(info.value)
    assert "fault_rate" in message and "fault_kinds" in message and "reject_keys" in message
    assert "sk-or-v1-secret" not in message


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_main_serves_on_a_real_loopback_port() -> None:
    port = _free_port()
    root = str(Path(__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nemo_gym_cli.emulator_cli",
            "--port",
            str(port),
            "--fault-kinds",
            "429",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=5, trust_env=False) as client:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "emulator did not become ready in 20 s"
                time.sleep(0.05)
            resp = client.post(
                "/api/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}"},
                json={"model": "emulator/scripted-tool-caller", "messages": SF, "tools": [WEATHER]},
            )
        assert resp.status_code == 200
        assert resp.json()["model"] == "emulator/scripted-tool-caller"
        args = resp.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(args) == {"city": "San Francisco"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
