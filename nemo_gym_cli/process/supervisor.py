"""Start, watch and stop the server processes of one config.

``Supervisor.spawn`` binds every instance's listening socket itself (port 0: the OS picks a
free one), so URLs are known before any server starts, no other process can take a port
between choosing and using it, and a busy port is one clear error. Then each server is
forked from the fork server (``forkserver.py``) or, where that is not possible, spawned;
its socket, spec (which may hold keys: never on a command line) and an output socket are
handed over. Each server runs in its own session (a terminal's Ctrl-C reaches only us; we
stop the children in order) and holds a lifeline to its parent, so none outlives a killed
``ng_run``. Its output is forwarded line by line, prefixed with the instance name; the last
lines are kept to show when it dies, and a server that could not start because of its
config, a start-up check or an error in the user's code (a syntax error in ``app.py``)
reports that as one line; tracebacks of the user's code go to
``results/logs/<instance>_errors.log`` (``server/usercode.py``).

NeMo Gym's own servers (``runtime="nemo_gym"``, ``nemo_gym_cli/nemo_gym/``) run beside ours
the way NeMo Gym's ``ng_run`` runs them: ``<its environment's python> <entrypoint>`` in its
folder, the config in ``NEMO_GYM_CONFIG_DICT``; their environments are built (on first use)
before any socket is bound, their sockets closed right before they start (they bind the port
themselves), each in its own session, killed by the kernel when we die (PR_SET_PDEATHSIG),
their output through the same prefixed pump, their readiness through the same ``/health``.

Given a ``RayCluster`` (``+ray.address``, ``ray_replicas.py``), the servers run on the
cluster instead: each instance as ``num_replicas`` replicas spread over its nodes, each bound
on its node's address; every server's spec lists every replica of the others. A replica
that dies while others of its instance serve on is reported and left dead (its callers
send its rollouts elsewhere); an instance with no replica left stops the run, as a dead
server does here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from nemo_gym_cli.config import GlobalConfig, RayOptions, ServerInstance
from nemo_gym_cli.errors import ConfigError, Interrupted, ServerError
from nemo_gym_cli.process.forkserver import ForkServer, fork_supported
from nemo_gym_cli.redaction import MASK
from nemo_gym_cli.server.serve import EXIT_CONFIG, EXIT_STARTUP
from nemo_gym_cli.server.usercode import USER_ERROR_PREFIX, errors_log_path
from nemo_gym_cli.wire import dumps

__all__ = ["Supervisor", "connect_cluster", "running_servers", "stop_on_signals"]

log = logging.getLogger(__name__)

_TAIL_LINES = 40
#: How long ng_run waits for every server by default (``server_spinup_timeout_seconds`` sets
#: it): ours are ready in about a second; NeMo Gym's import for seconds each.
_READY_TIMEOUT = 60.0
_READY_TIMEOUT_NEMO_GYM = 300.0


class ChildProcess(Protocol):
    pid: int

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...

    def send(self, sig: int) -> None: ...


def connect_cluster(options: RayOptions, instances: Iterable[ServerInstance] = ()) -> Any:
    """Join (or start) the Ray cluster ``options`` name: a ``ray_replicas.RayCluster``. A
    cluster started here (``local``) has room for every replica of ``instances``.

    Call it before ``stop_on_signals``: joining sets Ray's own SIGTERM handler."""
    try:
        from nemo_gym_cli.process.ray_replicas import RayCluster
    except ModuleNotFoundError as exc:
        if exc.name != "ray":
            raise
        raise ConfigError(
            f"+ray.address={options.address} needs Ray, which is not installed: pip install -e '.[ray]' in a "
            "clone of nemo-gym-cli"
        ) from None
    return RayCluster(
        options.address,
        cpus_needed=sum(i.num_cpus * i.num_replicas for i in instances),
        placement_timeout_s=options.placement_timeout_s,
    )


def _listen(inst: ServerInstance) -> socket.socket:
    family = socket.AF_INET6 if ":" in inst.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((inst.host, inst.port or 0))
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"instance {inst.name!r} cannot listen on {inst.host}:{inst.port or 0} ({exc.strerror}); "
            "free that port or set another one in its config (port: ...), or leave port unset for a free one"
        ) from None
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _healthy(host: str, port: int) -> bool:
    """Does ``GET /health`` answer 200? A bare HTTP/1.0 request: no client library to import."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (TimeoutError, OSError):
        return False
    try:
        writer.write(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        status = await asyncio.wait_for(reader.readline(), 2.0)
        return status.split(b" ", 2)[1:2] == [b"200"]
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()


class _SpawnedChild:
    """A server started as ``python -m nemo_gym_cli.server.serve`` (no fork server)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    async def wait(self) -> int:
        return await self._process.wait()

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)


