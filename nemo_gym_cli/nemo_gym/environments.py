"""The Python environments NeMo Gym's own servers run in, built on first use into a cache.

NeMo Gym's ``ng_run`` gives each server a virtual environment with nemo-gym and the server's
``requirements.txt``; so do we, without ``uv`` (pip only) and shared where they agree:

- the **base** environment: a venv + ``pip install nemo-gym==<version>``, one per nemo-gym
  version and interpreter version (``nemo_gym.venv`` given: that one, as is, nothing built);
- a **derived** environment per distinct set of extra requirements (``requirements.txt`` minus
  blank lines, comments and 0.7's self-reference ``-e nemo-gym[dev] @ ../../``): a venv that
  sees the base's site-packages through a ``.pth`` file, so pip installs only what the base
  lacks. A server whose requirements the base already satisfies runs in the base;
- a **derived** environment per folder that declares its dependencies in a ``pyproject.toml``
  (no ``requirements.txt``), keyed by the folder and the file's content hash: ``pip install -e
  <folder>``, what 0.7's ``ng_run`` runs there (``uv pip install --no-sources -e .``,
  cli/setup_command.py:156-168 of the 0.7.0 wheel; ``--no-sources`` drops ``[tool.uv.sources]``,
  which pip never reads). Editable, so keyed by the folder too: the install points at it.

Before installing, the nemo-gym wheel is downloaded (``pip download --no-deps``) and its
``Requires-Python`` read, so an interpreter that does not satisfy it is one clear error, not
minutes of pip. Each build holds an ``fcntl`` lock (two ng_runs never build the same one) and
writes its stamp last: an environment without a matching stamp is incomplete and rebuilt.
Environments are built in place rather than renamed from a temporary folder: a venv is not
relocatable (pip writes its absolute path into the scripts it installs). pip's output goes to
``<environment>.log``, named in the one error line a failed build gives.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nemo_gym_cli.errors import ConfigError, NemoGymError
from nemo_gym_cli.nemo_gym.options import NemoGymOptions

__all__ = ["Derived", "Environments", "derived_plan", "requirements_of", "satisfies", "site_packages"]

STAMP = ".nemo-gym-cli-stamp"
#: nemo-gym's wheel names the NeMo Gym root folders it ships beside the package
ROOT_FOLDERS = ("resources_servers", "responses_api_agents", "responses_api_models", "environment_servers")


def requirements_of(folder: Path) -> list[str]:
    """A server folder's extra requirements: ``requirements.txt`` minus blank lines, comments
    and lines naming ``../..`` (NeMo Gym 0.7's own package, which the base holds)."""
    path = folder / "requirements.txt"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#") and "../.." not in line:
            out.append(line)
    return out


@dataclass(frozen=True)
class Derived:
    """A derived environment to build for a server folder: its cache key and what pip installs."""

    #: what makes two folders share it (besides nemo-gym, Python and the base)
    key: dict[str, object]
    #: ``pip install`` arguments (after the flags)
    install: list[str]


def derived_plan(folder: Path) -> Derived | None:
    """What folder ``folder`` needs beside the base, as 0.7's ``ng_run`` installs it: its
    ``requirements.txt`` (``requirements_of``; None when empty), else its ``pyproject.toml``
    as an editable install (keyed by the folder and the file's sha256), else nothing. A folder
    with both is refused as 0.7 refuses it."""
    project = folder / "pyproject.toml"
    if (folder / "requirements.txt").is_file():
        if project.is_file():
            raise ConfigError(
                f"NeMo Gym server folder {str(folder)!r} has both pyproject.toml and requirements.txt; NeMo Gym "
                "installs one or the other: remove one"
            )
        requirements = requirements_of(folder)
        return Derived({"requirements": requirements}, requirements) if requirements else None
    if project.is_file():
        digest = hashlib.sha256(project.read_bytes()).hexdigest()
        where = str(folder.resolve())
        return Derived({"pyproject": where, "sha256": digest}, ["-e", where])
    return None


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise ConfigError(f"{venv} is not a Python environment (no lib/python3*/site-packages); give a venv")
    return found[-1]


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text.split("+")[0])[:3])


