"""simple_agent's loop against a scripted model and the real simple_weather app (in process)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from nemo_gym_cli.errors import ServerError
from nemo_gym_cli.servers import ServerSpec
from resources_servers.simple_weather.app import create_app as create_weather
from responses_api_agents.simple_agent.app import SimpleAgent, SimpleAgentConfig

MODEL, RES = "http://model", "http://res"


def call(name: str, arguments: str, call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "name": name, "arguments": arguments, "call_id": call_id}


MESSAGE = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}


class ScriptedClient:
    """Routes the agent's calls: the model answers from a script, tools go to simple_weather."""

    def __init__(self, turns: list[list[dict[str, Any]]]) -> None:
        self.turns = turns
        self.model_inputs: list[list[dict[str, Any]]] = []
        self.weather = httpx.AsyncClient(transport=httpx.ASGITransport(create_weather(spec("res"))), base_url=RES)

    async def post(self, url: str, payload: Any, *, headers: dict[str, str] | None = None) -> Any:
        if url.startswith(MODEL):
            self.model_inputs.append(payload["input"])
            output = self.turns[len(self.model_inputs) - 1]
            return {
                "id": f"gen-{len(self.model_inputs)}",
                "model": "m",
                "output": output,
                "usage": {"input_tokens": 10, "output_tokens": 2, "cost": 0.5},
            }
        resp = await self.weather.post(url[len(RES) :], json=payload, headers=headers)
        if resp.status_code >= 400:
            raise ServerError(f"{url} answered {resp.status_code}", url=url, status=resp.status_code)
        return resp.json()


def spec(name: str) -> ServerSpec:
    return ServerSpec(
        name=name,
        server_type="x",
        implementation="x",
        host="127.0.0.1",
        port=1,
        server_urls={"res": RES, "model": MODEL},
    )


def agent(client: ScriptedClient, max_steps: int = 8) -> SimpleAgent:
    config = SimpleAgentConfig(
        resources_server={"type": "resources_servers", "name": "res"},
        model_server={"type": "responses_api_models", "name": "model"},
        max_steps=max_steps,
    )
    return SimpleAgent(config, spec("agent"), client)  # type: ignore[arg-type]


ROW = {"responses_create_params": {"input": "weather in sf?"}, "expected_city": "San Francisco"}


def test_the_loop_calls_tools_feeds_outputs_back_and_verifies():
    client = ScriptedClient([[call("get_weather", '{"city": "San Francisco"}', "c1")], [MESSAGE]])
    row = asyncio.run(agent(client).run(ROW))
    assert [i["type"] for i in row["response"]["output"]] == ["function_call", "function_call_output", "message"]
    assert '"condition":"foggy"' in row["response"]["output"][1]["output"]
    assert row["reward"] == 1.0
    assert row["response"]["usage"] == {"input_tokens": 20, "output_tokens": 4, "cost": 1.0}
    # the second model call saw the user turn, the call and its output
    assert [i.get("type", "message") for i in client.model_inputs[1]] == [
        "message",
        "function_call",
        "function_call_output",
    ]


def test_invalid_tool_arguments_go_back_to_the_model_as_an_error():
    client = ScriptedClient([[call("get_weather", '{"city": "San Fr', "c1")], [MESSAGE]])
    row = asyncio.run(agent(client).run(ROW))
    output = row["response"]["output"][1]
    assert output["type"] == "function_call_output" and "not valid JSON" in output["output"]
    assert row["reward"] == 0.0  # the tool never ran


def test_an_unknown_tool_is_an_error_output_not_a_crash():
    client = ScriptedClient([[call("get_stock_price", "{}", "c1")], [MESSAGE]])
    row = asyncio.run(agent(client).run(ROW))
    assert "unknown tool 'get_stock_price'" in row["response"]["output"][1]["output"]


def test_max_steps_ends_a_loop_that_never_stops_calling_tools():
    client = ScriptedClient([[call("get_weather", '{"city": "Paris"}', f"c{i}")] for i in range(10)])
    row = asyncio.run(agent(client, max_steps=3).run(ROW))
    assert len(client.model_inputs) == 3
    assert row["reward"] == 0.0  # no final message
