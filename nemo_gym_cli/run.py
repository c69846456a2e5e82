"""``ng_run``: start every server of a config, serve the head server, supervise, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from nemo_gym_cli.config import GlobalConfig, load_config
from nemo_gym_cli.errors import ConfigError
from nemo_gym_cli.supervisor import Supervisor, warm_up

__all__ = ["run", "running_servers", "stop_on_signals"]


def _head_socket(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        s.listen(512)
    except OSError:
        s.close()
        raise ConfigError(
            f"head server port {host}:{port} is already in use (is another ng_run running?); "
            f"stop it or choose another port, e.g. +head_server.port={port + 1}"
        ) from None
    return s


@contextlib.contextmanager
def stop_on_signals(stop_event: asyncio.Event):
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


@asynccontextmanager
async def running_servers(
    config: GlobalConfig,
    *,
    stop_event: asyncio.Event,
    write: Callable[[str], None] | None = None,
    with_head: bool = True,
    timeout: float = 60.0,
) -> AsyncIterator[Supervisor]:
    """Start every instance and the head server (optional); stop them all on exit.

    The children are spawned first: they import their frameworks in parallel while this
    process imports uvicorn for the head server.
    """
    supervisor = Supervisor(config, write=write)
    head_sock = _head_socket(config.head_host, config.head_port) if with_head else None
    head: Any = None
    head_task: asyncio.Task[None] | None = None
    try:
        await supervisor.spawn()
        if head_sock is not None:
            head = _head_server(config, supervisor)
            head_task = asyncio.create_task(head.serve(sockets=[head_sock]))
        await supervisor.wait_ready(timeout=timeout, stop_event=stop_event)
        yield supervisor
    finally:
        await supervisor.stop()
        if head is not None and head_task is not None:
            head.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(head_task, 3.0)
        if head_sock is not None:
            head_sock.close()


def _head_server(config: GlobalConfig, supervisor: Supervisor) -> Any:
    import uvicorn

    from nemo_gym_cli.head import create_head_app

    class QuietServer(uvicorn.Server):
        """Leaves signal handling to us: we run several things in one loop."""

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            yield

    return QuietServer(
        uvicorn.Config(
            create_head_app(supervisor.describe),
            host=config.head_host,
            port=config.head_port,
            access_log=False,
            log_level="warning",
            lifespan="off",
        )
    )


async def _run(config: GlobalConfig) -> int:
    stop_event = asyncio.Event()
    started = time.perf_counter()
    with stop_on_signals(stop_event):
        async with running_servers(config, stop_event=stop_event) as supervisor:
            elapsed = time.perf_counter() - started
            print(supervisor.table(), flush=True)
            print(
                f"all {len(supervisor.children)} servers ready in {elapsed:.2f} s; "
                f"head server at {config.head_url}. Ctrl-C stops them.",
                flush=True,
            )
            code = await supervisor.watch(stop_event)
    if code == 0:
        print("stopped all servers", flush=True)
    return code


def run(args: list[str]) -> int:
    """Compose the config from ``args`` (Hydra overrides) and run its servers until stopped."""
    warm_up()  # the fork server imports the servers' frameworks while we compose
    config = load_config(args)
    if not config.instances:
        raise ConfigError(
            "no server instances in the config; name config files with "
            '"+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml,...]"'
        )
    return asyncio.run(_run(config))
