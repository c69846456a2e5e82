"""mcqa: which option letter did the model choose, and is it the right one?

``extract_letter(text, options)`` reads the letter the way models really state it, and
refuses to guess when the text names more than one. The rule, in order (markdown emphasis
and backticks are removed first; letters beyond the row's options never count):

1. An answer statement: the LAST "answer is X", "Answer: X", "final answer: (X)",
   "correct option is X", "option X", "choice X" that is not negated. Its letter is the
   answer, unless the statement goes on "X or Y", "X and Y", "X/Y", "X, Y" with another
   letter (ambiguous: None). If the statement names no letter but an option's text
   ("The answer is Paris"), that option.
2. A letter that opens the reply: "C", "(C)", "C) 42", "C. 42", "C: 42", "C - 42".
3. A reply whose last line is the letter alone ("C", "(C)", "So, C.").
4. "I think it's B", "I'd go with B", "I choose (B)", "it is B" (the last one, not negated).
5. Exactly one distinct parenthesised letter "(C)" in the whole text.
6. A short reply (at most 12 words) that contains exactly one option's text: "Paris",
   "It's Paris." (two options' texts, "Paris, not London", is ambiguous: None).

Negation: a letter right after "not", "n't", "rather than", "instead of", "except" or
"other than" is discarded, so "Not A, it's C" is C and "Not A." alone is None. A letter
followed by an option text that belongs to a DIFFERENT option ("(B) London" where London
is C) contradicts itself: None. Lower-case letters count only after "answer"/"option"
words, where they cannot be the article "a" ("Answer: c" is C; "the answer is a bit..." is
not A). Upper-case "A" elsewhere must be set off ("(A)", "A)", "A.", alone on a line), so
the article in "A cat is..." never counts.
"""

from __future__ import annotations

import re
import string
from typing import Any

__all__ = ["extract_letter", "verify"]

_EMPHASIS_RE = re.compile(r"\*\*|__|`")
_SPACES_RE = re.compile(r"\s+")
_NEGATION_RE = re.compile(
    r"(?:\bnot|n't|\brather than|\binstead of|\bexcept|\bother than)\s*(?:option\s+|choice\s+)?[(\[]?\s*$", re.I
)
_MAX_SHORT_WORDS = 12


def _letters(n: int) -> str:
    return string.ascii_uppercase[: max(0, min(n, 26))]


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s%.-]", " ", text.lower()).replace(" .", " ").split()).strip(" .")


def _negated(text: str, start: int) -> bool:
    return bool(_NEGATION_RE.search(text[max(0, start - 24) : start]))


def _option_letter_in(span: str, options: list[str]) -> tuple[str | None, bool]:
    """The one option whose text appears in ``span`` as whole words (longest texts win over
    texts they contain), and whether more than one appears."""
    norm = f" {_norm(span)} "
    found: list[tuple[int, str]] = []
    for i, option in enumerate(options):
        text = _norm(str(option))
        if text and f" {text} " in norm:
            found.append((i, text))
    found = [(i, t) for i, t in found if not any(t != u and f" {t} " in f" {u} " for _, u in found)]
    chosen = {i for i, _ in found}
    if len(chosen) == 1:
        return _letters(len(options))[chosen.pop()], False
    return None, len(chosen) > 1


def _contradicts(letter: str, rest: str, options: list[str]) -> bool:
    """'(B) London' where London is another option's text."""
    rest = _norm(rest.split("\n", 1)[0])
    if not rest:
        return False
    index = _letters(len(options)).index(letter)
    return any(_norm(str(o)) == rest and i != index for i, o in enumerate(options))


def _patterns(letters: str) -> dict[str, re.Pattern[str]]:
    up, low = f"[{letters}]", f"[{letters.lower()}]"
    # A letter as a token: "(C)", "[C]", "C" not followed by a word character, or "c" only
    # where a sentence could end after it (never the article in "a bit").
    token = (
        rf"(?:\(\s*(?P<p>{up})\s*\)|\[\s*(?P<b>{up})\s*\]|(?P<u>{up})(?![\w'])|(?P<l>{low})(?=\s*(?:$|[.,;:!?)\]])))"
    )
    words = r"(?i:\s*(?:is|would\s+be|should\s+be|must\s+be|=|:|-)?\s*:?\s*(?:definitely\s+|clearly\s+|probably\s+)?)"
    return {
        "statement": re.compile(
            r"(?i:\bfinal\s+answer|\bcorrect\s+(?:answer|option|choice)|\bbest\s+(?:answer|option|choice)|\banswer"
            rf"|\boption|\bchoice){words}(?i:either\s+)?(?i:option\s+|choice\s+|letter\s+)?{token}"
        ),
        "statement_words": re.compile(
            r"(?i:\bfinal\s+answer|\bcorrect\s+answer|\banswer)\s*(?i:is|would\s+be|should\s+be|:)\s*:?\s*(?P<w>[^\n]+)"
        ),
        "more": re.compile(
            rf"\s*(?:,|/|&|(?i:\bor\b|\band\b))\s*(?i:option\s+|choice\s+)?[(\[]?\s*(?P<other>{up})\s*[)\]]?(?![\w'])"
        ),
        "lead": re.compile(
            rf"^\s*(?:\(\s*(?P<p>{up})\s*\)|(?P<u>{up})(?=\s*(?:$|[.):\-]|\s-|\s+is\b)))(?P<rest>[^\n]*)"
        ),
        "last_line": re.compile(rf"^(?i:so|thus|therefore|hence)?[,:]?\s*[(\[]?\s*(?P<u>{up})\s*[)\]]?\s*[.!]?$"),
        "phrase": re.compile(
            r"(?i:\bit's|\bit\s+is|\bi\s+think|\bi'd\s+say|\bi\s+would\s+say|\bi\s+choose|\bi\s+pick|\bgo\s+with"
            rf"|\bgoing\s+with|\bi\s+select|\bi'll\s+pick)\s+(?i:option\s+|choice\s+)?{token}"
        ),
        "paren": re.compile(rf"\(\s*(?P<p>{up})\s*\)"),
    }


