"""Why a command a benchmark started did not work, in its own words.

Benchmarks run ``ng_run``, ``ng_collect_rollouts`` and ``ng_emulator`` as processes with
their output out of the way; when one exits early, the benchmark stops with the command's
own error line (``error: ...``, else its last lines), not a bare exit code.

    err = output_file()
    proc = subprocess.Popen([...], stderr=err)
    ...
    raise stopped("ng_run", proc.returncode, err)
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import IO

__all__ = ["output_file", "reason", "stopped"]


def output_file() -> IO[bytes]:
    """Where a command's output goes: a temporary file (a pipe nobody reads would fill up)."""
    return tempfile.TemporaryFile()


def reason(lines: Iterable[str]) -> str:
    """The command's own reason: its last ``error: `` line, else its last three lines."""
    kept = [line.rstrip() for line in lines if line.strip()]
    errors = [line for line in kept if line.lstrip().startswith("error: ") or "could not start" in line]
    if errors:
        return errors[-1].strip()
    return " | ".join(kept[-3:]) or "(no output)"


def stopped(command: str, code: int | None, output: IO[bytes] | Iterable[str] | None) -> SystemExit:
    """The ``SystemExit`` of a benchmark whose ``command`` exited with ``code``: says why."""
    if output is None:
        lines: Iterable[str] = []
    elif hasattr(output, "seek") and hasattr(output, "read"):
        output.seek(0)
        lines = output.read().decode("utf-8", "replace").splitlines()
    else:
        lines = output  # type: ignore[assignment]
    return SystemExit(f"{command} exited with {code}: {reason(lines)}")
