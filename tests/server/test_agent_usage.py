"""What a rollout cost reaches its row or its error envelope: every model call's usage, a failed
call's too (the adapter's retries and whatever its attempts reported), summed once."""

from __future__ import annotations

from typing import Any

import httpx

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.openai.usage import add_usage
from resources_servers.simple_weather.app import SimpleWeather
from responses_api_agents.simple_agent.app import SimpleAgent
from support.scripted_model import MESSAGE, ScriptedModel, call
from support.servers import serving

REFS = {
    "resources_server": {"type": "resources_servers", "name": "res"},
    "model_server": {"type": "responses_api_models", "name": "model"},
}
ROW = {"responses_create_params": {"input": "weather in sf?"}, "expected_city": "San Francisco"}


def _gave_up() -> HTTPError:
    error = HTTPError(502, "upstream answered 503 (gave up after 6 attempts)", kind="server", retryable=False)
    error.usage = {"cost": 0.25, "input_tokens": 7, "retries": {"server": 5}, "unpriced_calls": 1}
    return error


def _run(turns: list[Any]) -> httpx.Response:
    factories = {
        "model": lambda spec: ScriptedModel(turns, spec=spec),
        "res": lambda spec: SimpleWeather(spec=spec),
        "agent": lambda spec: SimpleAgent.from_fields(REFS, spec),
    }
    with serving(factories) as stack:
        return httpx.post(stack.urls["agent"] + "/run", json=ROW, timeout=30)


def test_a_failed_model_call_s_cost_joins_the_rollout_s_in_the_error_envelope():
    resp = _run([[call("get_weather", '{"city": "San Francisco"}', "c1")], _gave_up()])
    assert resp.status_code == 502
    body = resp.json()
    assert body["error"]["retryable"] is False and "gave up after 6 attempts" in body["error"]["message"]
    usage = body["usage"]  # the first call's (ScriptedModel: 10 in, 2 out, 0.5) and the failed one's
    assert usage["cost"] == 0.75 and usage["input_tokens"] == 17 and usage["output_tokens"] == 2
    assert usage["retries"] == {"server": 5} and usage["unpriced_calls"] == 1


def test_a_rollout_that_fails_on_its_first_call_still_reports_what_that_call_cost():
    resp = _run([_gave_up()])
    assert resp.json()["usage"] == {"cost": 0.25, "input_tokens": 7, "retries": {"server": 5}, "unpriced_calls": 1}


def test_summed_usage_keeps_flags_and_keys_reported_as_null():
    total: dict[str, Any] = {}
    add_usage(total, {"cost": 0.1, "is_byok": False, "cost_details": {"upstream_inference_cost": None}})
    add_usage(total, {"cost": 0.2, "is_byok": True, "cost_details": {"upstream_inference_cost": 0.05}})
    add_usage(total, {"retries": {"rate_limit": 2}, "unpriced_calls": 1})
    add_usage(total, {"retries": {"rate_limit": 1, "timeout": 1}, "unpriced_calls": 0})
    assert total == {
        "cost": 0.3,
        "is_byok": True,
        "cost_details": {"upstream_inference_cost": 0.05},
        "retries": {"rate_limit": 3, "timeout": 1},
        "unpriced_calls": 1,
    }


class FailingVerifier(SimpleWeather):
    """/verify fails after spending tokens of its own (a judge), and says so in the envelope."""

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        error = HTTPError(502, "the judge failed", kind="judge_error", retryable=False)
        error.usage = {"input_tokens": 300, "output_tokens": 20, "cost": 0.125}
        raise error


def test_a_failed_verify_s_usage_adds_to_the_rollout_s_instead_of_replacing_it():
    factories = {
        "model": lambda spec: ScriptedModel(
            [[call("get_weather", '{"city": "San Francisco"}', "c1")], [MESSAGE]], spec=spec
        ),
        "res": lambda spec: FailingVerifier(spec=spec),
        "agent": lambda spec: SimpleAgent.from_fields(REFS, spec),
    }
    with serving(factories) as stack:
        resp = httpx.post(stack.urls["agent"] + "/run", json=ROW, timeout=30)
    assert resp.status_code == 502 and resp.json()["error"]["type"] == "judge_error"
    usage = resp.json()["usage"]  # two model calls (10 in, 2 out, 0.5 each) and the judge's
    assert (usage["input_tokens"], usage["output_tokens"], usage["cost"]) == (320, 24, 1.125)
