"""``ng reverify``: an output re-scored with the current verifier, no model called.

The environment is written in a temp folder for the test: its verifier gives reward 1 when
the answer (a number) reaches a threshold plus the row's offset, which ``/seed_session``
keeps in the rollout's session (so a session mixed up between concurrent rows would score
wrong). The output is re-scored with the verifier as collected (nothing changes), then
after a deliberate change of its threshold from 0.5 to 0.7: exactly the rows whose answer
lies in between change, 1 -> 0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from support.cli import NgRun, run_cli

pytestmark = pytest.mark.e2e

APP = """
from typing import Any

from nemo_gym_cli.server import ResourcesServer, final_text

THRESHOLD = {threshold}


class Threshold(ResourcesServer):
    async def seed_session(self, session: dict[str, Any], row: dict[str, Any]) -> None:
        session["offset"] = row["offset"]

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        return {{"reward": float(float(final_text(body)) >= THRESHOLD + session["offset"])}}
"""

CONFIG = """
threshold:
  resources_servers:
    threshold:
      entrypoint: app.py
      domain: other
      description: a number against a threshold
      verified: false
threshold_simple_agent:
  responses_api_agents:
    simple_agent:
      entrypoint: app.py
      resources_server: {type: resources_servers, name: threshold}
      model_server: {type: responses_api_models, name: policy_model}
"""
CONFIG_PATHS = "+config_paths=[configs/offline_model.yaml,resources_servers/threshold/configs/threshold.yaml]"


def _environment(root: Path, threshold: float) -> None:
    folder = root / "resources_servers" / "threshold"
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").write_text("")
    (folder / "app.py").write_text(APP.format(threshold=threshold))
    (folder / "configs" / "threshold.yaml").write_text(CONFIG)


def _rows(n: int) -> list[dict]:
    """Answers 0.00, 0.01, ...; every third row's offset lowers its threshold by 0.1."""
    rows = []
    for i in range(n):
        answer, offset = (i % 100) / 100, -0.1 if i % 3 == 0 else 0.0
        rows.append(
            {
                "responses_create_params": {"input": [{"role": "user", "content": f"a number, please ({i})"}]},
                "offset": offset,
                "response": {"output": [{"type": "message", "role": "assistant", "content": f"{answer:.2f}"}]},
                "reward": float(answer >= 0.5 + offset),
                "agent_ref": {"name": "threshold_simple_agent"},
                "_ng_task_index": i,
                "_ng_rollout_index": 0,
            }
        )
    return rows


def _changed(rows: list[dict]) -> set[int]:
    """The rows whose reward the change of the threshold from 0.5 to 0.7 turns from 1 to 0."""
    return {
        r["_ng_task_index"]
        for r in rows
        if 0.5 + r["offset"] <= float(r["response"]["output"][0]["content"]) < 0.7 + r["offset"]
    }


