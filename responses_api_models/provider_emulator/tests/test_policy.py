"""How the emulated models answer (pure functions): the heuristic policy's tool, arguments and
words; scripts; wrong answers; token estimates; Responses input read as messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from responses_api_models.provider_emulator.policy import (
    ScriptError,
    completion_tokens,
    extract_place,
    fill_arguments,
    gets_wrong,
    load_policy,
    messages_from_responses,
    prompt_tokens,
    respond,
    script_of,
    scripted,
    task_key,
    truncate,
)


def _tool(name: str, description: str = "", properties: dict | None = None, required: list | None = None) -> dict:
    params: dict[str, Any] = {"type": "object", "properties": properties or {}}
    if required is not None:
        params["required"] = required
    return {"type": "function", "function": {"name": name, "description": description, "parameters": params}}


WEATHER = _tool("get_weather", "Get the current weather in a city", {"city": {"type": "string"}}, ["city"])
SEARCH = _tool("web_search", "Search the web for a query", {"query": {"type": "string"}}, ["query"])


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _only_call(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    assert message["role"] == "assistant"
    (call,) = message["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    return call["function"]["name"], json.loads(call["function"]["arguments"])


# --- the heuristic policy ---------------------------------------------------------------------


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
def test_a_weather_question_calls_get_weather_with_the_city(text: str, city: str) -> None:
    name, args = _only_call(respond(_user(text), [WEATHER]))
    assert name == "get_weather"
    assert args == {"city": city}


def test_extract_place_returns_none_without_a_place() -> None:
    assert extract_place("hello there") is None


def test_the_best_fitting_tool_wins_over_the_first_one() -> None:
    name, args = _only_call(respond(_user("search the web for pydantic docs"), [WEATHER, SEARCH]))
    assert name == "web_search"
    assert args["query"] == "search the web for pydantic docs"
    name, args = _only_call(respond(_user("what's it like in tokyo?"), [SEARCH, WEATHER]))
    assert (name, args) == ("get_weather", {"city": "Tokyo"})


def test_an_unmatched_request_falls_back_to_the_first_tool() -> None:
    other = _tool("lookup_order", "", {"order_id": {"type": "integer"}}, ["order_id"])
    name, args = _only_call(respond(_user("zzz"), [other, SEARCH]))
    assert (name, args) == ("lookup_order", {"order_id": 1})


def test_a_tool_output_becomes_a_short_answer_quoting_its_facts() -> None:
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


def test_a_sentence_in_a_tool_output_is_quoted_as_is() -> None:
    output = {"city": "Paris", "weather_description": "The weather in Paris is cold."}
    messages = [*_user("paris?"), {"role": "tool", "content": json.dumps(output)}]
    assert respond(messages, [WEATHER]) == {"role": "assistant", "content": "The weather in Paris is cold."}


def test_a_plain_text_tool_output_is_quoted() -> None:
    messages = [*_user("x"), {"role": "tool", "content": "42 results found"}]
    assert respond(messages, [SEARCH])["content"] == "42 results found."


def test_tool_choice_none_answers_without_tools() -> None:
    message = respond(_user("what's it like in sf?"), [WEATHER], tool_choice="none")
    assert "tool_calls" not in message
    assert "what's it like in sf?" in message["content"]


def test_a_forced_tool_choice_calls_that_tool() -> None:
    forced = {"type": "function", "function": {"name": "web_search"}}
    name, args = _only_call(respond(_user("what's it like in sf?"), [WEATHER, SEARCH], forced))
    assert name == "web_search"
    assert args == {"query": "what's it like in sf"}
    # the Responses API's flat form forces the same way
    name, _ = _only_call(respond(_user("sf?"), [WEATHER, SEARCH], {"type": "function", "name": "web_search"}))
    assert name == "web_search"


def test_without_tools_the_answer_echoes_the_question() -> None:
    message = respond(_user("What is 2 + 2?"), None)
    assert message == {"role": "assistant", "content": 'You asked: "What is 2 + 2?" This is a scripted answer.'}


def test_content_given_as_text_parts_is_read() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "weather in Berlin"}]}]
    assert _only_call(respond(messages, [WEATHER]))[1] == {"city": "Berlin"}


def test_the_same_conversation_gives_the_same_call_id_and_a_later_turn_another() -> None:
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


def test_a_model_that_gets_the_task_wrong_asks_about_another_city_always_the_same() -> None:
    _, right = _only_call(respond(_user("weather in Paris please"), [WEATHER]))
    _, wrong = _only_call(respond(_user("weather in Paris please"), [WEATHER], wrong=True))
    assert right == {"city": "Paris"}
    assert wrong["city"] not in ("Paris", "") and wrong["city"][0].isupper()
    assert _only_call(respond(_user("weather in Paris please"), [WEATHER], wrong=True))[1] == wrong
    # a place it does not know stays as it is: there is no other city to confuse it with
    assert _only_call(respond(_user("weather in Springfield"), [WEATHER], wrong=True))[1] == {"city": "Springfield"}


def test_load_policy_finds_the_heuristic_or_a_module_callable_and_names_what_it_cannot() -> None:
    assert load_policy("heuristic") is respond
    assert load_policy("responses_api_models.provider_emulator.policy:respond") is respond
    with pytest.raises(ValueError, match=r"unknown policy 'clever': use one of heuristic or 'module:callable'"):
        load_policy("clever")
    with pytest.raises(ValueError, match=r"has no callable 'nothing'"):
        load_policy("responses_api_models.provider_emulator.policy:nothing")


# --- scripts ----------------------------------------------------------------------------------

SCRIPT = [
    {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}, {"name": "get_time", "arguments": "{}"}]},
    {"text": "Rainy, 9 pm.", "wrong": {"text": "Sunny, noon."}},
]


def test_a_script_is_read_from_metadata_as_a_json_string_or_a_list() -> None:
    assert script_of({"metadata": {"emulator_script": json.dumps(SCRIPT)}}) == SCRIPT
    assert script_of({"metadata": {"emulator_script": SCRIPT}}) == SCRIPT
    assert script_of({"metadata": {"other": "x"}}) is None
    assert script_of({}) is None


@pytest.mark.parametrize("raw", ["[{", "[]", "{}", json.dumps({"text": "hi"}), [1], []])
def test_a_script_that_is_not_a_list_of_turns_is_a_script_error(raw: Any) -> None:
    with pytest.raises(ScriptError, match=r"^metadata\.emulator_script (is not valid JSON|must be a non-empty list)"):
        script_of({"metadata": {"emulator_script": raw}})


def test_the_nth_assistant_turn_plays_the_nth_script_entry() -> None:
    first = scripted(SCRIPT, _user("weather and time?"))
    assert first["content"] == ""
    assert [c["function"] for c in first["tool_calls"]] == [
        {"name": "get_weather", "arguments": '{"city":"Paris"}'},  # objects become JSON strings
        {"name": "get_time", "arguments": "{}"},  # strings pass as they are
    ]
    assert len({c["id"] for c in first["tool_calls"]}) == 2
    tool_outputs = [{"role": "tool", "tool_call_id": c["id"], "content": "ok"} for c in first["tool_calls"]]
    second = scripted(SCRIPT, [*_user("weather and time?"), first, *tool_outputs])
    assert second == {"role": "assistant", "content": "Rainy, 9 pm."}


def test_past_the_end_the_script_repeats_its_last_text_or_says_done() -> None:
    three_turns_in = [*_user("q"), *[{"role": "assistant", "content": "a"}] * 3]
    assert scripted(SCRIPT, three_turns_in)["content"] == "Rainy, 9 pm."
    assert scripted([{"tool_calls": [{"name": "f"}]}], three_turns_in) == {"role": "assistant", "content": "Done."}


def test_a_wrong_answer_plays_the_turn_s_wrong_entry_or_a_vague_text() -> None:
    one_turn_in = [*_user("q"), {"role": "assistant", "content": "a"}]
    assert scripted(SCRIPT, one_turn_in, wrong=True)["content"] == "Sunny, noon."
    assert scripted([{"text": "42"}], _user("q"), wrong=True)["content"] == "I am not sure of the answer."
    # a tool call without a `wrong` entry is made as scripted: the answer is where it goes wrong
    assert scripted(SCRIPT, _user("q"), wrong=True) == scripted(SCRIPT, _user("q"))


@pytest.mark.parametrize(
    ("turn", "said"),
    [
        ({"text": ["a"]}, "emulator_script turn 0: text must be a string, got list"),
        ({"tool_calls": "get_weather"}, "emulator_script turn 0: tool_calls must be a list"),
        ({"tool_calls": [{"arguments": {}}]}, "emulator_script turn 0: tool_calls[0] needs a name"),
        ({"tool_calls": ["get_weather"]}, "emulator_script turn 0: tool_calls[0] needs a name"),
    ],
)
def test_a_malformed_turn_is_a_script_error_naming_it(turn: dict[str, Any], said: str) -> None:
    with pytest.raises(ScriptError) as info:
        scripted([turn], _user("q"))
    assert str(info.value) == said


# --- accuracy ---------------------------------------------------------------------------------


def test_a_model_gets_a_share_of_one_minus_accuracy_of_the_tasks_wrong_always_the_same_ones() -> None:
    keys = [f"task {i}" for i in range(10_000)]
    wrong = [gets_wrong("acme/coin", 0.7, key) for key in keys]
    assert 0.28 <= sum(wrong) / len(keys) <= 0.32
    assert wrong == [gets_wrong("acme/coin", 0.7, key) for key in keys]
    assert wrong != [gets_wrong("acme/other", 0.7, key) for key in keys]
    assert not any(gets_wrong("acme/sure", 1.0, key) for key in keys[:1000])
    assert all(gets_wrong("acme/lost", 0.0, key) for key in keys[:1000])


def test_the_task_is_the_first_user_message() -> None:
    messages = [{"role": "system", "content": "be brief"}, *_user("weather in Oslo?"), *_user("and now?")]
    assert task_key(messages) == "weather in Oslo?"
    assert task_key([{"role": "system", "content": "x"}]) == ""


# --- tokens -----------------------------------------------------------------------------------


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


# --- the Responses API, read as messages ------------------------------------------------------


def test_responses_input_is_read_as_chat_messages() -> None:
    params = {
        "instructions": "be brief",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather in Oslo?"}]},
            {"type": "reasoning", "summary": []},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
            {"type": "function_call", "call_id": "c2", "name": "get_time"},
            {"type": "function_call_output", "call_id": "c1", "output": "cold"},
            {"role": "developer", "content": "answer in one word"},
        ],
    }
    assert messages_from_responses(params) == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "weather in Oslo?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [  # the text and the calls after it are one assistant turn
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}},
                {"id": "c2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
        {"role": "system", "content": "answer in one word"},
    ]
    assert messages_from_responses({"input": "hi"}) == _user("hi")


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"input": 7}, "input must be a string or a list of items, got int"),
        ({"input": ["hi"]}, "input[0] must be an object, got str"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0] has role 'tool'"),
        ({"input": [{"type": "image_generation_call"}]}, "input[0] has type 'image_generation_call'"),
        ({"input": []}, "the request has no input: send at least one message"),
    ],
)
def test_responses_input_that_cannot_be_read_is_named(params: dict[str, Any], said: str) -> None:
    with pytest.raises(ValueError) as info:
        messages_from_responses(params)
    assert str(info.value).startswith(said)
