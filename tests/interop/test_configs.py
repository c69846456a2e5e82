"""Configs across toolkits: a NeMo Gym config composes in ours, ours in NeMo Gym's loader.

NeMo Gym's loader rules are in docs/nemo_gym.md ("Config"). NeMo Gym commands run in a
scratch directory (Hydra writes ./outputs/ there), with absolute config paths. Our offline
configs (``configs/offline*.yaml``: the emulator, ``${ng_url:...}``) are ours only; every
environment config loads in both.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from interop_harness import OUR_PYTHON, ROOT, nemo_gym_cli, nemo_gym_site

POLICY = ["+policy_base_url=http://127.0.0.1:9/v1", "+policy_api_key=sk-dummy", "+policy_model_name=m"]

#: Our loader as a snippet: argv[1] the working directory, argv[2:] the overrides.
OUR_LOAD = r"""
import json, sys
from pathlib import Path
from nemo_gym_cli.config import load_config
cfg = load_config(sys.argv[2:], cwd=Path(sys.argv[1]))
print(json.dumps({n: [i.server_type, i.implementation, Path(i.entrypoint).name] for n, i in cfg.instances.items()}))
"""


def _dump_nemo_gym(
    config_paths: list[Path | str], tmp: Path, *extra: str, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """NeMo Gym's ng_dump_config in ``cwd`` (default ``tmp``); Hydra's run dir goes to ``tmp``."""
    return nemo_gym_cli(
        "ng_dump_config",
        f"+config_paths=[{','.join(map(str, config_paths))}]",
        *extra,
        f"hydra.run.dir={tmp / 'hydra'}",
        "hydra.output_subdir=null",
        cwd=cwd or tmp,
    )


def test_we_compose_nemo_gym_example_configs_from_its_install_root() -> None:
    site = nemo_gym_site()
    paths = [
        "responses_api_models/openai_model/configs/openai_model.yaml",
        "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
        "resources_servers/example_session_state_mgmt/configs/example_session_state_mgmt.yaml",
    ]
    proc = subprocess.run(
        [str(OUR_PYTHON), "-c", OUR_LOAD, str(site), f"+config_paths=[{','.join(paths)}]", *POLICY],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1]) == {
        "policy_model": ["responses_api_models", "openai_model", "app.py"],
        "example_single_tool_call": ["resources_servers", "example_single_tool_call", "app.py"],
        "example_single_tool_call_simple_agent": ["responses_api_agents", "simple_agent", "app.py"],
        "example_session_state_mgmt_resources_server": ["resources_servers", "example_session_state_mgmt", "app.py"],
        "example_session_state_mgmt_simple_agent": ["responses_api_agents", "simple_agent", "app.py"],
    }


def test_nemo_gym_loads_its_own_example_configs(tmp_path: Path) -> None:
    """Baseline for the two below: its loader on its own files."""
    site = nemo_gym_site()
    paths = [
        site / "responses_api_models/openai_model/configs/openai_model.yaml",
        site / "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    ]
    proc = _dump_nemo_gym(paths, tmp_path, *POLICY)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "policy_api_key: '****'" in proc.stdout  # ng_dump_config hides keys with 'key'/'token' in the name


@pytest.mark.parametrize("environment", ["simple_weather", "calculator"])
def test_nemo_gym_loads_our_environment_configs(environment: str, tmp_path: Path) -> None:
    """Every resources server config of ours carries NeMo Gym's required ``domain`` and no
    resolver of ours: NeMo Gym's loader takes it with its own model config."""
    paths = [
        nemo_gym_site() / "responses_api_models/openai_model/configs/openai_model.yaml",
        ROOT / f"resources_servers/{environment}/configs/{environment}.yaml",
    ]
    proc = _dump_nemo_gym(paths, tmp_path, *POLICY)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"{environment}_simple_agent:" in proc.stdout
    assert "domain:" in proc.stdout


def test_a_config_of_both_toolkits_loads_in_both(tmp_path: Path) -> None:
    """NeMo Gym's model and weather example next to our simple_weather, in one composition,
    through each toolkit's loader (NeMo Gym's resolves relative paths in its install root)."""
    theirs = [
        "responses_api_models/openai_model/configs/openai_model.yaml",
        "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    ]
    ours = [str(ROOT / "resources_servers/simple_weather/configs/simple_weather.yaml")]
    proc = _dump_nemo_gym([*theirs, *ours], tmp_path, *POLICY)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    dumped = yaml.safe_load(proc.stdout)
    assert {"example_single_tool_call_simple_agent", "simple_weather_simple_agent"} <= set(dumped)
    loaded = subprocess.run(
        [str(OUR_PYTHON), "-c", OUR_LOAD, str(nemo_gym_site()), f"+config_paths=[{','.join(theirs + ours)}]", *POLICY],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    instances = json.loads(loaded.stdout.splitlines()[-1])
    assert instances["simple_weather"] == ["resources_servers", "simple_weather", "app.py"]
    assert instances["example_single_tool_call"] == ["resources_servers", "example_single_tool_call", "app.py"]
