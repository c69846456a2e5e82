"""The statistics against direct computations, and reading rows in chunks and in parallel."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nemo_gym_cli.report.load import load
from nemo_gym_cli.report.rows import same_model
from nemo_gym_cli.report.sources import find_sources
from nemo_gym_cli.report.stats import analyse, bootstrap_means, pass_at_k, sign_flip_p


@pytest.mark.parametrize("distinct", [3, 2000], ids=["few-values-multinomial", "many-values-resampled"])
def test_bootstrap_interval_matches_a_direct_numpy_bootstrap(distinct: int) -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(0, distinct, size=3000) / max(distinct - 1, 1)
    ours = np.percentile(bootstrap_means(values, 4000, np.random.default_rng(1)), [2.5, 97.5])
    direct = np.random.default_rng(2).choice(values, size=(4000, len(values))).mean(axis=1)
    expected = np.percentile(direct, [2.5, 97.5])
    assert ours == pytest.approx(expected, abs=0.004)
    # and the textbook normal approximation agrees at this size
    half = 1.96 * values.std() / math.sqrt(len(values))
    assert ours == pytest.approx([values.mean() - half, values.mean() + half], abs=0.004)


def test_bootstrap_interval_brackets_the_mean_and_shrinks_with_more_tasks() -> None:
    widths = []
    for n in (20, 200, 2000):
        values = (np.arange(n) % 3 == 0).astype(float)
        low, high = np.percentile(bootstrap_means(values, 2000, np.random.default_rng(0)), [2.5, 97.5])
        assert low < values.mean() < high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]


def test_sign_flip_p_value_matches_exact_enumeration() -> None:
    diffs = np.array([1.0, 0.5, 0.5, -0.25, 0.75, 1.0, 0.0, 0.5, -0.5, 1.0])
    observed = abs(diffs.mean())
    flips = [abs(np.dot(signs, diffs)) / len(diffs) for signs in itertools.product((1, -1), repeat=len(diffs))]
    exact = np.mean([f >= observed - 1e-12 for f in flips])
    assert sign_flip_p(diffs, 20000, np.random.default_rng(3)) == pytest.approx(exact, abs=0.01)
    assert sign_flip_p(np.zeros(5), 1000, np.random.default_rng(3)) == 1.0


def test_pass_at_k_is_one_minus_the_chance_that_k_draws_all_fail() -> None:
    n, c = np.array([4, 4, 4, 2]), np.array([0, 1, 4, 1])
    values, tasks = pass_at_k(n, c)
    assert values[1] == pytest.approx(np.mean([0, 1 / 4, 1, 1 / 2]))
    assert values[2] == pytest.approx(np.mean([0, 1 - math.comb(3, 2) / math.comb(4, 2), 1, 1]))
    assert values[3] == pytest.approx(np.mean([0, 1 - math.comb(3, 3) / math.comb(4, 3), 1]))
    assert values[4] == pytest.approx(np.mean([0, 1, 1]))
    assert tasks == {1: 4, 2: 4, 3: 3, 4: 3}


@pytest.mark.parametrize(
    ("requested", "served", "same"),
    [
        ("openai/gpt-4o-mini", "openai/gpt-4o-mini", True),
        ("openrouter:anthropic/claude-3.5-sonnet", "anthropic/claude-3.5-sonnet", True),
        ("meta-llama/llama-3.3-70b-instruct:free", "meta-llama/llama-3.3-70b-instruct", True),
        ("openai/gpt-4o", "openai/gpt-4o-2024-08-06", True),
        ("openai/gpt-4o-mini", "gpt-4o-mini", True),
        ("openai/gpt-4o", "openai/gpt-4o-mini", False),
        ("meta-llama/llama-3.3-70b-instruct:nitro", "meta-llama/llama-3.1-70b-instruct", False),
    ],
)
def test_fallback_detection_ignores_gateway_prefixes_variants_and_snapshots(
    requested: str, served: str, same: bool
) -> None:
    assert same_model(requested, served) is same


def _rows(variant: str, n_tasks: int, passes: Any) -> list[dict[str, Any]]:
    return [
        {
            "_ng_task_index": t,
            "_ng_rollout_index": r,
            "reward": float(passes(t, r)),
            "response": {"model": variant, "usage": {"input_tokens": t, "output_tokens": r, "cost": 0.001 * t}},
        }
        for t in range(n_tasks)
        for r in range(3)
    ]


def test_a_clear_winner_is_significant_and_said_in_a_sentence(tmp_path: Path, write_jsonl: Any) -> None:
    write_jsonl(tmp_path / "weak.jsonl", _rows("weak", 40, lambda t, r: t % 4 == 0))
    write_jsonl(tmp_path / "strong.jsonl", _rows("strong", 40, lambda t, r: t % 4 != 1))
    a = analyse(load(find_sources([str(tmp_path / "weak.jsonl"), str(tmp_path / "strong.jsonl")], [])))
    (c,) = a.comparisons
    assert (c.a, c.b, c.tasks) == ("weak", "strong", 40)
    assert c.diff == pytest.approx(0.75 - 0.25)
    assert c.significant and c.p_value < 0.001 and 0 < c.ci95_low < c.diff < c.ci95_high
    assert c.sentence == (
        f"strong beats weak by +0.500, 95% CI {c.ci95_low:+.3f}..{c.ci95_high:+.3f}, p<0.001 (n=40 tasks)"
    )


def test_rows_read_in_chunks_by_parallel_workers_equal_one_serial_pass(tmp_path: Path, write_jsonl: Any) -> None:
    for name in ("a", "b", "c"):
        rows: list[Any] = _rows(name, 50, lambda t, r: (t + r) % 3 == 0)
        rows.insert(17, b"{not json")  # line numbers must survive chunking
        write_jsonl(tmp_path / f"{name}.jsonl", rows)
    sources = find_sources([str(tmp_path)], [])
    serial = load(sources, workers=1)
    chunked = load(sources, workers=2, chunk_bytes=1000)
    for column in ("variant", "task", "rollout", "reward", "cost", "tokens_in", "offset", "line", "source"):
        assert getattr(chunked, column) == getattr(serial, column), column
    assert chunked.task_keys == serial.task_keys and chunked.variants.names == ["a", "b", "c"]
    assert serial.skipped_lines == chunked.skipped_lines == 3
    assert chunked.line_warnings[0] == f"{tmp_path / 'a.jsonl'}:18: not valid JSON; line skipped"
    assert len(serial) == 3 * 150


def test_duplicate_rows_count_once_and_stale_failures_are_left_out(tmp_path: Path, write_jsonl: Any) -> None:
    rows = _rows("m", 2, lambda t, r: 1)
    write_jsonl(tmp_path / "m.jsonl", [*rows, rows[0]])
    write_jsonl(
        tmp_path / "m_failures.jsonl",
        [{"_ng_task_index": 0, "_ng_rollout_index": 1, "error_type": "timeout"}],  # that rollout has a row
    )
    a = analyse(load(find_sources([str(tmp_path / "m.jsonl")], [])))
    (v,) = a.variants
    assert (v.rollouts, v.failed) == (6, 0)
    assert any("1 duplicate rows" in w for w in a.warnings)
    assert any("1 failures have a row for the same rollout" in w for w in a.warnings)
