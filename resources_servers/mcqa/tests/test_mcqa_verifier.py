"""mcqa: letter extraction from real answer styles, ambiguity, rewards, and the shipped questions."""

from __future__ import annotations

import json
import string
import time
from pathlib import Path

import pytest

from resources_servers.mcqa.generate import generate
from resources_servers.mcqa.verifier import extract_letter, verify

CITIES = ["London", "Paris", "Rome", "Berlin"]
NUMBERS = ["40", "41", "42", "43", "44"]
QUESTIONS = Path(__file__).parent.parent / "data" / "questions.jsonl"

# (reply, options, hand-checked letter or None)
CASES = [
    # how models state an answer
    ("The answer is (C).", CITIES, "C"),
    ("**C**", CITIES, "C"),
    ("C) 42", NUMBERS, "C"),
    ("C) Rome", CITIES, "C"),
    ("Answer: c", CITIES, "C"),
    ("answer: b.", CITIES, "B"),
    ("I think it's B.", CITIES, "B"),
    ("Let me recall.\nThe capital is well known.\n\nB", CITIES, "B"),
    ("(B) Paris", CITIES, "B"),
    ("Paris", CITIES, "B"),
    ("It's Paris.", CITIES, "B"),
    ("42", NUMBERS, "C"),
    ("The answer is Berlin.", CITIES, "D"),
    ("The answer is 44", NUMBERS, "E"),
    ("B is correct.", CITIES, "B"),
    ("Final answer: D", CITIES, "D"),
    ("**Final Answer:** (D) Berlin", CITIES, "D"),
    ("The correct option is B", CITIES, "B"),
    ("Option D is correct.", CITIES, "D"),
    ("I would say (A) London", CITIES, "A"),
    ("So, C.", CITIES, "C"),
    ("c", CITIES, "C"),
    ("[B]", CITIES, "B"),
    ("Answer - B", CITIES, "B"),
    ("The answer is definitely C", CITIES, "C"),
    ("After weighing them, I'd go with (A).", CITIES, "A"),
    ("Rome was founded long ago, but the capital of France is Paris, so the answer is B.", CITIES, "B"),
    # the last statement wins; negated letters do not count
    ("Options A and B are wrong; the answer is C.", CITIES, "C"),
    ("The answer is C, not A.", CITIES, "C"),
    ("Not A, it's C.", CITIES, "C"),
    ("It's not option B; the answer is D.", CITIES, "D"),
    ("The answer is a bit tricky, but I'd go with D.", CITIES, "D"),  # "a" the article, not A
    # near misses and ambiguity: no letter
    ("A or B", CITIES, None),
    ("The answer is A or B.", CITIES, None),
    ("The answer is either B or C", CITIES, None),
    ("Answer: A/B", CITIES, None),
    ("(A) and (B) both seem right", CITIES, None),
    ("Paris, not London", CITIES, None),
    ("Answer: (B) Rome", CITIES, None),  # the letter and the text name different options
    ("Not A.", CITIES, None),
    ("A cat is an animal.", CITIES, None),
    ("vitamin C is important", CITIES, None),
    ("the answer is (e)", CITIES, None),  # no option E here
    ("I am not sure.", CITIES, None),
    ("", CITIES, None),
]


@pytest.mark.parametrize(("text", "options", "letter"), CASES)
def test_letter_extraction(text: str, options: list[str], letter: str | None) -> None:
    assert extract_letter(text, options) == letter


def test_there_are_at_least_thirty_extraction_cases() -> None:
    assert len(CASES) >= 30


def test_reward_is_one_for_the_expected_letter_and_zero_otherwise() -> None:
    row = {"options": CITIES, "expected_answer": "B"}
    assert verify(row, "The answer is (B).") == {"reward": 1.0, "extracted_answer": "B", "expected_answer": "B"}
    assert verify(row, "The answer is (C).") == {"reward": 0.0, "extracted_answer": "C", "expected_answer": "B"}
    assert verify(row, "A or B") == {"reward": 0.0, "extracted_answer": None, "expected_answer": "B"}
    assert verify({"options": CITIES, "expected_answer": "b"}, "Paris")["reward"] == 1.0


@pytest.mark.parametrize("text", ["", "   ", "\x00\x01garbage", "(" * 100_000, "A" * 100_000, None, 42, "é" * 10_000])
def test_malformed_output_scores_zero_without_an_exception(text) -> None:
    result = verify({"options": CITIES, "expected_answer": "B"}, text)
    assert result["reward"] == 0.0


@pytest.mark.parametrize(
    "text", ["answer" + " " * 100_000 + "x", "option" + " " * 50_000 + ":" + " " * 50_000, "it's " * 50_000]
)
def test_adversarial_text_is_scanned_in_linear_time(text: str) -> None:
    start = time.perf_counter()
    assert extract_letter(text, CITIES) is None
    assert time.perf_counter() - start < 5.0  # backtracking over whitespace runs took minutes


def test_a_bad_row_is_a_data_error() -> None:
    with pytest.raises(ValueError, match="options"):
        verify({"expected_answer": "A"}, "A")
    with pytest.raises(ValueError, match="not one of"):
        verify({"options": CITIES, "expected_answer": "E"}, "E")


def shipped() -> list[dict]:
    return [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]


def test_the_shipped_questions_are_what_the_generator_writes() -> None:
    lines = [json.dumps(row, ensure_ascii=False) for row in generate(seed=0)]
    assert QUESTIONS.read_text(encoding="utf-8").splitlines() == lines
    assert lines != [json.dumps(row, ensure_ascii=False) for row in generate(seed=1)]


def test_shipped_questions_have_the_row_format() -> None:
    rows = shipped()
    assert len(rows) >= 60
    assert len({row["subject"] for row in rows}) >= 4
    assert len({row["meta"]["id"] for row in rows}) == len(rows)
    for row in rows:
        options = row["options"]
        assert 4 <= len(options) <= 5 and len(set(options)) == len(options)
        prompt = row["responses_create_params"]["input"][1]["content"]
        for letter, option in zip(string.ascii_uppercase, options, strict=False):
            assert f"\n{letter}) {option}" in prompt
        assert row["expected_answer"] in string.ascii_uppercase[: len(options)]


def test_every_scripted_reply_scores_one_and_a_wrong_letter_zero() -> None:
    styles = set()
    for row in shipped():
        turns = json.loads(row["responses_create_params"]["metadata"]["emulator_script"])
        assert len(turns) == 1
        assert verify(row, turns[0]["text"])["reward"] == 1.0, (row["meta"], turns)
        wrong = next(c for c in "ABCDE" if c != row["expected_answer"])
        assert verify(row, f"The answer is ({wrong}).")["reward"] == 0.0
        styles.add(turns[0]["text"][:6])
    assert len(styles) >= 8  # the replies vary in style
