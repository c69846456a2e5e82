"""``+junit_xml``: one test case per task, read back with a JUnit parser that is not ours."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_gym_cli.collect.junit import write_junit

junitparser = pytest.importorskip("junitparser")


def _lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_each_task_is_a_case_failing_on_a_low_reward_or_an_error_naming_where_its_row_is(tmp_path: Path):
    out = tmp_path / "run.jsonl"
    _lines(
        out,
        [
            {"_ng_task_index": 0, "_ng_rollout_index": 0, "reward": 1.0, "_ng_latency_s": 0.5},
            {"_ng_task_index": 1, "_ng_rollout_index": 0, "reward": 0.0, "_ng_latency_s": 0.25},
            {"_ng_task_index": 0, "_ng_rollout_index": 1, "reward": 1.0},
            {"_ng_task_index": 1, "_ng_rollout_index": 1, "reward": 1.0},
        ],
    )
    _lines(
        tmp_path / "run_failures.jsonl",
        [{"_ng_task_index": 2, "_ng_rollout_index": 1, "error_type": "rate_limit", "message": "429 \x1b[31mslow\x00"}],
    )
    xml = tmp_path / "ci" / "junit.xml"
    totals = write_junit(xml, {"": out}, threshold=1.0)
    assert totals == {"tests": 3, "failures": 1, "errors": 1}

    suites = list(junitparser.JUnitXml.fromfile(str(xml)))
    assert [s.name for s in suites] == ["run"] and suites[0].tests == 3
    cases = {case.name: case for case in suites[0]}
    assert set(cases) == {"task 0", "task 1", "task 2"}
    assert cases["task 0"].is_passed and cases["task 0"].time == pytest.approx(0.5)
    (failure,) = cases["task 1"].result
    assert isinstance(failure, junitparser.Failure)
    assert failure.message == f"task 1: reward 0.5 is below 1 (rollout 0: 0 at {out}:2)"
    assert f"rollout 1: reward 1 ({out}:4)" in failure.text
    (error,) = cases["task 2"].result
    assert isinstance(error, junitparser.Error) and error.type == "rate_limit"
    assert (
        error.message
        == f"task 2 rollout 1 failed: rate_limit: 429 [31mslow (record at {tmp_path}/run_failures.jsonl:1)"
    )


def test_one_suite_per_variant_and_a_threshold_of_zero_passes_every_scored_task(tmp_path: Path):
    outputs = {}
    for name, reward in (("small", 0.0), ("large", 1.0)):
        outputs[name] = tmp_path / f"{name}.jsonl"
        _lines(outputs[name], [{"_ng_task_index": t, "_ng_rollout_index": 0, "reward": reward} for t in range(3)])
    xml = tmp_path / "junit.xml"
    assert write_junit(xml, outputs, threshold=0.0) == {"tests": 6, "failures": 0, "errors": 0}
    assert write_junit(xml, outputs, threshold=0.5) == {"tests": 6, "failures": 3, "errors": 0}
    parsed = junitparser.JUnitXml.fromfile(str(xml))
    assert {s.name: (s.tests, s.failures) for s in parsed} == {"small": (3, 3), "large": (3, 0)}
