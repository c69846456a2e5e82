"""simple_weather: the tool, per-rollout sessions and the verifier, through its real app."""

from __future__ import annotations

import asyncio

import httpx

from nemo_gym_cli.servers import SESSION_HEADER, ServerSpec
from resources_servers.simple_weather.app import create_app, weather_for

SPEC = ServerSpec(name="w", server_type="resources_servers", implementation="simple_weather", host="127.0.0.1", port=1)
MESSAGE = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "sunny"}]}


async def rollout(client: httpx.AsyncClient, session: str, cities: list[str], row: dict, output: list[dict]) -> dict:
    headers = {SESSION_HEADER: session}
    assert (await client.post("/seed_session", json=row, headers=headers)).status_code == 200
    for city in cities:
        answer = (await client.post("/get_weather", json={"city": city}, headers=headers)).json()
        assert answer == weather_for(city)
    return (await client.post("/verify", json={**row, "response": {"output": output}}, headers=headers)).json()


def test_reward_needs_the_expected_city_and_a_final_message():
    async def go():
        app = create_app(SPEC)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://w") as c:
            row = {"expected_city": "San Francisco", "id": 7}
            good = await rollout(c, "s1", ["san  francisco"], row, [{"type": "function_call"}, MESSAGE])
            assert good["reward"] == 1.0 and good["num_tool_calls"] == 1 and good["id"] == 7
            wrong_city = await rollout(c, "s2", ["Paris"], row, [MESSAGE])
            assert wrong_city["reward"] == 0.0
            no_message = await rollout(c, "s3", ["San Francisco"], row, [{"type": "function_call_output"}])
            assert no_message["reward"] == 0.0
            no_call = await rollout(c, "s4", [], {"id": 8}, [MESSAGE])
            assert no_call["reward"] == 0.0
            any_city = await rollout(c, "s5", ["Oslo"], {"id": 9}, [MESSAGE])
            assert any_city["reward"] == 1.0
            assert app.state.resources.sessions == {}  # /verify ends each rollout's state

    asyncio.run(go())


def test_sessions_keep_rollouts_apart():
    async def go():
        app = create_app(SPEC)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://w") as c:
            await c.post("/get_weather", json={"city": "London"}, headers={SESSION_HEADER: "a"})
            other = await c.post(
                "/verify",
                json={"expected_city": "London", "response": {"output": [MESSAGE]}},
                headers={SESSION_HEADER: "b"},
            )
            assert other.json()["reward"] == 0.0  # London was asked for in session a, not b

    asyncio.run(go())


def test_get_weather_without_a_city_says_what_to_send():
    async def go():
        app = create_app(SPEC)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://w") as c:
            answer = (await c.post("/get_weather", json={}, headers={SESSION_HEADER: "x"})).json()
            assert "needs a 'city'" in answer["error"]
            assert (await c.post("/get_weather", content=b"[1]")).status_code == 400

    asyncio.run(go())
