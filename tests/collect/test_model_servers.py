"""The core asks a model server what it serves, never a server by name: a second, minimal
model server (tests/fixtures/responses_api_models/echo_model) gets sweeps, the run record
and the up-front refusal like openai_model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.collect.model_servers import served
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.record import experiment, requested_model
from nemo_gym_cli.collect.sweep import allow_sweep_models
from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS
from nemo_gym_cli.config import GlobalConfig, load_config, substitute_urls
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server import asgi
from nemo_gym_cli.server.serve import import_implementation, server_class
from support.cli import ROOT, NgRun, run_cli

FIXTURES = ROOT / "tests" / "fixtures"
WEATHER = "resources_servers/simple_weather/configs/simple_weather.yaml"
ECHO = f"+config_paths=[echo_model.yaml,{WEATHER}]"
AGENT = "simple_weather_simple_agent"


def _load(*args: str, cwd: Path = FIXTURES) -> tuple[GlobalConfig, CollectOptions]:
    config = load_config(
        [*args, "+input_jsonl_fpath=in.jsonl"], cwd=cwd, command=COLLECT_OPTIONS, everywhere=ALL_OPTIONS, env_yaml=False
    )
    return config, CollectOptions.from_config(config.options)


def test_each_model_server_s_config_says_what_it_serves_under_its_own_keys():
    echo, _ = _load(ECHO)
    declared = served(echo.instances["policy_model"])
    assert declared is not None
    assert (declared.model, declared.allowed_models, declared.base_url) == ("echo/base", (), None)
    assert requested_model(echo, AGENT, None) == "echo/base"
    assert experiment(echo, AGENT)["model_server"] == {"implementation": "echo_model", "model": "echo/base"}

    offline, _ = _load("+config_paths=[configs/offline.yaml]", cwd=ROOT)
    openai = served(offline.instances["policy_model"])
    assert openai is not None and openai.model == "emulator/scripted-tool-caller"
    assert substitute_urls(openai.base_url, {"provider_emulator": "http://e"}) == "http://e/api/v1"
    assert served(offline.instances["provider_emulator"]) is None  # a provider: it names no model of its own


def test_a_sweep_s_models_are_allowed_on_a_model_server_the_core_does_not_know_by_name():
    config, opts = _load(ECHO, "+models=[echo/a,echo/b]")
    swept = allow_sweep_models(config, opts)
    assert swept.instances["policy_model"].fields["allowed_models"] == ["echo/a", "echo/b"]
    declared = served(swept.instances["policy_model"])
    assert declared is not None and declared.models == ["echo/base", "echo/a", "echo/b"]


def test_a_sweep_on_a_model_server_that_declares_no_model_is_refused_before_any_server_starts(tmp_path: Path):
    (tmp_path / "provider_as_policy.yaml").write_text(
        "policy_model:\n  responses_api_models:\n    provider_emulator:\n      entrypoint: app.py\n"
    )
    config, opts = _load(f"+config_paths=[provider_as_policy.yaml,{WEATHER}]", "+models=[a/x]", cwd=tmp_path)
    with pytest.raises(ConfigError, match="policy_model.responses_api_models.provider_emulator does not declare"):
        allow_sweep_models(config, opts)


def test_the_model_server_base_refuses_a_model_it_does_not_serve_and_lists_the_ones_it_does():
    config, _ = _load(ECHO, "++policy_model.responses_api_models.echo_model.allowed_models=[echo/a]")
    inst = config.instances["policy_model"]
    cls = server_class(import_implementation(inst.entrypoint, inst.server_type, inst.implementation))
    with TestClient(asgi(cls.from_spec(inst.spec({})))) as client:
        listed = client.get("/v1/models").json()["data"]
        assert [m["id"] for m in listed] == ["echo/base", "echo/a"]
        assert client.post("/v1/responses", json={"input": "hi"}).json()["model"] == "echo/base"
        assert client.post("/v1/responses", json={"input": "hi", "model": "echo/a"}).json()["model"] == "echo/a"
        refused = client.post("/v1/responses", json={"input": "hi", "model": "echo/other"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["type"] == "model_not_allowed"
    assert error["message"].startswith(
        "model 'echo/other' is not allowed by policy_model.responses_api_models.echo_model: it serves "
        "['echo/base', 'echo/a'] (model and allowed_models)"
    )


@pytest.mark.e2e
def test_a_sweep_over_the_minimal_model_server_has_each_variant_answered_by_its_own_model(tmp_path: Path):
    done = run_cli(
        "ng_collect_rollouts", ECHO, f"+agent_name={AGENT}", "+models=[echo/a,echo/b]", "+limit=2",
        "+input_jsonl_fpath=resources_servers/simple_weather/data/example.jsonl",
        f"+output_jsonl_fpath={tmp_path / 'echo.jsonl'}", cwd=FIXTURES,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    for model in ("echo/a", "echo/b"):
        rows = [json.loads(line) for line in (tmp_path / "echo" / f"{model.replace('/', '__')}.jsonl").open()]
        assert len(rows) == 2 and {row["response"]["model"] for row in rows} == {model}
        metrics = json.loads((tmp_path / "echo" / f"{model.replace('/', '__')}_metrics.json").read_text())
        assert metrics["run"]["requested_model"] == model


@pytest.mark.e2e
def test_a_sweep_naming_a_model_the_running_minimal_model_server_does_not_serve_is_refused_up_front(tmp_path: Path):
    run = NgRun(cwd=FIXTURES, config=ECHO)
    try:
        run.wait_ready()
        refused = run_cli(
            "ng_collect_rollouts", f"+head_server.port={run.head_port}", f"+agent_name={AGENT}",
            "+input_jsonl_fpath=resources_servers/simple_weather/data/example.jsonl", "+models=[echo/base,echo/other]",
            f"+output_jsonl_fpath={tmp_path / 'refused.jsonl'}", cwd=FIXTURES,
        )  # fmt: skip
    finally:
        run.stop()
    assert refused.returncode == 2, refused.stderr
    assert (
        f"error: the sweep names ['echo/other'], which the agent's model server in the ng_run at {run.head_url} "
        "does not serve; add them to allowed_models of its echo_model server (ng_run "
        "'++policy_model.responses_api_models.echo_model.allowed_models=[...]')"
    ) in refused.stderr
    assert not (tmp_path / "refused").exists()
