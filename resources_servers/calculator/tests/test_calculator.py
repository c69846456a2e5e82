"""calculator: its tools and verifier through asgi(server), and the guide's offline run
(docs/environments.md) from the README's command, to reward 1 and to reward 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.server import asgi
from nemo_gym_cli.testing import VerifyCase, check_verify, collect_offline
from resources_servers.calculator.app import Calculator
from support.cli import ROOT


def test_the_tools_compute_and_dividing_by_zero_is_a_tool_error():
    with TestClient(asgi(Calculator())) as c:
        assert c.post("/add", json={"a": 2, "b": 3}).json() == 5
        assert c.post("/divide", json={"a": 7, "b": 2}).json() == 3.5
        zero = c.post("/divide", json={"a": 1, "b": 0})
        assert zero.status_code == 422 and zero.json()["error"]["message"] == "cannot divide by zero"
        assert [t["name"] for t in c.get("/tools").json()] == ["add", "divide", "multiply", "subtract"]


@pytest.mark.parametrize("case", VerifyCase.load(Path(__file__).with_name("verify_cases.jsonl")), ids=str)
def test_the_verifier_reads_the_last_number_of_the_final_answer(case: VerifyCase):
    with TestClient(asgi(Calculator())) as c:
        check_verify(c, case, fields={"expected_answer": 5})


CONFIG, AGENT = "resources_servers/calculator/configs/calculator.yaml", "calculator_simple_agent"


@pytest.mark.e2e
def test_the_guides_calculator_runs_offline_to_reward_1(tmp_path):
    data = "resources_servers/calculator/data/example.jsonl"
    rows = collect_offline(CONFIG, AGENT, data, tmp_path / "calc.jsonl", cwd=ROOT)
    assert len(rows) == 5 and all(r["reward"] == 1.0 for r in rows)
    assert {r["parsed_answer"] for r in rows} == {5, 84, 31.5, 12, 42}
    two_steps = next(r for r in rows if r["expected_answer"] == 42)
    calls = [i["name"] for i in two_steps["response"]["output"] if i["type"] == "function_call"]
    assert calls == ["add", "multiply"]


@pytest.mark.e2e
def test_a_wrong_final_answer_scores_0_offline(tmp_path):
    script = [{"tool_calls": [{"name": "add", "arguments": {"a": 2, "b": 2}}]}, {"text": "2 plus 3 is 4."}]
    row = {
        "responses_create_params": {
            "input": "What is 2 plus 3?",
            "metadata": {"emulator_script": json.dumps(script)},
        },
        "expected_answer": 5,
    }
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(row) + "\n")
    (scored,) = collect_offline(CONFIG, AGENT, inp, tmp_path / "out.jsonl", cwd=ROOT)
    assert scored["reward"] == 0.0 and scored["parsed_answer"] == 4.0
