"""Us and NeMo Gym 0.7.0 side by side: throughput, CPU per rollout and start-up, same upstream.

    .venv/bin/python benchmarks/nemo_gym07.py                 # c=64 and 512, 2 alternating runs each
    .venv/bin/python benchmarks/nemo_gym07.py --rollouts 200 --reps 1 --levels 64

Both stacks play the same input rows (simple_weather tasks, ``generate_tasks.py``: each one
tool call, then an answer) against the same fake upstream: one ``ng_emulator`` process at zero
latency (its heuristic policy calls ``get_weather`` once per rollout). Ours: our ``ng_run`` with
``openai_model.yaml`` (pointed at that emulator, ``max_concurrency`` lifted as in
``configs/offline_model.yaml``) + ``simple_weather.yaml``, our ``ng_collect_rollouts``. NeMo
Gym 0.7.0 (``.interop/nemo-gym07-py313``, Python 3.13.0 with ``--ignore-requires-python``): its
``ng_run`` with its ``openai_model.yaml`` + ``example_single_tool_call.yaml`` (its get_weather
environment: resources server, simple_agent, legacy_agent environment server), its
collector ``gym eval run --no-serve`` with ``--no-health-check --disable-aggregation`` (ours
does neither at the end of a run). Both stacks stay up; collections alternate between them.

Figures per run: rollouts/s end to end = rows written / the collector's wall time (its
start-up included, the same rule for both: 0.7's collector reports no rate of its own), and
steady = rows between the first and the last row written / that time (the output file is
polled every 20 ms; both collectors write rows as they complete); CPU ms per rollout =
CPU of the collector (wait4) + every process of the stack's session (its servers, its head,
and for 0.7 its Ray cluster) over the run, divided by rows; the emulator's CPU is not
counted (it is the same for both). Start-up: launch to ready (ours: every instance ready on
``/instances``; 0.7: head ``/readyz`` 200), emulator already up, median over ``--startups``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interop_harness import make_nemo_gym_workdir, ray_tmpdir  # noqa: E402
from nemo_gym07_parity import BASE_VENV, NG_ENV, Process, free_port, site  # noqa: E402
from rollouts import BIN, ROOT, TICK, tasks_file  # noqa: E402

OUR_AGENT = "simple_weather_simple_agent"
THEIR_AGENT = "example_single_tool_call_simple_agent"


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICK
    return total


def _family(pid: int) -> list[int]:
    """``pid``, its session and its descendants (some of a stack's servers start sessions of their own)."""
    parents: dict[int, int] = {}
    members = {pid}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry)] = int(fields[1])
            if int(fields[3]) == pid:
                members.add(int(entry))
    grew = True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in members and child not in members:
                members.add(child)
                grew = True
    return sorted(members)


class Stack:
    """One toolkit's ``ng_run`` against the emulator, in its own session."""

    name: str
    process: Process

    def stack_cpu(self) -> float:
        # Processes and their reaped children (cutime/cstime): the whole stack's CPU.
        return _cpu_of(_family(self.process.proc.pid))

    def stop(self) -> None:
        self.process.stop(signal.SIGINT, timeout=20)


class Ours(Stack):
    name = "ours"

    def __init__(self, upstream: str, tmp: Path) -> None:
        self.head_port = free_port()
        config = tmp / "ours.yaml"
        config.write_text(
            "config_paths:\n"
            "  - responses_api_models/openai_model/configs/openai_model.yaml\n"
            "  - resources_servers/simple_weather/configs/simple_weather.yaml\n"
            f"policy_base_url: {upstream}\n"
            "policy_api_key: sk-or-emulator-offline-key\n"
            "policy_model_name: emulator/scripted-tool-caller\n"
            "policy_model:\n  responses_api_models:\n    openai_model:\n      max_concurrency: 2048\n"
        )
        self.started = time.monotonic()
        self.process = Process(
            [str(BIN / "ng_run"), f"+config_paths=[{config}]", f"+head_server.port={self.head_port}"],
            cwd=ROOT,
            env=dict(os.environ),
            log=tmp / "ours-ng_run.log",
        )
        url = f"http://127.0.0.1:{self.head_port}/instances"
        while True:
            if not self.process.alive():
                raise SystemExit(f"our ng_run exited: {self.process.output(15)}")
            try:
                rows = httpx.get(url, timeout=1).json()["instances"]
                if rows and all(r["ready"] for r in rows):
                    break
            except (httpx.TransportError, ValueError, KeyError):
                pass
            time.sleep(0.01)
        self.startup_s = time.monotonic() - self.started

    def collect(self, data: Path, concurrency: int, limit: int, out: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(BIN / "ng_collect_rollouts"),
                f"+head_server.port={self.head_port}",
                f"+agent_name={OUR_AGENT}",
                f"+input_jsonl_fpath={data}",
                f"+output_jsonl_fpath={out}",
                f"+concurrency={concurrency}",
                f"+limit={limit}",
                "+progress_interval_s=3600",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )


