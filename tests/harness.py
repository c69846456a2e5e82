"""Shared fixtures: free ports, running the CLI as a real process, and cleaning up."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> list[int]:
    """All live descendant pids of ``pid`` (from /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def still_alive(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still alive after waiting up to ``timeout`` s for them to exit (helpers such as
    multiprocessing's fork server finish a moment after the process that owned them)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [pid for pid in pids if alive(pid)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


class NgRun:
    """``ng_run`` as a real process (the offline config unless told) on free ports."""

    def __init__(self, *overrides: str, cwd: Path = ROOT, config: str = "+config_paths=[configs/offline.yaml]") -> None:
        self.head_port = free_port()
        self.head_url = f"http://127.0.0.1:{self.head_port}"
        self.args = [
            str(BIN / "ng_run"),
            config,
            f"+head_server.port={self.head_port}",
            *overrides,
        ]
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.children: list[int] = []

    def wait_ready(self, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"ng_run exited {self.proc.returncode}: {self.proc.stdout.read()}")
            try:
                rows = httpx.get(self.head_url + "/instances", timeout=1).json()["instances"]
                if rows and all(r["ready"] for r in rows):
                    self.children = descendants(self.proc.pid)
                    return rows
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("ng_run did not become ready")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            for pid in descendants(self.proc.pid) + self.children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def ng_run() -> Iterator[NgRun]:
    run = NgRun()
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


def run_cli(name: str, *args: str, cwd: Path = ROOT, timeout: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
