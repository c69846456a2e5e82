"""simple_weather: the tool, per-rollout sessions and the verifier, through the app production
serves (``asgi(server)`` under Starlette's TestClient)."""

from __future__ import annotations

from starlette.testclient import TestClient

from nemo_gym_cli.server import asgi
from nemo_gym_cli.server.spec import SESSION_COOKIE, SESSION_HEADER
from nemo_gym_cli.testing import VerifyCase, check_verify
from resources_servers.simple_weather.app import SimpleWeather, weather_for

MESSAGE = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "sunny"}]}


def client() -> tuple[TestClient, SimpleWeather]:
    server = SimpleWeather()
    return TestClient(asgi(server)), server


def rollout(c: TestClient, session: str, cities: list[str], row: dict, output: list[dict]) -> dict:
    headers = {SESSION_HEADER: session}
    assert c.post("/seed_session", json=row, headers=headers).status_code == 200
    for city in cities:
        assert c.post("/get_weather", json={"city": city}, headers=headers).json() == weather_for(city.strip())
    return check_verify(c, VerifyCase(session, response={"output": output}), fields=row, headers=headers)


def test_reward_needs_the_expected_city_and_a_final_message():
    c, server = client()
    with c:
        row = {"expected_city": "San Francisco", "id": 7}
        good = rollout(c, "s1", ["san  francisco"], row, [{"type": "function_call"}, MESSAGE])
        assert good["reward"] == 1.0 and good["num_tool_calls"] == 1 and good["id"] == 7
        assert rollout(c, "s2", ["Paris"], row, [MESSAGE])["reward"] == 0.0
        assert rollout(c, "s3", ["San Francisco"], row, [{"type": "function_call_output"}])["reward"] == 0.0
        assert rollout(c, "s4", [], {"id": 8}, [MESSAGE])["reward"] == 0.0
        assert rollout(c, "s5", ["Oslo"], {"id": 9}, [MESSAGE])["reward"] == 1.0
    assert server.sessions == {}  # /verify ends each rollout's state


def test_sessions_keep_rollouts_apart():
    c, _ = client()
    with c:
        c.post("/get_weather", json={"city": "London"}, headers={SESSION_HEADER: "a"})
        other = c.post(
            "/verify",
            json={"expected_city": "London", "response": {"output": [MESSAGE]}},
            headers={SESSION_HEADER: "b"},
        )
    assert other.json()["reward"] == 0.0  # London was asked for in session a, not b


def test_a_session_cookie_set_by_seed_session_keeps_the_rollouts_state_as_nemo_gym_agents_do():
    c, _ = client()
    with c:
        seeded = c.post("/seed_session", json={"expected_city": "Tokyo"})
        cookie = seeded.cookies.get(SESSION_COOKIE)
        assert cookie
        c.cookies.clear()
        c.cookies.set(SESSION_COOKIE, cookie)
        c.post("/get_weather", json={"city": "Tokyo"})
        verified = c.post("/verify", json={"expected_city": "Tokyo", "response": {"output": [MESSAGE]}})
        assert verified.json()["reward"] == 1.0
        c.cookies.clear()
        stranger = c.post("/verify", json={"expected_city": "Tokyo", "response": {"output": [MESSAGE]}})
        assert stranger.json()["reward"] == 0.0


def test_a_bad_tool_call_is_a_422_tool_error_in_the_envelope_saying_what_to_send():
    c, _ = client()
    with c:
        empty = c.post("/get_weather", json={"city": "  "}, headers={SESSION_HEADER: "x"})
        assert empty.status_code == 422
        assert empty.json()["error"]["type"] == "tool_error" and "needs a city" in empty.json()["error"]["message"]
        missing = c.post("/get_weather", json={}, headers={SESSION_HEADER: "x"})
        assert missing.status_code == 422 and "argument city: Field required" in missing.json()["error"]["message"]
        extra = c.post("/get_weather", json={"city": "Oslo", "units": "F"})
        assert "argument units: unknown argument" in extra.json()["error"]["message"]
        not_object = c.post("/get_weather", content=b"[1]")
        assert not_object.status_code == 422 and "must be a JSON object" in not_object.json()["error"]["message"]
        not_json = c.post("/get_weather", content=b"{oops")
        assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "bad_request"


def test_the_tool_schema_comes_from_the_type_hints_and_the_docstring():
    c, _ = client()
    with c:
        (schema,) = c.get("/tools").json()
    assert schema == {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name, e.g. Paris."}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": False,
    }
