"""math: does a model's free-form answer equal the expected one, mathematically?

``verify_answer(expected, response_text)`` pulls the FINAL answer out of the model's text
(``\\boxed{...}`` first, then "final answer is X" / "answer: X" / "#### X", then a last line
that is a bare expression), normalises what math-verify does not (percent signs, plain-word
units, mixed numbers, scientific notation, named solutions out of order) and asks Hugging
Face's ``math-verify`` whether it equals the expected answer: ``1/2``, ``0.5``,
``\\dfrac12`` and ``\\frac{2}{4}`` are one answer; ``0.333`` is not ``1/3``.

Pure and module-level, so a process pool can pickle it. It runs math-verify with its own
SIGALRM timeouts switched off (they fail outside the main thread), so a pathological answer
(``2^{2^{2^{100}}}``, ``(10^{10})!``) can hang it: production runs it in a worker process
with a deadline (the kernel's pool); ``verify_with_timeout`` is a small stand-alone version.

math-verify is the optional ``math`` extra; this module imports without it and says which
extra to install the first time ``verify_answer`` is called.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
from functools import cache
from types import ModuleType
from typing import Any

__all__ = ["MathVerifyMissingError", "extract_final_answer", "verify_answer", "verify_with_timeout"]

MAX_ANSWER_CHARS = 300  # a longer "final answer" is prose or garbage, never handed to sympy


class MathVerifyMissingError(ImportError):
    """math-verify is not installed."""


@cache
def _math_verify() -> ModuleType:
    try:
        import math_verify
    except ImportError as e:
        raise MathVerifyMissingError(
            "resources_servers.math needs math-verify, which is not installed: install the project's "
            "'math' extra (pip install -e '.[math]'; scripts/setup does)."
        ) from e
    # We switch math-verify's SIGALRM timeouts off on purpose (the worker pool enforces the
    # deadline); its once-per-process warning about that would only be noise in server logs.
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(lambda record: not record.getMessage().startswith("Timeout is disabled"))
    return math_verify


# --- extraction --------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
# What introduces a final answer; the answer runs from there to the end of the line. The
# pattern matches only the introduction, so scanning stays linear on long inputs.
_PHRASE_RE = re.compile(r"(?:final\s+answer|\banswer)[\s*_]*(?:is\b[\s*_:]*|:[\s*_]*)|^[ \t]*####[ \t]*", re.I | re.M)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)|\s+I hope\b|\s+\((?:since|because|as)\b", re.IGNORECASE)
_LATEX_COMMAND_RE = re.compile(r"\\[A-Za-z]+")
_WORD_RE = re.compile(r"[A-Za-z]{2,}")


def _closing_braces(text: str) -> dict[int, int]:
    """Position of each ``{`` -> position of its ``}``, in one pass (unclosed ones are absent);
    ``\\{`` and ``\\}`` are literal braces, not groups."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for i, c in enumerate(text):
        if c == "{" and text[i - 1 : i] != "\\":
            stack.append(i)
        elif c == "}" and text[i - 1 : i] != "\\" and stack:
            pairs[stack.pop()] = i
    return pairs


def _boxed(text: str) -> str | None:
    """The last ``\\boxed{...}``; several boxes on that last box's line are one answer ("2, 3")."""
    if "\\boxed" not in text and "\\fbox" not in text:
        return None
    closing = _closing_braces(text)
    boxes: list[tuple[int, str]] = []
    outer_end = -1
    for match in _BOX_RE.finditer(text):
        end = closing.get(match.end() - 1)
        if end is not None and match.start() > outer_end:  # a box inside a box is part of it
            boxes.append((match.start(), text[match.end() : end]))
            outer_end = end
    if not boxes:
        return None
    line_start = text.rfind("\n", 0, boxes[-1][0])
    return ", ".join(inner.strip() for start, inner in boxes if start > line_start)


def _cut_sentence(answer: str) -> str:
    """'5 apples. I hope it is correct.' -> '5 apples'; decimals ('2.5') stay whole."""
    match = _SENTENCE_END_RE.search(answer)
    return answer[: match.start()] if match else answer


def _last_phrase(text: str) -> str | None:
    """The rest of the line after the last "answer is" / "Answer:" / "####" (so "Final Answer:
    The final answer is 5" gives "5"), or None."""
    last = None
    for last in _PHRASE_RE.finditer(text):  # noqa: B007 - the last introduction is the final answer
        pass
    if last is None:
        return None
    end = text.find("\n", last.end())
    answer = text[last.end() : end if end >= 0 else len(text)]
    return answer if answer.strip() else None


