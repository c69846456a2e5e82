"""Scale-out on a real multi-node Ray cluster: Ray's own ``cluster_utils.Cluster``, two nodes
(each its own raylet) on this machine, shared by the tests of this module.

``ng_run`` places the replicas of ``cpu_burn`` (tests/fixtures: a CPU-bound environment) on
different nodes and lists them; a collection spreads over them; a replica killed mid-run
costs no rollout and duplicates none; stopping ``ng_run``, or killing it, leaves nothing
running. ``ray_enabled`` offload() runs as Ray tasks with the worker pool's contract.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from nemo_gym_cli.errors import HTTPError
from support.cli import BIN, ROOT, NgRun, run_cli
from support.ports import held_port
from support.procs import descendants, still_alive

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e '.[ray]')")

pytestmark = [pytest.mark.ray, pytest.mark.e2e]

FIXTURES = ROOT / "tests" / "fixtures"
CONFIG = "+config_paths=[scale_out.yaml]"
AGENT = "+agent_name=cpu_burn_simple_agent"
BURN = "cpu_burn.resources_servers.cpu_burn"
NODE_CPUS = 2


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    earlier = set(descendants(os.getpid()))  # e.g. offload workers of earlier tests: not the cluster's
    started = Cluster(initialize_head=True, head_node_args={"num_cpus": NODE_CPUS, "include_dashboard": False})
    started.add_node(num_cpus=NODE_CPUS)
    started.wait_for_nodes()
    try:
        yield started
    finally:
        started.shutdown()
    ours = [pid for pid in descendants(os.getpid()) if pid not in earlier]
    assert still_alive(ours, timeout=10) == []  # no raylet, GCS or worker left


def free_cpus(address: str, timeout: float = 30.0) -> float:
    """The cluster's free CPUs once everything given back is back (or ``timeout`` passed)."""
    ray.init(address=address, logging_level="ERROR")
    try:
        deadline = time.monotonic() + timeout
        while True:
            free = ray.available_resources().get("CPU", 0.0)
            if free >= 2 * NODE_CPUS or time.monotonic() > deadline:
                return free
            time.sleep(0.1)
    finally:
        ray.shutdown()


def tasks(path: Path, n: int) -> Path:
    path.write_text(
        "".join(json.dumps({"id": i, "responses_create_params": {"input": f"city {i}?"}}) + "\n" for i in range(n))
    )
    return path


def test_ray_offload_keeps_the_worker_pools_timeout_and_error_contract(cluster):
    from nemo_gym_cli.server.ray_offload import RayOffload

    async def main():
        async with RayOffload(cluster.address, NODE_CPUS) as pool:  # one call fills a node
            where = await pool.run(os.getpid, (), 30)
            # four 2 s calls, two at a time: the last two wait ~2 s for a node, which their
            # 3.5 s timeout does not count (it starts when the call does); 1.5 s of slack for
            # a loaded machine, where counting the wait would take 4 s
            started = time.monotonic()
            queued = await asyncio.gather(*(pool.run(time.sleep, (2.0,), 3.5) for _ in range(4)))
            queued_s = time.monotonic() - started
            started = time.monotonic()
            with pytest.raises(HTTPError) as slow:
                await pool.run(time.sleep, (60,), 0.5)
            slow_s = time.monotonic() - started
            with pytest.raises(HTTPError) as failed:
                await pool.run(math.sqrt, (-1,), 30)
        return where, queued, queued_s, slow.value, slow_s, failed.value

    where, queued, queued_s, slow, slow_s, failed = asyncio.run(main())
    assert where != os.getpid()  # a Ray worker ran it
    assert queued == [None] * 4 and queued_s >= 3.9
    assert slow.kind == "offload_timeout" and not slow.retryable and slow.status == 500
    assert str(slow).startswith("sleep ran longer than 0.5 s and was stopped") and slow_s < 10
    assert failed.kind == "offload_error" and not failed.retryable
    assert str(failed) == "sqrt failed: ValueError: math domain error"
    assert free_cpus(cluster.address) == 2 * NODE_CPUS  # the timed-out task was cancelled


