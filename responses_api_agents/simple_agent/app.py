"""simple_agent: the model <-> tools loop.

Call the model; run each function call on the resources server and append its output;
repeat until the model answers without a tool call, or after ``max_steps`` model calls.
Seeding, verifying, sessions, usage and errors are the ``Agent`` base's (``/run``).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nemo_gym_cli.server import Agent, Rollout


class SimpleAgent(Agent):
    class Config(Agent.Config):
        max_steps: int = Field(8, ge=1, description="most model calls in one rollout")

    async def loop(self, rollout: Rollout, params: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for _ in range(self.config.max_steps):
            response = await rollout.model({**params, "input": params["input"] + items})
            items += response["output"]
            calls = [item for item in response["output"] if item.get("type") == "function_call"]
            if not calls:
                break
            for call in calls:
                items.append(await rollout.call_tool(call))
        return items
