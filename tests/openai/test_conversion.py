"""Responses API <-> Chat Completions conversion (nemo_gym_cli.conversion)."""

from __future__ import annotations

import pytest

from nemo_gym_cli.errors import InputError, UpstreamError
from nemo_gym_cli.openai.conversion import (
    chat_to_responses_request,
    chat_to_responses_response,
    complete_response,
    responses_to_chat_request,
    responses_to_chat_response,
)

#: The fields of openai 2.6.1's Response model: what NeMo Gym writes in every row's response.
RESPONSE_FIELDS = {
    "id", "created_at", "error", "incomplete_details", "instructions", "metadata", "model", "object", "output",
    "parallel_tool_calls", "temperature", "tool_choice", "tools", "top_p", "background", "conversation",
    "max_output_tokens", "max_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "reasoning",
    "safety_identifier", "service_tier", "status", "text", "top_logprobs", "truncation", "usage", "user",
}  # fmt: skip

EMPTY_SCHEMA = {"type": "object", "properties": {}}
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def _completion(message: dict, finish_reason: str | None = "stop", **extra) -> dict:
    return {
        "id": "gen-123",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "meta-llama/llama-3.1-8b-instruct",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        **extra,
    }


def _fc(call_id: str, city: str) -> dict:
    """A Responses function_call item asking for the weather of `city`."""
    arguments = f'{{"city":"{city}"}}'
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": arguments,
    }


