"""NeMo Gym 0.7.0 next to ours: what its processes need beyond ``interop_harness``.

0.7.0 lives in ``.interop/nemo-gym07-py313`` (Python 3.13.0 with ``--ignore-requires-python``:
it declares >= 3.13.14, a test deviation; see ``scripts/interop_setup``).

- ``NemoGym07Run``: 0.7's ``ng_run`` (``gym env start``) from a scratch working directory
  whose ``<type>/<impl>/.venv`` links point at the 0.7 venv (it would otherwise build each
  server's venv with ``uv``). It always starts a local Ray cluster: ``RAY_TMPDIR`` is a short
  scratch folder of its own (Ray's socket paths must stay under 108 bytes), and ``stop()``
  sends SIGINT (its Ctrl-C path: servers, then ``ray.shutdown()``), then kills whatever is
  left in its session and checks nothing survived.
- ``gym07``: any ``gym ...`` command of 0.7 (``gym eval run --no-serve``, ``gym eval
  aggregate``, ``gym eval compare``) in a scratch working directory.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from interop_harness import NG07_VENV, NG_ENV, NemoGymRun, nemo_gym_site, ray_tmpdir

#: Server types whose folders 0.7's wheel ships (each gets a ``.venv`` link in a working dir).
SERVER_TYPES = ("responses_api_models", "responses_api_agents", "resources_servers", "environment_servers")


@functools.cache
def ng07_servers() -> tuple[str, ...]:
    """Every ``<type>/<impl>`` folder of the 0.7 wheel."""
    site = nemo_gym_site(NG07_VENV)
    return tuple(
        f"{kind}/{folder.name}"
        for kind in SERVER_TYPES
        for folder in sorted((site / kind).iterdir())
        if folder.is_dir() and not folder.name.startswith("__")
    )


def ng07_site() -> Path:
    return nemo_gym_site(NG07_VENV)


class NemoGym07Run(NemoGymRun):
    """0.7's ``ng_run`` on free ports against ``upstream_url``; ``stop()`` leaves nothing.

    Ready means its head's ``/readyz`` answers 200: every server answered and (unless
    ``+model_endpoint_readiness_timeout_seconds=0``) every model base URL too.
    """

    def __init__(
        self,
        config_paths: Sequence[str],
        upstream_url: str,
        model_name: str,
        tmp: Path,
        *overrides: str,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        self.ray_tmp = ray_tmpdir()
        super().__init__(
            config_paths,
            upstream_url,
            model_name,
            tmp,
            *overrides,
            extra_config=extra_config,
            venv=NG07_VENV,
            servers=ng07_servers(),
            env={"RAY_TMPDIR": str(self.ray_tmp)},
        )

    def wait_ready(self, timeout: float = 180.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            if not self.process.alive():
                raise AssertionError(f"0.7 ng_run exited {self.process.proc.returncode}:\n{self.process.output()}")
            try:
                if httpx.get(self.head_url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"0.7 ng_run not ready within {timeout} s:\n{self.process.output()}")
            time.sleep(0.2)
        self.instances = httpx.get(self.head_url + "/server_instances", timeout=5).json()
        self.ready_after_s = time.monotonic() - self.started
        self.process.remember_children()
        return self.instances

    def stop(self) -> None:
        try:
            self.process.stop(signal.SIGINT, timeout=30)
        finally:
            shutil.rmtree(self.ray_tmp, ignore_errors=True)


def gym07(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """0.7's ``gym`` command in ``cwd`` (it writes ``cache/`` and ``results/`` there)."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [str(NG07_VENV / "bin/gym"), *args],
        cwd=cwd,
        env={**os.environ, **NG_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def gym07_collect(
    head_url: str, agent: str, input_jsonl: Path, output_jsonl: Path, *extra: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """0.7's collector (``gym eval run --no-serve``) against the head server at ``head_url``."""
    host, port = head_url.removeprefix("http://").rsplit(":", 1)
    output_jsonl.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ng07-collect-") as cwd:
        return gym07(
            "eval",
            "run",
            "--no-serve",
            "--agent",
            agent,
            "--input",
            str(input_jsonl),
            "--output",
            str(output_jsonl),
            f"+head_server.host={host}",
            f"+head_server.port={port}",
            *extra,
            cwd=Path(cwd),
            timeout=timeout,
        )


def failed(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
