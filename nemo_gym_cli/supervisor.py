"""Start, watch and stop the server processes of one config.

Each instance runs as ``python -m nemo_gym_cli.serve`` in its own session (so a terminal's
Ctrl-C reaches only us and we stop the children in order), with ``PR_SET_PDEATHSIG`` so the
kernel stops it if we die without cleaning up. Its spec goes over stdin (it may hold keys).
Its output is forwarded line by line, prefixed with the instance name, and the last lines
are kept to show when it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nemo_gym_cli.config import GlobalConfig, ServerInstance
from nemo_gym_cli.errors import Interrupted, ServerError
from nemo_gym_cli.wire import dumps

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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Child:
    instance: ServerInstance
    process: asyncio.subprocess.Process
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    ready: bool = False
    pump: asyncio.Task[None] | None = None


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
        urls = self.config.server_urls
        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            for inst in self.config.instances.values():
                # We bind the socket and hand it over, so no other process can take the port
                # between choosing it and the child's start, and a busy port is one clear error.
                sock = _listen(inst)
                fd = sock.fileno()  # pass_fds keeps the number in the child
                try:
                    proc = await self._spawn(python, env, sock)
                finally:
                    sock.close()
                child = _Child(inst, proc)
                self.children[inst.name] = child
                assert proc.stdin is not None
                spec = inst.spec(urls)
                payload = {"entrypoint": inst.entrypoint, "fd": fd, "spec": spec.__dict__}
                proc.stdin.write(dumps(payload))
                await proc.stdin.drain()
                proc.stdin.close()
                child.pump = asyncio.create_task(self._pump(child))
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, python: str, env: dict[str, str], sock: socket.socket) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            python,
            "-m",
            "nemo_gym_cli.serve",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            env=env,
            pass_fds=(sock.fileno(),),
        )

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
