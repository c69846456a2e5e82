"""NeMo Gym 0.7's config directives (``_inherit_from``, ``_copy``, ``_delete_key``, the
``${inherit_from:...}``/``${copy:...}`` swaps) as our composer applies them, against what 0.7's
own code gives on the same inputs: directive_cases.expected.json, written by
directive_oracle.py under 0.7's interpreter (the interop test below re-runs it)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from nemo_gym_cli.config import load_config
from nemo_gym_cli.config.directives import apply_directives, has_directives
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.options import RESERVED_KEYS
from support.cli import run_cli

HERE = Path(__file__).parent
CASES = yaml.safe_load((HERE / "directive_cases.yaml").read_text())
EXPECTED = json.loads((HERE / "directive_cases.expected.json").read_text())
VENV07 = Path(os.environ.get("NG_NEMO_GYM07_VENV", Path.home() / ".cache/nemo-gym-cli/interop/nemo-gym07-py313"))


def _ours(case: dict[str, Any]) -> dict[str, Any]:
    cfg = OmegaConf.create(case)
    apply_directives(cfg, lambda path: "case.yaml", RESERVED_KEYS)
    out = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(out, dict)
    return out


def _left_unapplied(config: dict[str, Any]) -> bool:
    """0.7's result still holds a directive (a chain, a cycle, a list item's): refused here."""
    inner = {k: v for k, v in config.items() if k not in RESERVED_KEYS}
    return has_directives(OmegaConf.create(inner))


@pytest.mark.parametrize("name", sorted(CASES))
def test_directives_compose_as_nemo_gym_07_does(name: str) -> None:
    expected = EXPECTED["cases"][name]
    if "error" in expected or _left_unapplied(expected["config"]):
        with pytest.raises(ConfigError) as raised:
            _ours(CASES[name])
        message = str(raised.value)
        assert "\n" not in message and "(case.yaml)" in message
    else:
        assert _ours(CASES[name]) == expected["config"]


def test_every_case_has_an_expectation() -> None:
    assert set(EXPECTED["cases"]) == set(CASES) and EXPECTED["nemo_gym"] == "0.7.0"


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("missing_path", "b._inherit_from (case.yaml): _inherit_from 'a.nope': there is no key 'a.nope'"),
        ("copy_of_a_moved_value", "there is no key 'a' (it was moved by an earlier _inherit_from)"),
        ("chain", "a._inherit_from (case.yaml): _inherit_from 'b', which has directives of its own"),
        ("cycle", "a._inherit_from (case.yaml): _inherit_from 'b', which has directives of its own"),
        ("delete_key_absent_after_inherit", "b._delete_key (case.yaml): 'nope' is not a key of b"),
        ("in_a_list", "agent.datasets.0._copy (case.yaml): NeMo Gym 0.7 leaves this directive unapplied"),
        ("agent_moved_to_two_names_still_named", "still names agent 'base_agent', which _inherit_from moved to"),
        ("inherit_a_value_into_a_mapping", "_inherit_from 'a.x' is a value, not a mapping"),
    ],
)
def test_a_bad_directive_is_one_line_naming_the_key(name: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _ours(CASES[name])
    assert says in str(raised.value)


@pytest.mark.e2e
def test_a_bad_directive_names_its_file_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("a: {x: 1}\nb:\n  _inherit_from: a.nope\n")
    done = run_cli("ng_run", "+config_paths=[bad.yaml]", "+dry_run=true", cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stdout == "" and done.stderr.strip().splitlines() == [
        "error: b._inherit_from (bad.yaml): _inherit_from 'a.nope': there is no key 'a.nope'; "
        "name an existing key, dotted from the top"
    ], done.stderr


def test_directives_apply_after_the_command_line_and_before_tilde_deletions(tmp_path: Path) -> None:
    """0.7 applies them to files + env.yaml + command line merged: an override of the source is
    inherited, one of the target wins; ``~key`` (ours) deletes from the result."""
    (tmp_path / "c.yaml").write_text(
        "base: {x: 1, y: 2, z: 3}\nkept: {_copy: base, z: 30}\nmine: {_inherit_from: base, y: 20}\n"
    )
    composed = load_config(
        ["+config_paths=[c.yaml]", "++base.x=10", "++mine.z=300", "~kept.y"], cwd=tmp_path, env_yaml=False
    )
    assert composed.options["mine"] == {"x": 10, "y": 20, "z": 300}
    assert composed.options["kept"] == {"x": 10, "z": 30}  # y deleted after the copy
    assert "base" not in composed.options


def test_an_error_about_an_inherited_key_names_the_file_that_set_it(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("base: {port: nope}\n")
    (tmp_path / "c.yaml").write_text("config_paths: [base.yaml]\nmine: {_inherit_from: base}\n")
    from nemo_gym_cli.config.compose import compose

    composed = compose(["+config_paths=[c.yaml]"], cwd=tmp_path, env_yaml=False)
    assert composed.sources.of("mine._inherit_from") == "c.yaml"
    assert composed.sources.of("mine.port") == "base.yaml"


@pytest.mark.interop
@pytest.mark.skipif(not (VENV07 / "bin/python").exists(), reason="NeMo Gym 0.7.0's environment is not built")
def test_the_expectations_are_what_nemo_gym_07_gives_today() -> None:
    done = subprocess.run(
        [str(VENV07 / "bin/python"), str(HERE / "directive_oracle.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == EXPECTED
