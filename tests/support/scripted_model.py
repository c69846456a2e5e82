"""A model server whose every answer the test scripts: for testing agents in isolation.

``ScriptedModel(turns)`` answers the n-th ``/v1/responses`` call with ``turns[n]`` (a list
of output items), usage ``{input_tokens: 10, output_tokens: 2, cost: 0.5}`` each time, and
keeps every request's ``input`` in ``inputs``. A turn that is an ``HTTPError`` is raised.
"""

from __future__ import annotations

from typing import Any

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server import ModelServer

__all__ = ["MESSAGE", "ScriptedModel", "call"]

MESSAGE = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]}


def call(name: str, arguments: str, call_id: str) -> dict[str, Any]:
    return {"type": "function_call", "name": name, "arguments": arguments, "call_id": call_id}


class ScriptedModel(ModelServer):
    def __init__(self, turns: list[Any], spec: Any = None) -> None:
        super().__init__(spec=spec)
        self.turns = turns
        self.inputs: list[list[dict[str, Any]]] = []
        self.requests: list[dict[str, Any]] = []

    async def responses(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        self.inputs.append(body["input"])
        turn = self.turns[min(len(self.inputs), len(self.turns)) - 1]
        if isinstance(turn, HTTPError):
            raise turn
        return {
            "id": f"gen-{len(self.inputs)}",
            "object": "response",
            "model": "scripted/model",
            "output": turn,
            "usage": {"input_tokens": 10, "output_tokens": 2, "cost": 0.5},
        }
