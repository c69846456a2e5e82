"""The open-file limit: raised at every process's start, and what it allows.

Each rollout in flight holds a few sockets in every process it crosses, so the common
default soft limit (``ulimit -n 1024``) caps a run at a few hundred concurrent rollouts,
and past it calls fail with "Too many open files" far from the cause. Every entry point
raises the soft limit to the hard limit (allowed without privileges); ``fd_budget`` says
how many descriptors are left for connections, so pools can be sized to fit, and
``check_concurrency`` turns a concurrency the limit cannot carry into one clear error.
"""

from __future__ import annotations

import os

__all__ = ["check_concurrency", "fd_budget", "open_file_limit", "raise_open_file_limit"]

#: Descriptors kept for everything that is not a connection (files, pipes, the loop).
RESERVED_FDS = 64


def open_file_limit() -> int | None:
    """The soft limit on open files, or None where there is none (or no ``resource``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def raise_open_file_limit() -> int | None:
    """Raise the soft open-file limit to the hard limit; returns the new soft limit."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # pragma: no cover - some containers refuse
            pass
    return None if soft == resource.RLIM_INFINITY else soft


def fd_budget() -> int | None:
    """Descriptors this process can still open for connections (None: no limit)."""
    limit = open_file_limit()
    if limit is None:
        return None
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    return max(0, limit - in_use - RESERVED_FDS)


def check_concurrency(concurrency: int, *, per_rollout: int = 1, what: str = "+concurrency") -> str | None:
    """A message saying why ``concurrency`` rollouts cannot fit in this process's open-file
    limit (each needing ``per_rollout`` descriptors), or None when they fit."""
    budget = fd_budget()
    if budget is None or concurrency * per_rollout <= budget:
        return None
    limit = open_file_limit()
    fits = max(1, budget // per_rollout)
    return (
        f"{what}={concurrency} needs about {concurrency * per_rollout} open files but the limit is {limit} "
        f"(ulimit -n; the hard limit could not be raised further): lower {what} to at most {fits}, or raise "
        f"the limit (`ulimit -n 65536` in the shell, or LimitNOFILE= for a service) and run again"
    )
