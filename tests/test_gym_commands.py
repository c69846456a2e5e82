"""NeMo Gym 0.7's command lines under our ``ng`` (``commands/gym.py``) and ``ng eval
aggregate``'s merge (``collect/aggregate.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemo_gym_cli.collect.aggregate import merge_shards
from nemo_gym_cli.commands.gym import GYM_GROUPS, CommandMoved, translate
from nemo_gym_cli.errors import ConfigError


def test_eval_run_flags_become_our_collectors_keys(tmp_path: Path):
    t = translate(
        "eval",
        ["run", "--config", "a.yaml", "--resources-server", "mcqa", "-a", "mcqa_simple_agent", "-i", "in.jsonl",
         "-o", "out.jsonl", "--num-repeats", "3", "--concurrency", "8", "--temperature=0.7", "--resume",
         "+limit=5"],
        tmp_path,
    )  # fmt: skip
    assert t.command == "collect"
    assert t.args == [
        "+config_paths=[a.yaml,nemo_gym:resources_servers/mcqa/configs/mcqa.yaml]",
        "+agent_name=mcqa_simple_agent",
        "+input_jsonl_fpath=in.jsonl",
        "+output_jsonl_fpath=out.jsonl",
        "+num_repeats=3",
        "+num_samples_in_parallel=8",
        "+responses_create_params.temperature=0.7",
        "+resume_from_cache=true",
        "+limit=5",
    ]


def test_an_asset_in_the_working_directory_wins_as_in_nemo_gym(tmp_path: Path):
    (tmp_path / "resources_servers/my_env/configs").mkdir(parents=True)
    (tmp_path / "resources_servers/my_env/configs/fast.yaml").write_text("{}")
    t = translate("env", ["start", "--resources-server", "my_env/fast", "--environment", "math"], tmp_path)
    assert t.command == "run"
    assert t.args == [
        "+config_paths=[resources_servers/my_env/configs/fast.yaml,nemo_gym:environments/math/config.yaml]"
    ]


def test_no_serve_uses_the_running_servers_and_refuses_a_config(tmp_path: Path):
    assert translate("eval", ["run", "--no-serve", "-i", "x.jsonl"], tmp_path).args == ["+input_jsonl_fpath=x.jsonl"]
    with pytest.raises(ConfigError, match="--no-serve uses the servers of a running ng_run"):
        translate("eval", ["run", "--no-serve", "--config", "a.yaml"], tmp_path)
    with pytest.raises(ConfigError, match="starts the servers of --config"):
        translate("eval", ["run", "-i", "x.jsonl"], tmp_path)


def test_compare_is_our_report_of_the_two_runs(tmp_path: Path):
    t = translate("eval", ["compare", "--baseline", "a.jsonl", "--candidates", "b.jsonl", "-o", "cmp"], tmp_path)
    assert (t.command, t.args) == ("report", ["+inputs=[a.jsonl,b.jsonl]", "+report_dir=cmp"])


@pytest.mark.parametrize(("group", "command"), [(g, c) for g, cs in GYM_GROUPS.items() for c in cs])
def test_every_07_command_runs_here_or_says_in_one_line_what_to_type(group: str, command: str, tmp_path: Path):
    try:
        t = translate(group, [command], tmp_path)
    except CommandMoved as exc:
        assert "\n" not in str(exc) and "not available here: " in str(exc)
    except ConfigError as exc:  # ours, but it needs its arguments
        assert "\n" not in str(exc)
    else:
        assert t.command in {"run", "collect", "reverify", "report", "init", "status", "aggregate"}


def test_reverify_flags_become_ng_reverifys_keys(tmp_path: Path):
    t = translate(
        "eval",
        ["reverify", "--rollouts", "r.jsonl", "-o", "y.jsonl", "--config", "a.yaml", "--concurrency", "8",
         "--limit", "5", "--overwrite", "--input-format", "gym", "--inputs", "m.jsonl", "--force"],
        tmp_path,
    )  # fmt: skip
    assert t.command == "reverify"
    assert t.args == [
        "+config_paths=[a.yaml]",
        "+input_jsonl_fpath=r.jsonl",
        "+output_jsonl_fpath=y.jsonl",
        "+concurrency=8",
        "+limit=5",
        "+overwrite=true",
    ]
    with pytest.raises(ConfigError, match="--judge-failed-only is not supported: every row is re-scored"):
        translate("eval", ["reverify", "--rollouts", "r.jsonl", "--judge-failed-only"], tmp_path)
    with pytest.raises(ConfigError, match="--input-format is not supported"):
        translate("eval", ["reverify", "--rollouts", "r.jsonl", "--input-format", "atif"], tmp_path)


def test_an_unknown_flag_or_command_is_one_line_naming_it(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown flag '--frobnicate'"):
        translate("env", ["start", "--frobnicate", "1"], tmp_path)
    with pytest.raises(ConfigError, match="unknown command 'launch'.*start, prefetch"):
        translate("env", ["launch"], tmp_path)


def _row(task: int, rollout: int, reward: float, agent: str = "a") -> dict:
    return {
        "_ng_task_index": task,
        "_ng_rollout_index": rollout,
        "reward": reward,
        "agent_ref": {"name": agent},
        "_ng_environment_server": f"{agent}_environment_server",
        "response": {"output": [{"type": "message"}], "usage": {"input_tokens": 3, "output_tokens": 2}},
        "responses_create_params": {"input": "hi"},
    }


def test_aggregate_merges_shards_in_order_and_writes_07s_metrics_file(tmp_path: Path):
    (tmp_path / "s0.jsonl").write_text("".join(json.dumps(_row(t, 0, 1.0)) + "\n" for t in (2, 0)))
    (tmp_path / "s1.jsonl").write_text(json.dumps(_row(1, 0, 0.0)) + "\n" + json.dumps(_row(0, 0, 1.0, "b")) + "\n")
    (tmp_path / "s1_failures.jsonl").write_text("not even json\n")
    count, shards, path = merge_shards(str(tmp_path / "s*.jsonl"), tmp_path / "merged.jsonl")
    assert count == 4 and [p.name for p in shards] == ["s0.jsonl", "s1.jsonl"]
    merged = [json.loads(line) for line in (tmp_path / "merged.jsonl").read_text().splitlines()]
    assert [(r["_ng_task_index"], r["agent_ref"]["name"]) for r in merged] == [(0, "a"), (0, "b"), (1, "a"), (2, "a")]
    entries = json.loads(path.read_text())
    assert path.name == "merged_aggregate_metrics.json"
    assert [(e["agent_ref"]["name"], e["_ng_environment_server"]) for e in entries] == [
        ("a", "a_environment_server"),
        ("b", "b_environment_server"),
    ]
    assert entries[0]["agent_metrics"]["mean/reward"] == pytest.approx(2 / 3)
    assert entries[0]["key_metrics"]["mean/input_tokens"] == 3.0
    assert "responses_create_params" not in entries[0]["group_level_metrics"][0]["rollout_infos"][0]
