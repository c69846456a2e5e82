"""math: the verifier on hand-checked answer pairs, final-answer extraction, malformed output, the deadline."""

from __future__ import annotations

import time

import pytest

from resources_servers.math.verifier import extract_final_answer, verify_answer, verify_with_timeout

# (expected answer, model's text, hand-checked reward). Each verdict was decided by a person
# first and then run; where math-verify alone disagreed, the verifier's normalisation fixes
# it (marked "ours") or the README lists it under known limitations (marked "limitation").
EQUIVALENT_FORMS = [
    ("1/2", "\\boxed{0.5}", 1.0),
    ("0.5", "\\boxed{\\frac{1}{2}}", 1.0),
    ("\\frac{1}{2}", "\\boxed{\\dfrac12}", 1.0),
    ("1/2", "\\boxed{\\tfrac{2}{4}}", 1.0),
    ("3/4", "\\boxed{\\frac34}", 1.0),
    ("2.5", "\\boxed{5/2}", 1.0),
    ("5/2", "The answer is $2 1/2$.", 1.0),  # ours: a mixed number (math-verify reads 2*1/2... as 3/2)
    ("19/12", "\\boxed{1\\frac{7}{12}}", 1.0),
    ("-12", "\\boxed{-12.0}", 1.0),
    ("-12", "\\boxed{−12}", 1.0),  # unicode minus
    ("1000", "\\boxed{1,000}", 1.0),
    ("1000", "\\boxed{1{,}000}", 1.0),
    ("1000000", "#### 1e6", 1.0),  # ours: scientific notation (math-verify reads 1e6 as 1*e*6)
    ("1000000", "\\boxed{10^6}", 1.0),
    ("0.25", "\\boxed{.25}", 1.0),
    ("8.75", "**Answer:** \\$8.75", 1.0),
    ("7", "The answer is 7.", 1.0),
    ("50", "Answer: 50%", 1.0),  # ours: "50%" is 50 (a 'what percent' answer) ...
    ("0.5", "Answer: 50\\%", 1.0),  # ... and 1/2 (math-verify's boxed parser fails on \%)
    ("50\\%", "\\boxed{50}", 1.0),  # an expected percentage is compared as its number
    ("\\{1,2\\}", "\\boxed{\\{2,1\\}}", 1.0),
    ("2, 3", "\\boxed{3, 2}", 1.0),
    ("2, 3", "\\boxed{x = 2 \\text{ or } x = 3}", 1.0),
    ("2, 3", "So $x = \\boxed{2}$ or $x = \\boxed{3}$.", 1.0),  # ours: boxes on the last box's line
    ("-4, 1", "\\boxed{\\{-4, 1\\}}", 1.0),
    ("[1,2)", "\\boxed{[1, 2)}", 1.0),
    ("(2, \\infty)", "\\boxed{(2,\\infty)}", 1.0),
    ("x=5", "\\boxed{5}", 1.0),
    ("5", "\\boxed{x = 5}", 1.0),
    ("x = 3/4", "\\boxed{0.75}", 1.0),
    ("(3, 2)", "\\boxed{x = 3, y = 2}", 1.0),
    ("(3, 2)", "\\boxed{y = 2, x = 3}", 1.0),  # ours: named values sorted (math-verify pairs in order)
    ("5", "\\boxed{5 \\text{ cm}}", 1.0),
    ("5", "The answer is 5 cm.", 1.0),
    ("12", "The answer is 12 apples.", 1.0),  # ours: trailing plain-word unit
    ("10", "\\boxed{\\text{10 dollars}}", 1.0),  # ours: an answer wrapped whole in \text{}
    ("\\frac{\\sqrt{2}}{2}", "\\boxed{\\frac{1}{\\sqrt{2}}}", 1.0),
    ("3\\sqrt{2}", "\\boxed{\\sqrt{18}}", 1.0),
    ("2\\pi", "\\boxed{6.283185}", 1.0),  # six decimals: math-verify rounds floats to 6 places
    ("1/3", "\\boxed{0.3333333}", 1.0),
    ("12", "\\boxed{5+7}", 1.0),
    ("x+1", "\\boxed{1+x}", 1.0),
    ("\\text{Monday}", "\\boxed{\\text{Monday}}", 1.0),
    ("5/2", "Final Answer: The final answer is $\\frac{5}{2}$. I hope it is correct.", 1.0),
]
NEAR_MISSES = [
    ("1/3", "\\boxed{0.333}", 0.0),  # three decimals is a rounding, not the answer
    ("2\\pi", "\\boxed{6.283}", 0.0),  # likewise
    ("19/12", "\\boxed{1.5833}", 0.0),
    ("-5", "\\boxed{5}", 0.0),
    ("1/2", "\\boxed{2}", 0.0),
    ("12", "\\boxed{1.2}", 0.0),
    ("3", "\\boxed{3.0001}", 0.0),
    ("\\{1,2\\}", "\\boxed{\\{1,2,3\\}}", 0.0),
    ("-4, 1", "\\boxed{-4}", 0.0),  # one root of two
    ("(3, 2)", "\\boxed{(2, 3)}", 0.0),  # an ordered pair in the wrong order
    ("(3, 2)", "\\boxed{2, 3}", 0.0),
    ("[1,2)", "\\boxed{[1,2]}", 0.0),
    ("x = 5", "\\boxed{y = 5}", 0.0),
    ("1000", "\\boxed{100}", 0.0),
    ("0.5", "\\boxed{5\\%}", 0.0),
    ("8.75", "\\boxed{8.57}", 0.0),
    ("5", "\\boxed{five}", 0.0),  # limitation: number words are not read
    ("[1,2)", "\\boxed{1 \\le x < 2}", 0.0),  # limitation: see README (interval vs inequality)
    ("7", "I think it is 7 but the answer is \\boxed{8}", 0.0),  # the box wins over earlier words
    ("7", "\\boxed{7} was my first guess.\nCorrection: the answer is \\boxed{9}.", 0.0),  # last box
]
PAIRS = EQUIVALENT_FORMS + NEAR_MISSES


