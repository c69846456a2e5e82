"""Agents of one toolkit on the other's resources servers, 24 rollouts at once.

Acceptance (issue 10): same rewards as the native pairing. Per-rollout state is what breaks:
NeMo Gym keys it on a Starlette session cookie that its agent carries from /seed_session
through every tool call to /verify (docs/nemo_gym.md, "Sessions"); we key it on the
``x-ng-session-id`` header and honour the cookie flow too (the ``ng_session`` cookie), and our
agent carries cookies as NeMo Gym's does. Concurrency makes a lost session visible: state
leaks between rollouts or vanishes, and rewards drop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from interop_harness import (
    ROOT,
    NemoGymRun,
    NemoGymServer,
    OurServer,
    counter_rows,
    nemo_gym_instance,
    post_rows,
    read_jsonl,
)

from support.cli import NgRun

CONCURRENCY = 24


@pytest.fixture(scope="module")
def our_urls(ours: NgRun) -> dict[str, str]:
    return {r["name"]: r["url"] for r in ours.wait_ready()}


@pytest.fixture(scope="module")
def nemo_gym_agent_on_ours(
    nemo_gym: NemoGymRun, our_urls: dict[str, str], interop_tmp: Path
) -> Iterator[NemoGymServer]:
    """NeMo Gym's simple_agent whose resources server is our simple_weather and whose model
    server is our policy_model (it joins the session's Ray cluster)."""
    instances = {
        **nemo_gym_instance(
            "ng_agent_on_ours",
            "responses_api_agents",
            "simple_agent",
            "http://127.0.0.1:1",  # replaced by NemoGymServer with its own free port
            resources_server={"type": "resources_servers", "name": "simple_weather"},
            model_server={"type": "responses_api_models", "name": "policy_model"},
        ),
        **nemo_gym_instance(
            "simple_weather", "resources_servers", "simple_weather", our_urls["simple_weather"], domain="agent"
        ),
        **nemo_gym_instance("policy_model", "responses_api_models", "openai_model", our_urls["policy_model"]),
    }
    server = NemoGymServer(
        "ng_agent_on_ours",
        "responses_api_agents/simple_agent",
        instances,
        interop_tmp,
        ray_address=nemo_gym.ray_address,
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def our_agent_on_nemo_gym(nemo_gym: NemoGymRun, interop_tmp: Path) -> Iterator[OurServer]:
    """Our simple_agent whose resources server is NeMo Gym's example_session_state_mgmt and
    whose model server is NeMo Gym's counter_model (openai_model -> reference upstream)."""
    server = OurServer(
        "our_agent_on_nemo_gym",
        "responses_api_agents/simple_agent",
        {
            "resources_server": {"type": "resources_servers", "name": "example_session_state_mgmt_resources_server"},
            "model_server": {"type": "responses_api_models", "name": "counter_model"},
        },
        {
            "example_session_state_mgmt_resources_server": nemo_gym.url("example_session_state_mgmt_resources_server"),
            "counter_model": nemo_gym.url("counter_model"),
        },
        interop_tmp,
    )
    try:
        yield server
    finally:
        server.stop()


def _rewards(results: list[tuple[int, object]]) -> list[float | None]:
    return [body.get("reward") if status == 200 and isinstance(body, dict) else None for status, body in results]


def test_our_agent_on_nemo_gym_stateful_server_gets_native_rewards(
    nemo_gym: NemoGymRun, our_agent_on_nemo_gym: OurServer
) -> None:
    rows = counter_rows(CONCURRENCY)
    native = _rewards(post_rows(nemo_gym.url("example_session_state_mgmt_simple_agent") + "/run", rows, CONCURRENCY))
    assert native == [1.0] * CONCURRENCY  # the reference policy plays every task right
    cross = post_rows(our_agent_on_nemo_gym.url + "/run", rows, CONCURRENCY)
    assert [s for s, _ in cross] == [200] * CONCURRENCY, cross[0]
    assert _rewards(cross) == native


def _weather_rows() -> list[dict]:
    """Our example tasks as shipped (NeMo Gym's agent takes them: their tools carry ``strict``),
    each five times."""
    return read_jsonl(ROOT / "resources_servers/simple_weather/data/example.jsonl") * 5


def test_nemo_gym_agent_on_our_resources_server_gets_native_rewards(
    our_urls: dict[str, str], nemo_gym_agent_on_ours: NemoGymServer
) -> None:
    rows = _weather_rows()
    native_rows = post_rows(our_urls["simple_weather_simple_agent"] + "/run", rows, CONCURRENCY)
    native = _rewards(native_rows)
    assert native == [1.0] * len(rows)
    cross = post_rows(nemo_gym_agent_on_ours.url + "/run", rows, CONCURRENCY)
    assert [s for s, _ in cross] == [200] * len(rows), cross[0]
    assert _rewards(cross) == native
    # Each rollout saw only its own tool call (a shared session would count the others').
    assert [b["num_tool_calls"] for _, b in cross] == [b["num_tool_calls"] for _, b in native_rows] == [1] * len(rows)


def test_our_resources_server_sets_a_session_cookie_on_seed_session_and_every_tool_call(
    our_urls: dict[str, str],
) -> None:
    row = _weather_rows()[0]
    with httpx.Client(base_url=our_urls["simple_weather"], timeout=10) as client:
        seeded = client.post("/seed_session", json=row)
        assert seeded.status_code == 200
        assert "set-cookie" in seeded.headers
        tool = client.post("/get_weather", json={"city": "San Francisco"})
        assert tool.status_code == 200
        assert "set-cookie" in tool.headers  # NeMo Gym's agent replaces its cookies with each tool response's
        verify = client.post("/verify", json={**row, "response": {"output": []}})
        assert verify.status_code == 200
        assert verify.json()["num_tool_calls"] == 1  # the call was in this session
        assert "set-cookie" in verify.headers
