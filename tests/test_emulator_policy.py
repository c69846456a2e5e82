"""The emulator's scripted policy: which tool, which arguments, what it says."""

from __future__ import annotations

import json

import pytest

from nemo_gym_cli.emulator_policy import (
    completion_tokens,
    extract_place,
    fill_arguments,
    prompt_tokens,
    respond,
    truncate,
)


def _tool(name: str, description: str = "", properties: dict | None = None, required=None) -> dict:
    params: dict = {"type": "object", "properties": properties or {}}
    if required is not None:
        params["required"] = required
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": params},
    }


WEATHER = _tool("get_weather", "Get the current weather in a city", {"city": {"type": "string"}}, ["city"])
SEARCH = _tool("web_search", "Search the web for a query", {"query": {"type": "string"}}, ["query"])


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def _only_call(message: dict) -> tuple[str, dict]:
    assert message["role"] == "assistant"
    calls = message["tool_calls"]
    assert len(calls) == 1
    assert calls[0]["type"] == "function"
    assert calls[0]["id"].startswith("call_")
    return calls[0]["function"]["name"], json.loads(calls[0]["function"]["arguments"])


@pytest.mark.parametrize(
    ("text", "city"),
    [
        ("what's it like in sf?", "San Francisco"),
        ("Weather in NYC tomorrow?", "New York"),
        ("weather in Paris please", "Paris"),
        ("how hot is it in LA", "Los Angeles"),
        ("Is it raining in Springfield today?", "Springfield"),
        ("what's the forecast for Ho Chi Minh City", "Ho Chi Minh City"),
        ("is it cold in reykjavik", "Reykjavik"),
    ],
)
def test_weather_question_calls_get_weather_with_the_city(text: str, city: str) -> None:
    name, args = _only_call(respond(_user(text), [WEATHER]))
    assert name == "get_weather"
    assert args == {"city": city}


def test_extract_place_returns_none_without_a_place() -> None:
    assert extract_place("hello there") is None


def test_best_fitting_tool_wins_over_the_first_one() -> None:
    name, args = _only_call(respond(_user("search the web for pydantic docs"), [WEATHER, SEARCH]))
    assert name == "web_search"
    assert args["query"] == "search the web for pydantic docs"
    name, args = _only_call(respond(_user("what's it like in tokyo?"), [SEARCH, WEATHER]))
    assert (name, args) == ("get_weather", {"city": "Tokyo"})


def test_unmatched_request_falls_back_to_the_first_tool() -> None:
    other = _tool("lookup_order", "", {"order_id": {"type": "integer"}}, ["order_id"])
    name, args = _only_call(respond(_user("zzz"), [other, SEARCH]))
    assert (name, args) == ("lookup_order", {"order_id": 1})


def test_tool_output_becomes_a_short_answer_quoting_its_facts() -> None:
    messages = [
        *_user("what's it like in sf?"),
        respond(_user("what's it like in sf?"), [WEATHER]),
        {
            "role": "tool",
            "tool_call_id": "call_x",
            "content": json.dumps({"city": "San Francisco", "condition": "sunny", "temperature": 18}),
        },
    ]
    message = respond(messages, [WEATHER])
    assert "tool_calls" not in message
    assert message["content"] == "In San Francisco it is sunny, 18 °C."


def test_tool_output_sentence_is_quoted_as_is() -> None:
    output = {"city": "Paris", "weather_description": "The weather in Paris is cold."}
    messages = [*_user("paris?"), {"role": "tool", "content": json.dumps(output)}]
    assert respond(messages, [WEATHER]) == {
        "role": "assistant",
        "content": "The weather in Paris is cold.",
    }


def test_plain_text_tool_output_is_quoted() -> None:
    messages = [*_user("x"), {"role": "tool", "content": "42 results found"}]
    assert respond(messages, [SEARCH])["content"] == "42 results found."


def test_tool_choice_none_answers_without_tools() -> None:
    message = respond(_user("what's it like in sf?"), [WEATHER], tool_choice="none")
    assert "tool_calls" not in message
    assert "what's it like in sf?" in message["content"]


def test_forced_tool_choice_calls_that_tool() -> None:
    forced = {"type": "function", "function": {"name": "web_search"}}
    name, args = _only_call(respond(_user("what's it like in sf?"), [WEATHER, SEARCH], forced))
    assert name == "web_search"
    assert args == {"query": "what's it like in sf"}
    # the Responses API's flat form forces the same way
    name, _ = _only_call(respond(_user("sf?"), [WEATHER, SEARCH], {"type": "function", "name": "web_search"}))
    assert name == "web_search"


def test_no_tools_echoes_the_question() -> None:
    message = respond(_user("What is 2 + 2?"), None)
    assert message == {
        "role": "assistant",
        "content": 'You asked: "What is 2 + 2?" This is a scripted answer.',
    }


def test_content_given_as_text_parts_is_read() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "weather in Berlin"}]}]
    assert _only_call(respond(messages, [WEATHER]))[1] == {"city": "Berlin"}


def test_same_conversation_gives_the_same_call_id_and_a_later_turn_another() -> None:
    first = respond(_user("what's it like in sf?"), [WEATHER])
    assert respond(_user("what's it like in sf?"), [WEATHER]) == first
    longer = [{"role": "system", "content": "be brief"}, *_user("what's it like in sf?")]
    assert respond(longer, [WEATHER])["tool_calls"][0]["id"] != first["tool_calls"][0]["id"]


def test_fill_arguments_follows_the_schema() -> None:
    fn = {
        "name": "book",
        "parameters": {
            "type": "object",
            "properties": {
                "destination": {"type": "string"},
                "nights": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "refundable": {"type": "boolean"},
                "notes": {"type": "string"},
            },
            "required": ["destination", "nights", "refundable"],
        },
    }
    args = fill_arguments(fn, "book 3 nights in Rome, show fahrenheit")
    # optional `notes` is left out: nothing in the words supplies it
    assert args == {"destination": "Rome", "nights": 3, "unit": "fahrenheit", "refundable": False}
    assert fill_arguments({"name": "noop"}, "anything") == {}


def test_token_estimates_are_a_quarter_of_the_characters_rounded_up() -> None:
    assert prompt_tokens(_user("abcde"), None) == 2
    assert prompt_tokens(_user(""), None) == 1
    call = respond(_user("what's it like in sf?"), [WEATHER])
    chars = len("get_weather") + len('{"city":"San Francisco"}')
    assert completion_tokens(call) == -(-chars // 4)


def test_truncate_cuts_text_and_tool_arguments_to_the_budget() -> None:
    text = {"role": "assistant", "content": "one two three four five"}
    assert truncate(text, 2) == {"role": "assistant", "content": "one two "}
    call = respond(_user("what's it like in sf?"), [WEATHER])
    cut = truncate(call, 4)
    assert cut["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"cit'}