@dataclass
class _Child:
    instance: ServerInstance
    #: the instance's name, or ``name#i`` for one of several replicas
    label: str
    host: str
    port: int
    process: ChildProcess
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    ready: bool = False
    pump: asyncio.Task[None] | None = None
    lifeline: int | None = None
    output: asyncio.StreamWriter | None = None
    #: the Ray node it runs on (None: this machine)
    node_id: str | None = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)


class Supervisor:
    """Runs every server instance of ``config`` as a child process."""

    def __init__(
        self,
        config: GlobalConfig,
        *,
        write: Callable[[str], None] | None = None,
        forkserver: ForkServer | None = None,
        only: list[str] | None = None,
        cluster: Any = None,
        user_errors: bool = True,
    ) -> None:
        self.config = config
        #: forward the servers' lines about errors in the user's code (``usercode.py``); the
        #: collector, which reports each itself, turns this off
        self.user_errors = user_errors
        self.instances = {n: i for n, i in config.instances.items() if only is None or n in only}
        #: every server process, by label (the instance's name, or ``name#i`` for replicas)
        self.children: dict[str, _Child] = {}
        #: each instance's base URL (its first replica's)
        self.urls: dict[str, str] = {}
        #: every replica's base URL, for instances on a Ray cluster
        self.replica_urls: dict[str, list[str]] = {}
        #: the server whose death stopped ``watch``
        self.lost: _Child | None = None
        self._write = write or (lambda line: print(line, flush=True))
        self._forkserver = forkserver  # ours from now on: closed by stop()
        self._cluster = cluster  # a ray_replicas.RayCluster, or None: processes on this machine
        self._replicas: list[Any] = []  # RayReplica handles, released by stop()
        self._stopping = False
        self._table: tuple[dict[str, Any], ...] = ()
        self._ray_head: Any = None  # nemo_gym.ray_head.RayHead: the Ray cluster of NeMo Gym's servers
        self._base_python: Any = None  # NeMo Gym's base environment's interpreter (prepare)

    # ------------------------------------------------------------------ lifecycle

    async def prepare(self) -> dict[str, Any]:
        """The interpreter of every NeMo Gym server to start, its environment built first
        where it is not yet (minutes, once; in a thread: the loop and signals stay ours)."""
        theirs = [i for i in self.instances.values() if i.runtime == "nemo_gym"]
        if not theirs:
            return {}
        from pathlib import Path

        from nemo_gym_cli.nemo_gym.environments import Environments

        environments = Environments(self.config.nemo_gym, notify=self._write)

        def build() -> dict[str, Any]:
            pythons = {i.name: environments.python_for(Path(i.folder)) for i in theirs}
            self._base_python = environments.base() / "bin" / "python"
            return pythons

        return await asyncio.to_thread(build)

    def _ray_address(self, pythons: dict[str, Any]) -> Any:
        """The Ray cluster NeMo Gym's servers join (``ray_head.py``): None when none of them
        uses Ray; ``ray_head_node_address`` when the config gives one; else a task starting
        one on NeMo Gym's base interpreter, awaited right before their first server starts
        (ours start meanwhile)."""
        from pathlib import Path

        from nemo_gym_cli.nemo_gym.ray_head import RayHead, uses_ray

        if not any(uses_ray(Path(self.instances[name].entrypoint)) for name in pythons):
            return None
        given = self.config.options.get("ray_head_node_address")
        if given:
            if not isinstance(given, str):
                raise ConfigError(f"ray_head_node_address must be a Ray cluster's host:port, got {given!r}")
            return given
        self._ray_head = RayHead()
        self._write(f"starting the Ray cluster NeMo Gym's servers share ({self._base_python}) ...")
        return asyncio.create_task(self._ray_head.start(self._base_python, self.ready_timeout()))

    async def spawn(self) -> None:
        """Bind every instance's socket, then start its process (all stopped on failure)."""
        if self._cluster is not None:
            await self._spawn_on_cluster()
            return
        pythons = await self.prepare()
        sockets: dict[str, socket.socket] = {}
        ray: Any = None
        try:
            ray = self._ray_address(pythons) if pythons else None
            for name, inst in self.instances.items():
                sockets[name] = sock = _listen(inst)
                self.urls[name] = _url(inst.host, sock.getsockname()[1])
            for name, inst in self.instances.items():  # ours first: they start while Ray does
                if name not in pythons:
                    spec = inst.spec(self.urls, port=sockets[name].getsockname()[1])
                    payload = {"entrypoint": inst.entrypoint, "spec": spec.to_payload(), **self._extras(name)}
                    await self._start(inst, payload, sockets.pop(name))
                    self._publish()
            if pythons:
                address = await ray if isinstance(ray, asyncio.Task) else ray
                their_config = self._nemo_gym_config(address)
                for name, inst in self.instances.items():
                    if name in pythons:
                        await self._start_nemo_gym(inst, pythons[name], their_config, sockets.pop(name))
                        self._publish()
        except BaseException:
            if isinstance(ray, asyncio.Task) and not ray.done():
                ray.cancel()
                with contextlib.suppress(BaseException):
                    await ray
            for sock in sockets.values():
                sock.close()
            await self.stop()
            raise

    async def _spawn_on_cluster(self) -> None:
        """Place every instance's replicas on the Ray cluster, bind each on its node, then
        start each replica's server with every replica's URL in its spec."""
        cluster = self._cluster
        try:
            placed = {name: cluster.place(inst) for name, inst in self.instances.items()}
            self._replicas = [r for replicas in placed.values() for r in replicas]
            try:
                hosts = {r.label: cluster.bind_host(self.instances[n]) for n, rs in placed.items() for r in rs}
                binding = asyncio.gather(*(r.bind(hosts[r.label]) for r in self._replicas))
                await asyncio.wait_for(binding, cluster.placement_timeout_s)
            except TimeoutError:
                asked = ", ".join(f"{n}: {i.num_replicas} x {i.num_cpus:g}" for n, i in self.instances.items())
                raise ServerError(
                    f"the Ray cluster had no room for every replica within {cluster.placement_timeout_s:g} s "
                    f"(+ray.placement_timeout_s): they ask for CPUs ({asked}) and it has {cluster.resources()}; "
                    "lower num_cpus (e.g. 0.25 for a server that mostly waits on the network), num_replicas, "
                    "or add nodes"
                ) from None
            for name, replicas in placed.items():
                self.urls[name] = replicas[0].url
                self.replica_urls[name] = [r.url for r in replicas]
            for name, replicas in placed.items():
                inst = self.instances[name]
                for replica in replicas:
                    spec = inst.spec(
                        self.urls,
                        port=replica.port,
                        host=replica.host,
                        replica_urls=self.replica_urls,
                        ray_address=cluster.address,
                    )
                    await replica.start(
                        {"entrypoint": inst.entrypoint, "spec": spec.to_payload(), **self._extras(replica.label)}
                    )
                    self.children[replica.label] = _Child(
                        inst, replica.label, replica.host, replica.port, replica, replica.tail, node_id=replica.node_id
                    )
                    self._publish()
        except BaseException:
            await self.stop()
            raise

    def _extras(self, label: str) -> dict[str, Any]:
        """What a server gets beside its spec: where to write tracebacks of the user's code,
        and every secret of the config, to mask in all it prints and writes."""
        return {"errors_log": errors_log_path(label.replace("#", "_")), "secrets": list(MASK.secrets)}

    async def _start(self, inst: ServerInstance, payload: dict[str, Any], sock: socket.socket) -> None:
        port = sock.getsockname()[1]
        ours, theirs = socket.socketpair()
        lifeline: int | None = None
        try:
            process: ChildProcess | None = None
            if self._forkserver is None and fork_supported():
                self._forkserver = ForkServer()
            if self._forkserver is not None:
                try:
                    process = await self._forkserver.fork(payload, sock, theirs)
                except OSError as exc:
                    log.warning("the fork server is not available (%s); starting servers directly", exc)
                    self._forkserver.close()
                    self._forkserver = None
            if process is None:
                lifeline, process = await self._spawn_directly(payload, sock, theirs)
        finally:
            sock.close()
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        # Keep the writer: dropping it closes the socket, and the server's output with it.
        child = _Child(inst, inst.name, inst.host, port, process, lifeline=lifeline, output=writer)
        self.children[inst.name] = child
        child.pump = asyncio.create_task(self._pump(child, reader))

    def _nemo_gym_config(self, ray_address: str | None) -> str:
        import yaml

        from nemo_gym_cli.nemo_gym.hosting import config_dict

        return yaml.safe_dump(config_dict(self.config, self.urls, ray_address), sort_keys=False)

    async def _start_nemo_gym(self, inst: ServerInstance, python: Any, config_yaml: str, sock: socket.socket) -> None:
        """Start NeMo Gym's server ``inst``: it binds its port itself, so ours is closed
        right before it starts (the window in which another process could take it)."""
        from nemo_gym_cli.nemo_gym.hosting import child_environment, spawn_nemo_gym_server

        port = sock.getsockname()[1]
        ray_env = self._ray_head.environment if self._ray_head is not None else None
        env = child_environment(python, inst.folder, inst.name, config_yaml, ray_env)
        ours, theirs = socket.socketpair()
        try:
            sock.close()
            process = await spawn_nemo_gym_server(python, inst.entrypoint, inst.folder, env, theirs.fileno())
        finally:
            sock.close()
            theirs.close()
        reader, writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        child = _Child(inst, inst.name, inst.host, port, _SpawnedChild(process), output=writer)
        self.children[inst.name] = child
        child.pump = asyncio.create_task(self._pump(child, reader))

    async def _spawn_directly(
        self, payload: dict[str, Any], sock: socket.socket, out: socket.socket
    ) -> tuple[int, ChildProcess]:
        lifeline_r, lifeline_w = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "nemo_gym_cli.server.serve",
                stdin=asyncio.subprocess.PIPE,
                stdout=out.fileno(),
                stderr=out.fileno(),
                pass_fds=(sock.fileno(), lifeline_r),
                start_new_session=True,
            )
        finally:
            os.close(lifeline_r)
        assert process.stdin is not None
        process.stdin.write(dumps({**payload, "fd": sock.fileno(), "lifeline": lifeline_r}))
        process.stdin.close()
        return lifeline_w, _SpawnedChild(process)

    async def _pump(self, child: _Child, reader: asyncio.StreamReader) -> None:
        prefix = f"[{child.label}] "
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line longer than the stream limit: skip it
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            child.tail.append(line)
            # Not shown: why a server could not start (we report it, once), and what servers
            # say while being stopped (retries towards a dead dependency, cancelled requests).
            theirs = child.instance.runtime == "nemo_gym"
            if not theirs and not self.user_errors and line.startswith(USER_ERROR_PREFIX):
                continue  # the collector reports these itself, once each
            if (theirs or not line.startswith("error: ")) and not self._stopping:
                self._write(prefix + line)

    def ready_timeout(self) -> float:
        """``server_spinup_timeout_seconds`` (0: forever), else 60 s, 300 s with NeMo Gym's servers."""
        given = self.config.options.get("server_spinup_timeout_seconds")
        if given is not None:
            if isinstance(given, bool) or not isinstance(given, (int, float)) or given < 0:
                raise ConfigError(
                    f"server_spinup_timeout_seconds must be a number of seconds (0: forever), got {given!r}"
                )
            return float(given) or float("inf")
        theirs = any(i.runtime == "nemo_gym" for i in self.instances.values())
        return _READY_TIMEOUT_NEMO_GYM if theirs else _READY_TIMEOUT

    async def wait_ready(self, *, timeout: float | None = None, stop_event: asyncio.Event | None = None) -> None:
        """Wait until every child's ``/health`` answers 200 (at most ``timeout`` s, default
        ``ready_timeout()``); stop them all on failure."""
        try:
            await self._wait_ready(self.ready_timeout() if timeout is None else timeout, stop_event)
        except BaseException:
            await self.stop()
            raise

    async def _wait_ready(self, timeout: float, stop_event: asyncio.Event | None) -> None:
        deadline = time.monotonic() + timeout
        pause = 0.005
        while True:
            dead = self.first_dead()
            if dead is not None:
                raise await self._start_failure(dead)
            if stop_event is not None and stop_event.is_set():
                raise Interrupted("interrupted while starting servers; all stopped")
            pending = [c for c in self.children.values() if not c.ready]
            if not pending:
                return
            results = await asyncio.gather(*(_healthy(c.host, c.port) for c in pending))
            for child, healthy in zip(pending, results, strict=True):
                child.ready = healthy
            self._publish()
            if all(c.ready for c in self.children.values()):
                return
            if time.monotonic() > deadline:
                names = ", ".join(c.label for c in self.children.values() if not c.ready)
                raise ServerError(f"servers not ready after {timeout:.0f} s: {names}; see their output above")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _start_failure(self, child: _Child) -> Exception:
        if child.pump is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(child.pump), 1.0)
        code = child.process.returncode
        if child.instance.runtime == "nemo_gym":  # its whole output is above, prefixed
            inst = child.instance
            # Their code cannot be fixed here, their config maybe not either: say how to start
            # the rest without it (Hydra's deletion; ~ runs after config_paths are merged).
            return ServerError(
                f"NeMo Gym server {child.label!r} ({inst.server_type}/{inst.implementation}, {inst.folder}) "
                f"could not start (exit code {code}): {failure_reason(child.tail)}; to start the config "
                f"without it, add {self.config.deletion(inst.name)}"
            )
        last = next((line for line in reversed(child.tail) if line.startswith("error: ")), "")
        if code == EXIT_CONFIG and last:
            return ConfigError(last.removeprefix("error: "))
        if code == EXIT_STARTUP and last:
            return ServerError(f"server {child.label!r} could not start: {last.removeprefix('error: ')}")
        return ServerError(self.death_message(child, "while starting"))

    def first_dead(self) -> _Child | None:
        for child in self.children.values():
            if child.process.returncode is not None:
                return child
        return None

    def death_message(self, child: _Child, when: str) -> str:
        tail = "\n".join(f"    {line}" for line in child.tail) or "    (no output)"
        inst = child.instance
        where = f" on Ray node {child.node_id}" if child.node_id else ""
        return (
            f"server {child.label!r} ({inst.server_type}/{inst.implementation}){where} exited with code "
            f"{child.process.returncode} {when}; its last output:\n{tail}"
        )

    def live_replicas(self, name: str) -> int:
        """How many server processes of instance ``name`` are still running."""
        return sum(1 for c in self.children.values() if c.instance.name == name and c.process.returncode is None)

    async def watch(self, stop_event: asyncio.Event) -> int:
        """Wait until every replica of an instance is dead (returns 1, after printing why) or
        ``stop_event`` is set (0). A replica that dies while others serve on is reported."""
        waits = {asyncio.create_task(c.process.wait()): c for c in self.children.values()}
        stopper = asyncio.create_task(stop_event.wait())
        try:
            while True:
                done, _ = await asyncio.wait({stopper, *waits}, return_when=asyncio.FIRST_COMPLETED)
                if stop_event.is_set():
                    return 0
                for task in done:
                    dead = waits.pop(task)
                    if dead.pump is not None:
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(asyncio.shield(dead.pump), 1.0)
                    self._publish()
                    left = self.live_replicas(dead.instance.name)
                    if left:
                        others = f"{left} other replica{'s serve' if left > 1 else ' serves'}"
                        self._write(f"warning: {self.death_message(dead, 'unexpectedly')}\n{others} on")
                        continue
                    self.lost = dead
                    self._write("error: " + self.death_message(dead, "unexpectedly") + "\nstopping the other servers")
                    return 1
        finally:
            for task in (stopper, *waits):
                task.cancel()

    async def stop(self, *, grace: float = 5.0) -> None:
        """SIGTERM every child, wait up to ``grace`` seconds, then SIGKILL what is left; on a
        Ray cluster, then end every replica's actor."""
        self._stopping = True
        alive = [c for c in self.children.values() if c.process.returncode is None]
        for child in alive:
            child.process.send(signal.SIGTERM)
        if alive:
            _, pending = await asyncio.wait([asyncio.create_task(c.process.wait()) for c in alive], timeout=grace)
            for child in alive:
                if child.process.returncode is None:
                    child.process.send(signal.SIGKILL)
            if pending:
                await asyncio.wait(pending, timeout=2.0)
        for replica in self._replicas:
            replica.release()
        for child in self.children.values():
            if child.pump is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(child.pump, 1.0)
            if child.lifeline is not None:
                with contextlib.suppress(OSError):
                    os.close(child.lifeline)
                child.lifeline = None
            if child.output is not None:
                child.output.close()
                child.output = None
        if self._forkserver is not None:
            self._forkserver.close()
        if self._ray_head is not None:  # after the servers: they are its clients
            await self._ray_head.stop()
            self._ray_head = None
        self._publish()

    # ------------------------------------------------------------------ reporting

    def _publish(self) -> None:
        """Refresh the instance table other threads read (the head server's): a row per
        instance, its first replica's address, and every replica in ``replicas``."""
        rows = []
        for name, inst in self.instances.items():
            replicas = [
                {
                    "name": c.label,
                    "url": c.url,
                    "host": c.host,
                    "port": c.port,
                    "pid": c.process.pid,
                    "node_id": c.node_id,
                    "ready": c.ready and c.process.returncode is None,
                }
                for c in self.children.values()
                if c.instance.name == name
            ]
            first = replicas[0] if replicas else None
            rows.append(
                {
                    "name": name,
                    "type": inst.server_type,
                    "implementation": inst.implementation,
                    "runtime": inst.runtime,
                    "url": self.urls.get(name, ""),
                    "host": first["host"] if first else inst.host,
                    "port": int(self.urls[name].rsplit(":", 1)[1]) if name in self.urls else None,
                    "pid": first["pid"] if first else None,
                    "ready": any(r["ready"] for r in replicas),
                    "replicas": replicas,
                }
            )
        self._table = tuple(rows)

    def describe(self) -> list[dict[str, Any]]:
        """The instance table: name, type, implementation, URL, pid, ready, and each replica
        (name, URL, pid, Ray node, ready). No config fields."""
        return [{**row, "replicas": [dict(r) for r in row["replicas"]]} for row in self._table]

    def table(self) -> str:
        rows = [
            {**row, **replica}
            for row in self.describe()
            for replica in (row["replicas"] or [{"name": row["name"], "url": row["url"], "pid": row["pid"]}])
        ]
        cols = ["name", "type", "implementation", "url", "pid"]
        widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols} if rows else {c: len(c) for c in cols}
        lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols)]
        lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
        return "\n".join(lines)


