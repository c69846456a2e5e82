"""The decisions of an adaptive sweep: which variants stay in the race after each round,
and when the race is over. Pure: no files, no servers (the simulation in
``benchmarks/adaptive.py`` drives the same ``Race`` as ``collect/adaptive.py``).

A round gives every variant still in the race the same block of tasks (paired). After it,
each pair of live variants has a confidence sequence for the difference of their mean
rewards (``confidence.BettingCS`` over the per-task differences, in ``[-1, 1]``), and, for
the ``target`` objective, each variant one for its own mean reward. Each sequence runs at
level ``alpha / m``, ``m`` the number of sequences (Bonferroni): with probability at least
``1 - alpha`` every one of them covers its mean at every round at once (the *good event*),
however many rounds the race looks at. Every rule below is sound on the good event, so a
variant is dropped wrongly, or a wrong winner declared by a confident end, with
probability at most ``alpha``.

A variant is dropped when it cannot win:

- **any objective**: it is confidently beaten (the lower bound of the other's reward minus
  its own is above 0) by a live variant no dearer per rollout;
- ``best`` (the highest mean reward): confidently beaten by any live variant;
- ``within_margin`` (the cheapest variant within ``margin`` of the best): another live
  variant is confidently better by more than ``margin``;
- ``target`` (the cheapest variant whose mean reward reaches ``target``): its upper bound is
  below the target, or a cheaper live variant's lower bound reaches it.

The race ends confidently when one variant is left (``one_left``), when every other live
variant is confidently within ``margin`` of the cheapest live one (``tie``: the cheapest is
picked; for ``within_margin`` this is the objective's own answer), or, for ``target``, when
the cheapest live variant confidently reaches the target (``target_reached``) or none is
left (``none_reach_target``). It ends without confidence at the budget (``budget``) or when
the tasks run out (``task_limit``): the winner is then the leader on the rounds run so far,
and says so. Costs per rollout are what the variants cost so far: they order the
variants (who is "no dearer", who is "cheapest"); the guarantee is about rewards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nemo_gym_cli.collect.confidence import BettingCS

__all__ = ["CONFIDENT_ENDS", "OBJECTIVES", "Drop", "Race", "RaceRules", "answer"]

OBJECTIVES = ("best", "within_margin", "target")
#: Ends that carry the guarantee; ``budget`` and ``task_limit`` do not.
CONFIDENT_ENDS = ("one_left", "tie", "target_reached", "none_reach_target")


@dataclass(frozen=True)
class RaceRules:
    """What the race decides, and at which error rate."""

    objective: str = "best"
    alpha: float = 0.05
    margin: float = 0.02
    target: float | None = None

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.objective == "target" and self.target is None:
            raise ValueError("the target objective needs a target reward")

    @property
    def target_based(self) -> bool:
        return self.objective == "target"

    def sequences(self, variants: int) -> int:
        """How many confidence sequences share ``alpha`` (Bonferroni): one per pair, plus one
        per variant for ``target``."""
        pairs = variants * (variants - 1) // 2
        return pairs + (variants if self.objective == "target" else 0)


#: Means are sums over tasks: a difference exactly at the margin (0.95 - 0.75 against 0.2)
#: must count as within it, whatever the floating point makes of the subtraction.
_EPS = 1e-9


def answer(rules: RaceRules, means: dict[str, float], costs: dict[str, float]) -> str | None:
    """The objective's answer on ``means`` (each variant's mean reward): the highest
    (``best``), the cheapest within ``margin`` of the highest (``within_margin``), the
    cheapest at ``target`` or above (``target``; None if none is). Cheapest by ``costs``,
    ties broken by the order of ``means``. A race's leader at the budget or the task limit,
    a full sweep's decision, and the right answer on true means, all by the same rule."""
    if not means:
        return None
    names = list(means)
    cheapest_first = sorted(names, key=lambda n: (costs.get(n, 0.0), names.index(n)))
    top = max(means.values())
    if rules.objective == "best":
        return next(n for n in cheapest_first if means[n] >= top - _EPS)
    if rules.objective == "within_margin":
        return next(n for n in cheapest_first if top - means[n] <= rules.margin + _EPS)
    assert rules.target is not None
    return next((n for n in cheapest_first if means[n] >= rules.target - _EPS), None)


