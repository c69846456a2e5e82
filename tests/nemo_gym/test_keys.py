"""NeMo Gym 0.7's reserved top-level keys: honoured, accepted in shared files, or refused in
one line saying why; and the nemo_gym: block."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS, RUN_OPTIONS
from nemo_gym_cli.config import load_config
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.options import HONOURED, REFUSED, SHARED, NemoGymOptions

OFFLINE = "+config_paths=[configs/offline.yaml]"


def _run(*args: str, cwd: Path | None = None):
    return load_config([OFFLINE, *args], command=RUN_OPTIONS, everywhere=ALL_OPTIONS, cwd=cwd, env_yaml=False)


def test_every_reserved_key_of_nemo_gym_07_has_a_place_in_the_table() -> None:
    reserved = {
        "config_paths", "entrypoint", "default_host", "head_server", "disallowed_ports", "head_server_deps",
        "python_version", "pip_install_verbose", "use_absolute_ip", "uv_pip_set_python", "skip_venv_if_present",
        "hf_token", "ray_head_node_address", "port_range_low", "port_range_high", "dry_run",
        "server_spinup_timeout_seconds", "model_endpoint_readiness_timeout_seconds", "allow_openai_version_skew",
        "uv_cache_dir", "uv_lock_timeout_seconds", "uv_venv_dir", "results_dir", "cache_dir", "_inherit_from",
        "_copy", "nemo_gym_log_dir", "verbose", "json", "query", "observability_enabled", "model_call_capture_dir",
        "token_id_capture", "component_name", "skip_verification", "skip_verification_reward", "telemetry",
        "allow_unsupported_pairing", "environment_server_name", "environment_server_routes",
        "environment_routing_mode",
    }  # fmt: skip
    placed = set(HONOURED) | set(SHARED) | set(REFUSED)
    assert reserved - placed == set()
    assert not set(HONOURED) & set(REFUSED) and not set(SHARED) & set(REFUSED)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("port_range_low=10001", "ports are chosen free by the OS"),
        ("uv_cache_dir=/tmp/x", "nemo_gym.*"),
        ("python_version=3.13.14", "nemo_gym.*"),
        ("model_endpoint_readiness_timeout_seconds=0", "does not wait on model endpoints"),
    ],
)
def test_a_reserved_key_that_does_not_apply_is_refused_in_one_line_saying_why(key: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _run("+" + key)
    message = str(caught.value)
    assert "does not apply here" in message and says in message and "\n" not in message


def test_a_refused_key_is_refused_in_a_shared_config_file_too(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text("port_range_low: 10001\n")
    with pytest.raises(ConfigError, match=r"'port_range_low' \(shared.yaml\).*ports are chosen free by the OS"):
        load_config(
            ["+config_paths=[configs/offline.yaml,shared.yaml]"],
            command=RUN_OPTIONS,
            everywhere=ALL_OPTIONS,
            cwd=tmp_path,
            env_yaml=False,
        )


def test_collector_keys_are_accepted_in_a_shared_file_but_not_on_ng_runs_command_line(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text("environment_routing_mode: agent\ninterleave_repeats: true\n")
    config = load_config(
        ["+config_paths=[configs/offline.yaml,shared.yaml]"],
        command=RUN_OPTIONS,
        everywhere=ALL_OPTIONS,
        cwd=tmp_path,
        env_yaml=False,
    )
    assert config.options["environment_routing_mode"] == "agent"
    with pytest.raises(ConfigError, match="'environment_routing_mode' \\(command line\\): unknown key"):
        _run("+environment_routing_mode=agent")


def test_ng_run_honours_dry_run_the_spin_up_timeout_and_a_ray_cluster_to_join() -> None:
    config = _run("+dry_run=true", "+server_spinup_timeout_seconds=5", "+ray_head_node_address=127.0.0.1:6379")
    assert config.options["dry_run"] is True and config.options["server_spinup_timeout_seconds"] == 5
    assert config.options["ray_head_node_address"] == "127.0.0.1:6379"


def test_nemo_gym_block_is_accepted_by_every_command_and_parsed_into_its_options(tmp_path: Path) -> None:
    config = _run(f"+nemo_gym.cache_dir={tmp_path}", "+nemo_gym.ignore_requires_python=true")
    assert config.nemo_gym == NemoGymOptions(cache_dir=str(tmp_path), ignore_requires_python=True)
    assert "nemo_gym" in COLLECT_OPTIONS
    with pytest.raises(ConfigError, match="nemo_gym.venvv .*unknown key.*did you mean 'venv'"):
        _run("+nemo_gym.venvv=/tmp")
    with pytest.raises(ConfigError, match="nemo_gym.venv .* is not a directory"):
        _run(f"+nemo_gym.venv={tmp_path / 'nothing'}")


def test_nemo_gym_cache_honours_ng_venv_cache_like_the_interop_setup(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NG_VENV_CACHE", str(tmp_path))
    assert NemoGymOptions().cache_path() == tmp_path / "nemo_gym"
    monkeypatch.delenv("NG_VENV_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert NemoGymOptions().cache_path() == tmp_path / "xdg" / "nemo-gym-cli" / "nemo_gym"
