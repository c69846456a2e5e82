"""Scale-out on Ray: rollouts/s of a CPU-bound environment with 1 replica against 2, and
``ng_run``'s start-up on a local single-node Ray cluster.

    .venv/bin/python benchmarks/scale_out.py              # about a minute
    .venv/bin/python benchmarks/scale_out.py --quick      # fewer rollouts and start-ups

The environment is tests/fixtures' ``cpu_burn``: each ``/verify`` burns ``--burn-ms`` of CPU
(20 ms) in the resources server's own event loop, so one replica verifies at most
1000 / burn_ms rollouts a second, whatever the concurrency. It is played by simple_agent with
the emulated policy model (zero latency), all on a Ray cluster on this machine
(``+ray.address=local``), through ``ng_collect_rollouts`` in one-command mode; the rate is
the one the collector records (``rollouts_per_s``: rollouts over the collection's wall time,
start-up not counted). The other servers share the same cores, so two replicas on a 2-core
machine land below 2x.

Second, the verifications alone: ``ng_run`` with the same replicas, and ``POST /verify``
sent straight to them from this process (their URLs from the head server, spread by
``Replicas.pick`` as the agent spreads rollouts, ``--concurrency`` in flight): what the
replicas verify per second when nothing else needs the cores.

The start-up is ``ng_run`` with configs/offline.yaml (4 servers) on a Ray cluster it starts
itself: the "all N servers ready in X s" it prints (starting the cluster included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failures import stopped  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
BIN = Path(sys.executable).parent
BURN = "cpu_burn.resources_servers.cpu_burn"
LIGHT = [  # servers that mostly wait on the network: a tenth of a CPU each
    "provider_emulator.responses_api_models.provider_emulator",
    "policy_model.responses_api_models.openai_model",
    "simple_weather.resources_servers.simple_weather",
    "simple_weather_simple_agent.responses_api_agents.simple_agent",
]


def collect_rate(replicas: int, rollouts: int, burn_ms: float, concurrency: int, folder: Path) -> float:
    tasks = folder / "tasks.jsonl"
    tasks.write_text(
        "".join(
            json.dumps({"id": i, "responses_create_params": {"input": f"city {i}?"}}) + "\n" for i in range(rollouts)
        )
    )
    out = folder / f"out_{replicas}.jsonl"
    result = subprocess.run(
        [
            str(BIN / "ng_collect_rollouts"),
            "+config_paths=[scale_out.yaml]",
            "+ray.address=local",
            f"++{BURN}.num_replicas={replicas}",
            f"++{BURN}.burn_ms={burn_ms}",
            "+agent_name=cpu_burn_simple_agent",
            f"+concurrency={concurrency}",
            f"+input_jsonl_fpath={tasks}",
            f"+output_jsonl_fpath={out}",
        ],
        cwd=FIXTURES,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise SystemExit(f"ng_collect_rollouts failed ({result.returncode}):\n{result.stderr}")
    metrics = json.loads(out.with_name(out.stem + "_metrics.json").read_text())
    assert metrics["succeeded"] == rollouts, metrics
    return float(metrics["rollouts_per_s"])


async def _verify_rate(urls: list[str], calls: int, concurrency: int) -> float:
    from nemo_gym_cli.server.client import open_json_client
    from nemo_gym_cli.server.replicas import Replicas

    replicas = Replicas("cpu_burn", urls)
    body = {"response": {"output": []}}
    todo = iter(range(calls))
    async with open_json_client(pool_size=concurrency) as client:

        async def worker() -> None:
            for i in todo:
                await client.post(replicas.pick(str(i)) + "/verify", {**body, "id": i})

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return calls / (time.perf_counter() - started)


def verify_rate(replicas: int, calls: int, burn_ms: float, concurrency: int) -> float:
    head_port = free_port()
    args = [
        str(BIN / "ng_run"),
        "+config_paths=[scale_out.yaml]",
        "+ray.address=local",
        f"++{BURN}.num_replicas={replicas}",
        f"++{BURN}.burn_ms={burn_ms}",
        f"+head_server.port={head_port}",
    ]
    proc = subprocess.Popen(args, cwd=FIXTURES, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    said: list[str] = []
    try:
        for line in proc.stdout:
            said.append(line)
            if "servers ready in" in line:
                break
        else:
            raise stopped("ng_run (before it was ready)", proc.wait(), said)
        rows = httpx.get(f"http://127.0.0.1:{head_port}/instances", timeout=10).json()["instances"]
        urls = [r["url"] for r in next(row for row in rows if row["name"] == "cpu_burn")["replicas"]]
        return asyncio.run(_verify_rate(urls, calls, concurrency))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def startup_s(head_port: int) -> float:
    args = [
        str(BIN / "ng_run"),
        "+config_paths=[configs/offline.yaml]",
        "+ray.address=local",
        f"+head_server.port={head_port}",
        *(f"++{where}.num_cpus=0.1" for where in LIGHT),
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    said: list[str] = []
    try:
        for line in proc.stdout:
            said.append(line)
            found = re.search(r"servers ready in ([\d.]+) s", line)
            if found:
                return float(found.group(1))
        raise stopped("ng_run (before it was ready)", proc.wait(), said)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rollouts and start-ups")
    parser.add_argument("--burn-ms", type=float, default=20.0, help="CPU milliseconds each /verify burns")
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    rollouts = 300 if args.quick else 1000
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as folder:
        rates = {n: collect_rate(n, rollouts, args.burn_ms, args.concurrency, Path(folder)) for n in (1, 2)}
    bound = 1000 / args.burn_ms
    for n, rate in rates.items():
        print(
            f"{n} replica{'s' if n > 1 else ' '} of cpu_burn ({args.burn_ms:g} ms CPU per /verify, "
            f"{rollouts} rollouts, concurrency {args.concurrency}): {rate:6.1f} rollouts/s "
            f"({rate / bound:.2f} of one core's {bound:g})"
        )
    print(f"2 replicas / 1 replica: {rates[2] / rates[1]:.2f}x")
    direct = {n: verify_rate(n, rollouts, args.burn_ms, args.concurrency) for n in (1, 2)}
    for n, rate in direct.items():
        print(
            f"POST /verify straight to {n} replica{'s' if n > 1 else ' '}: {rate:6.1f} verifications/s "
            f"({rate / bound:.2f} of one core's {bound:g})"
        )
    print(f"2 replicas / 1 replica: {direct[2] / direct[1]:.2f}x")
    times = [startup_s(free_port()) for _ in range(2 if args.quick else 5)]
    shown = ", ".join(f"{t:.2f}" for t in times)
    print(
        f"ng_run start-up on a local Ray cluster (offline.yaml, 4 servers): "
        f"median {sorted(times)[len(times) // 2]:.2f} s ({shown})"
    )


if __name__ == "__main__":
    main()