#: The line a Python traceback ends with: ``[module.]SomeError: message``.
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Exit|Interrupt))\b:?\s*(.*)$")


def failure_reason(tail: Iterable[str]) -> str:
    """Why a server stopped, from its last lines: the exception its traceback ends with (for
    a pydantic ``ValidationError``, each field it names and what is wrong with it), else its
    last line. The link pydantic prints last says nothing about the config."""
    lines = [line.rstrip() for line in tail if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        found = _EXCEPTION.match(lines[i])
        if found is None:
            continue
        name, message = found.groups()
        said = f"{name}: {message}" if message else name
        if name == "ValidationError":
            # pydantic: "<field>" unindented, then "  <what is wrong> [type=...]"
            problems = [
                f"{lines[j]}: {lines[j + 1].strip().split(' [', 1)[0]}"
                for j in range(i + 1, len(lines) - 1)
                if not lines[j].startswith(" ") and re.match(r"  \S", lines[j + 1])
            ]
            if problems:
                said += f" ({'; '.join(problems)})"
        return said
    return lines[-1].strip() if lines else "no output"


@asynccontextmanager
async def running_servers(
    config: GlobalConfig,
    *,
    stop_event: asyncio.Event,
    write: Callable[[str], None] | None = None,
    forkserver: ForkServer | None = None,
    only: list[str] | None = None,
    timeout: float | None = None,
    cluster: Any = None,
    user_errors: bool = True,
) -> AsyncIterator[Supervisor]:
    """Start every instance (or those named in ``only``; on ``cluster``, a Ray cluster, if
    given), wait until all are ready, and stop them all on exit. ``user_errors``: forward the
    servers' lines about errors in the user's code."""
    supervisor = Supervisor(
        config, write=write, forkserver=forkserver, only=only, cluster=cluster, user_errors=user_errors
    )
    try:
        await supervisor.spawn()
        await supervisor.wait_ready(timeout=timeout, stop_event=stop_event)
        yield supervisor
    finally:
        await supervisor.stop()


@contextlib.contextmanager
def stop_on_signals(stop_event: asyncio.Event) -> Any:
    """Set ``stop_event`` on SIGINT/SIGTERM while inside the block; a second Ctrl-C is ignored
    (we are already stopping, and stopping takes at most a few seconds)."""
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_event.set)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