@dataclass(frozen=True)
class Drop:
    """A variant leaving the race: after which round, on how many tasks, by which rule
    (``beaten``, ``margin``, ``below_target``, ``cheaper_reaches``), why in words, by whom."""

    variant: str
    round: int
    tasks: int
    rule: str
    reason: str
    by: str | None = None


@dataclass
class Race:
    """The state of one race: feed it rounds with ``add_round``; ``ended`` says when it is over."""

    names: list[str]
    rules: RaceRules
    live: list[str] = field(init=False)
    drops: list[Drop] = field(default_factory=list)
    rounds: int = 0
    ended: str | None = None
    winner: str | None = None
    #: per round: each pair's interval for mean(a) - mean(b), and each variant's own
    history: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise ValueError("a race needs at least two variants")
        self.live = list(self.names)
        self.level = self.rules.alpha / self.rules.sequences(len(self.names))
        self.pairs = {
            (a, b): BettingCS(self.level, -1.0, 1.0) for i, a in enumerate(self.names) for b in self.names[i + 1 :]
        }
        #: each variant's own mean reward: only the target objective needs it
        self.means = {n: BettingCS(self.level, 0.0, 1.0) for n in self.names} if self.rules.target_based else {}
        self.tasks = dict.fromkeys(self.names, 0)
        self.sums = dict.fromkeys(self.names, 0.0)
        self.costs: dict[str, float] = dict.fromkeys(self.names, 0.0)

    # ------------------------------------------------------------------ bounds

    def difference(self, a: str, b: str) -> tuple[float, float]:
        """The interval for mean(a) - mean(b)."""
        if (a, b) in self.pairs:
            cs = self.pairs[(a, b)]
            return cs.lower, cs.upper
        cs = self.pairs[(b, a)]
        return -cs.upper, -cs.lower

    def mean(self, name: str) -> float | None:
        return self.sums[name] / self.tasks[name] if self.tasks[name] else None

    def _cheaper(self, a: str, b: str) -> bool:
        """Is ``a`` no dearer than ``b`` (ties broken by the order given)?"""
        return (self.costs[a], self.names.index(a)) < (self.costs[b], self.names.index(b))

    def _by_cost(self, names: list[str]) -> list[str]:
        return sorted(names, key=lambda n: (self.costs[n], self.names.index(n)))

    # ------------------------------------------------------------------ rounds

    def add_round(self, rewards: dict[str, list[float]], costs: dict[str, float]) -> list[Drop]:
        """One round: ``rewards`` holds each live variant's task rewards (in ``[0, 1]``) on the
        round's tasks, in the same task order; ``costs`` each variant's cost per rollout so
        far. Returns the variants dropped after it."""
        if self.ended is not None:
            raise ValueError(f"the race is over ({self.ended})")
        lengths = {n: len(rewards[n]) for n in self.live}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"every live variant needs the round's tasks; got {lengths}")
        self.rounds += 1
        self.costs.update({n: float(c) for n, c in costs.items() if n in self.costs})
        for n in self.live:
            if self.means:
                self.means[n].update(rewards[n])
            self.tasks[n] += len(rewards[n])
            self.sums[n] += float(sum(rewards[n]))
        for (a, b), cs in self.pairs.items():
            if a in self.live and b in self.live:
                cs.update([x - y for x, y in zip(rewards[a], rewards[b], strict=True)])
        dropped = self._drops()
        self.drops += dropped
        self.history.append(self._snapshot(dropped))
        self._check_end()
        return dropped

    def _drops(self) -> list[Drop]:
        rules, out = self.rules, []
        # The dearest first: when two variants could each go, the dearer one does.
        for loser in reversed(self._by_cost(list(self.live))):
            rule, reason, by = self._beaten(loser, rules)
            if rule:
                self.live.remove(loser)
                out.append(Drop(loser, self.rounds, self.tasks[loser], rule, reason, by))
        return out

    def _beaten(self, i: str, rules: RaceRules) -> tuple[str, str, str | None]:
        """Why ``i`` cannot win: (rule, reason, by whom); ("", "", None) if it still can."""
        others = [j for j in self.live if j != i]
        m = rules.margin
        for j in others:
            low, _ = self.difference(j, i)
            if low > 0 and self._cheaper(j, i):
                return "beaten", f"{j}, no dearer per rollout, is confidently better (by {low:.3f} or more)", j
        if rules.objective == "best":
            for j in others:
                low, _ = self.difference(j, i)
                if low > 0:
                    return "beaten", f"{j} is confidently better (by {low:.3f} or more)", j
        elif rules.objective == "within_margin":
            for j in others:
                low, _ = self.difference(j, i)
                if low > m:
                    return "margin", f"{j} is confidently better by more than the margin {m:g} ({low:.3f} or more)", j
        else:
            assert rules.target is not None
            if self.means[i].upper < rules.target:
                reason = (
                    f"confidently below the target {rules.target:g} (its mean is at most {self.means[i].upper:.3f})"
                )
                return "below_target", reason, None
            for j in others:
                if self._cheaper(j, i) and self.means[j].lower >= rules.target:
                    return "cheaper_reaches", f"{j} is cheaper and confidently reaches the target {rules.target:g}", j
        return "", "", None

    def _check_end(self) -> None:
        rules = self.rules
        if rules.objective == "target":
            assert rules.target is not None
            if not self.live:
                self._end("none_reach_target", None)
            elif self.means[self._by_cost(self.live)[0]].lower >= rules.target:
                self._end("target_reached", self._by_cost(self.live)[0])
            return
        if len(self.live) == 1:
            self._end("one_left", self.live[0])
            return
        cheapest = self._by_cost(self.live)[0]
        if all(self.difference(cheapest, j)[0] > -rules.margin for j in self.live if j != cheapest):
            self._end("tie", cheapest)

    def stop(self, reason: str) -> None:
        """End the race without confidence (``budget``, ``task_limit``): the leader on the
        rounds run so far wins, by the objective's rule applied to the mean rewards."""
        if self.ended is not None:
            return
        self._end(reason, self.leader())

    def leader(self) -> str | None:
        """The objective's answer on the mean rewards so far (``answer``), among the live
        variants only. The live ones ran the same tasks, so their means compare paired. A
        dropped variant does not count, not even as the ``within_margin`` reference "the
        best": each drop rule needs a live variant confidently better than the one dropped,
        so (with probability ``1 - alpha``) no dropped variant is the best, and its mean,
        over the fewer tasks it ran, could only move the reference by its noise."""
        live = [n for n in self.names if n in self.live and self.tasks[n]]
        if not live:
            return None
        return answer(self.rules, {n: self.mean(n) or 0.0 for n in live}, self.costs)

    def _end(self, reason: str, winner: str | None) -> None:
        self.ended, self.winner = reason, winner

    def _bounds(self, name: str) -> tuple[float | None, float | None]:
        cs = self.means.get(name)
        return (cs.lower, cs.upper) if cs is not None else (None, None)

    @property
    def confident(self) -> bool:
        return self.ended in CONFIDENT_ENDS

    def _snapshot(self, dropped: list[Drop]) -> dict[str, Any]:
        return {
            "round": self.rounds,
            "live": list(self.live),
            "tasks": dict(self.tasks),
            "pairs": {f"{a}|{b}": [cs.lower, cs.upper, cs.t] for (a, b), cs in self.pairs.items()},
            "means": {n: [*self._bounds(n), self.mean(n)] for n in self.names},
            "dropped": [d.variant for d in dropped],
        }


#: Why a race ended, in words.
