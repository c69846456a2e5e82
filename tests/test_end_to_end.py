"""ng_run + ng_collect_rollouts as real processes, real servers, the real emulator."""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import orjson
import pytest

from support.cli import ROOT, NgRun, run_cli
from support.ports import held_port, refusing_port
from support.procs import descendants, still_alive

pytestmark = pytest.mark.e2e

EXAMPLE = "resources_servers/simple_weather/data/example.jsonl"
AGENT = "simple_weather_simple_agent"


def read_rows(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_ng_run_serves_all_instances_and_collects_the_example_rollouts(ng_run, tmp_path):
    out = tmp_path / "rollouts.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        f"+head_server.port={ng_run.head_port}",
        f"+agent_name={AGENT}",
        f"+input_jsonl_fpath={EXAMPLE}",
        f"+output_jsonl_fpath={out}",
        "+concurrency=3",
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 5
    assert sorted(r["_ng_task_index"] for r in rows) == [0, 1, 2, 3, 4]
    for row in rows:
        assert row["reward"] == 1.0
        types = [item["type"] for item in row["response"]["output"]]
        assert types == ["function_call", "function_call_output", "message"]
        assert row["response"]["output"][0]["name"] == "get_weather"
        assert orjson.loads(row["response"]["output"][0]["arguments"])["city"] == row["expected_city"]
    metrics = orjson.loads((tmp_path / "rollouts_metrics.json").read_bytes())
    assert metrics["succeeded"] == 5 and metrics["metrics"]["reward"]["mean"] == 1.0
    assert "reward" in result.stdout


def test_head_server_lists_instances_without_secrets(ng_run):

    body = httpx.get(ng_run.head_url + "/instances").text
    rows = orjson.loads(body)["instances"]
    assert {r["name"] for r in rows} == {
        "policy_model",
        "simple_weather",
        AGENT,
        "provider_emulator",
    }
    assert all(r["pid"] and r["url"].startswith("http://127.0.0.1:") for r in rows)
    assert "sk-or-emulator-offline-key" not in body


def test_ctrl_c_stops_ng_run_and_every_child_within_seconds():
    run = NgRun()
    try:
        run.wait_ready()
        children = descendants(run.proc.pid)
        assert len(children) >= 4
        started = time.monotonic()
        code = run.stop(signal.SIGINT)
        assert time.monotonic() - started < 8
        assert code == 0
        assert still_alive(children) == []
    finally:
        run.stop()


def spawned(run: NgRun, timeout: float = 60.0) -> list[dict]:
    """The head server's instance rows once every server is spawned (each row has a pid)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            assert run.proc.poll() is None, run.proc.stdout.read()
            try:
                rows = client.get(run.head_url + "/instances").json()["instances"]
                if rows and all(r["pid"] for r in rows):
                    return rows
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.01)
    raise AssertionError("ng_run's head server did not list its servers")


def test_ctrl_c_during_start_up_leaves_no_server_behind():
    # The policy model's start-up check waits (up to a minute) for an upstream that refuses
    # connections: ng_run is still starting up, whenever the Ctrl-C lands.
    model = "++policy_model.responses_api_models.openai_model"
    with refusing_port() as refused:
        run = NgRun(f"{model}.openai_base_url=http://127.0.0.1:{refused}/api/v1", f"{model}.preflight_timeout_s=60")
        try:
            rows = spawned(run)
            children = descendants(run.proc.pid)
            assert "policy_model" in [r["name"] for r in rows if not r["ready"]]
            run.proc.send_signal(signal.SIGINT)
            run.proc.wait(15)
            assert still_alive(children + descendants(run.proc.pid)) == []
        finally:
            run.stop()


def test_a_dying_server_stops_ng_run_with_its_last_output():
    run = NgRun()
    try:
        rows = run.wait_ready()
        victim = next(r for r in rows if r["name"] == "simple_weather")
        import os

        os.kill(victim["pid"], signal.SIGKILL)
        code = run.proc.wait(15)
        output = run.proc.stdout.read()
        assert code != 0
        assert "simple_weather" in output and "exited" in output
    finally:
        run.stop()


def test_collect_200_of_a_generated_set_at_concurrency_50_writes_200_distinct_rows(ng_run, tmp_path):
    data = tmp_path / "tasks.jsonl"
    gen = subprocess.run(
        [
            ".venv/bin/python" if (ROOT / ".venv").exists() else "python",
            "resources_servers/simple_weather/generate_tasks.py",
            "-n",
            "1000",
            "--out",
            str(data),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert gen.returncode == 0, gen.stderr
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "ng_collect_rollouts",
        f"+head_server.port={ng_run.head_port}",
        f"+agent_name={AGENT}",
        f"+input_jsonl_fpath={data}",
        f"+output_jsonl_fpath={out}",
        "+limit=200",
        "+concurrency=50",
    )
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert len(rows) == 200
    assert len({(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows}) == 200
    assert sum(r["reward"] for r in rows) == 200


def test_one_command_mode_starts_and_stops_the_servers(tmp_path):
    out = tmp_path / "one.jsonl"
    head = held_port()  # nothing listens here: the collector starts the servers itself
    head_port = head.port
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/ng_collect_rollouts")
            if (ROOT / ".venv/bin/ng_collect_rollouts").exists()
            else "ng_collect_rollouts",
            "+config_paths=[configs/offline.yaml]",
            f"+head_server.port={head_port}",
            f"+agent_name={AGENT}",
            f"+input_jsonl_fpath={EXAMPLE}",
            f"+output_jsonl_fpath={out}",
            "+num_repeats=2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    while proc.poll() is None:
        seen.update(descendants(proc.pid))
        time.sleep(0.05)
    stdout, stderr = proc.communicate()
    head.release()
    assert proc.returncode == 0, stderr
    assert len(read_rows(out)) == 10
    assert "pass@2 1.0000" in stdout
    assert len(seen) >= 4
    assert still_alive(seen) == []


def test_collect_without_servers_fails_fast_naming_the_head_server(tmp_path):
    with refusing_port() as port:
        started = time.monotonic()
        result = run_cli(
            "ng_collect_rollouts",
            f"+head_server.port={port}",
            f"+agent_name={AGENT}",
            f"+input_jsonl_fpath={EXAMPLE}",
            f"+output_jsonl_fpath={tmp_path / 'x.jsonl'}",
        )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "ng_run" in result.stderr
    assert time.monotonic() - started < 20


def test_a_killed_ng_run_takes_every_server_with_it():
    run = NgRun()
    try:
        run.wait_ready()
        family = descendants(run.proc.pid)
        assert len(family) >= 4
        run.proc.kill()  # SIGKILL: no chance to clean up; the kernel must do it
        run.proc.wait(5)
        assert still_alive(family, timeout=10) == []
    finally:
        run.stop()
