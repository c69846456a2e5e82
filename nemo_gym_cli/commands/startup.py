"""The start of a command that may start servers: the fork server begins while the config composes.

``ng_collect_rollouts`` and ``ng reverify`` given ``+config_paths`` start servers from a fork
server (``process/forkserver.py``) that imports the servers' frameworks once; started before
the config is composed, that import overlaps the composing. When loading fails, or the
config names no instances (the servers of a running ``ng_run`` are used), it is closed
again: one place for both commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.process.forkserver import ForkServer, fork_supported

__all__ = ["load_with_forkserver"]

Options = TypeVar("Options")


def load_with_forkserver(
    args: list[str], load: Callable[[], tuple[GlobalConfig, Options]]
) -> tuple[GlobalConfig, Options, ForkServer | None]:
    """``load()``'s config and options, and a fork server when the config has instances to
    start (None otherwise, or where forking is not supported)."""
    forkserver = ForkServer() if fork_supported() and any("config_paths" in a for a in args) else None
    try:
        config, opts = load()
    except BaseException:
        if forkserver is not None:
            forkserver.close()
        raise
    if forkserver is not None and not config.instances:
        forkserver.close()
        forkserver = None
    return config, opts, forkserver