@pytest.mark.parametrize(("expected", "text", "reward"), PAIRS)
def test_hand_checked_answer_pairs(expected: str, text: str, reward: float) -> None:
    result = verify_answer(expected, text)
    assert result["reward"] == reward, result
    assert result["expected_answer"] == expected


def test_there_are_at_least_fifty_hand_checked_pairs() -> None:
    assert len(PAIRS) >= 50 and len(NEAR_MISSES) >= 15


@pytest.mark.parametrize(
    ("text", "answer", "how"),
    [
        ("Work... so \\boxed{\\frac{3}{4}}.", "\\frac{3}{4}", "boxed"),
        ("\\boxed{\\left\\{1, \\frac{1}{2}\\right\\}}", "\\left\\{1, \\frac{1}{2}\\right\\}", "boxed"),
        ("\\fbox{42}", "42", "boxed"),
        ("\\boxed{\\boxed{42}}", "\\boxed{42}", "boxed"),
        ("$\\boxed{2}$ and $\\boxed{3}$", "2, 3", "boxed"),
        ("\\boxed{1} at first;\nthen $\\boxed{2}$", "2", "boxed"),
        ("The final answer is 42. I hope it is correct.", "42", "phrase"),
        ("Answer: x = 2.5", "x = 2.5", "phrase"),
        ("**Final Answer:** $-3$", "$-3$", "phrase"),
        ("she pays 3 * 4 = 12\n#### 12", "12", "phrase"),
        ("Let me compute.\n\n$\\frac{7}{2}$", "$\\frac{7}{2}$", "last_line"),
        ("Let me compute.\n\n-12", "-12", "last_line"),
    ],
)
def test_final_answer_is_found_where_models_put_it(text: str, answer: str, how: str) -> None:
    assert extract_final_answer(text) == (answer, how)


