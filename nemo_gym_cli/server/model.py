"""The base of every model server: the OpenAI surface agents and SDKs call.

    class MyModel(ModelServer):
        async def responses(self, body: dict) -> dict:          # a Responses object
            ...
        async def chat_completions(self, body: dict) -> dict:   # a chat completion
            ...

Routes: ``POST /v1/responses``, ``POST /v1/chat/completions`` (the body checked to be a JSON
object; the handler cancelled when the caller disconnects, so a provider call never
outlives its caller) and ``GET /v1/models``. A method a server does not implement answers
404 in the envelope.
"""

from __future__ import annotations

from typing import Any

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server.base import Server
from nemo_gym_cli.server.http import Request, route

__all__ = ["ModelServer"]


class ModelServer(Server):
    """A model server: Responses API and Chat Completions in, whatever backs them out."""

    server_type = "responses_api_models"

    async def responses(self, body: dict[str, Any]) -> Any:
        """Answer a Responses create request with a Responses object (or an ASGI response)."""
        raise HTTPError(404, f"{self.describe()} does not serve the Responses API")

    async def chat_completions(self, body: dict[str, Any]) -> Any:
        """Answer a Chat Completions request with a chat completion (or an ASGI response)."""
        raise HTTPError(404, f"{self.describe()} does not serve Chat Completions")

    async def models(self) -> list[dict[str, Any]]:
        """The models served, as ``/v1/models`` entries (``id``, ``object``, ...)."""
        return []

    @route("POST", "/v1/responses", cancel_on_disconnect=True)
    async def http_responses(self, request: Request) -> Any:
        return await self.responses(await request.json_object())

    @route("POST", "/v1/chat/completions", cancel_on_disconnect=True)
    async def http_chat_completions(self, request: Request) -> Any:
        return await self.chat_completions(await request.json_object())

    @route("GET", "/v1/models")
    async def http_models(self, request: Request) -> dict[str, Any]:
        return {"object": "list", "data": await self.models()}
