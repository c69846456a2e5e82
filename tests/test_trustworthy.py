"""Trustworthy runs (issue 9): never the wrong servers, no silent typos, honest numbers,
bounded failure, one clear line for every usage error. Real processes, the offline stack."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from support.cli import BIN, ROOT, NgRun, run_cli
from support.emulator import emulated, stats
from support.procs import descendants, still_alive

pytestmark = pytest.mark.e2e

OFFLINE = "+config_paths=[configs/offline.yaml]"
AGENT = "+agent_name=simple_weather_simple_agent"
EXAMPLE = str(ROOT / "resources_servers/simple_weather/data/example.jsonl")
AGENT_KEY = "++simple_weather_simple_agent.responses_api_agents.simple_agent"
EMULATOR_KEY = "++provider_emulator.responses_api_models.provider_emulator"
MODEL_KEY = "++policy_model.responses_api_models.openai_model"


def rows_of(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def metrics_of(out: Path) -> dict:
    return orjson.loads(out.with_name(out.stem + "_metrics.json").read_bytes())


def collect(out: Path, *extra: str, cwd: Path = ROOT, inp: str = EXAMPLE, **kw) -> subprocess.CompletedProcess:
    return run_cli("ng_collect_rollouts", OFFLINE, AGENT, f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}",
                   *extra, cwd=cwd, **kw)  # fmt: skip


def one_line_usage_error(result: subprocess.CompletedProcess) -> str:
    """The run failed with exit code 2 and exactly one line on stderr, no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- 1. the right servers


def test_given_config_paths_the_collector_never_uses_a_running_head_server(tmp_path):
    other = NgRun()  # someone else's ng_run, its head server on the port we name
    try:
        other.wait_ready()
        out = tmp_path / "out.jsonl"
        result = collect(out, f"+head_server.port={other.head_port}", "+concurrency=5")
        assert result.returncode == 0, result.stderr
        served = httpx.get(other.url_of("provider_emulator") + "/emulator/stats").json()
        assert served["completions"] == 0  # not one of our rollouts went to their servers
    finally:
        other.stop()
    assert len(rows_of(out)) == 5
    assert metrics_of(out)["run"]["servers"] == "servers started for this run"


def test_without_config_paths_the_output_records_the_head_server_and_the_models_that_served(ng_run, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "ng_collect_rollouts", f"+head_server.port={ng_run.head_port}", AGENT,
        f"+input_jsonl_fpath={EXAMPLE}", f"+output_jsonl_fpath={out}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    m = metrics_of(out)
    assert m["run"]["servers"] == f"the ng_run head server at {ng_run.head_url}"
    assert m["models"] == {"emulator/scripted-tool-caller": 5}


# --------------------------------------------------------------------------- 2 and 12. no silent typos


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["+concurency=64"], "'concurency' (command line): unknown key; did you mean 'concurrency'?"),
        (["+ouput_jsonl_fpath=x.jsonl"], "unknown key; did you mean 'output_jsonl_fpath'?"),
        (["+unknown_cli_key=1"], "'unknown_cli_key' (command line): unknown key"),
        (["+a="], "'a' (command line): unknown key"),
        (["=x"], "is not an override"),
        (["~"], "is not an override"),
        (["+head_servr.port=1"], "did you mean 'head_server'?"),
        (["+head_server.port=abc"], "head_server.port must be a port number 0-65535"),
        (["+concurrency=1e9"], "+concurrency: Input should be a valid integer (got 1000000000.0)"),
        (["+agent_name=[1]"], "+agent_name: Input should be a valid string (got [1])"),
        (["+output_jsonl_fpath=/proc/x"], "cannot write the output '/proc/x'"),
        ([f"{AGENT_KEY}.max_step=3"], "simple_agent.max_step (command line): unknown key; did you mean 'max_steps'?"),
        ([f"{AGENT_KEY}.max_steps=[1,2]"], "simple_agent.max_steps (command line): Input should be a valid integer"),
        ([f"{MODEL_KEY}.openai_api_kye=x"], "openai_model.openai_api_kye (command line): unknown key; did you mean"),
        ([f"{EMULATOR_KEY}.fault_rate=true"], "provider_emulator.fault_rate (command line): Input should be a valid"),
        (["++simple_weather.resources_servers.simple_weather.port=true"], "port must be a port number"),
        (["++simple_weather.resources_servers.simple_weather.port=-1"], "port must be a port number"),
        (["++simple_weather.resources_servers.simple_weather.entrypoint=/etc/passwd"], "must be a .py file inside"),
    ],
)
def test_every_bad_key_or_value_is_one_line_naming_it_and_exit_code_2(tmp_path, args, expected):
    line = one_line_usage_error(collect(tmp_path / "out.jsonl", *args))
    assert expected in line
    assert not (tmp_path / "out.jsonl").exists()


