"""The commands as real processes: ``ng_run`` on free ports, any console script, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from support.ports import held_port
from support.procs import descendants

__all__ = ["BIN", "ROOT", "NgRun", "instances", "run_cli"]

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent


def instances(head_url: str, timeout: float = 1.0) -> list[dict]:
    """The head server's instance table."""
    return httpx.get(head_url + "/instances", timeout=timeout).json()["instances"]


class NgRun:
    """``ng_run`` as a real process (the offline config unless told) on free ports: its
    head server on a held port (``support.ports``), its servers on ports they bind themselves."""

    def __init__(
        self,
        *overrides: str,
        cwd: Path = ROOT,
        config: str = "+config_paths=[configs/offline.yaml]",
        env: dict[str, str] | None = None,
    ) -> None:
        self._head = held_port()  # held until stop(): ng_run's head server binds it beside the hold
        self.head_port = self._head.port
        self.head_url = f"http://127.0.0.1:{self.head_port}"
        self.args = [str(BIN / "ng_run"), config, f"+head_server.port={self.head_port}", *overrides]
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.children: list[int] = []

    def wait_ready(self, timeout: float = 60.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:  # one client: building one costs ~30 ms of CPU
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"ng_run exited {self.proc.returncode}: {self.proc.stdout.read()}")
                try:
                    rows = client.get(self.head_url + "/instances").json()["instances"]
                    if rows and all(r["ready"] for r in rows):
                        self.children = descendants(self.proc.pid)
                        return rows
                except (httpx.TransportError, ValueError, KeyError):
                    pass
                time.sleep(0.02)
        raise AssertionError("ng_run did not become ready")

    def url_of(self, name: str) -> str:
        return next(r["url"] for r in instances(self.head_url) if r["name"] == name)

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
            self._head.release()


def run_cli(name: str, *args: str, cwd: Path = ROOT, timeout: float = 120.0, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(BIN / name), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
