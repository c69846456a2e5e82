"""``ng init``: the templates are written with the name filled in, bad input is refused in one
line, and each scaffold passes its own tests at once (its offline run to reward 1 included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_gym_cli.commands.init import init
from nemo_gym_cli.config import load_config
from nemo_gym_cli.errors import ConfigError
from support.cli import run_cli

RESOURCES_FILES = [
    "README.md",
    "__init__.py",
    "app.py",
    "configs/my_env.yaml",
    "data/example.jsonl",
    "tests/test_my_env.py",
]


def test_a_resources_server_is_written_from_the_template_with_the_name_filled_in(tmp_path: Path) -> None:
    written = init("resources_server", "my_env", tmp_path)
    folder = tmp_path / "resources_servers" / "my_env"
    assert sorted(str(p.relative_to(folder)) for p in written) == sorted(RESOURCES_FILES)
    for path in written:
        text = path.read_text()
        assert "${" not in text and "NAME" not in str(path)
        if path.suffix == ".py":
            compile(text, str(path), "exec")
    assert "class MyEnv(ResourcesServer):" in (folder / "app.py").read_text()
    # The config is one the loader accepts from the user's directory (the emulator's from the package).
    config = load_config(
        ["+config_paths=[configs/offline_model.yaml,resources_servers/my_env/configs/my_env.yaml]"],
        cwd=tmp_path,
        env_yaml=False,
    )
    assert {"my_env", "my_env_simple_agent", "policy_model"} <= set(config.instances)
    assert config.instances["my_env"].entrypoint == str((folder / "app.py").resolve())


def test_an_agent_is_written_under_responses_api_agents(tmp_path: Path) -> None:
    written = init("agent", "my_agent", tmp_path)
    folder = tmp_path / "responses_api_agents" / "my_agent"
    assert {str(p.relative_to(folder)) for p in written} >= {
        "app.py",
        "configs/my_agent.yaml",
        "tests/test_my_agent.py",
    }
    assert "class MyAgent(Agent):" in (folder / "app.py").read_text()
    assert "async def loop(self, rollout: Rollout" in (folder / "app.py").read_text()


@pytest.mark.parametrize("name", ["My-Env", "1env", "my env", "", "class", "env_", "a" * 65, "../evil", "émile"])
def test_a_bad_name_is_refused_in_one_line_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as refused:
        init("resources_server", name, tmp_path)
    assert "not a valid name" in str(refused.value) and "\n" not in str(refused.value)
    assert refused.value.exit_code == 2 and list(tmp_path.iterdir()) == []


def test_an_unknown_kind_or_an_existing_folder_is_refused_and_nothing_is_changed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown kind 'environment'; use one of: resources_server, agent"):
        init("environment", "my_env", tmp_path)
    existing = tmp_path / "resources_servers" / "my_env"
    existing.mkdir(parents=True)
    (existing / "app.py").write_text("# mine\n")
    with pytest.raises(ConfigError, match="resources_servers/my_env already exists"):
        init("resources_server", "my_env", tmp_path)
    assert [p.name for p in existing.iterdir()] == ["app.py"] and (existing / "app.py").read_text() == "# mine\n"


@pytest.mark.e2e
def test_ng_init_and_ng_init_resources_server_scaffold_and_refuse_in_one_line_with_exit_2(tmp_path: Path) -> None:
    made = run_cli("ng", "init", "resources_server", "first_env", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "created resources_servers/first_env/" in made.stdout and "pytest resources_servers/first_env" in made.stdout
    assert run_cli("ng_init_resources_server", "second_env", cwd=tmp_path).returncode == 0
    assert (tmp_path / "resources_servers" / "second_env" / "app.py").is_file()
    for args in (["ng", "init", "resources_server", "first_env"], ["ng_init_resources_server", "Bad-Name"]):
        refused = run_cli(*args, cwd=tmp_path)
        assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
        assert refused.stderr.startswith("error: ng init: ")


@pytest.mark.e2e
def test_each_scaffold_passes_its_own_tests_at_once(tmp_path: Path) -> None:
    assert run_cli("ng", "init", "resources_server", "my_env", cwd=tmp_path).returncode == 0
    assert run_cli("ng", "init", "agent", "my_agent", cwd=tmp_path).returncode == 0
    # As a user runs them, from their directory: no config of ours, no sys.path edits.
    result = run_cli(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "resources_servers/my_env",
        "responses_api_agents/my_agent",
        cwd=tmp_path,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 passed" in result.stdout


@pytest.mark.e2e
def test_a_new_environment_scores_1_offline_with_its_tool_and_0_when_the_tool_is_broken(tmp_path: Path) -> None:
    from nemo_gym_cli.testing import collect_offline

    init("resources_server", "my_env", tmp_path)
    app = tmp_path / "resources_servers" / "my_env" / "app.py"
    args = (
        "resources_servers/my_env/configs/my_env.yaml",
        "my_env_simple_agent",
        "resources_servers/my_env/data/example.jsonl",
    )
    rows = collect_offline(*args, tmp_path / "working.jsonl", cwd=tmp_path)
    assert [row["reward"] for row in rows] == [1.0, 1.0, 1.0]
    # The tool counts wrong: the scripted answers quote its count, so every row scores 0.
    source = app.read_text()
    broken = source.replace(
        'return {"letter": letter.strip(), "count": count}', 'return {"letter": letter.strip(), "count": count + 100}'
    )
    assert broken != source
    app.write_text(broken)
    rows = collect_offline(*args, tmp_path / "broken.jsonl", cwd=tmp_path)
    assert [row["reward"] for row in rows] == [0.0, 0.0, 0.0]
    assert all(
        f"occurs {row['expected_answer'] + 100} times" in row["response"]["output"][-1]["content"][0]["text"]
        for row in rows
    )
