"""Runs with no NeMo Gym server never look at NeMo Gym's cache; a Python too old for
nemo-gym is one line and exit 2."""

from __future__ import annotations

import signal
import zipfile
from pathlib import Path

import pytest

from support.cli import NgRun, run_cli

pytestmark = pytest.mark.e2e


def test_a_plain_offline_run_never_touches_the_nemo_gym_cache(tmp_path: Path) -> None:
    cache = {"NG_VENV_CACHE": str(tmp_path / "ng"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    run = NgRun(env=cache)
    try:
        run.wait_ready()
    finally:
        assert run.stop(signal.SIGINT) == 0
    assert not (tmp_path / "ng").exists() and not (tmp_path / "xdg").exists()


def test_ng_run_refuses_a_python_below_nemo_gyms_requirement_in_one_line(tmp_path: Path) -> None:
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\necho 3.13.0\n")  # a fake interpreter: only its version is asked
    python.chmod(0o755)
    (tmp_path / "cache" / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(tmp_path / "cache" / "wheels" / "nemo_gym-0.7.0-py3-none-any.whl", "w") as z:
        z.writestr("nemo_gym-0.7.0.dist-info/METADATA", "Name: nemo-gym\nRequires-Python: >=3.13.14\n")
        z.writestr("resources_servers/mcqa/configs/mcqa.yaml", "")
    done = run_cli(
        "ng_run",
        "+config_paths=[configs/offline_model.yaml,nemo_gym:resources_servers/mcqa/configs/mcqa.yaml]",
        f"+nemo_gym.python={python}",
        f"+nemo_gym.cache_dir={tmp_path / 'cache'}",
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "requires Python >=3.13.14" in lines[0] and "3.13.0" in lines[0]
    assert "+nemo_gym.python=" in lines[0] and "+nemo_gym.ignore_requires_python=true" in lines[0]
