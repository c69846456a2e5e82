"""Throughput, CPU, latency and memory of a collection against the offline emulator.

    .venv/bin/python benchmarks/rollouts.py            # the full table (about 5 minutes)
    .venv/bin/python benchmarks/rollouts.py --quick    # fewer levels, shorter runs

Starts ``ng_run`` with ``configs/offline.yaml`` (simple_weather, the emulator at zero
latency), runs ``ng_collect_rollouts`` as a separate process at each concurrency level, and
prints, per level: rollouts/s, CPU ms per rollout summed over every process (the collector
and each server, from /proc/<pid>/stat and wait4), collector peak RSS, p50/p95 rollout
latency. Then the same at 512 with 200 ms of upstream latency, ``ng_run`` start-up time,
and the collector's peak RSS on 1,000 vs 1,000,000 input rows (``+limit`` unset; the big
run is stopped with Ctrl-C after a fixed time: memory must not depend on the input size).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failures import output_file, stopped  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA = ROOT / "benchmarks" / ".data"
AGENT = "simple_weather_simple_agent"
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def tasks_file(n: int) -> Path:
    path = DATA / f"tasks_{n}.jsonl"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "resources_servers/simple_weather/generate_tasks.py"),
                "-n",
                str(n),
                "--out",
                str(path),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return path


class Servers:
    """``ng_run`` with the offline config, on a free head port."""

    def __init__(self, *overrides: str, config: str = "configs/offline.yaml") -> None:
        self.head_port = free_port()
        started = time.perf_counter()
        self.output = output_file()
        self.proc = subprocess.Popen(
            [
                str(BIN / "ng_run"),
                f"+config_paths=[{config}]",
                f"+head_server.port={self.head_port}",
                *overrides,
            ],
            cwd=ROOT,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{self.head_port}/instances"
        while True:
            if self.proc.poll() is not None:
                raise stopped("ng_run", self.proc.returncode, self.output)
            try:
                rows = httpx.get(url, timeout=1).json()["instances"]
                if rows and all(r["ready"] for r in rows):
                    break
            except (httpx.TransportError, ValueError):
                pass
            time.sleep(0.01)
        self.startup_s = time.perf_counter() - started
        self.pids = [r["pid"] for r in rows] + [self.proc.pid]

    def cpu(self) -> float:
        return sum(cpu_seconds(p) for p in self.pids)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@dataclass
class Result:
    label: str
    concurrency: int
    rollouts: int
    rate: float
    cpu_ms: float
    rss_mib: float
    p50_ms: float
    p95_ms: float
    failed: int


def collect(
    servers: Servers,
    data: Path,
    concurrency: int,
    limit: int | None,
    *,
    stop_after: float | None = None,
) -> tuple[dict, float, float]:
    """Run the collector; returns (metrics, its CPU seconds, its peak RSS in MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        args = [
            str(BIN / "ng_collect_rollouts"),
            f"+head_server.port={servers.head_port}",
            f"+agent_name={AGENT}",
            f"+input_jsonl_fpath={data}",
            f"+output_jsonl_fpath={out}",
            f"+concurrency={concurrency}",
            "+progress_interval_s=3600",
        ]
        if limit is not None:
            args.append(f"+limit={limit}")
        errors = output_file()
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            stdin=subprocess.DEVNULL,
        )
        if stop_after is not None:
            time.sleep(stop_after)
            proc.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        metrics_file = out.with_name("out_metrics.json")
        if not metrics_file.exists():
            raise stopped("ng_collect_rollouts (no metrics written)", proc.returncode, errors)
        metrics = orjson.loads(metrics_file.read_bytes())
    return metrics, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def measure(servers: Servers, data: Path, concurrency: int, limit: int, label: str = "") -> Result:
    before = servers.cpu()
    metrics, collector_cpu, rss = collect(servers, data, concurrency, limit)
    server_cpu = servers.cpu() - before
    n = metrics["succeeded"] - metrics.get("resumed_from_output", 0)
    lat = metrics["latency_s"]
    return Result(
        label=label or f"c={concurrency}",
        concurrency=concurrency,
        rollouts=n,
        rate=metrics["rollouts_per_s"],
        cpu_ms=(server_cpu + collector_cpu) / max(n, 1) * 1000,
        rss_mib=rss,
        p50_ms=lat["p50"] * 1000,
        p95_ms=lat["p95"] * 1000,
        failed=metrics["failed"],
    )


