"""NeMo Gym 0.7.0's own servers under our ng_run, as NeMo Gym ships them: every server ready,
the head lists them, our collector collects their examples, nothing outlives ng_run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import orjson
import pytest
import yaml

from support.cli import NgRun, instances, run_cli
from support.procs import descendants, still_alive

# In the interop suite (scripts/interop): it needs NeMo Gym 0.7.0's environment, built like the peer venvs.
pytestmark = [pytest.mark.e2e, pytest.mark.nemo_gym07, pytest.mark.interop]

ENVIRONMENTS = {
    # agent, config as given on the command line (mcqa: we ship a file of that path)
    "example_single_tool_call": (
        "example_single_tool_call_simple_agent",
        "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    ),
    "example_multi_step": (
        "example_multi_step_simple_agent",
        "resources_servers/example_multi_step/configs/example_multi_step.yaml",
    ),
    "mcqa": ("mcqa_simple_agent", "nemo_gym:resources_servers/mcqa/configs/mcqa.yaml"),
    "example_session_state_mgmt": (
        "example_session_state_mgmt_simple_agent",
        "resources_servers/example_session_state_mgmt/configs/example_session_state_mgmt.yaml",
    ),
    "xlam_fc": ("xlam_fc_simple_agent", "resources_servers/xlam_fc/configs/xlam_fc.yaml"),
}
READY_S = 240


def _site(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def _theirs(pids: list[int], venv: Path) -> list[int]:
    """Those of ``pids`` running NeMo Gym's code: cwd or executable in its environment."""
    out = []
    for pid in pids:
        try:
            where = os.readlink(f"/proc/{pid}/cwd"), os.readlink(f"/proc/{pid}/exe")
        except OSError:
            continue
        if any(w.startswith(str(_site(venv))) or w.startswith(str(venv)) for w in where):
            out.append(pid)
    return out


