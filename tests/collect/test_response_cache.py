"""The response cache (``+cache=true``): the store alone, the options, and whole collections
on real servers on loopback (the offline emulator behind openai_model)."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from nemo_gym_cli.collect.cache_options import CacheOptions, cache_model_servers
from nemo_gym_cli.collect.metrics import CollectionMetrics, format_summary
from nemo_gym_cli.config import load_config
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server.cache import FILE_NAME, ResponseCache, _connection, cache_key, cacheable
from support.cli import BIN, ROOT, NgRun, run_cli
from support.procs import descendants

AGENT = "simple_weather_simple_agent"
EXAMPLE = ROOT / "resources_servers/simple_weather/data/example.jsonl"
OFFLINE = "+config_paths=[configs/offline.yaml]"


def _chat(finish: str = "stop", usage: Any = None) -> dict[str, Any]:
    return {
        "id": "gen-1",
        "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "cost": 0.5} if usage is None else usage,
    }


# ---------------------------------------------------------------------- the store


def test_the_key_ignores_key_order_and_separates_repeats():
    a, request = cache_key({"body": {"messages": [1], "temperature": 0.7}, "rollout": 0})
    b, _ = cache_key({"rollout": 0, "body": {"temperature": 0.7, "messages": [1]}})
    c, _ = cache_key({"body": {"messages": [1], "temperature": 0.7}, "rollout": 1})
    assert a == b != c
    assert hashlib.sha256(request).hexdigest() == a  # an entry can be checked against its key


def test_errors_truncated_answers_and_answers_without_usage_are_not_cacheable():
    assert cacheable(_chat()) and cacheable(_chat("tool_calls"))
    assert not cacheable(_chat("length"))
    assert not cacheable(_chat("content_filter"))
    assert not cacheable(_chat(usage={}))
    assert not cacheable({**_chat(), "error": {"message": "boom"}})
    done = {"status": "completed", "output": [], "usage": {"input_tokens": 1}}
    assert cacheable(done)
    assert not cacheable({**done, "status": "incomplete"})


def test_an_entry_is_read_back_until_its_time_to_live_and_refresh_ignores_it(tmp_path):
    async def scenario() -> None:
        cache = await ResponseCache.open(tmp_path, ttl_s=60)
        key, request = cache_key({"body": {"x": 1}})
        assert await cache.get(key) is None
        cache.put(key, request, orjson.dumps(_chat()), 0.5)
        await cache.flush()
        hit = await cache.get(key)
        assert hit is not None and hit.answer == _chat() and hit.cost == 0.5
        await cache.close()
        expired = await ResponseCache.open(tmp_path, ttl_s=1e-9)
        assert await expired.get(key) is None
        await expired.close()
        refreshing = await ResponseCache.open(tmp_path, refresh=True)
        assert await refreshing.get(key) is None
        await refreshing.close()

    asyncio.run(scenario())


def test_a_folder_that_cannot_hold_the_cache_is_one_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"cannot open the response cache .*\+cache_path") as info:
        asyncio.run(ResponseCache.open(blocker / "cache"))
    assert "\n" not in str(info.value)


def test_a_cache_opens_while_another_process_holds_the_file_against_readers(tmp_path):
    """CI saw "cannot open the response cache (database is locked)" when a collection started
    while another recovered a SIGKILLed writer's WAL: the lookup connection (busy timeout 0)
    read the schema as it opened. Here a new file's first writer holds it exclusively (the
    same lock a recovery takes) for a moment: the open waits for it and then works."""
    path = tmp_path / FILE_NAME
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("CREATE TABLE other (a)")
    _connection(path, busy_timeout_ms=0, writes=False).close()  # the lookup connection reads no page

    async def scenario() -> None:
        asyncio.get_running_loop().call_later(0.3, holder.execute, "COMMIT")
        cache = await ResponseCache.open(tmp_path)
        key, request = cache_key({"x": 1})
        cache.put(key, request, orjson.dumps(_chat()), 0.5)
        await cache.flush()
        assert (await cache.get(key)) is not None
        await cache.close()

    try:
        asyncio.run(scenario())
    finally:
        holder.close()


def _writer(folder: str, worker: int, n: int) -> None:
    async def write() -> None:
        cache = await ResponseCache.open(Path(folder))
        for i in range(n):
            # Every worker writes every key, each with its own answer: the last one wins whole.
            key, request = cache_key({"i": i})
            answer = {"worker": worker, "i": i, "pad": "x" * (i * 97 % 5000), "usage": {"cost": 1}}
            cache.put(key, request, orjson.dumps(answer), 1.0)
        await cache.close()

    asyncio.run(write())


def test_processes_writing_the_same_keys_at_once_leave_whole_entries(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    entries = _entries(tmp_path)
    assert len(entries) == 150
    for key, request, answer in entries:
        assert hashlib.sha256(request).hexdigest() == key
        i = orjson.loads(request)["i"]
        data = orjson.loads(answer)
        assert data["i"] == i and data["pad"] == "x" * (i * 97 % 5000) and data["worker"] in range(4)


def _entries(folder: Path) -> list[tuple[str, bytes, bytes]]:
    db = sqlite3.connect(folder / FILE_NAME)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return db.execute("SELECT key, request, answer FROM responses").fetchall()
    finally:
        db.close()


# ---------------------------------------------------------------------- the options


def test_cache_options_reach_every_model_server_that_can_cache(tmp_path):
    config = load_config([OFFLINE], cwd=ROOT)
    opts = CacheOptions(cache=True, cache_path=str(tmp_path / "c"), cache_refresh=True)
    cached = cache_model_servers(config, opts)
    fields = cached.instances["policy_model"].fields
    assert fields["cache"] is True and fields["cache_refresh"] is True and fields["cache_path"] == str(tmp_path / "c")
    assert "cache" not in cached.instances["provider_emulator"].fields  # the emulator is the provider


def test_cache_options_that_cannot_apply_are_refused_in_one_line():
    config = load_config([OFFLINE], cwd=ROOT)
    with pytest.raises(ConfigError, match=r"\+cache_refresh without \+cache=true does nothing"):
        cache_model_servers(config, CacheOptions(cache_refresh=True))
    with pytest.raises(ConfigError, match="a running ng_run's config decides"):
        cache_model_servers(load_config([], cwd=ROOT), CacheOptions(cache=True))
    echo = ROOT / "tests/fixtures"
    echo_config = load_config(["+config_paths=[echo_model.yaml]"], cwd=echo)
    with pytest.raises(ConfigError, match="no model server of this config has a response cache"):
        cache_model_servers(echo_config, CacheOptions(cache=True))


def test_metrics_count_hits_misses_and_dollars_saved():
    metrics = CollectionMetrics()
    usage = {"cost": 0.0, "response_cache": {"hits": 2, "misses": 1, "saved_usd": 0.25}}
    metrics.add_row({"reward": 1.0, "response": {"usage": usage}})
    doc = metrics.summary(wall_time_s=1.0, new_rollouts=1)
    assert doc["response_cache"]["hits"] == 2 and doc["response_cache"]["saved_usd"] == 0.25
    assert "response cache: 2 of 3 model calls answered from it ($0 each), $0.250000 saved" in format_summary(doc)
    assert "response_cache" not in CollectionMetrics().summary(wall_time_s=1.0, new_rollouts=0)


# ---------------------------------------------------------------------- whole collections


def _read(path: Path) -> list[dict[str, Any]]:
    rows = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return sorted(rows, key=lambda r: (r["_ng_task_index"], r["_ng_rollout_index"]))


def _without_run_figures(row: dict[str, Any]) -> dict[str, Any]:
    """A row without what differs between two runs of the same answers: latency and the
    accounting of who paid (usage)."""
    out = {k: v for k, v in row.items() if k != "_ng_latency_s"}
    out["response"] = {k: v for k, v in row["response"].items() if k != "usage"}
    return out


def _metrics(out: Path) -> dict[str, Any]:
    return orjson.loads(out.with_name(out.stem + "_metrics.json").read_bytes())


@pytest.mark.e2e
def test_a_second_run_is_answered_from_the_cache_with_no_upstream_call_and_the_same_rows(tmp_path):
    cache = tmp_path / "cache"
    servers = NgRun("+cache=true", f"+cache_path={cache}", config=OFFLINE)
    try:
        servers.wait_ready()
        stats_url = servers.url_of("provider_emulator") + "/emulator/stats"
        outs = []
        calls = []
        for run in (1, 2):
            before = httpx.get(stats_url).json()["completion_requests"]
            out = tmp_path / f"run{run}.jsonl"
            done = run_cli(
                "ng_collect_rollouts", f"+head_server.port={servers.head_port}", f"+agent_name={AGENT}",
                f"+input_jsonl_fpath={EXAMPLE}", f"+output_jsonl_fpath={out}",
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            calls.append(httpx.get(stats_url).json()["completion_requests"] - before)
            outs.append((out, done.stdout))
    finally:
        servers.stop()
    assert calls[0] == 10 and calls[1] == 0  # 5 tasks, 2 model calls each; then none
    first, second = _read(outs[0][0]), _read(outs[1][0])
    assert [_without_run_figures(r) for r in first] == [_without_run_figures(r) for r in second]
    assert [r["reward"] for r in second] == [1.0] * 5
    assert all(r["response"]["usage"]["response_cache"]["hits"] == 2 for r in second)
    paid, replayed = _metrics(outs[0][0]), _metrics(outs[1][0])
    assert paid["cost_usd"] > 0
    assert paid["response_cache"]["hits"] == 0 and paid["response_cache"]["misses"] == 10
    assert replayed["cost_usd"] == 0
    assert replayed["response_cache"]["hits"] == 10 and replayed["response_cache"]["misses"] == 0
    assert replayed["response_cache"]["saved_usd"] == pytest.approx(paid["cost_usd"])
    assert f"${paid['cost_usd']:.6f} saved" in outs[1][1]


@pytest.mark.e2e
def test_three_repeats_at_a_nonzero_temperature_are_three_cache_entries(tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out.jsonl"
    done = run_cli(
        "ng_collect_rollouts", OFFLINE, f"+agent_name={AGENT}", f"+input_jsonl_fpath={EXAMPLE}", "+limit=2",
        f"+output_jsonl_fpath={out}", "+num_repeats=3", "+responses_create_params={temperature: 0.7}",
        "+cache=true", f"+cache_path={cache}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    requests = [orjson.loads(request) for _, request, _ in _entries(cache)]
    assert len(requests) == 2 * 3 * 2  # tasks x repeats x model calls
    first_turns = [r for r in requests if r["body"]["messages"][-1]["role"] == "user"]
    assert all(r["body"]["temperature"] == 0.7 for r in requests)
    by_prompt: dict[str, list[int]] = {}
    for r in first_turns:
        by_prompt.setdefault(r["body"]["messages"][-1]["content"], []).append(r["rollout"])
    assert len(by_prompt) == 2 and all(sorted(v) == [0, 1, 2] for v in by_prompt.values())


def _collector(out: Path, cache: Path, inp: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(BIN / "ng_collect_rollouts"), OFFLINE, f"+agent_name={AGENT}", f"+input_jsonl_fpath={inp}",
            f"+output_jsonl_fpath={out}", "+concurrency=4", "+cache=true", f"+cache_path={cache}",
            "++provider_emulator.responses_api_models.provider_emulator.latency_ms=20", *extra,
        ],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
    )  # fmt: skip


def _tasks(path: Path, n: int) -> tuple[Path, dict[str, str]]:
    """``n`` simple_weather tasks (cities and phrasings vary); and each prompt's city."""
    from resources_servers.simple_weather.generate_tasks import generate

    rows = list(generate(n, seed=7))
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path, {r["responses_create_params"]["input"][0]["content"]: r["expected_city"] for r in rows}


