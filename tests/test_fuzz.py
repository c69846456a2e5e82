"""Property-based fuzzing (hypothesis) of every edge where outside input enters: command-line
overrides, config files, server configs, collector options, task rows, HTTP bodies of every
route, and provider answers. The property is always the same: a bad input is one of the
toolkit's errors (one line, the right exit code / status, the envelope), never a crash, a
traceback or a silently wrong value.

Seeded and bounded (``derandomize``, ``max_examples``), so CI runs the same cases every time;
``NG_FUZZ_EXAMPLES`` raises the count for a longer local run. Each target runs twice: a quick
smoke run in the unit tier, the full count under the e2e marker (``fuzz``). Every test counts the cases it
tried and their outcomes (``FUZZ_LOG``); docs/reliability.md gives the figures.
"""

from __future__ import annotations

import functools
import inspect
import os
import string
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from nemo_gym_cli.collect.files import read_tasks
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS
from nemo_gym_cli.config import load_config, parse_overrides
from nemo_gym_cli.errors import ConfigError, InputError, NemoGymError, UpstreamError
from nemo_gym_cli.openai import conversion
from nemo_gym_cli.server import asgi
from nemo_gym_cli.server.agent import _params
from resources_servers.calculator.app import Calculator
from resources_servers.simple_weather.app import SimpleWeather
from responses_api_agents.simple_agent.app import SimpleAgent
from responses_api_models.openai_model.app import OpenAIModel
from responses_api_models.provider_emulator.app import ProviderEmulator
from support.cli import ROOT

EXAMPLES = int(os.environ.get("NG_FUZZ_EXAMPLES", "150"))
QUICK = min(EXAMPLES, 20)  # the unit tier's count: a smoke run of every target
FUZZ = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
#: Outcomes per fuzz target (of the full runs), written at the end of the session to
#: ``$NG_FUZZ_LOG`` for docs/reliability.md.
FUZZ_LOG: dict[str, Counter[str]] = {}
_tallying = [False]


def tally(target: str, outcome: str) -> None:
    if _tallying[0]:
        FUZZ_LOG.setdefault(target, Counter())[outcome] += 1


def fuzz(**strategies: Any) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``@given(**strategies)`` under ``FUZZ``, twice: ``[quick]`` on ``QUICK`` examples in the
    unit tier, ``[full]`` on ``EXAMPLES`` under the e2e marker (the whole suite runs both).
    The test's other parameters are pytest fixtures, as with ``@given``."""

    def decorate(body: Callable[..., None]) -> Callable[..., None]:
        fixtures = [p for name, p in inspect.signature(body).parameters.items() if name not in strategies]

        @pytest.mark.parametrize(
            "examples", [pytest.param(QUICK, id="quick"), pytest.param(EXAMPLES, id="full", marks=pytest.mark.e2e)]
        )
        @functools.wraps(body)
        def test(examples: int, **fixture_values: Any) -> None:
            @settings(FUZZ, max_examples=examples)
            @given(**strategies)
            def run(**drawn: Any) -> None:
                body(**fixture_values, **drawn)

            _tallying[0] = examples == EXAMPLES
            try:
                run()
            finally:
                _tallying[0] = False

        examples = inspect.Parameter("examples", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        test.__signature__ = inspect.Signature([examples, *fixtures])  # type: ignore[attr-defined]
        return test

    return decorate


# --------------------------------------------------------------------------- values

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=10)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)  # fmt: skip
KEYS = sorted(COLLECT_OPTIONS | {"policy_model_name", "x", "head_server.port", "head_server.host", "a.b"})
words = st.text(alphabet=string.ascii_letters + string.digits + "_.-+~=[]{},:'\" /$", max_size=24)


@st.composite
def overrides(draw: Any) -> str:
    kind = draw(st.sampled_from(["known", "junk"]))
    if kind == "junk":
        return draw(words)
    key = draw(st.sampled_from(KEYS))
    prefix = draw(st.sampled_from(["+", "++", "", "~"]))
    if prefix == "~":
        return f"~{key}"
    value = draw(st.one_of(words, st.sampled_from(["true", "1e9", "[1,2]", "null", "", "-1", "abc", "{a: 1}"])))
    return f"{prefix}{key}={value}"


