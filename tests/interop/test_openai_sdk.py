"""The official OpenAI SDK against our model server and our provider emulator.

Targets: the reference upstream (proves the probe), our emulator, our model server in front
of the emulator (``policy_model`` of the offline ``ng_run``), and our model server with
``upstream_stream: true`` in front of the reference upstream, speaking Chat Completions
(``streamed_chat_upstream``) or the Responses API (``streamed_responses_upstream``) to it: so
the assembling of OpenAI-exact streams is checked too. Rendered streams of what the probe
cannot provoke (reasoning, logprobs, refusals, an incomplete answer) are validated on their
own, event by event, with both SDKs' models.

``sdk_probe.py`` makes each call with the SDK (chat, Responses, both streamed, models.list),
then validates the raw bodies and every SSE event with the SDK's own models and compares the
event sequence with the documented one. It runs under two SDKs: the newest on PyPI
(``.interop/openai-sdk``) and 2.6.1, the version NeMo Gym 0.2.1 pins and builds its models on.

The reference upstream (``reference_upstream.py``) must pass every check: that proves the
probe, so a failure against our servers is a finding. Known failures today are marked
``xfail`` below with what the probe reported (docs/nemo_gym.md, "OpenAI SDK"); remove an
entry when its fix lands (an XPASS says it has).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from interop_harness import HERE, NG_VENV, SDK_VENV, OurServer, Upstream

from support.cli import NgRun

SDKS = {"latest": SDK_VENV, "nemo-gym-pin": NG_VENV}
TARGETS = ("reference", "emulator", "model_server", "streamed_chat_upstream", "streamed_responses_upstream")
CHECKS = (
    "models_list",
    "chat_tool_call",
    "chat_text",
    "chat_stream_tool_call",
    "chat_stream_text",
    "responses_tool_call",
    "responses_text",
    "responses_stream_tool_call",
    "responses_stream_text",
)
BOTH = tuple(SDKS)

#: (target, check) -> (SDKs it fails under, why). Empty: every check passes under both SDKs
#: (docs/nemo_gym.md, "OpenAI SDK"); a regression is a plain failure.
KNOWN_FAILURES: dict[tuple[str, str], tuple[tuple[str, ...], str]] = {}


def _cases() -> list[Any]:
    cases = []
    for sdk in SDKS:
        for target in TARGETS:
            for check in CHECKS:
                sdks, reason = KNOWN_FAILURES.get((target, check), ((), ""))
                marks = [pytest.mark.xfail(strict=False, reason=reason)] if sdk in sdks else []
                cases.append(pytest.param(sdk, target, check, marks=marks, id=f"{sdk}-{target}-{check}"))
    return cases


@pytest.fixture(scope="module")
def streamed_upstreams(reference: Upstream, interop_tmp: Path) -> Iterator[dict[str, OurServer]]:
    """Our openai_model with upstream_stream: true in front of the reference upstream."""
    servers: dict[str, OurServer] = {}
    try:
        for api in ("chat_completions", "responses"):
            fields = {
                "openai_base_url": reference.base_url,
                "openai_api_key": "sk-interop-dummy",
                "openai_model": reference.model,
                "upstream_api": api,
                "upstream_stream": True,
            }
            folder = "responses_api_models/openai_model"
            servers[api] = OurServer(f"streamed_{api}", folder, fields, {}, interop_tmp)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="module")
def base_urls(
    reference: Upstream, emulator: Upstream, ours: NgRun, streamed_upstreams: dict[str, OurServer]
) -> dict[str, tuple[str, str]]:
    """target -> (base URL the SDK gets, model name)."""
    policy = next(r["url"] for r in ours.wait_ready() if r["name"] == "policy_model")
    return {
        "reference": (reference.base_url, reference.model),
        "emulator": (emulator.base_url, emulator.model),
        "model_server": (policy + "/v1", emulator.model),
        "streamed_chat_upstream": (streamed_upstreams["chat_completions"].url + "/v1", reference.model),
        "streamed_responses_upstream": (streamed_upstreams["responses"].url + "/v1", reference.model),
    }


@pytest.fixture(scope="module")
def reports(base_urls: dict[str, tuple[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(sdk, target) -> the probe's report, run once per pair on first use."""
    cache: dict[tuple[str, str], dict[str, Any]] = {}
    folder = tmp_path_factory.mktemp("sdk_reports")

    def get(sdk: str, target: str) -> dict[str, Any]:
        if (sdk, target) not in cache:
            url, model = base_urls[target]
            proc = subprocess.run(
                [str(SDKS[sdk] / "bin/python"), str(HERE / "sdk_probe.py"), url, model],
                capture_output=True,
                text=True,
                timeout=180,
                stdin=subprocess.DEVNULL,
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            cache[sdk, target] = json.loads(proc.stdout)
            Path(folder, f"{sdk}-{target}.json").write_text(proc.stdout)
        return cache[sdk, target]

    return get


@pytest.mark.parametrize(("sdk", "target", "check"), _cases())
def test_openai_sdk_accepts_every_body_and_event(reports: Any, sdk: str, target: str, check: str) -> None:
    result = reports(sdk, target)["checks"][check]
    assert result["ok"], "\n".join(result["errors"][:20]) + (
        f"\nevents: {result['events']}" if result["events"] else ""
    )


#: Validate rendered streams with the SDK's models: argv[1] a JSON file {"responses": [[event, ...]],
#: "chat": [[chunk, ...]]}; prints the error lists.
VALIDATE_STREAMS = r"""
import json, sys, typing
from pydantic import ValidationError
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
union = ResponseStreamEvent
while typing.get_origin(union) is typing.Annotated:
    union = typing.get_args(union)[0]
models = {typing.get_args(c.model_fields["type"].annotation)[0]: c for c in typing.get_args(union)}
streams = json.load(open(sys.argv[1]))
errors = []
def check(model, value, where):
    try:
        model.model_validate(value)
    except ValidationError as exc:
        errors.extend(f"{where}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
for s, events in enumerate(streams["responses"]):
    for i, event in enumerate(events):
        model = models.get(event["type"])
        if model is None:
            errors.append(f"responses[{s}][{i}]: {event['type']} is not an event type")
        else:
            check(model, event, f"responses[{s}][{i}] {event['type']}")
for s, chunks in enumerate(streams["chat"]):
    for i, chunk in enumerate(chunks):
        check(ChatCompletionChunk, chunk, f"chat[{s}][{i}]")
print(json.dumps(errors))
"""


def _rendered_streams() -> dict[str, Any]:
    """Streams of answers with reasoning, logprobs, a refusal, and an incomplete one."""
    from nemo_gym_cli.openai.conversion import chat_to_responses_response
    from nemo_gym_cli.openai.streams import chat_chunks, response_events

    logprobs = {
        "content": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": [{"token": "Hey", "logprob": -2.5}]},
            {"token": "!", "logprob": -0.01, "bytes": None, "top_logprobs": []},
        ]
    }
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13, "cost": 0.0001}
    completions = [
        {
            "id": "gen-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hi!", "reasoning": "greet them"},
                    "finish_reason": "stop",
                    "logprobs": logprobs,
                }
            ],
            "usage": usage,
        },
        {
            "id": "gen-2",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "cut sh"}, "finish_reason": "length"}],
            "usage": usage,
        },
    ]
    responses = [chat_to_responses_response(c, request={"top_logprobs": 1}) for c in completions]
    refusal = {**responses[0], "id": "resp_r", "output": [{
        "type": "message", "id": "msg_r", "role": "assistant", "status": "completed",
        "content": [{"type": "refusal", "refusal": "I cannot help with that."}],
    }]}  # fmt: skip
    return {
        "responses": [list(response_events(r)) for r in (*responses, refusal)],
        "chat": [list(chat_chunks(c, usage=True)) for c in completions],
    }


@pytest.mark.parametrize("sdk", list(SDKS))
def test_rendered_streams_of_reasoning_logprobs_refusals_and_incomplete_answers_validate(
    sdk: str, tmp_path: Path
) -> None:
    streams = _rendered_streams()
    kinds = [e["type"] for e in streams["responses"][0]]
    assert "response.reasoning_summary_text.delta" in kinds and kinds[-1] == "response.completed"
    assert streams["responses"][1][-1]["type"] == "response.incomplete"
    assert "response.refusal.delta" in [e["type"] for e in streams["responses"][2]]
    delta = next(e for e in streams["responses"][0] if e["type"] == "response.output_text.delta")
    assert delta["logprobs"][0]["top_logprobs"] == [{"token": "Hey", "logprob": -2.5}]
    path = tmp_path / "streams.json"
    path.write_text(json.dumps(streams))
    proc = subprocess.run(
        [str(SDKS[sdk] / "bin/python"), "-c", VALIDATE_STREAMS, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == []
