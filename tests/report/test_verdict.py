"""The verdict (best reward, reward per dollar, cheapest within a margin, upgrade prices,
projected costs) against numbers computed by hand, and money as the report writes it."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from nemo_gym_cli.report.money import usd

TASKS = 40
#: name -> (tasks 0..k-1 solved, cost of each rollout)
VARIANTS = {"small": (16, 0.001), "medium": (32, 0.01), "large": (36, 0.1)}


def _rows(solved: int, cost: float) -> list[dict[str, Any]]:
    return [
        {
            "responses_create_params": {"input": [{"role": "user", "content": f"question {t}"}]},
            "response": {"model": "m", "output": [], "usage": {"input_tokens": 10, "output_tokens": 2, "cost": cost}},
            "reward": 1.0 if t < solved else 0.0,
            "_ng_task_index": t,
            "_ng_rollout_index": 0,
        }
        for t in range(TASKS)
    ]


@pytest.fixture
def sweep(tmp_path: Path, write_jsonl: Any) -> Path:
    for name, (solved, cost) in VARIANTS.items():
        write_jsonl(tmp_path / "sweep" / f"{name}.jsonl", _rows(solved, cost))
    return tmp_path / "sweep"


def _verdict(sweep: Path, run_report: Any, load_json: Any, *args: str) -> tuple[dict[str, Any], str]:
    code, out, err = run_report(str(sweep), "+overwrite=true", *args)
    assert code == 0, err
    return load_json(sweep / "report" / "report.json"), out


def test_indistinguishable_leaders_give_way_to_the_cheaper_and_the_upgrades_are_priced_by_hand(
    sweep: Path, run_report: Any, load_json: Any
) -> None:
    report, out = _verdict(sweep, run_report, load_json)
    best, per_dollar, margin = report["verdict"]["picks"]
    comparisons = {(c["a"], c["b"]): c for c in report["comparisons"]}
    # large (0.9) is ahead of medium (0.8) on 4 tasks only: p = 2/16 exactly (all sign flips), not significant
    assert not comparisons["medium", "large"]["significant"]
    assert comparisons["small", "large"]["significant"] and comparisons["small", "medium"]["significant"]
    assert best["variant"] == "medium" and not best["confident"]
    assert best["figures"]["indistinguishable"] == ["large", "medium"]
    assert best["figures"]["diff"] == pytest.approx(0.1)
    assert best["sentence"].startswith(
        "large and medium are indistinguishable on reward (large ahead of medium by +0.100"
    )
    assert best["sentence"].endswith("pick medium, the cheapest of them")

    # reward per dollar: small 0.4 / $0.001 = 400, medium 80: 5x, with a delta-method interval
    assert per_dollar["variant"] == "small" and per_dollar["figures"]["runner_up"] == "medium"
    assert per_dollar["figures"]["usd_per_reward"] == pytest.approx(0.001 / 0.4)
    assert per_dollar["figures"]["ratio"] == pytest.approx(5.0)
    r_small = [1.0 if t < 16 else 0.0 for t in range(TASKS)]
    r_medium = [1.0 if t < 32 else 0.0 for t in range(TASKS)]
    z = [a / 0.4 - b / 0.8 for a, b in zip(r_small, r_medium, strict=True)]  # costs are constant: c/C = 1
    se = statistics.stdev(z) / math.sqrt(TASKS)
    assert per_dollar["figures"]["ci95_low"] == pytest.approx(5.0 * math.exp(-1.959964 * se), rel=1e-5)
    assert per_dollar["figures"]["ci95_high"] == pytest.approx(5.0 * math.exp(1.959964 * se), rel=1e-5)
    assert per_dollar["confident"] == (per_dollar["figures"]["ci95_low"] > 1) is True
    assert per_dollar["sentence"].startswith(
        "small: $0.00250 per unit of reward, 5.00x the reward per dollar of medium (95% CI"
    )

    # within 0.02 of 0.9 nothing cheaper than large
    assert margin["variant"] == "large" and margin["goal"] == "cheapest within 0.02 of the best"

    # upgrades: extra $ a task / extra solved share
    small_medium, medium_large = report["verdict"]["upgrades"]
    assert (small_medium["source"], small_medium["target"]) == ("small", "medium")
    assert small_medium["extra_usd_per_task"] == pytest.approx(0.009)
    assert small_medium["usd_per_extra_solved_task"] == pytest.approx(0.009 / 0.4)
    assert medium_large["usd_per_extra_solved_task"] == pytest.approx(0.09 / 0.1)
    assert "small -> medium: +$0.00900 a task for +16.0 solved tasks of 40: $0.0225 per extra solved task" in out
    # projected for the input's 40 tasks, 1 rollout each
    projected = {p["variant"]: p["cost_usd"] for p in report["verdict"]["projections"]}
    assert projected == pytest.approx({"small": 0.04, "medium": 0.4, "large": 4.0})
    assert out.splitlines()[1] == "Verdict (95% confidence from the paired comparisons):"
    assert "  large: $4.00 (1 rollouts a task, ~36 solved)" in out


def test_a_wider_margin_picks_the_cheaper_variant_and_says_whether_the_interval_backs_it(
    sweep: Path, run_report: Any, load_json: Any
) -> None:
    report, _ = _verdict(sweep, run_report, load_json, "+margin=0.15", "+project_tasks=1000")
    margin = report["verdict"]["picks"][2]
    comparison = next(c for c in report["comparisons"] if {c["a"], c["b"]} == {"medium", "large"})
    assert margin["variant"] == "medium" and margin["goal"] == "cheapest within 0.15 of the best"
    assert margin["figures"]["diff"] == pytest.approx(-0.1)
    assert margin["figures"]["ci95_low"] == pytest.approx(-comparison["ci95_high"])
    assert margin["confident"] == (margin["figures"]["ci95_low"] >= -0.15)
    projected = {p["variant"]: (p["cost_usd"], p["solved_tasks"]) for p in report["verdict"]["projections"]}
    assert projected["large"] == pytest.approx((100.0, 900.0))
    assert projected["small"] == pytest.approx((1.0, 400.0))


def test_a_clear_winner_is_named_with_its_difference_interval_and_p_value(
    tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any
) -> None:
    write_jsonl(tmp_path / "s" / "weak.jsonl", _rows(4, 0.01))
    write_jsonl(tmp_path / "s" / "strong.jsonl", _rows(36, 0.02))
    code, out, err = run_report(str(tmp_path / "s"))
    assert code == 0, err
    best = load_json(tmp_path / "s" / "report" / "report.json")["verdict"]["picks"][0]
    c = load_json(tmp_path / "s" / "report" / "report.json")["comparisons"][0]
    assert best["variant"] == "strong" and best["confident"]
    expected = f"strong is best: beats weak by +0.800 (95% CI {c['ci95_low']:+.3f}..{c['ci95_high']:+.3f}, p<0.001)"
    assert best["sentence"] == expected
    assert f"  best reward: {expected}" in out


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (None, "-"),
        (0.0, "$0"),
        (0.00000335, "$0.00000335"),
        (0.0000439, "$0.0000439"),
        (0.0439, "$0.0439"),
        (0.5, "$0.500"),
        (0.99996, "$1.00"),
        (1.0, "$1.00"),
        (1234.567, "$1,234.57"),
        (4e-7, "<$0.000001"),
        (-0.012, "-$0.0120"),
        (float("nan"), "-"),
    ],
)
def test_money_is_plain_dollars_with_three_significant_digits(amount: float | None, text: str) -> None:
    assert usd(amount) == text


def test_no_figure_of_the_report_is_written_in_scientific_notation(
    sweep: Path, run_report: Any, load_json: Any
) -> None:
    for name in VARIANTS:  # prices a thousand times smaller: a few millionths of a dollar a rollout
        rows = _rows(VARIANTS[name][0], VARIANTS[name][1] / 1000)
        (sweep / f"{name}.jsonl").write_bytes(b"".join(__import__("orjson").dumps(r) + b"\n" for r in rows))
    _, out = _verdict(sweep, run_report, load_json)
    md = (sweep / "report" / "report.md").read_text()
    html = (sweep / "report" / "report.html").read_text()
    assert "$0.00000100" in out and "$0.00000100" in md  # small's cost per rollout
    for text in (out, md):
        assert "e-0" not in text and "e-1" not in text
    svgs = html.split("<svg")[1:]
    assert svgs and all("e-0" not in svg and "10^" not in svg and "$0.000001" in svg for svg in svgs[:1])


def test_past_its_limit_the_per_task_table_keeps_the_tasks_where_variants_differ(
    sweep: Path, run_report: Any, load_json: Any
) -> None:
    """Tasks 16-35 are where the variants differ (small fails them, large solves them)."""
    from nemo_gym_cli.report.load import load
    from nemo_gym_cli.report.sources import find_sources
    from nemo_gym_cli.report.stats import analyse
    from nemo_gym_cli.report.task_view import task_view

    analysis = analyse(load(find_sources([str(sweep)], []), group_by=""), n_boot=100, n_perm=100)
    view = task_view(analysis, [], limit=20)
    assert view["total"] == TASKS and view["variants"] == ["large", "medium", "small"]  # by file name
    assert [row[0] for row in view["tasks"]] == [str(t) for t in range(16, 36)]
    assert view["tasks"][0][4] == [1.0, 1.0, 0.0]
