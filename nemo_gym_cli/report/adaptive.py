"""An adaptive sweep's race in the report: read ``<sweep>/adaptive.json`` (written by
``collect/adaptive.py``) and shape it for the page, the JSON and the terminal.

The report shows when and why each variant was dropped, how each pair's confidence
sequence narrowed over the rounds (``plots.race``), what the race spent, and what the full
sweep would have cost at the prices seen (each variant's mean cost per rollout times every
rollout of the input). The variants' own figures (table, comparisons, plots) are the
ordinary report's, over the tasks each ran: a dropped variant ran fewer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.report.money import usd

__all__ = ["describe_end", "find_race", "race_rows", "race_summary", "read_journal"]


def read_journal(path: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]], int]:
    """An adaptive sweep's journal (``adaptive_rounds.ndjson``): its settings, its rounds (in
    order, each with its drops), and the byte length of its whole lines (a line torn by a
    crash, and anything after it, is not part of the journal)."""
    settings: dict[str, Any] | None = None
    rounds: list[dict[str, Any]] = []
    good = 0
    try:
        data = path.read_bytes()
    except OSError:
        return None, [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            break
        if not isinstance(entry, dict):
            break
        if settings is None:
            if not isinstance(entry.get("settings"), dict):
                break
            settings = entry["settings"]
        elif entry.get("round") == len(rounds) + 1:
            rounds.append(entry)
        else:
            break
        good += len(line)
    return settings, rounds, good


def find_race(inputs: list[str], warnings: list[str]) -> dict[str, Any] | None:
    """The race of the first input that is a sweep folder holding ``adaptive.json``."""
    for item in inputs:
        path = Path(item).expanduser() / OutputFiles.ADAPTIVE
        if not path.is_file():
            continue
        try:
            doc = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            warnings.append(f"{path} is not readable JSON ({exc}): the race is left out")
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("rounds"), list):
            warnings.append(f"{path} is not an adaptive sweep's record: the race is left out")
            return None
        # After a crash the record lags the journal (it is rewritten now and then, the journal
        # appended every round): the rounds and drops are the journal's then.
        _, rounds, _ = read_journal(path.with_name(OutputFiles.ADAPTIVE_JOURNAL))
        if doc.get("end") is None and len(rounds) > len(doc["rounds"]):
            doc["rounds"] = rounds
            doc["drops"] = [d for r in rounds for d in r.get("drops") or []]
            doc["live"] = rounds[-1]["race"]["live"]
        doc["path"] = str(path)
        return doc
    return None


def race_summary(race: dict[str, Any]) -> str:
    """One sentence: who won, why the race ended, the money."""
    end = race.get("end")
    settings = race.get("settings") or {}
    if not isinstance(end, dict):
        rounds = len(race.get("rounds") or [])
        return f"adaptive sweep: not finished (interrupted after round {rounds}); resume it with +resume=true"
    return describe_end(end, settings)


def race_rows(race: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The drops table: one row per variant, in the order they left (the survivors last)."""
    header = ["variant", "left after round", "tasks run", "rule", "why", "spent (USD)"]
    end = race.get("end") if isinstance(race.get("end"), dict) else {}
    spent = (end or {}).get("spent_by_variant_usd") or {}
    rows = []
    for d in race.get("drops") or []:
        cost = spent.get(d["variant"])
        rows.append([d["variant"], str(d["round"]), str(d["tasks"]), d.get("rule", ""), d["reason"], _usd(cost)])
    rounds = race.get("rounds") or []
    last = rounds[-1]["race"]["tasks"] if rounds else {}
    for name in race.get("live") or []:
        won = (end or {}).get("winner") == name
        state = "won" if won else "still in the race"
        rows.append([name, "-", str(last.get(name, 0)), state, "", _usd(spent.get(name))])
    return header, rows


def _usd(value: Any) -> str:
    return f"{value:.6f}" if isinstance(value, (int, float)) else "-"


_ENDS = {
    "one_left": "every other variant was dropped",
    "tie": "the others are confidently within +margin of the cheapest",
    "target_reached": "the cheapest variant left confidently reaches +target_reward",
    "none_reach_target": "every variant is confidently below +target_reward",
    "budget": "the budget (+max_cost_usd) ran out: no confident decision",
    "task_limit": "the tasks ran out: no confident decision",
}


def describe_end(end: dict[str, Any], settings: dict[str, Any]) -> str:
    """The race's end in a sentence or two (the terminal's and the report's)."""
    reason = str(end.get("reason"))
    winner = end.get("winner")
    who = f"{winner} wins" if winner else "no variant wins"
    lead = "" if end.get("confident") else " (the leader so far, not a confident decision)"
    spent, full = end.get("spent_usd"), end.get("full_sweep_usd_estimate")
    money = f"; spent {usd(spent)}" if isinstance(spent, (int, float)) else ""
    if isinstance(full, (int, float)) and full > 0 and isinstance(spent, (int, float)):
        money += f" of an estimated {usd(full)} for the full sweep ({spent / full:.0%})"
    alpha = settings.get("alpha")
    return (
        f"adaptive sweep ({settings.get('objective')}, alpha {alpha}): {who}{lead}: ended after round "
        f"{end.get('rounds')} because {_ENDS.get(reason, reason)}{money}"
    )
