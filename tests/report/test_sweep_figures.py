"""A real offline sweep of three emulated models, then every figure of its report against a
hand computation from the output rows (plain Python, none of the report's code), and every
cost against what the emulator billed.

The stack runs under ``ng_run`` (``configs/offline_sweep.yaml`` + mcqa, the three models in
``allowed_models``), so the emulator's ``/emulator/stats`` can be read after the collection;
24 tasks x 3 repeats per variant, each repeat its own seed (``+num_repeats_add_seed``), so
the emulated models' repeats differ and pass@2, pass@3 are not pass@1.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from support.cli import NgRun, run_cli

pytestmark = pytest.mark.e2e

MODELS = ["emulator/small", "emulator/medium", "emulator/large"]
NAMES = [m.replace("/", "__") for m in MODELS]
TASKS, REPEATS = 24, 3
#: How far our own resampling may land from the report's (another random stream; 2,000
#: resamples of 24 tasks move a percentile by about 0.01).
TOLERANCE = 0.04


def _rows(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _task_rewards(rows: list[dict[str, Any]]) -> dict[int, float]:
    by_task: dict[int, list[float]] = {}
    for row in rows:
        by_task.setdefault(row["_ng_task_index"], []).append(row["reward"])
    return {task: sum(rewards) / len(rewards) for task, rewards in by_task.items()}


def _percentiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    at = lambda q: ordered[round(q * (len(ordered) - 1))]  # noqa: E731
    return at(0.025), at(0.975)


def _bootstrap(values: list[float], rng: random.Random) -> tuple[float, float]:
    n = len(values)
    return _percentiles([sum(rng.choices(values, k=n)) / n for _ in range(2000)])


def _sign_flip_p(diffs: list[float], rng: random.Random) -> float:
    observed = abs(sum(diffs) / len(diffs))
    extreme = sum(
        abs(sum(d if rng.random() < 0.5 else -d for d in diffs) / len(diffs)) >= observed - 1e-12 for _ in range(10_000)
    )
    return (1 + extreme) / 10_001


def _pass_at_k(passes: list[int], n: int, k: int) -> float:
    return statistics.fmean(1 - math.comb(n - c, k) / math.comb(n, k) for c in passes)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Collect the sweep under ng_run, read the emulator's bill, run ng_report over it."""
    tmp = tmp_path_factory.mktemp("sweep")
    run = NgRun(
        f"++policy_model.responses_api_models.openai_model.allowed_models=[{','.join(MODELS)}]",
        config="+config_paths=[configs/offline_sweep.yaml,resources_servers/mcqa/configs/mcqa.yaml]",
    )
    try:
        run.wait_ready()
        collected = run_cli(
            "ng_collect_rollouts", f"+head_server.port={run.head_port}", "+agent_name=mcqa_simple_agent",
            "+input_jsonl_fpath=resources_servers/mcqa/data/questions.jsonl", f"+limit={TASKS}",
            f"+num_repeats={REPEATS}", "+num_repeats_add_seed=true", "+concurrency=24",
            f"+models=[{','.join(MODELS)}]", f"+output_jsonl_fpath={tmp / 'mcqa.jsonl'}",
        )  # fmt: skip
        billed = httpx.get(run.url_of("provider_emulator") + "/emulator/stats", timeout=10).json()
    finally:
        run.stop()
    assert collected.returncode == 0, collected.stderr
    reported = run_cli("ng_report", str(tmp / "mcqa"), "+group_by=subject")
    assert reported.returncode == 0, reported.stderr
    report = orjson.loads((tmp / "mcqa" / "report" / "report.json").read_bytes())
    rows = {name: _rows(tmp / "mcqa" / f"{name}.jsonl") for name in NAMES}
    metrics = {name: orjson.loads((tmp / "mcqa" / f"{name}_metrics.json").read_bytes()) for name in NAMES}
    return {"rows": rows, "billed": billed, "report": report, "table": reported.stdout, "metrics": metrics}


def _variant(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in report["variants"] if v["name"] == name)


