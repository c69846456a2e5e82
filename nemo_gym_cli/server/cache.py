"""The response cache: a model server answers a request it has answered before without
asking its provider again (0 upstream calls, $0), opt-in per run (``+cache=true``).

    cache = await ResponseCache.open(Path("~/.cache/nemo-gym-cli/responses"), ttl_s=604800)
    key, request = cache_key({"url": ..., "body": ..., "rollout": 2})
    hit = await cache.get(key)                 # a Hit (answer, cost it saved) or None
    cache.put(key, request, answer_json, cost)  # queued; written on the cache's thread
    await cache.close()

Why SQLite (the standard library's): several processes share one cache at once (a model
server's replicas, two collections pointed at the same folder, a process SIGKILLed while it
writes) and none may ever read a torn or mixed entry. One entry is one row, written whole
in one transaction, in WAL mode, so a reader sees a whole entry or none, writers queue
behind ``busy_timeout`` instead of failing, and a killed writer's transaction is rolled back
by the next opener (entries still queued in a killed process are lost, never torn).
lm-evaluation-harness caches in SQLite for the same reasons. The folder must be on a local
disk: WAL does not work over network file systems.

The key is the SHA-256 of canonical JSON (sorted keys) of everything that can change the
answer, which the server assembles (``openai_model``: the URL and API, the whole body it
sends upstream after conversion, the model and fallbacks sent, the headers' digest, and the
rollout's repeat index, so ``num_repeats`` samples stay independent). The entry keeps that
canonical JSON beside the answer (no secrets in it: URLs are redacted, headers hashed), so
an entry can be checked against its key and read by a person.

Entries older than ``ttl_s`` are misses (and are deleted when a cache opens);
``refresh`` ignores existing entries and overwrites them. Only answers worth replaying are
stored: never an error, a truncated answer (``finish_reason`` ``length``,
``content_filter``, ``error``; status not ``completed``), nor one without usage
(``cacheable``). Lookups run on the event loop (microseconds: docs/benchmarks.md), writes
on a thread of their own, off it; a cache that fails at run time (a locked or full disk)
logs once and reads as a miss, never failing a rollout.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import Field

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.server.model import ModelServerConfig
from nemo_gym_cli.wire import loads

__all__ = [
    "DEFAULT_TTL_S",
    "FILE_NAME",
    "CachingModelServerConfig",
    "Hit",
    "ResponseCache",
    "cache_key",
    "cacheable",
    "default_cache_path",
]

log = logging.getLogger(__name__)

#: Seven days, as Inspect AI's cache.
DEFAULT_TTL_S = 7 * 24 * 3600.0
#: The SQLite file in the cache folder.
FILE_NAME = "responses.sqlite3"
#: Part of every key: a change to what keys hold or entries mean makes old entries misses.
KEY_VERSION = 1
#: How long a queued entry waits for others to share its commit.
FLUSH_DELAY_S = 0.05
#: How long a writer waits for another process's transaction before giving up (ms).
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,      -- sha256 of request
    created REAL NOT NULL,     -- unix time the answer was paid for
    request BLOB NOT NULL,     -- canonical JSON of what the key hashes (no secrets)
    answer BLOB NOT NULL,      -- the provider's answer, JSON
    cost REAL                  -- what the answer cost (USD), NULL when the provider said nothing
) WITHOUT ROWID
"""
#: A truncated or refused generation: replaying it would replay the accident.
_UNFINISHED = frozenset({"length", "content_filter", "error"})


