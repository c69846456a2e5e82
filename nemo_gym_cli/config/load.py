"""The composed config parsed once into typed objects: ``GlobalConfig`` of ``ServerInstance``s.

``load_config(args)`` composes (``compose.py``), checks and resolves the config, then:

- finds the server instances (``name -> server_type -> implementation -> fields``, NeMo
  Gym's shape) and confines each ``entrypoint`` to its implementation's folder, looked up in
  the working directory, this package's root, then NeMo Gym's root (an instance a file in
  NeMo Gym's root defines: there first); a folder whose entrypoint imports ``nemo_gym`` is
  NeMo Gym's, run on its package (``runtime="nemo_gym"``, ``nemo_gym_cli/nemo_gym/``);
- leaves ports that are not set as ``None``: the supervisor binds them (port 0) and only
  then are URLs known. ``${ng_url:<instance>}`` resolves to a placeholder that
  ``ServerInstance.spec(urls)`` / ``GlobalConfig.bind(urls)`` replace by the real URL;
- refuses top-level keys that nothing uses: not an instance, not an option of the command,
  not referred to by an interpolation (env.yaml's personal defaults excepted), naming the
  key, its source and the closest known key.

Reading a config has no side effects: no sockets, no global state that changes per load.
Nothing past this module walks the nested NeMo Gym shape.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemo_gym_cli.config.compose import (
    COMMAND_LINE,
    ENV_YAML,
    NEMO_GYM_PREFIX,
    PACKAGE_ROOT,
    Composed,
    NemoGymRoot,
    Sources,
    compose,
)
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.nemo_gym.options import NemoGymOptions, nemo_gym_options, refusal
from nemo_gym_cli.redaction import remember_secrets
from nemo_gym_cli.server.spec import ServerSpec

__all__ = [
    "DEFAULT_HEAD_PORT",
    "DEFAULT_HOST",
    "SERVER_TYPES",
    "GlobalConfig",
    "RayOptions",
    "ServerInstance",
    "load_config",
    "substitute_urls",
]

#: Server types whose implementations are folders ``<type>/<implementation>/``.
SERVER_TYPES = ("responses_api_models", "responses_api_agents", "resources_servers", "environment_servers")
#: NeMo Gym 0.7's relay from an environment server to an agent: ours serves it wherever a
#: config names it (theirs starts a private Ray cluster in every process, docs/nemo_gym.md).
OUR_RELAY = ("environment_servers", "legacy_agent")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HEAD_PORT = 11000
#: Keys of an instance that are the supervisor's, not the server's.
PLACEMENT_KEYS = ("host", "port", "entrypoint", "num_replicas", "num_cpus")
#: Ray's own address forms: an existing cluster found through RAY_ADDRESS or on this machine
#: (auto), a new one on this machine for this run (local), or a head's GCS address.
_RAY_ADDRESS = re.compile(r"auto|local|[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5}")

# ${ng_url:name} resolves to this placeholder until ports are bound. Registered once, on
# import, and the same for every load: resolving never depends on global state.
_MARK = "\x1f"
_PLACEHOLDER = re.compile(_MARK + r"ng_url:([^" + _MARK + r"]*)" + _MARK)


def _ng_url(name: str) -> str:
    return f"{_MARK}ng_url:{name}{_MARK}"


if not OmegaConf.has_resolver("ng_url"):
    OmegaConf.register_new_resolver("ng_url", _ng_url)


def substitute_urls(value: Any, urls: dict[str, str], where: str = "config") -> Any:
    """``value`` with every ``${ng_url:name}`` placeholder replaced by ``urls[name]``."""
    if isinstance(value, str):
        if _MARK not in value:
            return value

        def url(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in urls:
                known = ", ".join(sorted(urls)) or "none"
                raise ConfigError(f"{where}: ${{ng_url:{name}}} names no server instance (instances: {known})")
            return urls[name]

        return _PLACEHOLDER.sub(url, value)
    if isinstance(value, dict):
        return {k: substitute_urls(v, urls, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_urls(v, urls, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _placeholders(value: Any, where: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        out.extend((where, m.group(1)) for m in _PLACEHOLDER.finditer(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _placeholders(v, f"{where}.{k}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _placeholders(v, f"{where}[{i}]", out)


@dataclass(frozen=True)
class ServerInstance:
    """One server to start: ``name -> server_type -> implementation -> fields``."""

    name: str
    server_type: str
    implementation: str
    host: str
    #: None: any free port, chosen when the supervisor binds it
    port: int | None
    #: the implementation's file that defines its server class (inside its folder)
    entrypoint: str
    #: the instance's resolved fields; may hold secrets: never print or return them
    fields: dict[str, Any] = field(repr=False)
    #: which source set each field (for error messages)
    sources: dict[str, str] = field(default_factory=dict, repr=False)
    #: server processes of this instance (more than one only on a Ray cluster)
    num_replicas: int = 1
    #: CPUs each replica reserves on a Ray cluster
    num_cpus: float = 1.0
    #: "ours" (a server class on our kernel) or "nemo_gym" (NeMo Gym's code on its package,
    #: in its own Python environment)
    runtime: str = "ours"
    #: the implementation's folder (``<root>/<type>/<implementation>``)
    folder: str = ""

    @property
    def where(self) -> str:
        return f"{self.name}.{self.server_type}.{self.implementation}"

    def spec(
        self,
        urls: dict[str, str],
        port: int | None = None,
        *,
        host: str | None = None,
        replica_urls: dict[str, list[str]] | None = None,
        ray_address: str | None = None,
    ) -> ServerSpec:
        """The spec the server process starts from, once every instance has its URL
        (``urls``: each instance's first replica; ``replica_urls``: all of them)."""
        return ServerSpec(
            name=self.name,
            server_type=self.server_type,
            implementation=self.implementation,
            host=host or self.host,
            port=port if port is not None else (self.port or 0),
            fields=substitute_urls(self.fields, urls, self.where),
            server_urls=dict(urls),
            sources=dict(self.sources),
            replica_urls={k: list(v) for k, v in (replica_urls or {}).items()},
            ray_address=ray_address,
        )


@dataclass(frozen=True)
class RayOptions:
    """``ray:``: run the servers on a Ray cluster (docs/scale-out.md)."""

    #: ``auto``, ``local`` or a head node's ``host:port``
    address: str
    #: how long to wait for room for every replica (an autoscaling cluster adds nodes meanwhile)
    placement_timeout_s: float = 60.0


@dataclass(frozen=True)
class GlobalConfig:
    """The composed, resolved config: server instances plus every other top-level key."""

    instances: dict[str, ServerInstance]
    head_host: str
    head_port: int
    #: top-level keys that are not server instances (command options, shared values);
    #: ``${ng_url:...}`` placeholders in them are replaced by ``bind``
    options: dict[str, Any] = field(repr=False)
    sources: Sources | None = field(default=None, repr=False, compare=False)
    #: where to place the servers on a Ray cluster; None: processes on this machine
    ray: RayOptions | None = None
    #: how NeMo Gym's own servers are hosted (``nemo_gym:``)
    nemo_gym: NemoGymOptions = field(default_factory=NemoGymOptions)

    @property
    def nemo_gym_instances(self) -> list[ServerInstance]:
        return [i for i in self.instances.values() if i.runtime == "nemo_gym"]

    @property
    def head_url(self) -> str:
        return f"http://{self.head_host}:{self.head_port}"

    def bind(self, urls: dict[str, str]) -> dict[str, Any]:
        """The options with instance URLs filled in."""
        return substitute_urls(self.options, urls)

    def deletion(self, name: str) -> str:
        """The overrides that start this config without instance ``name``: ``~<name>``, and
        ``~`` for every instance that refers to it, directly or through another."""
        return " ".join(f"~{n}" for n in [name, *referrers(self.instances, [name])])


def referrers(instances: dict[str, ServerInstance], names: Iterable[str]) -> list[str]:
    """The instances that refer to any of ``names``, directly or through one another, in
    config order (``names`` themselves excepted): what cannot start without them."""
    start = set(names)
    refs: dict[str, set[str]] = {}
    for inst in instances.values():
        found: list[tuple[str, str, str]] = []
        _find_refs(inst.fields, inst.where, found)
        refs[inst.name] = {ref_name for _, _, ref_name in found}
    gone = set(start)
    grew = True
    while grew:
        grew = False
        for name, targets in refs.items():
            if name not in gone and targets & gone:
                gone.add(name)
                grew = True
    return [name for name in instances if name in gone and name not in start]


# --------------------------------------------------------------------------- instances


def _instance_shape(value: Any) -> tuple[str, str, DictConfig] | None:
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
    if server_type not in SERVER_TYPES and "entrypoint" not in fields:
        return None
    return str(server_type), str(impl), fields


def _entrypoint(
    inst: str, server_type: str, impl: str, entry: Any, cwd: Path, root: NemoGymRoot | None, theirs_first: bool
) -> tuple[str, str, str]:
    """``(entrypoint, runtime, folder)`` of an instance: its file, whose code it is, its folder."""
    if server_type not in SERVER_TYPES:
        raise ConfigError(
            f"instance {inst!r}: unknown server type {server_type!r}; use one of {', '.join(SERVER_TYPES)}"
        )
    entry = "app.py" if entry in (None, "") else entry
    where = f"{inst}.{server_type}.{impl}.entrypoint"
    if not isinstance(entry, str):
        raise ConfigError(f"{where} must be a file name such as app.py, got {entry!r}")
    relative = Path(entry)
    if relative.is_absolute() or ".." in relative.parts or relative.suffix != ".py":
        raise ConfigError(
            f"{where} is {entry!r}: it must be a .py file inside the implementation's folder "
            f"({server_type}/{impl}/), given relative to it, e.g. app.py"
        )
    ours = [cwd, PACKAGE_ROOT] if cwd != PACKAGE_ROOT else [cwd]
    if (server_type, impl) == OUR_RELAY:
        ours, root = [PACKAGE_ROOT], None
    # Looked up lazily: NeMo Gym's root may need its environment built.
    roots: list[Any] = ([root] if theirs_first and root is not None else []) + ours
    if root is not None and not theirs_first and any((r / server_type / impl).is_dir() for r in ours):
        pass  # found in ours: NeMo Gym's root is not looked at
    elif root is not None and not theirs_first and root.has(f"{server_type}/{impl}"):
        roots.append(root)
    for candidate in roots:
        base = candidate() if isinstance(candidate, NemoGymRoot) else candidate
        folder = base / server_type / impl
        if folder.is_dir():
            app = (folder / relative).resolve()
            if not app.is_relative_to(folder.resolve()):
                raise ConfigError(f"{where} is {entry!r}, which leads outside {folder} (a symlink?); keep it inside")
            if not app.is_file():
                raise ConfigError(f"{where}: {str(folder / relative)!r} does not exist; check 'entrypoint'")
            from nemo_gym_cli.nemo_gym.hosting import imports_nemo_gym

            theirs = isinstance(candidate, NemoGymRoot) or imports_nemo_gym(app)
            return str(app), "nemo_gym" if theirs else "ours", str(folder.resolve())
    looked = [r() if isinstance(r, NemoGymRoot) else r for r in roots]
    elsewhere = f" and NeMo Gym {root.options.version}'s" if root is not None and root not in roots else ""
    known = sorted(
        {
            p.name
            for r in looked
            if (r / server_type).is_dir()
            for p in (r / server_type).iterdir()
            if p.is_dir() and not p.name.startswith(("_", "."))
        }
    )
    from nemo_gym_cli.server.config import closest

    raise ConfigError(
        f"instance {inst!r}: implementation folder {server_type}/{impl} not found "
        f"(looked in {' and '.join(str(r) for r in looked)}{elsewhere}); known: {', '.join(known) or 'none'}"
        f"{closest(impl, known)}"
    )


def _find_refs(node: Any, where: str, out: list[tuple[str, str, str]]) -> None:
    if isinstance(node, dict):
        if set(node) == {"type", "name"} and node["type"] in SERVER_TYPES:
            out.append((where, str(node["type"]), str(node["name"])))
            return
        for k, v in node.items():
            _find_refs(v, f"{where}.{k}", out)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _find_refs(v, f"{where}[{i}]", out)


def _missing_keys(cfg: Any, prefix: str = "") -> list[str]:
    missing: list[str] = []
    if isinstance(cfg, DictConfig):
        for key in cfg.keys():
            path = f"{prefix}.{key!s}" if prefix else str(key)
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
                item = cfg._get_node(i)
                if isinstance(item, (DictConfig, ListConfig)):
                    missing.extend(_missing_keys(item, f"{prefix}[{i}]"))
    return missing


_INTERPOLATION = re.compile(r"\$\{\s*([^${}:,]+?)\s*(?=[}:,])(:?)")


def referenced_keys(cfg: Any) -> set[str]:
    """Top-level keys that some ``${key...}`` interpolation in ``cfg`` refers to."""
    out: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, DictConfig):
            for key in node.keys():
                walk(node._get_node(key))
        elif isinstance(node, ListConfig):
            for i in range(len(node)):
                walk(node._get_node(i))
        else:
            value = node._value() if hasattr(node, "_value") else node
            if isinstance(value, str) and "${" in value:
                for match in _INTERPOLATION.finditer(value):
                    if not match.group(2):  # "name:" is a resolver, not a key
                        out.add(re.split(r"[.\[]", match.group(1).lstrip("."), maxsplit=1)[0])

    walk(cfg)
    return out


