"""Rows reach agents through NeMo Gym 0.7's environment servers and carry its stamps
(``collect/environments.py``)."""

from __future__ import annotations

import pytest

from nemo_gym_cli.collect.environments import Route, failure_kind, instances_of_config_dict, routes, stamp
from nemo_gym_cli.errors import ConfigError

AGENT = ("responses_api_agents", "simple_agent", {}, ["http://a:1"])


def relay(*agents: str) -> tuple:
    fields = {f"agent_{i}": {"type": "responses_api_agents", "name": a} for i, a in enumerate(agents)}
    return ("environment_servers", "legacy_agent", fields, ["http://e:2"])


def test_an_agent_without_an_environment_server_is_called_directly_under_07s_generated_name():
    found = routes({"mcqa_simple_agent": AGENT, "mcqa": ("resources_servers", "mcqa", {}, ["http://r:3"])})
    assert found == {
        "mcqa_simple_agent": Route("mcqa_simple_agent", "mcqa_environment_server", "legacy_agent", ["http://a:1"])
    }


def test_an_agent_behind_an_environment_server_gets_its_rows_through_it():
    env = ("environment_servers", "single_agent_turn", {"agent_server": {"name": "x_agent"}}, ["http://e:2"])
    found = routes({"x_agent": AGENT, "x_env": env})
    assert found["x_agent"] == Route("x_agent", "x_env", "single_agent_turn", ["http://e:2"])


def test_two_environment_servers_for_one_agent_need_legacy_mode_as_in_07():
    instances = {"x_agent": AGENT, "e1": relay("x_agent"), "e2": relay("x_agent")}
    with pytest.raises(ConfigError, match="several environment servers \\(e1, e2\\).*environment_routing_mode=legacy"):
        routes(instances)
    assert routes(instances, mode="legacy", server_name="e2")["x_agent"].environment_server == "e2"
    with pytest.raises(ConfigError, match="must name an environment server \\(got 'e3'"):
        routes(instances, mode="legacy", server_name="e3")
    with pytest.raises(ConfigError, match="taskset routing is for its materialized task rows"):
        routes(instances, mode="taskset")


def test_a_head_servers_config_dict_names_agents_and_environment_servers_with_their_addresses():
    config = {
        "policy_model": {"responses_api_models": {"openai_model": {"host": "h", "port": 1}}},
        "w_agent": {"responses_api_agents": {"simple_agent": {"host": "h", "port": 2}}},
        "w_env": {
            "environment_servers": {"legacy_agent": {"agent_server": {"name": "w_agent"}, "host": "h", "port": 2}}
        },
        "head_server": {"host": "h", "port": 3},
    }
    found = routes(instances_of_config_dict(config))
    assert found == {"w_agent": Route("w_agent", "w_env", "legacy_agent", ["http://h:2"])}


def test_stamps_keep_the_rows_own_agent_ref():
    route = Route("a", "a_environment_server", "legacy_agent", [])
    result: dict = {"reward": 1.0}
    stamp(result, {"agent_ref": {"name": "a", "extra": 1}}, route)
    assert result == {
        "reward": 1.0,
        "agent_ref": {"name": "a", "extra": 1},
        "_ng_environment_server": "a_environment_server",
        "_ng_result_type": "legacy_agent",
    }
    stamp(result, {}, route)
    assert result["agent_ref"] == {"name": "a"}


@pytest.mark.parametrize(
    ("kind", "upstream", "answered", "expected"),
    [
        ("timeout", False, True, "transport_timeout"),
        ("anything", False, False, "transport_unreachable"),
        ("rate_limit", True, True, "provider_unavailable"),
        ("credits", True, True, "provider_quota_exhausted"),
        ("offload_error", False, True, "verifier_error"),
        ("InputError", False, True, "collector:inputerror"),
        ("bad_response", False, True, "collector:bad_response"),
    ],
)
def test_failures_are_named_in_07s_vocabulary_or_namespaced(kind, upstream, answered, expected):
    assert failure_kind(kind, upstream=upstream, answered=answered) == expected
