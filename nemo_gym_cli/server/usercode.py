"""Errors in the user's own code: one line each, the traceback in a log file.

An exception that is not the toolkit's, raised while a server handles a request (a
verifier, a tool, an agent's ``loop``) or loads its implementation (a syntax or import error
in ``app.py``), is either a bug of ours or of the code the user wrote. When its traceback
passes through a file outside this package and outside the interpreter's libraries, it is
the user's, and:

- the answer's envelope says ``user_code_error`` with one line naming the exception, the
  file and line (the innermost frame of the user's code) and where the traceback is; it is
  not retryable (the same row fails the same way; ``OSError`` and timeouts, which may
  clear, stay retryable), so the collector does not try it again;
- the full traceback goes once per distinct error (exception type, file, line) to the
  server's errors log, ``results/logs/<instance>_errors.log`` under the directory ``ng_run``
  or the collector was started in (the supervisor names it; a server served without one,
  in a test, logs the traceback instead);
- the server prints the line once per distinct error (``USER_ERROR_PREFIX``: the supervisor
  forwards it under ``ng_run`` and leaves it to the collector, which prints its own).
"""

from __future__ import annotations

import logging
import os
import sys
import sysconfig
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import nemo_gym_cli
from nemo_gym_cli.redaction import MASK

__all__ = [
    "USER_ERROR_KIND",
    "USER_ERROR_PREFIX",
    "ErrorLog",
    "describe",
    "errors_log",
    "errors_log_path",
    "user_frame",
]

log = logging.getLogger(__name__)

#: The envelope's ``type`` of an exception in the user's code.
USER_ERROR_KIND = "user_code_error"
#: How a server's line about an error in the user's code starts (the supervisor recognises it).
USER_ERROR_PREFIX = "error in your code: "

_OURS = str(Path(nemo_gym_cli.__file__).resolve().parent) + os.sep
_LIBRARIES = tuple(
    {
        str(Path(p).resolve()) + os.sep
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_paths().get(key))
    }
)
#: Exceptions that may clear on another try, wherever raised.
_TRANSIENT = (OSError, TimeoutError)


def _is_users(filename: str) -> bool:
    if not filename or filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    return not path.startswith(_OURS) and not path.startswith(_LIBRARIES)


def user_frame(exc: BaseException) -> traceback.FrameSummary | None:
    """The innermost frame of the user's code in ``exc``'s traceback (for a ``SyntaxError``,
    the bad line itself), or None when no user code is involved (then it is our bug)."""
    if isinstance(exc, SyntaxError) and exc.filename and _is_users(exc.filename):
        return traceback.FrameSummary(exc.filename, exc.lineno or 0, "<module>", line=(exc.text or "").strip())
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if _is_users(frame.filename):
            return frame
    return None


def _shown_path(filename: str) -> str:
    """A path as the user knows it: relative to the working directory when under it."""
    path = Path(filename)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return filename


def describe(exc: BaseException, frame: traceback.FrameSummary) -> str:
    """``ZeroDivisionError: division by zero at resources_servers/my_env/app.py:37 in verify``."""
    if isinstance(exc, SyntaxError):
        message = exc.msg
    else:
        message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    what = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    where = f"{_shown_path(frame.filename)}:{frame.lineno}"
    return f"{what} at {where}" + (f" in {frame.name}" if frame.name != "<module>" else "")


def retryable(exc: BaseException) -> bool:
    """Whether another try may help: not for a bug in the user's code, unless the error is
    one of the kind that clears (a connection refused, a timeout)."""
    return isinstance(exc, _TRANSIENT)


class ErrorLog:
    """The errors log of one server: each distinct error's traceback once, and how often it
    happened (``counts``). Thread-safe (offloaded work reports from threads)."""

    def __init__(self, path: str | None = None, server: str = "", scrub: Any = None) -> None:
        self.path = path
        self.server = server
        self.counts: Counter[tuple[str, str, int]] = Counter()
        self._scrub = scrub or MASK.scrub
        self._lock = threading.Lock()

    def configure(self, path: str | None, server: str, scrub: Any = None) -> None:
        self.path, self.server = path, server
        if scrub is not None:
            self._scrub = scrub

    def shown_path(self) -> str | None:
        return _shown_path(self.path) if self.path else None

    def record(self, exc: BaseException, frame: traceback.FrameSummary) -> tuple[str, bool]:
        """Count ``exc``; the first time this error is seen, write its traceback. Returns the
        one line for the user (what, where, the log) and whether it was the first time."""
        key = (type(exc).__name__, frame.filename, frame.lineno or 0)
        line = self._scrub(describe(exc, frame))
        with self._lock:
            self.counts[key] += 1
            first = self.counts[key] == 1
        where = self._where(exc, line) if first else self.shown_path()
        server = f"{self.server}: " if self.server else ""
        tail = f" (full traceback in {where})" if where else ""
        return f"{server}{line}{tail}", first

    def _where(self, exc: BaseException, line: str) -> str | None:
        text = self._scrub("".join(traceback.format_exception(exc)))
        if self.path:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as out:
                    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                    out.write(f"--- {stamp} {self.server or 'server'} (pid {os.getpid()}): {line}\n{text}\n")
                return self.shown_path()
            except OSError as err:
                log.warning("cannot write the errors log %s (%s); the traceback follows", self.path, err)
        print(text, file=sys.stderr, end="", flush=True)
        return "the server's output"


#: This process's errors log (one server per process; ``serve`` configures it).
errors_log = ErrorLog()


def errors_log_path(instance: str, cwd: Path | None = None) -> str:
    """Where the supervisor tells the server ``instance`` to write its tracebacks."""
    return str((cwd or Path.cwd()) / "results" / "logs" / f"{instance}_errors.log")