_PATTERN_CACHE: dict[str, dict[str, re.Pattern[str]]] = {}
_TOKEN_GROUPS = ("p", "b", "u", "l")


def _letter_group(match: re.Match[str]) -> str:
    return next(k for k in _TOKEN_GROUPS if match.groupdict().get(k))


def _last_unnegated(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for match in pattern.finditer(text):
        if not _negated(text, match.start()) and not _negated(text, match.start(_letter_group(match))):
            last = match
    return last


def extract_letter(text: str, options: list[str]) -> str | None:
    """The option letter (``"A"``..) a reply chooses, or None when it chooses none or is ambiguous."""
    if not isinstance(text, str) or not options:
        return None
    letters = _letters(len(options))
    patterns = _PATTERN_CACHE.get(letters)
    if patterns is None:
        patterns = _PATTERN_CACHE[letters] = _patterns(letters)
    # One space or one newline between words: the patterns' optional whitespace then never
    # backtracks over long runs ("answer" + 10,000 spaces would take minutes).
    lines = (_SPACES_RE.sub(" ", line).strip() for line in _EMPHASIS_RE.sub("", text).splitlines())
    text = "\n".join(line for line in lines if line)
    if not text:
        return None

    statement = _last_unnegated(patterns["statement"], text)
    if statement is not None:
        letter = statement.group(_letter_group(statement)).upper()
        more = patterns["more"].match(text, statement.end())
        if more and more.group("other").upper() != letter:
            return None
        return None if _contradicts(letter, text[statement.end() :], options) else letter
    words = None
    for words in patterns["statement_words"].finditer(text):  # noqa: B007 - the last statement counts
        pass
    if words is not None:
        letter, ambiguous = _option_letter_in(words.group("w"), options)
        if letter or ambiguous:
            return letter

    lead = patterns["lead"].match(text)
    if lead is not None:
        letter = (lead.group("p") or lead.group("u")).upper()
        more = patterns["more"].match(text, lead.start("rest"))
        if more and more.group("other").upper() != letter:
            return None
        return None if _contradicts(letter, lead.group("rest").lstrip(" .):-"), options) else letter

    kept = [line.strip() for line in text.splitlines() if line.strip()]
    if kept and len(kept[-1].strip("()[]. ")) == 1 and kept[-1].strip("()[]. ").upper() in letters:
        return kept[-1].strip("()[]. ").upper()  # a lone letter, any case
    last_line = patterns["last_line"].match(kept[-1]) if kept else None
    if last_line is not None:
        return last_line.group("u")

    phrase = _last_unnegated(patterns["phrase"], text)
    if phrase is not None:
        letter = phrase.group(_letter_group(phrase)).upper()
        more = patterns["more"].match(text, phrase.end())
        return None if more and more.group("other").upper() != letter else letter

    parens = {m.group("p") for m in patterns["paren"].finditer(text) if not _negated(text, m.start())}
    if len(parens) == 1:
        return parens.pop()
    if len(parens) > 1:
        return None

    if len(text.split()) <= _MAX_SHORT_WORDS:
        return _option_letter_in(text, options)[0]
    return None


def verify(row: dict[str, Any], response_text: str) -> dict[str, Any]:
    """Score a reply: ``reward`` 1.0 when the extracted letter is ``row["expected_answer"]``.

    Returns ``reward``, ``extracted_answer`` (a letter, or None when the reply chose none or
    several) and ``expected_answer``. A row without ``options`` or with an expected letter
    outside them raises ``ValueError`` (a data error, not the model's).
    """
    options = row.get("options")
    expected = str(row.get("expected_answer", "")).strip().upper()
    if not isinstance(options, list) or len(options) < 2:
        raise ValueError(f"mcqa row needs 'options', a list of at least 2 option texts, got {options!r}")
    if len(expected) != 1 or expected not in _letters(len(options)):
        raise ValueError(
            f"mcqa row's expected_answer {row.get('expected_answer')!r} is not one of {list(_letters(len(options)))}"
        )
    extracted = extract_letter(response_text, options)
    return {"reward": 1.0 if extracted == expected else 0.0, "extracted_answer": extracted, "expected_answer": expected}