def _check_top_level(
    composed: Composed, instances: Iterable[str], command: frozenset[str], everywhere: frozenset[str]
) -> None:
    """Every top-level key is used by something; else one error naming each unused one."""
    cfg, sources = composed.config, composed.sources
    # Referred to in any source counts: overriding an instance's field must not turn the
    # value a file feeds it into an "unknown key".
    used = set(instances) | referenced_keys(cfg) | {"config_paths", "head_server", "ray"}
    for _, layer in sources.layers:
        used |= referenced_keys(layer)
    env_keys = sources.set_by(ENV_YAML)
    problems = []
    from nemo_gym_cli.server.config import closest

    candidates = sorted(command | set(instances) | {k for k in cfg.keys() if k in used})
    for key in (str(k) for k in cfg.keys()):
        if key in used or key in command:
            continue
        origin = sources.of(key)
        refused = refusal(key)
        if refused is not None:
            problems.append(f"{key!r} ({origin or 'config'}): {refused}")
            continue
        if origin == ENV_YAML or (key in env_keys and origin != COMMAND_LINE):
            continue  # personal defaults for many configs: not every run uses each
        if origin != COMMAND_LINE and key in everywhere:
            continue  # an option of another command, in a shared config file
        problems.append(f"{key!r} ({origin or 'config'}): unknown key{closest(key, candidates)}")
    if problems:
        raise ConfigError(
            "; ".join(problems)
            + ". Each top-level key must be a server instance, an option of this command (see --help), "
            "or a value some ${...} refers to"
        )


