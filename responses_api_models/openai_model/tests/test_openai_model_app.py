"""The openai_model server in-process against the emulator: its start-up check, the answers
agents get (model, provider, cost), errors as structured bodies logged once per kind."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from nemo_gym_cli.errors import ConfigError, UpstreamError
from responses_api_models.openai_model.app import create_app
from responses_api_models.openai_model.tests.emulated_upstream import (
    CHAT,
    KEY,
    RESPONSES_PARAMS,
    Recorder,
    emulator,
    free_port,
    model_spec,
    serve_in_thread,
    stats,
)

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def model_server(upstream_app, transport: httpx.AsyncBaseTransport | None = None, **fields):
    """The model server started (lifespan run, so the start-up check too); yields a client."""
    app = create_app(model_spec(**fields), transport=transport or httpx.ASGITransport(upstream_app))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://model") as client:
            yield client


async def test_a_response_names_the_model_that_served_its_provider_tokens_and_cost() -> None:
    upstream = emulator(down_models=["emulator/scripted-tool-caller"])
    async with model_server(upstream, fallback_models=["openai/gpt-4o-mini"]) as client:
        resp = await client.post("/v1/responses", json=RESPONSES_PARAMS)
    body = resp.json()
    assert resp.status_code == 200
    assert body["model"] == "openai/gpt-4o-mini" and body["provider"] == "OpenAI"
    assert body["output"][0]["type"] == "function_call" and body["output"][0]["name"] == "get_weather"
    emulated = stats(upstream)
    assert body["usage"]["cost"] == emulated["cost"] > 0
    assert body["usage"]["input_tokens"] == emulated["prompt_tokens"]
    assert body["usage"]["output_tokens"] == emulated["completion_tokens"]


async def test_the_start_up_check_passes_in_well_under_100_ms() -> None:
    upstream = emulator()
    app = create_app(model_spec(), transport=httpx.ASGITransport(upstream))
    started = time.perf_counter()
    async with app.router.lifespan_context(app):
        elapsed = time.perf_counter() - started
    assert elapsed < 0.1
    assert stats(upstream)["by_endpoint"] == {"key": 1, "models": 1}


async def test_a_rejected_key_fails_the_start_up_check_with_the_message(caplog) -> None:
    upstream = emulator(reject_keys={KEY: 401})
    with pytest.raises(UpstreamError) as info:
        async with model_server(upstream):
            pass
    assert str(info.value).startswith("the API key was rejected: set policy_api_key in env.yaml")
    assert stats(upstream)["by_endpoint"]["key"] == 1
    assert "chat.completions" not in stats(upstream)["by_endpoint"]
    assert "start-up check failed: the API key was rejected" in caplog.text
    assert "preflight: false" in caplog.text
    assert KEY not in caplog.text


async def test_a_key_out_of_credit_fails_the_start_up_check() -> None:
    with pytest.raises(UpstreamError) as info:
        async with model_server(emulator(reject_keys={KEY: 402})):
            pass
    assert str(info.value).startswith("out of credits") and info.value.kind == "credits"


async def test_an_unknown_model_fails_the_start_up_check() -> None:
    with pytest.raises(UpstreamError) as info:
        async with model_server(emulator(), openai_model="acme/typo-model"):
            pass
    assert str(info.value).startswith(
        "model 'acme/typo-model' is not available at http://emulator/api/v1; list the models it offers with `ng models`"
    )


async def test_a_gateway_prefix_or_routing_variant_passes_the_start_up_check() -> None:
    for model in ("openrouter:openai/gpt-4o-mini", "openai/gpt-4o-mini:nitro", "openrouter/auto"):
        async with model_server(emulator(), openai_model=model):
            pass


async def test_a_model_without_tool_support_is_a_start_up_warning(caplog) -> None:
    async with model_server(emulator(), openai_model="gryphe/mythomax-l2-13b") as client:
        resp = await client.post("/v1/responses", json=RESPONSES_PARAMS)
    assert "does not list tool support" in caplog.text
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "tools_unsupported"


async def test_preflight_false_skips_the_check() -> None:
    upstream = emulator(reject_keys={KEY: 401})
    async with model_server(upstream, preflight=False):
        pass
    assert stats(upstream)["requests"] == 0


async def test_the_start_up_check_waits_for_an_upstream_that_is_still_starting() -> None:
    upstream = emulator()
    port = free_port()
    app = create_app(model_spec(openai_base_url=f"http://127.0.0.1:{port}/api/v1"))  # the real client
    serving = serve_in_thread(upstream, port)
    later = threading.Timer(0.3, serving.__enter__)  # the upstream comes up 0.3 s from now
    later.start()
    try:
        started = time.monotonic()
        async with app.router.lifespan_context(app):
            waited = time.monotonic() - started
    finally:
        later.join()
        serving.__exit__(None, None, None)
    assert 0.25 < waited < 5
    assert stats(upstream)["by_endpoint"] == {"key": 1, "models": 1}


async def test_an_unreachable_upstream_fails_the_start_up_check_after_its_timeout() -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/v1"
    app = create_app(model_spec(openai_base_url=closed, preflight_timeout_s=0.3))
    started = time.monotonic()
    with pytest.raises(UpstreamError) as info:
        async with app.router.lifespan_context(app):
            pass
    assert time.monotonic() - started < 2
    assert str(info.value).startswith(f"cannot reach {closed}")


async def test_an_unreachable_alternative_is_only_a_warning(caplog) -> None:
    upstream = emulator()
    closed = f"http://127.0.0.1:{free_port()}/v1"
    with serve_in_thread(upstream) as url:
        fields = {
            "openai_base_url": url + "/api/v1",
            "alternative_upstreams": [{"base_url": closed, "api_key": "sk-alt"}],
            "preflight_timeout_s": 5,
        }
        app = create_app(model_spec(**fields))
        started = time.monotonic()
        async with app.router.lifespan_context(app):
            assert time.monotonic() - started < 2.5  # the grace after the first passed, not 5 s
    assert "upstream unreachable at start-up (requests fail over past it)" in caplog.text


async def test_errors_reach_the_agent_as_structured_bodies_and_are_logged_once_per_kind(
    caplog,
) -> None:
    upstream = emulator(reject_keys={KEY: 401})
    async with model_server(upstream, preflight=False) as client:
        answers = [await client.post("/v1/responses", json=RESPONSES_PARAMS) for _ in range(3)]
        chat = await client.post("/v1/chat/completions", json=CHAT)
    for resp in [*answers, chat]:
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert error["type"] == "auth" and error["code"] == 401 and error["retryable"] is False
        assert error["message"].startswith("the API key was rejected: set policy_api_key in env.yaml")
        assert KEY not in resp.text
    errors = [r for r in caplog.records if r.name == "openai_model" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert stats(upstream)["by_endpoint"] == {"chat.completions": 4}  # one each: no retry storm


async def test_retries_that_run_out_give_the_agent_a_502_it_may_retry() -> None:
    upstream = emulator(fault_rate=1.0, fault_kinds=["503"])
    async with model_server(upstream, preflight=False, max_attempts=2) as client:
        resp = await client.post("/v1/responses", json=RESPONSES_PARAMS)
    assert resp.status_code == 502
    assert resp.json()["error"]["retryable"] is True and "gave up after 2 attempts" in resp.json()["error"]["message"]


async def test_extra_body_and_headers_go_out_and_the_request_wins_over_extra_body() -> None:
    upstream = emulator()
    recorder = Recorder(httpx.ASGITransport(upstream))
    fields = {
        "extra_body": {"provider": {"sort": "price"}, "temperature": 0.1},
        "default_headers": {"X-OpenRouter-Title": "tests"},
    }
    async with model_server(upstream, transport=recorder, **fields) as client:
        resp = await client.post("/v1/responses", json={**RESPONSES_PARAMS, "temperature": 0.7, "model": "ignored"})
    assert resp.status_code == 200
    sent = recorder.posts()[0]
    assert sent["json"]["provider"] == {"sort": "price"} and sent["json"]["temperature"] == 0.7
    assert sent["json"]["model"] == "emulator/scripted-tool-caller"  # the server's model, not the request's
    assert sent["headers"]["x-openrouter-title"] == "tests"
    assert all(r["headers"]["x-openrouter-title"] == "tests" for r in recorder.requests)  # start-up check too


async def test_chat_completions_and_a_responses_upstream_work_too() -> None:
    upstream = emulator()
    async with model_server(upstream) as client:
        chat = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert chat.status_code == 200 and chat.json()["choices"][0]["finish_reason"] == "tool_calls"
    async with model_server(upstream, upstream_api="responses") as client:
        resp = await client.post("/v1/responses", json=RESPONSES_PARAMS)
        chat = await client.post("/v1/chat/completions", json=CHAT)
    assert resp.status_code == 200 and resp.json()["output"][0]["name"] == "get_weather"
    assert resp.json()["usage"]["cost"] > 0
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["tool_calls"]


def test_an_invalid_config_is_named_without_echoing_the_key() -> None:
    spec = model_spec(openai_model=None, max_attempts=0)
    with pytest.raises(ConfigError) as info:
        create_app(spec)
    assert "openai_model" in str(info.value) and "max_attempts" in str(info.value)
    assert KEY not in str(info.value)
