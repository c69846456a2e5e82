"""Loopback ports for tests, never one chosen, let go and hoped still free when used.

- ``bound_socket()``: a listening socket, for a server of ours that takes the socket itself.
- ``held_port()``: a port *number* for a server that must be told one (``ng_run``'s head
  server, an instance port in a config, ``ng_emulator --port``). The port stays bound while
  held, so no one else is given it (a bind to port 0 skips it, a plain bind fails), yet the
  server can take it: it is bound with ``SO_REUSEADDR`` and not listening, and our servers
  (``ng_run``, its children, ``ng_emulator``, uvicorn) bind with ``SO_REUSEADDR`` too. Hold
  it until the server is done with it.
- ``refusing_port()``: a port where nothing listens and nothing can start listening while
  the block lasts: every connection is refused.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["HeldPort", "bound_socket", "held_port", "refusing_port"]


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


class HeldPort:
    """A free loopback port held for a server that is told its number (see the module doc)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> None:
        self._sock.close()

    def __enter__(self) -> int:
        return self.port

    def __exit__(self, *exc: object) -> None:
        self.release()


def held_port() -> HeldPort:
    """``with held_port() as port: ...``, or keep the ``HeldPort`` and ``release()`` it."""
    return HeldPort()


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses every connection while the block lasts."""
    with socket.socket() as sock:  # bound, never listening, no SO_REUSEADDR: no one can take it
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
