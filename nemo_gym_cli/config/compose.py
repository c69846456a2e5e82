"""Composing the config: Hydra command-line overrides + YAML files + env.yaml, and where each
key came from.

Precedence, later wins:

1. the YAML files named in ``config_paths`` (each may name more ``config_paths``; a file's
   includes are merged before the file itself; every file is read once);
2. ``./env.yaml`` (secrets and personal defaults, git-ignored);
3. the command line (``+k=v``, ``++k=v``, ``k=v``, ``~k``, Hydra syntax). ``~k`` deletes
   after every file was merged, so it can remove a server a config file defines
   (``~widesearch_example_agent``); Hydra, as NeMo Gym's ``ng_run`` uses it, deletes before
   ``config_paths`` are read and finds no such key.

A relative ``config_paths`` entry is looked up in the working directory, then in this
package's root, then in NeMo Gym's root (``NemoGymRoot``: found, and its environment built,
only when an entry is not found in the first two); ``nemo_gym:<path>`` names a file in NeMo
Gym's root only (where we ship a file of the same path), and a file found there resolves its
own ``config_paths`` there first. Such a file's source is named ``nemo_gym:<path>``.

``compose`` returns the merged, unresolved config and a ``Sources`` map that names, for any
key path, the source that set it (``configs/offline.yaml``, ``env.yaml``, ``command line``):
every error about a key says where to fix it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_gym_cli.config.directives import apply_directives
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.options import RESERVED_KEYS, NemoGymOptions, nemo_gym_options

__all__ = [
    "COMMAND_LINE",
    "ENV_YAML",
    "NEMO_GYM_PREFIX",
    "PACKAGE_ROOT",
    "Composed",
    "NemoGymRoot",
    "Sources",
    "compose",
    "parse_overrides",
]

#: Where the built-in server folders and configs live (the repository root for an editable
#: install), searched after the working directory.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent
COMMAND_LINE = "command line"
ENV_YAML = "env.yaml"
#: ``nemo_gym:<path>``: a path in NeMo Gym's root (and how sources there are named)
NEMO_GYM_PREFIX = "nemo_gym:"
#: NeMo Gym's root folders: only paths under these are looked for there (a typo in
#: configs/... must never build an environment to find out)
NEMO_GYM_FOLDERS = frozenset(
    {"resources_servers", "responses_api_agents", "responses_api_models", "environment_servers", "benchmarks"}
)


class NemoGymRoot:
    """NeMo Gym's root folder (``resources_servers/``, ... of its checkout or install), found
    only when first asked: finding it may build its environment (``nemo_gym_cli/nemo_gym``)."""

    def __init__(self, options: NemoGymOptions) -> None:
        self.options = options
        self._path: Path | None = None
        self._environments: Any = None

    @property
    def resolved(self) -> Path | None:
        """The root if it has been asked for (None: nothing was looked at or built)."""
        return self._path

    def __call__(self) -> Path:
        if self._path is None:
            self._path = self._envs().root()
        return self._path

    def has(self, relative: str) -> bool:
        """Whether NeMo Gym ships ``relative`` (nothing built to find out)."""
        if self._path is not None:
            return (self._path / relative).exists()
        return bool(self._envs().ships(relative))

    def _envs(self) -> Any:
        if self._environments is None:
            from nemo_gym_cli.nemo_gym.environments import Environments

            self._environments = Environments(self.options)
        return self._environments


@dataclass
class Sources:
    """Which source set a key: checked from the last (winning) source back."""

    layers: list[tuple[str, DictConfig]] = field(default_factory=list)
    #: ``{target: source}`` of NeMo Gym's directives (``_inherit_from``, ``_copy``): a key under
    #: a target that no source sets there came from under its source
    moves: dict[str, str] = field(default_factory=dict)

    def of(self, path: str) -> str:
        """The source of key ``path`` (dotted), or ``""`` when no source has it."""
        found = next((name for name, cfg in reversed(self.layers) if _has(cfg, path)), "")
        return found or self._through_moves(path, self.of)

    def first(self, path: str) -> str:
        """The first source (in merge order) that has key ``path``: where it was defined."""
        return next((name for name, cfg in self.layers if _has(cfg, path)), "") or self._through_moves(path, self.first)

    def _through_moves(self, path: str, look: Callable[[str], str]) -> str:
        for target, source in self.moves.items():
            if path.startswith(target + ".") or path == target:
                return str(look(source + path.removeprefix(target)))
        return ""

    def set_by(self, name: str) -> set[str]:
        """Top-level keys source ``name`` sets."""
        for source, cfg in self.layers:
            if source == name:
                return {str(k) for k in cfg.keys()}
        return set()


_ABSENT = object()


def _has(cfg: DictConfig, path: str) -> bool:
    """Whether ``cfg`` has key ``path`` (dotted); a path through a non-mapping has none."""
    try:
        return OmegaConf.select(cfg, path, throw_on_missing=False, default=_ABSENT) is not _ABSENT
    except OmegaConfBaseException:
        return False


@dataclass
class Composed:
    config: DictConfig
    sources: Sources
    #: top-level keys given on the command line (checked strictly against the command)
    command_line_keys: set[str]
    #: NeMo Gym's root, as nemo_gym.* on the command line and in env.yaml say
    nemo_gym_root: NemoGymRoot | None = None
    #: keys the command line deleted (``~key``), applied after every file was merged
    deleted: tuple[str, ...] = ()


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


def _resolve_path(
    entry: str, cwd: Path, where: str, root: NemoGymRoot | None, nemo_gym_first: bool = False
) -> tuple[Path, bool]:
    """The file ``entry`` names, and whether it is in NeMo Gym's root."""
    if entry.startswith(NEMO_GYM_PREFIX):
        rel = entry.removeprefix(NEMO_GYM_PREFIX)
        if root is None or Path(rel).is_absolute():
            raise ConfigError(f"{where} entry {entry!r}: nemo_gym:<path> takes a path relative to NeMo Gym's root")
        found = root() / rel
        if not found.is_file():
            raise ConfigError(f"{where} entry {entry!r} does not exist in NeMo Gym's root ({root()})")
        return found.resolve(), True
    p = Path(entry).expanduser()
    if p.is_absolute():
        if p.is_file():
            return p.resolve(), root is not None and root.resolved is not None and p.is_relative_to(root.resolved)
        raise ConfigError(f"{where} entry {entry!r} does not exist")
    ours = list(dict.fromkeys([cwd / p, PACKAGE_ROOT / p]))
    theirs = root is not None and p.parts[0] in NEMO_GYM_FOLDERS
    if nemo_gym_first and root is not None:
        found = root() / p
        if found.is_file():
            return found.resolve(), True
    for c in ours:
        if c.is_file():
            return c.resolve(), False
    if theirs and root is not None and not nemo_gym_first and root.has(str(p)):
        found = root() / p
        if found.is_file():
            return found.resolve(), True
    looked = " and ".join(str(c.parent) for c in ours)
    if theirs and root is not None:
        looked += f" and NeMo Gym {root.options.version}'s root"
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
    entries: list[str],
    cwd: Path,
    where: str,
    seen: set[Path],
    out: list[tuple[str, DictConfig]],
    root: NemoGymRoot | None = None,
    nemo_gym_first: bool = False,
) -> None:
    for entry in entries:
        path, theirs = _resolve_path(entry, cwd, where, root, nemo_gym_first)
        if path in seen:
            continue
        seen.add(path)
        cfg = load_yaml(path)
        try:
            nested_value = cfg.get("config_paths")
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{path}: config_paths: {str(exc).splitlines()[0]}") from None
        shown = NEMO_GYM_PREFIX + str(path.relative_to(root())) if theirs and root is not None else _display(path, cwd)
        nested = _as_path_list(nested_value, f"{shown}: config_paths")
        _collect_files(nested, cwd, f"{shown}: config_paths", seen, out, root, theirs)
        out.append((shown, cfg))


