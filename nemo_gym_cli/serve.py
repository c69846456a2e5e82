"""The process that runs one server: ``python -m nemo_gym_cli.serve`` with its spec on stdin.

The spec (JSON) travels over stdin, not the command line or the environment, because it may
hold API keys: ``ps`` shows command lines to every user.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any

from nemo_gym_cli.errors import NemoGymError
from nemo_gym_cli.spec import ServerSpec
from nemo_gym_cli.wire import loads

__all__ = ["load_app", "run_server"]


def load_app(entrypoint: str, spec: ServerSpec) -> Any:
    """Import the implementation (a file ``app.py`` or a module name) and call ``create_app``."""
    if entrypoint.endswith(".py"):
        path = Path(entrypoint)
        sys.path.insert(0, str(path.parent))  # let app.py import its sibling modules
        module_name = f"_ng_app_{spec.server_type}_{spec.implementation}"
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        assert module_spec and module_spec.loader
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(entrypoint)
    factory = getattr(module, "create_app", None)
    if factory is None:
        raise NemoGymError(f"{entrypoint} has no create_app(spec) function")
    return factory(spec)


def run_async(coro: Any) -> Any:
    """``asyncio.run`` on uvloop where it is installed (less CPU per I/O event)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)
    return uvloop.run(coro)


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running, allocation-heavy server.

    Everything imported so far is frozen out of collection, and the youngest generation is
    collected every 50,000 allocations instead of 700: with thousands of requests in flight
    the default collects so often that its scans of the live heap grow with concurrency.
    Reference counting still frees almost everything at once; only cycles wait longer.
    """
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run_server(app: Any, host: str, port: int, fd: int | None = None) -> None:
    """Serve ``app`` with uvicorn on the fastest loop and parser available, quietly; on the
    listening socket ``fd`` when the supervisor handed one over."""
    import socket

    import uvicorn

    try:
        import uvloop  # noqa: F401

        loop = "uvloop"
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        loop = "asyncio"
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=3,
        backlog=4096,
    )
    # Not uvicorn's own fd= option: it takes every inherited fd for a Unix socket, so accepted
    # connections would miss TCP_NODELAY and small responses would wait ~40 ms on Nagle.
    sockets = [socket.socket(fileno=fd)] if fd is not None else None
    uvicorn.Server(config).run(sockets=sockets)


def _die_with_parent() -> None:
    """Ask the kernel for SIGTERM when our parent (the fork server) dies."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass


def child_main(payload: dict[str, Any], sock: Any, out: Any) -> None:
    """A server process forked by the supervisor's fork server: ``sock`` is its listening
    socket, ``out`` the socket its stdout and stderr go to, ``payload`` its spec."""
    import os
    from multiprocessing import forkserver, resource_tracker

    # multiprocessing gives each forked child the write end of the fork server's "alive" pipe
    # (and the resource tracker's), which keeps the fork server up as long as any child
    # lives. Close them: the fork server then exits with its parent, and PR_SET_PDEATHSIG
    # takes us down with it, so a SIGKILLed ng_run leaves nothing behind.
    for owner, attr in ((forkserver._forkserver, "_forkserver_alive_fd"), (resource_tracker._resource_tracker, "_fd")):
        fd = getattr(owner, attr, None)
        if fd is not None:
            os.close(fd)
            setattr(owner, attr, None)
    parent = os.getppid()
    os.setsid()
    _die_with_parent()
    if os.getppid() != parent:  # the fork server died before PR_SET_PDEATHSIG took effect
        os._exit(1)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    out.close()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    serve(payload, sock.detach())


def serve(payload: dict[str, Any], fd: int | None) -> None:
    """Load the server ``payload`` describes and serve it until stopped."""
    from nemo_gym_cli.servers import DirectRoutes

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    spec = ServerSpec(**payload["spec"])
    try:
        app = load_app(payload["entrypoint"], spec)
    except NemoGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    tune_gc()
    run_server(DirectRoutes(app), spec.host, spec.port, fd)


def main() -> None:
    """``python -m nemo_gym_cli.serve``: one server from a JSON payload on stdin
    (``{"entrypoint", "spec", "fd"?}``), for running a server without ``ng_run``."""
    raw = loads(sys.stdin.buffer.read())
    serve(raw, raw.get("fd"))


if __name__ == "__main__":
    main()
