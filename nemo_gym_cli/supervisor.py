"""Start, watch and stop the server processes of one config.

Servers are forked from a ``multiprocessing`` fork server that has already imported what
every server needs (FastAPI, uvicorn, aiohttp, ...): importing that costs ~0.5 s of CPU per
process, paid once instead of once per server, and the fork server starts importing while
we compose the config (``warm_up``). Each server runs in its own session (a terminal's
Ctrl-C reaches only us and we stop the children in order), with ``PR_SET_PDEATHSIG`` so it
stops if its parent dies without cleaning up. Its listening socket, spec (which may hold
keys: never on a command line) and an output socket are handed over by the fork server.
Its output is forwarded line by line, prefixed with the instance name, and the last lines
are kept to show when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nemo_gym_cli.config import GlobalConfig, ServerInstance
from nemo_gym_cli.errors import Interrupted, ServerError

__all__ = ["Supervisor"]

_TAIL_LINES = 40


def _listen(inst: ServerInstance) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in inst.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((inst.host, inst.port))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise ServerError(
            f"instance {inst.name!r} cannot listen on {inst.host}:{inst.port} ({exc.strerror}); "
            "free that port or set another one in its config (port: ...)"
        ) from None
    return sock


async def _healthy(inst: ServerInstance) -> bool:
    """Does ``GET /health`` answer 200? A bare HTTP/1.0 request: this runs in ``ng_run``
    before anything else, and importing an HTTP client library would delay start-up."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(inst.host, inst.port), 2.0)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.0\r\nHost: {inst.host}\r\n\r\n".encode())
        status = await asyncio.wait_for(reader.readline(), 2.0)
        return status.split(b" ", 2)[1:2] == [b"200"]
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()


#: Imported once by the fork server, before any server is forked from it.
PRELOAD = [
    "nemo_gym_cli.serve",
    "nemo_gym_cli.servers",
    "nemo_gym_cli.resources",
    "nemo_gym_cli.client",
    "nemo_gym_cli.conversion",
    "nemo_gym_cli.upstream",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "uvloop",
]


def _context() -> Any:
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def warm_up() -> None:
    """Start the fork server now, so it imports while the caller composes the config."""
    import multiprocessing.forkserver

    _context()
    multiprocessing.forkserver.ensure_running()


