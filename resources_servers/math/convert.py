"""Convert math datasets to our rows: ``python resources_servers/math/convert.py test.jsonl -o data/gsm8k.jsonl``.

Layouts, detected per row:

- GSM8K: ``question`` and ``answer``, the final answer after the last ``####`` (thousands
  commas and a leading ``$`` removed; ``<<48/2=24>>`` calculator notes dropped from the
  worked solution);
- MATH: ``problem`` and ``solution``, the final answer in the solution's last
  ``\\boxed{...}`` (nested braces included); an ``answer`` field, where the row has one
  (MATH-500), wins over the box. ``type`` or ``subject`` becomes ``subject``.

A row that cannot be converted gets one line on stderr naming ``file:line`` and why; the
others are written, a count is printed at the end, and the exit code is 1 when any row
was skipped (so a script notices).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resources_servers.math.generate import SYSTEM_PROMPT, script_for

__all__ = ["ConversionError", "convert_file", "convert_row", "last_boxed"]

_CALCULATOR_RE = re.compile(r"<<[^<>]*>>")
_THOUSANDS_RE = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


class ConversionError(ValueError):
    """A row that is in no known layout, or whose final answer cannot be found."""


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox``) in ``text``, nested braces
    included; None when there is none or it is never closed."""
    for match in reversed(list(re.finditer(r"\\(?:boxed|fbox)\s*\{", text))):
        depth = 0
        for i in range(match.end() - 1, len(text)):
            if text[i] == "{" and text[i - 1] != "\\":
                depth += 1
            elif text[i] == "}" and text[i - 1] != "\\":
                depth -= 1
                if depth == 0:
                    return text[match.end() : i].strip()
    return None


def _row(problem: str, answer: str, solution: str, subject: str, source: str, row_id: str) -> dict[str, Any]:
    return {
        "responses_create_params": {
            "input": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": problem}],
            "metadata": {"emulator_script": script_for(solution)},
        },
        "expected_answer": answer,
        "subject": subject,
        "meta": {"source": source, "id": row_id},
    }


def _text(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConversionError(f"field {key!r} must be a non-empty string, got {value!r}")
    return value


def convert_row(row: Any, source: str, row_id: str) -> dict[str, Any]:
    """One dataset row as a math row; ``ConversionError`` says why it cannot be."""
    if not isinstance(row, dict):
        raise ConversionError(f"expected a JSON object, got {type(row).__name__}")
    row_id = str(row.get("id") or row.get("unique_id") or row_id)
    if "question" in row and "answer" in row:  # GSM8K
        question, answer = _text(row, "question"), _text(row, "answer")
        if "####" not in answer:
            raise ConversionError("GSM8K-style row (question, answer) without '#### <final answer>' in 'answer'")
        work, final = answer.rsplit("####", 1)
        final = _THOUSANDS_RE.sub("", final.strip()).lstrip("$").strip()
        if not final:
            raise ConversionError("GSM8K-style row with nothing after '####'")
        solution = f"{_CALCULATOR_RE.sub('', work).strip()}\n\nThe final answer is $\\boxed{{{final}}}$."
        return _row(question, final, solution, "word_problems", source, row_id)
    if "problem" in row and ("solution" in row or "answer" in row):  # MATH, MATH-500
        problem = _text(row, "problem")
        worked: str = row["solution"] if isinstance(row.get("solution"), str) else ""
        given = row.get("answer")
        boxed = given if isinstance(given, str) and given.strip() else last_boxed(worked)
        if not boxed:
            raise ConversionError("MATH-style row (problem, solution) with no closed \\boxed{...} in 'solution'")
        if last_boxed(worked) is None:
            worked = f"{worked.strip()}\n\nThe final answer is $\\boxed{{{boxed}}}$.".strip()
        subject = str(row.get("subject") or row.get("type") or "math").strip().lower().replace(" ", "_")
        return _row(problem, boxed.strip(), worked, subject, source, row_id)
    keys = ", ".join(sorted(map(str, row))) or "none"
    raise ConversionError(
        f"unknown layout (keys: {keys}); expected GSM8K (question, answer) or MATH (problem, solution)"
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                yield number, line


def convert_file(in_path: Path, out_path: Path, source: str | None = None) -> tuple[int, list[str]]:
    """Convert ``in_path`` (JSONL) into ``out_path``; returns (rows written, error lines)."""
    source = source or in_path.stem
    written, errors = 0, []
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        for number, line in _lines(in_path):
            where = f"{in_path}:{number}"
            try:
                row = json.loads(line)
            except ValueError as e:
                errors.append(f"{where}: not valid JSON ({e})")
                continue
            try:
                converted = convert_row(row, source, f"{source}-{number}")
            except ConversionError as e:
                errors.append(f"{where}: {e}")
                continue
            out.write(json.dumps(converted, ensure_ascii=False) + "\n")
            written += 1
    return written, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", type=Path, help="a GSM8K- or MATH-style JSONL file")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output JSONL file (math rows)")
    parser.add_argument("--source", default=None, help="meta.source of the rows (default: the input file's stem)")
    args = parser.parse_args(argv)
    if not args.input.is_file():
        print(f"error: input file {str(args.input)!r} does not exist", file=sys.stderr)
        return 2
    written, errors = convert_file(args.input, args.out, args.source)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"converted {written} rows to {args.out}; skipped {len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
