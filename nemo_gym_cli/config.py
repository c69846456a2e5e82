"""Config composition: Hydra command-line overrides + YAML files + env.yaml -> typed config.

Precedence, later wins:

1. the YAML files named in ``config_paths`` (each may name more ``config_paths``; a file's
   includes are merged before the file itself; every file is read once);
2. ``./env.yaml`` (secrets and personal defaults, git-ignored);
3. the command line (``+k=v``, ``++k=v``, ``k=v``, ``~k``, Hydra syntax).

``${...}`` interpolations resolve across the merged config, plus ``${ng_url:<instance>}``,
the base URL of a server instance (known only once free ports are assigned).

The merged config is parsed here, once, into ``GlobalConfig``: server instances become
``ServerInstance`` objects and nothing past this module walks the nested NeMo Gym shape.
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.spec import ServerRef, ServerSpec

__all__ = [
    "EMULATOR_MODULES",
    "PACKAGE_ROOT",
    "SERVER_TYPES",
    "GlobalConfig",
    "ServerInstance",
    "compose",
    "load_config",
    "parse_overrides",
]

#: Where the built-in server folders and configs live (the repository root for an editable
#: install), searched after the working directory.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent

#: Server types whose implementations are folders ``<type>/<implementation>/``.
SERVER_TYPES = ("responses_api_models", "responses_api_agents", "resources_servers")
#: The built-in provider emulators, a server type whose implementations are modules of ours.
EMULATOR_MODULES = {"openrouter": "nemo_gym_cli.emulator"}
_ALL_TYPES = (*SERVER_TYPES, "provider_emulators")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HEAD_PORT = 11000


@dataclass(frozen=True)
class ServerInstance:
    """One server to start: ``name -> server_type -> implementation -> fields``."""

    name: str
    server_type: str
    implementation: str
    host: str
    port: int
    #: the file (``app.py``) or, for built-in emulators, the module that has ``create_app``
    entrypoint: str
    #: the instance's resolved fields; may hold secrets: never print or return them
    fields: dict[str, Any] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def spec(self, server_urls: dict[str, str]) -> ServerSpec:
        return ServerSpec(
            name=self.name,
            server_type=self.server_type,
            implementation=self.implementation,
            host=self.host,
            port=self.port,
            fields=self.fields,
            server_urls=server_urls,
        )


@dataclass(frozen=True)
class GlobalConfig:
    """The composed, resolved config: server instances plus every other top-level key."""

    instances: dict[str, ServerInstance]
    head_host: str
    head_port: int
    #: top-level keys that are not server instances (command options, shared values)
    options: dict[str, Any] = field(repr=False)

    @property
    def head_url(self) -> str:
        return f"http://{self.head_host}:{self.head_port}"

    @property
    def server_urls(self) -> dict[str, str]:
        return {name: inst.url for name, inst in self.instances.items()}


# --------------------------------------------------------------------------- overrides


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
        if override.type == OverrideType.DEL:
            deletions.append(key)
            continue
        # +k, ++k and k all set the value: a later source always wins over config files.
        OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)
    return cfg, deletions


# --------------------------------------------------------------------------- YAML files


def _load_yaml(path: Path) -> DictConfig:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
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
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{path}: {exc}") from None


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
    if isinstance(value, (list, tuple, ListConfig)):
        return [str(v) for v in value]
    raise ConfigError(f"{where} must be a list of YAML paths, got {value!r}")


def _collect_files(entries: list[str], cwd: Path, where: str, seen: set[Path], out: list[DictConfig]) -> None:
    for entry in entries:
        path = _resolve_path(entry, cwd, where)
        if path in seen:
            continue
        seen.add(path)
        cfg = _load_yaml(path)
        nested = _as_path_list(cfg.get("config_paths"), f"{path}: config_paths")
        _collect_files(nested, cwd, f"{path}: config_paths", seen, out)
        out.append(cfg)


def _missing_keys(cfg: Any, prefix: str = "") -> list[str]:
    missing: list[str] = []
    if isinstance(cfg, DictConfig):
        for key in cfg.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            if OmegaConf.is_missing(cfg, key):
                missing.append(path)
            else:
                node = cfg._get_node(key)
                if isinstance(node, (DictConfig, ListConfig)):
                    missing.extend(_missing_keys(node, path))
    elif isinstance(cfg, ListConfig):
        for i in range(len(cfg)):
            if OmegaConf.is_missing(cfg, i):
                missing.append(f"{prefix}[{i}]")
            else:
                node = cfg._get_node(i)
                if isinstance(node, (DictConfig, ListConfig)):
                    missing.extend(_missing_keys(node, f"{prefix}[{i}]"))
    return missing


def compose(args: list[str], *, cwd: Path | None = None) -> DictConfig:
    """Merge config files, ``env.yaml`` and command-line overrides (not yet resolved)."""
    cwd = (cwd or Path.cwd()).resolve()
    cli_cfg, deletions = parse_overrides(args)
    env_path = cwd / "env.yaml"
    env_cfg = _load_yaml(env_path) if env_path.is_file() else OmegaConf.create({})
    source = cli_cfg if "config_paths" in cli_cfg else env_cfg
    entries = _as_path_list(source.get("config_paths"), "config_paths")
    files: list[DictConfig] = []
    _collect_files(entries, cwd, "config_paths", set(), files)
    merged = OmegaConf.merge(*files, env_cfg, cli_cfg) if files else OmegaConf.merge(env_cfg, cli_cfg)
    for key in deletions:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        if isinstance(node, DictConfig) and leaf in node:
            node.pop(leaf)
    assert isinstance(merged, DictConfig)
    return merged


# --------------------------------------------------------------------------- instances


def _instance_shape(value: Any) -> tuple[str, str, Any] | None:
    """``(server_type, implementation, fields)`` if ``value`` has the instance shape."""
    if not isinstance(value, DictConfig) or len(value) != 1:
        return None
    (server_type,) = value.keys()
    inner = value._get_node(server_type)
    if not isinstance(inner, DictConfig) or len(inner) != 1:
        return None
    (impl,) = inner.keys()
    fields = inner._get_node(impl)
    if not isinstance(fields, DictConfig):
        return None
    if server_type not in _ALL_TYPES and "entrypoint" not in fields:
        return None
    return str(server_type), str(impl), fields


def _entrypoint(name: str, server_type: str, impl: str, fields: DictConfig, cwd: Path) -> str:
    if server_type not in _ALL_TYPES:
        raise ConfigError(f"instance {name!r}: unknown server type {server_type!r}; use one of {', '.join(_ALL_TYPES)}")
    if server_type == "provider_emulators":
        if impl not in EMULATOR_MODULES:
            raise ConfigError(
                f"instance {name!r}: unknown provider emulator {impl!r}; use one of {', '.join(EMULATOR_MODULES)}"
            )
        return EMULATOR_MODULES[impl]
    entry = str(fields.get("entrypoint") or "app.py")
    roots = [cwd, PACKAGE_ROOT] if cwd != PACKAGE_ROOT else [cwd]
    for root in roots:
        folder = root / server_type / impl
        if folder.is_dir():
            app = folder / entry
            if not app.is_file():
                raise ConfigError(f"instance {name!r}: entrypoint {str(app)!r} does not exist; check 'entrypoint'")
            return str(app)
    known = sorted(
        {
            p.name
            for r in roots
            if (r / server_type).is_dir()
            for p in (r / server_type).iterdir()
            if p.is_dir() and not p.name.startswith(("_", "."))
        }
    )
    raise ConfigError(
        f"instance {name!r}: implementation folder {server_type}/{impl} not found "
        f"(looked in {' and '.join(str(r) for r in roots)}); known: {', '.join(known) or 'none'}"
    )


def _find_refs(node: Any, where: str, out: list[tuple[str, ServerRef]]) -> None:
    if isinstance(node, dict):
        if set(node) == {"type", "name"} and node["type"] in _ALL_TYPES:
            out.append((where, ServerRef(type=node["type"], name=node["name"])))
            return
        for k, v in node.items():
            _find_refs(v, f"{where}.{k}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _find_refs(v, f"{where}[{i}]", out)


def _free_ports(n: int, host: str) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _scalar(cfg: DictConfig, key: str, where: str) -> Any:
    try:
        return cfg.get(key)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{where}.{key}: {str(exc).splitlines()[0]}") from None


def load_config(args: list[str], *, cwd: Path | None = None) -> GlobalConfig:
    """Compose, check and resolve the config, and parse it into ``GlobalConfig``."""
    cwd = (cwd or Path.cwd()).resolve()
    merged = compose(args, cwd=cwd)

    missing = _missing_keys(merged)
    if missing:
        raise ConfigError(
            "required values are not set (???): "
            + ", ".join(missing)
            + ". Set them in env.yaml or on the command line, e.g. +"
            + missing[0]
            + "=..."
        )

    shapes: dict[str, tuple[str, str, DictConfig]] = {}
    for key in merged.keys():
        shape = _instance_shape(merged._get_node(key))
        if shape is not None:
            shapes[str(key)] = shape

    head = merged.get("head_server") or {}
    head_host = str(head.get("host") or DEFAULT_HOST)
    head_port = int(head.get("port") or DEFAULT_HEAD_PORT)

    hosts: dict[str, str] = {}
    ports: dict[str, int | None] = {}
    for name, (server_type, impl, fields) in shapes.items():
        where = f"{name}.{server_type}.{impl}"
        hosts[name] = str(_scalar(fields, "host", where) or DEFAULT_HOST)
        port = _scalar(fields, "port", where)
        try:
            ports[name] = int(port) if port not in (None, "") else None
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.port must be a port number, got {port!r}") from None
    taken: dict[int, str] = {head_port: "head_server"}
    for name, port in ports.items():
        if port is None:
            continue
        if port in taken:
            raise ConfigError(f"{name}: port {port} is also used by {taken[port]}; give each instance its own port")
        taken[port] = name
    unassigned = [n for n, p in ports.items() if p is None]
    for name, port in zip(unassigned, _free_ports(len(unassigned) + 4, DEFAULT_HOST), strict=False):
        while port in taken:  # pragma: no cover - the OS just gave these out
            port = _free_ports(1, DEFAULT_HOST)[0]
        ports[name] = port
        taken[port] = name
    urls = {name: f"http://{hosts[name]}:{ports[name]}" for name in shapes}

    def ng_url(instance: str) -> str:
        try:
            return urls[instance]
        except KeyError:
            raise ConfigError(
                f"${{ng_url:{instance}}} names no server instance (instances: {', '.join(sorted(urls)) or 'none'})"
            ) from None

    OmegaConf.register_new_resolver("ng_url", ng_url, replace=True)
    try:
        with warnings.catch_warnings():
            # ${oc.env:KEY,} (empty default) is the documented idiom; OmegaConf nags about it.
            warnings.filterwarnings("ignore", message="In the sequence", category=UserWarning)
            resolved = OmegaConf.to_container(merged, resolve=True)
    except ConfigError:
        raise
    except OmegaConfBaseException as exc:
        msg = str(exc).strip().splitlines()
        detail = msg[0] if msg else type(exc).__name__
        key = getattr(exc, "full_key", None)
        raise ConfigError(
            f"cannot resolve {key or 'an interpolation'}: {detail}. Define the referenced key "
            "in a config file, env.yaml or on the command line"
        ) from None
    assert isinstance(resolved, dict)

    instances: dict[str, ServerInstance] = {}
    for name, (server_type, impl, fields_node) in shapes.items():
        fields = resolved[name][server_type][impl]
        entry = _entrypoint(name, server_type, impl, fields_node, cwd)
        fields = {k: v for k, v in fields.items() if k not in ("host", "port", "entrypoint")}
        instances[name] = ServerInstance(
            name=name,
            server_type=server_type,
            implementation=impl,
            host=hosts[name],
            port=int(ports[name]),  # type: ignore[arg-type]
            entrypoint=entry,
            fields=fields,
        )

    for name, inst in instances.items():
        refs: list[tuple[str, ServerRef]] = []
        _find_refs(inst.fields, f"{name}.{inst.server_type}.{inst.implementation}", refs)
        for where, ref in refs:
            target = instances.get(ref.name)
            if target is None:
                raise ConfigError(
                    f"{where} refers to instance {ref.name!r}, which is not defined; "
                    f"defined instances: {', '.join(sorted(instances)) or 'none'}"
                )
            if target.server_type != ref.type:
                raise ConfigError(f"{where} refers to {ref.name!r} as a {ref.type}, but it is a {target.server_type}")

    options = {k: v for k, v in resolved.items() if k not in instances}
    return GlobalConfig(instances=instances, head_host=head_host, head_port=head_port, options=options)
