"""data/: the shared task sets are what their generators make, and every row names an agent
that the shipped environment configs define."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("make_offline_eval", ROOT / "data" / "make_offline_eval.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_eval_is_current_with_its_generator() -> None:
    shipped = [json.loads(line) for line in (ROOT / "data" / "offline_eval.jsonl").read_text().splitlines()]
    assert shipped == _generator().rows(), "run: .venv/bin/python data/make_offline_eval.py"


def test_offline_eval_rows_name_agents_the_environment_configs_define() -> None:
    agents = set()
    for config in ROOT.glob("resources_servers/*/configs/*.yaml"):
        for name, body in (yaml.safe_load(config.read_text()) or {}).items():
            if isinstance(body, dict) and "responses_api_agents" in body:
                agents.add(name)
    rows = [json.loads(line) for line in (ROOT / "data" / "offline_eval.jsonl").read_text().splitlines()]
    assert {row["agent_ref"]["name"] for row in rows} <= agents
    assert {row["env"] for row in rows} == {"math", "mcqa", "simple_weather"}