# --------------------------------------------------------------------------- loading


def _port(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ConfigError(f"{where} must be a port number 0-65535 (0 or unset: any free port), got {value!r}")
    return value or None


def _host(value: Any, where: str) -> str:
    if value is None or value == "":
        return DEFAULT_HOST
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9.:\-\[\]]+", value):
        raise ConfigError(f"{where} must be a host name or address such as 127.0.0.1, got {value!r}")
    return value


def _ray_options(value: Any, sources: Sources) -> RayOptions | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"ray ({sources.of('ray')}) must be a mapping such as {{address: auto}}, got {value!r}")
    keys = [f.name for f in dataclass_fields(RayOptions)]
    unknown = sorted(set(value) - set(keys))
    if unknown:
        from nemo_gym_cli.server.config import closest

        origin = sources.of(f"ray.{unknown[0]}")
        did_you_mean = closest(unknown[0], keys)
        raise ConfigError(f"ray.{unknown[0]} ({origin}): unknown key{did_you_mean}; ray's keys: {', '.join(keys)}")
    timeout = value.get("placement_timeout_s", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 86400:
        where = f"ray.placement_timeout_s ({sources.of('ray.placement_timeout_s')})"
        raise ConfigError(f"{where} must be a number of seconds above 0 (at most a day), got {timeout!r}")
    address = value.get("address")
    if not isinstance(address, str) or not _RAY_ADDRESS.fullmatch(address):
        where = f"ray.address ({sources.of('ray.address')})"
        raise ConfigError(
            f"{where} must be auto (a running cluster), local (a new one on this machine) or a head node's "
            f"host:port, got {address!r}" + ("; Ray Client (ray://) is not supported" if "://" in str(address) else "")
        )
    return RayOptions(address, float(timeout))


def _placement(raw: dict[str, Any], where: str, on_ray: bool) -> tuple[int, float]:
    """An instance's ``num_replicas`` and ``num_cpus``, checked; on Ray, no ``host`` or ``port``."""
    replicas = raw.get("num_replicas", 1)
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"{where}.num_replicas must be a whole number of at least 1, got {replicas!r}")
    cpus = raw.get("num_cpus", 1.0)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus < 1e6:
        raise ConfigError(f"{where}.num_cpus must be a number of CPUs above 0 (e.g. 0.25 or 2), got {cpus!r}")
    if on_ray:
        for key in ("host", "port"):
            if raw.get(key) not in (None, ""):
                raise ConfigError(
                    f"{where}.{key}: on a Ray cluster each replica listens on its node's address and a free port; "
                    f"remove {key} (docs/scale-out.md)"
                )
    else:
        for key in ("num_replicas", "num_cpus"):
            if key in raw and not (key == "num_replicas" and replicas == 1):
                raise ConfigError(
                    f"{where}.{key} places replicas on a Ray cluster: add +ray.address=local (a cluster on this "
                    "machine), auto or host:port (docs/scale-out.md), or remove it"
                )
    return replicas, float(cpus)


