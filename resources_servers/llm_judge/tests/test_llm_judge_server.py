"""llm_judge on the kernel: /verify asks a real judge model server (the openai_model adapter
in front of the emulator, on loopback); verdict, reasoning and cost in the row; a judge that
fails is a recorded failure carrying its cost; the README's offline run as real processes."""

from __future__ import annotations

import dataclasses
import json
import socket
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.server import ServerSpec, asgi
from nemo_gym_cli.testing import VerifyCase, check_verify, collect_offline, reply
from resources_servers.llm_judge.app import LLMJudge, judge_usage
from responses_api_agents.simple_agent.app import SimpleAgent
from responses_api_models.openai_model.app import OpenAIModel
from support.cli import ROOT
from support.emulator import KEY, MODEL, emulator
from support.servers import serving

QUESTIONS = ROOT / "resources_servers" / "llm_judge" / "data" / "questions.jsonl"
CORRECT = "REASONING: Same key fact as the reference.\nSCORE: 0.9\nVERDICT: CORRECT"
INCORRECT = "REASONING: It names the wrong cause.\nSCORE: 0.1\nVERDICT: INCORRECT"
JUDGE_REF = {"type": "responses_api_models", "name": "judge"}


def judged_row(judge_reply: str, **extra: Any) -> dict[str, Any]:
    return {
        "question": "Why is the sky blue?",
        "reference_answer": "Rayleigh scattering: air molecules scatter short (blue) wavelengths the most.",
        "subject": "science",
        "judge_script": [{"text": judge_reply}],
        **extra,
    }


