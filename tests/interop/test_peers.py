"""The peers themselves: the venvs, NeMo Gym's native pairings, its head server's contract.

These pass today; they prove the harness (and the reference upstream's counter policy) before
any cross-toolkit test is believed. docs/nemo_gym.md records what they show.
"""

from __future__ import annotations

import re
from pathlib import Path

from interop_harness import (
    NG_VENV,
    ROOT,
    SDK_VENV,
    NemoGymRun,
    Upstream,
    counter_rows,
    nemo_gym_collect,
    nemo_gym_site,
    read_jsonl,
    session_members,
    write_jsonl,
)

from support.procs import still_alive


def _locked(lock: str, package: str) -> str:
    text = (ROOT / "scripts" / lock).read_text()
    return re.search(rf"^{re.escape(package)}==(\S+)$", text, re.MULTILINE).group(1)


def _installed(venv: Path, package: str) -> str:
    import subprocess

    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([str(venv / "bin/python"), "-c", code], capture_output=True, text=True).stdout.strip()


def test_interop_venvs_hold_the_locked_versions() -> None:
    assert _installed(NG_VENV, "nemo-gym") == "0.2.1"
    assert _installed(NG_VENV, "openai") == _locked("interop-requirements-nemo-gym.txt", "openai") == "2.6.1"
    assert _installed(SDK_VENV, "openai") == _locked("interop-requirements-openai.txt", "openai")


def test_nemo_gym_ng_run_stops_without_leaving_a_process(emulator: Upstream, tmp_path: Path) -> None:
    """The harness's guarantee: ng_run, its servers and its Ray cluster all gone after stop()."""
    run = NemoGymRun(
        ["responses_api_models/openai_model/configs/openai_model.yaml"], emulator.base_url, emulator.model, tmp_path
    )
    try:
        (row,) = run.wait_ready()
        assert row["config_path"] == "policy_model"
        members = session_members(run.process.proc.pid)
        assert len(members) > 5, members  # ng_run, the model server, Ray's GCS, raylet, dashboard, ...
    finally:
        run.stop()
    assert still_alive(members, timeout=1.0) == []
    assert session_members(run.process.proc.pid) == []


def test_nemo_gym_head_server_serves_its_config_as_a_json_string_of_yaml(nemo_gym: NemoGymRun) -> None:
    import httpx

    raw = httpx.get(nemo_gym.head_url + "/global_config_dict_yaml", timeout=5)
    assert raw.headers["content-type"] == "application/json"
    assert isinstance(raw.json(), str)  # FastAPI returned the YAML text as a JSON string
    config = nemo_gym.global_config()
    agent = config["example_single_tool_call_simple_agent"]["responses_api_agents"]["simple_agent"]
    assert agent["host"] == "127.0.0.1" and isinstance(agent["port"], int)
    assert config["head_server"] == {"host": "127.0.0.1", "port": nemo_gym.head_port}
    # It hands out every value, secrets included (ours must not): the key is right there.
    assert config["policy_api_key"] == "sk-interop-dummy"
    rows = httpx.get(nemo_gym.head_url + "/server_instances", timeout=5).json()
    assert {r["config_path"] for r in rows} >= {"policy_model", "example_single_tool_call_simple_agent"}
    assert set(rows[0]) == {
        "config_path",
        "dir_path",
        "entrypoint",
        "host",
        "name",
        "pid",
        "port",
        "process_name",
        "server_type",
        "start_time",
        "status",
        "uptime_seconds",
        "url",
    }


def test_nemo_gym_native_pairing_completes_every_row(nemo_gym: NemoGymRun, tmp_path: Path) -> None:
    data = nemo_gym_site() / "resources_servers/example_single_tool_call/data/example.jsonl"
    out = tmp_path / "native.jsonl"
    proc = nemo_gym_collect(
        nemo_gym.head_url,
        "example_single_tool_call_simple_agent",
        data,
        out,
        "+num_repeats=2",
        "+num_samples_in_parallel=4",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_jsonl(out)
    assert len(rows) == 10
    assert {r["reward"] for r in rows} == {1.0}
    assert set(rows[0]) == {"responses_create_params", "response", "reward", "_ng_task_index", "_ng_rollout_index"}
    for suffix in ("_materialized_inputs.jsonl", "_reward_profiling.jsonl", "_agent_metrics.json"):
        assert (tmp_path / f"native{suffix}").is_file()


def test_nemo_gym_native_stateful_pairing_rewards_every_rollout_at_24_concurrent(
    nemo_gym: NemoGymRun, tmp_path: Path
) -> None:
    """The counter only adds up when the session cookie makes it from /seed_session through
    every tool call to /verify: reward 1.0 everywhere proves sessions and the scripted policy."""
    data = write_jsonl(tmp_path / "counter.jsonl", counter_rows(24))
    out = tmp_path / "native_counter.jsonl"
    proc = nemo_gym_collect(
        nemo_gym.head_url, "example_session_state_mgmt_simple_agent", data, out, "+num_samples_in_parallel=24"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_jsonl(out)
    assert len(rows) == 24 and {r["reward"] for r in rows} == {1.0}
    calls = [i["name"] for i in rows[0]["response"]["output"] if i["type"] == "function_call"]
    assert calls == ["increment_counter", "increment_counter", "get_counter_value"]


def test_nemo_gym_stateful_server_keys_state_on_its_session_cookie(nemo_gym: NemoGymRun) -> None:
    """The contract an agent must keep with NeMo Gym's resources servers: send back the cookie
    that /seed_session set on every tool call and on /verify. Without it each call is a new
    session and the reward is 0."""
    import httpx

    url = nemo_gym.url("example_session_state_mgmt_resources_server")
    cookie_name = "StatefulCounterResourcesServer___example_session_state_mgmt_resources_server"
    row = counter_rows(1)[0]  # add 1 then add 2, initial 0, expected 3
    response = {
        "id": "resp_x",
        "created_at": 0.0,
        "model": "m",
        "object": "response",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
    }

    def play(forward_cookies: bool) -> float:
        with httpx.Client(base_url=url, timeout=10) as client:
            seeded = client.post("/seed_session", json=row)
            assert seeded.status_code == 200
            assert cookie_name in seeded.headers["set-cookie"]
            assert "path=/; Max-Age=1209600; httponly; samesite=lax" in seeded.headers["set-cookie"]
            if not forward_cookies:
                client.cookies.clear()
            for count in (1, 2):
                tool = client.post("/increment_counter", json={"count": count})
                assert tool.json() == {"success": True}
                assert cookie_name in tool.headers["set-cookie"]  # re-sent on every response
                if not forward_cookies:
                    client.cookies.clear()
            verify = client.post("/verify", json={**row, "response": response})
            assert verify.status_code == 200, verify.text
            return verify.json()["reward"]

    assert play(forward_cookies=True) == 1.0
    assert play(forward_cookies=False) == 0.0
