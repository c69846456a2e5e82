"""The base of every model server: the OpenAI surface agents and SDKs call.

    class MyModel(ModelServer):
        async def responses(self, body: dict) -> dict:          # a Responses object
            ...
        async def chat_completions(self, body: dict) -> dict:   # a chat completion
            ...
        async def models(self) -> list[dict]:                   # what /v1/models lists
            ...

Routes: ``POST /v1/responses``, ``POST /v1/chat/completions`` (the body checked to be a JSON
object; the handler cancelled when the caller disconnects, so a provider call never
outlives its caller) and ``GET /v1/models`` (OpenAI's list shape). A method a server does
not implement answers 404 in the envelope.

Streaming is the base's, once for every model server: with ``stream: true`` the subclass
answers as usual (``stream`` and ``stream_options`` taken out of the body) and the base
renders the complete answer as the stream OpenAI documents (``openai/streams.py``):
Responses events from ``response.created`` to ``response.completed``, or chat chunks with
the usage (``stream_options.include_usage``) and ``[DONE]``. An error before the answer is
the usual JSON envelope, as OpenAI answers one. A subclass that returns an ASGI response
(its own stream) is served as is.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.openai.streams import SSE_MEDIA_TYPE, chat_sse, response_sse
from nemo_gym_cli.server.base import Server
from nemo_gym_cli.server.http import Request, route

__all__ = ["ModelServer"]

_STREAM_KEYS = ("stream", "stream_options")
_SSE_HEADERS = {"cache-control": "no-cache"}


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
        """The models served, as ``/v1/models`` entries (``id``, ``object``, ``created``,
        ``owned_by``: OpenAI's ``Model``)."""
        return []

    @route("POST", "/v1/responses", cancel_on_disconnect=True)
    async def http_responses(self, request: Request) -> Any:
        body = await request.json_object()
        if body.get("stream") is not True:
            return await self.responses(body)
        answer = await self.responses(_unstreamed(body))
        if callable(answer) or not isinstance(answer, dict):
            return answer
        return Response(response_sse(answer), media_type=SSE_MEDIA_TYPE, headers=_SSE_HEADERS)

    @route("POST", "/v1/chat/completions", cancel_on_disconnect=True)
    async def http_chat_completions(self, request: Request) -> Any:
        body = await request.json_object()
        if body.get("stream") is not True:
            return await self.chat_completions(body)
        options = body.get("stream_options")
        usage = isinstance(options, dict) and options.get("include_usage") is True
        answer = await self.chat_completions(_unstreamed(body))
        if callable(answer) or not isinstance(answer, dict):
            return answer
        return Response(chat_sse(answer, usage=usage), media_type=SSE_MEDIA_TYPE, headers=_SSE_HEADERS)

    @route("GET", "/v1/models")
    async def http_models(self, request: Request) -> dict[str, Any]:
        return {"object": "list", "data": await self.models()}


def _unstreamed(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in _STREAM_KEYS}
