"""Server replicas on a Ray cluster: what ``ng_run`` starts when told ``+ray.address``.

``RayCluster(address)`` joins the cluster (``auto``, ``host:port``) or starts one on this
machine for the run (``local``). ``place(instance)`` reserves a placement group of
``num_replicas`` bundles of ``num_cpus`` with the SPREAD strategy (replicas of one instance on
as many nodes as there are) and creates one ``Replica`` actor in each bundle.

A ``Replica`` actor starts the same server process the supervisor starts on this machine
(``python -m nemo_gym_cli.server.serve``, the spec on stdin: it may hold keys, never on a
command line) on a socket it bound on a free port of its node's address (of the instance's
host, loopback by default, on a cluster started here with ``local``). The process
holds a lifeline pipe to the actor: when the actor goes (``ray.kill``, its node lost, or
``ng_run`` gone: Ray kills the actors a driver owns when the driver dies), the pipe closes
and the server stops. Its output is printed by the actor, which Ray forwards to ``ng_run``'s
output, prefixed with the replica (``(simple_weather#1 pid=..., ip=...)``).

``RayReplica`` is the supervisor's handle on one replica: where it listens, its server's pid
(on its node), and ``wait()`` / ``send(signal)`` like a local child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import socket
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, cast

import ray
from ray.exceptions import RayActorError
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.wire import dumps

if TYPE_CHECKING:
    from nemo_gym_cli.config import ServerInstance

__all__ = ["RayCluster", "RayReplica", "Replica"]

_TAIL_LINES = 40


@ray.remote(max_restarts=0, max_task_retries=0)
class Replica:
    """One server process of an instance, on the node Ray placed this actor on."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.sock: socket.socket | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.pump: asyncio.Task[None] | None = None
        self.lifeline: int | None = None

    def __repr__(self) -> str:  # Ray's prefix on the lines this actor prints
        return self.label

    async def bind(self, host: str | None = None) -> dict[str, Any]:
        """Listen on ``host`` (None: this node's address), a free port; say where, and on
        which node."""
        host = host or ray.util.get_node_ip_address()
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(4096)
        self.sock = sock
        return {"host": host, "port": sock.getsockname()[1], "node_id": ray.get_runtime_context().get_node_id()}

    async def start(self, payload: dict[str, Any]) -> int:
        """Start the server process on the bound socket; its pid."""
        assert self.sock is not None
        lifeline_r, self.lifeline = os.pipe()
        try:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "nemo_gym_cli.server.serve",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                pass_fds=(self.sock.fileno(), lifeline_r),
                start_new_session=True,
            )
        finally:
            os.close(lifeline_r)
        assert self.process.stdin is not None
        self.process.stdin.write(dumps({**payload, "fd": self.sock.fileno(), "lifeline": lifeline_r}))
        self.process.stdin.close()
        self.sock.close()
        self.pump = asyncio.create_task(self._pump())
        return self.process.pid

    async def _pump(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            if not line.startswith("error: "):  # why it could not start: ng_run says it, once
                print(line, flush=True)

    async def wait(self) -> tuple[int, list[str]]:
        """Wait until the server process exits: its exit code and last lines."""
        assert self.process is not None
        code = await self.process.wait()
        if self.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pump, 1.0)
        return code, list(self.tail)

    async def signal(self, sig: int) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)


class RayReplica:
    """The supervisor's handle on one ``Replica`` actor and its server process."""

    def __init__(self, actor: Any, label: str) -> None:
        self.actor = actor
        self.label = label
        self.host = ""
        self.port = 0
        self.node_id = ""
        self.pid = 0
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self._code: int | None = None
        self._exited: asyncio.Future[int] | None = None

    @property
    def url(self) -> str:
        return f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"

    @property
    def returncode(self) -> int | None:
        return self._code

    async def bind(self, host: str | None = None) -> None:
        where = await self.actor.bind.remote(host)
        self.host, self.port, self.node_id = where["host"], where["port"], where["node_id"]

    async def start(self, payload: dict[str, Any]) -> None:
        self.pid = await self.actor.start.remote(payload)
        self._exited = asyncio.ensure_future(self._wait())

    async def _wait(self) -> int:
        try:
            code, tail = await self.actor.wait.remote()
        except RayActorError:  # the actor (or its node) is gone, and its server with it
            code, tail = -signal.SIGKILL, []
        self.tail.extend(tail)
        self._code = code
        return code

    async def wait(self) -> int:
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    def send(self, sig: int) -> None:
        self.actor.signal.remote(sig)

    def release(self) -> None:
        """End the actor (its server, if still running, sees its lifeline close)."""
        ray.kill(self.actor)


class RayCluster:
    """This run's connection to a Ray cluster, and what it reserved there."""

    def __init__(self, address: str, *, cpus_needed: float = 0.0, placement_timeout_s: float = 60.0) -> None:
        #: how long ``ng_run`` waits for room for every replica (``+ray.placement_timeout_s``)
        self.placement_timeout_s = placement_timeout_s
        try:
            if address == "local":  # a cluster for this run: no dashboard (seconds of start-up)
                # Room for every replica asked for, at least one CPU per core: Ray's CPUs are
                # reservations, and servers that wait on the network share cores well.
                cpus = max(os.cpu_count() or 1, math.ceil(cpus_needed))
                ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=address, logging_level=logging.WARNING)
        except ConnectionError as exc:
            raise ConfigError(
                f"+ray.address={address}: no Ray cluster answers there ({exc}); start one (ray start --head), give "
                "this machine the cluster's auth token if it uses one (RAY_AUTH_TOKEN or ~/.ray/auth_token), or use "
                "+ray.address=local for a cluster on this machine (docs/scale-out.md)"
            ) from None
        #: a cluster started here for this run: every replica is on this machine
        self.local = address == "local"
        #: the cluster's GCS address, as servers join it (ray_enabled offload)
        self.address: str = ray.get_runtime_context().gcs_address
        self._groups: list[PlacementGroup] = []

    def place(self, inst: ServerInstance) -> list[RayReplica]:
        """Reserve ``inst``'s replicas, spread over the nodes, and create their actors."""
        group = placement_group([{"CPU": inst.num_cpus}] * inst.num_replicas, strategy="SPREAD")
        self._groups.append(group)
        replicas = []
        for i in range(inst.num_replicas):
            label = inst.name if inst.num_replicas == 1 else f"{inst.name}#{i}"
            strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=i)
            # @ray.remote made Replica an actor class; mypy still sees the plain class.
            remote = cast(Any, Replica)
            actor = remote.options(num_cpus=inst.num_cpus, scheduling_strategy=strategy).remote(label)
            replicas.append(RayReplica(actor, label))
        return replicas

    def bind_host(self, inst: ServerInstance) -> str | None:
        """Where ``inst``'s replicas listen: on a cluster started here (``local``), the
        instance's host (loopback unless its config says otherwise), as without Ray; on a
        cluster joined, their node's address (None), which the other nodes can reach."""
        return inst.host if self.local else None

    def resources(self) -> str:
        """The cluster's CPUs, for messages: ``"4 CPUs on 2 nodes, 1 free"``."""
        total = ray.cluster_resources().get("CPU", 0)
        free = ray.available_resources().get("CPU", 0)
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        return f"{total:g} CPUs on {nodes} nodes, {free:g} free"

    def close(self) -> None:
        """Give back what this run reserved and leave the cluster (ending it if ``local``)."""
        for group in self._groups:
            with contextlib.suppress(Exception):
                remove_placement_group(group)
        self._groups.clear()
        ray.shutdown()