def _looks_like_expression(line: str) -> bool:
    """A bare final line such as ``x = 5``, ``\\frac{3}{4}`` or ``-12`` (not a sentence)."""
    core = _strip_wrappers(line)
    if not core or len(core) > 60 or not re.search(r"\d", core) or _BOX_RE.search(core):
        return False
    return not _WORD_RE.search(_LATEX_COMMAND_RE.sub("", core))


def extract_final_answer(text: str) -> tuple[str, str] | None:
    """The final answer in a model's text and how it was found (``boxed``, ``phrase``,
    ``last_line``), or None when the text states none."""
    boxed = _boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    phrase = _last_phrase(text)
    if phrase is not None:
        return _cut_sentence(phrase).strip(), "phrase"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if lines and _looks_like_expression(lines[-1]):
        return lines[-1].strip(), "last_line"
    return None


# --- normalisation -----------------------------------------------------------------------

_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("`", "`"))
_TEXT_RE = re.compile(r"^\\(?:text|textbf|mathrm|mbox)\{(.*)\}$", re.DOTALL)
_CURRENCY_RE = re.compile(r"^(-?)\s*\\?\$\s*(?=[\d.])")
_PERCENT_RE = re.compile(r"^(?P<base>.+?)\s*(?:\\%|%|\\text\{\s*\\?%\s*\}|\s+percent)$", re.IGNORECASE)
_MIXED_RE = re.compile(r"^(?P<sign>-?)(?P<whole>\d+)\s+(?P<num>\d+)\s*/\s*(?P<den>\d+)$")
_SCIENTIFIC_RE = re.compile(r"^(?P<mant>[-+]?\d+(?:\.\d+)?)\s*[eE](?P<exp>[-+]?\d+)$")
_NUMBER_WITH_WORDS_RE = re.compile(r"^(?P<num>[-+]?(?:\d[\d,]*)?\.?\d+)\s+(?P<words>[A-Za-z][A-Za-z .'-]*)$")
_NOT_UNITS = frozenset({"pi", "and", "or", "i", "e", "x", "y", "z"})
_ASSIGNMENT_RE = re.compile(r"^\s*([A-Za-z])\s*=\s*([^=,]+?)\s*$")


def _strip_wrappers(answer: str) -> str:
    answer = answer.strip()
    changed = True
    while changed:
        changed = False
        answer = answer.strip().rstrip(".;,").strip()
        for left, right in _WRAPPERS:
            if len(answer) > len(left) + len(right) and answer.startswith(left) and answer.endswith(right):
                answer, changed = answer[len(left) : -len(right)], True
                break
        match = _TEXT_RE.match(answer)
        if match and "{" not in match.group(1):
            answer, changed = match.group(1), True
    return answer


def _normalise(answer: str) -> tuple[list[str], bool]:
    """Forms of one answer to compare (a percentage has two: ``50%`` is 50 and 1/2) and
    whether it was a percentage."""
    answer = _strip_wrappers(answer)
    answer = _CURRENCY_RE.sub(r"\1", answer)
    percent = _PERCENT_RE.match(answer)
    if percent:
        base = _strip_wrappers(percent.group("base"))
        return [base, f"\\frac{{{base}}}{{100}}"], True
    mixed = _MIXED_RE.match(answer)
    if mixed:
        whole, num, den = int(mixed["whole"]), int(mixed["num"]), int(mixed["den"])
        return [f"{mixed['sign']}\\frac{{{whole * den + num}}}{{{den}}}"], False
    scientific = _SCIENTIFIC_RE.match(answer)
    if scientific:
        return [f"{scientific['mant']} \\times 10^{{{int(scientific['exp'])}}}"], False
    worded = _NUMBER_WITH_WORDS_RE.match(answer)
    if worded and not set(worded["words"].lower().split()) & _NOT_UNITS:
        return [worded["num"]], False
    parts = answer.split(",")
    assignments = [_ASSIGNMENT_RE.match(p) for p in parts]
    if len(parts) > 1 and all(assignments):
        names = [m.group(1) for m in assignments if m]
        if len(set(names)) == len(names):  # "y = 2, x = 3" -> "x = 3, y = 2" (math-verify pairs them in order)
            answer = ", ".join(f"{m.group(1)} = {m.group(2)}" for m in sorted(assignments, key=lambda m: m.group(1)))  # type: ignore[union-attr]
    return [answer], False