def default_cache_path() -> str:
    """``${XDG_CACHE_HOME:-~/.cache}/nemo-gym-cli/responses``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(root) / "nemo-gym-cli" / "responses")


class CachingModelServerConfig(ModelServerConfig):
    """A model server config with the response cache's keys (the top-level ``+cache=true``,
    ``+cache_path``, ``+cache_ttl_s``, ``+cache_refresh`` set them on every model server whose
    config is one of these)."""

    cache: bool = Field(False, description="answer requests seen before from the response cache (0 calls, $0)")
    cache_path: str = Field(
        default_factory=default_cache_path,
        description="the response cache's folder (default ${XDG_CACHE_HOME:-~/.cache}/nemo-gym-cli/responses)",
    )
    cache_ttl_s: float = Field(DEFAULT_TTL_S, gt=0, description="entries older than this are misses (7 days)")
    cache_refresh: bool = Field(False, description="ignore existing entries and overwrite them")


def cache_key(parts: dict[str, Any]) -> tuple[str, bytes]:
    """The key of a request described by ``parts`` (JSON values) and the canonical JSON it
    hashes: sorted keys at every level, compact, UTF-8."""
    request = orjson.dumps({"v": KEY_VERSION, **parts}, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    return hashlib.sha256(request).hexdigest(), request


def cacheable(answer: Any) -> bool:
    """Whether a provider's answer (a chat completion or a Responses object) may be replayed:
    it has usage, and it finished (no error, no truncation)."""
    if not isinstance(answer, dict) or answer.get("error"):
        return False
    usage = answer.get("usage")
    if not isinstance(usage, dict) or not usage:
        return False
    choices = answer.get("choices")
    if choices is not None:
        return (
            isinstance(choices, list)
            and bool(choices)
            and all(isinstance(c, dict) and c.get("finish_reason") not in _UNFINISHED for c in choices)
        )
    return answer.get("status") == "completed" and isinstance(answer.get("output"), list)


def answer_cost(answer: dict[str, Any]) -> float | None:
    """The cost the provider reported for ``answer`` (``usage.cost``), if any."""
    usage = answer.get("usage")
    cost = usage.get("cost") if isinstance(usage, dict) else None
    if isinstance(cost, bool) or not isinstance(cost, (int, float, str)):
        return None
    try:
        value = float(cost)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


@dataclass(frozen=True, slots=True)
class Hit:
    """A cached answer: the provider's JSON, and what it cost when it was paid for."""

    answer: dict[str, Any]
    cost: float | None
    created: float


