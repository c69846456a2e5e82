"""NeMo Gym 0.7.0 and us, both ways (issue 16): collectors, agents, ``gym eval`` tools.

Everything runs as real processes on free loopback ports: 0.7's ``ng_run`` (its Ray cluster
included) on its own example_single_tool_call config, its openai_model pointed at our
provider emulator; our offline ``ng_run``; single servers of either toolkit wired to the
other's. Acceptance: all rows, and rewards equal to the native pairing's (mean 1.0 where
the emulator plays the task right). 0.7's collector and ``gym eval`` tools work on our
side through our head server's environment-server entries, ``POST /aggregate_metrics`` on
our agents and our collector's ``<stem>_aggregate_metrics.json``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_harness import (
    NG07_VENV,
    ROOT,
    NemoGymServer,
    OurServer,
    nemo_gym_instance,
    our_collect,
    post_rows,
    read_jsonl,
    rewards_by_task,
)
from ng07_harness import NemoGym07Run, failed, gym07, gym07_collect, ng07_site

from support.cli import NgRun

WEATHER = ROOT / "resources_servers/simple_weather/data/example.jsonl"
OUR_AGENT = "simple_weather_simple_agent"
THEIR_AGENT = "example_single_tool_call_simple_agent"
THEIR_RS = "example_single_tool_call"
CONCURRENCY = 20

#: Why the marked tests fail today (each was run and failed for exactly this reason).


def _their_data() -> Path:
    return ng07_site() / f"resources_servers/{THEIR_RS}/data/example.jsonl"


def _rewards(results: list[tuple[int, object]]) -> list[float | None]:
    return [body.get("reward") if status == 200 and isinstance(body, dict) else None for status, body in results]


def test_nemo_gym07_venv_holds_the_locked_versions_on_python_313() -> None:
    """The lock is what runs (Python 3.13.x below 0.7.0's declared >=3.13.14: a test deviation)."""
    import re
    import subprocess

    code = "import sys, importlib.metadata as m\n"
    code += "print(m.version('nemo-gym'), m.version('openai'), sys.version_info[:2])"
    out = subprocess.run([str(NG07_VENV / "bin/python"), "-c", code], capture_output=True, text=True, check=True)
    lock = (ROOT / "scripts/interop-requirements-nemo-gym07.txt").read_text()
    locked_openai = re.search(r"^openai==(\S+)$", lock, re.MULTILINE).group(1)
    assert out.stdout.split(None, 2) == ["0.7.0", locked_openai, "(3, 13)\n"]
    assert re.search(r"^nemo-gym==0\.7\.0$", lock, re.MULTILINE)


# --------------------------------------------------------------------------- collectors


def test_nemo_gym07_native_collection_completes_every_row(nemo_gym07: NemoGym07Run, tmp_path: Path) -> None:
    """The harness first: 0.7's own collector on its own stack, 0.7's row stamps included."""
    out = tmp_path / "native.jsonl"
    proc = gym07_collect(nemo_gym07.head_url, THEIR_AGENT, _their_data(), out, "--num-repeats", "2")
    assert proc.returncode == 0, failed(proc)
    rows = read_jsonl(out)
    assert len(rows) == 10 and {r["reward"] for r in rows} == {1.0}
    assert {r["_ng_environment_server"] for r in rows} == {f"{THEIR_RS}_environment_server"}
    assert {r["_ng_result_type"] for r in rows} == {"legacy_agent"}
    assert {r["agent_ref"]["name"] for r in rows} == {THEIR_AGENT}
    (entry,) = json.loads((tmp_path / "native_aggregate_metrics.json").read_text())
    assert entry["agent_metrics"]["mean/reward"] == 1.0


def test_our_collector_completes_every_row_against_nemo_gym07_ng_run(nemo_gym07: NemoGym07Run, tmp_path: Path) -> None:
    native_out = tmp_path / "native.jsonl"
    proc = gym07_collect(nemo_gym07.head_url, THEIR_AGENT, _their_data(), native_out, "--num-repeats", "2")
    assert proc.returncode == 0, failed(proc)
    out = tmp_path / "ours_on_theirs.jsonl"
    proc = our_collect(
        f"+head_server.port={nemo_gym07.head_port}",
        f"+agent_name={THEIR_AGENT}",
        f"+input_jsonl_fpath={_their_data()}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=2",
    )
    assert proc.returncode == 0, failed(proc)
    rows = read_jsonl(out)
    native = read_jsonl(native_out)
    assert len(rows) == len(native) == 10
    assert rewards_by_task(rows) == rewards_by_task(native)
    assert {r["reward"] for r in rows} == {1.0}


def _our_run(ours: NgRun, out: Path, *extra: str) -> dict:
    proc = our_collect(
        f"+head_server.port={ours.head_port}",
        f"+agent_name={OUR_AGENT}",
        f"+input_jsonl_fpath={WEATHER}",
        f"+output_jsonl_fpath={out}",
        *extra,
    )
    assert proc.returncode == 0, failed(proc)
    return json.loads(out.with_name(out.stem + "_metrics.json").read_text())


def test_nemo_gym07_collector_completes_every_row_against_our_ng_run(ours: NgRun, tmp_path: Path) -> None:
    out = tmp_path / "theirs_on_ours.jsonl"
    proc = gym07_collect(ours.head_url, OUR_AGENT, WEATHER, out, "--num-repeats", "2", "--concurrency", "4")
    assert proc.returncode == 0, failed(proc)
    rows = read_jsonl(out)
    assert len(rows) == 2 * len(read_jsonl(WEATHER))
    assert sum(r["reward"] for r in rows) / len(rows) == 1.0
    (entry,) = json.loads((tmp_path / "theirs_on_ours_aggregate_metrics.json").read_text())
    assert entry["agent_ref"] == {"name": OUR_AGENT}
    assert entry["agent_metrics"]["mean/reward"] == 1.0


def test_nemo_gym07_aggregate_against_our_head_gives_our_metrics(ours: NgRun, tmp_path: Path) -> None:
    out = tmp_path / "ours.jsonl"
    metrics = _our_run(ours, out, "+num_repeats=2")
    merged = tmp_path / "merged" / "merged.jsonl"
    proc = gym07(
        "eval",
        "aggregate",
        "--input-glob",
        str(out),
        "--output",
        str(merged),
        "--no-health-check",
        "+head_server.host=127.0.0.1",
        f"+head_server.port={ours.head_port}",
        cwd=tmp_path / "cwd",
    )
    assert proc.returncode == 0, failed(proc)
    entries = json.loads(merged.with_name("merged_aggregate_metrics.json").read_text())
    assert [e["agent_ref"]["name"] for e in entries] == [OUR_AGENT]
    (entry,) = entries
    assert entry["agent_metrics"]["mean/reward"] == pytest.approx(metrics["reward"]["mean"])
    assert sum(g["num_rollouts"] for g in entry["group_level_metrics"]) == metrics["rollouts"] == 10
    assert len(entry["group_level_metrics"]) == metrics["tasks"] == 5
    assert entry["agent_metrics"]["num_repeats"] == 2


def test_nemo_gym07_compare_reads_two_of_our_runs(ours: NgRun, tmp_path: Path) -> None:
    baseline, candidate = tmp_path / "a" / "baseline.jsonl", tmp_path / "b" / "candidate.jsonl"
    for out in (baseline, candidate):
        out.parent.mkdir()
        _our_run(ours, out, "+num_repeats=2")
    report_dir = tmp_path / "report"
    proc = gym07(
        "eval",
        "compare",
        "--baseline",
        str(baseline),
        "--candidates",
        str(candidate),
        "-o",
        str(report_dir),
        cwd=tmp_path / "cwd",
    )
    assert proc.returncode == 0, failed(proc)
    report = json.loads((report_dir / "compare_report.json").read_text())
    (comparison,) = report["comparisons"]
    assert comparison["baseline_agent"] == OUR_AGENT
    reward = next(m for m in comparison["metrics"] if m["metric"] == "mean/reward")
    assert reward["baseline"]["value"] == reward["candidates"][0]["value"] == 1.0


# --------------------------------------------------------------------------- agents


@pytest.fixture(scope="module")
def our_urls(ours: NgRun) -> dict[str, str]:
    return {r["name"]: r["url"] for r in ours.wait_ready()}


@pytest.fixture(scope="module")
def nemo_gym07_agent_on_ours(our_urls: dict[str, str], interop_tmp: Path) -> Iterator[NemoGymServer]:
    """0.7's simple_agent (``ray_enabled = False``: no Ray) whose resources server is our
    simple_weather and whose model server is our policy_model."""
    instances = {
        **nemo_gym_instance(
            "ng07_agent_on_ours",
            "responses_api_agents",
            "simple_agent",
            "http://127.0.0.1:1",  # replaced by NemoGymServer with its own free port
            resources_server={"type": "resources_servers", "name": "simple_weather"},
            model_server={"type": "responses_api_models", "name": "policy_model"},
        ),
        **nemo_gym_instance(
            "simple_weather", "resources_servers", "simple_weather", our_urls["simple_weather"], domain="agent"
        ),
        **nemo_gym_instance("policy_model", "responses_api_models", "openai_model", our_urls["policy_model"]),
    }
    server = NemoGymServer(
        "ng07_agent_on_ours", "responses_api_agents/simple_agent", instances, interop_tmp, venv=NG07_VENV
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def our_agent_on_nemo_gym07(nemo_gym07: NemoGym07Run, interop_tmp: Path) -> Iterator[OurServer]:
    """Our simple_agent on 0.7's example_single_tool_call resources server and its
    openai_model (-> the emulator), both run by 0.7's ng_run."""
    server = OurServer(
        "our_agent_on_nemo_gym07",
        "responses_api_agents/simple_agent",
        {
            "resources_server": {"type": "resources_servers", "name": THEIR_RS},
            "model_server": {"type": "responses_api_models", "name": "policy_model"},
        },
        {THEIR_RS: nemo_gym07.url(THEIR_RS), "policy_model": nemo_gym07.url("policy_model")},
        interop_tmp,
    )
    try:
        yield server
    finally:
        server.stop()


def test_nemo_gym07_agent_on_our_servers_gets_native_rewards_at_20_concurrent(
    our_urls: dict[str, str], nemo_gym07_agent_on_ours: NemoGymServer
) -> None:
    rows = read_jsonl(WEATHER) * (CONCURRENCY // len(read_jsonl(WEATHER)))
    assert len(rows) == CONCURRENCY
    native_rows = post_rows(our_urls[OUR_AGENT] + "/run", rows, CONCURRENCY)
    cross = post_rows(nemo_gym07_agent_on_ours.url + "/run", rows, CONCURRENCY)
    assert [s for s, _ in cross] == [200] * CONCURRENCY, cross[0]
    assert _rewards(cross) == _rewards(native_rows) == [1.0] * CONCURRENCY
    # Each rollout saw only its own tool call (a shared session would count the others').
    assert [b["num_tool_calls"] for _, b in cross] == [1] * CONCURRENCY


def test_our_agent_on_nemo_gym07_resources_server_gets_native_rewards_at_20_concurrent(
    nemo_gym07: NemoGym07Run, our_agent_on_nemo_gym07: OurServer
) -> None:
    rows = read_jsonl(_their_data()) * (CONCURRENCY // len(read_jsonl(_their_data())))
    assert len(rows) == CONCURRENCY
    native = post_rows(nemo_gym07.url(THEIR_AGENT) + "/run", rows, CONCURRENCY)
    cross = post_rows(our_agent_on_nemo_gym07.url + "/run", rows, CONCURRENCY)
    assert [s for s, _ in cross] == [200] * CONCURRENCY, cross[0]
    assert _rewards(cross) == _rewards(native) == [1.0] * CONCURRENCY
    calls = [[i["name"] for i in b["response"]["output"] if i["type"] == "function_call"] for _, b in cross]
    assert calls == [["get_weather"]] * CONCURRENCY
