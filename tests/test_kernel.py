"""The server kernel: declared routes, one router, one envelope, typed configs, tools,
offloading, the lifecycle. Driven through ``asgi(server)``: the app production serves."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from nemo_gym_cli.errors import ConfigError, HTTPError, NemoGymError
from nemo_gym_cli.server import (
    Agent,
    ModelServer,
    Request,
    ResourcesServer,
    Server,
    ServerConfig,
    ToolError,
    asgi,
    route,
    tool,
)
from nemo_gym_cli.server.serve import load_server
from nemo_gym_cli.server.spec import ServerSpec


def envelope_of(resp: Any) -> dict[str, Any]:
    body = resp.json()
    assert set(body) <= {"error", "usage"}, body
    error = body["error"]
    assert set(error) >= {"message", "type", "code", "retryable"}
    assert error["code"] == resp.status_code and isinstance(error["message"], str) and error["message"]
    return error


class Hello(Server):
    class Config(ServerConfig):
        greeting: str = Field("hi", description="what /hello answers")
        times: int = Field(1, ge=1, description="how often")

    started = stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    @route("GET", "/hello")
    async def hello(self, request: Request) -> dict[str, Any]:
        return {"message": " ".join([self.config.greeting] * self.config.times)}

    @route("GET", "/items/{item_id}")
    async def item(self, request: Request) -> dict[str, Any]:
        return {"id": request.path_params["item_id"]}

    @route("POST", "/echo")
    async def echo(self, request: Request) -> Any:
        return await request.json_object()

    @route("GET", "/text")
    async def text(self, request: Request) -> Any:
        request.set_cookie("c", "1")
        return PlainTextResponse("plain")

    @route("GET", "/boom")
    async def boom(self, request: Request) -> Any:
        raise KeyError("no such thing")

    @route("GET", "/teapot")
    async def teapot(self, request: Request) -> Any:
        raise HTTPError(418, "short and stout", headers={"Retry-After": "3"})


def test_declared_routes_answer_and_the_lifespan_starts_and_stops_the_server():
    server = Hello.from_fields({"greeting": "hello", "times": 2})
    with TestClient(asgi(server)) as c:
        assert server.started
        assert c.get("/hello").json() == {"message": "hello hello"}
        assert c.get("/items/42").json() == {"id": "42"}
        assert c.post("/echo", json={"a": [1]}).json() == {"a": [1]}
        text = c.get("/text")
        assert text.text == "plain" and text.cookies.get("c") == "1"
        assert c.get("/health").json()["status"] == "ok"
    assert server.stopped


def test_every_error_is_the_one_envelope_404_405_bad_json_crash_and_http_errors():
    with TestClient(asgi(Hello()), raise_server_exceptions=False) as c:
        missing = c.get("/nope")
        assert missing.status_code == 404 and envelope_of(missing)["type"] == "not_found"
        assert "GET /hello" in missing.json()["error"]["message"]  # lists the routes there are
        wrong_method = c.post("/hello")
        assert wrong_method.status_code == 405 and "use GET" in envelope_of(wrong_method)["message"]
        bad_json = c.post("/echo", content=b"{nope")
        assert bad_json.status_code == 400 and envelope_of(bad_json)["retryable"] is False
        not_object = c.post("/echo", json=[1, 2])
        assert not_object.status_code == 400 and "must be a JSON object, got list" in envelope_of(not_object)["message"]
        crash = c.get("/boom")
        # A handler's own exception (this file is the user's code): one line, not retried.
        assert crash.status_code == 500 and envelope_of(crash)["type"] == "user_code_error"
        assert "KeyError" in crash.json()["error"]["message"] and "test_kernel.py:" in envelope_of(crash)["message"]
        assert envelope_of(crash)["retryable"] is False
        teapot = c.get("/teapot")
        assert teapot.status_code == 418 and teapot.headers["retry-after"] == "3" and envelope_of(teapot)


def test_nemo_gym_07s_per_rollout_prefix_reaches_the_route_and_its_token_capture_is_refused():
    with TestClient(asgi(Hello()), raise_server_exceptions=False) as c:
        assert c.post("/ng-rollout/7-0/echo", json={"a": 1}).json() == {"a": 1}
        assert c.get("/ng-rollout/abc/items/42").json() == {"id": "42"}
        nested = c.post("/ng-rollout/a" * 5000 + "/echo", json={})  # stripped once, not recursively
        assert nested.status_code == 404 and envelope_of(nested)["type"] == "not_found"
        missing = c.get("/ng-rollout/abc/nope")
        assert missing.status_code == 404 and "GET /hello" in envelope_of(missing)["message"]
        capture = c.post("/ng-rollout/abc/training-token-capture/echo", json={})
        assert (
            capture.status_code == 501 and "training-token capture is not supported" in envelope_of(capture)["message"]
        )


def test_a_route_declared_twice_or_with_an_unsupported_pattern_fails_at_start_up():
    class Twice(Server):
        @route("GET", "/a")
        async def one(self, request: Request) -> Any:
            return {}

        @route("GET", "/a")
        async def two(self, request: Request) -> Any:
            return {}

    with pytest.raises(NemoGymError, match="route GET /a is declared twice"):
        asgi(Twice())

    class Pattern(Server):
        @route("GET", "/files/{name:path}")
        async def one(self, request: Request) -> Any:
            return {}

    with pytest.raises(NemoGymError, match="unsupported path segment"):
        asgi(Pattern())


def test_a_method_overriding_a_route_keeps_its_route():
    class Custom(ModelServer):
        async def http_models(self, request: Request) -> Any:
            return {"object": "list", "data": [{"id": "mine"}]}

    with TestClient(asgi(Custom())) as c:
        assert c.get("/v1/models").json()["data"] == [{"id": "mine"}]
        assert c.post("/v1/responses", json={}).status_code == 404  # not implemented: the envelope


def test_middleware_wraps_every_route():
    seen: list[str] = []

    def tag(app: Any) -> Any:
        async def wrapped(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                seen.append(scope["path"])
            await app(scope, receive, send)

        return wrapped

    class Wrapped(Hello):
        def middleware(self) -> list[Any]:
            return [tag]

    with TestClient(asgi(Wrapped())) as c:
        c.get("/hello")
        c.get("/health")
        c.get("/missing")
    assert seen == ["/hello", "/health", "/missing"]


def test_unknown_keys_and_wrong_types_are_one_config_error_naming_key_file_and_closest_key():
    spec = ServerSpec("greeter", "resources_servers", "hello", sources={"greting": "configs/x.yaml"})
    with pytest.raises(ConfigError) as info:
        Hello.from_fields({"greting": "yo", "times": True}, spec)
    message = str(info.value)
    assert "greeter.resources_servers.hello.greting (configs/x.yaml): unknown key; did you mean 'greeting'?" in message
    assert "greeter.resources_servers.hello.times: Input should be a valid integer (got True)" in message
    assert "\n" not in message


def test_nemo_gym_instance_keys_are_accepted_on_purpose():
    server = Hello.from_fields({"domain": "agent", "verified": False, "description": "d", "datasets": []})
    assert server.config.domain == "agent"


def test_a_secret_looking_key_never_shows_its_value_in_a_config_error():
    class Keyed(Server):
        class Config(ServerConfig):
            api_key: int = 0

    with pytest.raises(ConfigError) as info:
        Keyed.from_fields({"api_key": "sk-or-v1-very-secret"})
    assert "sk-or-v1-very-secret" not in str(info.value) and "api_key" in str(info.value)


class Args(BaseModel):
    a: float = Field(description="the first number")
    b: float = Field(description="the second number")


class Calc(ResourcesServer):
    @tool
    async def add(self, a: float, b: float) -> float:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        return a + b

    @tool
    async def divide(self, args: Args) -> float:
        """Divide a by b."""
        if args.b == 0:
            raise ToolError("cannot divide by zero; pick another b")
        return args.a / args.b

    @tool(name="shout")
    def loud(self, session: dict, text: Annotated[str, Field(description="what to shout")]) -> str:
        """Shout a text."""
        session["shouted"] = text
        return text.upper()

    async def verify(self, session: dict, body: dict) -> dict:
        return {"reward": 1.0}


def test_tools_take_their_schema_from_hints_docstrings_or_a_pydantic_model_and_validate_calls():
    with TestClient(asgi(Calc())) as c:
        tools = {t["name"]: t for t in c.get("/tools").json()}
        assert set(tools) == {"add", "divide", "shout"}
        assert tools["add"]["description"] == "Add two numbers."
        assert tools["add"]["parameters"]["properties"]["a"] == {"type": "number", "description": "The first number."}
        assert tools["divide"]["parameters"]["required"] == ["a", "b"]
        assert tools["shout"]["parameters"]["properties"]["text"]["description"] == "what to shout"
        assert c.post("/add", json={"a": 2, "b": "3"}).json() == 5.0  # lax: models send "3"
        assert c.post("/divide", json={"a": 1, "b": 4}).json() == 0.25
        zero = c.post("/divide", json={"a": 1, "b": 0})
        assert zero.status_code == 422 and envelope_of(zero)["message"] == "cannot divide by zero; pick another b"
        bad = c.post("/add", json={"a": "two", "b": 1})
        assert (
            bad.status_code == 422 and "add: argument a: Input should be a valid number" in envelope_of(bad)["message"]
        )
        assert c.post("/shout", json={"text": "hi"}).json() == "HI"


def test_a_tool_named_like_a_base_route_is_refused():
    class Clash(ResourcesServer):
        @tool
        async def verify_answer(self) -> int:
            return 1

        @tool(name="verify")
        async def check(self) -> int:
            return 1

    with pytest.raises(NemoGymError, match="tool name 'verify' clashes with a route"):
        Clash()


def test_verify_needs_a_response_and_must_give_a_numeric_reward():
    class NoReward(ResourcesServer):
        async def verify(self, session: dict, body: dict) -> dict:
            return {"score": 1}

    with TestClient(asgi(NoReward()), raise_server_exceptions=False) as c:
        missing = c.post("/verify", json={"x": 1})
        assert missing.status_code == 400 and "needs 'response'" in envelope_of(missing)["message"]
        broken = c.post("/verify", json={"response": {"output": []}})
        assert broken.status_code == 500 and "without a numeric 'reward'" in envelope_of(broken)["message"]


def burn(seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def fail() -> None:
    raise ValueError("bad input")


class Heavy(ResourcesServer):
    async def verify(self, session: dict, body: dict) -> dict:
        return {"reward": 1.0, "result": await self.offload(burn, body.get("burn", 0.0), timeout=body.get("timeout"))}

    @tool
    async def explode(self) -> None:
        await self.offload(fail)


@pytest.mark.e2e
def test_offloaded_work_runs_in_a_worker_and_a_hung_call_is_stopped_and_not_retryable():
    server = Heavy.from_fields({"offload_workers": 1})
    with TestClient(asgi(server), raise_server_exceptions=False) as c:
        ok = c.post("/verify", json={"response": {"output": []}, "burn": 0.01})
        assert ok.json()["result"] == "done"
        hung = c.post("/verify", json={"response": {"output": []}, "burn": 30, "timeout": 0.5})
        assert hung.status_code == 500
        error = envelope_of(hung)
        assert error["type"] == "offload_timeout" and error["retryable"] is False
        again = c.post("/verify", json={"response": {"output": []}, "burn": 0.01})  # a fresh worker
        assert again.json()["result"] == "done"
        failed = c.post("/explode", json={})
        assert failed.status_code == 500 and "ValueError: bad input" in envelope_of(failed)["message"]


USER_ENV = """
from nemo_gym_cli.server import ResourcesServer

