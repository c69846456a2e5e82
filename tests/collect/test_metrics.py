"""rollout_metrics: running statistics, pass@k / mean@k, latency percentiles, the summary."""

from __future__ import annotations

import random
import re
import statistics

import pytest

from nemo_gym_cli.collect.metrics import (
    RESERVOIR,
    CollectionMetrics,
    Progress,
    RunningStat,
    format_summary,
    percentile,
)


def test_running_stat_matches_the_statistics_module():
    rng = random.Random(7)
    values = [rng.gauss(3.0, 2.5) for _ in range(1000)] + [1e6, -1e6]
    stat = RunningStat()
    for v in values:
        stat.add(v)
    s = stat.summary()
    assert s["count"] == len(values)
    assert s["mean"] == pytest.approx(statistics.fmean(values), abs=1e-9)
    assert s["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9)
    assert (s["min"], s["max"]) == (min(values), max(values))


def test_running_stat_of_one_value_has_zero_std():
    stat = RunningStat()
    stat.add(0.25)
    assert stat.summary() == {"count": 1, "mean": 0.25, "min": 0.25, "max": 0.25, "std": 0.0}


def row(task: int, rollout: int = 0, **fields) -> dict:
    return {"_ng_task_index": task, "_ng_rollout_index": rollout, **fields}


def summary(m: CollectionMetrics) -> dict:
    return m.summary(wall_time_s=2.0, new_rollouts=m.succeeded - m.resumed)


def test_numeric_top_level_fields_are_metrics_but_input_fields_flags_and_nesting_are_not():
    m = CollectionMetrics()
    m.note_input_keys(["reward", "difficulty", "id"])
    m.add_row(row(0, reward=1.0, difficulty=3, id=7, accuracy=0.5, ok=True, nested={"x": 1}))
    m.add_row(row(1, reward=0, difficulty=1, id=8, accuracy=1, ok=False, score=float("nan")))
    doc = summary(m)
    # reward is a metric even though the input carries one; NaN is skipped
    assert set(doc["metrics"]) == {"reward", "accuracy"}
    assert doc["metrics"]["reward"]["mean"] == 0.5
    assert doc["metrics"]["accuracy"] == {
        "count": 2,
        "mean": 0.75,
        "min": 0.5,
        "max": 1.0,
        "std": 0.25,
    }


def test_tokens_cost_and_models_come_from_the_response_usage():
    m = CollectionMetrics()
    usage = {"input_tokens": 100, "output_tokens": 20, "cost": 0.25}
    m.add_row(row(0, response={"usage": usage, "model": "m1", "provider": "p"}))
    m.add_row(row(1, response={"usage": {"input_tokens": 5}, "model": "m2"}))
    m.add_row(row(2, response="not a response"))
    doc = summary(m)
    assert doc["tokens"] == {"input": 105, "output": 20}
    assert doc["cost_usd"] == 0.25
    assert doc["models"] == {"m1": 1, "m2": 1} and doc["providers"] == {"p": 1}


def test_counts_include_failures_and_resumed_rows():
    m = CollectionMetrics()
    m.add_row(row(0, reward=1.0), resumed=True)
    m.add_row(row(1, reward=0.0), 0.1)
    m.add_failure("ServerError", 2)
    m.add_failure("InputError", 3)
    doc = m.summary(wall_time_s=0.5, new_rollouts=1)
    assert (doc["rollouts"], doc["succeeded"], doc["failed"], doc["resumed_from_output"]) == (
        4,
        2,
        2,
        1,
    )
    assert doc["failure_types"] == {"ServerError": 1, "InputError": 1}
    assert doc["rollouts_per_s"] == 2.0
    assert doc["latency_s"]["samples"] == 1  # resumed rows have no latency of this run
    assert "num_repeats" not in doc  # pass@k only with repeats


def test_pass_at_k_and_mean_at_k_are_per_task_with_the_threshold():
    rewards = {0: [1.0, 0.0, 0.0], 1: [0.5, 0.5, 0.8], 2: [0.0, 0.0, 0.0], 3: [0.9, 1.0]}
    m = CollectionMetrics(num_repeats=3)
    for task, rs in rewards.items():
        for r, reward in enumerate(rs):
            m.add_row(row(task, r, reward=reward))
    m.add_failure("ServerError", 3)  # task 3's third rollout failed: it counts 0
    for _ in range(3):
        m.add_failure("InputError", 4, attempted=False)  # task 4 never ran: not a task with a score
    for _ in range(3):
        m.add_failure("ServerError", 5)  # task 5 ran and failed every time: mean 0, no pass
    doc = summary(m)
    assert (doc["num_repeats"], doc["pass_threshold"], doc["tasks"]) == (3, 1.0, 5)
    assert doc["pass@3"] == pytest.approx(2 / 5)  # tasks 0 and 3 reach 1.0
    task_means = [1 / 3, 1.8 / 3, 0.0, 1.9 / 3, 0.0]
    assert doc["mean@3"] == pytest.approx(sum(task_means) / 5)
    assert m._tasks.open == {}  # every task closed: nothing kept per task

    lenient = CollectionMetrics(num_repeats=3, pass_threshold=0.5)
    for task, rs in rewards.items():
        for r, reward in enumerate(rs):
            lenient.add_row(row(task, r, reward=reward))
    assert summary(lenient)["pass@3"] == pytest.approx(3 / 4)


def test_tasks_of_an_interrupted_run_count_with_the_rollouts_they_have():
    m = CollectionMetrics(num_repeats=2)
    m.add_row(row(0, 0, reward=1.0))
    m.add_row(row(0, 1, reward=0.0))
    m.add_row(row(1, 0, reward=0.5))  # its second rollout never finished
    doc = summary(m)
    assert doc["tasks"] == 2
    assert doc["pass@2"] == pytest.approx(1 / 2)
    assert doc["mean@2"] == pytest.approx((0.5 + 0.5) / 2)


def test_percentiles_interpolate_linearly():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == pytest.approx(50.5)
    assert percentile(values, 0.95) == pytest.approx(95.05)
    assert percentile([3.0], 0.95) == 3.0
    assert percentile([], 0.5) == 0.0
    q = statistics.quantiles(values, n=20, method="inclusive")
    assert percentile(values, 0.95) == pytest.approx(q[18])


def test_latency_percentiles_are_exact_for_small_runs():
    m = CollectionMetrics()
    for latency in [0.4, 0.1, 0.3, 0.2, 1.0]:
        m.add_row(row(0), latency)
    lat = summary(m)["latency_s"]
    assert lat == {"p50": 0.3, "p95": pytest.approx(0.88), "samples": 5}


def test_latency_reservoir_stays_bounded_and_representative():
    m = CollectionMetrics()
    rng = random.Random(1)
    n = RESERVOIR * 3
    for _ in range(n):
        m._add_latency(rng.random())
    lat = m.summary(wall_time_s=1.0, new_rollouts=n)["latency_s"]
    assert lat["samples"] == RESERVOIR
    assert lat["p50"] == pytest.approx(0.5, abs=0.02)
    assert lat["p95"] == pytest.approx(0.95, abs=0.02)


def test_format_summary_shows_the_main_figures():
    m = CollectionMetrics(num_repeats=2)
    usage = {"input_tokens": 10, "output_tokens": 2, "cost": 0.5}
    m.add_row(row(0, 0, reward=1.0, response={"usage": usage, "model": "m"}), 0.2)
    m.add_row(row(0, 1, reward=0.0, response={"usage": usage, "model": "m"}), 0.4)
    text = format_summary(summary(m))
    assert "rollouts 2  succeeded 2  failed 0" in text
    assert "pass@2 1.0000  mean@2 0.5000  over 1 tasks" in text
    assert "tokens in 20  out 4  cost $1.000000" in text
    assert "served by m (2)" in text
    assert re.search(r"reward\s+0\.5000\s+0\.0000\s+1\.0000\s+0\.5000", text)
    assert "latency p50 0.300 s" in text


def test_progress_line_reports_done_failed_rate_and_eta():
    progress = Progress(interval=10.0)
    progress.total = 10
    progress.started -= 2.0  # as if two seconds had passed
    progress.add(3, 0)
    progress.add(0, 1)
    line = progress.line()
    assert re.fullmatch(r"progress: 4/10 done \(1 failed\), 2\.0 rollouts/s, ETA 3 s", line), line


def test_the_headline_reward_mean_counts_failures_as_zero_beside_the_mean_over_successes():
    m = CollectionMetrics()
    for task in range(145):
        m.add_row(row(task, reward=1.0))
    for task in range(145, 300):
        m.add_failure("ServerError", task)
    m.add_failure("InputError", 300, attempted=False)
    reward = summary(m)["reward"]
    assert reward["mean"] == pytest.approx(145 / 300)  # the 155 failures count 0
    assert reward["mean_succeeded"] == 1.0
    assert (reward["attempted"], reward["succeeded"], reward["failed"], reward["not_attempted"]) == (300, 145, 155, 1)
    assert summary(m)["metrics"]["reward"]["mean"] == 1.0  # the per-field statistics stay over rows


def test_the_cost_counts_failed_attempts_retries_and_unpriced_calls():
    m = CollectionMetrics()
    usage = {"input_tokens": 10, "output_tokens": 2, "cost": 0.5, "retries": {"rate_limit": 2}, "unpriced_calls": 1}
    m.add_row(row(0, response={"usage": usage}))
    m.add_failed_attempt({"input_tokens": 4, "cost": 0.25, "retries": {"server": 5}})  # a rollout later retried
    m.add_failed_attempt({"cost": 0.125})  # a rollout that failed for good
    m.add_failed_attempt(None)
    m.add_retry("bad_gateway")
    doc = summary(m)
    assert doc["cost_usd"] == 0.875
    assert doc["cost"]["rows_usd"] == 0.5 and doc["cost"]["failed_attempts_usd"] == 0.375
    assert doc["cost"]["unpriced_upstream_calls"] == 1
    assert doc["tokens"] == {"input": 14, "output": 2}
    assert doc["retries"] == {"rollouts": {"bad_gateway": 1}, "upstream": {"rate_limit": 2, "server": 5}}


def test_a_verifiers_own_model_calls_count_in_the_cost():
    m = CollectionMetrics()
    m.add_row(row(0, response={"usage": {"cost": 0.5}}, verifier_usage={"input_tokens": 7, "cost": 0.125}))
    doc = summary(m)
    assert doc["cost_usd"] == 0.625 and doc["tokens"]["input"] == 7
