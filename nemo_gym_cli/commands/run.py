"""``ng_run``: start every server of a config, serve the head server, supervise, stop cleanly."""

from __future__ import annotations

import asyncio
import socket
import time

from nemo_gym_cli.commands.options import ALL_OPTIONS, RUN_OPTIONS
from nemo_gym_cli.config import GlobalConfig, load_config
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.limits import raise_open_file_limit
from nemo_gym_cli.process.forkserver import ForkServer, fork_supported
from nemo_gym_cli.process.supervisor import Supervisor, connect_cluster, stop_on_signals

__all__ = ["head_socket", "run"]


def head_socket(host: str, port: int) -> socket.socket:
    """The head server's listening socket; a busy port is one ``ConfigError``."""
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        s.listen(512)
    except OSError as exc:
        s.close()
        raise ConfigError(
            f"head server cannot listen on {host}:{port} ({exc.strerror}; is another ng_run running?): "
            f"stop it or choose another port, e.g. +head_server.port={port + 1}"
        ) from None
    return s


async def _run(config: GlobalConfig, forkserver: ForkServer | None) -> int:
    from nemo_gym_cli.process.head import HeadServer, serve_in_thread

    stop_event = asyncio.Event()
    started = time.perf_counter()
    head_sock = head_socket(config.head_host, config.head_port)
    cluster = None
    supervisor = None
    stop_head = None
    try:
        # Before stop_on_signals: joining a Ray cluster sets Ray's own SIGTERM handler.
        cluster = connect_cluster(config.ray, config.instances.values()) if config.ray is not None else None
        supervisor = Supervisor(config, forkserver=forkserver, cluster=cluster)
        with stop_on_signals(stop_event):
            await supervisor.spawn()
            stop_head = serve_in_thread(HeadServer(config, supervisor.describe), head_sock)
            await supervisor.wait_ready(stop_event=stop_event)
            elapsed = time.perf_counter() - started
            print(supervisor.table(), flush=True)
            print(
                f"all {len(supervisor.children)} servers ready in {elapsed:.2f} s; "
                f"head server at {config.head_url}. Ctrl-C stops them.",
                flush=True,
            )
            code = await supervisor.watch(stop_event)
    finally:
        if supervisor is not None:
            await supervisor.stop()
        if cluster is not None:
            cluster.close()
        if stop_head is not None:
            stop_head()
        head_sock.close()
    if code == 0:
        print("stopped all servers", flush=True)
    return code


async def _dry_run(config: GlobalConfig) -> int:
    """``+dry_run=true``: build every NeMo Gym server's environment (as ``gym env prefetch``
    does), start nothing."""
    pythons = await Supervisor(config).prepare()
    for name, python in pythons.items():
        print(f"{name}: {python}", flush=True)
    print(f"dry run: {len(pythons)} NeMo Gym server environment(s) ready; no server started", flush=True)
    return 0


def run(args: list[str]) -> int:
    """Compose the config from ``args`` (Hydra overrides) and run its servers until stopped."""
    raise_open_file_limit()  # before the fork server starts: the servers inherit the limit
    # The fork server imports the servers' frameworks while we compose the config.
    on_ray = any(a.lstrip("+").startswith("ray.") for a in args)
    forkserver = ForkServer() if fork_supported() and not on_ray else None
    try:
        config = load_config(args, command=RUN_OPTIONS, everywhere=ALL_OPTIONS)
        if not config.instances:
            raise ConfigError(
                "no server instances in the config; name config files with "
                '"+config_paths=[configs/offline.yaml,...]" (configs/ and each server folder\'s configs/ hold them)'
            )
    except BaseException:
        if forkserver is not None:
            forkserver.close()
        raise
    if config.options.get("dry_run") is True:  # NeMo Gym's meaning: build the environments only
        if forkserver is not None:
            forkserver.close()
        return asyncio.run(_dry_run(config))
    if forkserver is not None and config.ray is not None:  # set in a config file: servers start on Ray
        forkserver.close()
        forkserver = None
    return asyncio.run(_run(config, forkserver))
