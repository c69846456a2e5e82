"""Every figure of report.json against a hand computation on a small sweep.

Three variants (a manifest sweep), four tasks, two rollouts each; failures, a row without
usage, rows without cost, latencies, providers, a dated model name (not a fallback) and
one fallback model. The expected values are worked out by hand next to the data.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

CATEGORY = {0: "easy", 1: "easy", 2: "hard", 3: "hard"}
FAIL = "FAIL"

# task -> rewards of rollouts 0 and 1 (FAIL: the rollout is in the failures file)
ALPHA = {0: [1.0, 1.0], 1: [1.0, 0.0], 2: [0.0, 0.0], 3: [1.0, FAIL]}
BETA = {0: [1.0, 1.0], 1: [1.0, 1.0], 2: [1.0, 0.0], 3: [1.0, 1.0]}
GAMMA = {0: [0.0, 0.0], 1: [0.0, FAIL], 2: [0.0, 0.5], 3: [1.0, 1.0]}


def _row(task: int, rollout: int, reward: float, *, model: str, usage: dict | None, provider: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "model": model,
        "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}],
        "provider": provider,
    }
    if usage is not None:
        response["usage"] = usage
    return {
        "responses_create_params": {"input": [{"role": "user", "content": f"task {task}"}]},
        "meta": {"category": CATEGORY[task]},
        "response": response,
        "reward": reward,
        "_ng_task_index": task,
        "_ng_rollout_index": rollout,
    }


def _sweep(root: Path, write_jsonl: Any) -> Path:
    sweep = root / "sweep"
    alpha, alpha_failures, latencies = [], [], iter(range(1, 8))
    for task, rollout in itertools.product(range(4), range(2)):
        reward = ALPHA[task][rollout]
        if reward == FAIL:
            alpha_failures.append(
                {"_ng_task_index": task, "_ng_rollout_index": rollout, "error_type": "timeout", "cost_usd": 0.002}
            )
            continue
        row = _row(
            task,
            rollout,
            reward,
            model="openai/gpt-4o-mini-2024-07-18",  # a dated snapshot of the requested model
            usage={"input_tokens": 100, "output_tokens": 10, "cost": 0.001},
            provider="OpenAI",
        )
        row["_ng_requested_model"] = "openai/gpt-4o-mini"
        row["_ng_latency_s"] = float(next(latencies))
        alpha.append(row)
    write_jsonl(sweep / "alpha.jsonl", alpha)
    write_jsonl(sweep / "alpha_failures.jsonl", alpha_failures)
    (sweep / "alpha_metrics.json").write_bytes(orjson.dumps({"rollouts": 8, "wall_time_s": 4.0, "run": {"t": 0}}))

    beta = []
    for i, (task, rollout) in enumerate(itertools.product(range(4), range(2))):
        row = _row(
            task,
            rollout,
            BETA[task][rollout],
            model="anthropic/claude-3.5-haiku",
            usage={"input_tokens": 200, "output_tokens": 20, "cost": 0.01},
            provider="Google" if i in (2, 5) else "Anthropic",
        )
        row["_ng_latency_s"] = 0.5 * (i + 1)
        beta.append(row)
    write_jsonl(sweep / "beta.jsonl", beta)
    (sweep / "beta_metrics.json").write_bytes(orjson.dumps({"rollouts_per_s": 5.0}))

    gamma, gamma_failures = [], []
    for task, rollout in itertools.product(range(4), range(2)):
        reward = GAMMA[task][rollout]
        if reward == FAIL:
            gamma_failures.append({"_ng_task_index": task, "_ng_rollout_index": rollout, "error_type": "rate_limit"})
            continue
        usage: dict[str, Any] | None = {"input_tokens": 50, "output_tokens": 5, "cost": 0.002}
        if (task, rollout) == (0, 0):
            del usage["cost"]  # usage without a cost
        if (task, rollout) == (0, 1):
            usage = None  # no usage at all
        served = (
            "meta-llama/llama-3.1-70b-instruct" if (task, rollout) == (3, 1) else "meta-llama/llama-3.3-70b-instruct"
        )
        provider = "Together" if (task, rollout) == (2, 0) else "Groq"
        gamma.append(_row(task, rollout, reward, model=served, usage=usage, provider=provider))
    write_jsonl(sweep / "gamma.jsonl", gamma)
    write_jsonl(sweep / "gamma_failures.jsonl", gamma_failures)

    manifest = {
        "variants": [
            {"name": "alpha", "output": "alpha.jsonl", "model": "openai/gpt-4o-mini", "overrides": {"temp": 0}},
            {"name": "beta", "output": "beta.jsonl", "model": "anthropic/claude-3.5-haiku"},
            {"name": "gamma", "output": "gamma.jsonl", "model": "openrouter:meta-llama/llama-3.3-70b-instruct:nitro"},
        ]
    }
    (sweep / "sweep.json").write_bytes(orjson.dumps(manifest))
    return sweep


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory, write_jsonl: Any) -> tuple[Path, str]:
    """The sweep, reported once for the tests that only read what came out: (sweep, stdout)."""
    from nemo_gym_cli.report import report

    sweep = _sweep(tmp_path_factory.mktemp("figures"), write_jsonl)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = report([str(sweep)])
    assert code == 0, err.getvalue()
    assert (sweep / "report" / "report.html").is_file() and (sweep / "report" / "report.md").is_file()
    return sweep, out.getvalue()


@pytest.fixture
def report(reported: tuple[Path, str], load_json: Any) -> dict[str, Any]:
    return load_json(reported[0] / "report" / "report.json")


def _variant(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in report["variants"] if v["name"] == name)


def _exact_bootstrap_quantiles(values: list[float]) -> tuple[float, float]:
    """2.5% / 97.5% quantiles of the exact bootstrap distribution (every resample enumerated)."""
    means = sorted(sum(c) / len(values) for c in itertools.product(values, repeat=len(values)))
    return means[math.ceil(0.025 * len(means)) - 1], means[math.ceil(0.975 * len(means)) - 1]


def _pass_at_k(n: int, c: int, k: int) -> float:
    return 1 - math.comb(n - c, k) / math.comb(n, k)


def test_counts_failures_tokens_and_costs_match_the_rows(report: dict[str, Any]) -> None:
    alpha, beta, gamma = (_variant(report, n) for n in ("alpha", "beta", "gamma"))
    assert [v["name"] for v in report["variants"]] == ["alpha", "beta", "gamma"]  # the manifest's order
    assert (alpha["rollouts"], alpha["succeeded"], alpha["failed"]) == (8, 7, 1)
    assert alpha["failures_by_kind"] == {"timeout": 1}
    assert (beta["rollouts"], beta["failed"]) == (8, 0)
    assert gamma["failures_by_kind"] == {"rate_limit": 1}
    assert (alpha["tokens_in"], alpha["tokens_out"]) == (700, 70)
    assert (beta["tokens_in"], beta["tokens_out"]) == (1600, 160)
    assert (gamma["tokens_in"], gamma["tokens_out"], gamma["rollouts_without_usage"]) == (300, 30, 1)
    # alpha: 7 rows x $0.001 + the failure's $0.002; gamma: 5 rows with a cost x $0.002
    assert alpha["cost"]["total_usd"] == pytest.approx(0.009)
    assert alpha["cost"]["per_rollout_usd"] == pytest.approx(0.009 / 8)
    assert beta["cost"]["total_usd"] == pytest.approx(0.08)
    assert beta["cost"]["per_rollout_usd"] == pytest.approx(0.01)
    assert gamma["cost"]["total_usd"] == pytest.approx(0.01)
    assert gamma["cost"]["rollouts_without_cost"] == 2
    assert gamma["rollouts_without_reward"] == 0


def test_rewards_are_task_means_with_failures_as_zero_and_a_mean_over_successes(report: dict[str, Any]) -> None:
    expected = {
        # (task means, mean over succeeded rollouts)
        "alpha": ([1.0, 0.5, 0.0, 0.5], 4 / 7),
        "beta": ([1.0, 1.0, 0.5, 1.0], 7 / 8),
        "gamma": ([0.0, 0.0, 0.25, 1.0], 2.5 / 7),
    }
    for name, (task_means, succeeded) in expected.items():
        reward = _variant(report, name)["reward"]
        assert reward["mean"] == pytest.approx(np.mean(task_means))
        assert reward["mean_succeeded"] == pytest.approx(succeeded)
        low, high = _exact_bootstrap_quantiles(task_means)
        assert reward["ci95_low"] <= reward["mean"] <= reward["ci95_high"]
        # 2,000 resamples land on the exact bootstrap distribution's quantiles (values are 1/8 apart)
        assert reward["ci95_low"] == pytest.approx(low, abs=0.0626)
        assert reward["ci95_high"] == pytest.approx(high, abs=0.0626)


def test_pass_at_k_uses_the_unbiased_estimator_per_task(report: dict[str, Any]) -> None:
    # passes per task (reward >= 1.0) out of 2 rollouts; a failure is a rollout that did not pass
    passes = {"alpha": [2, 1, 0, 1], "beta": [2, 2, 1, 2], "gamma": [0, 0, 0, 2]}
    for name, cs in passes.items():
        figures = _variant(report, name)
        for k in (1, 2):
            assert figures["pass_at_k"][str(k)] == pytest.approx(np.mean([_pass_at_k(2, c, k) for c in cs]))
            assert figures["pass_at_k_tasks"][str(k)] == 4
    assert _variant(report, "alpha")["pass_at_k"] == {"1": 0.5, "2": 0.75}


def test_cost_per_solved_task_divides_by_tasks_whose_mean_reward_reaches_the_threshold(report: dict[str, Any]) -> None:
    alpha, beta, gamma = (_variant(report, n) for n in ("alpha", "beta", "gamma"))
    assert (alpha["solved_tasks"], beta["solved_tasks"], gamma["solved_tasks"]) == (1, 3, 1)
    assert alpha["cost"]["per_solved_task_usd"] == pytest.approx(0.009)
    assert beta["cost"]["per_solved_task_usd"] == pytest.approx(0.08 / 3)
    assert gamma["cost"]["per_solved_task_usd"] == pytest.approx(0.01)


def test_latency_percentiles_throughput_providers_and_fallbacks(report: dict[str, Any]) -> None:
    alpha, beta, gamma = (_variant(report, n) for n in ("alpha", "beta", "gamma"))
    assert alpha["latency"] == {"p50_s": 4.0, "p95_s": pytest.approx(6.7), "samples": 7}
    assert beta["latency"] == {"p50_s": pytest.approx(2.25), "p95_s": pytest.approx(3.825), "samples": 8}
    assert gamma["latency"] == {"p50_s": None, "p95_s": None, "samples": 0}
    assert alpha["rollouts_per_s"] == pytest.approx(2.0)  # 8 rollouts / 4 s of wall time
    assert beta["rollouts_per_s"] == 5.0
    assert gamma["rollouts_per_s"] is None
    assert beta["providers"] == {"Anthropic": 6, "Google": 2}
    assert gamma["providers"] == {"Groq": 6, "Together": 1}
    # alpha: a dated snapshot is no fallback; gamma: gateway prefix and :nitro ignored, 3.1 is
    assert alpha["fallback"] == {"rollouts": 0, "known": 7, "share": 0.0}
    assert beta["fallback"] == {"rollouts": 0, "known": 8, "share": 0.0}
    assert gamma["fallback"] == {"rollouts": 1, "known": 7, "share": pytest.approx(1 / 7)}
    assert gamma["models"] == {"meta-llama/llama-3.3-70b-instruct": 6, "meta-llama/llama-3.1-70b-instruct": 1}
    assert alpha["requested_models"] == {"openai/gpt-4o-mini": 7}
    assert alpha["overrides"] == {"temp": 0} and alpha["run"] == {"t": 0}


def test_paired_comparisons_orient_the_better_variant_first(report: dict[str, Any]) -> None:
    pairs = {(c["a"], c["b"]): c for c in report["comparisons"]}
    assert set(pairs) == {("alpha", "beta"), ("gamma", "alpha"), ("gamma", "beta")}
    diffs = {
        ("alpha", "beta"): [0.0, 0.5, 0.5, 0.5],  # beta - alpha per task
        ("gamma", "alpha"): [1.0, 0.5, -0.25, -0.5],
        ("gamma", "beta"): [1.0, 1.0, 0.25, 0.0],
    }
    for pair, d in diffs.items():
        c = pairs[pair]
        assert c["tasks"] == 4
        assert c["diff"] == pytest.approx(np.mean(d))
        assert c["ci95_low"] <= c["diff"] <= c["ci95_high"]
        assert c["significant"] is False  # four tasks decide nothing
        assert c["sentence"].startswith(f"no significant difference between {pair[1]} and {pair[0]}")
    # exact sign-flip p-values: alpha/beta: |sum| of three +-0.5 is 1.5 in 2 of 8 flips
    assert pairs[("alpha", "beta")]["p_value"] == pytest.approx(0.25, abs=0.02)
    assert pairs[("alpha", "beta")]["ci95_low"] == pytest.approx(0.125)  # exact bootstrap 2.5% quantile
    assert pairs[("alpha", "beta")]["ci95_high"] == pytest.approx(0.5)
    assert pairs[("gamma", "beta")]["p_value"] == pytest.approx(0.25, abs=0.02)


def test_subsets_and_the_pareto_frontier(report: dict[str, Any]) -> None:
    assert report["settings"]["group_by"] == "meta.category"  # found without being asked
    groups = {g["value"]: g for g in report["groups"]}
    assert groups["easy"] == {"value": "easy", "tasks": 2, "reward": {"alpha": 0.75, "beta": 1.0, "gamma": 0.0}}
    assert groups["hard"]["reward"] == {"alpha": 0.25, "beta": 0.75, "gamma": 0.625}
    # gamma costs more per rollout than alpha and scores lower: dominated
    assert report["pareto_frontier"] == ["alpha", "beta"]


def test_a_report_is_reproducible(tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any) -> None:
    sweep = _sweep(tmp_path, write_jsonl)
    run_report(str(sweep))
    first = (sweep / "report" / "report.json").read_bytes()
    html = (sweep / "report" / "report.html").read_bytes()
    run_report(str(sweep))
    assert (sweep / "report" / "report.json").read_bytes() == first
    assert (sweep / "report" / "report.html").read_bytes() == html


def test_markdown_and_terminal_show_the_same_figures(reported: tuple[Path, str], load_json: Any) -> None:
    sweep, out = reported
    report = load_json(sweep / "report" / "report.json")
    markdown = (sweep / "report" / "report.md").read_text()
    for comparison in report["comparisons"]:
        assert comparison["sentence"] in out and f"- {comparison['sentence']}" in markdown
    # alpha: 8 rollouts, 1 failed, reward 0.500 [CI], pass@1 0.500, pass@2 0.750, $0.009 in all
    alpha = next(line for line in out.splitlines() if line.startswith("alpha "))
    assert alpha.split()[:5] == ["alpha", "8", "1", "0.500", "[0.125,"]
    assert "0.500" in alpha and "0.750" in alpha and "$0.009" in alpha
    assert "| alpha | 8 | 1 | 0.500 [0.125, 0.875] | 0.571 | 0.500 | 0.750 | 1/4 |" in markdown


def test_the_terminal_shows_the_reward_by_subset_only_when_asked_for(
    tmp_path: Path, write_jsonl: Any, run_report: Any, reported: tuple[Path, str]
) -> None:
    sweep = _sweep(tmp_path, write_jsonl)
    found = reported[1]  # meta.category found by itself: in the files only
    assert "reward by" not in found
    _, asked, _ = run_report(str(sweep), "+group_by=meta.category")
    table = asked.split("reward by meta.category:\n", 1)[1].splitlines()
    assert table[0].split() == ["meta.category", "tasks", "alpha", "beta", "gamma"]
    assert table[1].split() == ["easy", "2", "0.750", "1.000", "0.000"]
    assert table[2].split() == ["hard", "2", "0.250", "0.750", "0.625"]
    _, typo, err = run_report(str(sweep), "+group_by=meta.categroy")
    assert "reward by" not in typo
    assert "warning: +group_by=meta.categroy: no row has this field, so there is no reward by subset" in err


def test_the_remaining_fields_say_what_was_read_and_how(report: dict[str, Any]) -> None:
    for name, scored in (("alpha", 7), ("beta", 8), ("gamma", 7)):
        figures = _variant(report, name)
        assert figures["tasks"] == 4 and figures["reward"]["scored_rollouts"] == scored
        assert figures["sources"] == [str(Path(report["inputs"][0]) / f"{name}.jsonl")]
    assert report["settings"] == {
        "pass_threshold": 1.0,
        "seed": 0,
        "bootstrap_resamples": 2000,
        "permutations": 10000,
        "significance": 0.05,
        "group_by": "meta.category",
    }
    assert report["input_quality"] == {"skipped_lines": 0, "unattributed_failures": 0}
    assert report["warnings"] == [
        "gamma: 1 of 7 rollouts have no usage (tokens left out)",
        "gamma: 2 of 7 rollouts have no cost (the cost figures are a lower bound)",
    ]
