"""legacy_agent relays /run and /aggregate_metrics to its agent unchanged: bytes, status,
cookies both ways (every Set-Cookie), and bounds rollouts in flight when told."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from starlette.responses import Response

from environment_servers.legacy_agent.app import LegacyAgent
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server import Server, ServerSpec
from nemo_gym_cli.server.http import Request, route
from support.servers import serving


class FakeAgent(Server):
    """An agent that echoes what reached it and sets two cookies."""

    server_type = "responses_api_agents"
    seen: list[dict[str, Any]] = []
    gate: threading.Event | None = None

    @route("POST", "/run")
    async def run(self, request: Request) -> Any:
        FakeAgent.seen.append({"body": await request.body(), "cookies": dict(request.cookies)})
        if FakeAgent.gate is not None:
            await asyncio.to_thread(FakeAgent.gate.wait, 5)
        response = Response(content=b'{"reward": 1.0,  "kept": "as sent"}', status_code=200)
        response.raw_headers = [
            (b"content-type", b"application/json"),
            (b"set-cookie", b"a=1; Path=/"),
            (b"set-cookie", b"b=2; Path=/"),
        ]
        return response

    @route("POST", "/aggregate_metrics")
    async def aggregate_metrics(self, request: Request) -> Any:
        return {"agent_metrics": {"n": len((await request.json())["verify_responses"])}}


def _relay(**fields: Any):
    def build(spec: ServerSpec) -> LegacyAgent:
        return LegacyAgent.from_fields(
            {"agent_server": {"type": "responses_api_agents", "name": "agent"}, **fields}, spec
        )

    return build


def _stack(**fields: Any):
    FakeAgent.seen, FakeAgent.gate = [], None
    return serving({"agent": lambda spec: FakeAgent(spec=spec), "env": _relay(**fields)})


def test_run_is_relayed_byte_for_byte_with_cookies_both_ways() -> None:
    with _stack() as stack:
        answer = httpx.post(
            stack.urls["env"] + "/run", content=b'{"x":  1}', headers={"cookie": "session=s1", "x-extra": "yes"}
        )
    assert answer.status_code == 200
    assert answer.content == b'{"reward": 1.0,  "kept": "as sent"}'
    assert answer.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert FakeAgent.seen == [{"body": b'{"x":  1}', "cookies": {"session": "s1"}}]


def test_aggregate_metrics_is_relayed() -> None:
    with _stack() as stack:
        answer = httpx.post(stack.urls["env"] + "/aggregate_metrics", json={"verify_responses": [{}, {}]})
    assert answer.json() == {"agent_metrics": {"n": 2}}


def test_max_concurrent_episodes_bounds_rollouts_in_flight() -> None:
    with _stack(max_concurrent_episodes=1, queue_timeout_seconds=0.3) as stack:
        FakeAgent.gate = threading.Event()
        first = threading.Thread(target=httpx.post, args=(stack.urls["env"] + "/run",), kwargs={"content": b"{}"})
        first.start()
        try:
            while not FakeAgent.seen:
                threading.Event().wait(0.01)
            second = httpx.post(stack.urls["env"] + "/run", content=b"{}")
        finally:
            FakeAgent.gate.set()
            first.join()
    assert second.status_code == 503 and "queue_timeout_seconds=0.3" in second.text


def test_a_bound_without_a_queue_timeout_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="queue_timeout_seconds is required"):
        LegacyAgent.from_fields({"agent_server": {"name": "agent"}, "max_concurrent_episodes": 2})