class ResponseCache:
    """One SQLite file, two connections: lookups on the event loop (a point read in WAL mode
    takes microseconds and waits for no writer; one that finds the file busy moves to the
    thread), writes on a thread of their own, queued and committed in batches (each entry
    whole in its batch's transaction), so a model call never waits for a disk write."""

    def __init__(self, path: Path, *, ttl_s: float = DEFAULT_TTL_S, refresh: bool = False) -> None:
        self.path = path
        self.ttl_s = ttl_s
        self.refresh = refresh
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="response-cache")
        self._writer: sqlite3.Connection | None = None  # the thread's
        self._reader: sqlite3.Connection | None = None  # the event loop's
        self._lock = threading.Lock()
        self._pending: list[tuple[str, float, bytes, bytes, float | None]] = []
        self._scheduled = False
        self._warned = False

    @classmethod
    async def open(cls, folder: Path, *, ttl_s: float = DEFAULT_TTL_S, refresh: bool = False) -> ResponseCache:
        """The cache in ``folder`` (created if missing); a folder that cannot hold one is a
        ``ConfigError`` saying so."""
        cache = cls(folder.expanduser() / FILE_NAME, ttl_s=ttl_s, refresh=refresh)
        try:
            await cache._run(cache._connect)
            cache._reader = _connection(cache.path, busy_timeout_ms=0, writes=False)
        except (OSError, sqlite3.Error) as exc:
            await cache.close()
            raise ConfigError(
                f"cannot open the response cache {str(cache.path)!r} ({exc}): choose a writable folder on a "
                "local disk with +cache_path=..., or run without +cache"
            ) from None
        return cache

    async def get(self, key: str) -> Hit | None:
        """The entry of ``key`` if it is younger than the time-to-live (None: a miss, or
        ``refresh``, or the cache failed)."""
        if self.refresh or self._reader is None:
            return None
        try:
            try:
                row = self._select(self._reader, key)
            except sqlite3.OperationalError:  # busy (a crashed writer's WAL being recovered): wait off the loop
                row = await self._run(self._select, self._writer, key)
        except sqlite3.Error as exc:
            self._warn("read", exc)
            return None
        if row is None:
            return None
        created, answer, cost = row
        try:
            data = loads(answer)
        except ValueError:
            return None  # cannot happen in one transaction; a miss rather than a wrong answer
        return Hit(data, cost, created) if isinstance(data, dict) else None

    def put(self, key: str, request: bytes, answer: bytes, cost: float | None) -> None:
        """Store (or replace) the entry of ``key``, soon: queued, and written by the cache's
        thread with whatever else is queued ``FLUSH_DELAY_S`` later (one commit for many
        entries: a commit costs far more than a row). Call it on the event loop."""
        with self._lock:
            self._pending.append((key, time.time(), request, answer, cost))
            if self._scheduled:
                return
            self._scheduled = True
        asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self._thread.submit, self._flush)

    async def flush(self) -> None:
        """Wait until what is queued is written."""
        if self._writer is not None:
            await self._run(self._flush)

    async def close(self) -> None:
        """Write what is queued, then close."""
        if self._writer is not None:
            await self._run(self._flush)
            await self._run(self._writer.close)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._thread.shutdown(wait=True)

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _select(self, db: sqlite3.Connection | None, key: str) -> tuple[float, bytes, float | None] | None:
        assert db is not None
        row = db.execute(
            "SELECT created, answer, cost FROM responses WHERE key = ? AND created >= ?",
            (key, time.time() - self.ttl_s),
        ).fetchone()
        return row  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ on the cache's thread

    def _connect(self) -> None:
        """The writer's connection, the file in WAL mode with its table. SQLite answers "database
        is locked" at once, without waiting, where waiting could deadlock (two processes
        switching a new file to WAL); such an open is tried again until the busy timeout."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            db = _connection(self.path, busy_timeout_ms=BUSY_TIMEOUT_MS)
            try:
                db.execute("PRAGMA journal_mode = WAL")
                db.execute(_SCHEMA)
                db.execute("DELETE FROM responses WHERE created < ?", (time.time() - self.ttl_s,))
            except sqlite3.OperationalError as exc:
                db.close()
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
                continue
            except BaseException:
                db.close()
                raise
            self._writer = db
            return

    def _flush(self) -> None:
        """Write the queued entries in one transaction (all of them or none)."""
        with self._lock:
            batch, self._pending = self._pending, []
            self._scheduled = False
        if not batch or self._writer is None:
            return
        db = self._writer
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT OR REPLACE INTO responses (key, created, request, answer, cost) VALUES (?, ?, ?, ?, ?)", batch
            )
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._warn("write", exc)

    def _warn(self, what: str, exc: sqlite3.Error) -> None:
        """One line the first time the cache fails; the run goes on without it."""
        if not self._warned:
            self._warned = True
            log.warning(
                "response cache %s: cannot %s (%s); requests go to the provider (further errors not logged)",
                self.path,
                what,
                exc,
            )


def _connection(path: Path, *, busy_timeout_ms: int, writes: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) with its busy timeout.
    Opening touches no page: ``PRAGMA synchronous`` reads the schema, so the reader (busy
    timeout 0) must not set it, or a writer holding the file at that instant (switching a new
    file to WAL, recovering a killed writer's WAL) fails the open: "database is locked"."""
    db = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None)
    try:
        db.execute(f"PRAGMA busy_timeout = {busy_timeout_ms}")
        if writes:
            # WAL + NORMAL: a committed entry survives its process being killed; a power cut
            # may lose the last ones, never tear one.
            db.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        db.close()
        raise
    return db
