"""ng_collect_rollouts against scripted agents: retries, failures, resume, kills, gates, metrics.

The agents are real servers (tests/fixtures/responses_api_agents/scripted_agent, started by
ng_run or by the collector's one-command mode, from tests/fixtures); each input row scripts
its agent's answer: reward, extra metrics, usage, an HTTP failure status, a delay.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from nemo_gym_cli.collect import collector as collector_module
from nemo_gym_cli.collect.collector import CollectOptions, Collector
from nemo_gym_cli.collect.metrics import Progress
from nemo_gym_cli.errors import ServerError
from support.cli import BIN, NgRun, run_cli
from support.ports import held_port
from support.procs import descendants, still_alive

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CONFIG = "+config_paths=[scripted_agents.yaml]"
AGENT, AGENT_B = "scripted_agent", "scripted_agent_b"


class ScriptedNgRun(NgRun):
    """``ng_run`` serving the two scripted agents (cwd tests/fixtures) on a free head port."""

    def __init__(self) -> None:
        super().__init__(cwd=FIXTURES, config=CONFIG)
        self.instances: dict[str, dict] = {}

    def wait_ready(self, timeout: float = 60.0) -> list[dict]:
        rows = super().wait_ready(timeout)
        self.instances = {r["name"]: r for r in rows}
        return rows

    def calls(self, agent: str = AGENT) -> dict[str, list[float]]:
        """Arrival times of the agent's ``/run`` calls, per task id."""
        return httpx.get(self.instances[agent]["url"] + "/calls").json()["calls"]


@pytest.fixture(scope="module")
def servers():
    run = ScriptedNgRun()
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


# ---------------------------------------------------------------------- helpers


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else orjson.dumps(r).decode() for r in rows]
    path.write_text("".join(line + "\n" for line in lines))
    return path


