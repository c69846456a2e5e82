"""``ng init <kind> <name>``: a new environment or agent, from the templates of ``nemo_gym_cli/scaffold/``.

    ng init resources_server my_env      # resources_servers/my_env/ (ng_init_resources_server my_env)
    ng init agent my_agent               # responses_api_agents/my_agent/

Writes, in the working directory, ``<type folder>/<name>/`` with ``__init__.py``, ``app.py``,
``configs/<name>.yaml``, ``data/example.jsonl`` (rows with emulator scripts),
``tests/test_<name>.py`` and ``README.md``. The new folder passes its own tests at once,
its offline run to reward 1 included: the kernel imports a folder of the working directory
as a package of its own, and ``config_paths`` resolve in the working directory first, then
in this package (so ``configs/offline_model.yaml`` is found from anywhere).

A name that is not a lower-case identifier, an unknown kind, or a folder that already
exists is refused in one line (exit code 2), and nothing is written.
"""

from __future__ import annotations

import keyword
import re
import shutil
import string
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from nemo_gym_cli.errors import ConfigError, NemoGymError
from nemo_gym_cli.scaffold import RUN_WITH

__all__ = ["KINDS", "init", "resources_server_main", "run"]

#: kind -> (template folder in nemo_gym_cli/scaffold/, where the new folder goes)
KINDS = {"resources_server": ("resources_server", "resources_servers"), "agent": ("agent", "responses_api_agents")}
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SUFFIX = ".tmpl"


def check_name(name: str) -> str:
    """``name`` if it can be a folder, a Python package and an instance name; else ``ConfigError``."""
    if not _NAME.fullmatch(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ConfigError(
            f"ng init: {name!r} is not a valid name; use lower-case letters, digits and _, starting with a "
            "letter (at most 64 characters), e.g. my_env"
        )
    return name


def class_name(name: str) -> str:
    """``my_env`` -> ``MyEnv``."""
    return "".join(part.capitalize() for part in name.split("_") if part)


def _templates(folder: Traversable, relative: Path = Path()) -> list[tuple[Path, Traversable]]:
    out: list[tuple[Path, Traversable]] = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            if not entry.name.startswith(("_", ".")):  # __pycache__
                out += _templates(entry, relative / entry.name)
        elif entry.name.endswith(_SUFFIX):
            out.append((relative / entry.name[: -len(_SUFFIX)], entry))
    return out


def init(kind: str, name: str, cwd: Path | None = None) -> list[Path]:
    """Write the ``kind`` template as ``<type folder>/<name>/`` under ``cwd``; returns the
    files written. Raises ``ConfigError`` (nothing written) for a bad kind or name or an
    existing folder."""
    if kind not in KINDS:
        raise ConfigError(f"ng init: unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
    check_name(name)
    template, server_type = KINDS[kind]
    root = (cwd or Path.cwd()).resolve()
    target = root / server_type / name
    if target.exists() or target.is_symlink():
        raise ConfigError(f"ng init: {server_type}/{name} already exists in {root}; choose another name or remove it")
    values = {"name": name, "Class": class_name(name)}
    rendered = [
        (Path(*(part.replace("NAME", name) for part in relative.parts)), source.read_text(encoding="utf-8"))
        for relative, source in _templates(files("nemo_gym_cli.scaffold") / template)
    ]
    written: list[Path] = []
    try:
        for relative, text in rendered:
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(string.Template(text).substitute(values), encoding="utf-8")
            written.append(path)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # all or nothing
        raise
    return written


def report(kind: str, name: str, written: list[Path], cwd: Path) -> str:
    """What ``ng init`` prints: the files, then how to test and run the new folder."""
    server_type = KINDS[kind][1]
    folder = f"{server_type}/{name}"
    lines = [f"created {folder}/ in {cwd}:"]
    lines += [f"  {path.relative_to(cwd / folder)}" for path in written]
    configs, agent = (string.Template(t).substitute(folder=folder, name=name) for t in RUN_WITH[kind])
    lines += [
        "next:",
        f"  pytest {folder}          # its tests, the offline run to reward 1 included",
        f'  ng_collect_rollouts "+config_paths=[{configs}]" +agent_name={agent} \\',
        f"    +input_jsonl_fpath={folder}/data/example.jsonl +output_jsonl_fpath=results/{name}_rollouts.jsonl",
    ]
    return "\n".join(lines)


def run(kind: str, name: str) -> int:
    """The command: scaffold, then say what was written and what to do next."""
    cwd = Path.cwd().resolve()
    written = init(kind, name, cwd)
    print(report(kind, name, written, cwd))
    return 0


def resources_server_main(argv: list[str] | None = None) -> None:
    """``ng_init_resources_server <name>``: ``ng init resources_server <name>``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: ng_init_resources_server <name>   (same as: ng init resources_server <name>)", file=sys.stderr)
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)
    try:
        code = run("resources_server", args[0])
    except NemoGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    raise SystemExit(code)
