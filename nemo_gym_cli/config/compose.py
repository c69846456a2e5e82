"""Composing the config: Hydra command-line overrides + YAML files + env.yaml, and where each
key came from.

Precedence, later wins:

1. the YAML files named in ``config_paths`` (each may name more ``config_paths``; a file's
   includes are merged before the file itself; every file is read once);
2. ``./env.yaml`` (secrets and personal defaults, git-ignored);
3. the command line (``+k=v``, ``++k=v``, ``k=v``, ``~k``, Hydra syntax).

``compose`` returns the merged, unresolved config and a ``Sources`` map that names, for any
key path, the source that set it (``configs/offline.yaml``, ``env.yaml``, ``command line``):
every error about a key says where to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_gym_cli.errors import ConfigError

__all__ = ["COMMAND_LINE", "ENV_YAML", "PACKAGE_ROOT", "Composed", "Sources", "compose", "parse_overrides"]

#: Where the built-in server folders and configs live (the repository root for an editable
#: install), searched after the working directory.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
COMMAND_LINE = "command line"
ENV_YAML = "env.yaml"


@dataclass
class Sources:
    """Which source set a key: checked from the last (winning) source back."""

    layers: list[tuple[str, DictConfig]] = field(default_factory=list)

    def of(self, path: str) -> str:
        """The source of key ``path`` (dotted), or ``""`` when no source has it."""
        for name, cfg in reversed(self.layers):
            try:
                node = OmegaConf.select(cfg, path, throw_on_missing=False, default=_ABSENT)
            except OmegaConfBaseException:
                continue
            if node is not _ABSENT:
                return name
        return ""

    def set_by(self, name: str) -> set[str]:
        """Top-level keys source ``name`` sets."""
        for source, cfg in self.layers:
            if source == name:
                return {str(k) for k in cfg.keys()}
        return set()


_ABSENT = object()


@dataclass
class Composed:
    config: DictConfig
    sources: Sources
    #: top-level keys given on the command line (checked strictly against the command)
    command_line_keys: set[str]


def parse_overrides(args: list[str]) -> tuple[DictConfig, list[str]]:
    """Parse Hydra-syntax command-line overrides into a config and a list of keys to delete."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    cfg = OmegaConf.create({})
    deletions: list[str] = []
    for arg in args:
        try:
            override = parser.parse_override(arg)
        except HydraException as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"command-line argument {arg!r} is not an override: {first}. Use +key=value "
                '(lists as "+key=[a,b]", nested keys as +a.b=c)'
            ) from None
        key = override.key_or_group
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"command-line argument {arg!r} is not an override: it names no key; write +key=value")
        if override.type == OverrideType.DEL:
            if override.value() is not None or "=" in arg:
                raise ConfigError(f"command-line argument {arg!r}: ~key deletes a key and takes no value; write ~{key}")
            deletions.append(key)
            continue
        try:
            OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"command-line argument {arg!r}: {str(exc).splitlines()[0]}") from None
    return cfg, deletions


def load_yaml(path: Path) -> DictConfig:
    """One config file as a DictConfig; unreadable, bad YAML or not a mapping: ConfigError."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {str(path)!r}: {reason}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}; fix the file") from None
    if data is None:
        return OmegaConf.create({})
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must be a mapping of keys, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str) or not k]
    if bad:
        raise ConfigError(f"{path}: top-level keys must be non-empty names, got {bad[0]!r}")
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {str(exc).splitlines()[0]}") from None


def _resolve_path(entry: str, cwd: Path, where: str) -> Path:
    p = Path(entry).expanduser()
    candidates = [p] if p.is_absolute() else list(dict.fromkeys([cwd / p, PACKAGE_ROOT / p]))
    for c in candidates:
        if c.is_file():
            return c.resolve()
    looked = " and ".join(str(c.parent if not p.is_absolute() else c) for c in candidates)
    raise ConfigError(f"{where} entry {entry!r} does not exist (looked in {looked})")


def _as_path_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in (s.strip() for s in value.split(",")) if v]
    if isinstance(value, (list, tuple, ListConfig)) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise ConfigError(f"{where} must be a list of YAML paths, got {value!r}")


def _display(path: Path, cwd: Path) -> str:
    for root in (cwd, PACKAGE_ROOT):
        try:
            return str(path.relative_to(root))
        except ValueError:
            continue
    return str(path)


def _collect_files(
    entries: list[str], cwd: Path, where: str, seen: set[Path], out: list[tuple[str, DictConfig]]
) -> None:
    for entry in entries:
        path = _resolve_path(entry, cwd, where)
        if path in seen:
            continue
        seen.add(path)
        cfg = load_yaml(path)
        try:
            nested_value = cfg.get("config_paths")
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{path}: config_paths: {str(exc).splitlines()[0]}") from None
        nested = _as_path_list(nested_value, f"{_display(path, cwd)}: config_paths")
        _collect_files(nested, cwd, f"{_display(path, cwd)}: config_paths", seen, out)
        out.append((_display(path, cwd), cfg))


def compose(args: list[str], *, cwd: Path | None = None, env_yaml: bool = True) -> Composed:
    """Merge config files, ``env.yaml`` and command-line overrides (not yet resolved)."""
    cwd = (cwd or Path.cwd()).resolve()
    cli_cfg, deletions = parse_overrides(args)
    env_path = cwd / "env.yaml"
    env_cfg = load_yaml(env_path) if env_yaml and env_path.is_file() else OmegaConf.create({})
    source = cli_cfg if "config_paths" in cli_cfg else env_cfg
    entries = _as_path_list(source.get("config_paths"), "config_paths")
    files: list[tuple[str, DictConfig]] = []
    _collect_files(entries, cwd, "config_paths", set(), files)
    layers = [*files, (ENV_YAML, env_cfg), (COMMAND_LINE, cli_cfg)]
    try:
        merged = OmegaConf.merge(*(cfg for _, cfg in layers))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot merge the config sources: {str(exc).splitlines()[0]}") from None
    for key in deletions:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        if not isinstance(node, DictConfig) or leaf not in node:
            raise ConfigError(f"~{key}: there is no key {key!r} to delete")
        node.pop(leaf)
    assert isinstance(merged, DictConfig)
    return Composed(merged, Sources(layers), {str(k) for k in cli_cfg.keys()})
