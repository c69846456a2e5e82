"""The ``+baseline`` regression gate (``report/gate.py``) on outputs written by hand; the
collector and ``ng_report`` running it end to end are in ``test_ci.py``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_gym_cli.errors import ConfigError

pytest.importorskip("numpy")
pytest.importorskip("msgspec")

from nemo_gym_cli.report.gate import gate  # noqa: E402


def _output(path: Path, rewards: list[float], repeats: int = 1) -> str:
    rows = [
        {"_ng_task_index": t, "_ng_rollout_index": r, "reward": reward, "response": {"output": []}}
        for t, reward in enumerate(rewards)
        for r in range(repeats)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_a_candidate_that_loses_a_third_of_the_tasks_fails_with_by_how_much_and_how_sure(tmp_path: Path):
    baseline = _output(tmp_path / "base.jsonl", [1.0] * 60)
    candidate = _output(tmp_path / "cand.jsonl", [1.0, 1.0, 0.0] * 20)
    (result,) = gate([candidate], baseline)
    assert result.worse and result.tasks == 60 and result.diff == pytest.approx(-1 / 3)
    assert result.high < 0 and result.p_value < 0.001
    assert result.line().startswith(
        "gate failed: cand against the baseline base is significantly worse by 0.333: -0.333 mean reward, 95% CI "
    )
    assert "p<0.001 (n=60 tasks both ran; +gate_alpha=0.05, +gate_margin=0)" in result.line()


def test_a_margin_tolerates_a_small_drop_and_the_same_rewards_pass(tmp_path: Path):
    baseline = _output(tmp_path / "base.jsonl", [1.0] * 100)
    candidate = _output(tmp_path / "cand.jsonl", [1.0] * 90 + [0.0] * 10)
    assert gate([candidate], baseline)[0].worse  # 10 tasks lost, none won: significant
    assert not gate([candidate], baseline, margin=0.1)[0].worse  # exactly the tolerated drop
    (same,) = gate([baseline], _output(tmp_path / "again.jsonl", [1.0] * 100))
    assert not same.worse and same.diff == 0 and same.line().startswith("gate passed: ")


def test_tasks_are_paired_by_task_and_only_those_both_ran_count(tmp_path: Path):
    baseline = _output(tmp_path / "base.jsonl", [1.0] * 10)  # tasks 0..9
    candidate = _output(tmp_path / "cand.jsonl", [1.0] * 30, repeats=2)  # tasks 0..29, 2 rollouts each
    (result,) = gate([candidate], baseline)
    assert result.tasks == 10 and not result.worse


def test_sweeps_pair_by_variant_name_and_a_single_baseline_pairs_with_every_variant(tmp_path: Path):
    for name, rewards in (("a", [1.0] * 40), ("b", [0.0] * 40)):
        _output(tmp_path / "cand" / f"{name}.jsonl", rewards)
        _output(tmp_path / "base" / f"{name}.jsonl", rewards)
    by_name = {r.candidate: r for r in gate([str(tmp_path / "cand")], str(tmp_path / "base"))}
    assert {(r.candidate, r.baseline, r.worse) for r in by_name.values()} == {("a", "a", False), ("b", "b", False)}
    one = _output(tmp_path / "one.jsonl", [1.0] * 40)
    results = gate([str(tmp_path / "cand")], one)
    assert {(r.candidate, r.worse) for r in results} == {("a", False), ("b", True)}


def test_a_baseline_with_no_task_in_common_or_no_file_is_one_line(tmp_path: Path):
    baseline = _output(tmp_path / "base.jsonl", [1.0] * 5)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"_ng_task_index": 99, "_ng_rollout_index": 0, "reward": 1.0}) + "\n")
    with pytest.raises(ConfigError, match="ran no task in common"):
        gate([str(other)], baseline)
    with pytest.raises(ConfigError, match=r"\+baseline='nowhere.jsonl' does not exist"):
        gate([baseline], "nowhere.jsonl")
