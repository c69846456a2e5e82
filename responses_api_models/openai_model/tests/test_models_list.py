"""``ng models`` and the model catalogue: parsing /models, matching model ids, filters, the
command against a real emulator (started by the test, or by the command itself for the
offline config), its strict options, and the OpenRouter config it reads."""

from __future__ import annotations

import re

import orjson
import pytest

from nemo_gym_cli.commands.models import format_table, models
from nemo_gym_cli.config import load_config
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.providers.catalogue import ModelInfo, fetch_models, model_listed, select
from nemo_gym_cli.providers.upstream import AiohttpWire, Upstream
from support.cli import run_cli
from support.emulator import KEY, emulated
from support.upstream import refusing_url

OPENROUTER_YAML = "responses_api_models/openai_model/configs/openrouter.yaml"


async def emulated_models() -> list[dict]:
    with emulated() as url:
        async with AiohttpWire.open(pool_size=1, connect_timeout_s=5, read_timeout_s=5) as wire:
            return await fetch_models(wire, Upstream(url + "/api/v1", KEY, ""))


@pytest.mark.anyio
async def test_model_info_reads_context_prices_per_million_and_tool_support() -> None:
    listed = {m.id: m for m in map(ModelInfo.parse, await emulated_models())}
    sonnet = listed["anthropic/claude-3.5-sonnet"]
    assert (sonnet.context_length, sonnet.prompt_price, sonnet.completion_price, sonnet.tools) == (
        200000,
        3.0,
        15.0,
        True,
    )
    assert listed["gryphe/mythomax-l2-13b"].tools is False
    router = ModelInfo.parse({"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}})
    assert router.prompt_price is None and router.context_length is None and router.tools is None


@pytest.mark.anyio
async def test_filters_keep_tool_models_under_a_price_and_matching_text() -> None:
    listed = [ModelInfo.parse(e) for e in await emulated_models()]
    assert [m.id for m in select(listed, tools=True, max_price=0.5)] == [
        "emulator/scripted-tool-caller",
        "meta-llama/llama-3.3-70b-instruct:free",
    ]
    assert [m.id for m in select(listed, max_price=0)] == ["meta-llama/llama-3.3-70b-instruct:free"]
    assert [m.id for m in select(listed, search="CLAUDE")] == ["anthropic/claude-3.5-sonnet"]
    table = format_table(select(listed), current="openai/gpt-4o-mini")
    assert "* openai/gpt-4o-mini" in table and "128000" in table and "0.15" in table


@pytest.mark.e2e
def test_ng_models_at_a_base_url_without_a_models_route_says_to_check_the_base_url(tmp_path) -> None:
    with emulated() as url:
        result = run_cli("ng_models", f"+base_url={url}", cwd=tmp_path)  # /api/v1 forgotten
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {url}/models answered 404: {url} does not list its models;")
    assert "check openai_base_url" in result.stderr


def test_model_ids_match_through_gateway_prefixes_and_routing_variants() -> None:
    listed = [{"id": "anthropic/claude-3.5-sonnet"}, {"id": "meta-llama/llama-3.3-70b-instruct:free"}]
    assert model_listed("anthropic/claude-3.5-sonnet", listed)
    assert model_listed("openrouter:anthropic/claude-3.5-sonnet", listed)
    assert model_listed("anthropic/claude-3.5-sonnet:nitro", listed)
    assert model_listed("meta-llama/llama-3.3-70b-instruct:free", listed)
    assert model_listed("meta-llama/llama-3.3-70b-instruct", listed) is None  # :free is its own id
    assert model_listed("anthropic/claude-9", listed) is None
    # A gateway whose list uses other names cannot say a prefixed model is absent...
    assert model_listed("openrouter:acme/x", [{"id": "claude-3-5-sonnet"}]) is True
    # ...one that lists the same prefix can.
    assert model_listed("openrouter:acme/x", [{"id": "openrouter:acme/y"}]) is None


@pytest.mark.e2e
def test_ng_models_lists_and_filters_what_the_upstream_offers(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no env.yaml here
    with emulated() as url:
        everything = run_cli("ng_models", f"+base_url={url}/api/v1", cwd=tmp_path)  # the console script
        assert models([f"+base_url={url}/api/v1", "+tools=true", "+max_price=0.5"]) == 0
        tools_cheap = capsys.readouterr().out
        assert models([f"+base_url={url}/api/v1", "+json=true", "+search=mythomax"]) == 0
        as_json = capsys.readouterr().out
    assert everything.returncode == 0, everything.stderr
    assert "MODEL" in everything.stdout and "anthropic/claude-3.5-sonnet" in everything.stdout
    assert "5 of 5 models at" in everything.stdout
    assert "emulator/scripted-tool-caller" in tools_cheap
    assert "claude" not in tools_cheap and "mythomax" not in tools_cheap
    assert "2 of 5 models" in tools_cheap and "with tools, at most $0.5/M tokens" in tools_cheap
    assert [orjson.loads(line) for line in as_json.splitlines()] == [
        {
            "id": "gryphe/mythomax-l2-13b",
            "name": "MythoMax 13B",
            "context_length": 4096,
            "prompt_price": 0.065,
            "completion_price": 0.065,
            "tools": False,
        }
    ]


@pytest.mark.e2e
def test_ng_models_reads_the_model_server_of_a_config_and_marks_its_model(tmp_path) -> None:
    with emulated(reject_keys={"sk-or-v1-wrong": 401}) as url:
        (tmp_path / "env.yaml").write_text(
            f"policy_base_url: {url}/api/v1\npolicy_api_key: {KEY}\npolicy_model_name: openai/gpt-4o-mini\n"
        )
        result = run_cli(
            "ng_models", "+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml]", cwd=tmp_path
        )
    assert result.returncode == 0, result.stderr
    assert "* openai/gpt-4o-mini" in result.stdout
    assert "configured model (instance 'policy_model'): openai/gpt-4o-mini - offered" in result.stdout
    assert KEY not in result.stdout + result.stderr


@pytest.mark.e2e
def test_ng_models_starts_the_offline_config_s_emulator_itself_and_lists_its_models() -> None:
    result = run_cli("ng", "models", "+config_paths=[configs/offline.yaml]")
    assert result.returncode == 0, result.stderr
    served = re.search(r"^5 of 5 models at http://127\.0\.0\.1:(\d+)/api/v1; ", result.stdout, re.MULTILINE)
    assert served, result.stdout
    assert "* emulator/scripted-tool-caller" in result.stdout
    assert "configured model (instance 'policy_model'): emulator/scripted-tool-caller - offered" in result.stdout
    assert "sk-or-emulator-offline-key" not in result.stdout + result.stderr


@pytest.mark.e2e
def test_ng_models_says_clearly_when_the_upstream_is_unreachable(tmp_path, monkeypatch) -> None:
    with refusing_url() as closed:
        result = run_cli("ng_models", f"+base_url={closed}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach {closed}")
    assert "Traceback" not in result.stderr
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no upstream to ask: give \+base_url="):
        models([])


@pytest.mark.e2e
def test_ng_models_options_are_strict(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        models(["+base_url=http://127.0.0.1:9/api/v1", "+tools=yes"])
    assert str(info.value).startswith("+tools: Input should be a valid boolean (got 'yes')")
    result = run_cli("ng_models", "+base_url=http://127.0.0.1:9/api/v1", "+max_price=-1", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "+max_price" in result.stderr and "Traceback" not in result.stderr


def test_openrouter_yaml_reads_the_key_from_the_environment_or_env_yaml(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-from-env")
    fields = load_config([f"+config_paths=[{OPENROUTER_YAML}]"], cwd=tmp_path).instances["policy_model"].fields
    assert fields["openai_base_url"] == "https://openrouter.ai/api/v1"
    assert fields["openai_api_key"] == "sk-or-v1-from-env"
    assert fields["openai_model"] == "openai/gpt-4o-mini"
    assert set(fields["default_headers"]) == {"HTTP-Referer", "X-OpenRouter-Title"}
    (tmp_path / "env.yaml").write_text("policy_api_key: sk-or-v1-from-env-yaml\n")
    config = load_config(
        [f"+config_paths=[{OPENROUTER_YAML}]", "+policy_model_name=anthropic/claude-3.5-sonnet"], cwd=tmp_path
    )
    fields = config.instances["policy_model"].fields
    assert fields["openai_api_key"] == "sk-or-v1-from-env-yaml"
    assert fields["openai_model"] == "anthropic/claude-3.5-sonnet"
