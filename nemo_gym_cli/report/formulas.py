"""LaTeX in trajectories as MathML, which browsers render natively: formulas offline.

Math answers and prompts are full of ``$\\frac{1}{2}$``; shown raw they are hard to read.
``latex2mathml`` converts each formula when the report is written; the page needs no math
library. Its output is not trusted as markup (it passes ``\\text{<b>}`` through as an
element and ``&`` unescaped): each formula is parsed as XML, every element and attribute
checked against MathML's, and written again by ElementTree, which escapes text. Anything
else stays the raw LaTeX, as text.

Delimiters: ``$$...$$`` and ``\\[...\\]`` (display), ``\\(...\\)`` and ``$...$`` (inline;
pandoc's rule, so prices are not formulas: the opening ``$`` is followed by a non-space,
the closing one preceded by a non-space and not followed by a digit).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

__all__ = ["segments"]

_NS = "http://www.w3.org/1998/Math/MathML"
_ELEMENTS = frozenset(
    "math mrow mi mn mo ms mtext mspace mfrac msqrt mroot msub msup msubsup munder mover munderover "
    "mtable mtr mtd mstyle merror mpadded mphantom menclose mfenced semantics annotation mmultiscripts "
    "mprescripts none".split()
)
_ATTRIBUTES = frozenset(
    "display mathvariant stretchy fence separator lspace rspace width height depth columnalign rowspacing "
    "columnspacing columnlines rowlines frame accent accentunder movablelimits linethickness notation "
    "displaystyle scriptlevel open close separators minsize maxsize form largeop symmetric encoding".split()
)
_FORMULA = re.compile(
    r"\$\$(?P<d1>.+?)\$\$|\\\[(?P<d2>.+?)\\\]|\\\((?P<i1>.+?)\\\)|(?<![\\$\w])\$(?P<i2>\S(?:[^$\n]*?\S)?)\$(?!\d)",
    re.DOTALL,
)
#: Formulas converted per text at most (a pathological text stays cheap).
_MAX_FORMULAS = 200

ET.register_namespace("", _NS)


def _mathml(latex: str, display: bool) -> str | None:
    from latex2mathml.converter import convert

    try:
        markup = convert(latex, display="block" if display else "inline")
        root = ET.fromstring(markup)
    except Exception:  # noqa: BLE001  any failure of a third-party converter: keep the LaTeX
        return None
    for node in root.iter():
        namespace, _, tag = node.tag.rpartition("}")
        if namespace != "{" + _NS or tag not in _ELEMENTS:
            return None
        if any(name not in _ATTRIBUTES for name in node.attrib):
            return None
    return ET.tostring(root, encoding="unicode")


def segments(text: str) -> list[list[str]] | None:
    """``text`` as ``[["text", ...], ["math", "<math ...>"], ...]``; None when it has no formula."""
    out: list[list[str]] = []
    at = 0
    for n, match in enumerate(_FORMULA.finditer(text)):
        if n >= _MAX_FORMULAS:
            break
        latex = next(g for g in match.groups() if g is not None)
        markup = _mathml(latex.strip(), display=match.lastgroup in ("d1", "d2"))
        if markup is None:
            continue
        if match.start() > at:
            out.append(["text", text[at : match.start()]])
        out.append(["math", markup])
        at = match.end()
    if not out:
        return None
    if at < len(text):
        out.append(["text", text[at:]])
    return out