class Theirs(Stack):
    name = "nemo_gym 0.7.0"

    def __init__(self, upstream: str, tmp: Path) -> None:
        self.head_port = free_port()
        servers = (
            "responses_api_models/openai_model",
            "responses_api_agents/simple_agent",
            "resources_servers/example_single_tool_call",
            "environment_servers/legacy_agent",
        )
        workdir = make_nemo_gym_workdir(tmp / "ng07-workdir", BASE_VENV, servers)
        root = site()
        self.ray_tmp = ray_tmpdir()
        configs = [
            "responses_api_models/openai_model/configs/openai_model.yaml",
            "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
        ]
        assert all((root / c).is_file() for c in configs)
        self.started = time.monotonic()
        self.process = Process(
            [
                str(BASE_VENV / "bin/ng_run"),
                f"+config_paths=[{','.join(configs)}]",
                f"+policy_base_url={upstream}",
                "+policy_api_key=sk-or-emulator-offline-key",
                "+policy_model_name=emulator/scripted-tool-caller",
                "+skip_venv_if_present=true",
                f"+uv_venv_dir={workdir}",
                "+head_server.host=127.0.0.1",
                f"+head_server.port={self.head_port}",
            ],
            cwd=workdir,
            env={**NG_ENV, "RAY_TMPDIR": str(self.ray_tmp)},
            log=tmp / "ng07-ng_run.log",
        )
        url = f"http://127.0.0.1:{self.head_port}/readyz"
        while True:
            if not self.process.alive():
                raise SystemExit(f"0.7 ng_run exited: {self.process.output(15)}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.startup_s = time.monotonic() - self.started
        self.cwd = tmp / "ng07-collect"
        self.cwd.mkdir(exist_ok=True)

    def collect(self, data: Path, concurrency: int, limit: int, out: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [
                str(BASE_VENV / "bin/gym"),
                "eval",
                "run",
                "--no-serve",
                "--agent",
                THEIR_AGENT,
                "--input",
                str(data),
                "--output",
                str(out),
                "--concurrency",
                str(concurrency),
                "--limit",
                str(limit),
                "--no-health-check",
                "--disable-aggregation",
                "+head_server.host=127.0.0.1",
                f"+head_server.port={self.head_port}",
            ],
            cwd=self.cwd,
            env={**os.environ, **NG_ENV},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)


@dataclass
class Run:
    stack: str
    concurrency: int
    rows: int
    reward: float
    wall_s: float
    cpu_s: float
    steady_s: float

    @property
    def rate(self) -> float:
        return self.rows / self.wall_s

    @property
    def steady_rate(self) -> float:
        return (self.rows - 1) / self.steady_s if self.steady_s > 0 else 0.0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / max(self.rows, 1) * 1000


def measure(stack: Stack, data: Path, concurrency: int, limit: int, tmp: Path) -> Run:
    out = tmp / f"{stack.name.split()[0]}-{concurrency}-{time.monotonic_ns()}" / "out.jsonl"
    out.parent.mkdir()
    before = stack.stack_cpu()
    started = time.monotonic()
    proc = stack.collect(data, concurrency, limit, out)
    first = last = None
    seen = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        try:
            with open(out, "rb") as f:
                count = f.read().count(b"\n")
        except OSError:
            count = 0
        now = time.monotonic()
        if count and first is None:
            first = now
        if count > seen:
            seen, last = count, now
        if pid:
            break
        time.sleep(0.02)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu = stack.stack_cpu() - before + usage.ru_utime + usage.ru_stime
    lines = out.read_text().splitlines() if out.is_file() else []
    rewards = [json.loads(line).get("reward") or 0.0 for line in lines]
    if proc.returncode != 0:
        print(f"  warning: {stack.name} collector exited {proc.returncode} with {len(lines)} rows", flush=True)
    steady = (last - first) if first is not None and last is not None else 0.0
    return Run(stack.name, concurrency, len(lines), sum(rewards) / max(len(rewards), 1), wall, cpu, steady)


def emulator(tmp: Path) -> tuple[Process, str]:
    port = free_port()
    process = Process(
        [str(BIN / "ng_emulator"), "--port", str(port)], cwd=ROOT, env=dict(os.environ), log=tmp / "emulator.log"
    )
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            if not process.alive():
                raise SystemExit(f"emulator exited: {process.output(15)}") from None
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="64,512")
    parser.add_argument("--rollouts", type=int, default=600, help="rows per run, at least 2 x concurrency")
    parser.add_argument("--reps", type=int, default=2, help="alternating runs per stack and level")
    parser.add_argument("--startups", type=int, default=2, help="start-ups per stack (alternating)")
    args = parser.parse_args()
    data = tasks_file(max(args.rollouts, 2 * max(int(c) for c in args.levels.split(",")), 1000))
    print(f"machine: {os.cpu_count()} cores (shared with other engineers' work), Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="ng07-bench-") as tmp_name:
        tmp = Path(tmp_name)
        upstream_process, upstream = emulator(tmp)
        try:
            startups: dict[str, list[float]] = {"ours": [], "nemo_gym 0.7.0": []}
            for _ in range(args.startups):
                for kind in (Ours, Theirs):
                    stack = kind(upstream, tmp)
                    startups[stack.name].append(stack.startup_s)
                    stack.stop()
            for name, times in startups.items():
                print(
                    f"start-up {name}: median {statistics.median(times):.1f} s ({', '.join(f'{t:.1f}' for t in times)})"
                )
            stacks: list[Stack] = [Ours(upstream, tmp), Theirs(upstream, tmp)]
            runs: list[Run] = []
            try:
                for stack in stacks:  # warm-up: connections, lazy imports
                    measure(stack, data, 64, 200, tmp)
                for concurrency in (int(c) for c in args.levels.split(",")):
                    for rep in range(args.reps):
                        order = stacks if rep % 2 == 0 else stacks[::-1]
                        for stack in order:
                            run = measure(stack, data, concurrency, max(args.rollouts, 2 * concurrency), tmp)
                            runs.append(run)
                            print(
                                f"  {run.stack} c={concurrency}: {run.rows} rows, reward {run.reward:.2f}, "
                                f"{run.rate:.1f} rollouts/s ({run.steady_rate:.1f} steady), "
                                f"{run.cpu_ms:.2f} CPU ms/rollout",
                                flush=True,
                            )
            finally:
                for stack in stacks:
                    stack.stop()
        finally:
            upstream_process.stop()
    print()
    print(
        "| stack | concurrency | rows/run | runs | rollouts/s end to end | rollouts/s steady "
        "| CPU ms/rollout | mean reward |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency in (int(c) for c in args.levels.split(",")):
        for name in ("ours", "nemo_gym 0.7.0"):
            mine = [r for r in runs if r.stack == name and r.concurrency == concurrency]
            if mine:
                print(
                    f"| {name} | {concurrency} | {mine[0].rows} | {len(mine)} | "
                    f"{statistics.median(r.rate for r in mine):.1f} | "
                    f"{statistics.median(r.steady_rate for r in mine):.1f} | "
                    f"{statistics.median(r.cpu_ms for r in mine):.2f} | "
                    f"{statistics.mean(r.reward for r in mine):.2f} |"
                )
    for name, times in startups.items():
        print(f"| {name} | start-up to ready | | {len(times)} | {statistics.median(times):.1f} s | | | |")


if __name__ == "__main__":
    main()
