"""Server processes, started fast: a preloaded fork server, or plain spawning as a fallback.

Importing what a server needs (pydantic, uvicorn, aiohttp, the kernel) costs ~0.5 s of CPU
per process. ``ForkServer`` starts one helper process (``python -m
nemo_gym_cli.process.forkserver``) that imports all of it once, then forks a server process
per request: start-up is paid once, not once per server, and begins while the caller is
still composing the config.

Only public APIs: ``os.fork``, ``socket.send_fds``/``recv_fds`` (the listening and output
sockets travel as file descriptors), ``signal.set_wakeup_fd`` and ``os.waitpid`` (the fork
server reports each child's exit). No process outlives its parent, through *lifelines*:
the supervisor holds the write end of a pipe whose read end the fork server watches, and
the fork server holds one per child; when a holder dies, however it dies, the pipe closes
and the process on the other end stops (a server then shuts down gracefully).

``spawn_supported()`` is the capability check (Linux-like: fork, SOCK_SEQPACKET, fd
passing); where it fails, or with ``NG_SERVER_START=spawn``, or when the fork server does not
come up, ``Supervisor`` starts each server as ``python -m nemo_gym_cli.server.serve`` with the
same sockets and lifeline (slower, same behaviour). Both paths are tested.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import select
import signal
import socket
import subprocess
import sys
from typing import Any

from nemo_gym_cli.wire import dumps, loads

__all__ = ["PRELOAD", "ForkServer", "fork_supported"]

#: Imported once by the fork server, before any server is forked from it.
PRELOAD = (
    "nemo_gym_cli.server.serve",
    "nemo_gym_cli.server.base",
    "nemo_gym_cli.server.resources",
    "nemo_gym_cli.server.agent",
    "nemo_gym_cli.server.model",
    "nemo_gym_cli.providers.upstream",
    "nemo_gym_cli.openai.conversion",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.lifespan.on",
    "uvloop",
)
_MAX_MESSAGE = 1 << 20


def fork_supported() -> bool:
    """Can servers be forked from a fork server here (and were we not told otherwise)?"""
    if os.environ.get("NG_SERVER_START", "").lower() == "spawn":
        return False
    return (
        hasattr(os, "fork")
        and hasattr(socket, "SOCK_SEQPACKET")
        and hasattr(socket, "send_fds")
        and sys.platform.startswith("linux")
    )


class ForkServer:
    """The supervisor's handle on one fork server process."""

    def __init__(self, preload: tuple[str, ...] = PRELOAD) -> None:
        self._ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lifeline_r, self._lifeline = os.pipe()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "nemo_gym_cli.process.forkserver", str(theirs.fileno()), str(lifeline_r)],
            pass_fds=(theirs.fileno(), lifeline_r),
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NG_PRELOAD": ",".join(preload)},
        )
        theirs.close()
        os.close(lifeline_r)
        self._ctl.setblocking(False)
        self._ready: asyncio.Future[None] | None = None
        self._replies: asyncio.Queue[int] | None = None
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._lock: asyncio.Lock | None = None
        self._closed = False

    # -- in the event loop -----------------------------------------------------------------

    def _attach(self) -> None:
        if self._ready is not None:
            return
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._replies = asyncio.Queue()
        self._lock = asyncio.Lock()
        loop.add_reader(self._ctl.fileno(), self._on_message)

    def _on_message(self) -> None:
        try:
            data = self._ctl.recv(_MAX_MESSAGE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the fork server is gone: so are the servers it forked
            self._detach()
            for future in self._exits.values():
                if not future.done():
                    future.set_result(-signal.SIGKILL)
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(OSError("the fork server exited while starting"))
            if self._replies is not None:
                self._replies.put_nowait(-1)
            return
        message = loads(data)
        kind = message[0]
        if kind == "ready":
            assert self._ready is not None
            if not self._ready.done():
                self._ready.set_result(None)
        elif kind == "spawned":
            assert self._replies is not None
            self._replies.put_nowait(int(message[1]))
        elif kind == "exit":
            pid, code = int(message[1]), int(message[2])
            future = self._exit_future(pid)
            if not future.done():
                future.set_result(code)

    def _detach(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._ctl.fileno())

    def _exit_future(self, pid: int) -> asyncio.Future[int]:
        future = self._exits.get(pid)
        if future is None:
            future = self._exits[pid] = asyncio.get_running_loop().create_future()
        return future

    async def wait_ready(self, timeout: float) -> None:
        self._attach()
        assert self._ready is not None
        await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    async def fork(self, payload: dict[str, Any], listen: socket.socket, out: socket.socket) -> ForkedChild:
        """Fork one server process serving ``payload`` on ``listen``, output to ``out``."""
        self._attach()
        assert self._lock is not None and self._replies is not None
        async with self._lock:
            await self.wait_ready(60.0)
            socket.send_fds(self._ctl, [dumps(payload)], [listen.fileno(), out.fileno()])
            pid = await self._replies.get()
        if pid < 0:
            raise OSError("the fork server exited")
        return ForkedChild(pid, self._exit_future(pid))

    def close(self) -> None:
        """Stop the fork server (its lifeline closes); servers it forked see theirs close."""
        if self._closed:
            return
        self._closed = True
        self._detach()
        with contextlib.suppress(OSError):
            os.close(self._lifeline)
        self._ctl.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(2.0)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class ForkedChild:
    """A server process forked by the fork server: its pid and, later, its exit code."""

    def __init__(self, pid: int, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self._exited = exited

    @property
    def returncode(self) -> int | None:
        return self._exited.result() if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send(self, sig: int) -> None:
        """Signal the server's process group (it runs in a session of its own)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


# --- the fork server process ---------------------------------------------------------------


def _main(ctl_fd: int, lifeline: int) -> None:  # pragma: no cover - runs in its own process
    ctl = socket.socket(fileno=ctl_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the supervisor's to handle
    for name in filter(None, os.environ.pop("NG_PRELOAD", "").split(",")):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    try:
        ctl.send(dumps(["ready"]))
    except OSError:
        return  # the supervisor gave up on us (e.g. its config was wrong) before we were ready
    lifelines: dict[int, int] = {}  # child pid -> write end of its lifeline
    while True:
        try:
            readable, _, _ = select.select([ctl.fileno(), lifeline, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            with contextlib.suppress(BlockingIOError, OSError):
                os.read(wake_r, 4096)
            _reap(ctl, lifelines)
        if lifeline in readable:
            return  # the supervisor is gone: so are we; our children see their lifelines close
        if ctl.fileno() in readable:
            try:
                message, fds, _, _ = socket.recv_fds(ctl, _MAX_MESSAGE, 4)
            except OSError:
                return
            if not message:
                return
            payload = loads(message)
            listen_fd, out_fd = fds
            child_r, child_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                _child(
                    payload,
                    listen_fd,
                    out_fd,
                    child_r,
                    [child_w, ctl.fileno(), lifeline, wake_r, wake_w, *lifelines.values()],
                )
            os.close(listen_fd)
            os.close(out_fd)
            os.close(child_r)
            lifelines[pid] = child_w
            ctl.send(dumps(["spawned", pid]))


def _reap(ctl: socket.socket, lifelines: dict[int, int]) -> None:  # pragma: no cover - own process
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            os.close(lifelines.pop(pid))
        with contextlib.suppress(OSError):
            ctl.send(dumps(["exit", pid, os.waitstatus_to_exitcode(status)]))


def _child(
    payload: dict[str, Any], listen_fd: int, out_fd: int, lifeline: int, close: list[int]
) -> None:  # pragma: no cover
    try:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for fd in close:
            with contextlib.suppress(OSError):
                os.close(fd)
        os.setsid()
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        from nemo_gym_cli.server.serve import serve

        serve(payload, listen_fd, lifeline)
    except SystemExit as exc:  # serve's way of saying why it could not start
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    _main(int(sys.argv[1]), int(sys.argv[2]))
