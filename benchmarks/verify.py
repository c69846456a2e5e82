"""Verifications per second and latency of each environment's verify function, in process.

    .venv/bin/python benchmarks/verify.py              # about a minute
    .venv/bin/python benchmarks/verify.py --quick      # a few seconds

One thread, no HTTP: what one verification costs the resources server's CPU. Inputs are
the shipped rows with their scripted (right) replies and a wrong reply each, cycled, so
math-verify's small parse caches mostly miss, as they would in a real run. Rows:

- math: ``verify_answer(expected, text)`` on freshly generated problems, each input once;
  through the kernel's offload pool (``WorkerPool``: what the math server's ``/verify`` runs,
  spawned worker processes, one call in flight per worker, latency from submit to result);
  and ``verify_with_timeout`` (a child process per call: the stand-alone deadline);
- mcqa: ``verify(row, text)``;
- multi_step_tools: ``verify_world(world, row)`` on a played world; and a whole rollout's
  world work (``World.from_seed``, every scripted tool call, ``verify_world``);
- llm_judge: ``parse_verdict`` + ``judge_result`` on judge replies; and
  ``build_judge_request`` (the judge's own latency is the judge model's, not measured here);
- ``POST /verify`` of each environment's server (``/seed_session`` + ``/verify`` for
  multi_step_tools), called as raw ASGI messages on ``asgi(server)``, the app production
  serves: routing, JSON in and out, and the verify (math's through its offload pool). No
  sockets and no HTTP client, so this is the resources server's own cost per verification.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from functools import partial
from importlib.metadata import version
from itertools import cycle, islice
from pathlib import Path
from typing import Any

from nemo_gym_cli.server import Server, asgi
from nemo_gym_cli.server.offload import WorkerPool
from nemo_gym_cli.wire import dumps
from resources_servers.llm_judge.judge import build_judge_request, judge_result, parse_verdict
from resources_servers.math.app import Math
from resources_servers.math.generate import generate as generate_math
from resources_servers.math.verifier import verify_answer, verify_with_timeout
from resources_servers.mcqa.app import MultipleChoice
from resources_servers.mcqa.verifier import verify as verify_mcqa
from resources_servers.multi_step_tools.app import MultiStepTools
from resources_servers.multi_step_tools.world import World, verify_world

ROOT = Path(__file__).resolve().parent.parent / "resources_servers"


def rows(env: str, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ROOT / env / "data" / name).read_text(encoding="utf-8").splitlines()]


def script(row: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(row["responses_create_params"]["metadata"]["emulator_script"])


def measure(name: str, calls: list[Callable[[], Any]], seconds: float, warmup: int = 20) -> dict[str, Any]:
    """Run the calls round-robin for about ``seconds``; per-call latencies in ms."""
    for call in islice(cycle(calls), warmup):
        call()
    latencies: list[float] = []
    start = time.perf_counter()
    for call in cycle(calls):
        t0 = time.perf_counter()
        call()
        latencies.append((time.perf_counter() - t0) * 1000)
        if time.perf_counter() - start >= seconds and len(latencies) >= len(calls):
            break
    return summary(name, latencies, time.perf_counter() - start)


def summary(name: str, latencies: list[float], elapsed: float) -> dict[str, Any]:
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "name": name,
        "n": len(latencies),
        "per_s": len(latencies) / elapsed,
        "p50": cuts[49],
        "p95": cuts[94],
        "p99": cuts[98],
        "max": max(latencies),
    }


def measure_pool(name: str, calls: list[tuple[Any, ...]], workers: int, seconds: float) -> dict[str, Any]:
    """``verify_answer(*args)`` through the kernel's ``WorkerPool`` with ``workers`` processes
    and as many calls in flight; per-call latency (submit to result) in ms."""

    async def run() -> dict[str, Any]:
        async with WorkerPool(workers) as pool:
            # Start every worker and import math-verify in it before timing.
            await asyncio.gather(*(pool.run(verify_answer, args, 60.0) for args in calls[: workers * 4]))
            latencies: list[float] = []
            todo = cycle(calls)
            start = time.perf_counter()

            async def lane() -> None:
                while time.perf_counter() - start < seconds:
                    t0 = time.perf_counter()
                    await pool.run(verify_answer, next(todo), 60.0)
                    latencies.append((time.perf_counter() - t0) * 1000)

            await asyncio.gather(*(lane() for _ in range(workers)))
            return summary(name, latencies, time.perf_counter() - start)

    return asyncio.run(run())


#: One request: (path, JSON body bytes, headers).
Call = tuple[str, bytes, list[tuple[bytes, bytes]]]


async def asgi_post(app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """POST ``body`` to ``app`` as an ASGI server would; returns the status."""
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b""}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return int(sent[0]["status"])


def measure_server(name: str, server: Server, jobs: list[list[Call]], seconds: float) -> dict[str, Any]:
    """Each job's requests in order, one job at a time, through ``asgi(server)``; per-job ms."""

    async def run() -> dict[str, Any]:
        app = asgi(server)
        await server.startup()
        try:
            for job in islice(cycle(jobs), 20):  # warm up (math: the worker and its imports)
                for call in job:
                    assert await asgi_post(app, *call) == 200
            latencies: list[float] = []
            start = time.perf_counter()
            for job in cycle(jobs):
                t0 = time.perf_counter()
                for call in job:
                    await asgi_post(app, *call)
                latencies.append((time.perf_counter() - t0) * 1000)
                if time.perf_counter() - start >= seconds and len(latencies) >= len(jobs):
                    break
            return summary(name, latencies, time.perf_counter() - start)
        finally:
            await server.shutdown()

    return asyncio.run(run())