# --- verification ------------------------------------------------------------------------


def _parse(mv: ModuleType, latex: str) -> list[Any]:
    return mv.parse("\\boxed{" + latex + "}", parsing_timeout=None)


def verify_answer(expected: str, response_text: str) -> dict[str, Any]:
    """Score a model's free-form text against the expected answer.

    Returns ``reward`` (1.0 when the final answer is mathematically equal to ``expected``,
    else 0.0), ``parsed_answer`` (the final answer found in the text, "" if none),
    ``expected_answer`` and ``verdict_reason``. Malformed model output scores 0 with a
    reason; only a bad ``expected`` (empty, not a string) raises ``ValueError``, because
    that is a data error, not a model error. May hang on pathological answers: run it
    with a deadline (``verify_with_timeout`` or the kernel's worker pool).
    """
    if not isinstance(expected, str) or not expected.strip():
        raise ValueError(f"expected_answer must be a non-empty string, got {expected!r}: fix the data row")
    mv = _math_verify()
    result: dict[str, Any] = {"reward": 0.0, "parsed_answer": "", "expected_answer": expected}
    if not isinstance(response_text, str) or not response_text.strip():
        return {**result, "verdict_reason": "empty response"}
    found = extract_final_answer(response_text)
    if found is None:
        return {**result, "verdict_reason": "no final answer found (expected \\boxed{...} or 'answer: ...')"}
    answer, how = found
    result["parsed_answer"] = answer[:MAX_ANSWER_CHARS]
    if not answer:
        return {**result, "verdict_reason": f"empty final answer ({how})"}
    if len(answer) > MAX_ANSWER_CHARS:
        return {**result, "verdict_reason": f"final answer longer than {MAX_ANSWER_CHARS} characters ({how})"}
    try:
        gold_forms, _ = _normalise(expected)
        gold = _parse(mv, gold_forms[0])
        if not gold:
            raise ValueError(f"expected_answer {expected!r} did not parse: fix the data row")
        pred_forms, _ = _normalise(answer)
        preds = [p for form in pred_forms for p in _parse(mv, form)]
        if not preds:
            return {**result, "verdict_reason": f"final answer did not parse ({how})"}
        if mv.verify(gold, preds, timeout_seconds=None):
            return {**result, "reward": 1.0, "verdict_reason": f"equivalent ({how})"}
        return {**result, "verdict_reason": f"not equivalent ({how})"}
    except ValueError:
        raise
    except Exception as e:  # sympy can fail in many ways on odd input; the model's answer is then wrong
        return {**result, "verdict_reason": f"verification failed: {type(e).__name__} ({how})"}


# --- stand-alone deadline ----------------------------------------------------------------


def _verify_in_child(conn: Any, expected: str, response_text: str) -> None:
    try:
        conn.send(("ok", verify_answer(expected, response_text)))
    except ValueError as e:
        conn.send(("bad_row", str(e)))
    except BaseException as e:  # noqa: B036 - everything goes back to the parent
        conn.send(("error", f"{type(e).__name__}: {e}"))
    finally:
        conn.close()


def verify_with_timeout(expected: str, response_text: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """``verify_answer`` in a child process, killed after ``timeout_s`` seconds (reward 0,
    ``verdict_reason`` says it timed out). One process per call: for scripts and tests;
    servers use the kernel's worker pool."""
    _math_verify()  # a missing extra is the caller's error, raised here, not in the child
    found = extract_final_answer(response_text) if isinstance(response_text, str) else None
    failed = {
        "reward": 0.0,
        "parsed_answer": found[0][:MAX_ANSWER_CHARS] if found else "",
        "expected_answer": expected,
    }
    ctx: Any = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_verify_in_child, args=(child, expected, response_text), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout_s):
            return {**failed, "verdict_reason": f"verification timed out after {timeout_s:g} s"}
        try:
            status, value = parent.recv()
        except EOFError:
            return {**failed, "verdict_reason": f"verification worker died (exit code {process.exitcode})"}
        if status == "bad_row":
            raise ValueError(value)
        if status == "error":
            raise RuntimeError(f"verification failed in the worker: {value}")
        return value
    finally:
        parent.close()
        if process.is_alive():
            process.kill()
        process.join()