def _nemo_gym_processes_of(head_port: int) -> list[int]:
    """Every process on this machine whose NEMO_GYM_CONFIG_DICT names our head server."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                environ = Path(f"/proc/{entry}/environ").read_bytes()
            except OSError:
                continue
            if b"NEMO_GYM_CONFIG_DICT=" in environ and f"port: {head_port}\n".encode() in environ:
                out.append(int(entry))
    return out


def test_ng_run_hosts_example_single_tool_call_as_shipped_and_the_head_lists_it(nemo_gym07_venv: Path) -> None:
    config = f"+config_paths=[configs/offline_model.yaml,{ENVIRONMENTS['example_single_tool_call'][1]}]"
    run = NgRun(f"+nemo_gym.venv={nemo_gym07_venv}", config=config)
    try:
        rows = {r["name"]: r for r in run.wait_ready(timeout=READY_S)}
        assert rows["example_single_tool_call"]["runtime"] == "nemo_gym"
        assert rows["example_single_tool_call_simple_agent"]["runtime"] == "nemo_gym"
        # legacy_agent is served by our relay (no private Ray cluster per process)
        assert rows["example_single_tool_call_environment_server"]["runtime"] == "ours"
        assert rows["policy_model"]["runtime"] == "ours"
        theirs = _theirs(run.children, nemo_gym07_venv)
        assert len(theirs) == 2
        assert all(r["ready"] for r in instances(run.head_url))
    finally:
        assert run.stop(signal.SIGINT) == 0
    assert still_alive(run.children, timeout=10) == []


@pytest.mark.parametrize("environment", list(ENVIRONMENTS))
def test_our_collector_collects_each_example_in_one_command(
    environment: str, nemo_gym07_venv: Path, tmp_path: Path
) -> None:
    agent, config = ENVIRONMENTS[environment]
    example = _site(nemo_gym07_venv) / "resources_servers" / environment / "data" / "example.jsonl"
    out = tmp_path / "out.jsonl"
    done = run_cli(
        "ng_collect_rollouts",
        f"+config_paths=[configs/offline_model.yaml,{config}]",
        f"+nemo_gym.venv={nemo_gym07_venv}",
        f"+agent_name={agent}",
        f"+input_jsonl_fpath={example}",
        f"+output_jsonl_fpath={out}",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [orjson.loads(line) for line in out.read_text().splitlines()]
    expected = len(example.read_text().splitlines())
    assert len(rows) == expected and all("reward" in r for r in rows)  # whatever reward the emulator earns


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_nothing_of_nemo_gym_outlives_ng_run(how: str, nemo_gym07_venv: Path) -> None:
    config = f"+config_paths=[configs/offline_model.yaml,{ENVIRONMENTS['example_single_tool_call'][1]}]"
    run = NgRun(f"+nemo_gym.venv={nemo_gym07_venv}", config=config)
    try:
        run.wait_ready(timeout=READY_S)
        family = descendants(run.proc.pid)
        theirs = _nemo_gym_processes_of(run.head_port)
        assert len(theirs) == 2 and set(theirs) <= set(family)
        if how == "ctrl-c":
            assert run.stop(signal.SIGINT) == 0
        else:
            run.proc.kill()  # no handler runs: the kernel's PR_SET_PDEATHSIG and the lifelines must do it
            run.proc.wait(5)
        assert still_alive(family, timeout=15) == []
        assert _nemo_gym_processes_of(run.head_port) == []
    finally:
        run.stop()


def test_a_nemo_gym_server_that_fails_to_import_is_one_error_line_naming_it(
    nemo_gym07_venv: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "resources_servers" / "broken"
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(
        "from nemo_gym.base_resources_server import SimpleResourcesServer\nimport no_such_module_for_this_test\n"
    )
    (tmp_path / "broken.yaml").write_text("broken:\n  resources_servers:\n    broken:\n      entrypoint: app.py\n")
    done = run_cli(
        "ng_run", "+config_paths=[broken.yaml]", f"+nemo_gym.venv={nemo_gym07_venv}", cwd=tmp_path, timeout=120
    )
    assert done.returncode == 1
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stdout + done.stderr
    assert "NeMo Gym server 'broken' (resources_servers/broken" in errors[0]
    assert errors[0].endswith(
        "ModuleNotFoundError: No module named 'no_such_module_for_this_test'; "
        "to start the config without it, add ~broken"
    )
    assert "[broken] Traceback" in done.stdout + done.stderr  # its output above, prefixed


def test_dry_run_builds_the_environments_and_starts_nothing(nemo_gym07_venv: Path) -> None:
    done = run_cli(
        "ng_run",
        f"+config_paths=[configs/offline_model.yaml,{ENVIRONMENTS['example_single_tool_call'][1]}]",
        f"+nemo_gym.venv={nemo_gym07_venv}",
        "+dry_run=true",
    )
    assert done.returncode == 0, done.stderr
    assert "dry run: 2 NeMo Gym server environment(s) ready; no server started" in done.stdout


# NeMo Gym 0.7's example_single_tool_call through its single_agent_turn_legacy environment server
# (which does not declare ray_enabled: 0.7 keeps Ray on for it), as shipped: the environment
# server is `_inherit_from: single_agent_turn_legacy` (config directives, docs/nemo_gym.md).
SINGLE_AGENT_TURN = (
    "nemo_gym:resources_servers/example_single_tool_call/configs/example_single_tool_call_single_agent_turn.yaml"
)


def _named(pids: list[int], name: str) -> list[int]:
    out = []
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                out.append(pid)
        except OSError:
            continue
    return out


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if b"=" in item)


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_servers_that_use_ray_share_one_cluster_that_goes_with_ng_run(how: str, nemo_gym07_venv: Path) -> None:
    config = f"+config_paths=[configs/offline_model.yaml,{SINGLE_AGENT_TURN}]"
    run = NgRun(f"+nemo_gym.venv={nemo_gym07_venv}", config=config)
    try:
        rows = {r["name"]: r for r in run.wait_ready(timeout=READY_S)}
        # every server of the shipped config, the environment server under the name it inherited into
        assert set(rows) >= {
            "policy_model",
            "example_single_tool_call",
            "example_single_tool_call_session_agent",
            "example_single_tool_call_single_agent_turn",
        }
        assert "single_agent_turn_legacy" not in rows  # moved by _inherit_from, not started twice
        turn = rows["example_single_tool_call_single_agent_turn"]
        assert turn["runtime"] == "nemo_gym"
        family = descendants(run.proc.pid)
        # one cluster for the run, none of the server's own (0.7's initialize_ray joined ours)
        assert len(_named(family, "gcs_server")) == 1
        assert _named(descendants(turn["pid"]), "gcs_server") == []
        environ = _environ(turn["pid"])
        address = yaml.safe_load(environ["NEMO_GYM_CONFIG_DICT"])["ray_head_node_address"]
        assert address.startswith("127.0.0.1:") and environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
        # servers that declare ray_enabled = False are not told to join anything they would not use
        assert _named(descendants(rows["example_single_tool_call"]["pid"]), "gcs_server") == []
        family = descendants(run.proc.pid)  # Ray's workers start lazily: everything there is now
        if how == "ctrl-c":
            assert run.stop(signal.SIGINT) == 0
        else:
            run.proc.kill()  # no handler runs: PR_SET_PDEATHSIG, ours and Ray's, must do it
            run.proc.wait(5)
        assert still_alive(family, timeout=30) == []
        assert _nemo_gym_processes_of(run.head_port) == []
    finally:
        run.stop()


def test_our_collector_collects_through_nemo_gyms_own_environment_server_as_shipped(
    nemo_gym07_venv: Path, tmp_path: Path
) -> None:
    """Rows go through 0.7's single_agent_turn_legacy environment server (config directives,
    shared Ray), whose agent calls our model server at ``/ng-rollout/<id>/v1/responses``: every
    row scored by its verifier, stamped with the environment server that ran it."""
    example = _site(nemo_gym07_venv) / "resources_servers/example_single_tool_call/data/example.jsonl"
    out = tmp_path / "out.jsonl"
    done = run_cli(
        "ng_collect_rollouts",
        f"+config_paths=[configs/offline_model.yaml,{SINGLE_AGENT_TURN}]",
        f"+nemo_gym.venv={nemo_gym07_venv}",
        "+agent_name=example_single_tool_call_session_agent",
        f"+input_jsonl_fpath={example}",
        f"+output_jsonl_fpath={out}",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [orjson.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(example.read_text().splitlines())
    assert [r["reward"] for r in rows] == [1.0] * len(rows)  # the emulator's tool caller, verified by theirs
    assert {(r["_ng_environment_server"], r["_ng_result_type"]) for r in rows} == {
        ("example_single_tool_call_single_agent_turn", "single_agent_turn_legacy")
    }