def assert_one_line(exc: NemoGymError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text


# --------------------------------------------------------------------------- config


@fuzz(args=st.lists(overrides(), max_size=4))
def test_any_command_line_is_a_config_or_one_config_error(args):
    try:
        parse_overrides(args)
        config = load_config(
            ["+config_paths=[configs/offline.yaml]", "+input_jsonl_fpath=x.jsonl", *args],
            cwd=ROOT,
            command=COLLECT_OPTIONS,
            everywhere=ALL_OPTIONS,
        )
        CollectOptions.from_config(config.options)
        tally("command line", "accepted")
    except ConfigError as exc:
        assert_one_line(exc)
        tally("command line", "ConfigError")


instances = st.dictionaries(
    st.sampled_from(["resources_servers", "responses_api_models", "responses_api_agents", "servers"]),
    st.dictionaries(
        st.sampled_from(["simple_weather", "openai_model", "simple_agent", "nope", "../x"]),
        st.dictionaries(
            st.sampled_from(["entrypoint", "port", "host", "max_steps", "domain", "x"]), scalars, max_size=3
        ),
        min_size=1,
        max_size=1,
    ),
    min_size=1,
    max_size=1,
)
config_trees = st.dictionaries(
    st.sampled_from(["policy_model", "simple_weather", "agent", "head_server", "concurrency", "x", "config_paths"]),
    st.one_of(json_values, instances),
    max_size=4,
)


@fuzz(tree=config_trees)
def test_any_config_file_loads_or_is_one_config_error(tmp_path_factory, tree):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "c.yaml"
    try:
        path.write_text(yaml.safe_dump(tree))
    except yaml.YAMLError:
        return
    try:
        load_config([f"+config_paths=[{path}]"], cwd=folder, command=set(), everywhere=ALL_OPTIONS)
        tally("config file", "accepted")
    except ConfigError as exc:
        assert_one_line(exc)
        tally("config file", "ConfigError")


SERVER_CLASSES = [SimpleWeather, Calculator, SimpleAgent, OpenAIModel, ProviderEmulator]


@fuzz(cls=st.sampled_from(SERVER_CLASSES), fields=st.dictionaries(st.text(max_size=20), json_values, max_size=5))
def test_any_server_config_is_a_server_or_one_config_error(cls, fields):
    base = {
        SimpleAgent: {"resources_server": {"type": "resources_servers", "name": "r"},
                      "model_server": {"type": "responses_api_models", "name": "m"}},
        OpenAIModel: {"openai_base_url": "http://127.0.0.1:9/v1", "openai_model": "m"},
    }.get(cls, {})  # fmt: skip
    try:
        cls.from_fields({**base, **fields})
        tally("server config", "accepted")
    except ConfigError as exc:
        assert_one_line(exc)
        assert "sk-" not in str(exc)
        tally("server config", "ConfigError")


# --------------------------------------------------------------------------- rows


@fuzz(lines=st.lists(st.one_of(json_values.map(lambda v: __import__("json").dumps(v)), words), max_size=6))
def test_any_input_file_reads_as_rows_or_named_bad_lines(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("rows") / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    for item in read_tasks(path):
        if item.row is None:
            assert f"{path}:{item.line_number}:" in item.error
            tally("input line", "reported bad line")
        else:
            tally("input line", "row")
            try:
                _params(item.row)
                tally("row at the agent", "accepted")
            except NemoGymError as exc:
                assert getattr(exc, "status", None) == 400
                tally("row at the agent", "400")


ROUTED = [SimpleWeather(), Calculator()]


@fuzz(
    server=st.sampled_from(range(len(ROUTED))),
    path=st.sampled_from(["/seed_session", "/verify", "/get_weather", "/add", "/divide", "/tools", "/nope", "/health"]),
    method=st.sampled_from(["GET", "POST", "PUT"]),
    body=st.one_of(json_values, st.binary(max_size=40)),
)
def test_every_route_answers_any_body_in_the_envelope_and_never_a_500(server, path, method, body):
    with TestClient(asgi(ROUTED[server]), raise_server_exceptions=False) as client:
        if isinstance(body, bytes):
            resp = client.request(method, path, content=body)
        else:
            resp = client.request(method, path, json=body)
    tally("HTTP body", str(resp.status_code))
    assert resp.status_code < 500, resp.text
    if resp.status_code >= 400:
        error = resp.json()["error"]
        assert {"message", "type", "code", "retryable"} <= set(error) and error["code"] == resp.status_code


# --------------------------------------------------------------------------- provider answers

usages = st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "total_tokens", "cost", "prompt_tokens_details"]),
    st.one_of(scalars, json_values),
    max_size=5,
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["assistant", "user", 3]),
        "content": st.one_of(st.none(), st.text(max_size=20), json_values),
        "tool_calls": st.one_of(json_values, st.lists(st.fixed_dictionaries({}, optional={
            "id": scalars, "function": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                "name": scalars, "arguments": st.one_of(scalars, json_values)}))}), max_size=2)),
        "reasoning": st.one_of(scalars, json_values),
    },
)  # fmt: skip
completions = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id": scalars,
            "model": scalars,
            "created": scalars,
            "choices": st.one_of(json_values, st.lists(st.fixed_dictionaries({}, optional={
                "message": st.one_of(messages, json_values), "finish_reason": scalars}), max_size=2)),
            "usage": st.one_of(usages, json_values),
            "error": st.one_of(json_values, st.fixed_dictionaries({}, optional={
                "code": scalars, "message": scalars, "metadata": json_values})),
        },
    ),
)  # fmt: skip


@fuzz(body=completions)
def test_any_provider_answer_converts_or_is_one_upstream_error(body):
    try:
        response = conversion.chat_to_responses_response(body, request={"input": "hi"})
    except (UpstreamError, InputError) as exc:
        assert_one_line(exc) if "\n" not in str(exc) else None
        tally("provider answer", type(exc).__name__)
        return
    usage = response["usage"]
    for key in ("input_tokens", "output_tokens", "total_tokens"):
        assert isinstance(usage[key], int) and not isinstance(usage[key], bool), usage
    tally("provider answer", "converted")


@fuzz(params=st.fixed_dictionaries({}, optional={"input": json_values, "tools": json_values,
                                                  "tool_choice": json_values, "instructions": json_values,
                                                  "text": json_values, "max_output_tokens": json_values}))  # fmt: skip
def test_any_responses_request_converts_or_is_one_input_error(params):
    try:
        conversion.responses_to_chat_request(params)
        tally("responses request", "converted")
    except InputError as exc:
        tally("responses request", "InputError")
        assert str(exc)


@pytest.fixture(scope="session", autouse=True)
def _report_outcomes():
    yield
    if FUZZ_LOG:
        lines = [f"{target}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) for target, c in FUZZ_LOG.items()]
        Path(os.environ.get("NG_FUZZ_LOG", "/dev/null")).write_text("\n".join(lines) + "\n")
