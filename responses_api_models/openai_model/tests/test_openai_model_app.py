"""The openai_model adapter served for real on loopback, in front of the real emulator: its
start-up check, the answers agents get (model, provider, cost, scripted rows), errors in the
envelope and logged once per kind, what it sends upstream (seen by a recording proxy)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from nemo_gym_cli.errors import ConfigError, UpstreamError
from nemo_gym_cli.openai.streams import assemble_chat
from nemo_gym_cli.server import ServerSpec, asgi
from responses_api_models.openai_model.app import OpenAIModel
from responses_api_models.provider_emulator.app import ProviderEmulator
from support.emulator import CHAT, KEY, MODEL, RESPONSES_PARAMS, emulated, emulator, stats
from support.servers import Factory, serving
from support.upstream import RecordingProxy, refusing_url

SPEC = ServerSpec(name="policy_model", server_type="responses_api_models", implementation="openai_model")


def openai_model(base_url: str | None = None, **fields: Any) -> Factory:
    """A ``serving`` factory: the adapter in front of ``base_url`` (default: the instance
    named ``emulator`` of the same stack), with these config fields."""

    def build(spec: ServerSpec) -> OpenAIModel:
        base = {
            "openai_base_url": base_url or spec.server_urls["emulator"] + "/api/v1",
            "openai_api_key": KEY,
            "openai_model": MODEL,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        return OpenAIModel.from_fields({**base, **fields}, spec)

    return build


@contextmanager
def model_server(upstream_url: str, **fields: Any) -> Iterator[str]:
    """The adapter (its start-up check run) in front of the emulator at ``upstream_url``;
    yields the adapter's URL."""
    with serving({"model": openai_model(upstream_url + "/api/v1", **fields)}) as stack:
        yield stack.urls["model"]


def post(url: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, trust_env=False)


# --- answers ----------------------------------------------------------------------------------


def test_a_response_names_the_model_that_served_its_provider_tokens_and_cost() -> None:
    with emulated(down_models=[MODEL]) as upstream:
        with model_server(upstream, fallback_models=["openai/gpt-4o-mini"]) as url:
            resp = post(url, "/v1/responses", RESPONSES_PARAMS)
        counted = stats(upstream)
    body = resp.json()
    assert resp.status_code == 200
    assert body["model"] == "openai/gpt-4o-mini" and body["provider"] == "OpenAI"
    assert body["output"][0]["type"] == "function_call" and body["output"][0]["name"] == "get_weather"
    assert body["usage"]["cost"] == counted["cost"] > 0
    assert body["usage"]["input_tokens"] == counted["prompt_tokens"]
    assert body["usage"]["output_tokens"] == counted["completion_tokens"]


def test_chat_completions_and_a_responses_upstream_work_too() -> None:
    with emulated() as upstream:
        with model_server(upstream) as url:
            streamed = post(url, "/v1/chat/completions", {**CHAT, "stream": True})
        with model_server(upstream, upstream_api="responses") as url:
            resp = post(url, "/v1/responses", RESPONSES_PARAMS)
            chat = post(url, "/v1/chat/completions", CHAT)
    # asked to stream, the adapter streams (the base renders the answer as chunks)
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert assemble_chat(streamed.content)["choices"][0]["finish_reason"] == "tool_calls"
    assert resp.status_code == 200 and resp.json()["output"][0]["name"] == "get_weather"
    assert resp.json()["usage"]["cost"] > 0
    assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["tool_calls"]


@pytest.mark.parametrize("upstream_api", ["chat_completions", "responses"])
def test_a_row_s_emulator_script_reaches_the_emulator_through_the_adapter(upstream_api: str) -> None:
    script = '[{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}, {"text": "Cold in Oslo."}]'
    params = {**RESPONSES_PARAMS, "metadata": {"emulator_script": script}}
    with emulated() as upstream, model_server(upstream, upstream_api=upstream_api, emulator_metadata=True) as url:
        first = post(url, "/v1/responses", params).json()
        call = first["output"][0]
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "{}"}
        second = post(url, "/v1/responses", {**params, "input": [*params["input"], call, output]}).json()
    assert (call["type"], call["name"], call["arguments"]) == ("function_call", "get_weather", '{"city":"Oslo"}')
    assert second["output"][-1]["content"][0]["text"] == "Cold in Oslo."


