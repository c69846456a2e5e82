"""``ng reverify`` replays each row's recorded tool calls in its session before ``/verify``.

Two environments whose verifier reads the state the rollout's tools built, each collected
for real (the emulator's scripted tool caller through simple_agent) and then re-scored as
real processes:

- multi_step_tools (a shop scored on its final state): without the replay every row whose
  tools changed the shop scores 0, exactly those (an independent check: the seed's state
  against the expected one); with it every row gets its recorded reward back;
- session_counter (tests/fixtures: NeMo Gym 0.7's example_session_state_mgmt in our form):
  after a change of the environment (``step``) the rows whose tools now answer differently
  are flagged and keep their new reward; a broken tool (500) and a tool that is gone (404)
  are one line each on the terminal however many rows hit them, the 500's rows listed as
  failures, the run finished.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.cli import ROOT, run_cli

pytestmark = pytest.mark.e2e

FIXTURES = ROOT / "tests" / "fixtures"
SHOP = "+config_paths=[configs/offline_model.yaml,resources_servers/multi_step_tools/configs/multi_step_tools.yaml]"
COUNTER = "+config_paths=[session_counter.yaml]"
STEP = "++session_counter.resources_servers.session_counter.step"
BROKEN = "++session_counter.resources_servers.session_counter.broken"


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _calls(row: dict) -> list[dict]:
    return [i for i in row["response"]["output"] if i.get("type") == "function_call"]


def test_a_shop_scored_on_its_final_state_gets_its_rewards_back_only_with_the_replay(tmp_path: Path):
    from resources_servers.multi_step_tools.world import World

    collected = tmp_path / "shop.jsonl"
    done = run_cli(
        "ng_collect_rollouts", SHOP, "+agent_name=multi_step_tools_simple_agent", f"+output_jsonl_fpath={collected}",
        "+input_jsonl_fpath=resources_servers/multi_step_tools/data/tasks.jsonl", "+limit=22",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = _read(collected)
    assert len(rows) == 22 and all(r["reward"] == 1.0 for r in rows)
    # The rows a fresh world scores 0: those whose expected state is not the seed's own.
    changed_by_tools = {r["_ng_task_index"] for r in rows if World.from_seed(r["world"]).state() != r["expected_state"]}
    assert 0 < len(changed_by_tools) < 22  # some tasks rightly change nothing

    off = run_cli(
        "ng", "reverify", SHOP, f"+input_jsonl_fpath={collected}", f"+output_jsonl_fpath={tmp_path / 'off.jsonl'}",
        "+replay_tool_calls=false",
    )  # fmt: skip
    assert off.returncode == 0, off.stderr
    record = json.loads((tmp_path / "off_reverify.json").read_text())
    assert {c["task"] for c in record["changed"]} == changed_by_tools
    assert record["replay_tool_calls"] is False and record["tool_calls_replayed"] == 0

    on = run_cli(
        "ng", "reverify", SHOP, f"+input_jsonl_fpath={collected}", f"+output_jsonl_fpath={tmp_path / 'on.jsonl'}"
    )
    assert on.returncode == 0, on.stderr
    record = json.loads((tmp_path / "on_reverify.json").read_text())
    assert record["changed_rows"] == 0 and record["reward"]["mean_after"] == 1.0
    assert record["rows_replayed"] == 22 and record["tool_calls_replayed"] == sum(len(_calls(r)) for r in rows)
    assert record["tool_outputs_differ_rows"] == 0 and record["tool_errors"] == []
    rescored = _read(tmp_path / "on.jsonl")
    assert all(r["reward"] == 1.0 and r["state_diff"] == [] and "_ng_tool_outputs_differ" not in r for r in rescored)
    # the verifier saw the replayed calls themselves: its own count of them is the recorded one
    by_task = {r["_ng_task_index"]: r for r in rows}
    assert all(r["num_tool_calls"] == by_task[r["_ng_task_index"]]["num_tool_calls"] for r in rescored)
    assert "every replayed tool call answered as recorded" in on.stdout


def _counter_tasks(n: int) -> list[dict]:
    """Task i starts the counter at i; i % 3 == 0 calls no tool, 1 adds 2, 2 adds 1 and reads it back;
    task 0 calls a tool that does not exist (the model's mistake: it read "unknown tool")."""
    tasks = []
    for i in range(n):
        kind = i % 3
        turns: list[dict] = []
        if i == 0:
            turns.append({"tool_calls": [{"name": "reset_counter", "arguments": {}}]})
        if kind == 1:
            turns.append({"tool_calls": [{"name": "increment_counter", "arguments": {"count": 2}}]})
        elif kind == 2:
            turns.append({"tool_calls": [{"name": "increment_counter", "arguments": {"count": 1}}]})
            turns.append({"tool_calls": [{"name": "get_counter_value", "arguments": {}}]})
        turns.append({"text": "done"})
        tasks.append(
            {
                "responses_create_params": {
                    "input": [{"role": "user", "content": f"counter task {i}"}],
                    "metadata": {"emulator_script": json.dumps(turns)},
                },
                "initial_count": i,
                "expected_count": i + (0, 2, 1)[kind],
            }
        )
    return tasks


@pytest.fixture(scope="module")
def counter_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("counter")
    tasks = folder / "tasks.jsonl"
    tasks.write_text("".join(json.dumps(t) + "\n" for t in _counter_tasks(30)))
    output = folder / "collected.jsonl"
    done = run_cli(
        "ng_collect_rollouts", COUNTER, "+agent_name=session_counter_simple_agent", f"+input_jsonl_fpath={tasks}",
        f"+output_jsonl_fpath={output}", cwd=FIXTURES,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = _read(output)
    assert len(rows) == 30 and all(r["reward"] == 1.0 for r in rows)
    first = next(r for r in rows if r["_ng_task_index"] == 0)["response"]["output"]
    assert json.loads(first[1]["output"]) == {"error": "unknown tool 'reset_counter'"}
    return output


def test_a_counter_the_tools_moved_scores_wrong_without_the_replay_and_right_with_it(counter_output: Path):
    out = counter_output.parent
    off = run_cli(
        "ng", "reverify", COUNTER, f"+input_jsonl_fpath={counter_output}", f"+output_jsonl_fpath={out / 'off.jsonl'}",
        "+replay_tool_calls=false", "+overwrite=true", cwd=FIXTURES,
    )  # fmt: skip
    assert off.returncode == 0, off.stderr
    assert {c["task"] for c in json.loads((out / "off_reverify.json").read_text())["changed"]} == {
        i for i in range(30) if i % 3
    }
    on = run_cli(
        "ng", "reverify", COUNTER, f"+input_jsonl_fpath={counter_output}", f"+output_jsonl_fpath={out / 'on.jsonl'}",
        "+overwrite=true", cwd=FIXTURES,
    )  # fmt: skip
    assert on.returncode == 0, on.stderr
    record = json.loads((out / "on_reverify.json").read_text())
    assert record["changed_rows"] == 0 and record["rows_replayed"] == 21 and record["tool_calls_replayed"] == 31
    # the unknown tool task 0 called answers now as it did then: nothing differs, no error
    assert record["tool_outputs_differ_rows"] == 0 and record["tool_errors"] == []
    assert "replayed 31 recorded tool calls in 21 rows' sessions" in on.stdout


def test_rows_whose_tools_now_answer_differently_are_flagged_and_keep_their_new_reward(counter_output: Path):
    out = counter_output.parent
    done = run_cli(
        "ng", "reverify", COUNTER, f"{STEP}=2", f"+input_jsonl_fpath={counter_output}",
        f"+output_jsonl_fpath={out / 'step2.jsonl'}", "+overwrite=true", cwd=FIXTURES,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "step2_reverify.json").read_text())
    moved = {i for i in range(30) if i % 3}  # every row that incremented: its answers differ now
    assert {d["task"] for d in record["tool_outputs_differ"]} == moved
    assert record["tool_outputs_differ_rows"] == 20
    first = next(d for d in record["tool_outputs_differ"] if d["task"] == 2)
    assert [(c["name"], c["recorded"], c["replayed"]) for c in first["calls"]] == [
        ("increment_counter", '{"count":3}', '{"count":4}'),
        ("get_counter_value", '{"count":3}', '{"count":4}'),
    ]
    assert {c["task"] for c in record["changed"]} == moved  # the new environment's rewards, kept
    rescored = {r["_ng_task_index"]: r for r in _read(out / "step2.jsonl")}
    assert all(rescored[i]["reward"] == 0.0 and rescored[i]["_ng_tool_outputs_differ"] for i in moved)
    assert rescored[2]["_ng_tool_outputs_differ"][0]["name"] == "increment_counter"
    assert all(rescored[i]["reward"] == 1.0 and "_ng_tool_outputs_differ" not in rescored[i] for i in range(0, 30, 3))
    assert "20 rows' tools answered differently than when collected" in done.stdout
    assert "  task 1 rollout 0: call 1 increment_counter: recorded" in done.stdout


def test_a_broken_tool_and_a_gone_one_are_one_line_each_and_the_run_finishes(counter_output: Path):
    out = counter_output.parent
    rows = _read(counter_output)
    gone = next(r for r in rows if r["_ng_task_index"] == 4)  # adds 2: its call now names a tool not served
    for item in gone["response"]["output"]:
        if item.get("type") == "function_call":
            item["name"] = "add_to_counter"
    edited = out / "edited.jsonl"
    edited.write_text("".join(json.dumps(r) + "\n" for r in rows))

    done = run_cli(
        "ng", "reverify", COUNTER, f"{BROKEN}=true", f"+input_jsonl_fpath={edited}",
        f"+output_jsonl_fpath={out / 'broken.jsonl'}", "+overwrite=true", cwd=FIXTURES,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # some rows could not be re-scored; the rest were
    errors = [line for line in done.stderr.splitlines() if line.startswith("replaying tool calls:")]
    assert len(errors) == 2, done.stderr
    assert any("POST /get_counter_value answered 500" in e and "the counter store is down" in e for e in errors)
    assert any("POST /add_to_counter answered 404" in e for e in errors)
    assert "a row could not be re-scored" not in done.stderr  # said once, by its distinct line

    broken = {i for i in range(30) if i % 3 == 2}  # every row that reads the counter back
    failures = _read(out / "broken_failures.jsonl")
    assert {f["_ng_task_index"] for f in failures} == broken
    assert {f["error_type"] for f in failures} == {"tool_call_failed"}
    assert "replaying tool call 2 of 2 (get_counter_value)" in failures[0]["message"]

    record = json.loads((out / "broken_reverify.json").read_text())
    assert record["rescored"] == 20 and record["failed"] == 10
    assert {e["error"]: e["rows"] for e in record["tool_errors"]} == {
        "POST /add_to_counter answered 404 (not_found)": 1,
        "POST /get_counter_value answered 500 (server_error)": 10,
    }
    assert [d["task"] for d in record["tool_outputs_differ"]] == [4]  # the gone tool: flagged, re-scored
    assert [(c["task"], c["before"], c["after"]) for c in record["changed"]] == [(4, 1.0, 0.0)]
    assert "tool call error on replay: POST /get_counter_value answered 500 (server_error) in 10 rows" in done.stdout