def test_replicas_spread_over_nodes_share_a_collection_and_one_dying_loses_no_rollout(cluster, tmp_path):
    run = NgRun(f"+ray.address={cluster.address}", f"++{BURN}.burn_ms=20", cwd=FIXTURES, config=CONFIG)
    try:
        rows = run.wait_ready(timeout=120)
        burn = next(r for r in rows if r["name"] == "cpu_burn")["replicas"]
        assert len(burn) == 2 and len({r["node_id"] for r in burn}) == 2  # one replica on each node
        assert {r["host"] for r in burn} == {cluster.head_node.node_ip_address}  # the nodes' address
        listed = httpx.get(run.head_url + "/server_instances", timeout=5).json()
        assert sorted(r["url"] for r in listed if r["process_name"] == "cpu_burn") == sorted(r["url"] for r in burn)
        servers = [replica["pid"] for row in rows for replica in row["replicas"]]

        out = tmp_path / "out.jsonl"
        collect = subprocess.Popen(
            [str(BIN / "ng_collect_rollouts"), f"+head_server.port={run.head_port}", AGENT, "+concurrency=8",
             f"+input_jsonl_fpath={tasks(tmp_path / 'tasks.jsonl', 150)}", f"+output_jsonl_fpath={out}"],
            cwd=FIXTURES, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while (not out.exists() or len(out.read_text().splitlines()) < 30) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(burn[1]["pid"], signal.SIGKILL)  # mid-run: about 120 rollouts to go
        stdout, stderr = collect.communicate(timeout=120)
        assert collect.returncode == 0, stderr

        written = [json.loads(line) for line in out.read_text().splitlines()]
        assert sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in written) == [(t, 0) for t in range(150)]
        assert all(r["reward"] == 1.0 for r in written)  # every rollout's calls on one replica
        served = collections.Counter(r["replica"] for r in written)
        assert set(served) == {r["url"] for r in burn} and served[burn[1]["url"]] < served[burn[0]["url"]]
        after = httpx.get(run.head_url + "/instances", timeout=5).json()["instances"]
        states = {r["url"]: r["ready"] for r in next(i for i in after if i["name"] == "cpu_burn")["replicas"]}
        assert states == {burn[0]["url"]: True, burn[1]["url"]: False}
    finally:
        code = run.stop()
    log = run.proc.stdout.read()
    assert code == 0, log
    assert "warning: server 'cpu_burn#1'" in log and "1 other replica serves on" in log
    assert still_alive(servers, timeout=10) == []
    assert free_cpus(cluster.address) == 2 * NODE_CPUS  # every actor and placement group given back


def test_a_killed_ng_run_leaves_no_replica_running(cluster):
    run = NgRun(f"+ray.address={cluster.address}", cwd=FIXTURES, config=CONFIG)
    try:
        rows = run.wait_ready(timeout=120)
        servers = [replica["pid"] for row in rows for replica in row["replicas"]]
        assert len(servers) == 5 and still_alive(servers, timeout=0) == servers
        run.proc.kill()  # no chance to stop anything: Ray ends the actors of a dead driver
        run.proc.wait()
        assert still_alive(servers, timeout=30) == []
    finally:
        run.stop()
    assert free_cpus(cluster.address) == 2 * NODE_CPUS


def test_a_one_command_collection_on_ray_verifies_with_ray_tasks(cluster, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "ng_collect_rollouts", CONFIG, f"+ray.address={cluster.address}", AGENT, "+concurrency=4",
        f"++{BURN}.ray_enabled=true", f"++{BURN}.offloaded=true", f"++{BURN}.ray_num_cpus=0.5",
        f"+input_jsonl_fpath={tasks(tmp_path / 'tasks.jsonl', 20)}", f"+output_jsonl_fpath={out}",
        cwd=FIXTURES, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["_ng_task_index"] for r in written) == list(range(20))
    assert all(r["reward"] == 1.0 for r in written)
    assert all(r["burned_in"] != r["server_pid"] for r in written)  # burned in a Ray task's worker
    assert len({r["replica"] for r in written}) == 2
    assert free_cpus(cluster.address) == 2 * NODE_CPUS


def test_no_room_on_the_cluster_is_one_line_after_the_placement_timeout_and_nothing_is_kept(cluster):
    # A replica asking for 3 CPUs fits on no node of 2: ng_run waits +ray.placement_timeout_s
    # (an autoscaling cluster would add a node meanwhile), then says so and gives all back.
    with held_port() as head_port:
        result = run_cli(
            "ng_run", CONFIG, f"+ray.address={cluster.address}", "+ray.placement_timeout_s=2",
            f"++{BURN}.num_cpus=3", f"+head_server.port={head_port}", cwd=FIXTURES, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stdout + result.stderr
    assert "had no room for every replica within 2 s (+ray.placement_timeout_s)" in errors[0]
    assert f"{BURN.split('.')[0]}: 2 x 3" in errors[0]
    assert free_cpus(cluster.address) == 2 * NODE_CPUS
