"""Both ways a server process starts: forked from the preloaded fork server (the default on
Linux), and spawned as ``python -m nemo_gym_cli.server.serve`` (``NG_SERVER_START=spawn``,
the fallback where forking is not available). Each serves a collection to reward 1, stops on
Ctrl-C, and dies with a SIGKILLed ng_run (its lifeline)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from support.cli import NgRun, run_cli
from support.procs import descendants, still_alive

pytestmark = pytest.mark.e2e

EXAMPLE = "resources_servers/simple_weather/data/example.jsonl"
MODES = {"fork server": {}, "spawn": {"NG_SERVER_START": "spawn"}}


def _cmdlines(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            pass
    return out


@pytest.mark.parametrize("mode", MODES, ids=list(MODES))
def test_servers_serve_a_collection_and_stop_on_ctrl_c(mode: str, tmp_path: Path) -> None:
    run = NgRun(env=MODES[mode])
    try:
        run.wait_ready()
        family = descendants(run.proc.pid)
        spawned = [c for c in _cmdlines(family) if "nemo_gym_cli.server.serve" in c]
        forkserver = [c for c in _cmdlines(family) if "nemo_gym_cli.process.forkserver" in c]
        if mode == "spawn":
            assert len(spawned) == 4 and not forkserver  # emulator, model, agent, resources
        else:
            assert len(forkserver) == 5 and not spawned  # the fork server and its 4 forks (same cmdline)
        collected = run_cli(
            "ng_collect_rollouts",
            f"+head_server.port={run.head_port}",
            "+agent_name=simple_weather_simple_agent",
            f"+input_jsonl_fpath={EXAMPLE}",
            f"+output_jsonl_fpath={tmp_path / 'out.jsonl'}",
        )
        assert collected.returncode == 0, collected.stderr
        assert "mean reward 1.0000 over 5" in collected.stdout
    finally:
        code = run.stop(signal.SIGINT)
    assert code == 0
    assert still_alive(family, timeout=10) == []


def test_spawned_servers_die_with_a_killed_ng_run() -> None:
    run = NgRun(env=MODES["spawn"])
    try:
        run.wait_ready()
        family = descendants(run.proc.pid)
        assert len(family) >= 4
        run.proc.kill()  # SIGKILL: only the lifelines can stop the servers now
        run.proc.wait(5)
        assert still_alive(family, timeout=10) == []
    finally:
        run.stop()
