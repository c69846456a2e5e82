"""Load one server implementation and serve it: what every server process runs.

``load_server(entrypoint, spec)`` imports the implementation's module and builds its one
server class from the spec (config validated once, here). ``serve(payload, fd)`` runs it
under uvicorn (uvloop, httptools) on a listening socket the supervisor bound and handed
over, and tunes the process (GC, open-file limit): this is a process entry point.

Implementations are imported as packages, never by editing ``sys.path``: one of ours
(``resources_servers/simple_weather/app.py``) by its dotted name; a folder of the user's
(``./resources_servers/my_env/app.py``) as a package of its own name, so its ``app.py`` can
import its siblings relatively (``from .world import World``).

``python -m nemo_gym_cli.server.serve`` runs one server from a JSON payload on stdin (specs
may hold keys: never on a command line): the supervisor's fallback when it cannot fork.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import os
import signal
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from nemo_gym_cli.errors import ConfigError, NemoGymError
from nemo_gym_cli.redaction import MASK, mask_output
from nemo_gym_cli.server import usercode
from nemo_gym_cli.server.spec import ServerSpec
from nemo_gym_cli.wire import loads

__all__ = ["load_server", "serve", "serve_server"]

#: Exit code of a server that could not start because of its config (the supervisor turns
#: it into ng_run's exit code 2).
EXIT_CONFIG = 78
#: Exit code of a server whose start-up check failed (e.g. the provider refused the key).
EXIT_STARTUP = 79


def import_implementation(entrypoint: str, server_type: str, implementation: str) -> ModuleType:
    """The module of ``entrypoint`` (a ``.py`` file inside ``<type>/<implementation>/``)."""
    path = Path(entrypoint).resolve()
    folder = _implementation_folder(path, server_type, implementation)
    relative = path.relative_to(folder).with_suffix("")
    dotted = ".".join(relative.parts)
    package = f"{server_type}.{implementation}"
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    locations = list(found.submodule_search_locations or []) if found else []
    if any(Path(loc).resolve() == folder for loc in locations):
        return importlib.import_module(f"{package}.{dotted}")
    # A folder of the user's: import it as a package named after it.
    name = f"{USER_PACKAGE_PREFIX}{server_type}__{implementation}"
    register_user_package(name, str(folder))
    return importlib.import_module(f"{name}.{dotted}")


#: Names of the packages made for the user's folders (offload workers re-create them).
USER_PACKAGE_PREFIX = "_ng_"


def register_user_package(name: str, folder: str) -> None:
    """Make the folder importable as the package ``name`` (a no-op when it already is)."""
    if name not in sys.modules:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [folder]
        sys.modules[name] = importlib.util.module_from_spec(spec)


def user_packages() -> dict[str, str]:
    """The user-folder packages of this process, by name: their folder."""
    return {
        name: module.__path__[0]
        for name, module in list(sys.modules.items())
        if name.startswith(USER_PACKAGE_PREFIX) and "." not in name and getattr(module, "__path__", None)
    }


def _implementation_folder(path: Path, server_type: str, implementation: str) -> Path:
    for parent in path.parents:
        if parent.name == implementation and parent.parent.name == server_type:
            return parent
    raise ConfigError(f"entrypoint {str(path)!r} is not inside a {server_type}/{implementation}/ folder")


def server_class(module: ModuleType) -> type[Any]:
    """The one server class ``module`` defines (or names as ``server_class``)."""
    from nemo_gym_cli.server.base import Server

    named = getattr(module, "server_class", None)
    if isinstance(named, type) and issubclass(named, Server):
        return named
    found = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, Server) and obj.__module__ == module.__name__
    ]
    if len(found) == 1:
        return found[0]
    names = ", ".join(sorted(c.__name__ for c in found)) or "none"
    raise ConfigError(
        f"{module.__file__}: expected exactly one server class (a subclass of ResourcesServer, Agent or "
        f"ModelServer), found {names}; name the one to serve with `server_class = YourServer`"
    )


def load_server(entrypoint: str, spec: ServerSpec) -> Any:
    """Import the implementation and build its server from ``spec`` (config validated)."""
    module = import_implementation(entrypoint, spec.server_type, spec.implementation)
    cls = server_class(module)
    if cls.server_type and cls.server_type != spec.server_type:
        raise ConfigError(
            f"{spec.where}: {cls.__name__} is a {cls.server_type} server, but the config lists it under "
            f"{spec.server_type}"
        )
    return cls.from_spec(spec)


async def _serve(server: Any, fd: int | None, lifeline: int | None) -> int:
    import socket

    import uvicorn

    from nemo_gym_cli.server.base import asgi

    try:
        await server.startup()
    except NemoGymError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG if isinstance(exc, ConfigError) else EXIT_STARTUP
    except Exception as exc:  # the user's start() failed: one line, or our bug: its traceback
        _user_start_failure(exc)
    config = uvicorn.Config(
        asgi(server),
        host=server.spec.host,
        port=server.spec.port,
        loop="none",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=1,
        backlog=4096,
    )
    userver = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    if lifeline is not None:  # our parent is gone when the other end of this pipe closes

        def parent_gone() -> None:
            loop.remove_reader(lifeline)
            userver.should_exit = True

        loop.add_reader(lifeline, parent_gone)
    # Not uvicorn's own fd= option: it takes every inherited fd for a Unix socket, so accepted
    # connections would miss TCP_NODELAY and small responses would wait ~40 ms on Nagle.
    sockets = [socket.socket(fileno=fd)] if fd is not None else None
    try:
        await userver.serve(sockets=sockets)
    finally:
        await server.shutdown()
    return 0


def serve(payload: dict[str, Any], fd: int | None, lifeline: int | None = None) -> None:
    """Load the server ``payload`` describes and serve it until stopped, then exit."""
    MASK.add(payload.get("secrets") or ())
    mask_output()  # before logging is set up: its handler writes through the mask too
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True)
    spec = ServerSpec(**payload["spec"])
    usercode.errors_log.configure(payload.get("errors_log"), spec.name)
    try:
        server = load_server(payload["entrypoint"], spec)
    except NemoGymError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG if isinstance(exc, ConfigError) else 1) from None
    except Exception as exc:  # a syntax or import error in the user's app.py: one line
        _user_start_failure(exc)
    code = serve_server(server, fd, lifeline)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip interpreter teardown: nothing left to flush or close


def _user_start_failure(exc: Exception) -> NoReturn:
    """Exit with one line naming an error of the user's code that stopped the server from
    starting (the traceback in its errors log); an error of ours keeps its traceback."""
    frame = usercode.user_frame(exc)
    if frame is None:
        raise exc
    line, _ = usercode.errors_log.record(exc, frame)
    # The supervisor names the server ("server 'my_env' could not start: ...").
    print(f"error: {line.removeprefix(usercode.errors_log.server + ': ')}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STARTUP) from None


def serve_server(server: Any, fd: int | None = None, lifeline: int | None = None) -> int:
    """Serve a built server on the listening socket ``fd`` (else its spec's host and port)
    until SIGINT/SIGTERM or its lifeline closes; returns the exit code."""
    from nemo_gym_cli.limits import raise_open_file_limit
    from nemo_gym_cli.runtime import run_async, tune_gc

    raise_open_file_limit()
    tune_gc()
    # uvicorn handles SIGINT/SIGTERM while it serves (a graceful stop), then raises the
    # signal again for the handler it found: ours lets the process finish its shutdown.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    return int(run_async(_serve(server, fd, lifeline)))


def main() -> None:
    """``python -m nemo_gym_cli.server.serve``: one server from a JSON payload on stdin
    (``{"entrypoint", "spec", "fd"?, "lifeline"?}``)."""
    raw = loads(sys.stdin.buffer.read())
    serve(raw, raw.get("fd"), raw.get("lifeline"))


if __name__ == "__main__":
    main()
