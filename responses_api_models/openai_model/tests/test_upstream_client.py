"""UpstreamClient over the production wire (``AiohttpWire``) against the real emulator on
loopback: retries, Retry-After, errors that say what to do, timeouts, fallback models,
failover, and no key anywhere; the concurrency cap and replies no emulator sends over a
scripted wire (``support.upstream.HttpxWire``); the one error classifier."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.openai.errors import classify_error
from nemo_gym_cli.providers.upstream import (
    AiohttpWire,
    RetryLog,
    Tally,
    Upstream,
    UpstreamClient,
    WireUnreachable,
    parse_retry_after,
)
from support.clock import FakeClock
from support.emulator import CHAT, KEY, MODEL, emulated, emulator, stats
from support.servers import serving
from support.upstream import HttpxWire, RecordingProxy, refusing_url

pytestmark = pytest.mark.anyio
LOGGER = "nemo_gym_cli.providers.upstream"
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


@asynccontextmanager
async def upstream_client(
    upstreams: list[Upstream], *, read_timeout_s: float = 30.0, **options: Any
) -> AsyncIterator[UpstreamClient]:
    """An ``UpstreamClient`` over the wire the adapter opens in production."""
    async with AiohttpWire.open(pool_size=64, connect_timeout_s=5.0, read_timeout_s=read_timeout_s) as wire:
        yield UpstreamClient(wire, upstreams, **{**FAST, **options})


async def post(base_url: str, body: dict[str, Any] = CHAT, *, model: str = MODEL, **options: Any) -> Any:
    async with upstream_client([Upstream(base_url, KEY, model)], **options) as client:
        return await client.post("chat/completions", body, tools_sent=bool(body.get("tools")))


def retry_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def scripted_wire(reply: Callable[[httpx.Request], httpx.Response]) -> HttpxWire:
    """A wire whose every reply ``reply`` makes (no network)."""
    return HttpxWire(httpx.AsyncClient(transport=httpx.MockTransport(reply)))


# --- retries ----------------------------------------------------------------------------------


async def test_429_and_5xx_are_retried_counted_and_logged_once_per_kind_then_summed_up(caplog) -> None:
    tally = Tally()
    with emulated(fault_schedule={1: "429_bare", 2: "502", 3: "503", 4: "529"}) as url:
        async with upstream_client([Upstream(url + "/api/v1", KEY, MODEL)]) as client:
            data, upstream = await client.post("chat/completions", CHAT, tally=tally)
            client.retry_log.flush()  # what the window's end (or the server's stop) logs
        counted = stats(url)
    assert data["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert upstream.model == MODEL
    assert counted["completion_requests"] == 5
    assert tally.extras() == {"retries": {"rate_limit": 1, "server": 3}, "unpriced_calls": 0}
    lines = retry_lines(caplog)
    assert len(lines) == 3
    assert "attempt 1/6 failed (rate_limit)" in lines[0] and "429" in lines[0]
    assert "attempt 2/6 failed (server)" in lines[1] and "502" in lines[1]
    assert lines[2] == "retried 2 more server errors in the last 0 s"
    assert KEY not in caplog.text


def test_the_retry_log_logs_each_kind_once_a_window_then_one_summary_line(caplog) -> None:
    now = [0.0]
    retry_log = RetryLog(logging.getLogger(LOGGER), window_s=60, clock=lambda: now[0])
    for t in range(0, 150, 2):  # a rate limit every 2 s for 150 s, one 503 at 10 s
        now[0] = float(t)
        retry_log.retry("rate_limit", "full line rate_limit at %d", t)
        if t == 10:
            retry_log.retry("server", "full line server at %d", t)
    retry_log.flush()
    assert retry_lines(caplog) == [
        "full line rate_limit at 0",
        "full line server at 10",
        "retried 29 more rate_limit errors in the last 60 s",
        "full line rate_limit at 60",
        "retried 29 more rate_limit errors in the last 60 s",
        "full line rate_limit at 120",
        "retried 14 more rate_limit errors in the last 28 s",
    ]


async def test_the_summary_line_comes_at_the_window_s_end_without_another_retry(caplog) -> None:
    clock = FakeClock()
    with clock.driving(asyncio.get_running_loop()):
        retry_log = RetryLog(logging.getLogger(LOGGER), window_s=60.0, clock=clock)
        for _ in range(5):  # at 1, 2, 3, 4 and 5 s: the window opened at 1 s
            clock.advance(1.0)
            retry_log.retry("timeout", "full line")
        assert retry_lines(caplog) == ["full line"]
        clock.advance(55.0)  # 60 s: a second before the window's end
        await clock.settle()
        assert retry_lines(caplog) == ["full line"]
        clock.advance(1.0)  # 61 s: the window's end
        await clock.settle()
    assert retry_lines(caplog) == ["full line", "retried 4 more timeout errors in the last 60 s"]


async def test_a_retry_waits_what_retry_after_asks(caplog) -> None:
    with emulated(fault_schedule={1: "429"}, retry_after_seconds=0.5) as url:
        data, _ = await post(url + "/api/v1", backoff_base_s=60.0)  # a backoff would show
        counted = stats(url)
    assert data["choices"]
    (line,) = retry_lines(caplog)
    assert "attempt 1/6 failed (rate_limit)" in line and line.endswith("retrying in 0.50 s")
    assert counted["faults"] == {"429": 1}


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


async def test_a_retry_after_longer_than_allowed_ends_at_once_saying_so() -> None:
    # Were it waited for, the request would succeed after 100 s: the test would fail, not hang.
    with emulated(fault_schedule={1: "429"}, retry_after_seconds=100) as url:
        with pytest.raises(UpstreamError) as info:
            await post(url + "/api/v1", max_retry_after_s=60)
        counted = stats(url)
    assert "asks to wait 100 s" in str(info.value) and "max_retry_after_s=60" in str(info.value)
    assert info.value.kind == "rate_limit" and counted["completion_requests"] == 1


async def test_an_error_in_a_200_body_and_a_body_that_is_not_json_are_retried(caplog) -> None:
    with emulated(fault_schedule={1: "error_200", 2: "malformed"}) as url:
        data, _ = await post(url + "/api/v1")
        counted = stats(url)
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert counted["completion_requests"] == 3
    lines = retry_lines(caplog)
    assert "attempt 1/6" in lines[0] and "in a 200 answer" in lines[0]
    assert "attempt 2/6" in lines[1] and "not JSON" in lines[1]


async def test_attempts_are_bounded_and_the_error_after_them_is_not_retryable() -> None:
    """One layer retries: the collector must not try again what the adapter gave up on."""
    tally = Tally()
    with emulated(fault_rate=1.0, fault_kinds=["503"]) as url:
        async with upstream_client([Upstream(url + "/api/v1", KEY, MODEL)], max_attempts=3) as client:
            with pytest.raises(UpstreamError) as info:
                await client.post("chat/completions", CHAT, tally=tally)
        counted = stats(url)
    assert "gave up after 3 attempts" in str(info.value) and not info.value.retryable
    assert counted["completion_requests"] == 3
    assert tally.retries == {"server": 2}


async def test_a_stall_ends_in_a_timeout_not_a_hang_and_the_next_request_is_answered(caplog) -> None:
    # Without the read timeout the stalls would answer after 20 s each: the test would fail.
    with emulated(fault_schedule={1: "stall", 2: "stall"}, stall_seconds=20) as url:
        async with upstream_client(
            [Upstream(url + "/api/v1", KEY, MODEL)], read_timeout_s=0.3, max_attempts=2
        ) as client:
            with pytest.raises(UpstreamError) as info:
                await client.post("chat/completions", CHAT)
            data, _ = await client.post("chat/completions", CHAT)
    assert info.value.kind == "timeout" and "timed out" in str(info.value)
    assert "raise read_timeout_s" in str(info.value)
    assert data["choices"]
    assert "attempt 1/2 failed (timeout)" in caplog.text


# --- errors that are final ------------------------------------------------------------------


async def test_a_401_ends_with_the_message_and_exactly_one_upstream_request(caplog) -> None:
    with emulated(reject_keys={KEY: 401}) as url:
        with pytest.raises(UpstreamError) as info:
            await post(url + "/api/v1")
        counted = stats(url)
    assert str(info.value).startswith("the API key was rejected: set policy_api_key in env.yaml")
    assert info.value.kind == "auth" and info.value.status == 401 and not info.value.retryable
    assert counted["by_endpoint"] == {"chat.completions": 1}
    assert retry_lines(caplog) == []
    assert KEY not in str(info.value)


async def test_a_402_is_out_of_credits_and_not_retried() -> None:
    with emulated(reject_keys={KEY: 402}) as url:
        with pytest.raises(UpstreamError) as info:
            await post(url + "/api/v1")
        counted = stats(url)
    assert str(info.value).startswith("out of credits")
    assert info.value.kind == "credits" and counted["by_endpoint"] == {"chat.completions": 1}


async def test_an_unknown_model_names_the_model_the_base_url_and_ng_models() -> None:
    with emulated() as url:
        base = url + "/api/v1"
        with pytest.raises(UpstreamError) as info:
            await post(base, model="acme/no-such-model")
        counted = stats(url)
    message = str(info.value)
    assert message.startswith(f"model 'acme/no-such-model' is not available at {base}; list")
    assert "ng models" in message
    assert info.value.kind == "model_not_found" and counted["completion_requests"] == 1


async def test_tools_sent_to_a_model_without_tool_support_say_so() -> None:
    with emulated() as url:
        with pytest.raises(UpstreamError) as info:
            await post(url + "/api/v1", model="gryphe/mythomax-l2-13b")
    assert info.value.kind == "tools_unsupported" and not info.value.retryable
    assert "does not support tool calls, and this request sends tools" in str(info.value)
    assert "ng models +tools=true" in str(info.value)


async def test_context_length_exceeded_is_said_and_not_retried() -> None:
    body = {"messages": [{"role": "user", "content": "weather " * 200}]}
    with emulated(models=[{"id": "tiny/model", "context_length": 64}]) as url:
        with pytest.raises(UpstreamError) as info:
            await post(url + "/api/v1", body, model="tiny/model")
        counted = stats(url)
    assert info.value.kind == "context_length" and info.value.status == 400
    assert "exceeds the context length of model 'tiny/model'" in str(info.value)
    assert counted["completion_requests"] == 1


@pytest.mark.parametrize(
    ("status", "body", "kind", "attempts"),
    [
        (403, {"error": {"code": 403, "message": "flagged", "metadata": {"provider_name": "X"}}}, "forbidden", 1),
        (413, {"error": {"message": "payload too large"}}, "context_length", 1),
        (409, {"error": {"message": "conflict"}}, "server", 3),
        (425, {"error": {"message": "too early"}}, "server", 3),
        (400, {"object": "error", "message": "bad temperature", "type": "BadRequestError"}, "bad_request", 1),
        (500, b"<html>oops</html>", "server", 3),
    ],
)
async def test_replies_no_emulator_sends_are_classified_by_the_one_classifier(
    status: int, body: Any, kind: str, attempts: int
) -> None:
    sent: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(status, content=body) if isinstance(body, bytes) else httpx.Response(status, json=body)

    wire = scripted_wire(reply)
    client = UpstreamClient(wire, [Upstream("https://gateway.test/v1", KEY, MODEL)], max_attempts=3, **FAST)
    async with wire.client:
        with pytest.raises(UpstreamError) as info:
            await client.post("chat/completions", CHAT)
    assert info.value.kind == kind and len(sent) == attempts
    if kind == "bad_request":
        assert "bad temperature" in str(info.value)  # vLLM's flat error body is read


# --- what goes out --------------------------------------------------------------------------


@pytest.fixture
def recorded() -> Any:
    """The emulator behind a recording proxy; yields the stack."""
    factories = {"emulator": emulator(down_models=[MODEL]), "proxy": RecordingProxy.from_spec}
    with serving(factories) as stack:
        yield stack


async def test_fallback_models_are_sent_and_the_answer_names_the_model_that_served(recorded) -> None:
    upstream = Upstream(recorded.urls["proxy"] + "/api/v1", KEY, MODEL, fallback_models=("openai/gpt-4o-mini",))
    async with upstream_client([upstream]) as client:
        data, _ = await client.post("chat/completions", CHAT)
    assert data["model"] == "openai/gpt-4o-mini" and data["provider"] == "OpenAI"
    assert recorded.servers["proxy"].posts()[0]["json"]["models"] == [MODEL, "openai/gpt-4o-mini"]
    assert stats(recorded.urls["emulator"])["served_by_model"] == {"openai/gpt-4o-mini": 1}


async def test_the_model_string_headers_and_key_go_out_as_configured(recorded) -> None:
    gateway = Upstream(recorded.urls["proxy"] + "/api/v1", KEY, "openrouter:openai/gpt-4o-mini")
    headers = {"HTTP-Referer": "https://example.org", "X-OpenRouter-Title": "tests"}
    async with upstream_client([gateway], headers=headers) as client:
        data, _ = await client.post("chat/completions", {**CHAT, "model": "ignored"})
    (sent,) = recorded.servers["proxy"].posts()
    assert sent["path"] == "/api/v1/chat/completions"
    assert sent["json"]["model"] == "openrouter:openai/gpt-4o-mini"  # untouched, the request's ignored
    assert sent["json"]["messages"] == CHAT["messages"]
    assert sent["headers"]["http-referer"] == "https://example.org"
    assert sent["headers"]["x-openrouter-title"] == "tests"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    assert sent["headers"]["content-type"] == "application/json"
    assert data["model"] == "openai/gpt-4o-mini"


async def test_an_alternative_upstream_is_used_at_once_when_the_first_refuses_connections(caplog) -> None:
    with refusing_url() as closed, emulated() as url:
        upstreams = [Upstream(closed, KEY, MODEL), Upstream(url + "/api/v1", "sk-alt", "openai/gpt-4o-mini")]
        # A backoff of up to 60 s would show in the log line: failing over must not wait.
        async with upstream_client(upstreams, backoff_base_s=60.0) as client:
            first, served_by = await client.post("chat/completions", CHAT)
            second, _ = await client.post("chat/completions", CHAT)
        counted = stats(url)
    assert served_by.base_url == url + "/api/v1"
    assert first["model"] == second["model"] == "openai/gpt-4o-mini"
    assert counted["completion_requests"] == 2  # the second went straight to the alternative
    (line,) = retry_lines(caplog)
    assert "attempt 1/6 failed (connection)" in line
    assert line.endswith(f"retrying in 0.00 s via {url}/api/v1")


async def test_concurrent_upstream_requests_are_capped() -> None:
    in_flight, most = 0, 0
    release = asyncio.Event()

    async def hold(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json={"choices": [{"message": {"content": "hi"}, "finish_reason": "stop"}]})

    wire = scripted_wire(hold)  # type: ignore[arg-type]  # MockTransport takes async handlers too
    client = UpstreamClient(wire, [Upstream("https://gateway.test/v1", KEY, MODEL)], max_concurrency=3)
    async with wire.client:
        posts = [asyncio.ensure_future(client.post("chat/completions", CHAT)) for _ in range(12)]
        while in_flight < 3:
            await asyncio.sleep(0)
        for _ in range(20):  # every task has had its turn: the fourth is held at the gate
            await asyncio.sleep(0)
        assert in_flight == 3
        release.set()
        answers = await asyncio.gather(*posts)
    assert most == 3 and len(answers) == 12


async def test_a_successful_request_logs_nothing(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with emulated() as url:
        data, _ = await post(url + "/api/v1")
    assert data["usage"]["cost"] > 0
    assert retry_lines(caplog) == []


# --- the wire and the classifier ------------------------------------------------------------


async def test_the_aiohttp_wire_says_when_a_connection_was_refused() -> None:
    with refusing_url("") as closed:
        async with AiohttpWire.open(pool_size=1, connect_timeout_s=5, read_timeout_s=5) as wire:
            with pytest.raises(WireUnreachable) as info:
                await wire.request("GET", closed + "/models", headers={})
    assert info.value.refused


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


def test_a_key_echoed_by_the_provider_is_scrubbed_from_the_message() -> None:
    upstream = Upstream("https://gateway.test/v1", KEY, MODEL)
    error = classify_error(401, {"message": f"Incorrect API key provided: {KEY}"}, upstream)
    assert KEY not in str(error) and "<key>" in str(error)
    assert KEY not in repr(upstream)


def test_retryable_errors_are_told_apart_from_final_ones() -> None:
    upstream = Upstream("https://gateway.test/v1", KEY, MODEL)
    for status in (408, 409, 425, 429, 500, 502, 503, 524, 529):
        assert classify_error(status, {"message": "x"}, upstream).retryable, status
    for status in (400, 401, 402, 403, 404, 413):
        assert not classify_error(status, {"message": "x"}, upstream).retryable, status
    assert classify_error(403, {"message": "x"}, upstream).kind == "forbidden"
    assert classify_error(413, {"message": "x"}, upstream).kind == "context_length"
    # Newer OpenRouter payloads: no code, an error_type, an availability object.
    overloaded = {"message": "busy", "metadata": {"error_type": "provider_overloaded"}}
    assert classify_error(None, overloaded, upstream).retryable
    final = {"message": "no", "availability": {"retryable": False}, "metadata": {"error_type": "x"}}
    assert not classify_error(None, final, upstream).retryable
