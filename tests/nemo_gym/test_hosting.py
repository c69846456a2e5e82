"""How NeMo Gym's servers are recognised, named and configured (no process started)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from nemo_gym_cli.config import load_config
from nemo_gym_cli.nemo_gym.hosting import (
    config_dict,
    environment_server_name,
    generated_environment_servers,
    imports_nemo_gym,
)
from nemo_gym_cli.nemo_gym.ray_head import uses_ray


def test_environment_server_name_follows_nemo_gym_07s_rule() -> None:
    assert environment_server_name("simple_weather_simple_agent", "simple_agent") == "simple_weather_environment_server"
    assert environment_server_name("math_agent", "react") == "math_environment_server"
    assert environment_server_name("solver", "react") == "solver_environment_server"
    assert environment_server_name("simple_agent", "simple_agent") == "simple_agent_environment_server"
    taken = {"mcqa_environment_server"}
    assert environment_server_name("mcqa_simple_agent", "simple_agent", taken) == (
        "mcqa_simple_agent_environment_server"
    )
    taken.add("mcqa_simple_agent_environment_server")
    assert environment_server_name("mcqa_simple_agent", "simple_agent", taken) == (
        "mcqa_simple_agent_environment_server_environment_server"
    )


def test_every_agent_without_an_environment_server_gets_the_generated_name() -> None:
    config = load_config(["+config_paths=[configs/offline.yaml]"], env_yaml=False)
    assert generated_environment_servers(config.instances) == {
        "simple_weather_simple_agent": "simple_weather_environment_server"
    }


def test_an_agent_an_environment_server_fronts_gets_none(tmp_path: Path) -> None:
    (tmp_path / "env.yaml").write_text(
        "weather_env:\n  environment_servers:\n    legacy_agent:\n      entrypoint: app.py\n"
        "      agent_server: {type: responses_api_agents, name: simple_weather_simple_agent}\n"
    )
    config = load_config(["+config_paths=[configs/offline.yaml,env.yaml]"], cwd=tmp_path, env_yaml=False)
    assert config.instances["weather_env"].runtime == "ours"  # our relay, wherever the config comes from
    assert generated_environment_servers(config.instances) == {}


def test_a_folder_whose_entrypoint_imports_nemo_gym_is_nemo_gyms_wherever_it_is(tmp_path: Path) -> None:
    app = tmp_path / "resources_servers" / "mine" / "app.py"
    app.parent.mkdir(parents=True)
    app.write_text('"""doc"""\nfrom nemo_gym.base_resources_server import SimpleResourcesServer\n')
    (tmp_path / "mine.yaml").write_text("mine:\n  resources_servers:\n    mine:\n      entrypoint: app.py\n")
    config = load_config(["+config_paths=[mine.yaml]"], cwd=tmp_path, env_yaml=False)
    assert config.instances["mine"].runtime == "nemo_gym"
    assert config.instances["mine"].folder == str(app.parent)
    assert imports_nemo_gym(app) and not imports_nemo_gym(Path("resources_servers/simple_weather/app.py"))


def test_the_child_config_is_nemo_gyms_shape_with_every_host_and_port() -> None:
    config = load_config(["+config_paths=[configs/offline.yaml]"], env_yaml=False)
    urls = {name: f"http://127.0.0.1:{20000 + i}" for i, name in enumerate(config.instances)}
    out = config_dict(config, urls)
    assert out["head_server"] == {"host": config.head_host, "port": config.head_port}
    assert out["dry_run"] is False
    weather = out["simple_weather"]["resources_servers"]["simple_weather"]
    assert weather["host"] == "127.0.0.1" and weather["port"] == 20002 and weather["entrypoint"] == "app.py"
    model = out["policy_model"]["responses_api_models"]["openai_model"]
    assert model["openai_base_url"] == "http://127.0.0.1:20000/api/v1"  # ${ng_url:...} filled in
    assert model["openai_api_key"] == "sk-or-emulator-offline-key"  # in clear, as NeMo Gym's ng_run passes it
    assert yaml.safe_load(yaml.safe_dump(out)) == out
    assert "ray_head_node_address" not in out  # no NeMo Gym server uses Ray: no cluster
    assert config_dict(config, urls, "127.0.0.1:6380")["ray_head_node_address"] == "127.0.0.1:6380"


def test_a_nemo_gym_server_uses_ray_unless_its_entrypoint_declares_it_off(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    cases = {
        "class S(SimpleResourcesServer):\n    ray_enabled = False\n": False,
        "class S(SimpleResourcesServer):\n    ray_enabled: ClassVar[bool | None] = False\n": False,
        "class S(SimpleResourcesServer):\n    ray_enabled = True\n": True,
        "class S(BaseEnvironmentServer):\n    pass\n": True,  # undeclared: 0.7 keeps Ray on
        "class A(X):\n    ray_enabled = False\nclass B(Y):\n    ray_enabled = True\n": True,
        "# ray_enabled = False in a comment\nclass S(X):\n    pass\n": True,
    }
    for text, expected in cases.items():
        app.write_text(text)
        assert uses_ray(app) is expected, text
    assert uses_ray(tmp_path / "missing.py")


def test_the_head_gives_each_unfronted_agent_the_entry_nemo_gym_07_generates_pointing_at_the_agent() -> None:
    from starlette.testclient import TestClient

    from nemo_gym_cli.process.head import HeadServer
    from nemo_gym_cli.server import asgi

    config = load_config(["+config_paths=[configs/offline.yaml]"], env_yaml=False)
    rows = [
        {"name": n, "type": i.server_type, "implementation": i.implementation, "url": f"http://127.0.0.1:{20000 + k}",
         "host": "127.0.0.1", "port": 20000 + k, "pid": None, "ready": True}
        for k, (n, i) in enumerate(config.instances.items())
    ]  # fmt: skip
    with TestClient(asgi(HeadServer(config, lambda: rows))) as client:
        dumped = yaml.safe_load(client.get("/global_config_dict_yaml").json())
    agent_port = dumped["simple_weather_simple_agent"]["responses_api_agents"]["simple_agent"]["port"]
    assert dumped["simple_weather_environment_server"] == {
        "environment_servers": {
            "legacy_agent": {
                "entrypoint": "app.py",
                "agent_server": {"type": "responses_api_agents", "name": "simple_weather_simple_agent"},
                "host": "127.0.0.1",
                "port": agent_port,
            }
        }
    }


def test_relative_paths_in_the_nemo_gym_block_are_taken_from_where_the_command_was_typed(tmp_path, monkeypatch) -> None:
    """The servers run in their own folders: a relative ``cache_dir`` once reached them as
    typed and failed with a traceback (no such ``bin/python``)."""
    from nemo_gym_cli.nemo_gym.options import nemo_gym_options

    (tmp_path / "venv/bin").mkdir(parents=True)
    (tmp_path / "venv/bin/python").symlink_to(sys.executable)
    monkeypatch.chdir(tmp_path)
    options = nemo_gym_options({"cache_dir": "cache/ng", "venv": "./venv", "python": "venv/bin/python"})
    assert options.cache_path() == tmp_path / "cache/ng"
    assert (options.venv, options.python) == (str(tmp_path / "venv"), str(tmp_path / "venv/bin/python"))