@pytest.mark.parametrize(
    ("upstream_api", "stream"), [("chat_completions", False), ("chat_completions", True), ("responses", False)]
)
def test_a_provider_s_reasoning_becomes_a_responses_reasoning_item(upstream_api: str, stream: bool) -> None:
    thought = "Edges into a1: b2 -> a1, so its one parent is b2."
    script = '[{"reasoning": "' + thought + '", "text": "b2"}]'
    params = {"input": "parents of a1?", "metadata": {"emulator_script": script}}
    fields = {"upstream_api": upstream_api, "emulator_metadata": True}
    if stream:
        fields["upstream_stream"] = True  # the upstream streams: the reasoning arrives in deltas
    ask = {"messages": [{"role": "user", "content": "parents of a1?"}], "metadata": params["metadata"]}
    with emulated() as upstream, model_server(upstream, **fields) as url:
        body = post(url, "/v1/responses", params).json()
        chat = post(url, "/v1/chat/completions", ask).json()
    assert [item["type"] for item in body["output"]] == ["reasoning", "message"]
    assert body["output"][0]["summary"] == [{"type": "summary_text", "text": thought}]
    assert body["output"][1]["content"][0]["text"] == "b2"
    assert chat["choices"][0]["message"]["reasoning"] == thought  # and to a chat client, the field it reads


# --- the start-up check -----------------------------------------------------------------------


def test_the_start_up_check_asks_for_the_key_and_the_models_once_each() -> None:
    with emulated() as upstream:
        with model_server(upstream):
            pass
        assert stats(upstream)["by_endpoint"] == {"key": 1, "models": 1}


def test_a_rejected_key_fails_the_start_up_check_with_the_message() -> None:
    with emulated(reject_keys={KEY: 401}) as upstream:
        with pytest.raises(UpstreamError) as info:
            with model_server(upstream):
                pass
        counted = stats(upstream)
    message = str(info.value)
    assert message.startswith("start-up check failed: the API key was rejected: set policy_api_key in env.yaml")
    assert message.endswith("(preflight: false skips this check)")
    assert info.value.kind == "auth"
    assert KEY not in message
    assert counted["by_endpoint"]["key"] == 1
    assert "chat.completions" not in counted["by_endpoint"]


def test_a_key_out_of_credit_fails_the_start_up_check() -> None:
    with emulated(reject_keys={KEY: 402}) as upstream:
        with pytest.raises(UpstreamError) as info:
            with model_server(upstream):
                pass
    assert str(info.value).startswith("start-up check failed: out of credits") and info.value.kind == "credits"


def test_an_unknown_model_fails_the_start_up_check() -> None:
    with emulated() as upstream:
        with pytest.raises(UpstreamError) as info:
            with model_server(upstream, openai_model="acme/typo-model"):
                pass
    assert str(info.value).startswith(
        f"start-up check failed: model 'acme/typo-model' is not available at {upstream}/api/v1; "
        "list the models it offers with `ng models`"
    )


@pytest.mark.parametrize("model", ["openrouter:openai/gpt-4o-mini", "openai/gpt-4o-mini:nitro", "openrouter/auto"])
def test_a_gateway_prefix_a_routing_variant_or_a_router_passes_the_start_up_check(model: str) -> None:
    with emulated() as upstream, model_server(upstream, openai_model=model):
        pass


def test_a_model_without_tool_support_is_a_start_up_warning(caplog) -> None:
    with emulated() as upstream, model_server(upstream, openai_model="gryphe/mythomax-l2-13b") as url:
        resp = post(url, "/v1/responses", RESPONSES_PARAMS)
    assert "does not list tool support" in caplog.text
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "tools_unsupported"