def three_server_startup(runs: int) -> float:
    """Start-up of the three NeMo Gym servers, the emulator already running elsewhere."""
    port = free_port()
    errors = output_file()
    emulator = subprocess.Popen(
        [str(BIN / "ng_emulator"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=errors,
    )
    try:
        while True:
            if emulator.poll() is not None:
                raise stopped("ng_emulator", emulator.returncode, errors)
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(
                "config_paths:\n"
                "  - responses_api_models/openai_model/configs/openai_model.yaml\n"
                "  - resources_servers/simple_weather/configs/simple_weather.yaml\n"
                f"policy_base_url: http://127.0.0.1:{port}/api/v1\n"
                "policy_api_key: sk-or-emulator-offline-key\n"
                "policy_model_name: emulator/scripted-tool-caller\n"
            )
        times = []
        for _ in range(runs):
            s = Servers(config=f.name)
            times.append(s.startup_s)
            s.stop()
        os.unlink(f.name)
        return statistics.median(times)
    finally:
        emulator.terminate()
        emulator.wait(10)


def print_table(results: list[Result]) -> None:
    print()
    print(
        "| run | concurrency | rollouts | rollouts/s | CPU ms/rollout (all processes) "
        "| collector peak RSS MiB | p50 ms | p95 ms | failed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.label} | {r.concurrency} | {r.rollouts} | {r.rate:.0f} | {r.cpu_ms:.2f} | {r.rss_mib:.0f} | "
            f"{r.p50_ms:.0f} | {r.p95_ms:.0f} | {r.failed} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer levels and shorter runs")
    parser.add_argument(
        "--levels",
        default="1,64,256,512,2048,4096",
        help="concurrency levels (default 1,64,256,512,2048,4096)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="target duration of each run (default 8)")
    parser.add_argument("--skip-latency", action="store_true", help="skip the 200 ms latency run")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 1k vs 1M rows memory runs")
    args = parser.parse_args()
    levels = [int(x) for x in ("1,64,512,2048" if args.quick else args.levels).split(",")]
    seconds = 4.0 if args.quick else args.seconds

    data = tasks_file(200_000)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}", flush=True)

    runs = 1 if args.quick else 5
    startups = []
    for _ in range(runs):
        s = Servers()
        startups.append(s.startup_s)
        s.stop()
    print(
        f"ng_run start-up to all 4 servers ready (offline: model, agent, resources, emulator): "
        f"median {statistics.median(startups):.2f} s over {runs} runs",
        flush=True,
    )
    print(
        f"ng_run start-up to all 3 servers ready (model, agent, resources; emulator already up): "
        f"median {three_server_startup(runs):.2f} s over {runs} runs",
        flush=True,
    )

    results: list[Result] = []
    servers = Servers()
    try:
        measure(servers, data, 64, 300)  # warm-up: connections, caches
        rate = 500.0
        for c in levels:
            # Long enough that the collector's own start-up (~0.5 s of CPU) is a small share.
            limit = max(int(max(rate, 500.0) * seconds), c * 4, 2000)
            r = measure(servers, data, c, limit)
            results.append(r)
            rate = max(r.rate, 50.0)
            print(f"  c={c}: {r.rate:.0f} rollouts/s, {r.cpu_ms:.2f} CPU ms/rollout", flush=True)
    finally:
        servers.stop()

    if not args.skip_latency:
        servers = Servers("++provider_emulator.responses_api_models.provider_emulator.latency_ms=200")
        try:
            measure(servers, data, 512, 1024)  # warm-up: 512 connections per hop, lazy imports
            # Long enough that the first and last 0.4 s (filling and draining 512 slots) are small.
            r = measure(servers, data, 512, 10_000, label="c=512, 200 ms upstream latency")
            results.append(r)
            print(
                f"  200 ms latency, c=512: {r.rate:.0f} rollouts/s (bound by latency: {512 / (2 * 0.2):.0f})",
                flush=True,
            )
        finally:
            servers.stop()

    print_table(results)

    if not args.skip_memory:
        small, big = tasks_file(1_000), tasks_file(1_000_000)
        servers = Servers()
        try:
            _, _, rss_small = collect(servers, small, 64, None)
            m, _, rss_big = collect(servers, big, 64, None, stop_after=20.0 if not args.quick else 8.0)
        finally:
            servers.stop()
        print()
        print(f"collector peak RSS, 1,000-row input (all collected): {rss_small:.1f} MiB")
        print(
            f"collector peak RSS, 1,000,000-row input (+limit unset, {m['succeeded']} collected, then Ctrl-C): "
            f"{rss_big:.1f} MiB ({rss_big / rss_small:.2f}x)"
        )


if __name__ == "__main__":
    main()
