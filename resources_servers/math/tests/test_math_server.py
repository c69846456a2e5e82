"""math on the kernel: /verify through asgi(server) (math-verify in the offload pool), the
missing extra at start-up, a hanging check, and the README's offline run as real processes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator

import orjson
import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.errors import NemoGymError
from nemo_gym_cli.server import asgi
from nemo_gym_cli.testing import VerifyCase, check_verify, collect_offline, reply
from resources_servers.math.app import Math
from support.cli import ROOT

HANGS = "\\boxed{2^{2^{2^{100}}}}"  # sympy evaluates the tower: it never finishes


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(asgi(Math())) as c:
        yield c


def verify(client: TestClient, expected: str, text: str) -> dict:
    return check_verify(client, VerifyCase(text, text), fields={"expected_answer": expected, "subject": "algebra"})


THIRD = {"expected_answer": "x = 1/3", "subject": "algebra"}  # the task row's fields


def test_an_equivalent_answer_scores_1_with_the_parsed_answer_in_the_row(client: TestClient) -> None:
    text = "Collecting terms, 9x = 3.\n\nThe final answer is $\\boxed{x = \\frac{1}{3}}$."
    expect = {"reward": 1.0, "parsed_answer": "x = \\frac{1}{3}", "verdict_reason": "equivalent (boxed)"}
    expect |= {"subject": "algebra", "expected_answer": "x = 1/3"}
    check_verify(client, VerifyCase("equivalent", text, expect), fields=THIRD)


def scores_0(case_id: str, text: str, parsed: str, reason: str) -> VerifyCase:
    return VerifyCase(case_id, text, {"reward": 0.0, "parsed_answer": parsed}, expect_prefix={"verdict_reason": reason})


WRONG = [
    scores_0("not equivalent", "The final answer is $\\boxed{x = 1/4}$.", "x = 1/4", "not equivalent (boxed)"),
    scores_0("empty", "", "", "empty response"),
    scores_0("no final answer", "I am not sure of the answer.", "", "no final answer found"),
    scores_0("does not parse", "#### }}}{{{\\frac", "}}}{{{\\frac", "final answer did not parse"),
    scores_0("garbage", "\x00\x01 garbage ##", "", "no final answer found"),
]


@pytest.mark.parametrize("case", WRONG, ids=str)
def test_wrong_and_malformed_answers_score_0_with_a_reason(client: TestClient, case: VerifyCase) -> None:
    check_verify(client, case, fields=THIRD)


def test_a_row_without_an_expected_answer_is_a_bad_row_not_a_wrong_model(client: TestClient) -> None:
    resp = client.post("/verify", json={"expected_answer": "  ", "response": reply("\\boxed{1}")})
    assert resp.status_code == 400 and resp.json()["error"]["retryable"] is False
    assert "expected_answer" in resp.json()["error"]["message"]


@pytest.mark.e2e
def test_a_hanging_check_is_stopped_as_offload_timeout_and_the_server_goes_on() -> None:
    with TestClient(asgi(Math.from_fields({"offload_timeout_s": 1.5, "offload_workers": 1}))) as c:
        assert verify(c, "5", "\\boxed{5}")["reward"] == 1.0  # the worker is up: the timeout is the check's own
        hung = c.post("/verify", json={"expected_answer": "5", "response": reply(HANGS)})
        assert hung.status_code == 500
        error = hung.json()["error"]
        assert (error["type"], error["retryable"]) == ("offload_timeout", False)
        assert "verify_answer ran longer than 1.5 s" in error["message"]
        assert verify(c, "5", "The final answer is $\\boxed{5}$.")["reward"] == 1.0  # a fresh worker


def test_without_the_math_extra_the_server_refuses_to_start_in_one_line(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "math_verify", None)  # what an import of a missing module sees
    with pytest.raises(NemoGymError) as failed:
        asyncio.run(Math().startup())
    message = str(failed.value)
    assert "pip install -e '.[math]' in a clone of nemo-gym-cli" in message and "\n" not in message


# --- the README's command, as real processes --------------------------------------------

CONFIG, AGENT = "resources_servers/math/configs/math.yaml", "math_simple_agent"


def rows_of(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.mark.e2e
def test_the_readme_command_runs_the_shipped_problems_offline_to_reward_1(tmp_path) -> None:
    data = "resources_servers/math/data/problems.jsonl"
    rows = collect_offline(CONFIG, AGENT, data, tmp_path / "math.jsonl", "+limit=32", "+concurrency=16", cwd=ROOT)
    assert len(rows) == 32 and all(r["reward"] == 1.0 for r in rows)
    assert all(r["verdict_reason"] == "equivalent (boxed)" and r["parsed_answer"] == r["expected_answer"] for r in rows)
    assert {r["subject"] for r in rows} == {"arithmetic", "rates", "percentages", "algebra"}


def scripted_row(question: str, text: str, expected: str) -> dict:
    return {
        "responses_create_params": {
            "input": question,
            "metadata": {"emulator_script": json.dumps([{"text": text}])},
        },
        "expected_answer": expected,
    }


@pytest.mark.e2e
def test_a_wrong_answer_scores_0_and_a_hanging_check_is_a_recorded_failure_offline(tmp_path) -> None:
    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [  # one at a time, on one worker: the first check imports math-verify, the last hangs
        scripted_row("What is 2 + 3?", "2 + 3 = 5.\n\nThe final answer is $\\boxed{5}$.", "5"),
        scripted_row("What is 2 + 3? (wrong)", "2 + 3 = 6.\n\nThe final answer is $\\boxed{6}$.", "5"),
        scripted_row("What is 2 + 3? (hangs)", f"The final answer is ${HANGS}$.", "5"),
    ]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rows = collect_offline(
        CONFIG, AGENT, inp, out,
        "++math.resources_servers.math.offload_timeout_s=2.0", "++math.resources_servers.math.offload_workers=1",
        "+concurrency=1", "+max_failures=1", cwd=ROOT,
    )  # fmt: skip
    scored = sorted(rows, key=lambda r: r["_ng_task_index"])
    assert [(r["reward"], r["parsed_answer"]) for r in scored] == [(1.0, "5"), (0.0, "6")]
    (failure,) = rows_of(tmp_path / "out_failures.jsonl")
    assert (failure["_ng_task_index"], failure["error_type"], failure["attempts"]) == (2, "offload_timeout", 1)
    assert "verify_answer ran longer than 2 s" in failure["message"]