def load_config(
    args: list[str],
    *,
    cwd: Path | None = None,
    command: Iterable[str] | None = None,
    everywhere: Iterable[str] = (),
    env_yaml: bool = True,
) -> GlobalConfig:
    """Compose, check and resolve the config, and parse it into ``GlobalConfig``.

    ``command``: the top-level option names of the command reading it; when given, a key
    nothing uses is an error (a command-line key must be one of these; a file's key may
    also be one of ``everywhere``, the options of every command).
    """
    cwd = (cwd or Path.cwd()).resolve()
    composed = compose(args, cwd=cwd, env_yaml=env_yaml)
    merged = composed.config

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
    if command is not None:
        _check_top_level(composed, shapes, frozenset(command), frozenset(everywhere))

    try:
        with warnings.catch_warnings():
            # ${oc.env:KEY,} (empty default) is the documented idiom; OmegaConf nags about it.
            warnings.filterwarnings("ignore", message="In the sequence", category=UserWarning)
            resolved = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as exc:
        msg = str(exc).strip().splitlines()
        detail = msg[0] if msg else type(exc).__name__
        where = str(getattr(exc, "full_key", None) or "an interpolation")
        raise ConfigError(
            f"cannot resolve {where}: {detail}. Define the referenced key "
            "in a config file, env.yaml or on the command line"
        ) from None
    assert isinstance(resolved, dict)
    remember_secrets(resolved)  # masked in everything this process prints from now on

    head = resolved.get("head_server") or {}
    if not isinstance(head, dict):
        raise ConfigError(f"head_server must be a mapping {{host: ..., port: ...}}, got {head!r}")
    unknown = sorted(set(head) - {"host", "port"})
    if unknown:
        origin = composed.sources.of(f"head_server.{unknown[0]}")
        raise ConfigError(f"head_server.{unknown[0]} ({origin}): unknown key; head_server has host and port")
    head_host = _host(head.get("host"), "head_server.host")
    head_port = _port(head.get("port"), "head_server.port") or DEFAULT_HEAD_PORT
    ray = _ray_options(resolved.get("ray"), composed.sources)
    nemo_gym = nemo_gym_options(resolved.get("nemo_gym"), composed.sources.of)
    root = composed.nemo_gym_root
    if root is None or root.options != nemo_gym:  # a config file's nemo_gym: block
        root = NemoGymRoot(nemo_gym)

    instances: dict[str, ServerInstance] = {}
    taken: dict[int, str] = {head_port: "head_server"}
    for name, (server_type, impl, _) in shapes.items():
        where = f"{name}.{server_type}.{impl}"
        raw = resolved[name][server_type][impl]
        port = _port(raw.get("port"), f"{where}.port")
        if port is not None:
            if port in taken:
                raise ConfigError(f"{name}: port {port} is also used by {taken[port]}; give each instance its own port")
            taken[port] = name
        fields = {k: v for k, v in raw.items() if k not in PLACEMENT_KEYS}
        num_replicas, num_cpus = _placement(raw, where, ray is not None)
        theirs_first = composed.sources.first(where).startswith(NEMO_GYM_PREFIX)
        entrypoint, runtime, folder = _entrypoint(
            name, server_type, impl, raw.get("entrypoint"), cwd, root, theirs_first
        )
        if runtime == "nemo_gym" and ray is not None:
            raise ConfigError(
                f"{where}: NeMo Gym's servers run on this machine, not as replicas on a Ray cluster; "
                "remove +ray.address or this instance"
            )
        instances[name] = ServerInstance(
            name=name,
            server_type=server_type,
            implementation=impl,
            host=_host(raw.get("host"), f"{where}.host"),
            port=port,
            entrypoint=entrypoint,
            fields=fields,
            sources={k: composed.sources.of(f"{where}.{k}") for k in fields},
            num_replicas=num_replicas,
            num_cpus=num_cpus,
            runtime=runtime,
            folder=folder,
        )

    for inst in instances.values():
        refs: list[tuple[str, str, str]] = []
        _find_refs(inst.fields, inst.where, refs)
        for where, ref_type, ref_name in refs:
            target = instances.get(ref_name)
            if target is None and ref_name in composed.deleted:
                gone = referrers(instances, [ref_name])
                raise ConfigError(
                    f"{where} refers to instance {ref_name!r}, which ~{ref_name} deleted; delete what "
                    f"refers to it as well: {' '.join('~' + n for n in gone)}"
                )
            if target is None:
                raise ConfigError(
                    f"{where} refers to instance {ref_name!r}, which is not defined; "
                    f"defined instances: {', '.join(sorted(instances)) or 'none'}"
                )
            if target.server_type != ref_type:
                raise ConfigError(f"{where} refers to {ref_name!r} as a {ref_type}, but it is a {target.server_type}")
    placeholders: list[tuple[str, str]] = []
    _placeholders(resolved, "", placeholders)
    for where, target_name in placeholders:
        if target_name not in instances:
            raise ConfigError(
                f"{where.lstrip('.')}: ${{ng_url:{target_name}}} names no server instance "
                f"(instances: {', '.join(sorted(instances)) or 'none'})"
            )

    options = {str(k): v for k, v in resolved.items() if k not in instances}
    return GlobalConfig(
        instances=instances,
        head_host=head_host,
        head_port=head_port,
        options=options,
        sources=composed.sources,
        ray=ray,
        nemo_gym=nemo_gym,
    )