def test_a_typo_in_a_config_file_names_the_file(tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("config_paths: [configs/offline.yaml]\nconcurency: 8\n")
    result = run_cli(
        "ng_collect_rollouts", f"+config_paths=[{config}]", AGENT, f"+input_jsonl_fpath={EXAMPLE}",
        f"+output_jsonl_fpath={tmp_path / 'out.jsonl'}", cwd=tmp_path,
    )  # fmt: skip
    assert "'concurency' (mine.yaml): unknown key; did you mean 'concurrency'?" in one_line_usage_error(result)


def test_ng_run_refuses_a_misspelled_server_key_in_one_line_with_exit_code_2():
    run = run_cli("ng_run", OFFLINE, "+head_server.port=0", f"{AGENT_KEY}.max_step=3", timeout=60)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "unknown key; did you mean 'max_steps'?" in run.stderr and "Traceback" not in run.stderr


# --------------------------------------------------------------------------- 5. offline stays offline; resume


def test_the_offline_config_stays_offline_whatever_env_yaml_says(tmp_path):
    (tmp_path / "env.yaml").write_text(
        "policy_base_url: https://openrouter.ai/api/v1\npolicy_api_key: sk-or-v1-a-real-looking-key\n"
        "policy_model_name: anthropic/claude-3.5-sonnet\n"
    )
    out = tmp_path / "out.jsonl"
    result = collect(out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {r["response"]["model"] for r in rows_of(out)} == {"emulator/scripted-tool-caller"}
    assert "sk-or-v1-a-real-looking-key" not in result.stdout + result.stderr + out.read_text()


def test_resuming_with_another_model_is_refused_naming_what_differs(tmp_path):
    out = tmp_path / "out.jsonl"
    assert collect(out, "+limit=2").returncode == 0
    line = one_line_usage_error(collect(out, "+limit=2", "+resume=true", "+emulator_model=openai/gpt-4o-mini"))
    assert "cannot resume" in line
    assert "requested_model: 'emulator/scripted-tool-caller' then, 'openai/gpt-4o-mini' now" in line
    assert len(rows_of(out)) == 2  # untouched


def test_resuming_with_another_input_is_refused(tmp_path):
    out, other = tmp_path / "out.jsonl", tmp_path / "other.jsonl"
    assert collect(out, "+limit=2").returncode == 0
    other.write_text(Path(EXAMPLE).read_text().replace("London", "Lisbon"))
    line = one_line_usage_error(collect(out, "+limit=2", "+resume=true", inp=str(other)))
    assert "input_sha256:" in line


# --------------------------------------------------------------------------- 6. say it once, clearly


def test_rows_with_tools_the_server_lacks_fail_with_one_clear_line(tmp_path):
    rows = [json.loads(line) for line in Path(EXAMPLE).read_text().splitlines()]
    for row in rows[:3]:
        row["responses_create_params"]["tools"][0]["name"] = "get_forecast"
    inp, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    result = collect(out, "+max_failures=3", inp=str(inp))
    assert result.returncode == 0, result.stderr
    mentions = [line for line in result.stderr.splitlines() if "get_forecast" in line]
    assert len(mentions) == 1 and "does not serve" in mentions[0]
    assert metrics_of(out)["failure_types"] == {"unknown_tools": 3}
    assert len(rows_of(out)) == 2


def test_a_missing_agent_name_with_several_agents_is_one_error_listing_them(tmp_path):
    fixtures = ROOT / "tests" / "fixtures"
    inp = write_jsonl(tmp_path / "in.jsonl", [{"id": i} for i in range(50)])
    result = run_cli(
        "ng_collect_rollouts", "+config_paths=[scripted_agents.yaml]", f"+input_jsonl_fpath={inp}",
        f"+output_jsonl_fpath={tmp_path / 'out.jsonl'}", cwd=fixtures,
    )  # fmt: skip
    assert "+agent_name=... is required" in one_line_usage_error(result)
    assert "scripted_agent, scripted_agent_b" in result.stderr


# --------------------------------------------------------------------------- 7. a provider that is down


def test_a_provider_that_keeps_failing_stops_the_run_early_and_it_resumes_later(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(Path(EXAMPLE).read_text() * 20)  # 100 tasks
    out = tmp_path / "out.jsonl"
    down = [f"{EMULATOR_KEY}.fault_rate=1.0", f"{EMULATOR_KEY}.fault_kinds=[503]",
            f"{MODEL_KEY}.backoff_base_s=0.01", f"{MODEL_KEY}.max_attempts=2"]  # fmt: skip
    result = collect(out, *down, "+circuit_breaker=10", "+concurrency=2", "+max_failures=1000", inp=str(inp))
    assert result.returncode == 1, result.stderr
    assert "the model provider keeps failing: the last 10 rollouts failed because of it" in result.stderr
    m = metrics_of(out)
    assert m["status"] == "stopped" and m["failed"] < 20  # not 100 rollouts x 3 attempts x 2 calls
    resumed = collect(out, "+resume=true", "+concurrency=5", inp=str(inp))
    assert resumed.returncode == 0, resumed.stderr
    assert len(rows_of(out)) == 100


# --------------------------------------------------------------------------- 9 and 10. limits


def _low_limit(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


def test_a_low_open_file_limit_queues_rollouts_instead_of_failing_them(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(Path(EXAMPLE).read_text() * 120)  # 600 tasks
    out = tmp_path / "out.jsonl"
    args = [OFFLINE, AGENT, f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}", "+concurrency=2048"]
    result = subprocess.run([str(BIN / "ng_collect_rollouts"), *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL, preexec_fn=_low_limit(1024))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the open-file limit (1024) allows" in result.stderr
    assert metrics_of(out)["succeeded"] == 600


def test_an_open_file_limit_too_low_to_run_says_how_to_raise_it(tmp_path):
    args = [OFFLINE, AGENT, f"+input_jsonl_fpath={EXAMPLE}", f"+output_jsonl_fpath={tmp_path / 'o.jsonl'}"]
    result = subprocess.run([str(BIN / "ng_collect_rollouts"), *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, stdin=subprocess.DEVNULL, preexec_fn=_low_limit(90))  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "ulimit -n 65536" in result.stderr and "Traceback" not in result.stderr


def test_a_huge_concurrency_on_a_small_input_starts_only_the_workers_it_needs(tmp_path):
    out = tmp_path / "out.jsonl"
    result = collect(out, "+concurrency=100000")
    assert result.returncode == 0, result.stderr
    assert len(rows_of(out)) == 5
    # 5 workers, not 100,000 (which held 169 MB at 4481a8c, against 64 MB now)
    assert metrics_of(out)["concurrency"] == {"requested": 100000, "workers": 5}


# --------------------------------------------------------------------------- 13. dead dependencies


def test_a_dead_provider_emulator_is_one_line_and_the_run_ends_at_once(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(Path(EXAMPLE).read_text() * 400)
    out = tmp_path / "out.jsonl"
    slow = f"{EMULATOR_KEY}.latency_ms=20"
    proc = subprocess.Popen(
        [str(BIN / "ng_collect_rollouts"), OFFLINE, AGENT, f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}",
         "+concurrency=4", slow],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    seen: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.read_bytes().count(b"\n") >= 10):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        seen = descendants(proc.pid)
        kill_instance(proc.pid, "provider_emulator")
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1
    assert stderr.count("Traceback") == 0
    assert "server 'provider_emulator'" in stderr and "+resume=true" in stderr
    assert len(stderr.splitlines()) < 40, stderr
    assert still_alive(seen) == []


def kill_instance(parent: int, name: str) -> None:
    """SIGKILL the server instance ``name`` among ``parent``'s descendants (found by asking
    each listening port's ``/health`` who it is)."""
    for pid in descendants(parent):
        for port in _listening_ports(pid):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()
            except (httpx.HTTPError, ValueError):
                continue
            if health.get("name") == name:
                os.kill(pid, signal.SIGKILL)
                return
    raise AssertionError(f"no instance {name!r} among the descendants of {parent}")


def _listening_ports(pid: int) -> list[int]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = str(fd.readlink()) if fd.is_symlink() else ""
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    ports = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
            ports.append(int(fields[1].split(":")[1], 16))
    return ports


def test_a_run_ends_within_moments_of_its_last_row(tmp_path):
    out = tmp_path / "out.jsonl"
    result = collect(out, "+concurrency=5")
    ended = time.time()
    assert result.returncode == 0, result.stderr
    # From the last row written to the process's exit (writing the summaries, stopping four
    # servers): generous, but far from the ~7 s this took when servers waited for idle
    # keep-alive connections. Start-up is not counted: it is what a loaded machine stretches.
    after = ended - out.stat().st_mtime
    assert after < 5.0, after


def test_resuming_with_another_agent_config_is_refused(tmp_path):
    out = tmp_path / "out.jsonl"
    assert collect(out, "+limit=2").returncode == 0
    line = one_line_usage_error(collect(out, "+limit=2", "+resume=true", f"{AGENT_KEY}.max_steps=2"))
    assert "config_sha256:" in line


# --------------------------------------------------------------------------- honest numbers under faults


def test_under_30_percent_faults_the_metrics_cost_is_what_the_emulator_billed_minus_what_it_cannot_read(tmp_path):
    """Rate limits, 5xx, errors in a 200, timeouts and malformed bodies on 30% of the calls:
    every rollout completes; each fault is one upstream retry, reported by kind; the metrics'
    cost equals the emulator's bill except for the malformed answers, which were billed but
    carry no readable cost: they are counted in ``unpriced_upstream_calls`` instead."""
    out = tmp_path / "out.jsonl"
    faults = [429, 500, 502, 503, "error_200", "stall", "malformed"]
    with emulated(fault_rate=0.3, fault_kinds=faults, fault_seed=7, retry_after_seconds=0.05, stall_seconds=60) as url:
        result = run_cli(
            "ng_collect_rollouts",
            "+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml,"
            "resources_servers/simple_weather/configs/simple_weather.yaml]",
            f"+policy_base_url={url}/api/v1", "+policy_api_key=sk-or-v1-anything",
            "+policy_model_name=emulator/scripted-tool-caller", AGENT, f"+input_jsonl_fpath={EXAMPLE}",
            f"+output_jsonl_fpath={out}", "+num_repeats=8", "+concurrency=8",
            f"{MODEL_KEY}.read_timeout_s=0.5", f"{MODEL_KEY}.backoff_base_s=0.02", f"{MODEL_KEY}.backoff_max_s=0.1",
            f"{MODEL_KEY}.max_attempts=10",
        )  # fmt: skip
        deadline = time.monotonic() + 10  # a hang-up reaches the emulator a moment after the client moved on
        while (billed := stats(url))["cancelled"] < billed["faults"].get("stall", 0) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert result.returncode == 0, result.stderr
    m = metrics_of(out)
    assert (m["succeeded"], m["failed"]) == (40, 0)

    f = billed["faults"]
    assert sum(f.values()) >= 15 and all(f.get(kind) for kind in ("429", "error_200", "stall", "malformed")), f
    assert billed["cancelled"] == f["stall"]  # every timed-out call was hung up on, so never billed
    assert m["retries"]["upstream"] == {
        "rate_limit": f["429"],
        "server": sum(f.get(kind, 0) for kind in ("500", "502", "503", "error_200")),
        "timeout": f["stall"],
        "bad_response": f["malformed"],
    }
    # Upstream calls: one per answer read, one per retry (no rollout ran out of attempts).
    answered = billed["completions"] - f["malformed"]
    assert billed["completion_requests"] == answered + sum(m["retries"]["upstream"].values())
    assert m["cost"]["unpriced_upstream_calls"] == f["malformed"]
    unreadable = billed["cost_by_fault"]["malformed"]
    assert 0 < unreadable < billed["cost"]
    assert m["cost_usd"] == pytest.approx(billed["cost"] - unreadable, rel=1e-9, abs=1e-12)
    assert "upstream answers were billed without a readable cost" in result.stdout


# --------------------------------------------------------------------------- budgets (issue 11)


def test_max_cost_usd_stops_within_one_in_flight_batch_of_the_limit_and_resume_completes(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text(Path(EXAMPLE).read_text() * 40)  # 200 tasks
    out = tmp_path / "out.jsonl"
    limit, concurrency = 0.001, 4
    result = collect(out, f"+max_cost_usd={limit}", f"+concurrency={concurrency}", inp=str(inp))
    assert result.returncode == 1, result.stderr
    assert "the budget is spent" in result.stderr and "+resume=true" in result.stderr
    m = metrics_of(out)
    assert m["status"] == "stopped"
    per_rollout = max(r["response"]["usage"]["cost"] for r in rows_of(out))
    assert limit - per_rollout <= m["cost_usd"] <= limit + concurrency * per_rollout
    assert m["succeeded"] < 200
    resumed = collect(out, "+resume=true", "+max_cost_usd=1", f"+concurrency={concurrency}", inp=str(inp))
    assert resumed.returncode == 0, resumed.stderr
    assert (
        len(rows_of(out)) == 200 and len({(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows_of(out)}) == 200
    )


def test_a_dry_run_estimates_each_variant_from_a_pilot_and_writes_no_output(tmp_path):
    out = tmp_path / "sweep.jsonl"
    result = collect(
        out,
        "+dry_run=true",
        "+dry_run_rows=2",
        "+num_repeats=4",
        "+models=[emulator/scripted-tool-caller,anthropic/claude-3.5-sonnet]",
    )
    assert result.returncode == 0, result.stderr
    assert "emulator__scripted-tool-caller" in result.stdout and "anthropic__claude-3.5-sonnet" in result.stdout
    assert "ROLLOUTS" in result.stdout and " 20 " in result.stdout  # 5 tasks x 4 repeats
    assert not out.exists() and not out.with_suffix("").exists()
    assert sorted(p.name for p in (tmp_path / "sweep_dry_run").glob("*.jsonl")) == [
        "anthropic__claude-3.5-sonnet.jsonl",
        "emulator__scripted-tool-caller.jsonl",
    ]
