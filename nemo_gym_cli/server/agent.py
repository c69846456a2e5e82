"""The base of every agent: ``/run`` is seed, ``loop()``, verify; a subclass writes ``loop()``.

    class MyAgent(Agent):
        async def loop(self, rollout: Rollout, params: dict) -> list[dict]:
            response = await rollout.model(params)        # one model call
            return response["output"]

``POST /run`` (what ``ng_collect_rollouts`` calls, one task row in, one scored row out):

1. a new session id; ``POST /seed_session`` to the resources server with the row (the
   session travels as the ``x-ng-session-id`` header and as whatever cookies the resources
   server sets, carried as NeMo Gym's agents carry them: the cookies ``/seed_session`` set go
   with every tool call, each tool answer's ``Set-Cookie`` updates them, and ``/verify``
   gets them together with the model server's; NeMo Gym's environments keep their state in
   a cookie);
2. ``loop(rollout, params)`` with the row's ``responses_create_params`` (its ``input`` as a
   list; its ``tools`` from the resources server's ``GET /tools`` when the row has none);
   every model call carries the row's ``_ng_rollout_index`` (the repeat it is, which the
   collector puts in the row as NeMo Gym's does) in the ``x-ng-rollout-index`` header, so a
   model server's response cache keeps repeats independent samples;
3. ``POST /verify`` with the row plus ``response``: the last model response, its ``output``
   replaced by every item the rollout produced, its ``usage`` summed over every model call
   (tokens, ``cost``, the adapter's ``retries`` and ``unpriced_calls``), every field of
   OpenAI's ``Response`` present (what NeMo Gym writes: ``conversion.complete_response``);
   the answer is the scored row.

``POST /v1/responses`` runs ``loop()`` alone (the session from the caller's header or
cookie; the answer sets the resources and model servers' cookies, as NeMo Gym's does, for a
caller that verifies next).

The retry contract with the collector: an error answer is the envelope of ``errors.py``;
the collector tries ``/run`` again when no answer came or the envelope says ``retryable``
(a provider's rate limit or outage, a crashed dependency), and never when it does not (the
row is bad: 4xx; the provider refused the key or is out of credits). Whatever a failed
rollout already cost is in the envelope's ``usage``, so the run's cost counts it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from nemo_gym_cli.errors import HTTPError, NemoGymError, ServerError
from nemo_gym_cli.openai.conversion import complete_response
from nemo_gym_cli.openai.usage import add_usage, complete_usage
from nemo_gym_cli.server.base import Server
from nemo_gym_cli.server.client import Answer, JSONClient, cookie_header, open_json_client
from nemo_gym_cli.server.config import ServerConfig, ServerRef
from nemo_gym_cli.server.http import Request, route
from nemo_gym_cli.server.replicas import Replicas
from nemo_gym_cli.server.spec import ROLLOUT_INDEX_HEADER, SESSION_COOKIE, SESSION_HEADER, new_session_id
from nemo_gym_cli.wire import dumps, loads

__all__ = ["Agent", "Rollout", "add_usage", "tool_refusal"]


_NOT_ASKED = object()


class Rollout:
    """One rollout as an agent's ``loop`` sees it: the model and the tools, with the session
    and the usage bookkeeping done."""

    def __init__(
        self, agent: Agent, session_id: str, cookies: dict[str, str] | None = None, rollout_index: int | None = None
    ) -> None:
        self.agent = agent
        self.session_id = session_id
        #: which repeat of its task this rollout is (None: not said), sent with every model call
        self.rollout_index = rollout_index
        # The rollout's session lives in one resources server replica: every call goes there.
        self.resources_url = agent.resources.pick(session_id)
        self.model_base = agent.models.pick(session_id)
        self.model_url = self.model_base + "/v1/responses"
        self.cookies = dict(cookies or {})  # the resources server's
        self.model_cookies: dict[str, str] = {}
        self.usage: dict[str, Any] = {}
        self.last_response: dict[str, Any] = {}
        self.model_calls = 0
        self.tool_calls = 0

    def _env_headers(self) -> dict[str, str]:
        return {SESSION_HEADER: self.session_id, **cookie_header(self.cookies)}

    def _verify_headers(self) -> dict[str, str]:
        """What ``/verify`` gets: the session, and every cookie the rollout holds (NeMo Gym's
        agents send the model server's too; the resources server's win a name clash)."""
        return {SESSION_HEADER: self.session_id, **cookie_header({**self.model_cookies, **self.cookies})}

    async def model(self, params: dict[str, Any]) -> dict[str, Any]:
        """One call to the model server's ``/v1/responses``; its usage joins the rollout's
        (a failed call's too: what its attempts cost, from the error envelope)."""
        headers = cookie_header(self.model_cookies)
        if self.rollout_index is not None:
            headers[ROLLOUT_INDEX_HEADER] = str(self.rollout_index)
        try:
            answer = await self.agent.exchange(
                self.agent.models, self.model_base, "/v1/responses", params, headers or None
            )
        except ServerError as exc:
            add_usage(self.usage, exc.usage)
            exc.usage = None  # counted in the rollout's now: /run's envelope carries the sum
            raise
        self.model_cookies.update(answer.cookies)
        response = answer.data
        if not isinstance(response, dict) or not isinstance(response.get("output"), list):
            raise ServerError(
                f"POST {self.model_url} answered something that is not a Responses object "
                f"(keys {sorted(response)[:8] if isinstance(response, dict) else type(response).__name__})",
                url=self.model_url,
                kind="bad_response",
            )
        self.model_calls += 1
        add_usage(self.usage, response.get("usage"))
        self.last_response = response
        return response

    async def call_tool(self, call: dict[str, Any]) -> dict[str, Any]:
        """Run one ``function_call`` item on the resources server; returns its
        ``function_call_output`` item. What the model got wrong (arguments that are not
        JSON, an unknown tool, a call the tool refused: 404/405/422) becomes the output the
        model sees; any other failure of the resources server raises ``ServerError``."""
        self.tool_calls += 1
        name = str(call.get("name") or "")
        call_id = call.get("call_id")
        try:
            args = loads(call.get("arguments") or "{}")
        except ValueError as exc:
            return _output(call_id, {"error": f"arguments of {name} are not valid JSON ({exc}); send a JSON object"})
        if not isinstance(args, dict):
            return _output(call_id, {"error": f"arguments of {name} must be a JSON object, got {args!r}"})
        try:
            answer = await self.agent.exchange(
                self.agent.resources, self.resources_url, f"/{name}", args, self._env_headers()
            )
        except ServerError as exc:
            refused = tool_refusal(name, exc)
            if refused is None:
                raise  # not the model's doing (no session, refused, broken): the rollout fails
            return _output(call_id, refused)
        self.cookies.update(answer.cookies)
        return _output(call_id, answer.data)

    def response(self, output: list[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The rollout's response: the last model response with every item and the summed
        usage, with every field of OpenAI's ``Response`` (the missing ones echo ``params``)."""
        usage = self.usage or self.last_response.get("usage")
        response = {**self.last_response, "output": output, "usage": complete_usage(usage) if usage else usage}
        response.setdefault("id", f"resp_{self.session_id}")
        return complete_response(response, params)


def tool_refusal(name: str, exc: ServerError) -> dict[str, Any] | None:
    """What the model reads when the resources server refused a call as the model's mistake
    (an unknown tool: 404/405; a wrong call, a ``ToolError``: 422); None for any other failure.
    ``ng reverify``'s replay of recorded calls reads a refusal the same way."""
    if exc.status in (404, 405):
        return {"error": f"unknown tool {name!r}"}
    if exc.status == 422:
        return {"error": exc.detail}
    return None


def _output(call_id: Any, result: Any) -> dict[str, Any]:
    """A ``function_call_output`` item, with the ``id`` and ``status`` NeMo Gym's rows carry."""
    return {
        "type": "function_call_output",
        "call_id": call_id,
        "output": dumps(result).decode(),
        "id": None,
        "status": "completed",
    }


class Agent(Server):
    """An agent: ``/run`` and ``/v1/responses`` around a ``loop`` that subclasses write."""

    server_type = "responses_api_agents"

    class Config(ServerConfig):
        resources_server: ServerRef = Field(description="the environment: {type: resources_servers, name: ...}")
        model_server: ServerRef = Field(description="the policy: {type: responses_api_models, name: ...}")
        max_in_flight: int = Field(1024, ge=1, description="most concurrent HTTP connections this agent opens")
        timeout_s: float = Field(600.0, gt=0, description="timeout of one call to the model or resources server")

    client: JSONClient
    #: the resources server's replicas and the model server's (one each, unless on Ray)
    resources: Replicas
    models: Replicas

    async def start(self) -> None:
        self.resources = self.replicas_for(self.config.resources_server, "resources_server")
        self.models = self.replicas_for(self.config.model_server, "model_server")
        self.client = await self.enter(
            open_json_client(pool_size=self.config.max_in_flight, timeout=self.config.timeout_s)
        )
        self._env_tools: Any = _NOT_ASKED

    async def exchange(
        self, replicas: Replicas, base: str, path: str, payload: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        """``POST base + path`` (``GET`` without a payload) to ``base``, one of ``replicas``;
        a replica that does not answer is picked no more, and the error stays retryable: the
        collector runs the rollout again, on a live replica."""
        method = "GET" if payload is None else "POST"
        try:
            return await self.client.exchange(method, base + path, payload, headers=headers)
        except ServerError as exc:
            replicas.failed(base, exc)
            raise

    async def loop(self, rollout: Rollout, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Play one task: ``params`` are its Responses create params (``input`` a list).
        Return every output item the rollout produced, in order."""
        raise NotImplementedError(f"{type(self).__name__} must implement loop()")

    # ------------------------------------------------------------------ routes

    @route("POST", "/run")
    async def http_run(self, request: Request) -> dict[str, Any]:
        row = await request.json_object()
        params = _params(row)
        rollout = Rollout(self, new_session_id(), rollout_index=_index(row.get("_ng_rollout_index")))
        env = rollout.resources_url
        try:
            seeded = await self.exchange(self.resources, env, "/seed_session", row, rollout._env_headers())
            rollout.cookies.update(seeded.cookies)
            params = await self._with_tools(params, env)
            response = rollout.response(await self.loop(rollout, params), params)
            verify = {**row, "response": response}
            answer = await self.exchange(self.resources, env, "/verify", verify, rollout._verify_headers())
        except NemoGymError as exc:
            # What the rollout had cost plus what the failed call reported (a judge's tokens
            # when /verify failed, a model call's attempts), each counted once.
            add_usage(rollout.usage, exc.usage)
            if rollout.usage:
                exc.usage = rollout.usage
            raise
        return answer.data

    @route("POST", "/aggregate_metrics")
    async def http_aggregate_metrics(self, request: Request) -> Any:
        """NeMo Gym 0.7's run summary: the resources server computes it (as 0.7's agents ask theirs)."""
        body = await request.json_object()
        base = self.resources.pick(new_session_id())
        return (await self.exchange(self.resources, base, "/aggregate_metrics", body)).data

    @route("POST", "/v1/responses")
    async def http_responses(self, request: Request) -> dict[str, Any]:
        params = _params({"responses_create_params": await request.json_object()})
        session = request.headers.get(SESSION_HEADER) or request.cookies.get(SESSION_COOKIE) or new_session_id()
        rollout = Rollout(self, session, request.cookies, _index(request.headers.get(ROLLOUT_INDEX_HEADER)))
        params = await self._with_tools(params, rollout.resources_url)
        response = rollout.response(await self.loop(rollout, params), params)
        for name, value in {**rollout.cookies, **rollout.model_cookies}.items():
            request.set_cookie(name, value)
        return response

    async def _with_tools(self, params: dict[str, Any], env: str) -> dict[str, Any]:
        """The row's params, with the resources server's tools (asked of ``env``, a replica)
        when the row names none; a row offering a tool the resources server does not serve
        is refused (422): every call of it would fail and the rollout would score 0 for the
        wrong reason."""
        env_tools = await self._tools(env)
        if env_tools is None:
            return params
        if "tools" not in params:
            return {**params, "tools": env_tools} if env_tools else params
        served = {t.get("name") for t in env_tools}
        offered = params.get("tools") or []
        missing = [
            t.get("name")
            for t in offered
            if isinstance(t, dict) and t.get("type") == "function" and t.get("name") not in served
        ]
        if missing:
            raise HTTPError(
                422,
                f"the row offers tools {missing} that resources server {self.config.resources_server.name!r} does "
                f"not serve (it serves: {sorted(n for n in served if n) or 'none'}); fix the row's tools, or leave "
                "them out to use the server's",
                kind="unknown_tools",
                retryable=False,
            )
        return params

    async def _tools(self, env: str) -> list[dict[str, Any]] | None:
        """The resources server's tools (``GET /tools``, asked once); None when it has no
        such route (NeMo Gym's resources servers)."""
        if self._env_tools is _NOT_ASKED:
            try:
                tools = (await self.exchange(self.resources, env, "/tools")).data
            except ServerError as exc:
                if exc.status not in (404, 405):
                    raise
                tools = None
            self._env_tools = [t for t in tools if isinstance(t, dict)] if isinstance(tools, list) else None
        return self._env_tools


def _index(value: Any) -> int | None:
    """A repeat index from a row's ``_ng_rollout_index`` or a caller's header; anything but a
    non-negative integer reads as none (the model server then keys on the request alone)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _params(row: dict[str, Any]) -> dict[str, Any]:
    """The row's Responses create params, checked at the edge (a 400 naming the problem)."""
    params = row.get("responses_create_params")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise HTTPError(400, f"responses_create_params must be an object, got {type(params).__name__}")
    items = params.get("input", [])
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    elif not isinstance(items, list):
        raise HTTPError(400, f"responses_create_params.input must be a string or a list, got {type(items).__name__}")
    tools = params.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise HTTPError(400, f"responses_create_params.tools must be a list, got {type(tools).__name__}")
    return {**params, "input": items}
