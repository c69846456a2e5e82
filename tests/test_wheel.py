"""The built wheel, not the clone: what `pip install` gives a user runs the offline
collection from any folder (the shipped configs/ and task files found where it installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from support.cli import ROOT

pytestmark = pytest.mark.e2e

COLLECT = "import sys; from nemo_gym_cli.cli import collect_main; sys.argv[0] = 'ng_collect_rollouts'; collect_main()"


def pip(*args: str, cwd: Path = ROOT) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", *args],
                            cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def source_tree(dest: Path) -> Path:
    """The clone's files (tracked, and new ones not ignored) copied to ``dest``: building there
    leaves no build/ in the clone and takes nothing stale from one."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout  # fmt: skip
    for name in filter(None, listed.decode().split("\0")):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_the_wheel_ships_the_configs_and_runs_offline_from_an_empty_folder(tmp_path):
    src = source_tree(tmp_path / "src")
    pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path / "dist"), ".", cwd=src)
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"configs/offline.yaml", "configs/offline_model.yaml", "configs/offline_sweep.yaml"} <= names
    assert "resources_servers/simple_weather/data/example.jsonl" in names
    assert not any(name.startswith("tests/") for name in names)

    site, work = tmp_path / "site", tmp_path / "work"
    pip("install", "--no-deps", "--quiet", "--target", str(site), str(wheel))
    work.mkdir()
    # The installed copy first on the path: it, not the clone's editable install, is imported
    # (here and in every server the collector starts).
    env = {**os.environ, "PYTHONPATH": str(site)}
    args = [
        "+config_paths=[configs/offline.yaml]",
        "+agent_name=simple_weather_simple_agent",
        "+input_jsonl_fpath=resources_servers/simple_weather/data/example.jsonl",
        "+output_jsonl_fpath=out.jsonl",
    ]
    result = subprocess.run([sys.executable, "-c", COLLECT, *args], cwd=work, env=env, capture_output=True,
                            text=True, timeout=180, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 0, result.stderr
    shipped = site / "resources_servers/simple_weather/data/example.jsonl"
    said = "reading the one installed with the toolkit"
    assert f"note: no resources_servers/simple_weather/data/example.jsonl here; {said}: {shipped}" in result.stderr
    rows = [orjson.loads(line) for line in (work / "out.jsonl").read_bytes().splitlines()]
    assert len(rows) == 5 and all(row["reward"] == 1.0 for row in rows)
    metrics = orjson.loads((work / "out_metrics.json").read_bytes())
    assert metrics["run"]["input"]["path"] == str(shipped)


def test_a_missing_task_file_names_both_places_it_was_looked_for(tmp_path):
    result = subprocess.run([sys.executable, "-c", COLLECT, "+config_paths=[configs/offline.yaml]",
                             "+input_jsonl_fpath=no/such.jsonl"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"error: +input_jsonl_fpath='no/such.jsonl' does not exist (or is not a file) (looked in {tmp_path} and {ROOT})"
    )
