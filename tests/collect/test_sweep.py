"""A sweep's models reach the model servers: filled into ``allowed_models`` of the servers the
agents call when the collector starts them; checked against a running ng_run's, refused in
one line when it does not serve them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.sweep import allow_sweep_models
from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS
from nemo_gym_cli.config import load_config
from support.cli import ROOT, NgRun, run_cli

SWEEP_JUDGE = "+config_paths=[configs/offline_sweep.yaml,resources_servers/llm_judge/configs/llm_judge.yaml]"
SWEEP_MCQA = "+config_paths=[configs/offline_sweep.yaml,resources_servers/mcqa/configs/mcqa.yaml]"


def _options(*args: str) -> tuple:
    config = load_config(
        [SWEEP_JUDGE, "+input_jsonl_fpath=in.jsonl", *args],
        cwd=ROOT,
        command=COLLECT_OPTIONS,
        everywhere=ALL_OPTIONS,
        env_yaml=False,
    )
    return config, CollectOptions.from_config(config.options)


def test_a_sweep_s_models_are_allowed_on_the_agents_model_server_and_not_on_the_judge_s():
    config, opts = _options(
        "+models=[emulator/small,emulator/large]",
        "++policy_model.responses_api_models.openai_model.allowed_models=[emulator/large,openai/gpt-4o-mini]",
    )
    swept = allow_sweep_models(config, opts)
    policy = swept.instances["policy_model"]
    assert policy.fields["allowed_models"] == ["emulator/large", "openai/gpt-4o-mini", "emulator/small"]
    assert policy.sources["allowed_models"] == "the sweep (+models / variants)"
    assert "allowed_models" not in swept.instances["judge_model"].fields  # the judge stays on its model
    assert config.instances["policy_model"].fields["allowed_models"] == ["emulator/large", "openai/gpt-4o-mini"]


def test_variants_naming_models_are_allowed_and_a_sweep_without_models_changes_nothing():
    config, opts = _options(
        "+variants=[{name: hot, model: emulator/large, responses_create_params: {temperature: 1.0}},"
        "{name: cold, responses_create_params: {temperature: 0.0}}]"
    )
    assert allow_sweep_models(config, opts).instances["policy_model"].fields["allowed_models"] == ["emulator/large"]
    config, opts = _options("+variants=[{name: cold, responses_create_params: {temperature: 0.0}}]")
    assert allow_sweep_models(config, opts) is config


def _one_line_usage_error(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.e2e
def test_a_sweep_against_an_ng_run_that_does_not_serve_its_models_is_refused_before_any_rollout(
    tmp_path: Path,
) -> None:
    allowing = "++policy_model.responses_api_models.openai_model.allowed_models=[anthropic/claude-3.5-sonnet]"
    run = NgRun(allowing)
    try:
        run.wait_ready()
        common = [
            f"+head_server.port={run.head_port}",
            "+agent_name=simple_weather_simple_agent",
            "+input_jsonl_fpath=resources_servers/simple_weather/data/example.jsonl",
        ]
        refused = run_cli(
            "ng_collect_rollouts", *common, "+models=[anthropic/claude-3.5-sonnet,openai/gpt-4o-mini]",
            f"+output_jsonl_fpath={tmp_path / 'refused.jsonl'}",
        )  # fmt: skip
        allowed = run_cli(
            "ng_collect_rollouts", *common, "+models=[anthropic/claude-3.5-sonnet]",
            f"+output_jsonl_fpath={tmp_path / 'allowed.jsonl'}",
        )  # fmt: skip
    finally:
        run.stop()
    line = _one_line_usage_error(refused)
    assert line.startswith(
        f"error: the sweep names ['openai/gpt-4o-mini'], which the agent's model server in the ng_run at "
        f"{run.head_url} does not serve; add them to allowed_models of its openai_model server"
    )
    assert not (tmp_path / "refused").exists()
    assert allowed.returncode == 0, allowed.stderr
    rows = (tmp_path / "allowed" / "anthropic__claude-3.5-sonnet.jsonl").read_text().splitlines()
    assert len(rows) == 5 and all('"model":"anthropic/claude-3.5-sonnet"' in row for row in rows)


@pytest.mark.e2e
def test_a_second_sweep_into_the_same_folder_keeps_the_first_one_s_variants_in_the_manifest(tmp_path: Path) -> None:
    def sweep(models: str, *extra: str):
        return run_cli(
            "ng_collect_rollouts", SWEEP_MCQA, "+agent_name=mcqa_simple_agent",
            "+input_jsonl_fpath=resources_servers/mcqa/data/questions.jsonl", "+limit=3", f"+models={models}",
            f"+output_jsonl_fpath={tmp_path / 'mcqa.jsonl'}", *extra,
        )  # fmt: skip

    first = sweep("[emulator/small,emulator/large]")
    assert first.returncode == 0, first.stderr
    again = sweep("[emulator/medium,emulator/large]", "+resume=true")  # large resumed, medium added
    assert again.returncode == 0, again.stderr
    manifest = json.loads((tmp_path / "mcqa" / "sweep.json").read_text())
    assert [(v["name"], v["model"]) for v in manifest["variants"]] == [
        ("emulator__small", "emulator/small"),
        ("emulator__large", "emulator/large"),
        ("emulator__medium", "emulator/medium"),
    ]
    report = run_cli("ng_report", str(tmp_path / "mcqa"))
    assert report.returncode == 0, report.stderr
    assert "warning" not in report.stdout + report.stderr  # materialized inputs are not variants
    assert report.stdout.splitlines()[0] == "3 variants, 9 rollouts over 3 tasks"
