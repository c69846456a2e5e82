"""Money as the report writes it: plain dollars, never scientific notation.

One rule everywhere (terminal, report.md, report.html, plot axes, the viewer), so the same
amount always reads the same:

- $1 and more: cents and thousands separators (``$1,234.50``);
- under $1: three significant digits as a plain decimal (``$0.0439``, ``$0.00000335``);
- under a millionth of a dollar: ``<$0.000001`` (no price list goes that fine: a token
  of the cheapest model costs more);
- negative amounts (a saving) carry a minus sign before the dollar (``-$0.012``).
"""

from __future__ import annotations

import math

__all__ = ["FLOOR_USD", "usd", "usd_tick"]

#: Amounts below this (and above 0) are written ``<$0.000001``.
FLOOR_USD = 1e-6


def usd(value: float | None) -> str:
    """``value`` dollars as text; ``-`` when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "$0"
    sign, value = ("-" if value < 0 else ""), abs(value)
    if value >= 1:
        return f"{sign}${value:,.2f}"
    if value < FLOOR_USD:
        return f"{sign}<${FLOOR_USD:.6f}"
    digits = 2 - math.floor(math.log10(value))  # decimals that keep 3 significant digits
    text = f"{value:.{digits}f}"
    if float(text) >= 1:  # 0.9996 rounds up to 1.000
        return f"{sign}$1.00"
    return f"{sign}${text}"


def usd_tick(value: float) -> str:
    """An axis tick: ``usd`` without trailing zeros (``$0.00001``, not ``$0.0000100``)."""
    text = usd(value)
    if "." in text and not text.startswith(("<", "-<")) and abs(value) < 1:
        text = text.rstrip("0").rstrip(".")
    return text
