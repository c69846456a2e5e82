"""Sessions both ways: our resources servers honour NeMo Gym's cookie flow, our agent carries
cookies the way NeMo Gym's simple_agent does (docs/nemo_gym.md, "Sessions")."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
from starlette.testclient import TestClient

from nemo_gym_cli.server import ModelServer, Request, Server, asgi, route
from nemo_gym_cli.server.spec import SESSION_COOKIE, SESSION_HEADER
from resources_servers.simple_weather.app import SimpleWeather
from responses_api_agents.simple_agent.app import SimpleAgent
from support.scripted_model import MESSAGE, call
from support.servers import serving

FINAL = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is foggy."}]}


def _set_cookie(resp: httpx.Response) -> str | None:
    return resp.cookies.get(SESSION_COOKIE)


# --- our resources server, NeMo Gym's way ---------------------------------------------------


def test_seed_session_without_our_header_starts_a_session_in_a_cookie_and_every_answer_sends_it_again():
    with TestClient(asgi(SimpleWeather())) as c:
        seeded = c.post("/seed_session", json={"expected_city": "Paris"})
        session = _set_cookie(seeded)
        assert session and "HttpOnly; Path=/" in seeded.headers["set-cookie"]
        # NeMo Gym's agent replaces its cookies with each answer's: every answer must carry it.
        answers = [
            c.post("/get_weather", json={"city": "Paris"}),
            c.post("/get_weather", json={"city": " "}),  # a tool error (422)
            c.post("/get_wether", json={"city": "Paris"}),  # an unknown tool (404)
            c.post("/verify", json={"expected_city": "Paris", "response": {"output": [MESSAGE]}}),
        ]
        assert [a.status_code for a in answers] == [200, 422, 404, 200]
        assert [_set_cookie(a) for a in answers] == [session] * 4
        assert answers[-1].json()["reward"] == 1.0 and answers[-1].json()["num_tool_calls"] == 1


def test_a_new_seed_session_starts_a_new_session_even_with_an_old_cookie():
    with TestClient(asgi(SimpleWeather())) as c:
        first = _set_cookie(c.post("/seed_session", json={}))
        c.post("/get_weather", json={"city": "Paris"})
        second = _set_cookie(c.post("/seed_session", json={}))
        assert second and second != first
        verified = c.post("/verify", json={"expected_city": "Paris", "response": {"output": [MESSAGE]}})
        assert verified.json()["num_tool_calls"] == 0  # the new rollout did not call anything


def test_our_header_names_the_session_and_no_cookie_is_sent():
    with TestClient(asgi(SimpleWeather())) as c:
        headers = {SESSION_HEADER: "rollout-1"}
        answers = [
            c.post("/seed_session", json={}, headers=headers),
            c.post("/get_weather", json={"city": "Rome"}, headers=headers),
            c.post("/verify", json={"expected_city": "Rome", "response": {"output": [MESSAGE]}}, headers=headers),
        ]
        assert all("set-cookie" not in a.headers for a in answers)
        assert answers[-1].json()["reward"] == 1.0


def test_the_session_cookie_is_found_among_other_cookies():
    with TestClient(asgi(SimpleWeather())) as c:
        session = _set_cookie(c.post("/seed_session", json={}))
        c.cookies.clear()
        cookie = f"SimpleAgent___a=xyz; {SESSION_COOKIE}={session}; SimpleModelServer___m=abc"
        c.post("/get_weather", json={"city": "Oslo"}, headers={"cookie": cookie})
        verified = c.post(
            "/verify", json={"expected_city": "Oslo", "response": {"output": [MESSAGE]}}, headers={"cookie": cookie}
        )
        assert verified.json()["reward"] == 1.0


def test_twenty_four_cookie_rollouts_at_once_keep_their_sessions_apart():
    """A client that holds only the last answer's cookies, as NeMo Gym's agent does."""

    def cookie(answer: httpx.Response) -> dict[str, str]:
        return {"cookie": "; ".join(f"{k}={v}" for k, v in answer.cookies.items())}

    async def rollout(url: str, city: str) -> dict[str, Any]:
        # A client of its own each: httpx's cookie jar would otherwise mix the rollouts' cookies.
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(url + "/seed_session", json={})
            for _ in range(3):
                client.cookies.clear()
                answer = await client.post(url + "/get_weather", json={"city": city}, headers=cookie(answer))
                await asyncio.sleep(0)
            client.cookies.clear()
            body = {"expected_city": city, "response": {"output": [MESSAGE]}}
            return (await client.post(url + "/verify", json=body, headers=cookie(answer))).json()

    async def main(url: str) -> list[dict[str, Any]]:
        return await asyncio.gather(*(rollout(url, f"City{i}") for i in range(24)))

    with serving({"res": lambda spec: SimpleWeather(spec=spec)}) as stack:
        rows = asyncio.run(main(stack.urls["res"]))
    assert [(r["reward"], r["num_tool_calls"]) for r in rows] == [(1.0, 3)] * 24


# --- our agent, NeMo Gym's environments -------------------------------------------------------


class CookieCounter(Server):
    """A resources server as NeMo Gym builds them: state keyed on its own session cookie
    (``<Class>___<instance>``), which every answer sets again; our header is ignored."""

    server_type = "resources_servers"
    COOKIE = "CookieCounter___counter"

    def __init__(self, spec: Any = None) -> None:
        super().__init__(spec=spec)
        self.counts: dict[str, int] = {}
        self.ids = itertools.count()

    def _session(self, request: Request) -> str:
        session = request.cookies.get(self.COOKIE) or f"s{next(self.ids)}"
        request.set_cookie(self.COOKIE, session)
        return session

    @route("POST", "/seed_session")
    async def seed(self, request: Request) -> dict[str, Any]:
        row = await request.json_object()
        self.counts[self._session(request)] = row.get("initial_count", 0)
        return {}

    @route("POST", "/increment_counter")
    async def increment(self, request: Request) -> dict[str, Any]:
        session = self._session(request)
        self.counts[session] = self.counts.get(session, 0) + (await request.json_object())["count"]
        return {"success": True}

    @route("POST", "/verify")
    async def verify(self, request: Request) -> dict[str, Any]:
        body = await request.json_object()
        count = self.counts.get(self._session(request), 0)
        model_cookie = request.cookies.get(CookieModel.COOKIE)
        return {**body, "reward": float(count == body["expected_count"]), "model_cookie": model_cookie}


class CookieModel(ModelServer):
    """Adds the row's numbers one tool call at a time; sets a session cookie of its own and
    records the cookie each call brought back."""

    COOKIE = "CookieModel___policy"

    def __init__(self, spec: Any = None) -> None:
        super().__init__(spec=spec)
        self.seen: list[str | None] = []

    async def http_responses(self, request: Request) -> Any:  # the base's route, with the request
        body = await request.json_object()
        self.seen.append(request.cookies.get(self.COOKIE))
        request.set_cookie(self.COOKIE, "m-" + body["input"][0]["content"])
        numbers = [int(n) for n in body["input"][0]["content"].split()[1::2]]
        done = sum(1 for item in body["input"] if item.get("type") == "function_call")
        output = [call("increment_counter", f'{{"count": {numbers[done]}}}', f"c{done}")] if done < 2 else [FINAL]
        return {"id": "r", "object": "response", "model": "m", "created_at": 1.0, "output": output}


def test_our_agent_carries_cookies_like_nemo_gyms_at_twenty_four_rollouts_at_once():
    refs = {
        "resources_server": {"type": "resources_servers", "name": "counter"},
        "model_server": {"type": "responses_api_models", "name": "model"},
    }
    factories = {
        "counter": lambda spec: CookieCounter(spec),
        "model": lambda spec: CookieModel(spec),
        "agent": lambda spec: SimpleAgent.from_fields(refs, spec),
    }
    rows = [
        {
            "responses_create_params": {"input": [{"role": "user", "content": f"add {i} then {i + 1}"}]},
            "initial_count": i % 3,
            "expected_count": i % 3 + 2 * i + 1,
        }
        for i in range(24)
    ]

    async def main(url: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return [r.json() for r in await asyncio.gather(*(client.post(url + "/run", json=row) for row in rows))]

    with serving(factories) as stack:
        answers = asyncio.run(main(stack.urls["agent"]))
        model = stack.servers["model"]
    assert [a["reward"] for a in answers] == [1.0] * 24
    # The model server's cookie came back on its later calls, and went to /verify too.
    assert model.seen.count(None) == 24 and len(model.seen) == 72
    assert [a["model_cookie"] for a in answers] == [f"m-add {i} then {i + 1}" for i in range(24)]


def test_our_agents_responses_route_sets_the_cookies_a_caller_takes_to_verify():
    refs = {
        "resources_server": {"type": "resources_servers", "name": "counter"},
        "model_server": {"type": "responses_api_models", "name": "model"},
    }
    factories = {
        "counter": lambda spec: CookieCounter(spec),
        "model": lambda spec: CookieModel(spec),
        "agent": lambda spec: SimpleAgent.from_fields(refs, spec),
    }
    with serving(factories) as stack, httpx.Client(timeout=10) as client:  # its jar carries the cookies
        seeded = client.post(stack.urls["counter"] + "/seed_session", json={"initial_count": 5})
        session = seeded.cookies[CookieCounter.COOKIE]
        params = {"input": [{"role": "user", "content": "add 1 then 2"}]}
        answered = client.post(stack.urls["agent"] + "/v1/responses", json=params)
        assert answered.status_code == 200, answered.text
        assert answered.cookies.get(CookieCounter.COOKIE) == session
        assert answered.cookies.get(CookieModel.COOKIE) == "m-add 1 then 2"
        body = {"expected_count": 8, "response": answered.json()}
        verified = client.post(stack.urls["counter"] + "/verify", json=body)
    assert verified.json()["reward"] == 1.0
