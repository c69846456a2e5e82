"""Server-sent events both ways (nemo_gym_cli.openai.streams): complete answers rendered as
OpenAI's streams, and upstream streams assembled, errors and cut streams included."""

from __future__ import annotations

import json

import pytest

from nemo_gym_cli.errors import UpstreamError
from nemo_gym_cli.openai.conversion import chat_to_responses_response
from nemo_gym_cli.openai.streams import (
    assemble_chat,
    assemble_responses,
    chat_sse,
    is_sse,
    read_sse,
    response_events,
    response_sse,
)

USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "cost": 0.00042}
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
COMPLETION = {
    "id": "gen-1",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "m",
    "provider": "P",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Checking.", "reasoning": "think", "tool_calls": [CALL]},
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ],
    "usage": USAGE,
}


def chunk(delta: dict, finish: str | None = None, **extra) -> str:
    body = {"id": "gen-9", "object": "chat.completion.chunk", "created": 1, "model": "m", **extra}
    body.setdefault("choices", [{"index": 0, "delta": delta, "finish_reason": finish}])
    return "data: " + json.dumps(body) + "\n\n"


def test_a_chat_stream_is_assembled_ignoring_keepalives_with_usage_from_the_last_chunk():
    body = (
        ": OPENROUTER PROCESSING\n\n"
        + chunk({"role": "assistant", "content": ""})
        + ": OPENROUTER PROCESSING\n\n"
        + chunk({"content": "Hel"})
        + chunk({"content": "lo"})
        + chunk(
            {"tool_calls": [{"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}]}
        )
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]})
        + chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})
        + chunk({}, "tool_calls")
        + chunk({}, choices=[], usage=USAGE)
        + "data: [DONE]\n\n"
    ).encode()
    completion = assemble_chat(body)
    assert completion == {
        "id": "gen-9",
        "created": 1,
        "model": "m",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": USAGE,
    }
    assert completion.generation_id == "gen-9"


@pytest.mark.parametrize(
    "body",
    [
        chunk({"content": "Hel"}) + chunk({}, "error", error={"code": 502, "message": "Provider returned error"}),
        chunk({"content": "Hel"}, choices=[{"index": 0, "delta": {}, "finish_reason": "error"}]),
    ],
)
def test_a_mid_stream_error_is_a_retryable_upstream_error(body: str):
    with pytest.raises(UpstreamError, match="mid-stream error") as info:
        assemble_chat(body.encode())
    assert info.value.retryable


def test_a_chat_stream_without_done_is_cut_short_and_retryable():
    with pytest.raises(UpstreamError, match=r"ended before data: \[DONE\]") as info:
        assemble_chat((chunk({"content": "Hel"}) + chunk({"content": "lo"})).encode())
    assert info.value.retryable and info.value.kind == "bad_response"
    assert info.value.generation_id == "gen-9"
    with pytest.raises(UpstreamError, match="readable chunk"):
        assemble_chat(b'data: {"id": "gen-9", "cho\n\n')


def test_rendered_chat_chunks_assemble_back_into_the_completion():
    body = chat_sse(COMPLETION, usage=True)
    assert body.endswith(b"data: [DONE]\n\n")
    back = assemble_chat(body)
    assert back["choices"][0]["message"] == COMPLETION["choices"][0]["message"]
    assert back["choices"][0]["finish_reason"] == "tool_calls" and back["usage"] == USAGE
    assert back["provider"] == "P"
    assert b'"usage"' not in chat_sse(COMPLETION)  # only with stream_options.include_usage


def test_a_response_renders_as_the_documented_events_and_assembles_back():
    response = chat_to_responses_response(COMPLETION)
    events = list(response_events(response))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",  # reasoning
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",  # message
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",  # function call
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[16]["name"] == "get_weather" and events[16]["arguments"] == '{"city":"Paris"}'
    assert events[8]["item"]["content"] == [] and events[8]["item"]["status"] == "in_progress"
    sse = response_sse(response)
    assert sse.startswith(b"event: response.created\ndata: {")
    assert assemble_responses(sse) == response


