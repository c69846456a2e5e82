"""``ng models`` and the model catalogue: parsing /models, matching model ids, filters, the
command against a real emulator, and the OpenRouter config it reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from nemo_gym_cli.config import load_config
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.models_list import (
    ModelInfo,
    fetch_models,
    format_table,
    model_listed,
    models,
    select,
)
from nemo_gym_cli.upstream import Upstream
from responses_api_models.openai_model.tests.emulated_upstream import (
    KEY,
    emulator,
    free_port,
    serve_in_thread,
)

ROOT = Path(__file__).resolve().parents[3]
NG_MODELS = str(Path(sys.executable).parent / "ng_models")
OPENROUTER_YAML = "responses_api_models/openai_model/configs/openrouter.yaml"


async def _emulated_models() -> list[dict]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(emulator())) as http:
        return await fetch_models(http, Upstream("http://emulator/api/v1", KEY, ""))


@pytest.mark.anyio
async def test_model_info_reads_context_prices_per_million_and_tool_support() -> None:
    listed = {m.id: m for m in map(ModelInfo.parse, await _emulated_models())}
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
    listed = [ModelInfo.parse(e) for e in await _emulated_models()]
    assert [m.id for m in select(listed, tools=True, max_price=0.5)] == [
        "emulator/scripted-tool-caller",
        "meta-llama/llama-3.3-70b-instruct:free",
    ]
    assert [m.id for m in select(listed, max_price=0)] == ["meta-llama/llama-3.3-70b-instruct:free"]
    assert [m.id for m in select(listed, search="CLAUDE")] == ["anthropic/claude-3.5-sonnet"]
    table = format_table(select(listed), current="openai/gpt-4o-mini")
    assert "* openai/gpt-4o-mini" in table and "128000" in table and "0.15" in table


def test_model_ids_match_through_gateway_prefixes_and_routing_variants() -> None:
    listed = [
        {"id": "anthropic/claude-3.5-sonnet"},
        {"id": "meta-llama/llama-3.3-70b-instruct:free"},
    ]
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


def _ng_models(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NG_MODELS, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_ng_models_lists_and_filters_what_the_upstream_offers(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no env.yaml here
    with serve_in_thread(emulator()) as url:
        everything = _ng_models(f"+base_url={url}/api/v1", cwd=tmp_path)  # the console script
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


def test_ng_models_reads_the_model_server_of_a_config_and_marks_its_model(tmp_path) -> None:
    with serve_in_thread(emulator(reject_keys={"sk-or-v1-wrong": 401})) as url:
        (tmp_path / "env.yaml").write_text(
            f"policy_base_url: {url}/api/v1\npolicy_api_key: {KEY}\npolicy_model_name: openai/gpt-4o-mini\n"
        )
        result = _ng_models(
            "+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml]",
            cwd=tmp_path,
        )
    assert result.returncode == 0, result.stderr
    assert "* openai/gpt-4o-mini" in result.stdout
    assert "configured model (instance 'policy_model'): openai/gpt-4o-mini - offered" in result.stdout
    assert KEY not in result.stdout + result.stderr


def test_ng_models_says_clearly_when_the_upstream_is_unreachable(tmp_path, monkeypatch) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/v1"
    result = _ng_models(f"+base_url={closed}", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: cannot reach {closed}")
    assert "Traceback" not in result.stderr
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no upstream to ask: give \+base_url="):
        models([])


def test_openrouter_yaml_reads_the_key_from_the_environment_or_env_yaml(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", "sk-or-v1-from-env")
    fields = load_config([f"+config_paths=[{OPENROUTER_YAML}]"], cwd=tmp_path).instances["policy_model"].fields
    assert fields["openai_base_url"] == "https://openrouter.ai/api/v1"
    assert fields["openai_api_key"] == "sk-or-v1-from-env"
    assert fields["openai_model"] == "openai/gpt-4o-mini"
    assert set(fields["default_headers"]) == {"HTTP-Referer", "X-OpenRouter-Title"}
    (tmp_path / "env.yaml").write_text("policy_api_key: sk-or-v1-from-env-yaml\n")
    config = load_config(
        [f"+config_paths=[{OPENROUTER_YAML}]", "+policy_model_name=anthropic/claude-3.5-sonnet"],
        cwd=tmp_path,
    )
    fields = config.instances["policy_model"].fields
    assert fields["openai_api_key"] == "sk-or-v1-from-env-yaml"
    assert fields["openai_model"] == "anthropic/claude-3.5-sonnet"