def compose(args: list[str], *, cwd: Path | None = None, env_yaml: bool = True) -> Composed:
    """Merge config files, ``env.yaml`` and command-line overrides (not yet resolved)."""
    cwd = (cwd or Path.cwd()).resolve()
    cli_cfg, deletions = parse_overrides(args)
    env_path = cwd / "env.yaml"
    env_cfg = load_yaml(env_path) if env_yaml and env_path.is_file() else OmegaConf.create({})
    source = cli_cfg if "config_paths" in cli_cfg else env_cfg
    entries = _as_path_list(source.get("config_paths"), "config_paths")
    root = NemoGymRoot(_early_nemo_gym_options(env_cfg, cli_cfg))
    files: list[tuple[str, DictConfig]] = []
    _collect_files(entries, cwd, "config_paths", set(), files, root)
    layers = [*files, (ENV_YAML, env_cfg), (COMMAND_LINE, cli_cfg)]
    try:
        merged = OmegaConf.merge(*(cfg for _, cfg in layers))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"cannot merge the config sources: {str(exc).splitlines()[0]}") from None
    assert isinstance(merged, DictConfig)
    sources = Sources(layers)
    sources.moves = apply_directives(merged, sources.of, RESERVED_KEYS)
    for key in deletions:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        if not isinstance(node, DictConfig) or leaf not in node:
            raise ConfigError(f"~{key}: there is no key {key!r} to delete")
        node.pop(leaf)
    return Composed(merged, sources, {str(k) for k in cli_cfg.keys()}, root, tuple(deletions))


def _early_nemo_gym_options(*layers: DictConfig) -> NemoGymOptions:
    """``nemo_gym:`` as env.yaml and the command line set it: what finds NeMo Gym's root for
    ``config_paths`` (a config file's ``nemo_gym:`` is read only after its file was found)."""
    try:
        block = OmegaConf.merge(*(OmegaConf.create({"nemo_gym": layer.get("nemo_gym") or {}}) for layer in layers))
        value = OmegaConf.to_container(block, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"nemo_gym: {str(exc).splitlines()[0]}") from None
    assert isinstance(value, dict)
    return nemo_gym_options(value.get("nemo_gym") or None, lambda key: "command line or env.yaml")
