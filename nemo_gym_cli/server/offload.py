"""CPU-heavy calls off the event loop: a small pool of worker processes with a timeout.

A verifier that parses LaTeX or runs code can take seconds, or forever on a pathological
input. Run on the server's event loop, it would stall every other rollout; in a thread, it
could not be stopped. ``WorkerPool.run(fn, args, timeout)`` sends ``fn(*args)`` (a
module-level function: it travels by name) to an idle worker process and waits without
blocking the loop. The timeout counts from when the worker starts ``fn`` (importing its
module is not counted); a call that runs past it gets its worker killed and replaced, and
raises ``HTTPError`` 500 ``offload_timeout`` (not retryable: the same input would hang
again). An exception inside ``fn``, or a function a worker cannot load, is raised here as
``HTTPError`` 500 ``offload_error``. Workers re-create the packages of the user's environment
folders (``serve.register_user_package``), so an environment outside this repository can
offload its own functions.

Workers are started with multiprocessing's ``spawn`` method (a fresh interpreter: safe in a
process that has threads and a running loop) when first needed, and exit with the server
(their pipe closes).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from nemo_gym_cli.errors import HTTPError

__all__ = ["WorkerPool", "failed", "timed_out"]

#: How long a worker may take to import the function's module before the timeout starts.
IMPORT_GRACE_S = 120.0


def _worker_main(conn: Connection, packages: dict[str, str]) -> None:
    from nemo_gym_cli.server.serve import register_user_package

    for name, folder in packages.items():  # a user's environment folder, importable here too
        register_user_package(name, folder)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            fn, args = pickle.loads(message)  # imports fn's module: before "started"
        except BaseException as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send(("error", f"a worker process could not load it ({detail}); offload a module-level function"))
            continue
        conn.send(("started", None))
        try:
            conn.send(("ok", fn(*args)))
        except BaseException as exc:  # reported to the caller, the worker lives on
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            conn.send(("error", detail))


class _Worker:
    def __init__(self, ctx: Any) -> None:
        from nemo_gym_cli.server.serve import user_packages

        self.conn, child = ctx.Pipe()
        args = (child, user_packages())
        self.process = ctx.Process(target=_worker_main, args=args, daemon=True, name="ng-offload")
        self.process.start()
        child.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.join(5)
        self.conn.close()


class WorkerPool:
    """At most ``size`` worker processes; ``run`` waits for an idle one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        for _ in range(size):
            self._idle.put_nowait(None)  # a slot; its worker starts on first use
        self._workers: set[_Worker] = set()

    async def __aenter__(self) -> WorkerPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for worker in list(self._workers):
            worker.kill()
        self._workers.clear()

    async def run(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
        loop = asyncio.get_running_loop()
        try:
            message = pickle.dumps((fn, args))  # a function travels by name, arguments by value
        except Exception as exc:
            raise HTTPError(
                500,
                f"{getattr(fn, '__qualname__', fn)} cannot be sent to a worker process ({exc}): offload a "
                "module-level function with picklable arguments",
                kind="offload_error",
                retryable=False,
            ) from None
        worker = await self._idle.get()
        try:
            if worker is None or not worker.process.is_alive():
                worker = await loop.run_in_executor(None, _Worker, self._ctx)
                self._workers.add(worker)
            worker.conn.send_bytes(message)
            kind, value = await self._receive(worker, IMPORT_GRACE_S, fn)  # "started", or why not
            if kind == "started":
                kind, value = await self._receive(worker, timeout, fn)
        except BaseException:
            if worker is not None:
                self._workers.discard(worker)
                worker.kill()
            self._idle.put_nowait(None)
            raise
        self._idle.put_nowait(worker)
        if kind == "error":
            raise failed(fn, value)
        return value

    async def _receive(self, worker: _Worker, timeout: float, fn: Callable[..., Any]) -> tuple[str, Any]:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = worker.conn.fileno()
        loop.add_reader(fd, _set, ready)
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            raise timed_out(fn, timeout) from None
        finally:
            loop.remove_reader(fd)
        try:
            return worker.conn.recv()
        except (EOFError, OSError):
            raise HTTPError(
                500,
                f"the worker running {fn.__qualname__} died (killed, out of memory, or a crash in native code)",
                kind="offload_error",
                retryable=False,
            ) from None


def timed_out(fn: Callable[..., Any], timeout: float) -> HTTPError:
    """The error of a call stopped at its deadline (the worker pool's and Ray's alike)."""
    return HTTPError(
        500,
        f"{fn.__qualname__} ran longer than {timeout:g} s and was stopped "
        "(raise offload_timeout_s if that is expected)",
        kind="offload_timeout",
        retryable=False,
    )


def failed(fn: Callable[..., Any], detail: str) -> HTTPError:
    """The error of a call whose function raised ``detail`` (one line: type and message)."""
    return HTTPError(500, f"{fn.__qualname__} failed: {detail}", kind="offload_error", retryable=False)


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
