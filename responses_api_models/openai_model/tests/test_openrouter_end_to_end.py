"""ng_run + ng_collect_rollouts as real processes against the real emulator with faults: every
rollout completes, retries are logged, costs add up, the key shows up nowhere; a rejected key
stops the servers at start-up with the message. The key is the adapter's: the offline config
does not read policy_api_key (env.yaml must not take it online)."""

from __future__ import annotations

import re
import secrets

import httpx
import orjson
import pytest

from support.cli import NgRun, run_cli

pytestmark = pytest.mark.e2e

EXAMPLE = "resources_servers/simple_weather/data/example.jsonl"
AGENT = "simple_weather_simple_agent"
EMULATOR = "++provider_emulator.responses_api_models.provider_emulator"
ADAPTER = "++policy_model.responses_api_models.openai_model"


def distinctive_key() -> str:
    return f"sk-or-v1-LEAKCHECK{secrets.token_hex(8)}"


def test_a_run_with_30_percent_upstream_faults_completes_every_rollout_and_costs_add_up(
    tmp_path,
) -> None:
    key = distinctive_key()
    run = NgRun(
        f"{ADAPTER}.openai_api_key={key}",
        f"{EMULATOR}.fault_rate=0.3",
        f"{EMULATOR}.fault_kinds=[429,429_bare,500,502,503,529,error_200]",
        f"{EMULATOR}.fault_seed=4",
        f"{EMULATOR}.retry_after_seconds=0.05",
        f"{ADAPTER}.backoff_base_s=0.02",
        f"{ADAPTER}.backoff_max_s=0.2",
        f"{ADAPTER}.max_attempts=10",
    )
    out = tmp_path / "rollouts.jsonl"
    try:
        instances = run.wait_ready()
        emulator_url = next(r["url"] for r in instances if r["name"] == "provider_emulator")
        collect = run_cli(
            "ng_collect_rollouts",
            f"+head_server.port={run.head_port}",
            f"+agent_name={AGENT}",
            f"+input_jsonl_fpath={EXAMPLE}",
            f"+output_jsonl_fpath={out}",
            "+num_repeats=8",
            "+concurrency=8",
        )
        stats = httpx.get(emulator_url + "/emulator/stats").json()
        head_body = httpx.get(run.head_url + "/instances").text
    finally:
        run.stop()
    server_log = run.proc.stdout.read()
    assert collect.returncode == 0, collect.stderr

    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert len(rows) == 40
    assert sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows) == [
        (t, k) for t in range(5) for k in range(8)
    ]
    for row in rows:
        assert row["reward"] == 1.0
        response = row["response"]
        assert response["model"] == "emulator/scripted-tool-caller" and response["provider"] == "Emulator"
        assert [item["type"] for item in response["output"]] == [
            "function_call",
            "function_call_output",
            "message",
        ]
        assert response["usage"]["cost"] > 0

    # Faults happened (errors in 200 bodies too), each was retried and counted in its row's
    # usage; the log has the first retry of each kind in full, the rest in summary lines.
    faults = sum(stats["faults"].values())
    assert faults >= 10 and stats["faults"].get("error_200"), stats
    assert stats["completion_requests"] == stats["completions"] + faults
    counted: dict[str, int] = {}
    for row in rows:
        for kind, n in row["response"]["usage"]["retries"].items():
            counted[kind] = counted.get(kind, 0) + n
    assert sum(counted.values()) == faults and set(counted) == {"rate_limit", "server"}
    full = re.findall(r"attempt (\d+)/10 failed \((\w+)\)", server_log)
    assert sorted(reason for _, reason in full) == ["rate_limit", "server"]  # once per kind in a minute
    # The rest are counted, not logged: a stopping server's summary line is not shown
    # (ng_run hides what servers say while being stopped); the metrics file has every retry.

    # The summary carries what the emulator billed: same tokens, same cost, who served.
    metrics = orjson.loads((tmp_path / "rollouts_metrics.json").read_bytes())
    assert metrics["succeeded"] == 40 and metrics["failed"] == 0
    assert metrics["retries"]["upstream"] == counted
    assert metrics["tokens"] == {
        "input": stats["prompt_tokens"],
        "output": stats["completion_tokens"],
    }
    assert abs(metrics["cost_usd"] - stats["cost"]) < 1e-10
    assert round(stats["cost"], 10) == metrics["cost_usd"]
    assert metrics["models"] == {"emulator/scripted-tool-caller": 40}
    assert metrics["providers"] == {"Emulator": 40}
    assert f"cost ${stats['cost']:.6f}" in collect.stdout

    # The key is in no log line, output, file or response of ours.
    files = [p.read_text() for p in tmp_path.iterdir()]
    for text in (server_log, collect.stdout, collect.stderr, head_body, *files):
        assert key not in text


def test_a_rejected_key_stops_ng_run_at_start_up_with_the_message() -> None:
    key = distinctive_key()
    run = NgRun(f"{ADAPTER}.openai_api_key={key}", f"{EMULATOR}.reject_keys={{{key}:401}}")
    try:
        code = run.proc.wait(60)
        output = run.proc.stdout.read()
    finally:
        run.stop()
    assert code == 1
    assert (
        "error: server 'policy_model' could not start: start-up check failed: the API key was rejected: "
        "set policy_api_key in env.yaml" in output
    )
    assert "Traceback" not in output
    assert key not in output


def test_no_http_answer_of_any_server_of_ours_carries_the_key() -> None:
    """A real key-like value, asked for through every route of the stack: the head server's
    (ours and NeMo Gym's), each server's health, the model server's models and errors, the
    agent's errors, the emulator's catalogue, key info and stats."""
    key = distinctive_key()
    run = NgRun(f"{ADAPTER}.openai_api_key={key}")
    try:
        instances = {r["name"]: r["url"] for r in run.wait_ready()}
        bodies = [httpx.get(run.head_url + path, timeout=10).text for path in HEAD_ROUTES]
        bodies += [httpx.get(url + "/health", timeout=10).text for url in instances.values()]
        model, emulator = instances["policy_model"], instances["provider_emulator"]
        bodies += [
            httpx.get(model + "/v1/models", timeout=10).text,
            httpx.post(model + "/v1/responses", json={"input": []}, timeout=10).text,  # a 400
            httpx.post(model + "/v1/responses", json={"input": "hi", "stream": True}, timeout=10).text,
            httpx.post(instances["simple_weather_simple_agent"] + "/run", json={"responses_create_params": 1}).text,
            httpx.get(emulator + "/api/v1/models", timeout=10).text,
            httpx.get(emulator + "/api/v1/key", headers={"Authorization": f"Bearer {key}"}, timeout=10).text,
            httpx.get(emulator + "/emulator/stats", timeout=10).text,
        ]
    finally:
        run.stop()
    assert len(bodies) == len(HEAD_ROUTES) + 4 + 7
    for body in bodies:
        assert key not in body and key[-12:] not in body


HEAD_ROUTES = ("/instances", "/server_instances", "/global_config_dict_yaml", "/health")
