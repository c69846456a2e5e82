"""Building NeMo Gym's environments: requirements, the Python requirement, the refusal line."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.environments import Environments, derived_plan, requirements_of, satisfies
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


_PYPROJECT = """[project]
name = "tiny-server"
version = "0.0.0"
dependencies = ["tomli-w"]

[build-system]
build-backend = "setuptools.build_meta"
requires = ["setuptools>=61"]

[tool.setuptools]
py-modules = []
"""


def _folder(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / "resources_servers" / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def test_a_pyproject_only_folder_is_installed_editable_keyed_by_folder_and_content(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "tiny", {"pyproject.toml": _PYPROJECT})
    plan = derived_plan(folder)
    assert plan is not None and plan.install == ["-e", str(folder.resolve())]  # 0.7: uv pip install -e .
    twin = derived_plan(_folder(tmp_path, "twin", {"pyproject.toml": _PYPROJECT}))
    assert twin is not None and twin.key["sha256"] == plan.key["sha256"] and twin.key != plan.key
    (folder / "pyproject.toml").write_text(_PYPROJECT.replace("tomli-w", "tomli-w==1.2.0"))
    changed = derived_plan(folder)
    assert changed is not None and changed.key["sha256"] != plan.key["sha256"]


def test_requirements_are_installed_by_name_and_a_folder_without_either_runs_in_the_base(tmp_path: Path) -> None:
    plan = derived_plan(_folder(tmp_path, "reqs", {"requirements.txt": "-e nemo-gym[dev] @ ../../\ntiktoken\n"}))
    assert plan is not None and plan.install == ["tiktoken"] and plan.key == {"requirements": ["tiktoken"]}
    assert derived_plan(_folder(tmp_path, "self_only", {"requirements.txt": "-e nemo-gym[dev] @ ../../\n"})) is None
    assert derived_plan(_folder(tmp_path, "bare", {"app.py": ""})) is None


def test_a_folder_with_both_files_is_refused_in_one_line_as_nemo_gym_refuses_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "both", {"pyproject.toml": _PYPROJECT, "requirements.txt": "tiktoken\n"})
    with pytest.raises(ConfigError) as caught:
        derived_plan(folder)
    assert "\n" not in str(caught.value) and "both pyproject.toml and requirements.txt" in str(caught.value)
    assert str(folder) in str(caught.value)


@pytest.mark.e2e
def test_a_pyproject_folder_gets_its_dependency_from_pypi_once(tmp_path: Path) -> None:
    """A real build (pip, PyPI) on our own venv as the base, into a cache kept between runs
    (the folder too: it is part of the key), so only the first run pays for it."""
    cache = NemoGymOptions().cache_path().parent / "tests" / "pyproject"
    folder = _folder(cache / "root", "tiny_pyproject", {"pyproject.toml": _PYPROJECT, "app.py": ""})
    built: list[str] = []
    options = NemoGymOptions(venv=sys.prefix, cache_dir=str(cache))
    python = Environments(options, notify=built.append).python_for(folder)
    assert python.parent.parent.parent == cache and python.parent.parent.name.startswith("server-")
    done = subprocess.run([str(python), "-c", "import tomli_w, sys; print(sys.prefix)"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(python.parent.parent)  # its own environment, not the base
    again: list[str] = []
    assert Environments(options, notify=again.append).python_for(folder) == python and again == []