def test_each_variant_is_served_by_its_own_model_and_they_differ_in_accuracy_latency_and_cost(sweep) -> None:
    rows, billed = sweep["rows"], sweep["billed"]
    means, medians, costs = [], [], []
    for model, name in zip(MODELS, NAMES, strict=True):
        assert len(rows[name]) == TASKS * REPEATS
        assert {r["response"]["model"] for r in rows[name]} == {model}
        assert {r["_ng_requested_model"] for r in rows[name]} == {model}
        means.append(statistics.fmean(r["reward"] for r in rows[name]))
        medians.append(statistics.median(r["_ng_latency_s"] for r in rows[name]))
        costs.append(sum(r["response"]["usage"]["cost"] for r in rows[name]))
    assert billed["served_by_model"] == dict.fromkeys(MODELS, TASKS * REPEATS)
    assert len(set(means)) == 3 and means[0] < means[2]  # small is right less often than large
    assert medians[0] < medians[1] < medians[2]  # 20, 60, 150 ms of emulated latency
    assert costs[0] < costs[1] < costs[2]
    assert not sweep["report"]["warnings"]
    # Each variant's rollouts/s is over its own time: the fast model finishes first.
    rates = [sweep["metrics"][name]["rollouts_per_s"] for name in NAMES]
    assert rates[0] > rates[2], rates


def test_every_variant_figure_matches_a_hand_computation_and_the_emulator_s_bill(sweep) -> None:
    report, billed = sweep["report"], sweep["billed"]
    assert [v["name"] for v in report["variants"]] == NAMES
    for model, name in zip(MODELS, NAMES, strict=True):
        rows, v = sweep["rows"][name], _variant(report, name)
        tasks = _task_rewards(rows)
        mean = statistics.fmean(tasks.values())
        assert (v["rollouts"], v["failed"], v["tasks"]) == (TASKS * REPEATS, 0, TASKS)
        assert v["reward"]["mean"] == pytest.approx(mean)
        assert v["reward"]["mean_succeeded"] == pytest.approx(statistics.fmean(r["reward"] for r in rows))
        low, high = _bootstrap(list(tasks.values()), random.Random(name))
        assert v["reward"]["ci95_low"] == pytest.approx(low, abs=TOLERANCE)
        assert v["reward"]["ci95_high"] == pytest.approx(high, abs=TOLERANCE)
        assert v["reward"]["ci95_low"] <= mean <= v["reward"]["ci95_high"]

        passes = [sum(r["reward"] >= 1.0 for r in rows if r["_ng_task_index"] == t) for t in tasks]
        expected = {str(k): _pass_at_k(passes, REPEATS, k) for k in range(1, REPEATS + 1)}
        assert v["pass_at_k"] == pytest.approx(expected)
        assert v["pass_at_k_tasks"] == dict.fromkeys(expected, TASKS)

        cost = sum(r["response"]["usage"]["cost"] for r in rows)
        solved = sum(reward >= 1.0 for reward in tasks.values())
        assert v["cost"]["total_usd"] == pytest.approx(cost, rel=1e-9)
        assert v["cost"]["total_usd"] == pytest.approx(billed["cost_by_model"][model], rel=1e-9)
        assert v["cost"]["per_rollout_usd"] == pytest.approx(cost / len(rows), rel=1e-9)
        assert v["solved_tasks"] == solved > 0
        assert v["cost"]["per_solved_task_usd"] == pytest.approx(cost / solved, rel=1e-9)
        assert v["tokens_in"] == sum(r["response"]["usage"]["input_tokens"] for r in rows)
        assert v["tokens_out"] == sum(r["response"]["usage"]["output_tokens"] for r in rows)
        latencies = sorted(r["_ng_latency_s"] for r in rows)
        assert v["latency"]["p50_s"] == pytest.approx(statistics.median(latencies))
        assert v["fallback"]["share"] == 0.0 and v["models"] == {model: len(rows)}
    assert sum(v["cost"]["total_usd"] for v in report["variants"]) == pytest.approx(billed["cost"], rel=1e-9)


