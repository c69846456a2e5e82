"""Anytime-valid confidence sequences for the mean of bounded observations, by betting.

Why not an ordinary interval: an adaptive sweep looks at its data after every round and
stops as soon as it knows enough. A fixed-sample interval (or p-value) checked after every
round is wrong far more often than its level says. A *confidence sequence* covers the mean
at every time at once, with probability at least ``1 - alpha``, so the sweep may look as
often as it likes and stop whenever it wants without giving the guarantee up.

This is the hedged-capital confidence sequence of Waudby-Smith & Ramdas (2023), "Estimating
means of bounded random variables by betting" (JRSS-B 86(1)), Theorem 3, with its
predictable plug-in bets (``lambda_t = sqrt(2 log(2 / alpha) / (sigma2_{t-1} t log(1 + t)))``,
a regularised mean and variance with one fake observation at 1/2 and 1/4, truncated at
``1/2 / m`` and ``1/2 / (1 - m)``), on a grid of 1,000 steps of candidate means: the settings
of the papers' reference implementation, ``confseq.betting.hedged_cs``, whose intervals the
tests reproduce. ``confseq`` itself is not a dependency: it compiles C++ with Boost on
install, and this is 80 lines of numpy.

For a candidate mean ``m`` two bettors grow their capital, one betting the mean is above
``m`` and one below; under the null "the mean is m" each capital is a nonnegative
martingale, so by Ville's inequality their hedged maximum reaches ``1 / alpha`` with
probability at most ``alpha``, ever. The sequence at time t is every ``m`` not yet
rejected. Observations are mapped from ``[low, high]`` to ``[0, 1]`` (a paired reward
difference lies in ``[-1, 1]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BettingCS"]

#: The bets' truncation (``trunc_scale`` in confseq): at most 1/2 of what would risk ruin.
_TRUNCATION = 0.5


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # the collector's core install has no numpy
        from nemo_gym_cli.errors import ConfigError

        raise ConfigError(
            "+adaptive=true needs numpy (its confidence sequences): pip install -e '.[report]' in a clone of "
            "nemo-gym-cli"
        ) from None
    return numpy


@dataclass
class BettingCS:
    """A confidence sequence for the mean of observations in ``[low, high]``: feed them with
    ``update`` (in their order: the bets depend on it); ``lower``/``upper`` then cover the mean
    at every time at once with probability at least ``1 - alpha``. ``intersect`` keeps the
    running intersection over the updates (still valid: sets that all cover the mean have an
    intersection that covers it), and lets the candidates outside it go untracked."""

    alpha: float
    low: float = 0.0
    high: float = 1.0
    breaks: int = 1000
    intersect: bool = True
    t: int = 0
    lower: float = field(init=False)
    upper: float = field(init=False)

    def __post_init__(self) -> None:
        np = _numpy()
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {self.alpha!r}")
        self.grid = np.arange(0, 1 + 1 / self.breaks, 1 / self.breaks)
        self._log_up = np.zeros(len(self.grid))  # the bettor on "the mean is above m"
        self._log_down = np.zeros(len(self.grid))
        self._active = (0, len(self.grid))  # the candidates still tracked: grid[a:b]
        self._sum = 0.0  # of the observations (scaled to [0, 1])
        self._sum_sq = 0.0  # of (x_i - mean_i)^2, mean_i the regularised mean after x_i
        self._variance = 0.25  # the regularised variance after t observations
        with np.errstate(divide="ignore"):
            self._cap_up = _TRUNCATION / self.grid
            self._cap_down = _TRUNCATION / (1 - self.grid)
        self._threshold = math.log(2 / self.alpha)  # max(K+/2, K-/2) >= 1/alpha
        self._bet_numerator = 2 * math.log(2 / self.alpha)  # each bettor at level alpha / 2
        self.lower, self.upper = self.low, self.high

    def update(self, values: Any) -> tuple[float, float]:
        """Add ``values`` (in order); returns the interval after the last of them."""
        np = _numpy()
        span = self.high - self.low
        xs = (np.asarray(values, dtype=float) - self.low) / span
        if len(xs) == 0:
            return self.lower, self.upper
        if xs.min() < -1e-12 or xs.max() > 1 + 1e-12:
            raise ValueError(f"observations must lie in [{self.low}, {self.high}]")
        xs = np.clip(xs, 0.0, 1.0)
        bets = np.empty(len(xs))
        for i, x in enumerate(xs.tolist()):  # predictable: each bet from what came before
            t = self.t + 1
            bets[i] = math.sqrt(self._bet_numerator / (self._variance * t * math.log1p(t)))
            self._sum += x
            mean = min((0.5 + self._sum) / (t + 1), 1.0)
            self._sum_sq += (x - mean) ** 2
            self._variance = (0.25 + self._sum_sq) / (t + 1)
            self.t = t
        a, b = self._active
        grid = self.grid[a:b]
        centred = xs[:, None] - grid[None, :]
        log_up, log_down = self._log_up[a:b], self._log_down[a:b]  # views: updated in place
        log_up += np.log1p(np.minimum(bets[:, None], self._cap_up[None, a:b]) * centred).sum(axis=0)
        log_down += np.log1p(-np.minimum(bets[:, None], self._cap_down[None, a:b]) * centred).sum(axis=0)
        kept = np.flatnonzero(np.maximum(log_up, log_down) < self._threshold)
        if len(kept):
            step = 1 / self.breaks
            lo, hi = max(0.0, float(grid[kept[0]]) - step), min(1.0, float(grid[kept[-1]]) + step)
        else:  # every candidate rejected (possible only with probability <= alpha): no information
            lo, hi = 0.0, 1.0
        lower, upper = self.low + lo * span, self.low + hi * span
        if not self.intersect:
            self.lower, self.upper = lower, upper
            return lower, upper
        if max(self.lower, lower) > min(self.upper, upper):  # an empty intersection: say nothing new
            return self.lower, self.upper
        self.lower, self.upper = max(self.lower, lower), min(self.upper, upper)
        # Candidates outside the intersection are out for good: stop keeping their capital.
        first = int(np.searchsorted(self.grid, (self.lower - self.low) / span - 1e-9, side="left"))
        last = int(np.searchsorted(self.grid, (self.upper - self.low) / span + 1e-9, side="right"))
        self._active = (max(a, first), min(b, last))
        return self.lower, self.upper
