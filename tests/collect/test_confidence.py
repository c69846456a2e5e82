"""The betting confidence sequence: confseq's published intervals, and its coverage."""

from __future__ import annotations

import numpy as np
import pytest

from nemo_gym_cli.collect.confidence import BettingCS

#: 60 observations in [0, 1] (a pattern of 20, three times).
X = [1.0, 1.0, 0.0, 1.0, 0.5, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.5, 0.5] * 3

#: ``confseq.betting.hedged_cs(X, alpha, running_intersection=...)`` (confseq 0.0.11, the
#: reference implementation of Waudby-Smith & Ramdas 2023) at t = 5, 10, 20, 40, 60.
CONFSEQ_05_PLAIN = [(0.151, 1.0), (0.224, 0.922), (0.266, 0.796), (0.324, 0.718), (0.354, 0.687)]
CONFSEQ_10_INTERSECTED = [(0.201, 1.0), (0.316, 0.896), (0.316, 0.774), (0.344, 0.697), (0.37, 0.67)]
TIMES = [5, 10, 20, 40, 60]


@pytest.mark.parametrize(
    ("alpha", "intersect", "expected"), [(0.05, False, CONFSEQ_05_PLAIN), (0.1, True, CONFSEQ_10_INTERSECTED)]
)
def test_the_sequence_reproduces_confseqs_hedged_capital_intervals(alpha, intersect, expected) -> None:
    cs = BettingCS(alpha, intersect=intersect)
    got = [cs.update([x]) for x in X]
    assert [(round(got[t - 1][0], 6), round(got[t - 1][1], 6)) for t in TIMES] == expected


def test_feeding_a_block_at_once_gives_the_interval_of_feeding_it_one_by_one() -> None:
    one, block = BettingCS(0.05, intersect=False), BettingCS(0.05, intersect=False)
    for x in X:
        one.update([x])
    assert block.update(X) == (one.lower, one.upper)


def test_differences_in_minus_one_to_one_are_scaled_and_the_interval_covers_their_mean() -> None:
    cs = BettingCS(0.05, -1.0, 1.0)
    rng = np.random.default_rng(3)
    low, high = cs.update(rng.choice([-1.0, 0.0, 1.0], size=400, p=[0.1, 0.5, 0.4]))
    assert low < 0.3 < high and high - low < 0.3


def test_observations_outside_the_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        BettingCS(0.05).update([1.5])


def test_the_sequence_misses_the_mean_at_any_time_in_at_most_alpha_of_runs() -> None:
    """Anytime coverage: over 400 seeded runs of 300 Bernoulli(0.3) draws, looked at after
    every 10, the share of runs whose interval ever excludes 0.3 stays under alpha = 0.1."""
    misses = 0
    for seed in range(400):
        rng = np.random.default_rng(seed)
        cs = BettingCS(0.1)
        xs = (rng.random(300) < 0.3).astype(float)
        for start in range(0, 300, 10):
            low, high = cs.update(xs[start : start + 10])
            if not low <= 0.3 <= high:
                misses += 1
                break
    assert misses / 400 <= 0.1
