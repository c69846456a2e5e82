"""NeMo Gym 0.7's config directives, applied to the merged config as 0.7's ``ng_run`` does.

0.7 configs build on each other with directives (``_recursively_swap_keys`` in 0.7's
``global_config.py``), which it applies once, to the config merged from ``config_paths``,
``env.yaml`` and the command line, before anything reads it:

- ``_inherit_from: a.b`` in a mapping: the mapping becomes ``a.b`` (as the files wrote it,
  before any directive) merged with the mapping's own keys (which win), and ``a.b`` is removed:
  the value *moves*. ``key: ${inherit_from:a.b}`` is the same without own keys;
- ``_copy: a.b`` / ``${copy:a.b}``: the same, and ``a.b`` stays;
- ``_delete_key: k1, k2`` in a mapping: those of its keys are removed; one it does not have
  yet must come with its ``_inherit_from``/``_copy`` (else it is not looked for).

Paths are dotted from the top of the config. Mappings are visited depth first, each in the
order of its keys, children before the directive of their parent; a path is read in the
config as written but its parent must still be there (a value moved away earlier cannot be
moved or copied again). A ``???`` on the path makes the target ``???`` (reported with every
other unset value). When a top-level agent instance moves to exactly one new name, the
environment servers naming it follow (several new names and a server still naming the old
one: an error, as in 0.7).

Where 0.7 leaves a directive unapplied (a value taken from a mapping that has directives of
its own, which it copies as written: a chain or a cycle) or fails with a traceback (a path
that does not exist, a ``_delete_key`` of a key the value does not have), this is one error
line naming the file and key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from nemo_gym_cli.errors import ConfigError

__all__ = ["apply_directives", "has_directives"]

INHERIT = "_inherit_from"
COPY = "_copy"
DELETE = "_delete_key"
_INHERIT_STR = "${inherit_from:"
_COPY_STR = "${copy:"
_AGENTS = "responses_api_agents"
_ENVIRONMENTS = "environment_servers"

_UNSET = object()


class _Missing(Exception):
    """A path names no key (the message says which part)."""


def apply_directives(config: DictConfig, origin: Callable[[str], str], reserved: frozenset[str]) -> dict[str, str]:
    """Apply every directive in ``config`` in place; return ``{target: source}`` of each move
    and copy (dotted paths), so a key's origin can be found through them.

    ``origin(path)`` names the source that set a key (for errors); ``reserved``: top-level
    keys that are never server instances."""
    frozen = copy.deepcopy(config)
    moves: dict[str, str] = {}
    agents_before = _agent_instances(frozen, reserved)
    destinations: dict[str, list[str]] = {}
    for name in frozen.keys():
        source = _top_level_inherit(frozen._get_node(name))
        if source in agents_before:
            destinations.setdefault(source, []).append(str(name))
    with open_dict(config):
        _walk(config, "", config, frozen, origin, moves)
        agents_after = _agent_instances(config, reserved)
        renames: dict[str, str] = {}
        for source, targets in destinations.items():
            present = [t for t in targets if t in agents_after]
            if source in config or not present:
                continue
            if len(present) > 1:
                _refuse_ambiguous(config, source, present, origin)
            else:
                renames[source] = present[0]
        if renames:
            for server in _environment_servers(config):
                for reference in _agent_references(server):
                    if reference.get("name") in renames:
                        reference["name"] = renames[reference["name"]]
    for name in config.keys():
        left = _first_directive(config._get_node(name), str(name))
        if left is not None:
            raise ConfigError(
                f"{left} ({origin(left)}): NeMo Gym 0.7 leaves this directive unapplied (it applies those of "
                "mappings that are values of keys, not list items); write the value out"
            )
    return moves


def has_directives(node: Any) -> bool:
    """Whether ``node`` holds a directive anywhere (a key or a ``${inherit_from:``/``${copy:`` value)."""
    if isinstance(node, DictConfig):
        if any(k in node for k in (INHERIT, COPY, DELETE)):
            return True
        return any(has_directives(v) for _, v in node.items_ex(resolve=False))
    if isinstance(node, ListConfig):
        return any(has_directives(node._get_node(i)) for i in range(len(node)))
    value = node._value() if hasattr(node, "_value") else node
    return isinstance(value, str) and value.startswith((_INHERIT_STR, _COPY_STR))


def _first_directive(node: Any, path: str) -> str | None:
    """The path of the first directive left in ``node`` (None: none is)."""
    if isinstance(node, DictConfig):
        for kind in (INHERIT, COPY, DELETE):
            if kind in node:
                return f"{path}.{kind}"
        children: list[tuple[str, Any]] = [(str(k), node._get_node(k)) for k in node.keys()]
    elif isinstance(node, ListConfig):
        children = [(str(i), node._get_node(i)) for i in range(len(node))]
    else:
        return path if has_directives(node) else None
    return next((p for k, child in children if (p := _first_directive(child, f"{path}.{k}")) is not None), None)


def _walk(
    node: DictConfig,
    prefix: str,
    live: DictConfig,
    frozen: DictConfig,
    origin: Callable[[str], str],
    moves: dict[str, str],
) -> None:
    for key, value in list(node.items_ex(resolve=False)):
        path = f"{prefix}{key!s}"
        later_deletes: list[str] = []
        if isinstance(value, DictConfig) and DELETE in value:
            names = value.pop(DELETE)
            if not isinstance(names, str):
                raise ConfigError(
                    f"{path}.{DELETE} ({origin(path)}): must be key names separated by commas, got {names!r}"
                )
            wanted = list(dict.fromkeys(n.strip() for n in names.split(",")))
            for name in wanted:
                if name in value:
                    value.pop(name)
                else:
                    later_deletes.append(name)
        if isinstance(value, DictConfig):
            _walk(value, f"{path}.", live, frozen, origin, moves)
        elif isinstance(value, ListConfig):
            for i in range(len(value)):
                item = value._get_node(i)
                if isinstance(item, DictConfig):
                    _walk(item, f"{path}.{i}.", live, frozen, origin, moves)

        directive = _directive(value)
        if directive is None:
            continue
        kind, ref = directive
        where = f"{path}.{kind}" if isinstance(value, DictConfig) else path
        shown = f"{where} ({origin(where) or origin(path)})"
        if not isinstance(ref, str) or not ref:
            raise ConfigError(f"{shown}: must be a dotted key path such as policy_model, got {ref!r}")
        parts = ref.split(".")
        try:
            parent = _index(live, parts[:-1])
            if kind == INHERIT and parent is not _UNSET:
                assert isinstance(parent, DictConfig)
                parent.pop(parts[-1], None)
            taken = _index(frozen, parts)
        except _Missing as exc:
            moved = "" if _index_or_none(frozen, parts) is None else " (it was moved by an earlier _inherit_from)"
            raise ConfigError(
                f"{shown}: {kind} {ref!r}: {exc}{moved}; name an existing key, dotted from the top"
            ) from None
        if parent is _UNSET or taken is _UNSET:
            node[key] = MISSING
            continue
        if has_directives(taken):
            raise ConfigError(
                f"{shown}: {kind} {ref!r}, which has directives of its own (NeMo Gym 0.7 copies them unapplied: "
                "no chains or cycles); take from where {ref!r} takes from"
            )
        if isinstance(value, DictConfig):
            if not isinstance(taken, DictConfig):
                raise ConfigError(f"{shown}: {kind} {ref!r} is a value, not a mapping to merge {path}'s keys into")
            taken = OmegaConf.merge(taken, value)
        node[key] = taken
        moves[path] = ref
        for name in later_deletes:
            target = node._get_node(key)
            if not isinstance(target, DictConfig) or name not in target:
                raise ConfigError(
                    f"{path}.{DELETE} ({origin(path)}): {name!r} is not a key of {path} after its {kind} {ref!r}; "
                    "remove it from the list"
                )
            target.pop(name)


def _directive(value: Any) -> tuple[str, Any] | None:
    """(kind, path) of ``value``'s own directive, or None; ``_inherit_from`` wins over ``_copy``
    (as in 0.7, which pops both and uses the copy's path with the move's removal)."""
    if isinstance(value, str):
        for kind, start in ((INHERIT, _INHERIT_STR), (COPY, _COPY_STR)):
            if value.startswith(start):
                return kind, value.removeprefix(start).removesuffix("}")
        return None
    if not isinstance(value, DictConfig):
        return None
    found = [(kind, value.pop(kind)) for kind in (INHERIT, COPY) if kind in value]
    if not found:
        return None
    return found[0][0], found[-1][1]


def _index(cfg: DictConfig, parts: list[str]) -> Any:
    """The value at ``parts`` (resolved, as 0.7 reads it); ``_UNSET`` when it or a parent is ``???``."""
    node: Any = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig) or node._get_node(part) is None:
            raise _Missing(f"there is no key {'.'.join(parts[: i + 1])!r}")
        if OmegaConf.is_missing(node, part):
            return _UNSET
        try:
            node = node[part]
        except OmegaConfBaseException as exc:
            raise _Missing(f"cannot read {'.'.join(parts[: i + 1])!r}: {str(exc).splitlines()[0]}") from None
    return node


def _index_or_none(cfg: DictConfig, parts: list[str]) -> Any:
    try:
        return _index(cfg, parts)
    except _Missing:
        return None


def _top_level_inherit(node: Any) -> str | None:
    """What a top-level instance moves from (agent renames follow only these)."""
    if isinstance(node, DictConfig):
        if INHERIT in node and not OmegaConf.is_missing(node, INHERIT):
            ref = node._get_node(INHERIT)._value()  # type: ignore[union-attr]
            return ref if isinstance(ref, str) else None
        return None
    value = node._value() if hasattr(node, "_value") else node
    if isinstance(value, str) and value.startswith(_INHERIT_STR):
        return value.removeprefix(_INHERIT_STR).removesuffix("}")
    return None


def _agent_instances(cfg: DictConfig, reserved: frozenset[str]) -> set[str]:
    """Top-level instances of exactly one agent (0.7's ``_agent_instances``)."""
    out = set()
    for name in cfg.keys():
        value = cfg._get_node(name)
        if name in reserved or not isinstance(value, DictConfig) or _AGENTS not in value:
            continue
        agents = value._get_node(_AGENTS)
        if isinstance(agents, DictConfig) and len(agents) == 1:
            if isinstance(agents._get_node(next(iter(agents.keys()))), DictConfig):
                out.add(str(name))
    return out


def _environment_servers(cfg: DictConfig) -> list[tuple[str, str, DictConfig]]:
    """(instance, implementation, config) of every environment server."""
    out = []
    for name in cfg.keys():
        value = cfg._get_node(name)
        servers = value._get_node(_ENVIRONMENTS) if isinstance(value, DictConfig) and _ENVIRONMENTS in value else None
        if isinstance(servers, DictConfig):
            for impl in servers.keys():
                server = servers._get_node(impl)
                if isinstance(server, DictConfig):
                    out.append((str(name), str(impl), server))
    return out


def _agent_references(entry: tuple[str, str, DictConfig]) -> list[DictConfig]:
    """An environment server's agent references: ``type: responses_api_agents``, or
    ``agent_server`` without a type."""
    server = entry[2]
    out = []
    for field in server.keys():
        ref = server._get_node(field)
        if not isinstance(ref, DictConfig) or OmegaConf.is_missing(ref, "type") or OmegaConf.is_missing(ref, "name"):
            continue
        kind = ref.get("type")
        if kind == _AGENTS or (field == "agent_server" and kind is None):
            out.append(ref)
    return out


def _refuse_ambiguous(cfg: DictConfig, source: str, targets: list[str], origin: Callable[[str], str]) -> None:
    for entry in _environment_servers(cfg):
        for ref in _agent_references(entry):
            if ref.get("name") == source:
                path = f"{entry[0]}.{_ENVIRONMENTS}.{entry[1]}"
                names = ", ".join(repr(t) for t in targets)
                raise ConfigError(
                    f"{path} ({origin(path)}) still names agent {source!r}, which {INHERIT} moved to {names}; "
                    "give each of them its own environment server, or name the one this server fronts"
                )
