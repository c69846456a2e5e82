"""Replicas as callers see them: a rollout's calls stay on one resources server replica,
calls spread over the replicas, and a replica that stops answering gets no more rollouts
(an agent's, a collector's). No Ray here: replicas are servers on loopback."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from nemo_gym_cli.collect.collector import Collector
from nemo_gym_cli.collect.metrics import Progress
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.errors import ServerError
from nemo_gym_cli.server import ModelServer, ServerSpec
from nemo_gym_cli.server.replicas import Replicas
from resources_servers.simple_weather.app import SimpleWeather
from responses_api_agents.simple_agent.app import SimpleAgent
from support.scripted_model import MESSAGE, call
from support.servers import serving
from support.upstream import refusing_url

ROW = {"responses_create_params": {"input": "weather in sf?"}, "expected_city": "San Francisco"}
REFS = {
    "resources_server": {"type": "resources_servers", "name": "res"},
    "model_server": {"type": "responses_api_models", "name": "model"},
}


def test_a_key_goes_to_one_replica_and_keys_spread_over_all():
    replicas = Replicas("env", [f"http://10.0.0.{i}:8000" for i in range(3)])
    assert all(replicas.pick(f"s{i}") == replicas.pick(f"s{i}") for i in range(50))
    counts = collections.Counter(replicas.pick(f"session-{i}") for i in range(3000))
    assert len(counts) == 3 and min(counts.values()) > 800


def test_when_a_replica_dies_only_its_keys_move_and_when_all_are_dead_all_are_tried_again():
    urls = [f"http://10.0.0.{i}:8000" for i in range(3)]
    replicas = Replicas("env", urls)
    before = {f"s{i}": replicas.pick(f"s{i}") for i in range(300)}
    assert replicas.mark_dead(urls[1]) and replicas.live == 2
    after = {key: replicas.pick(key) for key in before}
    assert urls[1] not in after.values()
    assert all(after[k] == before[k] for k in before if before[k] != urls[1])  # the others stay put
    assert not replicas.mark_dead(urls[1])  # already dead
    assert replicas.mark_dead(urls[0]) and not replicas.mark_dead(urls[2])  # the last one
    assert {replicas.pick(k) for k in before} == set(urls)  # all written off: all tried again


class ToolThenAnswer(ModelServer):
    """Calls get_weather first, answers once the tool's output is in: any number of rollouts."""

    async def responses(self, body: dict[str, Any]) -> dict[str, Any]:
        done = body["input"][-1].get("type") == "function_call_output"
        output = [MESSAGE] if done else [call("get_weather", '{"city": "San Francisco"}', "c1")]
        return {"id": "r", "object": "response", "model": "m", "output": output, "usage": {}}


class CountingWeather(SimpleWeather):
    def __init__(self, config: Any = None, spec: Any = None) -> None:
        super().__init__(config, spec)
        self.verified = 0

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        self.verified += 1
        return await super().verify(session, body)


def _agent_of(replica_urls: list[str] | None = None):
    """An agent whose resources server ``res`` is the replicas ``res_a`` and ``res_b`` (or
    ``replica_urls``), as ng_run on a Ray cluster would write its spec."""

    def build(spec: ServerSpec) -> SimpleAgent:
        urls = replica_urls or [spec.server_urls["res_a"], spec.server_urls["res_b"]]
        spec = dataclasses.replace(spec, server_urls={**spec.server_urls, "res": urls[0]}, replica_urls={"res": urls})
        return SimpleAgent.from_fields(REFS, spec)

    return build


def test_an_agent_keeps_each_rollout_on_one_replica_and_spreads_rollouts_over_them():
    factories = {
        "model": lambda spec: ToolThenAnswer(spec=spec),
        "res_a": lambda spec: CountingWeather(spec=spec),
        "res_b": lambda spec: CountingWeather(spec=spec),
        "agent": _agent_of(),
    }
    with serving(factories) as stack, httpx.Client(timeout=30) as client:
        rows = [client.post(stack.urls["agent"] + "/run", json=ROW).json() for _ in range(40)]
        verified = [stack.servers["res_a"].verified, stack.servers["res_b"].verified]
    # reward 1 needs the tool call and /verify in the same session: on the same replica
    assert [r["reward"] for r in rows] == [1.0] * 40
    assert sum(verified) == 40 and min(verified) >= 5, verified


