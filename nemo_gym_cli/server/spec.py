"""Who a server is and where the others are: the spec a server process starts from.

Kept free of web-framework imports: the supervisor builds specs without paying for them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ROLLOUT_INDEX_HEADER", "SESSION_COOKIE", "SESSION_HEADER", "ServerSpec", "new_session_id"]

#: The header an agent sends with every call of one rollout to a resources server, so the
#: resources server can keep per-rollout state.
SESSION_HEADER = "x-ng-session-id"
#: The cookie a resources server sets on ``/seed_session`` when no header names a session:
#: NeMo Gym's agents forward cookies, not our header.
SESSION_COOKIE = "ng_session"
#: The header an agent sends with every model call of one rollout: the rollout's repeat index
#: (the row's ``_ng_rollout_index``), so a response cache keeps repeats independent samples.
ROLLOUT_INDEX_HEADER = "x-ng-rollout-index"


def new_session_id() -> str:
    return secrets.token_hex(12)


@dataclass(frozen=True)
class ServerSpec:
    """Everything a server process needs: who it is, where it listens, its own config.

    ``fields`` are the instance's resolved config keys (they may hold secrets: never log or
    return them); ``sources`` says which file (or ``env.yaml``, ``command line``) set each
    key, for error messages. ``server_urls`` maps every instance name to its base URL (its
    first replica's); ``replica_urls`` lists every replica of each instance that has several
    (on a Ray cluster, docs/scale-out.md); ``ray_address`` is that cluster's, for servers
    that send work to it.
    """

    name: str
    server_type: str
    implementation: str
    host: str = "127.0.0.1"
    port: int = 0
    fields: dict[str, Any] = field(default_factory=dict, repr=False)
    server_urls: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    replica_urls: dict[str, list[str]] = field(default_factory=dict)
    ray_address: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def where(self) -> str:
        """The instance's key path in the config, for messages."""
        return f"{self.name}.{self.server_type}.{self.implementation}"

    def to_payload(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "server_type": self.server_type,
            "implementation": self.implementation,
            "host": self.host,
            "port": self.port,
            "fields": self.fields,
            "server_urls": self.server_urls,
            "sources": self.sources,
            "replica_urls": self.replica_urls,
            "ray_address": self.ray_address,
        }
