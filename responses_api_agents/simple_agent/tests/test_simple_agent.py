"""simple_agent's loop on the Agent base, served for real on loopback with a scripted model
and the real simple_weather."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server import tool
from resources_servers.simple_weather.app import SimpleWeather
from responses_api_agents.simple_agent.app import SimpleAgent
from support.scripted_model import MESSAGE, ScriptedModel, call
from support.servers import serving

ROW = {"responses_create_params": {"input": "weather in sf?"}, "expected_city": "San Francisco"}
REFS = {
    "resources_server": {"type": "resources_servers", "name": "res"},
    "model_server": {"type": "responses_api_models", "name": "model"},
}


class LostSessions(SimpleWeather):
    """simple_weather whose tool has lost every session, as a restarted server would have."""

    @tool
    async def get_weather(self, session: dict[str, Any], city: str) -> dict[str, Any]:
        """Get the current weather in a city."""
        raise HTTPError(400, "no seeded session: call /seed_session first", kind="no_session")


@contextmanager
def stack(
    turns: list[Any], env: type[SimpleWeather] = SimpleWeather, **agent_fields: Any
) -> Iterator[tuple[str, ScriptedModel]]:
    model = ScriptedModel(turns)
    factories = {
        "model": lambda spec: model,
        "res": lambda spec: env(spec=spec),
        "agent": lambda spec: SimpleAgent.from_fields({**REFS, **agent_fields}, spec),
    }
    with serving(factories) as s:
        yield s.urls["agent"], model


def run(url: str, row: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + "/run", json=row, timeout=30)


def test_the_loop_calls_tools_feeds_outputs_back_and_verifies():
    with stack([[call("get_weather", '{"city": "San Francisco"}', "c1")], [MESSAGE]]) as (url, model):
        row = run(url, ROW).json()
    assert [i["type"] for i in row["response"]["output"]] == ["function_call", "function_call_output", "message"]
    assert '"condition":"foggy"' in row["response"]["output"][1]["output"]
    assert row["reward"] == 1.0
    assert row["response"]["usage"] == {
        "input_tokens": 20,
        "output_tokens": 4,
        "cost": 1.0,
        "total_tokens": 24,  # completed: every count both OpenAI SDK versions require
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    # the second model call saw the user turn, the call and its output
    assert [i.get("type", "message") for i in model.inputs[1]] == ["message", "function_call", "function_call_output"]


def test_a_row_without_tools_is_offered_the_resources_servers_tools():
    with stack([[MESSAGE]]) as (url, model):
        run(url, ROW)
    (tool,) = model.requests[0]["tools"]
    assert tool["name"] == "get_weather" and tool["parameters"]["required"] == ["city"] and "strict" in tool


def test_a_row_offering_a_tool_the_resources_server_lacks_is_refused_not_scored_zero():
    row = {**ROW, "responses_create_params": {"input": "hi", "tools": [{"type": "function", "name": "get_stock"}]}}
    with stack([[MESSAGE]]) as (url, model):
        resp = run(url, row)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["type"] == "unknown_tools" and error["retryable"] is False
    assert "['get_stock']" in error["message"] and "get_weather" in error["message"]
    assert model.inputs == []


def test_invalid_tool_arguments_go_back_to_the_model_as_an_error():
    with stack([[call("get_weather", '{"city": "San Fr', "c1")], [MESSAGE]]) as (url, _):
        row = run(url, ROW).json()
    output = row["response"]["output"][1]
    assert output["type"] == "function_call_output" and "not valid JSON" in output["output"]
    assert row["reward"] == 0.0  # the tool never ran


def test_a_tool_error_goes_back_to_the_model_as_its_message():
    with stack([[call("get_weather", '{"town": "Paris"}', "c1")], [MESSAGE]]) as (url, _):
        row = run(url, ROW).json()
    output = row["response"]["output"][1]["output"]
    assert "get_weather: argument city: Field required" in output and "argument town: unknown argument" in output


def test_an_unknown_tool_is_an_error_output_not_a_crash():
    with stack([[call("get_stock_price", "{}", "c1")], [MESSAGE]]) as (url, _):
        row = run(url, ROW).json()
    assert "unknown tool 'get_stock_price'" in row["response"]["output"][1]["output"]


def test_a_resources_server_failure_that_is_not_the_models_fails_the_rollout():
    with stack([[call("get_weather", '{"city": "Paris"}', "c1")], [MESSAGE]], env=LostSessions) as (url, model):
        resp = run(url, ROW)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["type"] == "no_session" and resp.json()["error"]["retryable"] is False
    assert len(model.inputs) == 1  # the model never saw the failure as a tool output


def test_max_steps_ends_a_loop_that_never_stops_calling_tools():
    turns = [[call("get_weather", '{"city": "Paris"}', f"c{i}")] for i in range(10)]
    with stack(turns, max_steps=3) as (url, model):
        row = run(url, ROW).json()
    assert len(model.inputs) == 3
    assert row["reward"] == 0.0  # no final message


def test_a_model_failure_ends_the_rollout_in_the_envelope_with_what_it_had_cost():
    turns = [[call("get_weather", '{"city": "Paris"}', "c1")], HTTPError(429, "slow down", kind="rate_limit")]
    with stack(turns) as (url, _):
        resp = run(url, ROW)
    body = resp.json()
    assert resp.status_code == 502
    assert body["error"]["type"] == "rate_limit" and body["error"]["retryable"] is True
    assert body["usage"] == {"input_tokens": 10, "output_tokens": 2, "cost": 0.5}


def test_a_bad_row_is_a_400_that_is_not_retried():
    with stack([[MESSAGE]]) as (url, _):
        resp = run(url, {"responses_create_params": 5})
        assert resp.status_code == 400 and resp.json()["error"]["retryable"] is False
        assert "responses_create_params must be an object" in resp.json()["error"]["message"]
        resp = run(url, {"responses_create_params": {"input": 7}})
        assert resp.status_code == 400 and "input must be a string or a list" in resp.json()["error"]["message"]