def test_after_a_verifier_change_exactly_the_expected_rows_change_with_the_paired_difference(tmp_path: Path):
    rows = _rows(300)
    output = tmp_path / "collected.jsonl"
    output.write_text("".join(json.dumps(r) + "\n" for r in rows))

    _environment(tmp_path, 0.5)  # the verifier the output was collected with: nothing changes
    same = run_cli("ng", "reverify", CONFIG_PATHS, f"+input_jsonl_fpath={output}", "+concurrency=16", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    assert "re-scored 300 of 300 rows" in same.stdout and "0 rows' rewards changed" in same.stdout

    _environment(tmp_path, 0.7)  # the deliberate change
    new = tmp_path / "rescored.jsonl"
    done = run_cli(
        "ng_reverify", CONFIG_PATHS, f"+input_jsonl_fpath={output}", f"+output_jsonl_fpath={new}", "+concurrency=16",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = _changed(rows)
    assert len(expected) == 60  # 20 answers in [0.5, 0.7) and in [0.4, 0.6), thrice each

    record = json.loads((tmp_path / "rescored_reverify.json").read_text())
    assert {c["task"] for c in record["changed"]} == expected
    assert all((c["before"], c["after"]) == (1.0, 0.0) for c in record["changed"])
    assert record["servers"] == ["threshold"]  # no policy model, no agent
    rescored = {r["_ng_task_index"]: r for r in map(json.loads, new.read_text().splitlines())}
    assert len(rescored) == 300
    assert all(rescored[t]["reward"] == 0.0 and rescored[t]["_ng_previous_reward"] == 1.0 for t in expected)
    assert all(rescored[t]["reward"] == rows[t]["reward"] for t in rescored if t not in expected)

    stats = record["reward"]
    assert stats["diff"] == pytest.approx(-60 / 300) and stats["ci95_high"] < 0 and stats["p_value"] < 0.001
    printed = re.search(r"mean reward (\S+) -> (\S+): paired difference (\S+), 95% CI (\S+)", done.stdout)
    assert printed is not None, done.stdout
    assert printed.group(3) == "-0.2000"
    assert "60 rows' rewards changed" in done.stdout and f"\n  task {min(expected)} rollout 0: 1 -> 0\n" in done.stdout


def test_a_row_without_a_response_is_listed_not_fatal_and_an_existing_output_is_refused(tmp_path: Path):
    _environment(tmp_path, 0.5)
    rows = _rows(3)
    del rows[1]["response"]
    output = tmp_path / "collected.jsonl"
    output.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    done = run_cli("ng", "reverify", CONFIG_PATHS, f"+input_jsonl_fpath={output}", cwd=tmp_path)
    assert done.returncode == 1 and "re-scored 2 of 4 rows" in done.stdout
    failures = (tmp_path / "collected_reverified_failures.jsonl").read_text().splitlines()
    assert [json.loads(f)["line_number"] for f in failures] == [2, 4]
    again = run_cli("ng", "reverify", CONFIG_PATHS, f"+input_jsonl_fpath={output}", cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "+overwrite=true" in again.stderr


def test_a_judged_environment_pays_for_the_judge_only(tmp_path: Path):
    config = "+config_paths=[configs/offline_model.yaml,resources_servers/llm_judge/configs/llm_judge.yaml]"
    output = tmp_path / "judged.jsonl"
    collected = run_cli(
        "ng_collect_rollouts", config, "+agent_name=llm_judge_simple_agent", f"+output_jsonl_fpath={output}",
        "+input_jsonl_fpath=resources_servers/llm_judge/data/questions.jsonl", "+limit=6",
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    done = run_cli("ng", "reverify", config, f"+input_jsonl_fpath={output}")
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "judged_reverified_reverify.json").read_text())
    # the judge's model server and the emulator behind it; not the policy model, not the agent
    assert record["servers"] == ["judge_model", "llm_judge", "provider_emulator"]
    assert record["rescored"] == 6 and record["changed_rows"] == 0 and record["verifier_cost_usd"] > 0
    assert "the verifiers' judge model cost $" in done.stdout


def test_without_config_paths_it_uses_the_resources_servers_of_a_running_ng_run(tmp_path: Path):
    _environment(tmp_path, 0.7)
    output = tmp_path / "collected.jsonl"
    rows = _rows(100)
    output.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = NgRun(cwd=tmp_path, config=CONFIG_PATHS)
    try:
        run.wait_ready()
        done = run_cli(
            "ng", "reverify", f"+input_jsonl_fpath={output}", f"+head_server.port={run.head_port}", cwd=tmp_path
        )
    finally:
        run.stop()
    assert done.returncode == 0, done.stderr
    assert "using the resources servers of the ng_run head server" in done.stderr
    assert f"\n{len(_changed(rows))} rows' rewards changed\n" in done.stdout
    record = json.loads((tmp_path / "collected_reverified_reverify.json").read_text())
    assert {c["task"] for c in record["changed"]} == _changed(rows) and record["servers"] == []
