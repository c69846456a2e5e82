"""Build data/offline_eval.jsonl: one evaluation set over three environments, for sweeps.

    .venv/bin/python data/make_offline_eval.py

Takes the first 40 math problems, the first 40 mcqa questions and the 5 simple_weather
tasks of the environments' shipped data (in that order, deterministic), names each row's
agent (``agent_ref``) and its environment (``env``, for ``ng_report +group_by=env``), and
writes them to data/offline_eval.jsonl. Every row carries the emulator's scripts (a right
answer and a plausible wrong one), so the set runs offline to a real comparison.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [  # (environment, its data file, rows taken)
    ("math", "resources_servers/math/data/problems.jsonl", 40),
    ("mcqa", "resources_servers/mcqa/data/questions.jsonl", 40),
    ("simple_weather", "resources_servers/simple_weather/data/example.jsonl", 5),
]


def rows() -> list[dict]:
    out = []
    for env, path, count in SOURCES:
        lines = (ROOT / path).read_text().splitlines()[:count]
        for line in lines:
            row = json.loads(line)
            row["agent_ref"] = {"name": f"{env}_simple_agent"}
            row["env"] = env
            out.append(row)
    return out


def main() -> None:
    target = ROOT / "data" / "offline_eval.jsonl"
    made = rows()
    target.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in made))
    print(f"wrote {len(made)} rows to {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