def test_an_allowed_model_the_upstream_does_not_offer_fails_the_start_up_check() -> None:
    with emulated() as upstream:
        with pytest.raises(UpstreamError) as info:
            with model_server(upstream, allowed_models=["openai/gpt-4o-mini", "acme/nonexistent"]):
                pass
    assert "model 'acme/nonexistent' (in allowed_models, or a sweep's +models) is not available at" in str(info.value)
    assert info.value.status == 404


def test_preflight_false_skips_the_check() -> None:
    with emulated(reject_keys={KEY: 401}) as upstream:
        with model_server(upstream, preflight=False):
            pass
        assert stats(upstream)["requests"] == 0


def test_the_start_up_check_waits_for_an_upstream_that_is_still_starting() -> None:
    async def scenario() -> dict[str, Any]:
        with socket.socket() as sock:  # bound, not listening: connections are refused
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
            adapter = openai_model(url, preflight_timeout_s=60)(SPEC)
            starting = asyncio.ensure_future(adapter.startup())
            await asyncio.sleep(0.2)  # the upstream comes up later; meanwhile the check waits
            assert not starting.done(), starting.exception()
            upstream = ProviderEmulator()
            sock.listen()
            server = uvicorn.Server(uvicorn.Config(asgi(upstream), log_level="warning"))
            served = asyncio.ensure_future(server.serve(sockets=[sock]))
            try:
                await asyncio.wait_for(starting, 30)
                return upstream.stats.as_dict()
            finally:
                await adapter.shutdown()
                server.should_exit = True
                await served

    counted = asyncio.run(scenario())
    assert counted["by_endpoint"] == {"key": 1, "models": 1}


def test_an_unreachable_upstream_fails_the_start_up_check_after_its_timeout() -> None:
    with refusing_url() as closed:
        with pytest.raises(UpstreamError) as info:
            with serving({"model": openai_model(closed, preflight_timeout_s=0.3)}):
                pass
    assert str(info.value).startswith(f"start-up check failed: cannot reach {closed}")
    assert info.value.kind == "connection"


def test_an_unreachable_alternative_is_only_a_warning(caplog) -> None:
    # Were the alternative waited for, start-up would take 60 s: serving gives up after 30.
    with refusing_url("/v1") as closed, emulated() as upstream:
        alternatives = [{"base_url": closed, "api_key": "sk-alt"}]
        with model_server(upstream, alternative_upstreams=alternatives, preflight_timeout_s=60):
            pass
    assert "upstream unreachable at start-up (requests fail over past it)" in caplog.text
    assert "sk-alt" not in caplog.text


# --- errors -----------------------------------------------------------------------------------


