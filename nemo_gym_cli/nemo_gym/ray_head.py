"""The one Ray cluster NeMo Gym's hosted servers share, as NeMo Gym 0.7's ``ng_run`` gives them.

0.7's ``ng_run`` calls ``ray.init()`` in its own process and puts the cluster's GCS address in
the config its children get (``ray_head_node_address`` in ``NEMO_GYM_CONFIG_DICT``); a server
whose class uses Ray (``ray_enabled = True``, or not declared: 0.7 keeps Ray on for those,
server_utils.py:1133-1144 of the 0.7.0 wheel) calls ``initialize_ray()`` as it starts
(server_utils.py:963-993, 1336), which joins that address, and without one starts a private
cluster of its own (~20 processes and seconds of start-up, per server process).

We do the same, with what our ``ng_run`` lacks: it runs on another Python and maybe without
Ray, and a Ray client must match its cluster's Ray and Python versions, so the cluster is
started by a small driver run with NeMo Gym's environment's interpreter: this file, run as a
script (its imports are the standard library and, in ``_serve``, ``ray``; never our package).
It starts a local cluster on loopback (no dashboard: nothing here reads it), prints the GCS
address and its auth mode on one line, and holds the cluster until its stdin closes
(``ng_run`` stopping) or a SIGTERM (the kernel sends one when ``ng_run`` dies:
``PR_SET_PDEATHSIG``), then shuts Ray down and SIGKILLs what is left of its process group:
Ray sets ``PR_SET_PDEATHSIG`` on the processes its ``ray.init`` starts, but the dashboard
agents the raylet starts outlive a killed raylet (measured: 2 ``ray::DashboardAgent`` left
after SIGKILL), so a driver killed outright would leave them. The servers get what 0.7's
children inherit from its ``ng_run`` after ``ray.init``: ``RAY_AUTH_MODE`` (ray 2.60 turns
token auth on for a cluster it starts, the token in ``~/.ray/auth_token``, and a client
without the mode is refused), plus ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, which makes Ray
use loopback as the node's address (else it takes the machine's first interface's: this
cluster is for this machine only).

``ray_head_node_address`` given in the config (0.7's key) is passed on as is: the servers join
that cluster, and none is started here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections import deque
from pathlib import Path

__all__ = ["RayHead", "uses_ray"]

#: the line the driver prints once the cluster is up
_ADDRESS = "NEMO_GYM_CLI_RAY_ADDRESS="
#: Ray on loopback only (ray_constants.ENABLE_RAY_CLUSTER: services.get_node_ip_address)
_LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
_DECLARED = re.compile(r"^\s+ray_enabled\s*(?::[^=\n]*)?=\s*(True|False)\b", re.MULTILINE)


def uses_ray(entrypoint: Path) -> bool:
    """Whether NeMo Gym's server in ``entrypoint`` will call ``ray.init``: unless its text
    declares ``ray_enabled = False`` (and never ``True``), 0.7 keeps Ray on for it. Read as
    text, never imported; a class that inherits ``False`` from elsewhere counts as using Ray
    (a cluster started for nothing costs seconds; a missed one, a private cluster)."""
    try:
        declared = set(_DECLARED.findall(entrypoint.read_text(errors="replace")))
    except OSError:
        return True
    return declared != {"False"}


class RayHead:
    """The Ray cluster started for this run's NeMo Gym servers: ``start`` gives its address."""

    def __init__(self) -> None:
        self.address: str | None = None
        #: what a server joining it needs in its environment (``RAY_AUTH_MODE``, loopback)
        self.environment: dict[str, str] = dict(_LOOPBACK)
        self._process: asyncio.subprocess.Process | None = None
        self._tail: deque[str] = deque(maxlen=20)
        self._drain: asyncio.Task[None] | None = None

    async def start(self, python: Path, timeout: float) -> str:
        """Start the cluster with ``python`` (NeMo Gym's environment's) and wait up to
        ``timeout`` s for its address; one ``ServerError`` line if it does not come up."""
        from nemo_gym_cli.errors import ServerError

        env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network here: no usage report at start
        env.update(_LOOPBACK)
        self._process = await asyncio.create_subprocess_exec(
            str(python),
            "-I",  # nothing of this folder or of our environment on its path
            str(Path(__file__).resolve()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_term_with_parent,
        )
        try:
            said = await asyncio.wait_for(self._read_address(), timeout)
        except TimeoutError:
            said = self._tail[-1] if self._tail else "no output"
            raise ServerError(
                f"the Ray cluster for NeMo Gym's servers did not start within {timeout:.0f} s (last output: {said}); "
                "raise +server_spinup_timeout_seconds, or give a running one with +ray_head_node_address=<host:port>"
            ) from None
        if said is None:
            code = await self._process.wait()
            said = self._tail[-1] if self._tail else "no output"
            raise ServerError(
                f"the Ray cluster for NeMo Gym's servers could not start with {python} (exit code {code}): {said}"
            )
        self.address, _, mode = said.partition(" ")
        if mode:
            self.environment["RAY_AUTH_MODE"] = mode
        self._drain = asyncio.create_task(self._read_rest())
        return self.address

    async def _read_address(self) -> str | None:
        assert self._process is not None and self._process.stdout is not None
        async for raw in self._process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line.startswith(_ADDRESS):
                return line.removeprefix(_ADDRESS)
            self._tail.append(line)
        return None

    async def _read_rest(self) -> None:  # Ray's warnings: kept for nothing, but the pipe must not fill
        assert self._process is not None and self._process.stdout is not None
        async for raw in self._process.stdout:
            self._tail.append(raw.decode("utf-8", "replace").rstrip())

    async def stop(self, grace: float = 10.0) -> None:
        """Close the driver's stdin (it shuts Ray down and exits), SIGKILL its session after
        ``grace`` s."""
        process = self._process
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        if self._drain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._drain, 1.0)
        self._process = None


def _term_with_parent() -> None:  # runs in the driver between fork and exec
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: our stop() still ends it


def _serve() -> None:  # pragma: no cover - runs in NeMo Gym's environment
    """The driver: a local cluster on loopback, its address on stdout, held until stdin closes
    or SIGTERM; then Ray shut down and its process group (all of Ray's processes) killed."""
    import logging

    import ray

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        ray.init(include_dashboard=False, logging_level=logging.WARNING, _node_ip_address="127.0.0.1")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # after ray.init, which sets its own
        # ray.init set RAY_AUTH_MODE=token for itself and its children where it enabled token auth
        mode = os.environ.get("RAY_AUTH_MODE", "")
        print(f"{_ADDRESS}{ray.get_runtime_context().gcs_address} {mode}".rstrip(), flush=True)
        sys.stdin.read()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            ray.shutdown()
        finally:
            os.killpg(os.getpgrp(), signal.SIGKILL)  # this driver included: what Ray left behind


if __name__ == "__main__":
    _serve()