def test_every_paired_difference_its_interval_and_p_value_match_a_hand_computation(sweep) -> None:
    comparisons = {(c["a"], c["b"]): c for c in sweep["report"]["comparisons"]}
    assert len(comparisons) == 3
    for a, b in itertools.combinations(NAMES, 2):
        c = comparisons[a, b]
        ta, tb = _task_rewards(sweep["rows"][a]), _task_rewards(sweep["rows"][b])
        diffs = [tb[t] - ta[t] for t in sorted(ta)]
        diff = statistics.fmean(diffs)
        assert c["tasks"] == TASKS and c["diff"] == pytest.approx(diff)
        low, high = _bootstrap(diffs, random.Random(f"{a} {b}"))
        assert c["ci95_low"] == pytest.approx(low, abs=TOLERANCE)
        assert c["ci95_high"] == pytest.approx(high, abs=TOLERANCE)
        assert c["ci95_low"] <= diff <= c["ci95_high"]
        p = _sign_flip_p(diffs, random.Random(f"{b} {a}"))
        assert c["p_value"] == pytest.approx(p, abs=0.02)
        assert c["significant"] == (c["p_value"] < 0.05)
        if abs(p - 0.05) > 0.02:  # away from the threshold both tests must agree on significance
            assert c["significant"] == (p < 0.05)
        better, worse = (b, a) if diff > 0 else (a, b)
        if c["significant"]:
            assert c["sentence"].startswith(f"{better} beats {worse} by +{abs(diff):.3f}")
        else:
            assert c["sentence"].startswith(f"no significant difference between {better} and {worse}")
    # the large model beats the small one clearly on these 24 tasks
    assert comparisons[NAMES[0], NAMES[2]]["significant"] and comparisons[NAMES[0], NAMES[2]]["diff"] > 0


def test_the_terminal_table_shows_the_same_figures(sweep) -> None:
    table = sweep["table"]
    for v in sweep["report"]["variants"]:
        line = next(line for line in table.splitlines() if line.startswith(v["name"] + " "))
        reward = v["reward"]
        assert f"{reward['mean']:.3f} [{reward['ci95_low']:.3f}, {reward['ci95_high']:.3f}]" in line
        assert f"{v['pass_at_k']['3']:.3f}" in line


def test_the_verdict_matches_a_hand_computation_from_the_rows(sweep) -> None:
    report = sweep["report"]
    rows = sweep["rows"]
    mean = {n: statistics.fmean(_task_rewards(rows[n]).values()) for n in NAMES}
    cost = {n: sum(r["response"]["usage"]["cost"] for r in rows[n]) for n in NAMES}
    solved = {n: sum(v >= 1.0 for v in _task_rewards(rows[n]).values()) for n in NAMES}
    best, per_dollar, margin = report["verdict"]["picks"]
    # best reward: the highest mean; confident only when it beats every other variant at p < 0.05
    top = max(NAMES, key=mean.__getitem__)
    beaten = [c["significant"] for c in report["comparisons"] if top in (c["a"], c["b"])]
    if all(beaten):
        assert best["variant"] == top and best["confident"]
        runner_up = sorted(NAMES, key=mean.__getitem__)[-2]
        assert best["figures"]["diff"] == pytest.approx(mean[top] - mean[runner_up])
    else:
        assert not best["confident"] and top in best["figures"]["indistinguishable"]
    # reward per dollar: mean reward / cost per rollout, the largest
    efficiency = {n: mean[n] / (cost[n] / len(rows[n])) for n in NAMES}
    ordered = sorted(NAMES, key=efficiency.__getitem__, reverse=True)
    assert per_dollar["variant"] == ordered[0]
    assert per_dollar["figures"]["ratio"] == pytest.approx(efficiency[ordered[0]] / efficiency[ordered[1]])
    assert per_dollar["figures"]["ci95_low"] < per_dollar["figures"]["ratio"] < per_dollar["figures"]["ci95_high"]
    # cheapest within 0.02 of the best
    near = [n for n in NAMES if mean[n] >= mean[top] - 0.02]
    assert margin["variant"] == min(near, key=cost.__getitem__)
    # upgrades, cheapest first: extra $ a task over extra solved tasks, from the last worth-it step
    by_cost = sorted(NAMES, key=cost.__getitem__)
    base = by_cost[0]
    assert len(report["verdict"]["upgrades"]) == len(NAMES) - 1
    for upgrade, target in zip(report["verdict"]["upgrades"], by_cost[1:], strict=True):
        assert (upgrade["source"], upgrade["target"]) == (base, target)
        extra = (cost[target] - cost[base]) / TASKS
        assert upgrade["extra_usd_per_task"] == pytest.approx(extra, rel=1e-9)
        if solved[target] > solved[base]:
            price = extra * TASKS / (solved[target] - solved[base])
            assert upgrade["usd_per_extra_solved_task"] == pytest.approx(price, rel=1e-9)
            base = target
        else:
            assert upgrade["usd_per_extra_solved_task"] is None
    for projection in report["verdict"]["projections"]:
        name = projection["variant"]
        assert projection["tasks"] == TASKS and projection["rollouts_per_task"] == REPEATS
        assert projection["cost_usd"] == pytest.approx(cost[name], rel=1e-9)