def read_rows(path: Path) -> list[dict]:
    """The output's rows; fails on a torn (unterminated or unparsable) line."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn last line: {data[-80:]!r}"
    return [orjson.loads(line) for line in data.splitlines()]


def pairs(rows: list[dict]) -> list[tuple[int, int]]:
    return sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows)


def collect_args(head_port: int, inp: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"+head_server.port={head_port}",
        f"+agent_name={AGENT}",
        f"+input_jsonl_fpath={inp}",
        f"+output_jsonl_fpath={out}",
        *extra,
    ]


def collect(servers: NgRun, inp: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("ng_collect_rollouts", *collect_args(servers.head_port, inp, out, *extra), cwd=FIXTURES)


def start_collect(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "ng_collect_rollouts"), *args],
        cwd=FIXTURES,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, f"collector exited early: {proc.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"{path} did not reach {n} rows")


def metrics_of(out: Path) -> dict:
    return orjson.loads(out.with_name(out.stem + "_metrics.json").read_bytes())


def failures_of(out: Path) -> list[dict]:
    return read_rows(out.with_name(out.stem + "_failures.jsonl"))


def kill_all(proc: subprocess.Popen, also: list[int] = ()) -> None:
    for pid in [*descendants(proc.pid), *also]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def slow_tasks(tmp_path: Path, n: int = 30) -> Path:
    """``n`` quick tasks, and task 5 whose first call hangs (later calls answer at once)."""
    rows = [{"id": f"{tmp_path.name}-{i}", "sleep_s": 0.05} for i in range(n)]
    rows[5]["sleep_s"] = [30, 0, 0, 0]
    return write_jsonl(tmp_path / "tasks.jsonl", rows)


# ---------------------------------------------------------------------- interruption and resume


@pytest.mark.e2e
def test_ctrl_c_stops_within_seconds_with_valid_jsonl_and_resume_completes_the_set(servers, tmp_path):
    inp, out = slow_tasks(tmp_path), tmp_path / "out.jsonl"
    args = collect_args(servers.head_port, inp, out, "+num_repeats=2", "+concurrency=4")
    proc = start_collect(args)
    try:
        wait_for_rows(out, 10, proc)
        proc.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=20)
        assert time.monotonic() - started < 10
    finally:
        kill_all(proc)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "+resume=true" in stderr
    partial = read_rows(out)
    assert 10 <= len(partial) < 60
    assert len(set(pairs(partial))) == len(partial)
    assert metrics_of(out)["interrupted"] is True

    resumed = collect(servers, inp, out, "+num_repeats=2", "+concurrency=4", "+resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert pairs(read_rows(out)) == [(t, r) for t in range(30) for r in range(2)]
    metrics = metrics_of(out)
    assert metrics["succeeded"] == 60 and metrics["failed"] == 0
    assert metrics["resumed_from_output"] == len(partial)
    assert metrics["complete"] is True and metrics["interrupted"] is False


@pytest.mark.e2e
def test_sigkill_leaves_valid_jsonl_and_resume_cuts_a_torn_line_and_completes_the_set(servers, tmp_path):
    inp, out = slow_tasks(tmp_path), tmp_path / "out.jsonl"
    proc = start_collect(collect_args(servers.head_port, inp, out, "+concurrency=4"))
    try:
        wait_for_rows(out, 8, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        kill_all(proc)
    assert proc.returncode == -signal.SIGKILL
    partial = read_rows(out)
    assert 8 <= len(partial) < 30
    # What a crash in the middle of a write would leave behind:
    with out.open("ab") as f:
        f.write(b'{"id": "torn", "response": {"outp')

    resumed = collect(servers, inp, out, "+concurrency=4", "+resume=true")
    assert resumed.returncode == 0, resumed.stderr
    rows = read_rows(out)
    assert pairs(rows) == [(t, 0) for t in range(30)]
    assert all(r["id"] != "torn" for r in rows)


# ---------------------------------------------------------------------- failures


@pytest.mark.e2e
def test_a_rollout_that_always_fails_is_retried_with_backoff_then_recorded_while_others_succeed(servers, tmp_path):
    ids = [f"{tmp_path.name}-{i}" for i in range(5)]
    rows: list[dict | str] = [{"id": i} for i in ids]
    rows[2] = {"id": ids[2], "fail_status": 500}
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    result = collect(servers, inp, out, "+max_attempts=3", "+concurrency=5")

    assert result.returncode == 1
    assert "gate failed" in result.stderr and "+max_failures=0" in result.stderr
    assert pairs(read_rows(out)) == [(0, 0), (1, 0), (3, 0), (4, 0)]
    [failure] = failures_of(out)
    assert failure["_ng_task_index"] == 2 and failure["_ng_rollout_index"] == 0
    assert failure["line_number"] == 3
    assert failure["error_type"] == "scripted"  # the error envelope's type
    assert "500" in failure["message"] and "scripted failure" in failure["message"]
    assert failure["attempts"] == 3
    calls = servers.calls()[ids[2]]
    assert len(calls) == 3
    gaps = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0  # jittered exponential: 0.5-1 s, then 1-2 s
    metrics = metrics_of(out)
    assert (metrics["succeeded"], metrics["failed"]) == (4, 1)
    assert metrics["failure_types"] == {"scripted": 1}


@pytest.mark.e2e
def test_a_nemo_gym_environment_servers_failed_episode_is_a_failure_never_a_rollout_scored_0(servers, tmp_path):
    """NeMo Gym 0.7's environment servers answer a failed episode with a 200 whose row carries
    ``_ng_failure_class`` (and a reward of 0 or none): a failure, retried unless terminal, its
    partial cost counted; a row whose input carries the field (a failures file fed back in) is
    the agent's echo, not a failure."""
    ids = [f"{tmp_path.name}-{i}" for i in range(4)]
    failed = {
        "_ng_failure_class": "environment_server_failed",
        "_ng_failure_stage": "agent",
        "_ng_failure_message": "sandbox\nunreachable",
        "_ng_failure_partial_response": {"usage": {"input_tokens": 7, "output_tokens": 1, "cost": 0.25}},
        "reward": 0.0,
    }
    rows: list[dict | str] = [
        {"id": ids[0]},
        {"id": ids[1], "answer_extra": {**failed, "_ng_failure_terminal": True}},
        {"id": ids[2], "answer_extra": [{**failed, "_ng_failure_terminal": False}, {}]},  # fails once
        {"id": ids[3], "_ng_failure_class": "environment_server_failed"},
    ]
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    result = collect(servers, inp, out, "+max_attempts=3", "+max_failures=1")

    assert result.returncode == 0, result.stderr
    assert pairs(read_rows(out)) == [(0, 0), (2, 0), (3, 0)]
    [failure] = failures_of(out)
    assert (failure["_ng_task_index"], failure["error_type"], failure["attempts"]) == (
        1,
        "environment_server_failed",
        1,
    )
    assert failure["message"].endswith("the episode failed at agent: sandbox unreachable")
    assert [len(servers.calls()[i]) for i in ids] == [1, 1, 2, 1]
    m = metrics_of(out)
    assert (m["succeeded"], m["failed"], m["reward"]["mean"]) == (3, 1, 0.75)
    assert m["failure_types"] == {"environment_server_failed": 1}
    assert m["retries"]["rollouts"] == {"environment_server_failed": 1}
    assert m["cost"]["failed_attempts_usd"] == pytest.approx(0.5)  # the terminal one and the retried one


