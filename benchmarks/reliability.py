"""Reliability figures for docs/reliability.md: what survives what, measured, with the offline stack.

    .venv/bin/python benchmarks/reliability.py            # every section (about 10 minutes)
    .venv/bin/python benchmarks/reliability.py --quick    # fewer trials

Sections:
- kill and resume: SIGKILL the collector at random moments, resume each time; count rows,
  duplicates and gaps at the end;
- faults: 10%, 30% and 50% of provider calls fail (429, 5xx, errors in a 200, timeouts,
  malformed bodies) at ng_emulator, started apart so its bill can be read after the run;
  every rollout completes, and the cost in the metrics file equals what the emulator billed
  minus the malformed answers (billed, their cost unreadable: counted as unpriced calls);
- a dead provider (every call 503): how long until the run stops, how many calls it made;
- a low open-file limit (ulimit -n 1024): concurrency 500, 1000, 2048 complete;
- fuzzing: cases per class and outcomes (tests/test_fuzz.py with NG_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from failures import output_file, stopped  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "resources_servers/simple_weather/data/example.jsonl"
EMULATOR = "++provider_emulator.responses_api_models.provider_emulator"
MODEL = "++policy_model.responses_api_models.openai_model"
BASE = ["+config_paths=[configs/offline.yaml]", "+agent_name=simple_weather_simple_agent"]


def tasks(folder: Path, n: int) -> Path:
    path = folder / f"tasks_{n}.jsonl"
    lines = EXAMPLE.read_text().splitlines()
    path.write_text("".join(lines[i % len(lines)] + "\n" for i in range(n)))
    return path


def rows(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()] if path.exists() else []


def metrics(out: Path) -> dict:
    return orjson.loads(out.with_name(out.stem + "_metrics.json").read_bytes())


def collect(*args: str, limit_fds: int | None = None, timeout: float = 900, base: list[str] = BASE):
    pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit_fds, limit_fds))) if limit_fds else None
    result = subprocess.run([str(BIN / "ng_collect_rollouts"), *base, *args], cwd=ROOT, capture_output=True,
                            text=True, timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=pre)  # fmt: skip
    if result.returncode != 0 and not result.stdout.strip():  # no summary: it never ran (a server did not start)
        raise stopped("ng_collect_rollouts", result.returncode, result.stderr.splitlines())
    return result


def kill_and_resume(folder: Path, n: int, kills: int) -> str:
    inp, out = tasks(folder, n), folder / "killed.jsonl"
    rng = random.Random(0)
    done_kills = 0
    for trial in range(kills + 1):
        args = [f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}", "+concurrency=32",
                f"{EMULATOR}.latency_ms=5"] + (["+resume=true"] if trial else [])  # fmt: skip
        proc = subprocess.Popen([str(BIN / "ng_collect_rollouts"), *BASE, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
        if trial < kills:
            time.sleep(rng.uniform(1.5, 4.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                done_kills += 1
        proc.wait(600)
    got = rows(out)
    pairs = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in got]
    return (
        f"{done_kills} SIGKILLs of the collector at random moments, each followed by +resume=true: "
        f"{len(set(pairs))}/{n} distinct rollouts, {len(pairs) - len(set(pairs))} duplicates, "
        f"{n - len(set(pairs))} missing"
    )


def faults(folder: Path, n: int, rate: float) -> str:
    inp, out = tasks(folder, n), folder / f"faults_{rate}.jsonl"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kinds = "429,500,502,503,error_200,stall,malformed"
    errors = output_file()
    emulator = subprocess.Popen([str(BIN / "ng_emulator"), "--port", str(port), "--fault-rate", str(rate),
                                 "--fault-kinds", kinds, "--retry-after-seconds", "0.05", "--stall-seconds", "60"],
                                stdout=subprocess.DEVNULL, stderr=errors)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            if emulator.poll() is not None:
                raise stopped("ng_emulator", emulator.returncode, errors)
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        base = ["+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml,"
                "resources_servers/simple_weather/configs/simple_weather.yaml]", BASE[1],
                f"+policy_base_url={url}/api/v1", "+policy_api_key=sk-or-v1-anything",
                "+policy_model_name=emulator/scripted-tool-caller"]  # fmt: skip
        args = [f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}", "+concurrency=64",
                f"{MODEL}.read_timeout_s=1", f"{MODEL}.max_attempts=10", f"{MODEL}.backoff_base_s=0.02",
                f"{MODEL}.backoff_max_s=0.2", f"{MODEL}.max_concurrency=2048"]  # fmt: skip
        started = time.monotonic()
        result = collect(*args, base=base)
        wall = time.monotonic() - started
        time.sleep(1)  # the timed-out calls' hang-ups reach the emulator
        billed = httpx.get(url + "/emulator/stats", timeout=10).json()
    finally:
        emulator.send_signal(signal.SIGINT)
        emulator.wait(30)
    m = metrics(out)
    unreadable = billed["cost_by_fault"].get("malformed", 0.0)
    faulted = sum(billed["faults"].values())
    return (
        f"{rate:.0%} of provider calls faulted ({kinds}): {billed['completion_requests']} calls, {faulted} faults "
        f"{billed['faults']}; {m['succeeded']}/{n} rollouts completed, {m['failed']} failed, in {wall:.1f} s "
        f"(exit {result.returncode}); upstream retries by kind {m['retries']['upstream']}; cost in the metrics file "
        f"${m['cost_usd']:.8f}, emulator billed ${billed['cost']:.8f} of which ${unreadable:.8f} for "
        f"{billed['faults'].get('malformed', 0)} malformed answers (metrics: {m['cost']['unpriced_upstream_calls']} "
        f"unpriced calls); billed - unreadable - metrics = {billed['cost'] - unreadable - m['cost_usd']:.2e}"
    )


def dead_provider(folder: Path, n: int) -> str:
    inp, out = tasks(folder, n), folder / "dead.jsonl"
    args = [f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}", "+concurrency=10",
            f"{EMULATOR}.fault_rate=1.0", f"{EMULATOR}.fault_kinds=[503]", "+max_failures=100000"]  # fmt: skip
    started = time.monotonic()
    result = collect(*args)
    wall = time.monotonic() - started
    m = metrics(out)
    return (
        f"every provider call answered 503, {n} tasks at concurrency 10, default retries and +circuit_breaker=20: "
        f"stopped after {wall:.1f} s with {m['failed']} rollouts failed and {sum(m['retries']['upstream'].values())} "
        f"upstream retries (exit {result.returncode}; before: ~18.7 upstream calls per rollout, ~28 minutes for 2,000)"
    )


def low_fd_limit(folder: Path, n: int) -> str:
    inp = tasks(folder, n)
    parts = []
    for concurrency in (500, 1000, 2048):
        out = folder / f"ulimit_{concurrency}.jsonl"
        result = collect(f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}", f"+concurrency={concurrency}",
                         limit_fds=1024)  # fmt: skip
        m = metrics(out)
        parts.append(
            f"c={concurrency}: {m['succeeded']}/{n} completed, {m['failed']} failed (exit {result.returncode})"
        )
    return "ulimit -n 1024 (hard limit too): " + "; ".join(parts)


def fuzz(examples: int) -> str:
    log = Path(tempfile.mkstemp(suffix=".txt")[1])
    env = {**os.environ, "NG_FUZZ_EXAMPLES": str(examples), "NG_FUZZ_LOG": str(log)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz.py"],
                            cwd=ROOT, capture_output=True, text=True, env=env)  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:]
    return f"fuzzing, {examples} cases per target ({summary}):\n" + log.read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    quick = args.quick
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print("-", kill_and_resume(folder, 2000 if quick else 4000, 5 if quick else 20), flush=True)
        for rate in (0.1, 0.3, 0.5):
            print("-", faults(folder, 200 if quick else 1000, rate), flush=True)
        print("-", dead_provider(folder, 2000), flush=True)
        print("-", low_fd_limit(folder, 2048 if quick else 4096), flush=True)
    print("-", fuzz(200 if quick else 1000), flush=True)


if __name__ == "__main__":
    main()
