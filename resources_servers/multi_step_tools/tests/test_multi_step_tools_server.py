"""multi_step_tools on the kernel: the world in the rollout's session, tools that delegate to
it, tool errors the model reads, verify on the final state; and the README's offline run as
real processes, many rollouts of the same tasks at once, none seeing another's world."""

from __future__ import annotations

import copy
import json

import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.server import asgi
from nemo_gym_cli.testing import VerifyCase, check_verify, collect_offline, reply
from resources_servers.multi_step_tools.app import MultiStepTools
from resources_servers.multi_step_tools.world import tool_definitions
from support.cli import ROOT

TASKS = ROOT / "resources_servers" / "multi_step_tools" / "data" / "tasks.jsonl"


def tasks() -> list[dict]:
    return [json.loads(line) for line in TASKS.read_text(encoding="utf-8").splitlines()]


def script(row: dict) -> list[dict]:
    return json.loads(row["responses_create_params"]["metadata"]["emulator_script"])


def calls_of(row: dict) -> list[dict]:
    return [call for turn in script(row) for call in turn.get("tool_calls", ())]


def task(task_type: str) -> dict:
    return next(row for row in tasks() if row["task_type"] == task_type)


def session(client: TestClient, sid: str, row: dict) -> dict:
    headers = {"x-ng-session-id": sid}
    assert client.post("/seed_session", json=row, headers=headers).status_code == 200
    return headers


def test_the_server_serves_the_tools_the_rows_offer() -> None:
    with TestClient(asgi(MultiStepTools())) as c:
        served = {t["name"]: t["parameters"] for t in c.get("/tools").json()}
    assert served == {d["name"]: d["parameters"] for d in tool_definitions()}


def test_a_rollout_seeds_its_world_changes_it_with_the_tools_and_scores_its_final_state() -> None:
    row = task("swap_in_stock")
    with TestClient(asgi(MultiStepTools())) as c:
        headers = session(c, "r1", row)
        for call in calls_of(row):
            resp = c.post(f"/{call['name']}", json=call["arguments"], headers=headers)
            assert resp.status_code == 200, resp.text
        scored = c.post("/verify", json={**row, "response": reply(script(row)[-1]["text"])}, headers=headers).json()
    assert (scored["reward"], scored["state_diff"], scored["num_tool_errors"]) == (1.0, [], 0)
    assert scored["num_tool_calls"] == len(calls_of(row))


def test_a_call_the_world_refuses_is_a_tool_error_whose_message_the_model_reads() -> None:
    with TestClient(asgi(MultiStepTools())) as c:
        headers = session(c, "r1", task("cancel_pending"))
        refused = c.post("/lookup_order", json={"order_id": "O-9999"}, headers=headers)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert (error["type"], error["retryable"]) == ("tool_error", False)
        assert error["message"].startswith("no order 'O-9999'; order ids look like 'O-1042'.")
        bad_type = c.post("/change_order", json={"order_id": "O-1", "sku": "X", "quantity": "many"}, headers=headers)
        assert bad_type.status_code == 422 and "argument quantity" in bad_type.json()["error"]["message"]


def test_two_rollouts_of_the_same_task_never_share_a_world() -> None:
    row = task("cancel_pending")
    cancel = next(call for call in calls_of(row) if call["name"] == "cancel_order")
    with TestClient(asgi(MultiStepTools())) as c:
        first, second = session(c, "first", row), session(c, "second", row)
        assert c.post("/cancel_order", json=cancel["arguments"], headers=first).status_code == 200
        untouched = c.post("/lookup_order", json=cancel["arguments"], headers=second).json()
        assert untouched["status"] == "pending"
        done = c.post("/verify", json={**row, "response": reply("Cancelled.")}, headers=first).json()
        idle = c.post("/verify", json={**row, "response": reply("Cancelled.")}, headers=second).json()
    assert (done["reward"], done["num_tool_calls"]) == (1.0, 1)
    assert idle["reward"] == 0.0 and idle["num_tool_calls"] == 1  # its own lookup only
    assert any("status: expected 'cancelled', got 'pending'" in line for line in idle["state_diff"])