@pytest.mark.e2e
def test_a_4xx_is_not_retried_and_a_bad_input_line_is_reported_with_its_line_number(servers, tmp_path):
    ids = [f"{tmp_path.name}-{i}" for i in range(4)]
    rows = [{"id": ids[0]}, {"id": ids[1], "fail_status": 422}, "this is not json", {"id": ids[3]}]
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    result = collect(servers, inp, out, "+max_failures=2")

    assert result.returncode == 0, result.stderr  # 2 failures, +max_failures=2: the gate holds
    assert pairs(read_rows(out)) == [(0, 0), (3, 0)]
    rejected, bad_line = sorted(failures_of(out), key=lambda f: f["_ng_task_index"])
    assert rejected["attempts"] == 1 and "422" in rejected["message"]
    assert len(servers.calls()[ids[1]]) == 1
    assert bad_line["_ng_task_index"] == 2 and bad_line["line_number"] == 3
    assert bad_line["error_type"] == "InputError" and bad_line["attempts"] == 0
    assert f"{inp}:3: not valid JSON" in bad_line["message"]


@pytest.mark.e2e
def test_an_existing_output_is_refused_untouched_and_resume_retries_the_failed_rollouts(servers, tmp_path):
    ids = [f"{tmp_path.name}-{i}" for i in range(3)]
    rows = [{"id": ids[0]}, {"id": ids[1], "fail_times": 2}, {"id": ids[2]}]
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    first = collect(servers, inp, out, "+max_attempts=2")
    assert first.returncode == 1
    assert [f["_ng_task_index"] for f in failures_of(out)] == [1]

    files = [out, out.with_name("out_metrics.json"), out.with_name("out_failures.jsonl")]
    before = [(p.read_bytes(), p.stat().st_mtime_ns) for p in files]
    refused = collect(servers, inp, out, "+max_attempts=2")
    assert refused.returncode == 2  # a usage error
    assert "already exists" in refused.stderr and "+resume=true" in refused.stderr
    assert [(p.read_bytes(), p.stat().st_mtime_ns) for p in files] == before

    resumed = collect(servers, inp, out, "+max_attempts=2", "+resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert pairs(read_rows(out)) == [(0, 0), (1, 0), (2, 0)]
    assert not out.with_name("out_failures.jsonl").exists()
    assert len(servers.calls()[ids[1]]) == 3  # two failed attempts, then the resume's success
    metrics = metrics_of(out)
    assert (metrics["succeeded"], metrics["failed"], metrics["resumed_from_output"]) == (3, 0, 2)


# ---------------------------------------------------------------------- dead servers


@pytest.mark.e2e
def test_an_agent_that_dies_mid_run_fails_fast_naming_its_url_and_what_to_start(tmp_path):
    run = ScriptedNgRun()
    proc = None
    try:
        run.wait_ready()
        rows = [{"id": f"{tmp_path.name}-{i}", "sleep_s": 0.05} for i in range(60)]
        inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
        proc = start_collect(collect_args(run.head_port, inp, out, "+concurrency=2"))
        wait_for_rows(out, 4, proc)
        agent = run.instances[AGENT]
        os.kill(agent["pid"], signal.SIGKILL)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - started < 10
    finally:
        if proc is not None:
            kill_all(proc)
        run.stop()
    assert proc.returncode == 1
    assert f"the agent at {agent['url']} stopped answering" in stderr
    assert "ng_run" in stderr and "+resume=true" in stderr
    assert 4 <= len(read_rows(out)) < 60
    assert not out.with_name("out_failures.jsonl").exists()  # not failures: a resume redoes them


@pytest.mark.e2e
def test_in_one_command_mode_a_server_dying_ends_the_run_and_leaves_no_server_behind(tmp_path):
    hold_b, hold_head = held_port(), held_port()  # agent B binds its port beside the hold
    port_b = hold_b.port
    rows = [{"id": f"{tmp_path.name}-{i}", "sleep_s": 0.05} for i in range(60)]
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    args = [
        CONFIG,
        f"+{AGENT_B}.responses_api_agents.scripted_agent.port={port_b}",
        *collect_args(hold_head.port, inp, out, "+concurrency=2"),
    ]
    proc = start_collect(args)
    seen: list[int] = []
    try:
        wait_for_rows(out, 4, proc)
        seen = descendants(proc.pid)
        pid_b = httpx.get(f"http://127.0.0.1:{port_b}/calls").json()["pid"]
        os.kill(pid_b, signal.SIGKILL)
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=30)
        assert time.monotonic() - started < 10
        left = still_alive(seen)  # before the clean-up below kills anything
    finally:
        kill_all(proc, seen)
        hold_b.release()
        hold_head.release()
    assert proc.returncode == 1
    assert f"server '{AGENT_B}' at http://127.0.0.1:{port_b} exited during the collection" in stderr
    assert "+resume=true" in stderr
    assert 4 <= len(read_rows(out)) < 60
    # the two servers, plus the fork server (and its resource tracker) they were forked from
    assert len(seen) >= 2 and left == []