def adapter(**fields: Any):
    def build(spec: ServerSpec) -> OpenAIModel:
        base = {
            "openai_base_url": spec.server_urls["emulator"] + "/api/v1",
            "openai_api_key": KEY,
            "openai_model": MODEL,
            "emulator_metadata": True,  # the rows' judge scripts reach the emulator
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        return OpenAIModel.from_fields({**base, **fields}, spec)

    return build


@contextmanager
def judged(emulator_fields: dict[str, Any] | None = None, **judge_fields: Any) -> Iterator[dict[str, str]]:
    """Emulator, a judge model server in front of it, the environment, and an agent whose
    policy is the judge's adapter too (what offline_model.yaml wires); yields their URLs."""
    refs = {"resources_server": {"type": "resources_servers", "name": "env"}, "model_server": JUDGE_REF}
    factories = {
        "emulator": emulator(**(emulator_fields or {})),
        "judge": adapter(**judge_fields),
        "env": lambda spec: LLMJudge.from_fields({"judge_model_server": JUDGE_REF}, spec),
        "agent": lambda spec: SimpleAgent.from_fields({**refs, "max_steps": 1}, spec),
    }
    with serving(factories) as stack:
        yield stack.urls


def verify(urls: dict[str, str], row: dict[str, Any], answer: str) -> httpx.Response:
    return httpx.post(urls["env"] + "/verify", json={**row, "response": reply(answer)}, timeout=30)


def test_the_judges_verdict_reasoning_and_cost_are_in_the_row() -> None:
    with judged() as urls:
        right = verify(urls, judged_row(CORRECT), "Air scatters blue light more than red.").json()
        wrong = verify(urls, judged_row(INCORRECT), "Because the sea reflects onto it.").json()
    assert (right["reward"], right["judge_verdict"], right["judge_score"]) == (1.0, "CORRECT", 0.9)
    assert right["judge_reasoning"] == "Same key fact as the reference." and right["judge_model"] == MODEL
    usage = right["verifier_usage"]
    assert usage["input_tokens"] > 100 and usage["output_tokens"] > 5 and usage["cost"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert (wrong["reward"], wrong["judge_verdict"], wrong["judge_parse_error"]) == (0.0, "INCORRECT", None)
    assert wrong["subject"] == "science"


MALFORMED = [
    VerifyCase("empty", "", {"reward": 0.0}),
    VerifyCase("garbage", "\x00}{ garbage ###", {"reward": 0.0}),
    VerifyCase("huge", "I don't know." * 3000, {"reward": 0.0}),
]


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_policy_output_is_judged_like_any_answer(case: VerifyCase) -> None:
    with judged() as urls, httpx.Client(base_url=urls["env"], timeout=30) as env:
        check_verify(env, case, fields=judged_row(INCORRECT))


@pytest.mark.parametrize(
    "judge_reply", ["The answer looks fine to me.", "", "VERDICT: PARTIALLY CORRECT"], ids=["prose", "empty", "partly"]
)
def test_a_judge_reply_without_a_verdict_is_a_judge_error_carrying_its_cost_not_a_reward_of_0(judge_reply) -> None:
    with judged() as urls:
        failed = verify(urls, judged_row(judge_reply), "Rayleigh scattering.")
    assert failed.status_code == 502
    body = failed.json()
    assert (body["error"]["type"], body["error"]["retryable"]) == ("judge_error", False)
    assert "the judge's reply has no verdict" in body["error"]["message"]
    assert body["usage"]["input_tokens"] > 100 and body["usage"]["cost"] > 0


@pytest.mark.parametrize(
    ("emulator_fields", "retryable"),
    # The judge's adapter is the one retry layer: once it gave up, nobody above retries again.
    [({"down_models": [MODEL]}, False), ({"reject_keys": {KEY: 402}}, False)],
    ids=["judge model down, adapter gave up: not retryable", "judge out of credits: not retryable"],
)
def test_a_failing_judge_model_server_is_a_judge_error_as_retryable_as_its_cause(emulator_fields, retryable) -> None:
    with judged(emulator_fields, max_attempts=1, preflight=False) as urls:
        failed = verify(urls, judged_row(CORRECT), "Rayleigh scattering.")
    assert failed.status_code == 502
    error = failed.json()["error"]
    assert (error["type"], error["retryable"]) == ("judge_error", retryable)
    assert error["message"].startswith("the judge failed: ")


def test_rows_without_a_question_or_reference_or_with_a_bad_judge_script_are_bad_rows() -> None:
    urls = {"judge": "http://127.0.0.1:9"}  # never called: the row is refused first
    spec = ServerSpec(name="env", server_type="resources_servers", implementation="llm_judge", server_urls=urls)
    with TestClient(asgi(LLMJudge.from_fields({"judge_model_server": JUDGE_REF}, spec))) as c:
        for row, needle in [
            ({**judged_row(CORRECT), "reference_answer": ""}, "reference_answer"),
            ({**judged_row(CORRECT), "question": None}, "question"),
            ({**judged_row(CORRECT), "judge_script": "CORRECT"}, "judge_script"),
        ]:
            resp = c.post("/verify", json={**row, "response": reply("x")})
            assert resp.status_code == 400 and needle in resp.json()["error"]["message"]


def test_chat_usage_is_counted_in_the_responses_apis_names() -> None:
    usage = {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320, "cost": 0.5, "is_byok": False}
    assert judge_usage(usage) == {"input_tokens": 300, "output_tokens": 20, "total_tokens": 320, "cost": 0.5}
    assert judge_usage(None) == {} and judge_usage({"cost": True}) == {}


def test_a_judge_failure_through_an_agent_still_counts_the_judges_cost() -> None:
    row = {
        "responses_create_params": {
            "input": "Why is the sky blue?",
            "metadata": {"emulator_script": json.dumps([{"text": "Rayleigh scattering."}])},
        },
        **judged_row("no verdict here"),
    }
    with judged() as urls:
        failed = httpx.post(urls["agent"] + "/run", json=row, timeout=30)
        alone = verify(urls, judged_row("no verdict here"), "Rayleigh scattering.").json()["usage"]
    assert failed.status_code == 502 and failed.json()["error"]["type"] == "judge_error"
    assert failed.json()["usage"]["input_tokens"] > alone["input_tokens"]  # the policy's and the judge's


# --- the README's command, as real processes --------------------------------------------

CONFIG, AGENT = "resources_servers/llm_judge/configs/llm_judge.yaml", "llm_judge_simple_agent"


@pytest.mark.e2e
def test_the_readme_command_runs_every_question_offline_to_reward_1_and_counts_the_judges_cost(tmp_path) -> None:
    data = "resources_servers/llm_judge/data/questions.jsonl"
    rows = collect_offline(CONFIG, AGENT, data, tmp_path / "judge.jsonl", cwd=ROOT)
    assert len(rows) == 32 and all(r["reward"] == 1.0 and r["judge_verdict"] == "CORRECT" for r in rows)
    policy = sum(r["response"]["usage"]["cost"] for r in rows)
    judge = sum(r["verifier_usage"]["cost"] for r in rows)
    assert judge > 0
    metrics = json.loads((tmp_path / "judge_metrics.json").read_text())
    assert metrics["cost"]["rows_usd"] == pytest.approx(policy + judge)
    assert metrics["tokens"]["input"] == sum(
        r["response"]["usage"]["input_tokens"] + r["verifier_usage"]["input_tokens"] for r in rows
    )


@pytest.mark.e2e
def test_a_wrong_answer_scores_0_and_an_unreadable_verdict_is_a_recorded_failure_offline(tmp_path) -> None:
    def row(question: str, answer: str, judge_reply: str) -> dict:
        return {
            "responses_create_params": {
                "input": question,
                "metadata": {"emulator_script": json.dumps([{"text": answer}])},
            },
            **judged_row(judge_reply, question=question),
        }

    inp, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    inp.write_text(
        json.dumps(row("Why is the sky blue?", "The sea reflects onto it.", INCORRECT))
        + "\n"
        + json.dumps(row("Why is the sky blue, again?", "Rayleigh scattering.", "Looks good to me!"))
        + "\n"
    )
    (scored,) = collect_offline(CONFIG, AGENT, inp, out, "+max_failures=1", cwd=ROOT)
    assert (scored["reward"], scored["judge_verdict"]) == (0.0, "INCORRECT")
    (failure,) = [json.loads(line) for line in (tmp_path / "out_failures.jsonl").read_text().splitlines()]
    assert (failure["_ng_task_index"], failure["error_type"], failure["attempts"]) == (1, "judge_error", 1)
    assert "the judge's reply has no verdict" in failure["message"]
    metrics = json.loads((tmp_path / "out_metrics.json").read_text())
    assert metrics["cost"]["failed_attempts_usd"] > 0


def test_judge_calls_spread_over_the_judge_replicas_and_skip_one_that_does_not_answer() -> None:
    # Three replicas of the judge model server: two adapters (told apart by the model they
    # serve) and a port nobody listens on (bound, not listening: connection refused).
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))
        dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}"

        def env(spec: ServerSpec) -> LLMJudge:
            replicas = [spec.server_urls["judge"], spec.server_urls["judge2"], dead_url]
            spec = dataclasses.replace(spec, replica_urls={"judge": replicas})
            return LLMJudge.from_fields({"judge_model_server": JUDGE_REF}, spec)

        factories = {
            "emulator": emulator(),
            "judge": adapter(openai_model="openai/gpt-4o-mini"),
            "judge2": adapter(openai_model="anthropic/claude-3.5-sonnet"),
            "env": env,
        }
        with serving(factories) as stack:
            answers = [verify(stack.urls, judged_row(CORRECT), "Rayleigh scattering.") for _ in range(40)]
    refused = [a for a in answers if a.status_code != 200]
    # The dead replica fails the calls picked for it until it is written off: one, here
    # (calls are sequential), as a retryable judge error the collector runs again.
    assert len(refused) == 1, [a.text for a in refused]
    assert refused[0].json()["error"]["type"] == "judge_error" and refused[0].json()["error"]["retryable"]
    served = Counter(a.json()["judge_model"] for a in answers if a.status_code == 200)
    assert set(served) == {"openai/gpt-4o-mini", "anthropic/claude-3.5-sonnet"} and min(served.values()) >= 8, served
