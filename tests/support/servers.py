"""Real servers of ours on loopback, in this process: what unit tests of servers run.

    with serving({"emulator": emulator(), "model": model(upstream="emulator")}) as stack:
        httpx.post(stack.urls["model"] + "/v1/responses", json=...)

Each server gets a listening socket on a free port (bound first, so every server knows the
others' URLs through its spec, as under ``ng_run``), its ``start()`` runs, and uvicorn serves
``asgi(server)`` (the app production serves) from a thread with its own event loop. On exit
every server stops (its ``stop()`` runs) and its thread ends.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from nemo_gym_cli.server import Server, ServerSpec, asgi
from support.ports import bound_socket

__all__ = ["Stack", "serving"]

#: Builds a server from its spec (the spec carries every server's URL).
Factory = Callable[[ServerSpec], Server]


@dataclass
class _Running:
    server: Server
    thread: threading.Thread
    uvicorn: uvicorn.Server | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class Stack:
    urls: dict[str, str]
    servers: dict[str, Any]


def _serve(running: _Running, sock: Any) -> None:
    async def main() -> None:
        try:
            await running.server.startup()
        except BaseException as exc:
            running.error = exc
            running.ready.set()
            return
        config = uvicorn.Config(asgi(running.server), lifespan="off", log_level="warning", access_log=False)
        running.uvicorn = uvicorn.Server(config)
        started = asyncio.ensure_future(running.uvicorn.serve(sockets=[sock]))
        while not running.uvicorn.started and not started.done():
            await asyncio.sleep(0.001)
        running.ready.set()
        try:
            await started
        finally:
            await running.server.shutdown()

    asyncio.run(main())


@contextmanager
def serving(factories: dict[str, Factory], *, server_type: str = "test") -> Iterator[Stack]:
    """Serve each server ``factories`` builds, on loopback; yields their URLs and objects."""
    sockets = {name: bound_socket() for name in factories}
    urls = {name: f"http://127.0.0.1:{s.getsockname()[1]}" for name, s in sockets.items()}
    running: dict[str, _Running] = {}
    try:
        for name, factory in factories.items():
            spec = ServerSpec(
                name=name,
                server_type=server_type,
                implementation=name,
                port=sockets[name].getsockname()[1],
                server_urls=urls,
            )
            server = factory(spec)
            run = _Running(server, threading.Thread(target=lambda: None))
            run.thread = threading.Thread(target=_serve, args=(run, sockets[name]), daemon=True, name=f"serve-{name}")
            running[name] = run
            run.thread.start()
            if not run.ready.wait(30):
                raise AssertionError(f"{name} did not start within 30 s")
            if run.error is not None:
                raise run.error
        yield Stack(urls, {name: r.server for name, r in running.items()})
    finally:
        for run in running.values():
            if run.uvicorn is not None:
                run.uvicorn.should_exit = True
                run.uvicorn.force_exit = True  # don't wait for stalled requests
        for run in running.values():
            run.thread.join(10)
        for sock in sockets.values():
            sock.close()
