"""``+ray.address=local``: the cluster ng_run starts for itself has room for every replica the
config asks for, so docs/scale-out.md's first example runs on any machine (here: the four
servers of configs/offline.yaml, a CPU each, on 2 cores), and stopping leaves nothing."""

from __future__ import annotations

import os

import pytest

from support.cli import NgRun, run_cli
from support.procs import descendants, still_alive

pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

pytestmark = [pytest.mark.ray, pytest.mark.e2e]


def test_a_local_cluster_fits_every_server_of_the_offline_config_and_stops_clean(tmp_path) -> None:
    assert (os.cpu_count() or 1) < 8  # the config's 4 servers plus 4 more do not fit the cores alone
    run = NgRun("+ray.address=local", "++simple_weather.resources_servers.simple_weather.num_replicas=5")
    try:
        rows = run.wait_ready(timeout=90)
        assert len(rows) == 4
        (weather,) = [r for r in rows if r["name"] == "simple_weather"]
        assert len(weather["replicas"]) == 5
        # A cluster started here: every replica on loopback, as without Ray (not the machine's address).
        assert {r["host"] for row in rows for r in row["replicas"]} == {"127.0.0.1"}
        collected = run_cli(
            "ng_collect_rollouts",
            f"+head_server.port={run.head_port}",
            "+agent_name=simple_weather_simple_agent",
            "+input_jsonl_fpath=resources_servers/simple_weather/data/example.jsonl",
            f"+output_jsonl_fpath={tmp_path / 'out.jsonl'}",
        )
        assert collected.returncode == 0, collected.stderr
        assert "mean reward 1.0000 over 5" in collected.stdout
        spawned = descendants(run.proc.pid)
    finally:
        code = run.stop(timeout=60)
    assert code == 0
    assert still_alive(spawned, timeout=30) == []
