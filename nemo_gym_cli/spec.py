"""Who a server is and where the others are: the spec a server process starts from.

Kept free of web-framework imports: the CLI and the supervisor use it without paying for
FastAPI's import.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from nemo_gym_cli.errors import ConfigError

__all__ = ["SESSION_HEADER", "ServerRef", "ServerSpec", "new_session_id"]

#: The header an agent sends with every call of one rollout to a resources server, so the
#: resources server can keep per-rollout state (NeMo Gym uses a cookie for the same purpose).
SESSION_HEADER = "x-ng-session-id"


def new_session_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class ServerRef:
    """A reference from one instance's config to another: ``{type: ..., name: ...}``."""

    type: str
    name: str

    @classmethod
    def parse(cls, value: Any, where: str) -> ServerRef:
        if not isinstance(value, dict) or not {"type", "name"} <= value.keys():
            raise ConfigError(f"{where} must be a server reference {{type: ..., name: ...}}, got {value!r}")
        return cls(type=str(value["type"]), name=str(value["name"]))


@dataclass(frozen=True)
class ServerSpec:
    """Everything a server process needs: who it is, where it listens, its own config.

    ``fields`` are the instance's resolved config fields (they may hold secrets: never log or
    return them). ``server_urls`` maps every instance name to its base URL, so references
    resolve without asking anyone.
    """

    name: str
    server_type: str
    implementation: str
    host: str
    port: int
    fields: dict[str, Any] = field(default_factory=dict)
    server_urls: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url_for(self, ref: ServerRef | dict[str, Any], where: str = "server reference") -> str:
        """Base URL of the instance ``ref`` names."""
        ref = ref if isinstance(ref, ServerRef) else ServerRef.parse(ref, where)
        try:
            return self.server_urls[ref.name]
        except KeyError:
            known = ", ".join(sorted(self.server_urls)) or "none"
            raise ConfigError(
                f"{where} names instance {ref.name!r}, which does not exist (instances: {known})"
            ) from None