from .checks import square


class Squares(ResourcesServer):
    async def verify(self, session, body):
        value = await self.offload(square, body["x"])
        return {"reward": 1.0, "square": value}

    async def verify_lambda(self):
        return await self.offload(lambda: 1)
"""


def test_an_environment_in_a_users_folder_offloads_its_own_functions(tmp_path) -> None:
    folder = tmp_path / "resources_servers" / "squares"
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(USER_ENV)
    (folder / "checks.py").write_text("def square(x):\n    return x * x\n")
    spec = ServerSpec("squares", "resources_servers", "squares", fields={"offload_workers": 1})
    server = load_server(str(folder / "app.py"), spec)
    with TestClient(asgi(server), raise_server_exceptions=False) as c:
        verified = c.post("/verify", json={"response": {"output": []}, "x": 7})
        assert verified.status_code == 200, verified.text
        assert verified.json()["square"] == 49

        async def lambda_call() -> None:
            with pytest.raises(HTTPError) as caught:
                await server.verify_lambda()
            assert caught.value.kind == "offload_error" and "module-level function" in str(caught.value)

        c.portal.call(lambda_call)


def test_an_agent_without_a_loop_and_a_model_server_without_methods_say_so():
    class Lazy(Agent):
        pass

    spec = ServerSpec(
        "lazy", "responses_api_agents", "lazy", server_urls={"r": "http://127.0.0.1:9", "m": "http://127.0.0.1:9"}
    )
    refs = {
        "resources_server": {"type": "resources_servers", "name": "r"},
        "model_server": {"type": "responses_api_models", "name": "m"},
    }
    agent = Lazy.from_fields(refs, spec)

    async def go() -> None:
        await agent.startup()
        agent._env_tools = None  # skip asking the (absent) resources server
        try:
            from nemo_gym_cli.server.agent import Rollout

            with pytest.raises(NotImplementedError, match="must implement loop"):
                await agent.loop(Rollout(agent, "s"), {"input": []})
        finally:
            await agent.shutdown()

    asyncio.run(go())
