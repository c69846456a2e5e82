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
    uvicorn: _Uvicorn | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class Stack:
    urls: dict[str, str]
    servers: dict[str, Any]


class _Uvicorn(uvicorn.Server):
    """uvicorn, told when it has started and when to stop by events, not by polling: its own
    loop looks at ``should_exit`` every 0.1 s and its shutdown sleeps 0.1 s more, which,
    paid by every ``serving`` block, added up to seconds of the unit tier."""

    def __init__(self, config: uvicorn.Config, ready: threading.Event) -> None:
        super().__init__(config)
        self._ready = ready
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._ready.set()

    async def main_loop(self) -> None:
        await self.on_tick(0)  # the default headers
        await self._stopping.wait()

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        for task in self.server_state.tasks:  # don't wait for stalled requests
            task.cancel()
        await asyncio.sleep(0)  # let the connections close

    def stop(self) -> None:
        """From any thread: stop serving."""
        self.should_exit = True
        self._loop.call_soon_threadsafe(self._stopping.set)


def _serve(running: _Running, sock: Any) -> None:
    async def main() -> None:
        try:
            await running.server.startup()
        except BaseException as exc:
            running.error = exc
            running.ready.set()
            return
        config = uvicorn.Config(asgi(running.server), lifespan="off", log_level="warning", access_log=False)
        running.uvicorn = _Uvicorn(config, running.ready)
        try:
            await running.uvicorn.serve(sockets=[sock])
        except BaseException as exc:  # uvicorn could not start: it exits
            running.error = exc
        finally:
            running.ready.set()
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
                run.uvicorn.stop()
        for run in running.values():
            run.thread.join(10)
        for sock in sockets.values():
            sock.close()
