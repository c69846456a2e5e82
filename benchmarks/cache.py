"""The response cache's cost on a miss and its speed on a hit, for docs/benchmarks.md.

    .venv/bin/python benchmarks/cache.py               # 1000 rollouts a run, 2 rounds (~2 min)
    .venv/bin/python benchmarks/cache.py -n 300 --rounds 1

The offline stack (``ng_run`` with configs/offline.yaml, emulator latency 0: the toolkit's
own costs are all there is), the same tasks at concurrency 64, runs alternating within each
round: cache off; cache on and empty (every model call a miss: looked up, then written);
cache on and full (every model call a hit: no upstream call). For each: rollouts/s, CPU per
rollout of every process, and the policy model server's CPU per model call. Then, with the
emulator answering in 200 ms (closer to a real provider), off against all hits.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollouts import Servers, collect, cpu_seconds, tasks_file  # noqa: E402

LATENCY = "++provider_emulator.responses_api_models.provider_emulator.latency_ms"


def _unique_tasks(n: int, folder: Path) -> Path:
    """``n`` simple_weather tasks whose prompts all differ (the generated ones repeat: a
    repeated prompt is a hit even in an empty cache)."""
    path = folder / f"unique_{n}.jsonl"
    with tasks_file(n).open("rb") as source, path.open("wb") as out:
        for i, line in enumerate(source):
            row = orjson.loads(line)
            row["responses_create_params"]["input"][0]["content"] += f" (task {i})"
            out.write(orjson.dumps(row) + b"\n")
    return path


def _model_pid(servers: Servers) -> int:
    rows = httpx.get(f"http://127.0.0.1:{servers.head_port}/instances", timeout=5).json()["instances"]
    return next(r["pid"] for r in rows if r["name"] == "policy_model")


def _run(servers: Servers, data: Path, n: int, concurrency: int) -> dict[str, float]:
    model = _model_pid(servers)
    before, model_before = servers.cpu(), cpu_seconds(model)
    metrics, collector_cpu, _ = collect(servers, data, concurrency, n)
    done = metrics["succeeded"]
    calls = done * 2  # one tool call per rollout: two model calls
    cached = metrics.get("response_cache") or {}
    assert metrics["failed"] == 0, metrics["failure_types"]
    return {
        "rate": metrics["rollouts_per_s"],
        "cpu_ms": (servers.cpu() - before + collector_cpu) / done * 1000,
        "model_us": (cpu_seconds(model) - model_before) / calls * 1e6,
        "hits": cached.get("hits", 0),
        "misses": cached.get("misses", 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1000, help="rollouts a run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory()
    data = _unique_tasks(args.n, Path(scratch.name))
    results: dict[str, list[dict[str, float]]] = {"off": [], "miss": [], "hit": []}
    for _ in range(args.rounds):
        off = Servers(f"{LATENCY}=0")
        try:
            results["off"].append(_run(off, data, args.n, args.concurrency))
        finally:
            off.stop()
        with tempfile.TemporaryDirectory() as folder:
            on = Servers(f"{LATENCY}=0", "+cache=true", f"+cache_path={folder}")
            try:
                results["miss"].append(_run(on, data, args.n, args.concurrency))
                results["hit"].append(_run(on, data, args.n, args.concurrency))
            finally:
                on.stop()
    print(f"{args.n} rollouts (2 model calls each) at concurrency {args.concurrency}, emulator latency 0;")
    print(f"median of {args.rounds} rounds, runs alternating")
    columns = ("rollouts/s", "CPU ms/rollout", "model server CPU us/call", "hits/misses")
    print(f"{'cache':<6} {columns[0]:>11} {columns[1]:>15} {columns[2]:>25} {columns[3]:>12}")
    for label, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{label:<6} {med['rate']:>11.1f} {med['cpu_ms']:>15.2f} {med['model_us']:>25.0f} "
            f"{int(med['hits']):>5}/{int(med['misses'])}"
        )
    slow = max(args.n // 4, 100)
    print(f"\n{slow} rollouts, emulator latency 200 ms (a provider's), concurrency {args.concurrency}:")
    with tempfile.TemporaryDirectory() as folder:
        on = Servers(f"{LATENCY}=200", "+cache=true", f"+cache_path={folder}")
        try:
            miss = _run(on, data, slow, args.concurrency)
            hit = _run(on, data, slow, args.concurrency)
        finally:
            on.stop()
    print(f"miss (provider answers) {miss['rate']:>8.1f} rollouts/s")
    print(f"hit  (cache answers)    {hit['rate']:>8.1f} rollouts/s")
    scratch.cleanup()


if __name__ == "__main__":
    main()
