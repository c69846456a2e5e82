"""Re-verification parity and replay on NeMo Gym 0.7.0's own environments (issue 16).

``benchmarks/nemo_gym07_parity.py`` on a few light environments, on both stacks: every
recorded rollout of ``data/example_rollouts.jsonl`` through the resources server's
``/verify`` (after ``/seed_session``, with its cookie), NeMo Gym's servers started as its
``ng_run`` starts them, then hosted by ours. The share reproduced must be the same, row by
row. ``benchmarks/nemo_gym07_replay.py``: the recorded model turns (their reasoning
included) replayed by our collector, agent and emulator must give the recorded rewards back.

Known figures (the harness works when NeMo Gym's own stack gives them): all rows of
example_single_tool_call and example_multi_step; 4 of mcqa's 5 (its row 2 was recorded with
an older grading rule: 0.7.0's verifier reads ``\\boxed{C: ...}`` as C, mcqa/app.py:96).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from interop_harness import OUR_BIN, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import nemo_gym07_parity as parity  # noqa: E402
import nemo_gym07_replay as replay  # noqa: E402

LIGHT = ["example_single_tool_call", "mcqa", "example_multi_step"]
EXPECTED = {"example_single_tool_call": 5, "example_multi_step": 5, "mcqa": 4}


def _by_env(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["environment"]: r for r in report["environments"]}


@pytest.fixture(scope="module")
def nemo_gym_stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _by_env(parity.run("nemo_gym", LIGHT, 3, OUR_BIN / "ng_run", tmp_path_factory.mktemp("parity-ng")))


def test_nemo_gym_own_stack_reproduces_the_known_share_of_recorded_rewards(
    nemo_gym_stack: dict[str, dict[str, Any]],
) -> None:
    assert {name: r.get("error") for name, r in nemo_gym_stack.items()} == dict.fromkeys(LIGHT)
    assert {name: r["rows"] for name, r in nemo_gym_stack.items()} == dict.fromkeys(LIGHT, 5)
    assert {name: r["reproduced"] for name, r in nemo_gym_stack.items()} == EXPECTED
    assert all(row["joined"] for r in nemo_gym_stack.values() for row in r["per_row"])


def test_our_ng_run_hosting_their_environments_reproduces_the_same_rows(
    nemo_gym_stack: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    ours = _by_env(parity.run("ours", LIGHT, 3, OUR_BIN / "ng_run", tmp_path))
    assert {name: r.get("error") for name, r in ours.items()} == dict.fromkeys(LIGHT)
    for name in LIGHT:
        assert [row["got"] for row in ours[name]["per_row"]] == [row["got"] for row in nemo_gym_stack[name]["per_row"]]
    assert {name: r["reproduced"] for name, r in ours.items()} == EXPECTED


def test_replay_script_plays_each_model_call_then_the_final_text() -> None:
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "SF"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "cold"},
        {"type": "function_call_output", "call_id": "c2", "output": "noon"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Cold at noon."}]},
    ]
    assert replay.replay_script(output) == [
        {
            "text": "",
            "tool_calls": [
                {"name": "get_weather", "arguments": '{"city": "SF"}'},
                {"name": "get_time", "arguments": "{}"},
            ],
        },
        {"text": "Cold at noon."},
    ]


def test_replay_script_carries_each_model_call_s_reasoning_as_verifiers_read_it() -> None:
    summary = [{"type": "summary_text", "text": "Parents of a1: "}, {"type": "summary_text", "text": "b2."}]
    output = [
        {"type": "reasoning", "id": "rs", "summary": summary, "encrypted_content": None},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "b2"}]},
    ]
    assert replay.replay_script(output) == [{"text": "b2", "reasoning": "Parents of a1: b2."}]


def test_replay_row_skips_assistant_turns_already_in_the_input() -> None:
    body = {
        "expected_answer": "B",
        "responses_create_params": {
            "input": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "q2"},
            ],
            "metadata": {"kept": "yes"},
        },
        "response": {"output": [{"type": "message", "content": [{"type": "output_text", "text": "\\boxed{B}"}]}]},
    }
    row = replay.replay_row(body)
    assert "response" not in row and row["expected_answer"] == "B"
    metadata = row["responses_create_params"]["metadata"]
    assert metadata["kept"] == "yes"
    import json

    assert json.loads(metadata["emulator_script"]) == [{"text": ""}, {"text": "\\boxed{B}"}]


@pytest.mark.parametrize("name", ["mcqa", "lc_niah"])
def test_our_collector_agent_and_emulator_replaying_reproduce_the_recorded_rewards(name: str, tmp_path: Path) -> None:
    """lc_niah's reward penalises overlap between the reasoning and the prompt: it reproduces
    only when the recorded reasoning reaches its verifier (emulator -> openai_model -> agent)."""
    (env,) = [e for e in parity.ENVIRONMENTS if e.name == name]
    assert replay.single_turn(env)
    result = replay.replay_environment(env, tmp_path, OUR_BIN)
    assert result.get("error") is None
    assert result["rows"] == 5 and result["reproduced"] == {"mcqa": EXPECTED["mcqa"], "lc_niah": 5}[name]