def alternating_sessions(live: str, dead: str) -> Iterator[str]:
    """Session ids that the agent's hash pins to ``live``, ``dead``, ``live``, ... in turn (with
    random ids, the first ten rollouts all went to the live replica once in 1024 runs)."""
    pins = Replicas("res", [live, dead])
    candidates = (f"rollout-{n}" for n in itertools.count())
    for wanted in itertools.cycle([live, dead]):
        yield next(key for key in candidates if pins.pick(key) == wanted)


def test_an_agent_stops_sending_to_a_replica_that_refuses_connections_and_the_failure_is_retryable(monkeypatch):
    with refusing_url("") as dead:
        factories = {
            "model": lambda spec: ToolThenAnswer(spec=spec),
            "res_a": lambda spec: CountingWeather(spec=spec),
            "agent": lambda spec: _agent_of([spec.server_urls["res_a"], dead])(spec),
        }
        with serving(factories) as stack, httpx.Client(timeout=30) as client:
            sessions = alternating_sessions(stack.urls["res_a"], dead)
            monkeypatch.setattr("nemo_gym_cli.server.agent.new_session_id", lambda: next(sessions))
            answers = [client.post(stack.urls["agent"] + "/run", json=ROW) for _ in range(30)]
    failed = [a for a in answers if a.status_code != 200]
    # a rollout pinned to the dead replica fails once, retryable; every later one avoids it
    assert len(failed) == 1, [a.status_code for a in answers]
    error = failed[0].json()["error"]
    assert failed[0].status_code == 502 and error["retryable"] is True and dead in error["message"]
    assert answers.index(failed[0]) < 10  # half the sessions went to it until then
    assert answers.index(failed[0]) == 1  # the first one pinned to it; the 14 pinned to it later went elsewhere
    assert all(a.json()["reward"] == 1.0 for a in answers if a.status_code == 200)


class TwoAgents:
    """A collector's client: ``dead`` refuses every connection, the other answers."""

    def __init__(self, dead: str) -> None:
        self.dead = dead
        self.runs: collections.Counter[str] = collections.Counter()

    async def post(self, url: str, payload: dict) -> dict:
        await asyncio.sleep(0.002)
        if url.startswith(self.dead):
            raise ServerError(f"cannot reach {url}", url=url)
        self.runs[payload["id"]] += 1
        return {**payload, "reward": 1.0}

    async def get(self, url: str) -> dict:
        if url.startswith(self.dead):
            raise ServerError(f"cannot reach {url}", url=url)
        return {"status": "ok"}


def test_the_collector_moves_rollouts_off_an_agent_replica_that_died_and_writes_each_once(tmp_path: Path, monkeypatch):
    import nemo_gym_cli.collect.collector as collector_module

    monkeypatch.setattr(collector_module.random, "uniform", lambda a, b: 0.0)  # no backoff wait
    inp = tmp_path / "tasks.jsonl"
    inp.write_text("".join(f'{{"id": {i}}}\n' for i in range(30)))
    options = CollectOptions(
        input_jsonl_fpath=str(inp), output_jsonl_fpath=str(tmp_path / "out.jsonl"), agent_name="a", concurrency=4
    )
    client = TwoAgents("http://10.0.0.2:1")
    said: list[str] = []

    async def main() -> Collector:
        urls = {"a": ["http://10.0.0.1:1", "http://10.0.0.2:1"]}
        progress = Progress(60.0, io.StringIO())
        collector = Collector(
            options, urls, client, asyncio.Event(), progress, restart_hint="", announce=said.append
        )  # fmt: skip
        collector.prepare_output(30)
        await collector.run()
        return collector

    collector = asyncio.run(main())
    assert collector.complete and collector.fatal is None and collector.failed == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert sorted(r["_ng_task_index"] for r in rows) == list(range(30))
    assert client.runs == {i: 1 for i in range(30)}
    assert len(said) == 1 and "http://10.0.0.2:1 stopped answering" in said[0]
