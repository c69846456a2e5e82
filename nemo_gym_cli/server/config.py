"""Typed server configs: one pydantic model per server class, validated once at start-up.

Every server class has a ``Config`` (a subclass of ``ServerConfig``). Its fields are the
instance's keys in the YAML; unknown keys and wrong types are errors naming the key, the
file it came from, and the closest known key::

    simple_weather_simple_agent.responses_api_agents.simple_agent.max_step
    (configs/x.yaml): unknown key; did you mean 'max_steps'?

Keys that NeMo Gym's configs carry (``domain``, ``description``, ``verified``, ``datasets``,
...) are accepted on purpose, so its configs load unchanged. Models are strict: ``true`` is
not a number and ``"8"`` is not an int (YAML and Hydra overrides already give typed values).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nemo_gym_cli.errors import ConfigError

__all__ = [
    "ServerConfig",
    "ServerRef",
    "closest",
    "config_error",
    "validate_model",
]

M = TypeVar("M", bound=BaseModel)
_SECRET = re.compile(r"key|token|secret|password", re.IGNORECASE)


class ServerRef(BaseModel):
    """A reference from one instance's config to another: ``{type: ..., name: ...}``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal["responses_api_models", "responses_api_agents", "resources_servers"]
    name: str


class ServerConfig(BaseModel):
    """Keys every server instance may carry. Subclass it as ``YourServer.Config``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # NeMo Gym's instance keys: accepted so its configs load here; they change nothing.
    domain: str | None = Field(None, description="NeMo Gym: the task domain (math, agent, ...)")
    description: str | None = Field(None, description="NeMo Gym: what this server is")
    verified: bool | None = Field(None, description="NeMo Gym: whether the environment was verified")
    value: str | None = Field(None, description="NeMo Gym: what the environment is good for")
    license: str | None = Field(None, description="NeMo Gym: the data's license")
    datasets: list[dict[str, Any]] | None = Field(None, description="NeMo Gym: datasets of this server")
    num_workers: int | None = Field(None, description="NeMo Gym: uvicorn workers (ignored: one process)")


def closest(word: str, known: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the nearest known word, or ``""``."""
    match = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def config_error(
    exc: ValidationError, model: type[BaseModel], where: str, sources: Mapping[str, str] | None = None
) -> ConfigError:
    """One line naming each problem: the key, where it was set, what is wrong (never the
    value of a key whose name suggests a secret), and the closest known key."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [_part(p) for p in err["loc"]]
        for i in range(1, len(loc)):  # a dict of secrets keyed by the secret (reject_keys)
            if _SECRET.search(loc[i - 1]):
                loc[i] = "<key>"
        key = ".".join(loc) or "(root)"
        origin = (sources or {}).get(loc[0]) if loc else None
        at = (f"{where}{key}" if where.endswith("+") else f"{where}.{key}") + (f" ({origin})" if origin else "")
        if err["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            known = parent.model_fields if parent is not None else {}
            problems.append(f"{at}: unknown key{closest(loc[-1], known)}")
            continue
        value = err.get("input")
        secret = bool(_SECRET.search(key))
        shown = "" if secret or err["type"] == "missing" else f" (got {_clip(value)})"
        problems.append(f"{at}: {err['msg']}{shown}")
    return ConfigError("; ".join(problems))


def validate_model(model: type[M], data: Mapping[str, Any], where: str, sources: Mapping[str, str] | None = None) -> M:
    """``model.model_validate(data)``, problems raised as one ``ConfigError`` line."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise config_error(exc, model, where, sources) from None


def _model_at(model: type[BaseModel], path: list[str]) -> type[BaseModel] | None:
    """The nested model at ``path`` (list indices and dict keys skipped), for did-you-mean."""
    current: Any = model
    for part in path:
        if part.isdigit():
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return None
        current = _inner_model(field.annotation)
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _part(part: Any) -> str:
    """A key of a location as shown: as is when plain, else quoted (a key may hold a newline)."""
    text = str(part)
    return text if text and text.isprintable() and text.strip() == text else repr(text)


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