def satisfies(version: str, specifier: str) -> bool:
    """Whether ``version`` (3.13.0) satisfies a Requires-Python specifier (``>=3.13.14,<4``)."""
    have = _version_tuple(version)
    for clause in filter(None, (c.strip() for c in specifier.split(","))):
        match = re.fullmatch(r"(~=|==|!=|>=|<=|>|<)\s*([0-9.*]+)", clause)
        if match is None:
            continue  # a form we do not read: pip decides
        op, raw = match.groups()
        if raw.endswith(".*"):
            prefix = _version_tuple(raw[:-2])
            equal = have[: len(prefix)] == prefix
            if (op == "==" and not equal) or (op == "!=" and equal):
                return False
            continue
        want = _version_tuple(raw)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        ok = {
            "==": a == b,
            "!=": a != b,
            ">=": a >= b,
            "<=": a <= b,
            ">": a > b,
            "<": a < b,
            "~=": a >= b and a[: len(want) - 1] == b[: len(want) - 1],
        }[op]
        if not ok:
            return False
    return True


def _installed(site: Path) -> dict[str, str]:
    """Distributions installed in ``site``: normalized name -> version."""
    out = {}
    for info in site.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def _already_there(requirements: list[str], site: Path) -> bool:
    """Whether every requirement is a plain name (or ``name==version``) installed in ``site``.
    Anything else (ranges, markers, URLs, options) is left to pip in a derived environment."""
    installed = _installed(site)
    for line in requirements:
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*(?:==\s*([A-Za-z0-9.+!-]+))?", line)
        if match is None:
            return False
        have = installed.get(re.sub(r"[-_.]+", "-", match.group(1)).lower())
        if have is None or (match.group(2) is not None and have != match.group(2)):
            return False
    return True


