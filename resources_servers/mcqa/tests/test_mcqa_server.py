"""mcqa on the kernel: /verify through asgi(server), the README's offline run to reward 1, and
a weaker emulated model (configs/offline_sweep.yaml) answering the scripts' wrong variants,
broken down by subject in ng_report."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.server import asgi
from nemo_gym_cli.testing import VerifyCase, check_verify, collect_offline, reply
from resources_servers.mcqa.app import MultipleChoice
from responses_api_models.provider_emulator.policy import gets_wrong
from support.cli import ROOT, run_cli

QUESTIONS = ROOT / "resources_servers" / "mcqa" / "data" / "questions.jsonl"
ROW = {"options": ["London", "Paris", "Rome", "Berlin"], "expected_answer": "B", "subject": "geography"}


def chose(case_id: str, text: str, reward: float, letter: str | None) -> VerifyCase:
    # the row's fields ride along (subject: for ng_report +group_by=subject)
    expect = {"reward": reward, "extracted_answer": letter, "expected_answer": "B", "subject": "geography"}
    return VerifyCase(case_id, text, expect)


CASES = [
    chose("parenthesised", "The answer is (B).", 1.0, "B"),
    chose("markdown", "**Answer:** (B) Paris", 1.0, "B"),
    chose("wrong", "C) Rome", 0.0, "C"),
    chose("empty", "", 0.0, None),
    chose("no choice", "I am not sure of the answer.", 0.0, None),
    chose("two choices", "A or B", 0.0, None),
    chose("garbage", "}}{{ \x00 @@@ garbage", 0.0, None),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_verifier_scores_the_letter_the_reply_chose(case: VerifyCase) -> None:
    with TestClient(asgi(MultipleChoice())) as c:
        check_verify(c, case, fields=ROW)


def test_a_row_without_options_is_a_bad_row_not_a_wrong_model() -> None:
    with TestClient(asgi(MultipleChoice())) as c:
        resp = c.post("/verify", json={"expected_answer": "B", "response": reply("B")})
    assert resp.status_code == 400 and "options" in resp.json()["error"]["message"]


def test_every_scripted_mistake_chooses_the_most_tempting_wrong_option() -> None:
    from resources_servers.mcqa.generate import BANK
    from resources_servers.mcqa.verifier import verify

    rows = [json.loads(line) for line in QUESTIONS.read_text(encoding="utf-8").splitlines()]
    for row, (_, _, _, wrong) in zip(rows, BANK, strict=True):
        (turn,) = json.loads(row["responses_create_params"]["metadata"]["emulator_script"])
        scored = verify(row, turn["wrong"]["text"])
        assert scored["reward"] == 0.0, (row["meta"], turn)
        assert row["options"][ord(scored["extracted_answer"]) - ord("A")] == wrong[0]


# --- real processes ---------------------------------------------------------------------


CONFIG, AGENT = "resources_servers/mcqa/configs/mcqa.yaml", "mcqa_simple_agent"


@pytest.mark.e2e
def test_the_readme_command_runs_every_question_offline_to_reward_1(tmp_path) -> None:
    rows = collect_offline(CONFIG, AGENT, QUESTIONS.relative_to(ROOT), tmp_path / "mcqa.jsonl", cwd=ROOT)
    assert len(rows) == 70 and all(r["reward"] == 1.0 for r in rows)
    assert all(r["extracted_answer"] == r["expected_answer"] for r in rows)


@pytest.mark.e2e
def test_a_weaker_emulated_model_answers_the_wrong_variants_and_the_report_breaks_it_down_by_subject(
    tmp_path,
) -> None:
    out = tmp_path / "small.jsonl"
    rows = collect_offline(
        CONFIG, AGENT, QUESTIONS.relative_to(ROOT), out, "+emulator_model=emulator/small", "+concurrency=35",
        model_config="configs/offline_sweep.yaml", cwd=ROOT,
    )  # fmt: skip
    assert len(rows) == 70 and {r["response"]["model"] for r in rows} == {"emulator/small"}
    for r in rows:  # exactly the tasks the emulator's accuracy draw makes it get wrong score 0
        question = r["responses_create_params"]["input"][1]["content"]
        assert r["reward"] == (0.0 if gets_wrong("emulator/small", 0.55, question) else 1.0)
        assert r["extracted_answer"] is not None  # a wrong choice, not an unreadable reply
    assert 0.3 < sum(r["reward"] for r in rows) / 70 < 0.8

    report = run_cli("ng_report", str(out), f"+report_dir={tmp_path / 'report'}", "+group_by=subject", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    groups = json.loads((tmp_path / "report" / "report.json").read_text())["groups"]
    by_subject = {g["value"]: g["reward"]["emulator/small"] for g in groups}  # a variant is named by its model
    assert sorted(by_subject) == ["geography", "history", "literature", "math", "science"]
    for subject, reward in by_subject.items():
        subset = [r["reward"] for r in rows if r["subject"] == subject]
        assert reward == pytest.approx(sum(subset) / len(subset))