def test_text_without_a_final_answer_gives_none() -> None:
    assert extract_final_answer("So she has 12 apples left.") is None  # a sentence, not a bare answer
    assert extract_final_answer("I am not sure how to solve this.") is None
    assert extract_final_answer("unclosed \\boxed{12") is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty response"),
        ("   \n ", "empty response"),
        ("I cannot solve this problem.", "no final answer found"),
        ("asdf qwer zxcv !!! ###", "no final answer found"),
        ("\\boxed{}", "empty final answer"),
        ("\\boxed{" + "1+" * 400 + "1}", "longer than"),
        ("x" * 100_000, "no final answer found"),
        ("\\boxed{\\frac{1}{}", "no final answer found"),
        ("\\boxed{\\frac{}{}}", "not equivalent"),
        ("\\boxed{)(][}", "not equivalent"),
        ("\\boxed{\\begin{pmatrix}}", "not equivalent"),
    ],
)
def test_malformed_output_scores_zero_with_a_reason(text: str, reason: str) -> None:
    result = verify_answer("5", text)
    assert result["reward"] == 0.0
    assert reason in result["verdict_reason"], result


def test_a_hundred_kilobyte_answer_is_scored_quickly() -> None:
    start = time.perf_counter()
    result = verify_answer("5", "blah " * 20_000 + "\n\nThe answer is \\boxed{5}.")
    assert result["reward"] == 1.0
    assert time.perf_counter() - start < 2.0
    assert verify_answer("5", "{" * 100_000)["reward"] == 0.0
    assert verify_answer("5", "\\boxed{" * 50_000)["reward"] == 0.0


@pytest.mark.parametrize(
    "text",
    ["answer" + " " * 100_000 + "x", "answer is x " * 20_000, "\\boxed{1} " * 20_000, "\n \n" * 50_000 + "5"],
)
def test_adversarial_text_is_scanned_in_linear_time(text: str) -> None:
    start = time.perf_counter()
    verify_answer("5", text)
    assert time.perf_counter() - start < 5.0  # quadratic scanning took minutes on these


def test_non_string_output_scores_zero() -> None:
    assert verify_answer("5", None)["reward"] == 0.0  # type: ignore[arg-type]


def test_a_bad_expected_answer_is_a_data_error() -> None:
    with pytest.raises(ValueError, match="fix the data row"):
        verify_answer("", "\\boxed{5}")


@pytest.mark.e2e
def test_the_deadline_kills_a_hanging_verification() -> None:
    start = time.perf_counter()
    result = verify_with_timeout("5", "The answer is \\boxed{2^{2^{2^{100}}}}", timeout_s=1.0)
    assert time.perf_counter() - start < 5.0
    assert result["reward"] == 0.0
    assert "timed out after 1 s" in result["verdict_reason"]
    assert result["parsed_answer"] == "2^{2^{2^{100}}}"


def test_the_deadline_path_returns_the_verdict_when_in_time() -> None:
    assert verify_with_timeout("3/4", "\\boxed{0.75}", timeout_s=10.0)["reward"] == 1.0
    with pytest.raises(ValueError, match="fix the data row"):
        verify_with_timeout("", "\\boxed{5}", timeout_s=10.0)


@pytest.mark.e2e
def test_the_module_imports_without_math_verify_and_names_the_extra_when_used() -> None:
    import subprocess
    import sys
    from pathlib import Path

    # A fresh interpreter where ``import math_verify`` fails, as without the 'math' extra.
    code = (
        "import sys; sys.modules['math_verify'] = None\n"
        "from resources_servers.math import verifier\n"
        "print('imported')\n"
        "verifier.verify_answer('5', '\\\\boxed{5}')\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "imported"
    assert "MathVerifyMissingError" in done.stderr and "'math' extra" in done.stderr


def test_only_the_math_environment_imports_math_verify() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    importers = [
        path.relative_to(root).as_posix()
        for folder in ("nemo_gym_cli", "resources_servers", "responses_api_agents", "responses_api_models", "tests")
        for path in (root / folder).rglob("*.py")
        if "math_verify" in path.read_text(encoding="utf-8") and "resources_servers/math/" not in path.as_posix()
    ]
    assert importers == []


def test_verify_answer_runs_outside_the_main_thread_and_pickles() -> None:
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    # math-verify's own SIGALRM timeouts would raise "signal only works in main thread" here.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(verify_answer, ["1/2", "2, 3"], ["\\boxed{0.5}", "\\boxed{3, 2}"]))
    assert [r["reward"] for r in results] == [1.0, 1.0]
    assert pickle.loads(pickle.dumps(verify_answer)) is verify_answer  # a worker pool can send it