# ---------------------------------------------------------------------- agents, metrics, gates


@pytest.mark.e2e
def test_rows_name_their_agent_with_agent_ref_and_two_agents_serve_one_file(servers, tmp_path):
    names = [AGENT, AGENT_B, AGENT_B, AGENT, AGENT_B, "no_such_agent"]
    rows = [{"id": f"{tmp_path.name}-{i}", "agent_ref": {"name": n}} for i, n in enumerate(names)]
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        f"+head_server.port={servers.head_port}",  # no +agent_name: every row names its own
        f"+input_jsonl_fpath={inp}",
        f"+output_jsonl_fpath={out}",
        "+max_failures=1",
        cwd=FIXTURES,
    )
    assert result.returncode == 0, result.stderr
    served = {r["_ng_task_index"]: r["agent"] for r in read_rows(out)}
    assert served == dict(enumerate(names[:5]))
    [failure] = failures_of(out)
    assert failure["_ng_task_index"] == 5 and failure["error_type"] == "InputError"
    assert "'no_such_agent'" in failure["message"]
    assert f"{AGENT}, {AGENT_B}" in failure["message"]


@pytest.mark.e2e
def test_the_metrics_file_matches_a_hand_computed_case(servers, tmp_path):
    # 3 tasks x 2 repeats that succeed, plus one task whose 2 rollouts the agent rejects (400).
    tag = tmp_path.name
    rows = [
        {"id": f"{tag}-0", "reward": [1.0, 0.0], "metrics": {"turns": 2},
         "usage": {"input_tokens": 10, "output_tokens": 3, "cost": 0.001}},
        {"id": f"{tag}-1", "reward": 0.5, "metrics": {"turns": 4}, "sleep_s": 0.1,
         "usage": {"input_tokens": 20, "output_tokens": 5, "cost": 0.002}},
        {"id": f"{tag}-2", "reward": 0.0, "metrics": {"turns": 6}, "sleep_s": 0.2,
         "usage": {"input_tokens": 30, "output_tokens": 7, "cost": 0.004}},
        {"id": f"{tag}-3", "fail_status": 400},
    ]  # fmt: skip
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    result = collect(servers, inp, out, "+num_repeats=2", "+concurrency=8", "+max_failures=2")
    assert result.returncode == 0, result.stderr
    m = metrics_of(out)

    assert (m["rollouts"], m["succeeded"], m["failed"]) == (8, 6, 2)
    assert m["failure_types"] == {"scripted": 2}  # the type the agent's error envelope gave
    # rewards 1, 0, .5, .5, 0, 0; turns 2, 2, 4, 4, 6, 6; input fields (sleep_s...) are not metrics
    assert set(m["metrics"]) == {"reward", "turns"}
    reward, turns = m["metrics"]["reward"], m["metrics"]["turns"]
    assert (reward["count"], reward["min"], reward["max"]) == (6, 0.0, 1.0)
    assert reward["mean"] == pytest.approx(1 / 3)
    assert reward["std"] == pytest.approx(math.sqrt(5) / 6)
    assert (turns["count"], turns["mean"], turns["min"], turns["max"]) == (6, 4.0, 2.0, 6.0)
    assert turns["std"] == pytest.approx(math.sqrt(8 / 3))
    # the headline mean counts the two failed rollouts as 0: (1 + 0 + .5 + .5 + 0 + 0 + 0 + 0) / 8
    assert m["reward"]["mean"] == pytest.approx(2 / 8) and m["reward"]["mean_succeeded"] == pytest.approx(1 / 3)
    assert (m["reward"]["attempted"], m["reward"]["failed"]) == (8, 2)
    # per task: [1, 0] passes (threshold 1.0), [.5, .5], [0, 0] and the failed [-, -] do not;
    # task means 1/2, 1/2, 0, 0
    assert (m["num_repeats"], m["pass_threshold"], m["tasks"]) == (2, 1.0, 4)
    assert m["pass@2"] == pytest.approx(1 / 4)
    assert m["mean@2"] == pytest.approx(1 / 4)
    assert m["tokens"] == {"input": 120, "output": 30}
    assert m["cost_usd"] == pytest.approx(0.014)
    assert m["models"] == {"scripted/agent": 6}
    # latencies ~0, ~0, ~.1, ~.1, ~.2, ~.2 s: p50 ~.1, p95 ~.2 (generous upper bounds)
    assert m["latency_s"]["samples"] == 6
    assert 0.1 <= m["latency_s"]["p50"] < 0.6
    assert 0.2 <= m["latency_s"]["p95"] < 0.7
    assert m["wall_time_s"] >= 0.2
    assert m["rollouts_per_s"] == pytest.approx(6 / m["wall_time_s"])
    assert "pass@2 0.2500  mean@2 0.2500  over 4 tasks" in result.stdout
    assert "mean reward 0.2500 over 8 attempted rollouts (a failure counts 0); 0.3333 over the 6" in result.stdout
    assert "tokens in 120  out 30  cost $0.014000" in result.stdout


