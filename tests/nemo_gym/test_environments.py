"""Building NeMo Gym's environments: requirements, the Python requirement, the refusal line."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.environments import Environments, requirements_of, satisfies
from nemo_gym_cli.nemo_gym.options import NemoGymOptions


def test_requirements_drop_nemo_gyms_self_reference_blanks_and_comments(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "-e nemo-gym[dev] @ ../../\n\n# a comment\ntiktoken  # why\nsympy==1.13\n"
    )
    assert requirements_of(tmp_path) == ["tiktoken", "sympy==1.13"]
    assert requirements_of(tmp_path / "none") == []


def test_requires_python_specifiers() -> None:
    assert not satisfies("3.13.0", ">=3.13.14")
    assert satisfies("3.13.14", ">=3.13.14")
    assert satisfies("3.14.1", ">=3.13.14,<4")
    assert not satisfies("3.12.9", "~=3.13")
    assert satisfies("3.13.2", "==3.13.*")


def _fake_interpreter(tmp_path: Path, version: str) -> Path:
    python = tmp_path / "python3"
    python.write_text(f"#!/bin/sh\necho {version}\n")
    python.chmod(0o755)
    return python


def _fake_wheel(cache: Path, requires: str) -> None:
    (cache / "wheels").mkdir(parents=True)
    with zipfile.ZipFile(cache / "wheels" / "nemo_gym-0.7.0-py3-none-any.whl", "w") as z:
        z.writestr(
            "nemo_gym-0.7.0.dist-info/METADATA", f"Name: nemo-gym\nVersion: 0.7.0\nRequires-Python: {requires}\n"
        )
        z.writestr("resources_servers/mcqa/app.py", "")


def test_an_interpreter_below_requires_python_is_one_line_naming_both_ways_out(tmp_path: Path) -> None:
    python = _fake_interpreter(tmp_path, "3.13.0")
    _fake_wheel(tmp_path / "cache", ">=3.13.14")
    environments = Environments(NemoGymOptions(python=str(python), cache_dir=str(tmp_path / "cache")))
    with pytest.raises(ConfigError) as caught:
        environments.base()
    message = str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in message
    assert "nemo-gym 0.7.0 requires Python >=3.13.14" in message and "3.13.0" in message and str(python) in message
    assert "+nemo_gym.python=" in message and "+nemo_gym.ignore_requires_python=true" in message
    assert not list((tmp_path / "cache").glob("base-*"))  # refused before anything was installed


def test_ignore_requires_python_takes_the_newest_of_the_required_minor_version(tmp_path: Path) -> None:
    python = _fake_interpreter(tmp_path, "3.13.0")
    _fake_wheel(tmp_path / "cache", ">=3.13.14")
    options = NemoGymOptions(python=str(python), cache_dir=str(tmp_path / "cache"), ignore_requires_python=True)
    assert Environments(options).interpreter(">=3.13.14") == (str(python), "3.13.0")


def test_whether_nemo_gym_ships_a_folder_is_read_from_its_wheel_without_building(tmp_path: Path) -> None:
    _fake_wheel(tmp_path / "cache", ">=3.13.14")
    environments = Environments(NemoGymOptions(cache_dir=str(tmp_path / "cache")))
    assert environments.ships("resources_servers/mcqa")
    assert not environments.ships("resources_servers/mcqaa")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["wheels"]