def _tool_call(call_id: str, name: str, arguments: str) -> dict:
    """A chat tool call."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _history() -> list[dict]:
    """A multi-turn history: two tool calls in one turn, their outputs, a final answer."""
    return [
        {"type": "message", "role": "user", "content": "Weather in Paris and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "hm"}]},
        {"type": "message", "role": "assistant", "content": "Let me check both."},
        _fc("c1", "Paris"),
        _fc("c2", "Rome"),
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": "24C"},
        {"type": "message", "role": "assistant", "content": "Paris 18C, Rome 24C."},
        {"type": "message", "role": "user", "content": "Thanks"},
    ]


# --- Responses request -> chat request -----------------------------------------------------


def test_a_string_input_becomes_one_user_message():
    body = responses_to_chat_request({"model": "m", "input": "hello"})
    assert body == {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


def test_the_model_argument_overrides_the_model_in_params():
    body = responses_to_chat_request({"model": "policy", "input": "hi"}, model="openrouter:x/y")
    assert body["model"] == "openrouter:x/y"


def test_instructions_become_a_leading_system_message():
    body = responses_to_chat_request({"instructions": "Be brief.", "input": "hi"})
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_developer_messages_become_system_messages():
    body = responses_to_chat_request({"input": [{"role": "developer", "content": "rules"}]})
    assert body["messages"] == [{"role": "system", "content": "rules"}]


def test_text_parts_are_joined_into_one_string():
    content = [{"type": "input_text", "text": "one"}, {"type": "text", "text": "two"}]
    body = responses_to_chat_request({"input": [{"role": "user", "content": content}]})
    assert body["messages"] == [{"role": "user", "content": "one\ntwo"}]


def test_image_parts_are_kept_as_image_url_parts_in_a_content_list():
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": "https://x/cat.png", "detail": "low"},
    ]
    body = responses_to_chat_request({"input": [{"type": "message", "role": "user", "content": content}]})
    assert body["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}},
    ]


def test_two_tool_calls_of_one_turn_merge_with_the_text_before_them_into_one_assistant_message():
    body = responses_to_chat_request({"instructions": "sys", "input": _history()})
    assert body["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Let me check both.",
            "tool_calls": [
                _tool_call("c1", "get_weather", '{"city":"Paris"}'),
                _tool_call("c2", "get_weather", '{"city":"Rome"}'),
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "18C"},
        {"role": "tool", "tool_call_id": "c2", "content": "24C"},
        {"role": "assistant", "content": "Paris 18C, Rome 24C."},
        {"role": "user", "content": "Thanks"},
    ]


def test_function_calls_without_text_make_an_assistant_message_with_null_content():
    items = [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "reasoning", "summary": []},
        {"type": "function_call", "call_id": "b", "name": "g"},
    ]
    messages = responses_to_chat_request({"input": items})["messages"]
    assert len(messages) == 2
    assert messages[1]["role"] == "assistant"
    assert messages[1]["content"] is None
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["a", "b"]
    assert messages[1]["tool_calls"][1]["function"]["arguments"] == "{}"


def test_an_empty_assistant_text_before_tool_calls_becomes_null_content():
    items = [
        {"role": "assistant", "content": [{"type": "output_text", "text": ""}]},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
    ]
    messages = responses_to_chat_request({"input": items})["messages"]
    assert len(messages) == 1
    assert messages[0]["content"] is None
    assert messages[0]["tool_calls"][0]["id"] == "a"


def test_calls_after_a_tool_output_start_a_new_assistant_message():
    items = [
        {"role": "user", "content": "go"},
        {"type": "function_call", "call_id": "a", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "1"},
        {"type": "function_call", "call_id": "b", "name": "f", "arguments": "{}"},
    ]
    messages = responses_to_chat_request({"input": items})["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert [c["id"] for c in messages[3]["tool_calls"]] == ["b"]


def test_a_non_string_tool_output_is_json_encoded():
    items = [{"type": "function_call_output", "call_id": "c", "output": {"temp": 18, "ok": True}}]
    messages = responses_to_chat_request({"input": items})["messages"]
    assert messages == [{"role": "tool", "tool_call_id": "c", "content": '{"temp":18,"ok":true}'}]


def test_reasoning_items_are_dropped_from_the_chat_messages():
    items = [
        {"role": "user", "content": "q"},
        {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "secret"}]},
        {"role": "assistant", "content": "a"},
    ]
    messages = responses_to_chat_request({"input": items})["messages"]
    assert messages == [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]


def test_function_tools_are_nested_and_missing_parameters_become_an_empty_object_schema():
    bare = {"type": "function", "name": "ping"}
    body = responses_to_chat_request({"input": "hi", "tools": [WEATHER_TOOL, bare]})
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city.",
                "parameters": WEATHER_TOOL["parameters"],
                "strict": True,
            },
        },
        {"type": "function", "function": {"name": "ping", "parameters": EMPTY_SCHEMA}},
    ]
    # the schema is shared with the request, not copied (hot path)
    assert body["tools"][0]["function"]["parameters"] is WEATHER_TOOL["parameters"]


def test_a_non_function_tool_raises_an_input_error_naming_its_type():
    with pytest.raises(InputError, match=r"tools\[1\] has type 'web_search'.*only function tools"):
        responses_to_chat_request({"input": "hi", "tools": [WEATHER_TOOL, {"type": "web_search"}]})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_is_passed_or_nested(choice, expected):
    assert responses_to_chat_request({"input": "hi", "tool_choice": choice})["tool_choice"] == expected


def test_an_unsupported_tool_choice_raises_an_input_error():
    with pytest.raises(InputError, match="tool_choice"):
        responses_to_chat_request({"input": "hi", "tool_choice": {"type": "web_search"}})


def test_sampling_and_unknown_fields_pass_through_and_max_output_tokens_becomes_max_tokens():
    params = {
        "input": "hi",
        "temperature": 0.3,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "user": "u1",
        "metadata": {"run": "7"},
        "seed": 42,
        "stop": ["END"],
        "reasoning": {"effort": "low"},
        "provider": {"order": ["DeepInfra"], "allow_fallbacks": False},
        "models": ["a/b", "c/d"],
        "top_k": 40,
        "service_tier": "auto",
        "max_output_tokens": 256,
    }
    body = responses_to_chat_request(params)
    expected = {k: v for k, v in params.items() if k not in ("input", "max_output_tokens")}
    assert {k: v for k, v in body.items() if k not in ("messages", "max_tokens")} == expected
    assert body["max_tokens"] == 256
    assert "max_output_tokens" not in body


def test_responses_only_fields_and_none_values_are_dropped():
    params = {
        "input": "hi",
        "store": True,
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "background": False,
        "stream": True,
        "temperature": None,
        "previous_response_id": None,
    }
    assert responses_to_chat_request(params) == {"messages": [{"role": "user", "content": "hi"}]}


def test_a_json_schema_text_format_becomes_a_json_schema_response_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    fmt = {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}
    body = responses_to_chat_request({"input": "hi", "text": {"format": fmt}})
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": schema, "strict": True},
    }
    assert "text" not in body


def test_a_json_object_text_format_becomes_a_json_object_response_format_and_text_none():
    body = responses_to_chat_request({"input": "hi", "text": {"format": {"type": "json_object"}}})
    assert body["response_format"] == {"type": "json_object"}
    plain = responses_to_chat_request({"input": "hi", "text": {"format": {"type": "text"}}})
    assert "response_format" not in plain


def test_previous_response_id_raises_an_input_error_asking_for_the_full_history():
    with pytest.raises(InputError, match="stateless: send the full history in input"):
        responses_to_chat_request({"input": "hi", "previous_response_id": "resp_1"})


def test_an_unknown_item_type_raises_an_input_error_naming_its_index_and_type():
    items = [{"role": "user", "content": "hi"}, {"type": "web_search_call", "id": "ws"}]
    with pytest.raises(InputError, match=r"input\[1\] has type 'web_search_call'"):
        responses_to_chat_request({"input": items})


def test_an_unknown_role_and_an_empty_input_raise_input_errors():
    with pytest.raises(InputError, match="role 'tool'"):
        responses_to_chat_request({"input": [{"role": "tool", "content": "x"}]})
    with pytest.raises(InputError, match="no input"):
        responses_to_chat_request({"input": []})


# --- chat completion -> Responses object ---------------------------------------------------


def test_a_text_completion_becomes_a_message_item_with_the_request_echoed():
    request = {
        "model": "policy",
        "instructions": "Be brief.",
        "tools": [WEATHER_TOOL],
        "temperature": 0.5,
        "top_p": 0.8,
        "max_output_tokens": 100,
        "metadata": {"k": "v"},
    }
    completion = _completion({"role": "assistant", "content": "Hi!"}, provider="DeepInfra")
    response = chat_to_responses_response(completion, request=request)
    assert response["output"] == [
        {
            "type": "message",
            "id": "msg_gen-123",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "Hi!", "annotations": []}],
        }
    ]
    assert response["id"] == "gen-123"
    assert response["object"] == "response"
    assert response["created_at"] == 1700000000
    assert response["model"] == "meta-llama/llama-3.1-8b-instruct"  # the one that served
    assert response["status"] == "completed"
    assert response["incomplete_details"] is None
    assert response["error"] is None
    assert response["provider"] == "DeepInfra"
    assert response["instructions"] == "Be brief."
    assert response["tools"] == [WEATHER_TOOL]
    assert response["tool_choice"] == "auto"
    assert response["parallel_tool_calls"] is True
    assert (response["temperature"], response["top_p"]) == (0.5, 0.8)
    assert response["max_output_tokens"] == 100
    assert response["metadata"] == {"k": "v"}


def test_tool_calls_become_function_call_items_with_ids_derived_from_the_completion_id():
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
            {"id": "call_b", "type": "function", "function": {"name": "g"}},
        ],
    }
    response = chat_to_responses_response(_completion(message, "tool_calls"))
    assert response["output"] == [
        {
            "type": "function_call",
            "id": "fc_gen-123_0",
            "call_id": "call_a",
            "name": "f",
            "arguments": '{"x":1}',
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_gen-123_1",
            "call_id": "call_b",
            "name": "g",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    assert response["status"] == "completed"


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
def test_a_reasoning_field_becomes_a_leading_reasoning_item(field):
    message = {"role": "assistant", "content": "42", field: "6 times 7"}
    output = chat_to_responses_response(_completion(message))["output"]
    assert output[0] == {
        "type": "reasoning",
        "id": "rs_gen-123",
        "summary": [{"type": "summary_text", "text": "6 times 7"}],
    }
    assert output[1]["content"][0]["text"] == "42"
    assert len(output) == 2


def test_reasoning_sent_only_as_openrouter_s_reasoning_details_becomes_a_reasoning_item():
    details = [
        {"type": "reasoning.summary", "summary": "6 times 7", "format": "openai-responses-v1", "index": 0},
        {"type": "reasoning.encrypted", "data": "gAAAA...", "format": "openai-responses-v1", "index": 1},
        {"type": "reasoning.text", "text": " is 42", "format": "unknown", "index": 2},
    ]
    message = {"role": "assistant", "content": "42", "reasoning": None, "reasoning_details": details}
    output = chat_to_responses_response(_completion(message))["output"]
    assert output[0]["summary"] == [{"type": "summary_text", "text": "6 times 7 is 42"}]
    both = {**message, "reasoning": "the field wins", "reasoning_details": details}
    assert chat_to_responses_response(_completion(both))["output"][0]["summary"][0]["text"] == "the field wins"


def test_a_leading_think_block_is_stripped_from_the_text_into_a_reasoning_item():
    message = {"role": "assistant", "content": "\n<think>\nadd them\n</think>\n\nThe answer is 4."}
    output = chat_to_responses_response(_completion(message))["output"]
    assert output[0]["summary"][0]["text"] == "add them"
    assert output[1]["content"][0]["text"] == "The answer is 4."


def test_a_bare_closing_think_tag_splits_reasoning_from_the_answer():
    message = {"role": "assistant", "content": "add them</think>The answer is 4."}
    output = chat_to_responses_response(_completion(message))["output"]
    assert output[0]["summary"][0]["text"] == "add them"
    assert output[1]["content"][0]["text"] == "The answer is 4."


def test_an_unclosed_think_block_is_all_reasoning_and_no_message():
    message = {"role": "assistant", "content": "<think>still thinking"}
    response = chat_to_responses_response(_completion(message, "length"))
    assert [item["type"] for item in response["output"]] == ["reasoning"]
    assert response["output"][0]["summary"][0]["text"] == "still thinking"


def test_a_think_tag_inside_the_answer_is_left_alone():
    text = "Use <think> tags like <think>this</think>."
    message = {"role": "assistant", "content": text, "reasoning": "r"}
    output = chat_to_responses_response(_completion(message))["output"]
    assert output[1]["content"][0]["text"] == text


@pytest.mark.parametrize("content", [None, ""])
def test_an_empty_content_makes_no_message_item(content):
    message = {"role": "assistant", "content": content}
    assert chat_to_responses_response(_completion(message))["output"] == []


@pytest.mark.parametrize(
    ("finish_reason", "status", "details"),
    [
        ("stop", "completed", None),
        ("tool_calls", "completed", None),
        ("function_call", "completed", None),
        (None, "completed", None),
        ("length", "incomplete", {"reason": "max_output_tokens"}),
        ("content_filter", "incomplete", {"reason": "content_filter"}),
    ],
)
def test_the_finish_reason_maps_to_status_and_incomplete_details(finish_reason, status, details):
    completion = _completion({"role": "assistant", "content": "x"}, finish_reason)
    response = chat_to_responses_response(completion)
    assert (response["status"], response["incomplete_details"]) == (status, details)


def test_an_error_finish_reason_raises_a_retryable_server_error():
    completion = _completion({"role": "assistant", "content": ""}, "error")
    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response(completion)
    assert (caught.value.kind, caught.value.retryable) == ("server", True)


def test_usage_maps_token_counts_and_keeps_cost_cached_and_reasoning_tokens():
    usage = {
        "prompt_tokens": 100,
        "completion_tokens": 40,
        "total_tokens": 140,
        "prompt_tokens_details": {"cached_tokens": 64},
        "completion_tokens_details": {"reasoning_tokens": 25},
        "cost": "0.00012",
        "cost_details": {"upstream_inference_cost": 0.0001},
        "is_byok": False,
    }
    completion = _completion({"role": "assistant", "content": "x"}, usage=usage)
    assert chat_to_responses_response(completion)["usage"] == {
        "input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
        "output_tokens": 40,
        "output_tokens_details": {"reasoning_tokens": 25},
        "total_tokens": 140,
        "cost": 0.00012,
        "cost_details": {"upstream_inference_cost": 0.0001},
        "is_byok": False,
    }


def test_missing_usage_is_all_zeros_and_null_details_count_zero():
    bare = chat_to_responses_response(_completion({"role": "assistant", "content": "x"}))
    assert bare["usage"] == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 0,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 0,
    }
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "prompt_tokens_details": None}
    completion = _completion({"role": "assistant", "content": "x"}, usage=usage)
    converted = chat_to_responses_response(completion)["usage"]
    assert (converted["total_tokens"], converted["input_tokens_details"]["cached_tokens"]) == (5, 0)


def test_a_completion_without_id_or_created_gets_a_resp_id_and_the_current_time():
    completion = {"choices": [{"message": {"role": "assistant", "content": "x"}}]}
    response = chat_to_responses_response(completion)
    assert response["id"].startswith("resp_")
    assert response["output"][0]["id"] == f"msg_{response['id']}"
    assert response["created_at"] > 1700000000


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        ({"code": 429, "message": "Rate limit exceeded"}, 429, "rate_limit"),
        ({"code": 500, "message": "Internal error"}, 500, "server"),
        ({"code": 502, "message": "Provider returned error"}, 502, "server"),
        ({"code": 408, "message": "timed out"}, 408, "timeout"),
        ({"code": "503", "message": "no provider"}, 503, "server"),
    ],
)
def test_a_200_with_an_error_body_raises_a_retryable_upstream_error(error, status, kind):
    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response({"error": error})
    assert caught.value.retryable is True
    assert (caught.value.status, caught.value.kind) == (status, kind)
    assert error["message"] in str(caught.value)


def test_a_402_error_body_raises_a_non_retryable_credits_error():
    body = {"error": {"code": 402, "message": "Insufficient credits"}}
    with pytest.raises(UpstreamError, match="Insufficient credits") as caught:
        chat_to_responses_response(body)
    assert (caught.value.status, caught.value.kind, caught.value.retryable) == (
        402,
        "credits",
        False,
    )


@pytest.mark.parametrize(
    ("code", "kind"),
    [(400, "bad_request"), (401, "auth"), (403, "forbidden"), (404, "model_not_found"), (413, "context_length")],
)
def test_client_error_codes_are_not_retryable_and_get_their_kind(code, kind):
    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response({"error": {"code": code, "message": "no"}})
    assert (caught.value.kind, caught.value.retryable) == (kind, False)


def test_a_context_length_error_type_refines_the_kind_of_a_400():
    error = {
        "code": 400,
        "message": "too long",
        "metadata": {"error_type": "context_length_exceeded"},
    }
    with pytest.raises(UpstreamError, match="shorten the input") as caught:
        chat_to_responses_response({"error": error})
    assert (caught.value.status, caught.value.kind, caught.value.retryable) == (
        400,
        "context_length",
        False,
    )


@pytest.mark.parametrize(
    ("error", "kind", "retryable"),
    [
        ({"metadata": {"error_type": "provider_overloaded"}}, "server", True),
        ({"metadata": {"error_type": "rate_limit_exceeded"}}, "rate_limit", True),
        ({"availability": {"retryable": True}}, "server", True),
        ({"availability": {"retryable": False}}, "server", False),
        ({"metadata": {"error_type": "context_length_exceeded"}}, "context_length", False),
    ],
)
def test_an_error_body_without_a_code_uses_the_error_type_and_availability_hints(error, kind, retryable):
    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response({"error": {"message": "no", **error}})
    assert caught.value.status == (400 if kind == "context_length" else None)
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)


@pytest.mark.parametrize(("code", "retryable"), [(403, False), (409, True), (413, False), (425, True)])
def test_conversion_and_the_upstream_client_classify_every_status_alike(code, retryable):
    from nemo_gym_cli.openai.errors import classify_error

    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response({"error": {"code": code, "message": "no"}})
    direct = classify_error(code, {"code": code, "message": "no"})
    assert (caught.value.kind, caught.value.retryable) == (direct.kind, direct.retryable)
    assert caught.value.retryable is retryable


@pytest.mark.parametrize("body", [None, "<html>502 Bad Gateway</html>", {"choices": []}, {"id": "x"}])
def test_a_body_that_is_not_a_completion_raises_a_retryable_bad_response(body):
    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response(body)
    assert (caught.value.kind, caught.value.retryable) == ("bad_response", True)


def test_a_bad_response_message_quotes_at_most_200_characters_of_the_body():
    with pytest.raises(UpstreamError) as caught:
        chat_to_responses_response("x" * 5000)
    assert "xxxx" in str(caught.value)
    assert str(caught.value).count("x") <= 200


# --- chat request -> Responses request -----------------------------------------------------


def test_a_leading_system_message_becomes_instructions_and_later_ones_stay_items():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "Now formal."},
        ],
    }
    params = chat_to_responses_request(body)
    assert params["instructions"] == "Be brief."
    assert params["input"] == [
        {"type": "message", "role": "user", "content": "hi"},
        {"type": "message", "role": "system", "content": "Now formal."},
    ]


def test_assistant_tool_calls_and_tool_messages_become_function_call_items():
    messages = responses_to_chat_request({"input": _history()})["messages"]
    items = chat_to_responses_request({"messages": messages})["input"]
    assert items[1:5] == [
        {"type": "message", "role": "assistant", "content": "Let me check both."},
        _fc("c1", "Paris"),
        _fc("c2", "Rome"),
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
    ]


def test_chat_only_request_fields_become_their_responses_equivalents():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "max_completion_tokens": 60,
        "tools": [{"type": "function", "function": {"name": "ping"}}],
        "tool_choice": {"type": "function", "function": {"name": "ping"}},
        "response_format": {"type": "json_object"},
        "reasoning_effort": "high",
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.2,
        "provider": {"sort": "price"},
    }
    params = chat_to_responses_request(body)
    assert params == {
        "model": "m",
        "input": [{"type": "message", "role": "user", "content": "hi"}],
        "max_output_tokens": 60,
        "tools": [{"type": "function", "name": "ping", "parameters": EMPTY_SCHEMA}],
        "tool_choice": {"type": "function", "name": "ping"},
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "high"},
        "temperature": 0.2,
        "provider": {"sort": "price"},
        "store": False,
    }


def test_chat_image_parts_become_input_image_parts():
    content = [
        {"type": "text", "text": "What?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}},
    ]
    params = chat_to_responses_request({"messages": [{"role": "user", "content": content}]})
    assert params["input"][0]["content"] == [
        {"type": "input_text", "text": "What?"},
        {"type": "input_image", "image_url": "data:image/png;base64,AAA", "detail": "auto"},
    ]


def test_a_chat_request_asking_for_several_choices_raises_an_input_error():
    with pytest.raises(InputError, match="n=2"):
        chat_to_responses_request({"messages": [{"role": "user", "content": "hi"}], "n": 2})


# --- Responses object -> chat completion ---------------------------------------------------


def _response(output: list[dict], **extra) -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000.5,
        "model": "m",
        "status": "completed",
        "output": output,
        **extra,
    }


def test_a_response_becomes_one_assistant_message_with_text_tool_calls_and_reasoning():
    output = [
        {"type": "reasoning", "id": "rs", "summary": [{"type": "summary_text", "text": "plan"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Checking."}],
        },
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
    ]
    completion = responses_to_chat_response(_response(output, provider="Together"))
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "f", "arguments": '{"a":1}'},
                    },
                    {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                ],
                "reasoning": "plan",
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ]
    assert (completion["id"], completion["created"], completion["model"]) == (
        "resp_1",
        1700000000,
        "m",
    )
    assert completion["object"] == "chat.completion"
    assert completion["provider"] == "Together"


def test_vllm_reasoning_text_in_content_becomes_the_message_reasoning():
    output = [{"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]}]
    message = responses_to_chat_response(_response(output))["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "", "reasoning": "hmm"}


@pytest.mark.parametrize(
    ("details", "finish_reason"),
    [
        (None, "stop"),
        ({"reason": "max_output_tokens"}, "length"),
        ({"reason": "content_filter"}, "content_filter"),
    ],
)
def test_incomplete_details_map_to_the_finish_reason(details, finish_reason):
    output = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]}]
    response = _response(output, incomplete_details=details)
    assert responses_to_chat_response(response)["choices"][0]["finish_reason"] == finish_reason


def test_responses_usage_maps_back_to_chat_usage_with_cost():
    usage = {
        "input_tokens": 10,
        "output_tokens": 5,
        "total_tokens": 15,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens_details": {"reasoning_tokens": 2},
        "cost": 0.5,
    }
    completion = responses_to_chat_response(_response([], usage=usage))
    assert completion["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 2},
        "cost": 0.5,
        "cost_details": {"upstream_inference_cost": None},
    }


def test_a_failed_response_or_an_error_body_raises_an_upstream_error():
    failed = _response([], status="failed", error={"code": "server_error", "message": "boom"})
    with pytest.raises(UpstreamError, match="boom") as caught:
        responses_to_chat_response(failed)
    assert (caught.value.kind, caught.value.retryable) == ("server", True)
    with pytest.raises(UpstreamError) as caught:
        responses_to_chat_response({"error": {"code": 401, "message": "bad key"}})
    assert (caught.value.status, caught.value.kind, caught.value.retryable) == (401, "auth", False)
    with pytest.raises(UpstreamError) as caught:
        responses_to_chat_response({"id": "resp_1"})
    assert caught.value.kind == "bad_response"


# --- round trips ---------------------------------------------------------------------------


def test_a_request_round_trip_through_chat_gives_back_equivalent_items():
    params = {
        "model": "m",
        "instructions": "sys",
        "input": [item for item in _history() if item["type"] != "reasoning"],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "max_output_tokens": 128,
        "temperature": 0.7,
        "text": {
            "format": {
                "type": "json_schema",
                "name": "a",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        "store": False,
    }
    assert chat_to_responses_request(responses_to_chat_request(params)) == params


def test_a_completion_round_trip_through_responses_keeps_message_finish_reason_and_usage():
    message = {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        "reasoning": "plan",
    }
    usage = {
        "prompt_tokens": 7,
        "completion_tokens": 3,
        "total_tokens": 10,
        "prompt_tokens_details": {"cached_tokens": 1, "cache_write_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 2},
        "cost": 0.25,
        "cost_details": {"upstream_inference_cost": 0.2},
        "is_byok": True,
    }
    completion = _completion(message, "tool_calls", usage=usage)
    back = responses_to_chat_response(chat_to_responses_response(completion))
    assert back["choices"][0]["message"] == message
    assert back["choices"][0]["finish_reason"] == "tool_calls"
    assert back["usage"] == usage
    assert (back["id"], back["model"], back["created"]) == (
        completion["id"],
        completion["model"],
        completion["created"],
    )


# --- every field NeMo Gym writes, logprobs both ways --------------------------------------------


def test_a_converted_response_has_every_field_of_openai_response_and_a_float_created_at():
    request = {"input": "hi", "top_logprobs": 2, "user": "u1", "prompt_cache_key": "k", "service_tier": "flex"}
    completion = _completion({"role": "assistant", "content": "x"}, provider="P", service_tier="standard")
    response = chat_to_responses_response(completion, request=request)
    assert set(response) == RESPONSE_FIELDS | {"provider"}  # the 31 keys of NeMo Gym's rows
    assert isinstance(response["created_at"], float) and response["created_at"] == 1700000000.0
    assert response["background"] is False and response["truncation"] == "disabled"
    assert response["text"] == {"format": {"type": "text"}}
    assert (response["top_logprobs"], response["user"], response["prompt_cache_key"]) == (2, "u1", "k")
    assert response["service_tier"] == "flex"  # the provider's "standard" is not a value OpenAI's model takes


def test_complete_response_fills_what_a_responses_upstream_left_out_and_keeps_the_rest():
    partial = {"id": "r", "created_at": 5, "model": "m", "output": [], "provider": "P", "temperature": 0.3}
    partial["usage"] = {"input_tokens": 3, "output_tokens": 2, "cost": 0.1}
    done = complete_response(partial, {"temperature": 0.9, "metadata": {"a": "b"}, "truncation": "auto"})
    assert set(done) == RESPONSE_FIELDS | {"provider"}
    assert (done["created_at"], done["temperature"]) == (5.0, 0.3)
    assert (done["metadata"], done["truncation"]) == ({"a": "b"}, "auto")
    assert done["usage"] == {
        "input_tokens": 3,
        "output_tokens": 2,
        "total_tokens": 5,
        "cost": 0.1,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert "status" not in partial  # the input is not changed


def test_top_logprobs_ask_the_chat_upstream_for_logprobs_and_so_does_the_include_entry():
    with_top = responses_to_chat_request({"input": "hi", "top_logprobs": 3})
    assert (with_top["logprobs"], with_top["top_logprobs"]) == (True, 3)
    included = responses_to_chat_request({"input": "hi", "include": ["message.output_text.logprobs"]})
    assert included["logprobs"] is True and "top_logprobs" not in included and "include" not in included
    assert "logprobs" not in responses_to_chat_request({"input": "hi"})


def test_chat_logprobs_come_back_on_the_output_text_with_bytes_and_back_again():
    logprobs = {
        "content": [
            {"token": "Hé", "logprob": -0.5, "bytes": None, "top_logprobs": [{"token": "Hi", "logprob": -1.0}]},
            {"token": "!", "logprob": -0.1, "bytes": [33], "top_logprobs": []},
        ]
    }
    completion = _completion({"role": "assistant", "content": "Hé!"})
    completion["choices"][0]["logprobs"] = logprobs
    part = chat_to_responses_response(completion)["output"][0]["content"][0]
    assert part["logprobs"] == [
        {"token": "Hé", "bytes": [72, 195, 169], "logprob": -0.5,
         "top_logprobs": [{"token": "Hi", "bytes": [72, 105], "logprob": -1.0}]},
        {"token": "!", "bytes": [33], "logprob": -0.1, "top_logprobs": []},
    ]  # fmt: skip
    back = responses_to_chat_response(chat_to_responses_response(completion))
    assert back["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["token"] == "Hi"
    assert [e["token"] for e in back["choices"][0]["logprobs"]["content"]] == ["Hé", "!"]
    plain = chat_to_responses_response(_completion({"role": "assistant", "content": "x"}))
    assert "logprobs" not in plain["output"][0]["content"][0]
    assert responses_to_chat_response(plain)["choices"][0]["logprobs"] is None


def test_chat_logprobs_true_asks_a_responses_upstream_with_the_include_entry():
    body = {"messages": [{"role": "user", "content": "x"}], "logprobs": True, "top_logprobs": 2}
    params = chat_to_responses_request(body)
    assert params["include"] == ["message.output_text.logprobs"] and params["top_logprobs"] == 2
    assert "logprobs" not in params
