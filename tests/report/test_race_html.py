"""An adaptive sweep's race in the report: the drops table and the confidence-sequence plot,
in report.json, report.html and a real headless browser."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from nemo_gym_cli.collect.race import Race, RaceRules

SKILL = {"small": 0.4, "medium": 0.7, "large": 0.95}
COST = {"small": 0.0001, "medium": 0.001, "large": 0.01}


@pytest.fixture
def sweep(tmp_path: Path, write_jsonl: Any) -> Path:
    """A finished adaptive sweep: rows of the rounds each variant ran, and adaptive.json as
    the collector writes it (the race driven over the same rewards)."""
    rng = random.Random(0)
    rewards = {n: [float(rng.random() < p) for _ in range(400)] for n, p in SKILL.items()}
    race, rounds = Race(list(SKILL), RaceRules("best")), []
    ran = {n: 0 for n in SKILL}
    while race.ended is None:
        block = list(range(race.rounds * 20, race.rounds * 20 + 20))
        for n in race.live:
            ran[n] += 20
        race.add_round({n: [rewards[n][t] for t in block] for n in race.live}, COST)
        rounds.append({"round": race.rounds, "tasks": block, "race": race.history[-1]})
    folder = tmp_path / "sweep"
    for name in SKILL:
        rows = [
            {
                "reward": rewards[name][t],
                "_ng_task_index": t,
                "_ng_rollout_index": 0,
                "response": {"model": name, "usage": {"cost": COST[name]}, "output": []},
            }
            for t in range(ran[name])
        ]
        write_jsonl(folder / f"{name}.jsonl", rows)
    spent = {n: ran[n] * COST[n] for n in SKILL}
    doc = {
        "settings": {"objective": "best", "alpha": 0.05, "margin": 0.02, "round_tasks": 20, "tasks": 400},
        "comparisons": 3,
        "rounds": rounds,
        "drops": [
            {"variant": d.variant, "round": d.round, "tasks": d.tasks, "rule": d.rule, "reason": d.reason, "by": d.by}
            for d in race.drops
        ],
        "live": race.live,
        "end": {
            "reason": race.ended,
            "winner": race.winner,
            "confident": race.confident,
            "rounds": race.rounds,
            "spent_usd": sum(spent.values()),
            "spent_by_variant_usd": spent,
            "full_sweep_usd_estimate": 400 * sum(COST.values()),
        },
    }
    (folder / "adaptive.json").write_bytes(orjson.dumps(doc))
    return folder


def test_the_report_says_who_won_the_race_why_each_variant_left_and_what_it_saved(sweep: Path, run_report: Any) -> None:
    code, out, err = run_report(str(sweep))
    assert code == 0, err
    assert "adaptive sweep (best, alpha 0.05): large wins: ended after round" in out
    assert "because every other variant was dropped; spent $" in out and "for the full sweep" in out
    doc = orjson.loads((sweep / "report" / "report.json").read_bytes())
    assert {d["variant"] for d in doc["adaptive"]["drops"]} == {"small", "medium"}
    html = (sweep / "report" / "report.html").read_text()
    assert html.count('id="plot-race"') == 1 and "is confidently better" in html


def test_a_report_without_a_race_has_no_race_section(sweep: Path, run_report: Any) -> None:
    (sweep / "adaptive.json").unlink()
    code, out, err = run_report(str(sweep))
    assert code == 0, err
    assert "adaptive sweep" not in out and 'id="race"' not in (sweep / "report" / "report.html").read_text()


JS_RACE = """(() => {
  const svg = document.querySelector('#plot-race svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const rows = [...document.querySelectorAll('#race-drops tbody tr')]
    .map(r => r.cells[0].textContent + ':' + r.cells[3].textContent);
  return [box.width, box.height, rows, document.querySelector('.race-summary').textContent,
          svg ? svg.textContent.includes('medium - large') : false];
})()"""


@pytest.mark.e2e
def test_the_race_plot_and_drops_render_in_chromium(sweep: Path, run_report: Any, browser_page: Any) -> None:
    code, _, err = run_report(str(sweep))
    assert code == 0, err

    async def drive() -> tuple[Any, ...]:
        async with browser_page() as page:
            await page.open((sweep / "report" / "report.html").as_uri())
            return await page.evaluate(JS_RACE), page.errors, page.requests

    (width, height, rows, summary, labelled), errors, requests = asyncio.run(drive())
    assert errors == [] and requests == []
    assert width > 300 and height > 200
    assert sorted(rows) == ["large:won", "medium:beaten", "small:beaten"]
    assert summary.startswith("adaptive sweep (best, alpha 0.05): large wins") and labelled
