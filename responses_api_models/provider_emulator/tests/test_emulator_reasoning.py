"""A script's ``reasoning`` on the wire, as OpenRouter sends a reasoning model's thoughts:
``message.reasoning`` and ``reasoning_details`` in chat completions (whole and streamed), a
``reasoning`` output item in the Responses API (whole and streamed), billed as output."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import TestClient

from nemo_gym_cli.server import asgi
from responses_api_models.provider_emulator.app import ProviderEmulator
from support.emulator import KEY

THOUGHT = "The user wants the parents of node a1. Edges into a1: b2 -> a1."
SCRIPT = {"emulator_script": json.dumps([{"reasoning": THOUGHT, "text": "b2"}])}
USER = [{"role": "user", "content": "parents of a1?"}]


def client() -> TestClient:
    return TestClient(asgi(ProviderEmulator.from_fields({})), headers={"Authorization": f"Bearer {KEY}"})


def sse(text: str) -> list[dict[str, Any]]:
    datas = [line[6:] for line in text.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]
    return [json.loads(d) for d in datas]


def test_a_chat_completion_carries_the_reasoning_and_its_details_and_bills_it_as_output() -> None:
    with client() as c:
        plain = c.post("/api/v1/chat/completions", json={"messages": USER, "metadata": {}}).json()
        body = c.post("/api/v1/chat/completions", json={"messages": USER, "metadata": SCRIPT}).json()
    message, usage = body["choices"][0]["message"], body["usage"]
    assert (message["content"], message["reasoning"]) == ("b2", THOUGHT)
    assert [(d["type"], d["text"]) for d in message["reasoning_details"]] == [("reasoning.text", THOUGHT)]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == -(-len(THOUGHT) // 4)
    assert usage["completion_tokens"] == -(-(len(THOUGHT) + 2) // 4)
    # a model without a script's reasoning sends none, as before
    assert plain["choices"][0]["message"]["reasoning"] is None and "reasoning_details" not in plain["choices"][0]
    assert plain["usage"]["completion_tokens_details"]["reasoning_tokens"] == 0


def test_a_streamed_chat_completion_sends_the_reasoning_before_the_answer() -> None:
    with client() as c:
        text = c.post("/api/v1/chat/completions", json={"messages": USER, "metadata": SCRIPT, "stream": True}).text
    deltas = [chunk["choices"][0]["delta"] for chunk in sse(text) if chunk["choices"]]
    thinking = [d for d in deltas if d.get("reasoning")]
    assert "".join(d["reasoning"] for d in thinking) == THOUGHT
    assert "".join(d["reasoning_details"][0]["text"] for d in thinking) == THOUGHT
    first_answer = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert deltas.index(thinking[-1]) < first_answer and "".join(d.get("content") or "" for d in deltas) == "b2"


def test_a_responses_answer_opens_with_a_reasoning_item_whole_and_streamed() -> None:
    with client() as c:
        whole = c.post("/api/v1/responses", json={"input": USER, "metadata": SCRIPT}).json()
        text = c.post("/api/v1/responses", json={"input": USER, "metadata": SCRIPT, "stream": True}).text
    assert [item["type"] for item in whole["output"]] == ["reasoning", "message"]
    assert whole["output"][0]["summary"] == [{"type": "summary_text", "text": THOUGHT}]
    assert whole["usage"]["output_tokens_details"]["reasoning_tokens"] == -(-len(THOUGHT) // 4)
    events = sse(text)
    kinds = [e["type"] for e in events if "reasoning_summary" in e["type"]]
    deltas = [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == THOUGHT
    assert kinds == [
        "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * len(deltas),
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
    ]
    final = events[-1]
    assert final["type"] == "response.completed"
    assert [item["type"] for item in final["response"]["output"]] == ["reasoning", "message"]
    assert final["response"]["output"][0]["summary"] == whole["output"][0]["summary"]


def test_a_script_s_reasoning_that_is_not_a_string_is_a_400_naming_the_turn() -> None:
    bad = {"emulator_script": json.dumps([{"reasoning": ["x"], "text": "b2"}])}
    with client() as c:
        answer = c.post("/api/v1/chat/completions", json={"messages": USER, "metadata": bad})
    assert answer.status_code == 400
    assert "emulator_script turn 0: reasoning must be a string, got list" in answer.text