def _stop_fork_server() -> None:
    """SIGTERM the fork server (it would otherwise finish its imports before noticing that
    we are done); a server it forked meanwhile gets PR_SET_PDEATHSIG's SIGTERM."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)


class _ForkedProcess:
    """What the supervisor needs of a server process: pid, exit code, wait, output."""

    def __init__(self, process: Any, stdout: asyncio.StreamReader) -> None:
        self._process = process
        self.pid: int = process.pid
        self.stdout = stdout

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        while self._process.exitcode is None:
            ended: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self._process.sentinel, _set_done, ended)
            try:
                if self._process.exitcode is None:
                    await ended
            finally:
                loop.remove_reader(self._process.sentinel)
        return self._process.exitcode


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass
class _Child:
    instance: ServerInstance
    process: _ForkedProcess
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    ready: bool = False
    pump: asyncio.Task[None] | None = None
    writer: Any = None


class Supervisor:
    """Runs every server instance of ``config`` as a child process."""

    def __init__(self, config: GlobalConfig, *, write: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.children: dict[str, _Child] = {}
        self._write = write or (lambda line: print(line, flush=True))

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, timeout: float = 60.0, stop_event: asyncio.Event | None = None) -> None:
        """Start every instance and wait until each ``/health`` answers.

        Raises ``ServerError`` (after stopping what was started) if a child dies, the
        timeout passes, or ``stop_event`` is set first.
        """
        await self.spawn()
        await self.wait_ready(timeout=timeout, stop_event=stop_event)

    async def spawn(self) -> None:
        """Start every instance's process (stops what was started if one can't be)."""
        from nemo_gym_cli.serve import child_main

        urls = self.config.server_urls
        ctx = _context()
        try:
            for inst in self.config.instances.values():
                # We bind the socket and hand it over, so no other process can take the port
                # between choosing it and the child's start, and a busy port is one clear error.
                sock = _listen(inst)
                ours, theirs = socket.socketpair()
                payload = {"entrypoint": inst.entrypoint, "spec": inst.spec(urls).__dict__}
                try:
                    process = ctx.Process(target=child_main, args=(payload, sock, theirs), name=inst.name)
                    await asyncio.get_running_loop().run_in_executor(None, process.start)
                finally:
                    sock.close()
                    theirs.close()
                reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
                child = _Child(inst, _ForkedProcess(process, reader))
                child.writer = writer
                self.children[inst.name] = child
                child.pump = asyncio.create_task(self._pump(child))
        except BaseException:
            await self.stop()
            raise

    async def _pump(self, child: _Child) -> None:
        assert child.process.stdout is not None
        prefix = f"[{child.instance.name}] "
        while True:
            try:
                raw = await child.process.stdout.readline()
            except ValueError:  # a line longer than the stream limit: skip it
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            child.tail.append(line)
            self._write(prefix + line)

    async def wait_ready(self, *, timeout: float = 60.0, stop_event: asyncio.Event | None = None) -> None:
        """Wait until every child's ``/health`` answers 200; stop them all on failure."""
        try:
            await self._wait_ready(timeout, stop_event)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, timeout: float, stop_event: asyncio.Event | None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = self.first_dead()
            if dead is not None:
                raise ServerError(self._death_message(dead, "while starting"))
            if stop_event is not None and stop_event.is_set():
                raise Interrupted("interrupted while starting servers; all stopped")
            pending = [c for c in self.children.values() if not c.ready]
            if not pending:
                return
            results = await asyncio.gather(*(_healthy(c.instance) for c in pending))
            for child, healthy in zip(pending, results, strict=True):
                child.ready = healthy
            if all(c.ready for c in self.children.values()):
                return
            if time.monotonic() > deadline:
                names = ", ".join(c.instance.name for c in self.children.values() if not c.ready)
                raise ServerError(f"servers not ready after {timeout:.0f} s: {names}; see their output above")
            await asyncio.sleep(0.02)

    def first_dead(self) -> _Child | None:
        for child in self.children.values():
            if child.process.returncode is not None:
                return child
        return None

    def _death_message(self, child: _Child, when: str) -> str:
        tail = "\n".join(f"    {line}" for line in child.tail) or "    (no output)"
        return (
            f"server {child.instance.name!r} ({child.instance.server_type}/{child.instance.implementation}) "
            f"exited with code {child.process.returncode} {when}; its last output:\n{tail}"
        )

    async def watch(self, stop_event: asyncio.Event) -> int:
        """Wait until a child dies (returns 1, after printing why) or ``stop_event`` is set (0)."""
        waits = {asyncio.create_task(c.process.wait()): c for c in self.children.values()}
        stopper = asyncio.create_task(stop_event.wait())
        try:
            done, _ = await asyncio.wait({stopper, *waits}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (stopper, *waits):
                task.cancel()
        dead = self.first_dead()
        if dead is not None and not stop_event.is_set():
            if dead.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(dead.pump, 1.0)
            self._write("error: " + self._death_message(dead, "unexpectedly") + "\nstopping the other servers")
            return 1
        return 0

    async def stop(self, *, grace: float = 5.0) -> None:
        """SIGTERM every child, wait up to ``grace`` seconds, then SIGKILL what is left."""
        alive = [c for c in self.children.values() if c.process.returncode is None]
        for child in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGTERM)
        if alive:
            _, pending = await asyncio.wait([asyncio.create_task(c.process.wait()) for c in alive], timeout=grace)
            for child in alive:
                if child.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(child.process.pid, signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for child in self.children.values():
            if child.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.pump, 1.0)
        _stop_fork_server()

    # ------------------------------------------------------------------ reporting

    def describe(self) -> list[dict[str, Any]]:
        """The instance table: name, type, implementation, URL, pid, ready. No config fields."""
        rows = []
        for inst in self.config.instances.values():
            child = self.children.get(inst.name)
            rows.append(
                {
                    "name": inst.name,
                    "type": inst.server_type,
                    "implementation": inst.implementation,
                    "url": inst.url,
                    "pid": child.process.pid if child else None,
                    "ready": bool(child and child.ready and child.process.returncode is None),
                }
            )
        return rows

    def table(self) -> str:
        rows = self.describe()
        cols = ["name", "type", "implementation", "url", "pid"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols} if rows else {c: len(c) for c in cols}
        lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols)]
        lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
        return "\n".join(lines)