def _python_version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def _candidates() -> list[str]:
    """Interpreters to build with: python3.13*/python3 on PATH and ~/.pyenv/versions/*."""
    found: list[str] = []
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if folder:
            found += sorted(str(p) for p in Path(folder).glob("python3.13*") if not p.name.endswith("-config"))
            if (Path(folder) / "python3").exists():
                found.append(str(Path(folder) / "python3"))
    found += sorted(str(p) for p in (Path.home() / ".pyenv" / "versions").glob("*/bin/python3"))
    return list(dict.fromkeys(found))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Environments:
    """NeMo Gym's environments of one config: its root folder and each server's interpreter.

    Nothing is built or even looked at until asked: a config with no NeMo Gym server never
    touches the cache. ``notify`` prints one progress line per build.
    """

    def __init__(self, options: NemoGymOptions, *, notify: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.cache = options.cache_path()
        self._notify = notify or (lambda line: print(line, file=sys.stderr, flush=True))
        self._base: Path | None = None
        self._python: tuple[str, str] | None = None

    # ------------------------------------------------------------------ public

    def root(self) -> Path:
        """The NeMo Gym root (``resources_servers/``, ... beside each other): ``nemo_gym.root``,
        else the base environment's site-packages (built on first use)."""
        if self.options.root:
            return Path(self.options.root).expanduser().resolve()
        return site_packages(self.base())

    def ships(self, relative: str) -> bool:
        """Whether NeMo Gym's root has file or folder ``relative``, found without building
        anything: in the root when it is at hand, else in nemo-gym's wheel (downloaded once,
        a few MB). So a typo never builds an environment to find out."""
        root = self._root_at_hand()
        if root is not None:
            return (root / relative).exists()
        try:
            with zipfile.ZipFile(self._wheel()) as z:
                names = z.namelist()
        except (NemoGymError, OSError, zipfile.BadZipFile):
            return False
        prefix = relative.rstrip("/") + "/"
        return any(n == relative or n.startswith(prefix) for n in names)

    def _root_at_hand(self) -> Path | None:
        if self.options.root or self.options.venv or self._base is not None:
            return self.root()
        found = sorted(self.cache.glob(f"base-{self.options.version}-py*/{STAMP}"))
        return site_packages(found[-1].parent) if found else None

    def base(self) -> Path:
        """The base environment: ``nemo_gym.venv``, else built into the cache."""
        if self._base is None:
            if self.options.venv:
                venv = Path(self.options.venv).expanduser().resolve()
                if not (venv / "bin" / "python").exists():
                    raise ConfigError(f"nemo_gym.venv is {str(venv)!r}, which has no bin/python; give a venv")
                self._base = venv
            else:
                self._base = self._build_base()
        return self._base

    def python_for(self, folder: Path) -> Path:
        """The interpreter server folder ``folder`` runs on: the base's, or a derived
        environment's when its requirements are not all in the base (built on first use)."""
        base = self.base()
        plan = derived_plan(folder)
        if plan is None or ("requirements" in plan.key and _already_there(plan.install, site_packages(base))):
            return base / "bin" / "python"
        return self._build_derived(base, plan, folder) / "bin" / "python"

    # ------------------------------------------------------------------ building

    def interpreter(self, requires_python: str) -> tuple[str, str]:
        """``(path, version)`` of the interpreter to build with: ``nemo_gym.python``, else the
        newest found that satisfies ``requires_python``; none: one ``ConfigError`` line."""
        if self._python is not None:
            return self._python
        if self.options.python:
            found = [(self.options.python, _python_version(self.options.python))]
        else:
            found = [(p, _python_version(p)) for p in _candidates()]
        versions = sorted(((v, p) for p, v in found if v), key=lambda vp: _version_tuple(vp[0]), reverse=True)
        if not versions:
            raise ConfigError(
                "no Python interpreter found to build NeMo Gym's environment (looked for python3.13*/python3 on "
                "PATH and in ~/.pyenv/versions); give one with +nemo_gym.python=/path/to/python3"
            )
        good = [(v, p) for v, p in versions if satisfies(v, requires_python)]
        if good:
            self._python = (good[0][1], good[0][0])
        elif self.options.ignore_requires_python:
            # The newest of the required minor version if there is one (3.13.0 for >=3.13.14).
            want = _version_tuple(re.sub(r"[^0-9.]", "", requires_python.split(",")[0]) or "0")[:2]
            same = [(v, p) for v, p in versions if _version_tuple(v)[:2] == want]
            v, p = (same or versions)[0]
            self._python = (p, v)
        else:
            version, path = versions[0]
            where = "nemo_gym.python" if self.options.python else "the newest Python found"
            raise ConfigError(
                f"nemo-gym {self.options.version} requires Python {requires_python}; {where} is {version} "
                f"({path}). Give one that satisfies it with +nemo_gym.python=/path/to/python3, or install anyway "
                "with +nemo_gym.ignore_requires_python=true (untested by NeMo Gym)"
            )
        return self._python

    def _wheel(self) -> Path:
        """nemo-gym's wheel, downloaded once into the cache (its dependencies are not)."""
        folder = self.cache / "wheels"
        version = self.options.version
        found = sorted(folder.glob(f"nemo_gym-{version}-*.whl"))
        if found:
            return found[0]
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / f"nemo_gym-{version}.download.log"
        with _locked(folder / ".lock"):
            found = sorted(folder.glob(f"nemo_gym-{version}-*.whl"))
            if found:
                return found[0]
            pip = [sys.executable, "-m", "pip"]
            self._run(
                [*pip, "download", "--no-deps", "--ignore-requires-python", "-d", str(folder), f"nemo-gym=={version}"],
                log,
                f"cannot download nemo-gym {version}",
            )
        found = sorted(folder.glob(f"nemo_gym-{version}-*.whl"))
        if not found:
            raise NemoGymError(f"pip downloaded no wheel of nemo-gym {version}; see {log}")
        return found[0]

    @staticmethod
    def requires_python(wheel: Path) -> str:
        with zipfile.ZipFile(wheel) as z:
            name = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
            text = z.read(name).decode("utf-8", "replace") if name else ""
        match = re.search(r"^Requires-Python:\s*(.+)$", text, re.MULTILINE)
        return match.group(1).strip() if match else ""

    def _build_base(self) -> Path:
        wheel = self._wheel()
        python, version = self.interpreter(self.requires_python(wheel))
        key = {"nemo_gym": self.options.version, "python": version, "interpreter": python}
        venv = self.cache / f"base-{self.options.version}-py{version}-{_digest(key)}"
        what = f"NeMo Gym {self.options.version} base environment (Python {version})"
        self._ensure(venv, key, what, lambda log: self._install_base(venv, python, wheel, log))
        return venv

    def _install_base(self, venv: Path, python: str, wheel: Path, log: Path) -> None:
        self._run([python, "-m", "venv", str(venv)], log, "")
        self._run([str(venv / "bin" / "python"), "-m", "pip", "install", *self._pip_flags(), str(wheel)], log, "")

    def _build_derived(self, base: Path, plan: Derived, folder: Path) -> Path:
        version = _python_version(str(base / "bin" / "python")) or "unknown"
        key = {"nemo_gym": self.options.version, "python": version, "base": str(base), **plan.key}
        venv = self.cache / f"server-{self.options.version}-py{version}-{_digest(key)}"
        what = f"NeMo Gym {self.options.version} environment for {folder.parent.name}/{folder.name}"

        def install(log: Path) -> None:
            self._run([str(base / "bin" / "python"), "-m", "venv", "--without-pip", str(venv)], log, "")
            (site_packages(venv) / "_nemo_gym_base.pth").write_text(str(site_packages(base)) + "\n")
            pip = [str(base / "bin" / "python"), "-m", "pip", "--python", str(venv / "bin" / "python")]
            self._run([*pip, "install", *self._pip_flags(), *plan.install], log, "")

        self._ensure(venv, key, what, install)
        return venv

    def _pip_flags(self) -> list[str]:
        flags = ["--disable-pip-version-check", "--no-input"]
        return flags + (["--ignore-requires-python"] if self.options.ignore_requires_python else [])

    def _ensure(self, venv: Path, key: Mapping[str, object], what: str, install: Callable[[Path], None]) -> None:
        stamp = json.dumps(key, sort_keys=True)
        if (venv / STAMP).is_file() and (venv / STAMP).read_text() == stamp:
            return
        with _locked(venv.with_name(venv.name + ".lock")):
            if (venv / STAMP).is_file() and (venv / STAMP).read_text() == stamp:
                return  # built by another process meanwhile
            self._notify(f"building {what} (first use; cached in {venv}) ...")
            shutil.rmtree(venv, ignore_errors=True)
            log = venv.with_name(venv.name + ".log")
            log.write_text("")
            try:
                install(log)
            except NemoGymError as exc:
                shutil.rmtree(venv, ignore_errors=True)
                raise NemoGymError(f"building {what} failed: {exc}") from None
            except BaseException:
                shutil.rmtree(venv, ignore_errors=True)
                raise
            (venv / STAMP).write_text(stamp)

    @staticmethod
    def _run(command: list[str], log: Path, what: str) -> None:
        with open(log, "a") as out:
            out.write("$ " + " ".join(command) + "\n")
            out.flush()
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
        if code != 0:
            shown = " ".join(Path(c).name if i == 0 else c for i, c in enumerate(command[:4]))
            raise NemoGymError(
                f"{what + ': ' if what else ''}{shown} ... exited with code {code}; its output is in {log}"
            )


def _digest(key: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
