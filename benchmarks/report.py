"""Wall time and memory of ``ng_report`` end to end, on a large synthetic sweep.

    .venv/bin/python benchmarks/report.py                      # 5 variants x 100,000 rows
    .venv/bin/python benchmarks/report.py --tasks 2500         # smaller
    .venv/bin/python benchmarks/report.py --screenshot docs/img/report.png --tasks 40 --variants 4

Writes a sweep directory (``benchmarks/.data/report_sweep_<tasks>x<repeats>x<variants>/``,
reused when present): one ``<variant>.jsonl`` per variant of realistic rows (1-2 KB each:
prompt, tool definitions, a tool call, its output, an answer, usage with cost, provider,
latency, requested model, a category), their ``_failures.jsonl`` and ``_metrics.json``, and
``sweep.json``. Then runs ``ng_report`` on it as a subprocess, ``--runs`` times, printing
wall seconds, CPU seconds of every process, the peak RSS of the largest process (getrusage
of the children) and the peak of the whole process tree's PSS (sampled from /proc every
20 ms: ng_report forks readers, whose pages are shared with it until written).

With ``--screenshot PNG`` it instead renders a small sweep's report.html in headless
Chromium (scripts/setup_browser) to PNG, for docs/compare.md.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA = ROOT / "benchmarks" / ".data"

#: name, requested model, skill (logit), USD per 1M tokens in/out, providers, fallback model
VARIANTS = [
    ("gpt-4o-mini", "openai/gpt-4o-mini", 0.3, (0.15, 0.6), ["OpenAI", "Azure"], None),
    ("claude-3.5-haiku", "anthropic/claude-3.5-haiku", 0.8, (0.8, 4.0), ["Anthropic", "Google"], None),
    (
        "llama-3.3-70b-nitro",
        "meta-llama/llama-3.3-70b-instruct:nitro",
        0.1,
        (0.12, 0.3),
        ["Groq", "Together", "DeepInfra"],
        "meta-llama/llama-3.1-70b-instruct",
    ),
    ("qwen-2.5-72b", "qwen/qwen-2.5-72b-instruct", -0.2, (0.13, 0.4), ["DeepInfra", "Hyperbolic"], None),
    ("gpt-4o-t0.7", "openai/gpt-4o", 1.3, (2.5, 10.0), ["OpenAI"], None),
]
CATEGORIES = ["weather", "unit conversion", "travel planning", "lookup", "arithmetic"]
CITIES = ["San Francisco", "London", "Tokyo", "Lagos", "Lima", "Oslo", "Mumbai", "Sydney", "Toronto", "Cairo"]
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the current weather in a city, with temperature in Celsius and a condition.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name, e.g. 'Paris'."}},
            "required": ["city"],
        },
    },
    {
        "type": "function",
        "name": "convert_units",
        "description": "Convert a quantity between units of length, mass or temperature.",
        "parameters": {
            "type": "object",
            "properties": {"value": {"type": "number"}, "from": {"type": "string"}, "to": {"type": "string"}},
            "required": ["value", "from", "to"],
        },
    },
]


def _task(i: int) -> tuple[str, str, float, str]:
    rng = random.Random(i)
    category = CATEGORIES[i % len(CATEGORIES)]
    city = rng.choice(CITIES)
    prompt = (
        f"Task {i} ({category}): I am planning a trip to {city} next week and need to know what to pack. "
        f"What is the weather like there right now, and should I bring an umbrella or a warm coat?"
    )
    return category, city, rng.gauss(0.0, 1.3), prompt


def _row(task: int, rollout: int, v: int, rng: random.Random) -> tuple[dict | None, dict | None]:
    name, model, skill, (price_in, price_out), providers, fallback = VARIANTS[v]
    category, city, difficulty, prompt = _task(task)
    if rng.random() < 0.004:
        kind = rng.choice(["timeout", "rate_limit", "server"])
        return None, {
            "_ng_task_index": task,
            "_ng_rollout_index": rollout,
            "error_type": kind,
            "message": f"upstream {kind} after 3 attempts",
            "attempts": 3,
            "cost_usd": round(rng.random() * 1e-4, 8) if kind == "timeout" else None,
        }
    passed = rng.random() < 1 / (1 + math.exp(difficulty - skill))
    tokens_in, tokens_out = rng.randint(300, 700), rng.randint(20, 160)
    served = fallback if fallback and rng.random() < 0.03 else model.split(":")[0]
    answer_city = city if passed else rng.choice(CITIES)
    condition = rng.choice(["foggy", "sunny", "rainy", "windy"])
    call_id = f"call_{task:06d}{rollout:02d}{v}"
    response = {
        "id": f"gen-{task}-{rollout}-{v}",
        "object": "response",
        "model": served,
        "output": [
            {
                "type": "function_call",
                "call_id": call_id,
                "name": "get_weather",
                "arguments": orjson.dumps({"city": answer_city}).decode(),
            },
            {
                "type": "function_call_output",
                "call_id": call_id,
                "output": orjson.dumps({"city": answer_city, "condition": condition, "temperature_c": 14}).decode(),
            },
            {
                "type": "message",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": f"In {answer_city} it is {condition} and 14 °C. "
                        + ("Bring an umbrella." if condition == "rainy" else "A light jacket will do."),
                    }
                ],
            },
        ],
        "usage": {
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
            "cost": round((tokens_in * price_in + tokens_out * price_out) / 1e6, 10),
        },
        "provider": rng.choice(providers),
    }
    row = {
        "responses_create_params": {"input": [{"role": "user", "content": prompt}], "tools": TOOLS},
        "meta": {"category": category},
        "expected_answer": city,
        "response": response,
        "reward": 1.0 if passed else 0.0,
        "_ng_task_index": task,
        "_ng_rollout_index": rollout,
        "_ng_variant": name,
        "_ng_requested_model": model,
        "_ng_latency_s": round(rng.lognormvariate(math.log(0.8 + skill * 0.3 + 0.5), 0.45), 4),
    }
    return row, None


def make_sweep(tasks: int, repeats: int, variants: int, out: Path) -> Path:
    """A sweep directory of ``variants`` x ``tasks`` x ``repeats`` rollouts (reused when present)."""
    if (out / "sweep.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for v in range(variants):
        name, model, *_ = VARIANTS[v % len(VARIANTS)]
        rng = random.Random(v)
        rows = failures = 0
        with (out / f"{name}.jsonl").open("wb") as f, (out / f"{name}_failures.jsonl").open("wb") as ff:
            for task in range(tasks):
                for rollout in range(repeats):
                    row, failure = _row(task, rollout, v % len(VARIANTS), rng)
                    if row is not None:
                        f.write(orjson.dumps(row) + b"\n")
                        rows += 1
                    else:
                        ff.write(orjson.dumps(failure) + b"\n")
                        failures += 1
        if not failures:
            (out / f"{name}_failures.jsonl").unlink()
        wall = (rows + failures) / rng.uniform(150, 400)
        metrics = {
            "rollouts": rows + failures,
            "succeeded": rows,
            "failed": failures,
            "wall_time_s": wall,
            "rollouts_per_s": (rows + failures) / wall,
            "run": {"requested_model": model, "num_repeats": repeats, "temperature": 0.7 if "t0.7" in name else 0.0},
        }
        (out / f"{name}_metrics.json").write_bytes(orjson.dumps(metrics))
        overrides = {"policy_model_name": model, "+num_repeats": repeats}
        manifest.append({"name": name, "output": f"{name}.jsonl", "model": model, "overrides": overrides})
    (out / "sweep.json").write_bytes(orjson.dumps({"variants": manifest}, option=orjson.OPT_INDENT_2))
    return out


def _pss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            with open(f"/proc/{parent}/task/{parent}/children") as f:
                children = [int(p) for p in f.read().split()]
        except OSError:
            children = []
        pids += children
        frontier += children
    return pids


def run_report(sweep: Path, report_dir: Path) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds (all processes), peak RSS MiB of the largest process, peak
    PSS MiB of the process tree."""
    shutil.rmtree(report_dir, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "ng_report"), str(sweep), f"+report_dir={report_dir}"], stdout=subprocess.DEVNULL
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _pss_kib(_tree(proc.pid)))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"ng_report exited with {code}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_maxrss / 1024, peak / 1024


