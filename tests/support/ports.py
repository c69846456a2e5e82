"""Free loopback ports (never a fixed shared one)."""

from __future__ import annotations

import socket

__all__ = ["bound_socket", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bound_socket() -> socket.socket:
    """A listening loopback socket on a free port: no race between choosing and using it.

    Made with ``IPPROTO_TCP`` spelled out: asyncio sets ``TCP_NODELAY`` on accepted
    connections only when the listening socket's ``proto`` says TCP, and without it every
    answer on a kept-alive connection waits ~40 ms on Nagle and delayed ACKs."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(4096)
    return s