def test_errors_reach_the_agent_in_the_envelope_and_are_logged_once_per_kind(caplog) -> None:
    with emulated(reject_keys={KEY: 401}) as upstream:
        with model_server(upstream, preflight=False) as url:
            answers = [post(url, "/v1/responses", RESPONSES_PARAMS) for _ in range(3)]
            chat = post(url, "/v1/chat/completions", CHAT)
        counted = stats(upstream)
    for resp in [*answers, chat]:
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert error["type"] == "auth" and error["code"] == 401 and error["retryable"] is False
        assert error["message"].startswith("the API key was rejected: set policy_api_key in env.yaml")
        assert KEY not in resp.text
    errors = [r for r in caplog.records if r.name == "openai_model" and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert counted["by_endpoint"] == {"chat.completions": 4}  # one each: no retry storm


def test_retries_that_run_out_give_the_agent_a_502_no_one_retries_and_what_they_cost() -> None:
    """One layer retries (the adapter): 6 adapter attempts x 3 collector tries would be 18."""
    with emulated(fault_rate=1.0, fault_kinds=["503"]) as upstream:
        with model_server(upstream, preflight=False, max_attempts=2) as url:
            resp = post(url, "/v1/responses", RESPONSES_PARAMS)
    assert resp.status_code == 502
    error = resp.json()["error"]
    assert error["retryable"] is False and "gave up after 2 attempts" in error["message"]
    assert resp.json()["usage"] == {"retries": {"server": 1}, "unpriced_calls": 0}


def test_a_request_the_adapter_cannot_convert_is_a_400_that_never_goes_upstream() -> None:
    with emulated() as upstream:
        with model_server(upstream) as url:
            resp = post(url, "/v1/responses", {**RESPONSES_PARAMS, "previous_response_id": "resp_1"})
            not_an_object = httpx.post(url + "/v1/responses", json=[1], timeout=30)
        counted = stats(upstream)
    assert resp.status_code == 400 and "previous_response_id" in resp.json()["error"]["message"]
    assert not_an_object.status_code == 400 and not_an_object.json()["error"]["code"] == 400
    assert "chat.completions" not in counted["by_endpoint"]


# --- what goes upstream -----------------------------------------------------------------------


def test_extra_body_and_headers_go_out_and_the_request_wins_over_extra_body() -> None:
    fields = {
        "extra_body": {"provider": {"sort": "price"}, "temperature": 0.1},
        "default_headers": {"X-OpenRouter-Title": "tests"},
    }
    factories = {
        "emulator": emulator(),
        "proxy": RecordingProxy.from_spec,
        "model": lambda spec: openai_model(spec.server_urls["proxy"] + "/api/v1", **fields)(spec),
    }
    with serving(factories) as stack:
        resp = post(stack.urls["model"], "/v1/responses", {**RESPONSES_PARAMS, "temperature": 0.7})
        proxy: RecordingProxy = stack.servers["proxy"]
    assert resp.status_code == 200
    checked = sorted(r["path"] for r in proxy.requests if r["method"] == "GET")
    assert checked == ["/api/v1/key", "/api/v1/models"]
    (sent,) = proxy.posts()
    assert sent["path"] == "/api/v1/chat/completions"
    assert sent["json"]["provider"] == {"sort": "price"} and sent["json"]["temperature"] == 0.7
    assert sent["json"]["model"] == MODEL  # a request without a model gets the configured one
    assert "stream" not in sent["json"]
    assert all(r["headers"]["x-openrouter-title"] == "tests" for r in proxy.requests)  # start-up check too
    assert all(r["headers"]["authorization"] == f"Bearer {KEY}" for r in proxy.requests)


# --- which model a request gets -----------------------------------------------------------------

ALLOWED = "anthropic/claude-3.5-sonnet"
FALLBACK = "openai/gpt-4o-mini"


def _recorded(requests: list[tuple[str, dict[str, Any]]], **fields: Any) -> tuple[list[httpx.Response], list[dict]]:
    """Each (path, body) posted to the adapter (with these fields) in front of a recording
    proxy before the emulator; returns the answers and the bodies the proxy forwarded."""
    factories = {
        "emulator": emulator(),
        "proxy": RecordingProxy.from_spec,
        "model": lambda spec: openai_model(spec.server_urls["proxy"] + "/api/v1", **fields)(spec),
    }
    with serving(factories) as stack:
        answers = [post(stack.urls["model"], path, body) for path, body in requests]
        proxy: RecordingProxy = stack.servers["proxy"]
    return answers, [r["json"] for r in proxy.posts()]


def test_a_request_naming_an_allowed_model_is_sent_with_that_model_alone() -> None:
    fields = {"allowed_models": [ALLOWED], "fallback_models": [FALLBACK]}
    requests = [
        ("/v1/responses", {**RESPONSES_PARAMS, "model": ALLOWED}),
        ("/v1/chat/completions", {**CHAT, "model": ALLOWED}),
        ("/v1/responses", RESPONSES_PARAMS),
        ("/v1/responses", {**RESPONSES_PARAMS, "model": MODEL}),
    ]
    answers, sent = _recorded(requests, **fields)
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.json()["model"] for a in answers] == [ALLOWED, ALLOWED, MODEL, MODEL]
    # an allowed model goes without the configured model's fallbacks: what serves is what was asked
    assert [(b["model"], b.get("models")) for b in sent] == [
        (ALLOWED, None),
        (ALLOWED, None),
        (MODEL, [MODEL, FALLBACK]),
        (MODEL, [MODEL, FALLBACK]),
    ]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", {**RESPONSES_PARAMS, "model": "openai/gpt-4o"}),
        ("/v1/chat/completions", {**CHAT, "model": "openai/gpt-4o"}),
        ("/v1/responses", {**RESPONSES_PARAMS, "models": [ALLOWED, "openai/gpt-4o"]}),
    ],
)
def test_a_request_naming_a_model_not_allowed_is_a_400_saying_which_are_and_never_goes_upstream(
    path: str, body: dict[str, Any]
) -> None:
    (answer,), sent = _recorded([(path, body)], allowed_models=[ALLOWED])
    assert answer.status_code == 400 and sent == []
    error = answer.json()["error"]
    assert (error["type"], error["code"], error["retryable"]) == ("model_not_allowed", 400, False)
    assert error["message"] == (  # the instance's key path, model.test.model under `serving`
        f"model 'openai/gpt-4o' is not allowed by model.test.model: it serves ['{MODEL}', '{ALLOWED}'] "
        "(openai_model and allowed_models); add 'openai/gpt-4o' to model.test.model.allowed_models "
        "(ng_collect_rollouts +models=[...] does when it starts the servers), or leave 'model' out of the request"
    )


