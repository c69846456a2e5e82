"""The race's rules: who is dropped, when it ends, and why (no servers)."""

from __future__ import annotations

import random

import pytest

from nemo_gym_cli.collect.race import Race, RaceRules, answer

COSTS = {"cheap": 1.0, "mid": 8.0, "dear": 60.0}


def run(rules: RaceRules, accuracy: dict[str, float], tasks: int = 2000, seed: int = 0) -> Race:
    rng = random.Random(seed)
    rewards = {n: [float(rng.random() < p) for _ in range(tasks)] for n, p in accuracy.items()}
    race = Race(list(accuracy), rules)
    for start in range(0, tasks, 20):
        if race.ended:
            break
        race.add_round({n: rewards[n][start : start + 20] for n in race.live}, COSTS)
    race.stop("task_limit")
    return race


def test_best_drops_the_beaten_variants_and_ends_with_one_left() -> None:
    race = run(RaceRules("best"), {"cheap": 0.5, "mid": 0.7, "dear": 0.95})
    assert (race.ended, race.winner, race.confident) == ("one_left", "dear", True)
    assert {d.variant for d in race.drops} == {"cheap", "mid"}
    assert all(d.rule == "beaten" and d.by is not None for d in race.drops)


def test_a_variant_beaten_by_a_cheaper_one_goes_whatever_the_objective() -> None:
    race = run(RaceRules("target", target=0.2), {"cheap": 0.9, "mid": 0.9, "dear": 0.3})
    dear = next(d for d in race.drops if d.variant == "dear")
    assert dear.rule in ("beaten", "cheaper_reaches") and dear.by in ("cheap", "mid")
    assert (race.ended, race.winner) == ("target_reached", "cheap")


def test_within_margin_picks_the_cheapest_within_the_margin_of_the_best() -> None:
    race = run(RaceRules("within_margin", margin=0.3), {"cheap": 0.3, "mid": 0.85, "dear": 0.95})
    assert race.winner == "mid" and race.confident
    assert [d.variant for d in race.drops] == ["cheap"] and race.drops[0].rule in ("margin", "beaten")


def test_target_ends_when_none_reaches_it() -> None:
    race = run(RaceRules("target", target=0.9), {"cheap": 0.2, "mid": 0.3, "dear": 0.4})
    assert (race.ended, race.winner) == ("none_reach_target", None)
    assert all(d.rule == "below_target" for d in race.drops)


def test_identical_variants_end_at_the_task_limit_without_a_confident_winner() -> None:
    race = run(RaceRules("best", margin=0.0), {"cheap": 0.6, "mid": 0.6, "dear": 0.6}, tasks=400)
    assert race.ended == "task_limit" and not race.confident and race.drops == []


def test_a_tie_within_the_margin_picks_the_cheapest() -> None:
    race = run(RaceRules("best", margin=0.2), {"cheap": 0.8, "mid": 0.8, "dear": 0.8})
    assert (race.ended, race.winner) == ("tie", "cheap")


def test_alpha_is_shared_by_every_pair_and_by_each_variant_for_target() -> None:
    assert Race(list(COSTS), RaceRules("best", alpha=0.06)).level == pytest.approx(0.02)
    assert Race(list(COSTS), RaceRules("target", alpha=0.06, target=0.5)).level == pytest.approx(0.01)


def test_a_round_missing_a_live_variants_tasks_is_refused() -> None:
    race = Race(["a", "b"], RaceRules())
    with pytest.raises(ValueError, match="needs the round's tasks"):
        race.add_round({"a": [1.0, 0.0], "b": [1.0]}, {"a": 1.0, "b": 1.0})


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"adaptive": True}, "races the variants of a sweep"),
        ({"adaptive": True, "models": ["a/x", "b/y"], "objective": "target"}, r"needs \+target_reward"),
        ({"adaptive": True, "models": ["a/x", "b/y"], "objective": "cheapest"}, "best, within_margin or target"),
    ],
)
def test_adaptive_options_that_cannot_race_are_one_line_usage_errors(keys, message) -> None:
    from nemo_gym_cli.collect.options import CollectOptions
    from nemo_gym_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as caught:
        CollectOptions.from_config({"input_jsonl_fpath": "in.jsonl", **keys})
    assert "\n" not in str(caught.value)


def test_within_margin_at_the_task_limit_counts_a_difference_of_exactly_the_margin_as_within() -> None:
    # 16/20 - 12/20 is 0.2, but 0.8 - 0.2 is 0.6000000000000001 in floating point
    race = Race(["cheap", "dear"], RaceRules("within_margin", margin=0.2))
    race.add_round({"cheap": [1.0] * 12 + [0.0] * 8, "dear": [1.0] * 16 + [0.0] * 4}, {"cheap": 1.0, "dear": 60.0})
    race.stop("task_limit")
    assert (race.ended, race.confident, race.winner) == ("task_limit", False, "cheap")


def test_the_leader_at_the_task_limit_ignores_a_dropped_variants_higher_partial_mean() -> None:
    """``dear`` is dropped early (both others confidently better), on tasks where it did well;
    later tasks are harder, so its partial mean ends above the live variants' means. It must
    not be the reference "best" of ``within_margin``: the live ones ran the same tasks and
    were confidently better than it where it ran."""
    rules = RaceRules("within_margin", margin=0.05)
    race = Race(list(COSTS), rules)
    easy = {
        "cheap": [0.0 if i % 10 == 0 else 1.0 for i in range(20)],
        "mid": [0.0 if i % 10 == 5 else 1.0 for i in range(20)],
        "dear": [float(i % 2) for i in range(20)],
    }
    hard = {"cheap": [float(i < 6) for i in range(20)], "mid": [float(4 <= i < 11) for i in range(20)]}
    while "dear" in race.live:
        assert race.rounds < 10 and race.ended is None
        race.add_round({n: easy[n] for n in race.live}, COSTS)
    for _ in range(20):
        race.add_round({n: hard[n] for n in race.live}, COSTS)
    assert race.ended is None and race.live == ["cheap", "mid"]
    race.stop("task_limit")
    means = {n: race.mean(n) or 0.0 for n in COSTS}
    assert means["dear"] > means["mid"] > means["cheap"] >= means["mid"] - 0.05
    assert race.winner == "cheap" == answer(rules, {n: means[n] for n in race.live}, COSTS)
    assert answer(rules, means, COSTS) != "cheap"  # what counting the dropped one would say