@pytest.mark.e2e
def test_min_mean_reward_gate_sets_the_exit_code_and_names_the_gate(servers, tmp_path):
    rows = [
        {"id": f"{tmp_path.name}-0", "reward": 1.0},
        {"id": f"{tmp_path.name}-1", "reward": 0.5},
    ]
    inp = write_jsonl(tmp_path / "tasks.jsonl", rows)
    failed = collect(servers, inp, tmp_path / "a.jsonl", "+min_mean_reward=0.8")
    assert failed.returncode == 1
    assert "gate failed: mean reward (failures count 0) 0.7500 is below +min_mean_reward=0.8" in failed.stderr
    passed = collect(servers, inp, tmp_path / "b.jsonl", "+min_mean_reward=0.7")
    assert passed.returncode == 0, passed.stderr
    assert "gate failed" not in passed.stderr


@pytest.mark.e2e
def test_progress_lines_appear_periodically_when_stderr_is_not_a_terminal(servers, tmp_path):
    rows = [{"id": f"{tmp_path.name}-{i}", "sleep_s": 0.1} for i in range(8)]
    inp, out = write_jsonl(tmp_path / "tasks.jsonl", rows), tmp_path / "out.jsonl"
    result = collect(servers, inp, out, "+concurrency=1", "+progress_interval_s=0.1")
    assert result.returncode == 0, result.stderr
    pattern = re.compile(r"progress: (\d+)/8 done \((\d+) failed\), [\d.]+ rollouts/s, ETA (\d+ s|\?)")
    lines = [line for line in result.stderr.splitlines() if line.startswith("progress:")]
    assert len(lines) >= 3
    assert all(pattern.fullmatch(line) for line in lines), lines
    done = [int(pattern.fullmatch(line).group(1)) for line in lines]
    assert done == sorted(done) and done[-1] > done[0]
    assert "\r" not in result.stderr  # no progress bar redraws


