"""CPU per rollout of each process: the collector and every server, at one concurrency.

    .venv/bin/python benchmarks/per_process.py              # c=64, 4,000 rollouts after a warm-up
    .venv/bin/python benchmarks/per_process.py --runs 5     # the median of 5

Starts ``ng_run`` with ``configs/offline.yaml`` as ``benchmarks/rollouts.py`` does, runs a
1,000-rollout warm-up, then reads each process's CPU time from ``/proc`` around a measured
collection. Which process grew is what a before/after comparison needs (docs/benchmarks.md,
section 7: this script, run in two worktrees in turn).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rollouts  # noqa: E402


def once(concurrency: int, n: int) -> dict[str, float]:
    """CPU ms per rollout by process name, plus ``all`` and ``rollouts/s``."""
    data = rollouts.tasks_file(n)
    servers = rollouts.Servers()
    try:
        rows = httpx.get(f"http://127.0.0.1:{servers.head_port}/instances", timeout=5).json()["instances"]
        names = {r["pid"]: r["name"] for r in rows} | {servers.proc.pid: "ng_run"}
        rollouts.collect(servers, data, concurrency, 1000)  # warm-up: imports, pools, caches
        before = {pid: rollouts.cpu_seconds(pid) for pid in servers.pids}
        metrics, collector_cpu, _ = rollouts.collect(servers, data, concurrency, n)
        after = {pid: rollouts.cpu_seconds(pid) for pid in servers.pids}
    finally:
        servers.stop()
    done = max(metrics["succeeded"], 1)
    result = {"collector": collector_cpu / done * 1000}
    result |= {names[pid]: (after[pid] - before[pid]) / done * 1000 for pid in servers.pids}
    result["all"] = sum(v for k, v in result.items())
    result["rollouts/s"] = metrics["rollouts_per_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rollouts", type=int, default=4000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    runs = [once(args.concurrency, args.rollouts) for _ in range(args.runs)]
    for run in runs:
        print("  ".join(f"{k}={v:.3f}" if k != "rollouts/s" else f"{k}={v:.0f}" for k, v in run.items()), flush=True)
    if len(runs) > 1:
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print("median: " + "  ".join(f"{k}={v:.3f}" for k, v in median.items()))


if __name__ == "__main__":
    main()