@pytest.mark.parametrize("emulator_metadata", [False, True])
def test_emulator_scripts_go_upstream_only_when_emulator_metadata_is_set(emulator_metadata: bool) -> None:
    script = '[{"text": "Sunny."}]'
    requests = [
        ("/v1/responses", {**RESPONSES_PARAMS, "metadata": {"emulator_script": script, "run": "r1"}}),
        ("/v1/chat/completions", {**CHAT, "metadata": {"emulator_script": script}}),
    ]
    answers, sent = _recorded(requests, emulator_metadata=emulator_metadata)
    assert [a.status_code for a in answers] == [200, 200]
    if emulator_metadata:
        assert [b["metadata"] for b in sent] == [{"emulator_script": script, "run": "r1"}, {"emulator_script": script}]
        assert answers[1].json()["choices"][0]["message"]["content"] == "Sunny."
    else:  # other metadata stays; the script (the expected answers) never reaches a provider
        assert sent[0]["metadata"] == {"run": "r1"} and "metadata" not in sent[1]
        assert answers[1].json()["choices"][0]["message"]["tool_calls"]  # the emulator's own policy answered


def test_upstream_requests_in_flight_are_capped_by_max_concurrency() -> None:
    factories = {
        "emulator": emulator(latency_ms=100),
        "proxy": RecordingProxy.from_spec,
        "model": lambda spec: openai_model(spec.server_urls["proxy"] + "/api/v1", max_concurrency=2)(spec),
    }

    async def burst(url: str) -> list[int]:
        async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
            answers = await asyncio.gather(*(http.post(url + "/v1/responses", json=RESPONSES_PARAMS) for _ in range(8)))
        return [r.status_code for r in answers]

    with serving(factories) as stack:
        statuses = asyncio.run(burst(stack.urls["model"]))
        proxy: RecordingProxy = stack.servers["proxy"]
    assert statuses == [200] * 8
    assert len(proxy.posts()) == 8
    assert proxy.max_in_flight <= 2


def test_an_invalid_config_is_one_line_naming_each_key_without_echoing_the_key() -> None:
    fields = {"openai_base_url": "http://x/v1", "openai_api_key": KEY, "openai_model": None, "max_attempts": 0}
    with pytest.raises(ConfigError) as info:
        OpenAIModel.from_fields(fields, SPEC)
    message = str(info.value)
    assert "\n" not in message
    assert "policy_model.responses_api_models.openai_model.openai_model: " in message
    assert "policy_model.responses_api_models.openai_model.max_attempts: " in message
    assert KEY not in message


def test_an_unknown_adapter_key_is_named_with_the_closest_one() -> None:
    with pytest.raises(ConfigError, match=r"\.max_attempt: unknown key; did you mean 'max_attempts'\?"):
        OpenAIModel.from_fields({"openai_base_url": "http://x/v1", "openai_model": MODEL, "max_attempt": 3}, SPEC)