# ---------------------------------------------------------------------- the engine, in process


class InProcessAgent:
    """Answers ``/run`` in process: each row's ``statuses`` are the errors of its first calls."""

    def __init__(self) -> None:
        self.in_flight = self.peak = 0
        self.calls: dict[int, int] = {}

    async def post(self, url: str, payload: dict) -> dict:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.005)
            n = self.calls[payload["id"]] = self.calls.get(payload["id"], 0) + 1
            statuses = payload.get("statuses", [])
            if n <= len(statuses):
                raise ServerError(f"POST {url} answered {statuses[n - 1]}", url=url, status=statuses[n - 1])
            return {**payload, "reward": 1.0}
        finally:
            self.in_flight -= 1

    async def get(self, url: str) -> dict:
        return {"status": "ok"}


def run_collector(
    tmp_path: Path,
    rows: list[dict],
    agent: InProcessAgent,
    max_in_flight: int | None = None,
    **opts,
) -> Collector:
    inp = write_jsonl(tmp_path / "tasks.jsonl", rows)
    options = CollectOptions(
        input_jsonl_fpath=str(inp), output_jsonl_fpath=str(tmp_path / "out.jsonl"), agent_name="a", **opts
    )

    async def main() -> Collector:
        progress = Progress(60.0, io.StringIO())
        collector = Collector(
            options, {"a": "http://agent"}, agent, asyncio.Event(), progress,
            restart_hint="", connections=max_in_flight,
        )  # fmt: skip
        collector.prepare_output(len(rows))
        await collector.run()
        return collector

    return asyncio.run(main())


def test_the_collector_hands_its_client_at_most_max_in_flight_requests(tmp_path):
    agent = InProcessAgent()
    collector = run_collector(tmp_path, [{"id": i} for i in range(20)], agent, 3, concurrency=8)
    assert agent.peak == 3
    assert collector.complete and collector.new_rollouts == 20
    assert pairs(read_rows(tmp_path / "out.jsonl")) == [(t, 0) for t in range(20)]


def test_timeouts_and_rate_limits_are_retried_but_other_4xx_answers_are_not(tmp_path, monkeypatch):
    monkeypatch.setattr(collector_module.random, "uniform", lambda a, b: 0.0)  # no backoff wait
    agent = InProcessAgent()
    rows = [
        {"id": 0, "statuses": [429, 408]},
        {"id": 1, "statuses": [404]},
        {"id": 2, "statuses": [503, 502, 500]},
    ]
    collector = run_collector(tmp_path, rows, agent, max_attempts=3)
    assert agent.calls == {0: 3, 1: 1, 2: 3}
    assert pairs(read_rows(tmp_path / "out.jsonl")) == [(0, 0)]
    attempts = {f["_ng_task_index"]: f["attempts"] for f in failures_of(tmp_path / "out.jsonl")}
    assert attempts == {1: 1, 2: 3}
    assert collector.complete and collector.failed == 2
