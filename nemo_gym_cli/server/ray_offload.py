"""``offload()`` on a Ray cluster: CPU-heavy calls as Ray tasks, anywhere on the cluster.

A resources server with ``ray_enabled: true`` (on a cluster ``ng_run`` runs on, docs/scale-out.md)
sends each ``offload(fn, *args)`` to the cluster as a Ray task reserving ``ray_num_cpus``,
spread over the nodes, instead of to its local worker pool; the event loop awaits it.

Same contract as ``offload.WorkerPool``: the timeout counts from when the task starts ``fn``
(waiting for a free CPU on the cluster and importing ``fn``'s module are not counted: the
task is a generator that yields once before calling ``fn``, and that first item arrives
when it runs); a call that runs past it is cancelled (its worker process killed) and raises
``HTTPError`` 500 ``offload_timeout``; an exception in ``fn``, or a worker or node that
died under it, raises ``HTTPError`` 500 ``offload_error``. Neither is retryable.

``fn`` travels by reference, so its module must be importable on every node (install the
project there); an environment in a folder of the user's is sent by value.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections.abc import Callable, Generator
from typing import Any

import ray
from ray import cloudpickle
from ray.exceptions import RayError, RayTaskError

from nemo_gym_cli.errors import HTTPError
from nemo_gym_cli.server.offload import failed, timed_out
from nemo_gym_cli.server.serve import USER_PACKAGE_PREFIX

__all__ = ["RayOffload", "connect_as_driver"]


@ray.remote
def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Generator[Any, None, None]:
    yield None  # started: fn's module is imported, the caller's clock starts now
    yield fn(*args)


def connect_as_driver(address: str) -> None:
    """Join the cluster at ``address`` from this process (once)."""
    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


class RayOffload:
    """Runs ``fn(*args)`` as a Ray task reserving ``num_cpus`` on the cluster at ``address``."""

    def __init__(self, address: str, num_cpus: float) -> None:
        connect_as_driver(address)
        self._task = _call.options(num_cpus=num_cpus, scheduling_strategy="SPREAD")

    async def __aenter__(self) -> RayOffload:
        return self

    async def __aexit__(self, *exc: object) -> None:
        ray.shutdown()

    async def run(self, fn: Callable[..., Any], args: tuple[Any, ...], timeout: float) -> Any:
        module = sys.modules.get(fn.__module__)
        if (
            fn.__module__.startswith(USER_PACKAGE_PREFIX) and module is not None
        ):  # a user's folder: not importable there
            cloudpickle.register_pickle_by_value(module)
        calls: Any = self._task.remote(fn, args)  # an ObjectRefGenerator: ray's stubs say ObjectRef
        try:
            await calls.__anext__()
            result = await asyncio.wait_for(calls.__anext__(), timeout)
            return await result
        except TimeoutError:
            ray.cancel(calls, force=True)
            raise timed_out(fn, timeout) from None
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            detail = "".join(traceback.format_exception_only(type(cause), cause)).strip()
            raise failed(fn, detail) from None
        except RayError as exc:
            raise HTTPError(
                500,
                f"the Ray worker running {fn.__qualname__} died ({type(exc).__name__}: out of memory, or its node "
                "went away?)",
                kind="offload_error",
                retryable=False,
            ) from None
        except asyncio.CancelledError:
            ray.cancel(calls, force=True)  # the request went away: so does its task
            raise