@pytest.mark.e2e
def test_two_collections_share_a_cache_and_one_killed_mid_run_resumes_with_every_entry_whole(tmp_path):
    cache = tmp_path / "cache"
    inp, city_of = _tasks(tmp_path / "tasks.jsonl", 40)
    out_a, out_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a = _collector(out_a, cache, inp)
    b = _collector(out_b, cache, inp, "+num_repeats=2")
    try:
        deadline = time.monotonic() + 60
        while not (out_a.exists() and out_a.read_bytes().count(b"\n") >= 8):
            assert a.poll() is None, a.communicate()
            assert time.monotonic() < deadline, "collection a wrote no rows"
            time.sleep(0.02)
        for pid in [*descendants(a.pid), a.pid]:  # the model server too, wherever it was
            os.kill(pid, signal.SIGKILL)
        a.wait(10)
        assert out_a.read_bytes().count(b"\n") < 40  # killed mid-run
        resumed = _collector(out_a, cache, inp, "+resume=true")
        _, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        _, err = b.communicate(timeout=120)
        assert b.returncode == 0, err
    finally:
        for proc in (a, b):
            for pid in [*descendants(proc.pid), proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
    rows_a, rows_b = _read(out_a), _read(out_b)
    assert [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows_a] == [(t, 0) for t in range(40)]
    assert len(rows_b) == 80
    for row in rows_a + rows_b:  # each row's answer is about its own task's city
        call = next(i for i in row["response"]["output"] if i["type"] == "function_call")
        assert orjson.loads(call["arguments"])["city"] == row["expected_city"] and row["reward"] == 1.0
    entries = _entries(cache)
    first_turns = {(r["responses_create_params"]["input"][0]["content"], r["_ng_rollout_index"]) for r in rows_b}
    asked_first = [orjson.loads(q) for _, q, _ in entries if orjson.loads(q)["body"]["messages"][-1]["role"] == "user"]
    # one entry per prompt and repeat (a's repeat 0 shares b's); second turns at least as many
    assert sorted((q["body"]["messages"][-1]["content"], q["rollout"]) for q in asked_first) == sorted(first_turns)
    assert len(entries) >= 2 * len(first_turns)
    for key, request, answer in entries:
        assert hashlib.sha256(request).hexdigest() == key
        asked, data = orjson.loads(request), orjson.loads(answer)
        assert cacheable(data)
        last = asked["body"]["messages"][-1]
        message = data["choices"][0]["message"]
        if last["role"] == "user":  # the first turn: a call for the prompt's city
            city = orjson.loads(message["tool_calls"][0]["function"]["arguments"])["city"]
            assert city == city_of[last["content"]]
        else:  # the second: the answer about the city the tool reported
            assert orjson.loads(last["content"])["city"] in message["content"]
    hits = sum((_metrics(o).get("response_cache") or {}).get("hits", 0) for o in (out_a, out_b))
    assert hits > 0  # the collections did share it