UNCHANGED = {"reward": 0.0, "num_tool_calls": 0}
MALFORMED = [
    VerifyCase("no output", response={"output": []}, expect=UNCHANGED),
    VerifyCase("empty", "", UNCHANGED),
    VerifyCase("garbage", "\x00}{ garbage", UNCHANGED),
    VerifyCase("a claim without the change", "I cancelled the order.", UNCHANGED),
]


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_or_empty_output_scores_the_unchanged_world(case: VerifyCase) -> None:
    row = task("cancel_pending")  # the order should end cancelled
    with TestClient(asgi(MultiStepTools())) as c:
        scored = check_verify(c, case, fields=row, headers=session(c, "r", row))
    assert len(scored["state_diff"]) >= 1


def test_without_a_seeded_session_verify_and_the_tools_are_refused_not_scored() -> None:
    row = task("cancel_pending")
    with TestClient(asgi(MultiStepTools())) as c:
        unseeded = {"x-ng-session-id": "never-seeded"}
        verified = c.post("/verify", json={**row, "response": reply("Done.")}, headers=unseeded)
        called = c.post("/lookup_order", json={"order_id": "O-1"}, headers=unseeded)
        bad_row = c.post("/seed_session", json={"world": {"customers": {}}}, headers=unseeded)
    assert verified.status_code == 400 and verified.json()["error"]["type"] == "no_session"
    assert called.status_code == 400 and called.json()["error"]["type"] == "no_session"
    assert bad_row.status_code == 400 and "missing" in bad_row.json()["error"]["message"]


# --- real processes ---------------------------------------------------------------------

CONFIG = "resources_servers/multi_step_tools/configs/multi_step_tools.yaml"
AGENT = "multi_step_tools_simple_agent"


@pytest.mark.e2e
def test_every_task_runs_offline_to_reward_1_with_100_rollouts_in_flight_none_seeing_anothers_world(tmp_path) -> None:
    rows = collect_offline(
        CONFIG, AGENT, "resources_servers/multi_step_tools/data/tasks.jsonl", tmp_path / "mst.jsonl",
        "+num_repeats=4",  # four copies of each world in flight at once
        "+concurrency=100", cwd=ROOT,
    )  # fmt: skip
    assert len(rows) == 55 * 4
    by_task = {i: row for i, row in enumerate(tasks())}
    for r in rows:
        # A shared world would record another rollout's calls, or refuse a change made twice.
        expected_calls = len(calls_of(by_task[r["_ng_task_index"]]))
        assert (r["reward"], r["state_diff"], r["num_tool_errors"]) == (1.0, [], 0), r["meta"]
        assert r["num_tool_calls"] == expected_calls, r["meta"]


@pytest.mark.e2e
def test_a_wrong_change_scores_0_and_a_refused_call_reaches_the_model_offline(tmp_path) -> None:
    swap = task("swap_in_stock")
    calls = calls_of(swap)
    order = next(c["arguments"]["order_id"] for c in calls if c["name"] == "change_order")
    wrong = copy.deepcopy(swap)  # cancels the order it should have changed
    wrong["responses_create_params"]["metadata"]["emulator_script"] = json.dumps(
        [{"tool_calls": [calls[0]]}, {"tool_calls": [{"name": "cancel_order", "arguments": {"order_id": order}}]}]
        + [{"text": "Cancelled it."}]
    )
    recovers = copy.deepcopy(swap)  # asks for an order that does not exist first, then does it right
    recovers["responses_create_params"]["input"][1]["content"] += " (again)"
    recovers["responses_create_params"]["metadata"]["emulator_script"] = json.dumps(
        [{"tool_calls": [{"name": "lookup_order", "arguments": {"order_id": "O-9999"}}]}, *script(swap)]
    )
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps(wrong) + "\n" + json.dumps(recovers) + "\n")
    rows = collect_offline(CONFIG, AGENT, inp, tmp_path / "out.jsonl", cwd=ROOT)
    cancelled, recovered = sorted(rows, key=lambda r: r["_ng_task_index"])
    assert cancelled["reward"] == 0.0
    assert f"orders.{order}.status: expected 'pending', got 'cancelled'" in cancelled["state_diff"]
    assert (recovered["reward"], recovered["num_tool_errors"]) == (1.0, 1)
    outputs = [i["output"] for i in recovered["response"]["output"] if i["type"] == "function_call_output"]
    assert "no order 'O-9999'" in outputs[0]
