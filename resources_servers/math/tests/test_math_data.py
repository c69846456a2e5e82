"""math: the generator is deterministic, the shipped problems verify, the converter reads GSM8K and MATH layouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from resources_servers.math import convert
from resources_servers.math.generate import generate, number
from resources_servers.math.verifier import verify_answer

HERE = Path(__file__).parent
PROBLEMS = HERE.parent / "data" / "problems.jsonl"
SAMPLES = HERE / "data"


def lines(rows) -> list[str]:
    return [json.dumps(row, ensure_ascii=False) for row in rows]


def shipped() -> list[dict]:
    return [json.loads(line) for line in PROBLEMS.read_text(encoding="utf-8").splitlines()]


def scripted_text(row: dict) -> str:
    turns = json.loads(row["responses_create_params"]["metadata"]["emulator_script"])
    assert len(turns) == 1 and set(turns[0]) <= {"text", "wrong"}
    return turns[0]["text"]


def scripted_mistake(row: dict) -> str:
    """The text the script's ``wrong`` variant answers (what a weaker emulated model says)."""
    (turn,) = json.loads(row["responses_create_params"]["metadata"]["emulator_script"])
    assert set(turn["wrong"]) == {"text"}
    return turn["wrong"]["text"]


def wrong(answer: str) -> str:
    """The expected answer with its last number changed by one: '(3, 2)' -> '(3, 3)', 'x = 1/3' -> 'x = 1/4'."""
    match = list(re.finditer(r"\d+", answer))[-1]
    return f"{answer[: match.start()]}{int(match.group()) + 1}{answer[match.end() :]}"


def test_the_generator_is_deterministic() -> None:
    assert lines(generate(50, seed=3)) == lines(generate(50, seed=3))
    assert lines(generate(50, seed=3)) != lines(generate(50, seed=4))


def test_the_shipped_problems_are_what_the_generator_writes() -> None:
    rows = shipped()
    assert len(rows) >= 200
    assert PROBLEMS.read_text(encoding="utf-8").splitlines() == lines(generate(len(rows), seed=0))


def test_shipped_rows_have_the_row_format() -> None:
    rows = shipped()
    assert len({row["meta"]["id"] for row in rows}) == len(rows)
    assert {row["subject"] for row in rows} == {"arithmetic", "rates", "percentages", "algebra"}
    for row in rows:
        params = row["responses_create_params"]
        assert [m["role"] for m in params["input"]] == ["system", "user"]
        assert "\\boxed{" in params["input"][0]["content"]
        assert "tools" not in params
        assert scripted_text(row).endswith(f"\\boxed{{{row['expected_answer']}}}$.")
        assert row["meta"]["source"] == "generated"


def test_every_shipped_answer_verifies_against_its_script_and_not_against_a_wrong_one() -> None:
    for row in shipped():
        expected = row["expected_answer"]
        right = verify_answer(expected, scripted_text(row))
        assert right["reward"] == 1.0, (row["meta"]["id"], right)
        bad = verify_answer(expected, f"The final answer is $\\boxed{{{wrong(expected)}}}$.")
        assert bad["reward"] == 0.0, (row["meta"]["id"], bad)


def test_every_scripted_mistake_is_a_different_answer_that_scores_0() -> None:
    rows = shipped()
    typical = 0
    for row in rows:
        text = scripted_mistake(row)
        bad = verify_answer(row["expected_answer"], text)
        assert bad["reward"] == 0.0 and bad["verdict_reason"] == "not equivalent (boxed)", (row["meta"]["id"], bad)
        typical += text.split("\n\n")[0] != scripted_text(row).split("\n\n")[0]
    # Mostly the template's typical mistake; a last-digit slip where that mistake is right.
    assert typical >= 0.9 * len(rows)


@pytest.mark.parametrize(
    ("value", "text"),
    [(12, "12"), (-3, "-3"), (0.5, "0.5"), ("65.8", "65.8"), ("-1/8", "-0.125"), ("56/15", "56/15"), ("1/3", "1/3")],
)
def test_numbers_are_written_exactly(value, text) -> None:
    from fractions import Fraction

    assert number(Fraction(str(value))) == text


def test_gsm8k_rows_convert_with_the_answer_after_the_hashes(tmp_path: Path) -> None:
    written, errors = convert.convert_file(SAMPLES / "gsm8k_sample.jsonl", tmp_path / "out.jsonl")
    assert (written, errors) == (3, [])
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["expected_answer"] for r in rows] == ["72", "14400", "2.50"]
    assert rows[0]["meta"] == {"source": "gsm8k_sample", "id": "gsm8k_sample-1"}
    assert rows[0]["responses_create_params"]["input"][1]["content"].startswith("Natalia sold clips")
    solution = scripted_text(rows[0])
    assert "<<" not in solution and solution.endswith("\\boxed{72}$.")
    for row in rows:
        assert verify_answer(row["expected_answer"], scripted_text(row))["reward"] == 1.0


def test_math_rows_convert_with_the_last_box_and_nested_braces(tmp_path: Path) -> None:
    written, errors = convert.convert_file(SAMPLES / "math_sample.jsonl", tmp_path / "out.jsonl", source="MATH")
    assert (written, errors) == (6, [])
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["expected_answer"] for r in rows] == [
        "\\frac{5}{6}",
        "[2, \\infty)",
        "2\\sqrt{2}",
        "\\left\\{ -2, 2 \\right\\}",
        "\\dfrac{2}{3}",
        "2",
    ]
    assert [r["subject"] for r in rows][:2] == ["prealgebra", "intermediate_algebra"]
    assert rows[5]["meta"] == {"source": "MATH", "id": "test/prealgebra/1.json"}
    for row in rows:
        assert verify_answer(row["expected_answer"], scripted_text(row))["reward"] == 1.0, row


def test_rows_that_cannot_convert_are_named_by_file_and_line_and_counted(tmp_path: Path, capsys) -> None:
    src = SAMPLES / "mixed_with_errors.jsonl"
    code = convert.main([str(src), "-o", str(tmp_path / "out.jsonl")])
    out, err = capsys.readouterr()
    assert code == 1
    assert out.strip() == f"converted 3 rows to {tmp_path / 'out.jsonl'}; skipped 6"
    errors = err.strip().splitlines()
    assert [e.split(": ", 2)[1].rsplit(":", 1)[1] for e in errors] == ["3", "5", "6", "7", "8", "9"]
    assert errors[0] == f"error: {src}:3: GSM8K-style row (question, answer) without '#### <final answer>' in 'answer'"
    assert "no closed \\boxed{...}" in errors[1]
    assert "not valid JSON" in errors[2]
    assert "unknown layout (keys: prompt, target)" in errors[3]
    expected = [json.loads(line)["expected_answer"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert expected == ["42", "1024", "9"]


def test_a_missing_input_file_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert convert.main([str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "out.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
