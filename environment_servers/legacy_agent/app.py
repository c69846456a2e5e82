"""NeMo Gym 0.7's ``legacy_agent`` environment server, on our kernel: a relay to one agent.

0.7's collector reaches an agent only through an environment server; for an agent that owns
its rollout through ``/run`` (every agent before 0.7's episode protocol), ``legacy_agent``
relays ``POST /run`` and ``POST /aggregate_metrics`` to it unchanged: the body as bytes, the
answer's status, body and headers (``Set-Cookie`` included), the caller's cookies.

Ours serves every ``environment_servers/legacy_agent`` entry, NeMo Gym's configs included:
NeMo Gym's own does not declare ``ray_enabled``, so its base starts a private Ray cluster in
each such process (15+ s and ~20 processes, for a relay that never uses it). It takes 0.7's
keys; ``max_concurrent_episodes`` (with ``queue_timeout_seconds``) bounds the rollouts in
flight and ``default_episode_timeout_seconds`` is the relay's timeout (0.7's relay takes both
and enforces neither, saying so in a warning).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator
from starlette.responses import Response

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server.base import Server
from nemo_gym_cli.server.client import JSONClient, open_json_client
from nemo_gym_cli.server.config import ServerConfig, ServerRef
from nemo_gym_cli.server.http import Request, route

__all__ = ["LegacyAgent"]

#: Headers that frame a connection or a body, not the payload: each hop sets its own.
_HOP = frozenset(
    {"connection", "content-encoding", "content-length", "host", "keep-alive", "transfer-encoding", "upgrade"}
)
#: ... and those our own HTTP server adds to every answer.
_OURS = frozenset({"date", "server"})


class AgentRef(BaseModel):
    """``agent_server``: ``{type: responses_api_agents, name: <agent instance>}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: str = Field("responses_api_agents", pattern="^responses_api_agents$")
    name: str


class LegacyAgent(Server):
    """Relays ``/run`` and ``/aggregate_metrics`` to one agent, bytes and cookies unchanged."""

    server_type = "environment_servers"

    class Config(ServerConfig):
        agent_server: AgentRef = Field(description="the agent instance to relay to")
        max_concurrent_episodes: PositiveInt | None = Field(
            None, description="most rollouts relayed at once (more wait up to queue_timeout_seconds)"
        )
        queue_timeout_seconds: PositiveFloat | None = Field(
            None, description="how long a rollout waits for room (required with max_concurrent_episodes)"
        )
        default_episode_timeout_seconds: PositiveFloat = Field(21600, description="the relay's timeout per rollout")
        cleanup_timeout_seconds: PositiveFloat = Field(180, description="NeMo Gym's key: nothing to clean up here")

        @model_validator(mode="after")
        def _queue_timeout(self) -> Any:
            if self.max_concurrent_episodes is not None and self.queue_timeout_seconds is None:
                raise ValueError("queue_timeout_seconds is required with max_concurrent_episodes")
            return self

    client: JSONClient
    _room: asyncio.Semaphore | None = None

    async def start(self) -> None:
        self.agent_url = self.url_for(ServerRef(type="responses_api_agents", name=self.config.agent_server.name))
        self.client = await self.enter(open_json_client(timeout=float(self.config.default_episode_timeout_seconds)))
        if self.config.max_concurrent_episodes is not None:
            self._room = asyncio.Semaphore(self.config.max_concurrent_episodes)

    @route("POST", "/run", cancel_on_disconnect=True)
    async def run(self, request: Request) -> Any:
        if self._room is None:
            return await self._relay("/run", request)
        try:
            await asyncio.wait_for(self._room.acquire(), self.config.queue_timeout_seconds)
        except TimeoutError:
            raise HTTPError(
                503,
                f"{self.spec.name}: no room for the rollout within queue_timeout_seconds="
                f"{self.config.queue_timeout_seconds:g} ({self.config.max_concurrent_episodes} in flight)",
                kind="unavailable",
            ) from None
        try:
            return await self._relay("/run", request)
        finally:
            self._room.release()

    @route("POST", "/aggregate_metrics")
    async def aggregate_metrics(self, request: Request) -> Any:
        return await self._relay("/aggregate_metrics", request)

    async def _relay(self, path: str, request: Request) -> Response:
        url = self.agent_url + path
        headers = {k: v for k, v in request.headers.items() if k not in _HOP}
        try:
            async with self.client.session.post(url, data=await request.body(), headers=headers) as upstream:
                body = await upstream.read()
                relayed = [(k.lower(), v) for k, v in upstream.headers.items() if k.lower() not in _HOP | _OURS]
                status = upstream.status
        except TimeoutError:
            raise HTTPError(
                504,
                f"{self.spec.name}: {url} did not answer within default_episode_timeout_seconds="
                f"{self.config.default_episode_timeout_seconds:g}",
                kind="timeout",
            ) from None
        except aiohttp.ClientError as exc:
            raise HTTPError(502, f"{self.spec.name}: cannot reach agent {url}: {exc}", kind="unavailable") from None
        response = Response(content=body, status_code=status)
        # raw_headers, not headers=: repeated fields such as Set-Cookie must all survive.
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in relayed]
        response.raw_headers.append((b"content-length", str(len(body)).encode()))
        return response
