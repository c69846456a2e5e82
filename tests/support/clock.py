"""A clock that moves only when a test says so: for code that takes a ``clock`` (``RetryLog``)
and, through ``driving(loop)``, for the timers of the running event loop, so a test of
"at the window's end" neither waits for the window nor depends on how loaded the machine is."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FakeClock"]


class FakeClock:
    """``clock()`` is the time in seconds; ``advance(s)`` moves it on."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    @contextmanager
    def driving(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        """``loop``'s timers (``call_later``) run on this clock while the block lasts."""
        loop.time = self  # type: ignore[method-assign]
        try:
            yield
        finally:
            del loop.time  # the class's own clock again

    @staticmethod
    async def settle() -> None:
        """Let the loop run what is due: a timer due now is run on the loop's next turn,
        after the task that woke it."""
        for _ in range(3):
            await asyncio.sleep(0)
