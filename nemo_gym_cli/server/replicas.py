"""An instance's replicas as its callers see them: which URL a call goes to, and which are dead.

On a Ray cluster an instance may run as several replicas, each its own server process on
some node (docs/scale-out.md). Callers (an agent calling its resources and model servers,
the collector calling agents) hold a ``Replicas`` per instance and ask it for a URL per
call. ``pick(key)`` is rendezvous hashing: the same key goes to the same live replica, keys
spread evenly, and when a replica dies only the keys it had move. A rollout keys its calls
to the resources server by its session id, so every call of one rollout reaches the one
replica that holds its session, in every agent replica alike.

A replica that does not answer (connection refused or reset) is marked dead and picked no
more; the caller's rollout fails as retryable and its retry goes to a live replica. When
every replica is marked dead they are all tried again: a single server that was briefly
unreachable (or a replica that comes back) is not written off for good.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from nemo_gym_cli.errors import ServerError

__all__ = ["Replicas", "is_unreachable"]

log = logging.getLogger(__name__)


class Replicas:
    """The base URLs of one instance's replicas, and which of them answer."""

    def __init__(self, name: str, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError(f"instance {name!r} has no replica URLs")
        self.name = name
        self.urls = tuple(urls)
        self.dead: set[str] = set()
        self._seeds = tuple(url.encode() + b"\0" for url in self.urls)

    def pick(self, key: str) -> str:
        """The live replica ``key`` goes to (always the same one while it lives)."""
        if len(self.urls) == 1:
            return self.urls[0]
        if len(self.dead) == len(self.urls):
            self.dead.clear()  # all written off: try them all again
        data = key.encode()
        best, best_weight = self.urls[0], b""
        for url, seed in zip(self.urls, self._seeds, strict=True):
            if url not in self.dead:
                # a well-mixed hash: crc32 is linear, so its order barely depends on the key
                weight = hashlib.blake2b(seed + data, digest_size=8).digest()
                if weight > best_weight:
                    best, best_weight = url, weight
        return best

    def mark_dead(self, url: str) -> bool:
        """Pick ``url`` no more; True if it was live and another replica still is."""
        if url in self.dead or url not in self.urls:
            return False
        self.dead.add(url)
        return len(self.dead) < len(self.urls)

    def failed(self, url: str, error: ServerError) -> None:
        """A call to ``url`` failed with ``error``: if nothing answers there, write it off
        (said once), so the next calls (a retried rollout's too) go to a live replica."""
        if is_unreachable(error) and self.mark_dead(url):
            log.warning(
                "a replica of %r at %s does not answer (%s); its calls go to the %d others",
                self.name,
                url,
                error,
                self.live,
            )

    @property
    def live(self) -> int:
        return len(self.urls) - len(self.dead)


def is_unreachable(error: ServerError) -> bool:
    """Did the call get no answer because nothing listens there any more (refused, reset)?"""
    return error.status is None and error.kind == "connection"