def reply(text: str) -> dict[str, Any]:
    return {"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


def verify_jobs(rows_and_texts: list[tuple[dict[str, Any], str]], seed: bool = False) -> list[list[Call]]:
    """``/verify`` of each row with the reply ``text`` (after ``/seed_session`` if ``seed``)."""
    jobs = []
    for i, (row, text) in enumerate(rows_and_texts):
        headers = [(b"content-type", b"application/json"), (b"x-ng-session-id", f"bench-{i}".encode())]
        verify = ("/verify", dumps({**row, "response": reply(text)}), headers)
        jobs.append([("/seed_session", dumps(row), headers), verify] if seed else [verify])
    return jobs


def server_measurements(seconds: float) -> list[dict[str, Any]]:
    math_rows = list(generate_math(400, seed=3))
    mcqa_rows = rows("mcqa", "questions.jsonl")
    tasks = rows("multi_step_tools", "tasks.jsonl")
    return [
        measure_server(
            "math: POST /verify (asgi(Math()), offload pool of 2)",
            Math(),
            verify_jobs([(row, script(row)[0]["text"]) for row in math_rows]),
            seconds,
        ),
        measure_server(
            "mcqa: POST /verify (asgi(MultipleChoice()))",
            MultipleChoice(),
            verify_jobs([(row, script(row)[0]["text"]) for row in mcqa_rows]),
            seconds,
        ),
        measure_server(
            "multi_step_tools: POST /seed_session + /verify (asgi(MultiStepTools()))",
            MultiStepTools(),
            verify_jobs([(row, script(row)[-1]["text"]) for row in tasks], seed=True),
            seconds,
        ),
    ]


def off_by_one(answer: str) -> str:
    """The answer with its last number changed: a wrong reply that still parses."""
    match = list(re.finditer(r"\d+", answer))[-1]
    return f"{answer[: match.start()]}{int(match.group()) + 1}{answer[match.end() :]}"


def math_calls(n: int) -> list[Callable[[], Any]]:
    """Fresh problems (seed 1, not the shipped ones), each verified once right and once
    wrong, so no input repeats and parse caches do not flatter the figure."""
    calls: list[Callable[[], Any]] = []
    for row in generate_math(n, seed=1):
        expected = row["expected_answer"]
        calls.append(partial(verify_answer, expected, script(row)[0]["text"]))
        calls.append(partial(verify_answer, expected, f"The final answer is $\\boxed{{{off_by_one(expected)}}}$."))
    return calls


def math_pool_args(n: int) -> list[tuple[str, str]]:
    """The same inputs as ``math_calls``, as ``verify_answer`` arguments (seed 2: new to the pool)."""
    args: list[tuple[str, str]] = []
    for row in generate_math(n, seed=2):
        expected = row["expected_answer"]
        args.append((expected, script(row)[0]["text"]))
        args.append((expected, f"The final answer is $\\boxed{{{off_by_one(expected)}}}$."))
    return args


def math_timeout_calls() -> list[Callable[[], Any]]:
    return [
        partial(verify_with_timeout, row["expected_answer"], script(row)[0]["text"], 5.0)
        for row in rows("math", "problems.jsonl")
    ]


def mcqa_calls() -> list[Callable[[], Any]]:
    calls: list[Callable[[], Any]] = []
    for row in rows("mcqa", "questions.jsonl"):
        calls.append(partial(verify_mcqa, row, script(row)[0]["text"]))
        calls.append(partial(verify_mcqa, row, "I think the answer is (A) or maybe (B)."))
    return calls


def play(row: dict[str, Any]) -> World:
    world = World.from_seed(row["world"])
    for turn in script(row):
        for call in turn.get("tool_calls", ()):
            world.call(call["name"], call["arguments"])
    return world


def play_and_verify(row: dict[str, Any]) -> dict[str, Any]:
    return verify_world(play(row), row)


def multi_step_calls() -> tuple[list[Callable[[], Any]], list[Callable[[], Any]]]:
    tasks = rows("multi_step_tools", "tasks.jsonl")
    verify_only = [partial(verify_world, play(row), row) for row in tasks]
    whole = [partial(play_and_verify, row) for row in tasks]
    return verify_only, whole


def parse_and_score(text: str) -> dict[str, Any]:
    return judge_result(parse_verdict(text))


def judge_calls() -> tuple[list[Callable[[], Any]], list[Callable[[], Any]]]:
    questions = rows("llm_judge", "questions.jsonl")
    replies = [row["judge_script"][0]["text"] for row in questions] + [
        "**Reasoning:** The date is wrong.\n**Score:** 0.1\n**Verdict:** INCORRECT",
        '```json\n{"reasoning": "Same fact.", "score": 0.95, "verdict": "CORRECT"}\n```',
        "The answer contradicts the reference.\n\nINCORRECT",
        "I think the answer is right.",
    ]
    parse = [partial(parse_and_score, text) for text in replies]
    build = [partial(build_judge_request, row, script(row)[0]["text"], "judge/model") for row in questions]
    return parse, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about a second each)")
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 8.0
    ms_verify, ms_rollout = multi_step_calls()
    pool_args = math_pool_args(200 if args.quick else 2000)
    workers = max(2, os.cpu_count() or 2)
    judge_parse, judge_build = judge_calls()
    results = [
        measure("math: verify_answer", math_calls(200 if args.quick else 2000), seconds),
        measure_pool("math: verify_answer in the offload pool, 1 worker", pool_args, 1, seconds),
        measure_pool(f"math: verify_answer in the offload pool, {workers} workers", pool_args, workers, seconds),
        measure("math: verify_with_timeout (a child per call)", math_timeout_calls(), seconds / 2, warmup=3),
        measure("mcqa: verify", mcqa_calls(), seconds),
        measure("multi_step_tools: verify_world", ms_verify, seconds),
        measure("multi_step_tools: from_seed + scripted calls + verify_world", ms_rollout, seconds),
        measure("llm_judge: parse_verdict + judge_result", judge_parse, seconds),
        measure("llm_judge: build_judge_request", judge_build, seconds),
        *server_measurements(seconds),
    ]
    print(
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"math-verify {version('math-verify')}, one thread (the offload rows: worker processes), "
        f"{'--quick' if args.quick else 'full'} run\n"
    )
    print("| verify function | calls | verifications/s | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['name']} | {r['n']} | {r['per_s']:,.0f} | {r['p50']:.3f} | {r['p95']:.3f} | "
            f"{r['p99']:.3f} | {r['max']:.1f} |"
        )


if __name__ == "__main__":
    main()
