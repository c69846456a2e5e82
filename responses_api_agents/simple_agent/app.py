"""simple_agent: the model <-> tools loop.

``POST /v1/responses`` runs the loop for one request: call the model; POST each function
call to the resources server (``/<tool name>``); append the call outputs; repeat until the
model answers without tool calls or ``max_steps`` model calls were made. Tool-call
arguments that are not valid JSON go back to the model as an error output.

``POST /run`` does a whole rollout: ``/seed_session``, the loop, ``/verify``; it returns the
verified row. The loop is a function call here, not an HTTP call to ourselves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from nemo_gym_cli.client import JSONClient, open_json_client
from nemo_gym_cli.errors import NemoGymError, ServerError
from nemo_gym_cli.servers import (
    SESSION_HEADER,
    ServerRef,
    ServerSpec,
    create_server_app,
    new_session_id,
    read_json,
)
from nemo_gym_cli.wire import JSONResponse, dumps, loads


class SimpleAgentConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    resources_server: dict[str, str] = Field(description="{type: resources_servers, name: ...}: the environment")
    model_server: dict[str, str] = Field(description="{type: responses_api_models, name: ...}: the policy")
    max_steps: int = Field(8, ge=1, description="most model calls in one rollout")
    max_in_flight: int = Field(1024, ge=1, description="most concurrent HTTP connections this agent opens")
    timeout_s: float = Field(600.0, gt=0, description="timeout of one call to the model or resources server")


class SimpleAgent:
    def __init__(self, config: SimpleAgentConfig, spec: ServerSpec, client: JSONClient) -> None:
        self.max_steps = config.max_steps
        self.client = client
        self.resources_url = spec.url_for(ServerRef.parse(config.resources_server, "resources_server"))
        self.model_url = spec.url_for(ServerRef.parse(config.model_server, "model_server")) + "/v1/responses"

    async def responses(self, params: dict[str, Any], session_id: str) -> dict[str, Any]:
        """The loop. Returns the last model response with ``output`` holding every item the
        rollout produced (reasoning, calls, call outputs, messages) and usage summed."""
        base_input = params.get("input") or []
        if isinstance(base_input, str):
            base_input = [{"role": "user", "content": base_input}]
        new_items: list[dict[str, Any]] = []
        usage: dict[str, float] = {}
        headers = {SESSION_HEADER: session_id}
        response: dict[str, Any] = {}
        for _ in range(self.max_steps):
            response = await self.client.post(self.model_url, {**params, "input": base_input + new_items})
            _add_usage(usage, response.get("usage"))
            calls = []
            for item in response.get("output") or []:
                new_items.append(item)
                if item.get("type") == "function_call":
                    calls.append(item)
            if not calls:
                break
            for call in calls:
                output = await self._call_tool(call, headers)
                new_items.append(
                    {
                        "type": "function_call_output",
                        "call_id": call.get("call_id"),
                        "output": output,
                    }
                )
        return {**response, "output": new_items, "usage": usage or response.get("usage")}

    async def _call_tool(self, call: dict[str, Any], headers: dict[str, str]) -> str:
        name = call.get("name") or ""
        try:
            args = loads(call.get("arguments") or "{}")
        except ValueError as exc:
            return dumps({"error": f"arguments of {name} are not valid JSON ({exc}); send a JSON object"}).decode()
        if not isinstance(args, dict):
            return dumps({"error": f"arguments of {name} must be a JSON object, got {args!r}"}).decode()
        try:
            result = await self.client.post(f"{self.resources_url}/{name}", args, headers=headers)
        except ServerError as exc:
            if exc.status in (404, 405):
                return dumps({"error": f"unknown tool {name!r}"}).decode()
            if exc.status is not None and exc.status < 500:
                return dumps({"error": str(exc)}).decode()
            raise
        return dumps(result).decode()

    async def run(self, row: dict[str, Any]) -> dict[str, Any]:
        session_id = new_session_id()
        headers = {SESSION_HEADER: session_id}
        await self.client.post(f"{self.resources_url}/seed_session", row, headers=headers)
        response = await self.responses(row.get("responses_create_params") or {}, session_id)
        return await self.client.post(f"{self.resources_url}/verify", {**row, "response": response}, headers=headers)


def _add_usage(total: dict[str, Any], usage: dict[str, Any] | None) -> None:
    if not usage:
        return
    for key, value in usage.items():
        if isinstance(value, int) and not isinstance(value, bool):
            total[key] = total.get(key, 0) + value
        elif isinstance(value, float):
            # Costs in USD: round away binary-float dust (2.2199999999999998e-05).
            total[key] = round(total.get(key, 0) + value, 12)
        elif isinstance(value, dict):
            _add_usage(total.setdefault(key, {}), value)


def _error(exc: NemoGymError) -> JSONResponse:
    status = getattr(exc, "status", None) or 502
    return JSONResponse(
        {"error": {"message": str(exc), "type": type(exc).__name__}},
        502 if status < 400 else status,
    )


def create_app(spec: ServerSpec) -> FastAPI:
    config = SimpleAgentConfig.model_validate(spec.fields)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_json_client(pool_size=config.max_in_flight, timeout=config.timeout_s) as client:
            app.state.agent = SimpleAgent(config, spec, client)
            yield

    app = create_server_app(spec, lifespan=lifespan)

    async def responses(request: Request) -> JSONResponse:
        params = await read_json(request)
        try:
            return JSONResponse(
                await app.state.agent.responses(params, request.headers.get(SESSION_HEADER) or new_session_id())
            )
        except NemoGymError as exc:
            return _error(exc)

    async def run(request: Request) -> JSONResponse:
        row = await read_json(request)
        try:
            return JSONResponse(await app.state.agent.run(row))
        except NemoGymError as exc:
            return _error(exc)

    # Plain routes: served by DirectRoutes without FastAPI's per-request stack (hot path).
    app.add_route("/v1/responses", responses, methods=["POST"])
    app.add_route("/run", run, methods=["POST"])
    return app
