"""Placement on Ray as configured, checked without a cluster: the ``ray`` key and the
instances' ``num_replicas``/``num_cpus`` are strict, bad values are one line (exit code 2),
and without ``ray`` nothing imports Ray."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nemo_gym_cli.config import RayOptions, load_config
from nemo_gym_cli.errors import ConfigError
from support.cli import ROOT, run_cli

OFFLINE = "+config_paths=[configs/offline.yaml]"
WEATHER = "simple_weather.resources_servers.simple_weather"


def _load(*args: str):
    return load_config([OFFLINE, *args], cwd=ROOT, command={"config_paths", "head_server", "ray"}, env_yaml=False)


def test_ray_placement_is_read_into_the_config():
    config = _load("+ray.address=local", f"++{WEATHER}.num_replicas=3", f"++{WEATHER}.num_cpus=0.5")
    assert config.ray == RayOptions("local")
    weather = config.instances["simple_weather"]
    assert (weather.num_replicas, weather.num_cpus) == (3, 0.5)
    assert "num_replicas" not in weather.fields and "num_cpus" not in weather.fields  # the supervisor's keys
    assert (config.instances["policy_model"].num_replicas, config.instances["policy_model"].num_cpus) == (1, 1.0)
    assert _load("+ray.address=10.0.0.5:6379").ray == RayOptions("10.0.0.5:6379")
    assert _load("+ray.address=auto", "+ray.placement_timeout_s=600").ray == RayOptions("auto", 600.0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["+ray.adress=auto"], "ray.adress (command line): unknown key; did you mean 'address'?"),
        (["+ray.address=auto", "+ray.placement_timeout=5"], "did you mean 'placement_timeout_s'?"),
        (["+ray.address=auto", "+ray.placement_timeout_s=0"], "ray.placement_timeout_s (command line) must be a"),
        (["+ray.address=auto", "+ray.placement_timeout_s=true"], "ray.placement_timeout_s (command line) must be a"),
        (["+ray.address=ray://h:10001"], "Ray Client (ray://) is not supported"),
        (["+ray.address=somewhere"], "must be auto (a running cluster), local (a new one on this machine) or a head"),
        (["+ray=auto"], "ray (command line) must be a mapping such as {address: auto}"),
        ([f"++{WEATHER}.num_replicas=2"], f"{WEATHER}.num_replicas places replicas on a Ray cluster: add +ray.address"),
        ([f"++{WEATHER}.num_cpus=2"], f"{WEATHER}.num_cpus places replicas on a Ray cluster"),
        (["+ray.address=auto", f"++{WEATHER}.num_replicas=0"], "num_replicas must be a whole number of at least 1"),
        (["+ray.address=auto", f"++{WEATHER}.num_cpus=0"], "num_cpus must be a number of CPUs above 0"),
        (["+ray.address=auto", f"++{WEATHER}.port=9000"], f"{WEATHER}.port: on a Ray cluster each replica listens"),
    ],
)
def test_bad_ray_placement_is_one_error_naming_the_key(args, message):
    with pytest.raises(ConfigError) as caught:
        _load(*args)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_one_replica_without_ray_is_fine():
    assert _load(f"++{WEATHER}.num_replicas=1").instances["simple_weather"].num_replicas == 1


@pytest.mark.e2e
def test_ng_run_says_in_one_line_what_is_wrong_with_the_placement_and_exits_2():
    result = run_cli("ng_run", OFFLINE, f"++{WEATHER}.num_replicas=2", "+head_server.port=1")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr + result.stdout


def test_without_the_ray_extra_a_ray_address_is_one_line_saying_how_to_install_it(monkeypatch):
    from nemo_gym_cli.process.supervisor import connect_cluster

    monkeypatch.delitem(sys.modules, "nemo_gym_cli.process.ray_replicas", raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    with pytest.raises(
        ConfigError, match=r"needs Ray, which is not installed: pip install -e '\.\[ray\]' in a clone of nemo-gym-cli"
    ):
        connect_cluster(RayOptions("local"))


@pytest.mark.e2e
def test_without_ray_configured_running_servers_imports_no_ray(tmp_path: Path):
    """The whole ng_run path (config, supervisor, servers up and down, head server) in a fresh
    interpreter: Ray is never imported, installed or not."""
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from nemo_gym_cli.commands import collect, run
        from nemo_gym_cli.config import load_config
        from nemo_gym_cli.process.head import HeadServer
        from nemo_gym_cli.process.supervisor import running_servers
        from nemo_gym_cli.server import agent, resources

        config = load_config(["{OFFLINE}"], cwd=Path("{ROOT}"), env_yaml=False)

        async def main():
            async with running_servers(config, stop_event=asyncio.Event()) as supervisor:
                HeadServer(config, supervisor.describe)
                assert all(row["ready"] for row in supervisor.describe())

        asyncio.run(main())
        loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
        print("ray modules:", loaded)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ray modules: []" in result.stdout