def test_an_incomplete_response_ends_with_response_incomplete():
    cut = {**COMPLETION, "choices": [{**COMPLETION["choices"][0], "finish_reason": "length"}]}
    events = list(response_events(chat_to_responses_response(cut)))
    assert events[-1]["type"] == "response.incomplete" and events[-1]["response"]["status"] == "incomplete"


def test_a_responses_stream_takes_its_items_from_done_events_when_the_last_event_has_none():
    response = chat_to_responses_response(COMPLETION)
    events = list(response_events(response))
    events[-1] = {**events[-1], "response": {**events[-1]["response"], "output": []}}
    body = "".join("data: " + json.dumps(e) + "\n\n" for e in events).encode()
    assert assemble_responses(body)["output"] == response["output"]


@pytest.mark.parametrize(
    ("tail", "said"),
    [
        ({"type": "error", "code": "server_error", "message": "boom"}, "mid-stream error"),
        ({"type": "response.failed", "response": {"id": "r", "error": {"message": "failed hard"}}}, "failed hard"),
    ],
)
def test_a_responses_stream_error_or_failure_is_retryable(tail: dict, said: str):
    body = (
        'data: {"type": "response.created", "response": {"id": "r"}}\n\n' + "data: " + json.dumps(tail) + "\n\n"
    ).encode()
    with pytest.raises(UpstreamError, match=said) as info:
        assemble_responses(body)
    assert info.value.retryable


def test_a_responses_stream_without_its_terminal_event_is_cut_short():
    events = list(response_events(chat_to_responses_response(COMPLETION)))[:-1]
    body = "".join("data: " + json.dumps(e) + "\n\n" for e in events).encode()
    with pytest.raises(UpstreamError, match="response.completed") as info:
        assemble_responses(body)
    assert info.value.retryable and info.value.generation_id == "gen-1"


def test_sse_is_read_with_names_multiline_data_and_crlf():
    body = b": c\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\ndata: z\n"
    assert read_sse(body) == [("x", "a\nb"), (None, "z")]
    assert is_sse("text/event-stream; charset=utf-8", b"") and is_sse(None, b"  data: {}")
    assert not is_sse("application/json", b'{"a": 1}')


@pytest.mark.parametrize(
    "examples", [pytest.param(30, id="quick"), pytest.param(300, id="full", marks=pytest.mark.e2e)]
)
def test_any_bytes_assemble_into_an_answer_or_one_retryable_upstream_error(examples: int):
    """Property (hypothesis, seeded): whatever a provider streams, the assembler gives an
    answer or a retryable ``UpstreamError``; never a crash. A quick run in the unit tier, the
    full count under the e2e marker (the whole suite runs both)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    values = st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6)),
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
        max_leaves=10,
    )
    chunk_dicts = st.fixed_dictionaries(
        {},
        optional={
            "id": values,
            "type": st.sampled_from(["response.completed", "response.output_item.done", "error", "x"]),
            "response": values,
            "output_index": values,
            "item": values,
            "usage": values,
            "error": values,
            "choices": st.one_of(values, st.lists(st.fixed_dictionaries({}, optional={
                "index": values, "finish_reason": values, "logprobs": values,
                "delta": st.one_of(values, st.fixed_dictionaries({}, optional={
                    "role": values, "content": values, "reasoning": values, "refusal": values,
                    "tool_calls": st.one_of(values, st.lists(st.fixed_dictionaries({}, optional={
                        "index": values, "id": values, "function": values}), max_size=2)),
                })),
            }), max_size=2)),
        },
    )  # fmt: skip
    lines = st.lists(
        st.one_of(chunk_dicts.map(lambda c: "data: " + json.dumps(c)), st.sampled_from(["data: [DONE]", ": x", ""])),
        max_size=6,
    )

    @hypothesis.settings(max_examples=examples, derandomize=True, deadline=None)
    @hypothesis.given(body=lines)
    def check(body: list[str]) -> None:
        raw = "\n\n".join(body).encode()
        for assemble in (assemble_chat, assemble_responses):
            try:
                assert isinstance(assemble(raw), dict)
            except UpstreamError as exc:
                assert exc.retryable and "\n" not in str(exc)

    check()
