"""An adaptive sweep's journal: every round appended as one line; a resume replays it (a line
torn by a crash cut off), and the report reads the rounds the record had not caught up with.
No servers: the sweep is built on its lanes and loaded, as ``ng_collect_rollouts`` does."""

from __future__ import annotations

from pathlib import Path

import orjson

from nemo_gym_cli.collect.adaptive import AdaptiveSweep
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.race import Race
from nemo_gym_cli.collect.run import lanes_of
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.report.adaptive import find_race, read_journal

MODELS = ["a/cheap", "b/dear"]
COSTS = {"a__cheap": 1.0, "b__dear": 5.0}


def sweep(tmp_path: Path, *, resume: bool) -> AdaptiveSweep:
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(f'{{"q": {i}}}\n' for i in range(100)))
    opts = CollectOptions.from_config(
        {
            "input_jsonl_fpath": str(problems),
            "output_jsonl_fpath": str(tmp_path / "race.jsonl"),
            "models": MODELS,
            "adaptive": True,
            "resume": resume,
        }
    )
    return AdaptiveSweep(opts, lanes_of(opts), 100, lambda line: None)


def recorded_rounds(first: AdaptiveSweep, count: int) -> list[dict]:
    """Rounds as the sweep journals them, from a race over fixed rewards."""
    race, out = Race(list(COSTS), first.rules), []
    for k in range(count):
        block = first.order[k * 20 : (k + 1) * 20]
        rewards = {"a__cheap": [float(t % 2) for t in block], "b__dear": [float(t % 3 > 0) for t in block]}
        race.add_round(rewards, COSTS)
        out.append({"round": k + 1, "tasks": block, "rewards": rewards, "costs": COSTS, "race": race.history[-1]})
    return out


def test_a_resume_replays_the_journal_and_cuts_a_line_torn_by_a_crash(tmp_path: Path) -> None:
    first = sweep(tmp_path, resume=False)
    first.load()  # a new race: the journal starts with the settings
    rounds = recorded_rounds(first, 3)
    for entry in rounds[:2]:
        first.rounds.append(entry)
        first._append(entry)
    whole = first.journal.read_bytes()
    with first.journal.open("ab") as f:
        f.write(orjson.dumps(rounds[2])[:50])  # killed mid-write
    assert orjson.loads(first.path.read_bytes())["rounds"] == rounds[:2]  # rewritten after rounds 1 and 2

    resumed = sweep(tmp_path, resume=True)
    resumed.load()
    assert [r["round"] for r in resumed.rounds] == [1, 2] and resumed.race.rounds == 2
    assert resumed.journal.read_bytes() == whole  # the torn line is gone: round 3 is appended after round 2
    resumed.rounds.append(rounds[2])
    resumed._append(rounds[2])
    settings, again, _ = read_journal(resumed.journal)
    assert settings == resumed.settings and again == rounds


def test_the_report_takes_the_journals_rounds_when_the_record_lags_them(tmp_path: Path) -> None:
    first = sweep(tmp_path, resume=False)
    first.load()
    rounds = recorded_rounds(first, 3)
    for entry in rounds:
        first.rounds.append(entry)
        first._append(entry)  # the record is rewritten after rounds 1 and 2, not 3
    folder = OutputFiles(tmp_path / "race.jsonl").sweep_folder
    assert len(orjson.loads(first.path.read_bytes())["rounds"]) == 2
    warnings: list[str] = []
    race = find_race([str(folder)], warnings)
    assert race is not None and warnings == []
    assert [r["round"] for r in race["rounds"]] == [1, 2, 3] and race["end"] is None


def test_a_new_race_starts_its_journal_over(tmp_path: Path) -> None:
    first = sweep(tmp_path, resume=False)
    first.load()
    first.rounds.append(recorded_rounds(first, 1)[0])
    first._append(first.rounds[0])
    again = sweep(tmp_path, resume=False)
    again.load()
    assert read_journal(again.journal)[1] == [] and not again.path.exists()