def screenshot(png: Path, tasks: int, variants: int) -> None:
    subprocess.run(["bash", str(ROOT / "scripts/setup_browser")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        sweep = make_sweep(tasks, 4, variants, Path(tmp) / "results" / "sweep")
        subprocess.run([str(BIN / "ng_report"), "results/sweep"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        html = sweep / "report" / "report.html"
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={tmp}/profile",
                "--window-size=1400,2200",
                f"--screenshot={png.resolve()}",
                html.as_uri(),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    print(f"wrote {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=25_000, help="tasks per variant (default 25,000)")
    parser.add_argument("--repeats", type=int, default=4, help="rollouts per task (default 4)")
    parser.add_argument("--variants", type=int, default=5, help="variants, at most 5 (default 5)")
    parser.add_argument("--runs", type=int, default=3, help="ng_report runs (default 3)")
    parser.add_argument("--screenshot", type=Path, help="write a PNG of a small sweep's report.html instead")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot, args.tasks, args.variants)
        return
    sweep = DATA / f"report_sweep_{args.tasks}x{args.repeats}x{args.variants}"
    started = time.perf_counter()
    make_sweep(args.tasks, args.repeats, args.variants, sweep)
    size = sum(p.stat().st_size for p in sweep.glob("*.jsonl"))
    rows = sum(1 for p in sweep.glob("*.jsonl") if not p.name.endswith("_failures.jsonl") for _ in p.open("rb"))
    print(f"sweep {sweep}: {rows} rows, {size / 2**20:.0f} MiB ({time.perf_counter() - started:.1f} s to make or find)")
    print(f"{'run':>4} {'wall s':>8} {'CPU s':>7} {'peak RSS MiB (largest process)':>32} {'peak PSS MiB (all)':>19}")
    walls = []
    for i in range(args.runs):
        wall, cpu, rss, pss = run_report(sweep, sweep / "report")
        walls.append(wall)
        print(f"{i + 1:>4} {wall:>8.2f} {cpu:>7.2f} {rss:>32.0f} {pss:>19.0f}")
    print(f"median wall {sorted(walls)[len(walls) // 2]:.2f} s on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
