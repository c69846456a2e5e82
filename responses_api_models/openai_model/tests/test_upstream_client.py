"""UpstreamClient against the real emulator: retries, Retry-After, errors that say what to do,
timeouts, fallback models, failover, the concurrency cap, and no key anywhere."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
import httpx
import pytest

from nemo_gym_cli.emulator import EmulatorModel
from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.upstream import (
    AiohttpWire,
    Upstream,
    UpstreamClient,
    classify_error,
    parse_retry_after,
)
from responses_api_models.openai_model.tests.emulated_upstream import (
    CHAT,
    KEY,
    MODEL,
    Recorder,
    emulator,
    free_port,
    serve_in_thread,
    stats,
)

pytestmark = pytest.mark.anyio
BASE = "http://emulator/api/v1"


def client_for(
    app, *, upstreams=None, recorder: Recorder | None = None, **options
) -> tuple[httpx.AsyncClient, UpstreamClient]:
    transport = recorder or httpx.ASGITransport(app)
    http = httpx.AsyncClient(transport=transport)
    options = {"backoff_base_s": 0.01, "backoff_max_s": 0.05, **options}
    return http, UpstreamClient(http, upstreams or [Upstream(BASE, KEY, MODEL)], **options)


async def post(app, body=CHAT, **kwargs):
    http, client = client_for(app, **kwargs)
    async with http:
        return await client.post("chat/completions", body, tools_sent=bool(body.get("tools")))


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "nemo_gym_cli.upstream"]


async def test_429_and_5xx_are_retried_and_each_retry_is_logged_with_attempt_and_reason(
    caplog,
) -> None:
    app = emulator(fault_schedule={1: "429_bare", 2: "502", 3: "503", 4: "529"})
    data, upstream = await post(app)
    assert data["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert upstream.model == MODEL
    assert stats(app)["completion_requests"] == 5
    lines = retry_lines(caplog)
    assert len(lines) == 4
    for attempt, (line, reason) in enumerate(zip(lines, ("rate_limit", "502", "503", "529"), strict=True), 1):
        assert f"attempt {attempt}/6 failed" in line and reason in line
    assert KEY not in caplog.text


async def test_retry_after_2_delays_that_request_by_about_2_seconds() -> None:
    app = emulator(fault_schedule={1: "429"}, retry_after_seconds=2)
    started = time.monotonic()
    data, _ = await post(app)
    elapsed = time.monotonic() - started
    assert data["choices"]
    assert 1.9 <= elapsed < 3.5
    assert stats(app)["faults"] == {"429": 1}


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


async def test_a_401_ends_with_the_message_and_exactly_one_upstream_request(caplog) -> None:
    app = emulator(reject_keys={KEY: 401})
    with pytest.raises(UpstreamError) as info:
        await post(app)
    assert str(info.value).startswith("the API key was rejected: set policy_api_key in env.yaml")
    assert info.value.kind == "auth" and info.value.status == 401 and not info.value.retryable
    assert stats(app)["by_endpoint"] == {"chat.completions": 1}
    assert retry_lines(caplog) == []
    assert KEY not in str(info.value)


async def test_a_402_is_out_of_credits_and_not_retried() -> None:
    app = emulator(reject_keys={KEY: 402})
    with pytest.raises(UpstreamError) as info:
        await post(app)
    assert str(info.value).startswith("out of credits")
    assert info.value.kind == "credits" and stats(app)["by_endpoint"] == {"chat.completions": 1}


async def test_an_unknown_model_names_the_model_the_base_url_and_ng_models() -> None:
    app = emulator()
    with pytest.raises(UpstreamError) as info:
        await post(app, upstreams=[Upstream(BASE, KEY, "acme/no-such-model")])
    message = str(info.value)
    assert message.startswith(f"model 'acme/no-such-model' is not available at {BASE}; list")
    assert "ng models" in message
    assert info.value.kind == "model_not_found" and stats(app)["completion_requests"] == 1


async def test_tools_sent_to_a_model_without_tool_support_say_so() -> None:
    app = emulator()
    with pytest.raises(UpstreamError) as info:
        await post(app, upstreams=[Upstream(BASE, KEY, "gryphe/mythomax-l2-13b")])
    assert info.value.kind == "tools_unsupported"
    assert "does not support tool calls" in str(info.value) and "ng models +tools=true" in str(info.value)


async def test_context_length_exceeded_is_said_and_not_retried() -> None:
    app = emulator(models=[EmulatorModel(id="tiny/model", context_length=64)])
    body = {"messages": [{"role": "user", "content": "weather " * 200}]}
    with pytest.raises(UpstreamError) as info:
        await post(app, body, upstreams=[Upstream(BASE, KEY, "tiny/model")])
    assert info.value.kind == "context_length" and info.value.status == 400
    assert "exceeds the context length of model 'tiny/model'" in str(info.value)
    assert stats(app)["completion_requests"] == 1


async def test_an_error_in_a_200_body_is_retried(caplog) -> None:
    app = emulator(fault_schedule={1: "error_200", 2: "malformed"})
    data, _ = await post(app)
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert stats(app)["completion_requests"] == 3
    lines = retry_lines(caplog)
    assert "attempt 1/6" in lines[0] and "in a 200 answer" in lines[0]
    assert "attempt 2/6" in lines[1] and "not JSON" in lines[1]


async def test_attempts_are_bounded() -> None:
    app = emulator(fault_rate=1.0, fault_kinds=["503"])
    with pytest.raises(UpstreamError) as info:
        await post(app, max_attempts=3)
    assert "gave up after 3 attempts" in str(info.value) and info.value.retryable
    assert stats(app)["completion_requests"] == 3


async def test_a_stall_ends_in_a_timeout_not_a_hang(caplog) -> None:
    app = emulator(fault_schedule={1: "stall", 2: "stall"}, stall_seconds=30)
    with serve_in_thread(app) as url:
        timeout = aiohttp.ClientTimeout(total=None, connect=2, sock_read=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            client = UpstreamClient(
                session,
                [Upstream(url + "/api/v1", KEY, MODEL)],
                max_attempts=2,
                backoff_base_s=0.01,
            )
            started = time.monotonic()
            with pytest.raises(UpstreamError) as info:
                await client.post("chat/completions", CHAT)
            assert time.monotonic() - started < 2.0
            assert info.value.kind == "timeout" and "timed out" in str(info.value)
            # The next request is not stalled: the same client answers it.
            data, _ = await client.post("chat/completions", CHAT)
            assert data["choices"]
    assert "attempt 1/2 failed (timeout)" in caplog.text


async def test_fallback_models_are_sent_and_the_answer_names_the_model_that_served() -> None:
    app = emulator(down_models=[MODEL])
    recorder = Recorder(httpx.ASGITransport(app))
    upstream = Upstream(BASE, KEY, MODEL, fallback_models=("openai/gpt-4o-mini",))
    data, _ = await post(app, upstreams=[upstream], recorder=recorder)
    assert data["model"] == "openai/gpt-4o-mini" and data["provider"] == "OpenAI"
    assert recorder.posts()[0]["json"]["models"] == [MODEL, "openai/gpt-4o-mini"]
    assert stats(app)["served_by_model"] == {"openai/gpt-4o-mini": 1}


async def test_an_alternative_upstream_is_used_when_the_first_refuses_connections(caplog) -> None:
    app = emulator()
    closed = f"http://127.0.0.1:{free_port()}/api/v1"  # nothing listens there
    with serve_in_thread(app) as url:
        async with aiohttp.ClientSession() as session:
            upstreams = [
                Upstream(closed, KEY, MODEL),
                Upstream(url + "/api/v1", "sk-alt", "openai/gpt-4o-mini"),
            ]
            # A backoff would show: failing over to an upstream not tried yet must not wait.
            client = UpstreamClient(session, upstreams, backoff_base_s=60.0)
            started = time.monotonic()
            first, served_by = await client.post("chat/completions", CHAT)
            assert time.monotonic() - started < 2.0
            second, _ = await client.post("chat/completions", CHAT)
    assert served_by.base_url == url + "/api/v1"
    assert first["model"] == second["model"] == "openai/gpt-4o-mini"
    assert stats(app)["completion_requests"] == 2  # the second went straight to the alternative
    lines = retry_lines(caplog)
    assert len(lines) == 1 and "attempt 1/6 failed (connection)" in lines[0]
    assert f"retrying in 0.00 s via {url}/api/v1" in lines[0]


async def test_concurrent_upstream_requests_are_capped() -> None:
    app = emulator(latency_ms=20)
    recorder = Recorder(httpx.ASGITransport(app))
    http, client = client_for(app, recorder=recorder, max_concurrency=3)
    async with http:
        await asyncio.gather(*(client.post("chat/completions", CHAT) for _ in range(12)))
    assert recorder.max_in_flight == 3
    assert stats(app)["completions"] == 12


async def test_the_model_string_headers_and_key_go_out_as_configured() -> None:
    app = emulator()
    recorder = Recorder(httpx.ASGITransport(app))
    gateway = Upstream(BASE, KEY, "openrouter:openai/gpt-4o-mini")
    headers = {"HTTP-Referer": "https://example.org", "X-OpenRouter-Title": "tests"}
    data, _ = await post(app, upstreams=[gateway], recorder=recorder, headers=headers)
    sent = recorder.posts()[0]
    assert sent["json"]["model"] == "openrouter:openai/gpt-4o-mini"  # untouched
    assert sent["headers"]["http-referer"] == "https://example.org"
    assert sent["headers"]["x-openrouter-title"] == "tests"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert data["model"] == "openai/gpt-4o-mini"


def test_a_key_echoed_by_the_provider_is_scrubbed_from_the_message() -> None:
    upstream = Upstream(BASE, KEY, MODEL)
    error = classify_error(401, {"message": f"Incorrect API key provided: {KEY}"}, upstream)
    assert KEY not in str(error) and "<key>" in str(error)
    assert KEY not in repr(upstream)


def test_retryable_errors_are_told_apart_from_final_ones() -> None:
    upstream = Upstream(BASE, KEY, MODEL)
    for status in (408, 429, 500, 502, 503, 524, 529):
        assert classify_error(status, {"message": "x"}, upstream).retryable, status
    for status in (400, 401, 402, 403, 404):
        assert not classify_error(status, {"message": "x"}, upstream).retryable, status
    # Newer OpenRouter payloads: no code, an error_type, an availability object.
    overloaded = {"message": "busy", "metadata": {"error_type": "provider_overloaded"}}
    assert classify_error(None, overloaded, upstream).retryable
    final = {"message": "no", "availability": {"retryable": False}, "metadata": {"error_type": "x"}}
    assert not classify_error(None, final, upstream).retryable


async def test_a_stream_request_still_gets_one_json_answer_and_logs_nothing_on_success(
    caplog,
) -> None:
    caplog.set_level(logging.DEBUG, logger="nemo_gym_cli.upstream")
    app = emulator()
    data, _ = await post(app)
    assert data["usage"]["cost"] > 0
    assert retry_lines(caplog) == []


def test_env_proxies_are_honoured_and_looked_up_once_per_origin(monkeypatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    wire = AiohttpWire(session=None)  # type: ignore[arg-type]  # _proxy needs no session
    assert wire._proxy("https://openrouter.ai/api/v1/chat/completions") == "http://proxy.example:3128"
    assert wire._proxy("http://127.0.0.1:8000/api/v1/models") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://other.example:1")
    assert wire._proxy("https://openrouter.ai/api/v1/models") == "http://proxy.example:3128"  # cached


async def test_a_retry_after_longer_than_allowed_ends_at_once_saying_so() -> None:
    app = emulator(fault_schedule={1: "429"}, retry_after_seconds=3600)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        await post(app, max_retry_after_s=60)
    assert time.monotonic() - started < 1
    assert "asks to wait 3600 s" in str(info.value) and "max_retry_after_s=60" in str(info.value)
    assert info.value.kind == "rate_limit" and stats(app)["completion_requests"] == 1
