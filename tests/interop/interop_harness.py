"""Running the reference peers next to ours: NeMo Gym 0.2.1 and 0.7.0, and the official OpenAI SDK.

The peers live in the venvs ``scripts/interop_setup`` builds under ``.interop/`` (Python 3.12
for 0.2.1 and the SDK, 3.13 for 0.7.0; see that script). The NeMo Gym helpers take the venv
(``NG_VENV``, the default, or ``NG07_VENV``); what only 0.7 needs is in ``ng07_harness.py``.
Everything here starts real processes on free ports and stops them for sure: each peer
process gets its own session (``setsid``), and stopping kills whatever is left in that
session and below it (NeMo Gym's ``ng_run`` starts a Ray cluster: ~20 processes), then
checks /proc that nothing survived.

- ``NemoGymRun``: NeMo Gym's ``ng_run`` from a scratch working directory.
- ``NemoGymServer``: one NeMo Gym server (e.g. its ``simple_agent``) without ``ng_run``,
  wired to servers anywhere (ours included) through the config dict it reads from the env.
- ``OurServer``: one of our servers without ``ng_run`` (``python -m nemo_gym_cli.server.serve``),
  wired to servers anywhere (NeMo Gym's included).
- ``Upstream``: our provider emulator or the reference upstream (``reference_upstream.py``).
- ``nemo_gym_collect`` / ``our_collect``: the two ``ng_collect_rollouts``.
- ``nemo_gym_python`` / ``sdk_python``: run a snippet in a peer venv, get its JSON back.
- ``RayHead``, ``ray_tmpdir``, ``free_port``: a local Ray cluster for NeMo Gym's Ray-enabled
  servers, and the scratch folder and ports Ray needs.

``benchmarks/nemo_gym07*.py`` start their peers with these helpers too (``Process``,
``RayHead``, ``make_nemo_gym_workdir``, ``nemo_gym_site``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from support.ports import HeldPort, held_port
from support.procs import descendants, still_alive

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
INTEROP = ROOT / ".interop"
NG_VENV = INTEROP / "nemo-gym-py312"
SDK_VENV = INTEROP / "openai-sdk"
NG07_VENV = INTEROP / "nemo-gym07-py313"
OUR_BIN = Path(sys.executable).parent
OUR_PYTHON = Path(sys.executable)

#: Environment of every NeMo Gym process: no Ray token auth (Ray would otherwise write
#: ~/.ray/auth_token and refuse servers we start outside ng_run), no usage-stats reporting.
NG_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}

#: Server folders NeMo Gym's ng_run runs from a scratch working directory (each gets a .venv link).
NG_SERVERS = (
    "responses_api_models/openai_model",
    "responses_api_models/vllm_model",
    "responses_api_agents/simple_agent",
    "resources_servers/example_single_tool_call",
    "resources_servers/example_session_state_mgmt",
    "resources_servers/example_multi_step",
)


@functools.cache
def nemo_gym_site(venv: Path = NG_VENV) -> Path:
    """NeMo Gym's install root (site-packages): its ``PARENT_DIR``, where its server folders are."""
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def check_venvs() -> str | None:
    """None if the interop venvs are ready, else what to run."""
    for venv in (NG_VENV, SDK_VENV, NG07_VENV):
        if not (venv / ".interop-stamp").is_file():
            return f"{venv} is missing or incomplete: run scripts/interop_setup (or scripts/interop)"
    return None


# --------------------------------------------------------------------------- processes


def session_members(sid: int) -> list[int]:
    """Live pids whose session id is ``sid`` (a peer and everything it started, daemons included)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(entry))
    return out


def _start_time(pid: int) -> int | None:
    """The start time of live ``pid`` (clock ticks since boot), to tell it from a reused pid;
    None for a gone or zombie process (already dead, waiting for its parent or init to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])


class Process:
    """A peer process in its own session, its output in a log file; ``stop()`` leaves nothing."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        log: Path,
        env: dict[str, str] | None = None,
        stdin: bytes | None = None,
    ) -> None:
        self.args = [str(a) for a in args]
        self.log_path = log
        self._log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if stdin is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.write(stdin)
            self.proc.stdin.close()
        #: pid -> start time of every process seen below the peer (some may leave its session)
        self.known: dict[int, int | None] = {}

    def output(self, tail: int = 60) -> str:
        self._log.flush()
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:])

    def remember_children(self) -> None:
        for pid in {*descendants(self.proc.pid), *session_members(self.proc.pid)}:
            self.known.setdefault(pid, _start_time(pid))

    def _ours(self) -> set[int]:
        """Live processes of this peer: its session, its descendants, and remembered ones that
        are still the same processes (never a reused pid)."""
        pids = set(session_members(self.proc.pid)) | set(descendants(self.proc.pid))
        pids |= {pid for pid, start in self.known.items() if start is not None and _start_time(pid) == start}
        pids.discard(os.getpid())
        return pids

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 25.0) -> None:
        """``sig`` to the peer, wait, then SIGKILL its session and descendants; assert none survive."""
        try:
            self.remember_children()
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
            for _ in range(3):
                pids = self._ours()
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                if self.proc.poll() is None:
                    self.proc.kill()
                self.proc.wait(10)
                left = still_alive(sorted(pids), timeout=5.0)
                if not left and not self._ours():
                    break
            else:
                raise AssertionError(f"processes left behind by {self.args[:2]}: {sorted(self._ours())}")
            assert not session_members(self.proc.pid), f"session {self.proc.pid} still has processes"
        finally:
            self._log.close()


def free_port() -> int:
    """A free loopback port number, let go at once: only for a peer that binds it itself
    without ``SO_REUSEADDR`` (Ray's processes), so a ``held_port()`` would keep it out."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ray_tmpdir() -> Path:
    """A private scratch folder for one Ray cluster (``RAY_TMPDIR``, ``--temp-dir``): short,
    as Ray's unix socket paths must stay under 108 bytes, and its own, so two clusters never
    meet. The caller removes it."""
    return Path(tempfile.mkdtemp(prefix="ng07ray-", dir="/tmp"))


class RayHead:
    """A local Ray cluster's head for NeMo Gym's Ray-enabled servers to join (0.7's
    ``ray_head_node_address``): every port it listens on a free one, never Ray's fixed
    defaults (10001, ...), in its own session; ``stop()`` leaves nothing and removes its
    scratch folder."""

    def __init__(self, venv: Path, tmp: Path, *, num_cpus: int = 2, timeout: float = 120.0) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.tmp = ray_tmpdir()
        ports = (
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
            "node-manager-port",
            "object-manager-port",
        )
        args = [
            venv / "bin/ray",
            "start",
            "--head",
            "--block",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            *(f"--{name}={free_port()}" for name in ports),
            f"--num-cpus={num_cpus}",
            f"--temp-dir={self.tmp}",
        ]
        self.process = Process(args, cwd=tmp, env=NG_ENV, log=tmp / f"ray-head-{self.port}.log")
        deadline = time.monotonic() + timeout
        while not (self.tmp / "session_latest").exists():  # written once the head is up
            if not self.process.alive() or time.monotonic() > deadline:
                output = self.process.output(15)
                self.stop()
                raise RuntimeError(f"ray head did not start within {timeout} s: {output}")
            time.sleep(0.2)

    def stop(self) -> None:
        try:
            self.process.stop(signal.SIGTERM)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def release(holds: list[HeldPort]) -> None:
    """Let the held ports go (support.ports: each was held until its server was done with it)."""
    for hold in holds:
        hold.release()


def wait_http(url: str, timeout: float, proc: Process | None = None, what: str = "") -> None:
    """Until ``url`` answers HTTP at all (any status), like NeMo Gym's own readiness poll."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise AssertionError(f"{what or proc.args[:2]} exited {proc.proc.returncode}:\n{proc.output()}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    tail = f":\n{proc.output()}" if proc is not None else ""
    raise AssertionError(f"{what or url} did not answer within {timeout} s{tail}")


# --------------------------------------------------------------------------- upstreams


class Upstream:
    """An OpenAI-compatible upstream on a free port: ``kind`` is ``emulator`` (our
    ``ng_emulator``) or ``reference`` (``reference_upstream.py``)."""

    def __init__(self, kind: str, tmp: Path) -> None:
        self.kind = kind
        self.holds = [held_port()]  # held until stop(): the server binds beside the hold
        self.port = self.holds[0].port
        if kind == "emulator":
            args = [OUR_BIN / "ng_emulator", "--port", str(self.port)]
            self.model = "emulator/scripted-tool-caller"
        elif kind == "reference":
            args = [OUR_PYTHON, HERE / "reference_upstream.py", "--port", str(self.port)]
            self.model = "reference/scripted"
        else:
            raise ValueError(kind)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.process = Process(args, cwd=ROOT, log=tmp / f"upstream-{kind}-{self.port}.log")
        wait_http(self.base_url + "/models", 30, self.process, f"{kind} upstream")

    def stop(self) -> None:
        self.process.stop(signal.SIGINT)
        release(self.holds)


# --------------------------------------------------------------------------- NeMo Gym


def make_nemo_gym_workdir(path: Path, venv: Path = NG_VENV, servers: Sequence[str] = NG_SERVERS) -> Path:
    """A working directory NeMo Gym's ng_run accepts outside its repo: ``<type>/<impl>/.venv``
    links to the NeMo Gym venv (with ``+skip_venv_if_present=true +uv_venv_dir=<path>`` it
    only sources them). Its configs, apps and data are found in site-packages (its PARENT_DIR)."""
    for server in servers:
        (path / server).mkdir(parents=True, exist_ok=True)
        link = path / server / ".venv"
        if not link.exists():
            link.symlink_to(venv)
    return path


class NemoGymRun:
    """NeMo Gym's ``ng_run`` on free ports against ``upstream_url``; ``stop()`` leaves nothing.

    ``config_paths`` are relative to NeMo Gym's install root (or absolute); ``extra_config``
    is written to the working directory as one more config file (cwd wins over site-packages).
    """

    def __init__(
        self,
        config_paths: Sequence[str],
        upstream_url: str,
        model_name: str,
        tmp: Path,
        *overrides: str,
        extra_config: dict[str, Any] | None = None,
        venv: Path = NG_VENV,
        servers: Sequence[str] = NG_SERVERS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = make_nemo_gym_workdir(tmp / f"{venv.name}-workdir", venv, servers)
        paths = list(config_paths)
        if extra_config:
            (self.workdir / "interop_extra.yaml").write_text(yaml.safe_dump(extra_config))
            paths.append("interop_extra.yaml")
        self.holds = [held_port()]  # NeMo Gym's servers are uvicorn's: they bind with SO_REUSEADDR
        self.head_port = self.holds[0].port
        self.head_url = f"http://127.0.0.1:{self.head_port}"
        args = [
            venv / "bin/ng_run",
            f"+config_paths=[{','.join(paths)}]",
            f"+policy_base_url={upstream_url}",
            "+policy_api_key=sk-interop-dummy",
            f"+policy_model_name={model_name}",
            "+skip_venv_if_present=true",
            f"+uv_venv_dir={self.workdir}",
            "+head_server.host=127.0.0.1",
            f"+head_server.port={self.head_port}",
            *overrides,
        ]
        self.started = time.monotonic()
        self.process = Process(
            args, cwd=self.workdir, env={**NG_ENV, **(env or {})}, log=tmp / f"nemo-gym-ng_run-{self.head_port}.log"
        )
        self.instances: list[dict[str, Any]] = []
        self.ready_after_s: float | None = None

    def wait_ready(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Until the head server lists the instances and every one answers HTTP."""
        deadline = time.monotonic() + timeout
        wait_http(self.head_url + "/server_instances", timeout, self.process, "NeMo Gym head server")
        rows = httpx.get(self.head_url + "/server_instances", timeout=5).json()
        while not rows and time.monotonic() < deadline:  # listed once every server process is spawned
            time.sleep(0.2)
            rows = httpx.get(self.head_url + "/server_instances", timeout=5).json()
        assert rows, f"NeMo Gym's head server lists no servers:\n{self.process.output()}"
        for row in rows:
            wait_http(row["url"], max(1.0, deadline - time.monotonic()), self.process, row["config_path"])
        self.instances = rows
        self.ready_after_s = time.monotonic() - self.started
        self.process.remember_children()
        return rows

    def url(self, instance: str) -> str:
        return next(r["url"] for r in self.instances if r["config_path"] == instance)

    def global_config(self) -> dict[str, Any]:
        """The head's ``/global_config_dict_yaml``: a JSON string holding YAML."""
        text = httpx.get(self.head_url + "/global_config_dict_yaml", timeout=5).json()
        return yaml.safe_load(text)

    @property
    def ray_address(self) -> str | None:
        return self.global_config().get("ray_head_node_address")

    def stop(self) -> None:
        self.process.stop(signal.SIGTERM, timeout=30)
        release(self.holds)


def nemo_gym_instance(name: str, server_type: str, impl: str, url: str, **fields: Any) -> dict[str, Any]:
    """One instance of a NeMo Gym config dict at ``url`` (``http://host:port``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return {name: {server_type: {impl: {"entrypoint": "app.py", "host": host, "port": int(port), **fields}}}}


class NemoGymServer:
    """One NeMo Gym server process without ``ng_run``, as ng_run itself starts it:
    ``python app.py`` in the server's folder with ``NEMO_GYM_CONFIG_DICT`` (the whole config as
    YAML) and ``NEMO_GYM_CONFIG_PATH`` (its instance name). ``instances`` (from
    ``nemo_gym_instance``) are what its references resolve to; ours qualify."""

    def __init__(
        self,
        name: str,
        folder: str,
        instances: dict[str, Any],
        tmp: Path,
        *,
        ray_address: str | None = None,
        venv: Path = NG_VENV,
    ) -> None:
        self.holds = [held_port(), held_port()]  # its port and its head server's
        self.port = self.holds[0].port
        self.url = f"http://127.0.0.1:{self.port}"
        server_type, impl = folder.split("/")
        config = dict(instances)
        config[name][server_type][impl].update(host="127.0.0.1", port=self.port)
        config["head_server"] = {"host": "127.0.0.1", "port": self.holds[1].port}
        config["dry_run"] = False
        if ray_address:  # join a running cluster instead of starting one (~6 s, ~20 processes)
            config["ray_head_node_address"] = ray_address
        env = {
            **NG_ENV,
            "NEMO_GYM_CONFIG_DICT": yaml.safe_dump(config),
            "NEMO_GYM_CONFIG_PATH": name,
            "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(venv),
        }
        server_dir = nemo_gym_site(venv) / folder
        env["PYTHONPATH"] = str(server_dir)
        self.process = Process(
            [venv / "bin/python", "app.py"], cwd=server_dir, env=env, log=tmp / f"nemo-gym-{name}-{self.port}.log"
        )
        wait_http(self.url, 90, self.process, f"NeMo Gym {folder}")

    def stop(self) -> None:
        self.process.stop(signal.SIGINT)
        release(self.holds)


def nemo_gym_collect(
    head_url: str, agent: str, input_jsonl: Path, output_jsonl: Path, *extra: str, timeout: float = 300
) -> subprocess.CompletedProcess:
    """NeMo Gym's ``ng_collect_rollouts`` against the head server at ``head_url``. It runs in a
    scratch directory (Hydra writes ./outputs/ there); the output folder must exist (0.2.1
    writes ``<stem>_materialized_inputs.jsonl`` before creating it)."""
    host, port = head_url.removeprefix("http://").rsplit(":", 1)
    output_jsonl.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ng-collect-") as cwd:
        return subprocess.run(
            [
                str(NG_VENV / "bin/ng_collect_rollouts"),
                f"+agent_name={agent}",
                f"+input_jsonl_fpath={input_jsonl}",
                f"+output_jsonl_fpath={output_jsonl}",
                f"+head_server.host={host}",
                f"+head_server.port={port}",
                *extra,
            ],
            cwd=cwd,
            env={**os.environ, **NG_ENV},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def nemo_gym_cli(command: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """Any NeMo Gym console script (``ng_dump_config``, ``ng_reward_profile``, ...)."""
    return subprocess.run(
        [str(NG_VENV / "bin" / command), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------- ours


class OurServer:
    """One of our servers without ``ng_run``: ``python -m nemo_gym_cli.server.serve`` with its
    payload (``{"entrypoint", "spec"}``; specs may hold keys, so never on a command line) on
    stdin. ``server_urls`` maps every instance its config refers to onto a base URL, which may
    be a NeMo Gym server."""

    def __init__(
        self,
        name: str,
        folder: str,
        fields: dict[str, Any],
        server_urls: dict[str, str],
        tmp: Path,
    ) -> None:
        from nemo_gym_cli.server.spec import ServerSpec

        self.holds = [held_port()]
        self.port = self.holds[0].port
        self.url = f"http://127.0.0.1:{self.port}"
        server_type, impl = folder.split("/")
        spec = ServerSpec(
            name=name,
            server_type=server_type,
            implementation=impl,
            host="127.0.0.1",
            port=self.port,
            fields=fields,
            server_urls={**server_urls, name: self.url},
        )
        payload = json.dumps({"entrypoint": str(ROOT / folder / "app.py"), "spec": spec.to_payload()}).encode()
        self.process = Process(
            [OUR_PYTHON, "-m", "nemo_gym_cli.server.serve"],
            cwd=ROOT,
            stdin=payload,
            log=tmp / f"ours-{name}-{self.port}.log",
        )
        wait_http(self.url + "/health", 30, self.process, f"our {folder}")

    def stop(self) -> None:
        self.process.stop(signal.SIGTERM)
        release(self.holds)


def our_collect(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(OUR_BIN / "ng_collect_rollouts"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


# --------------------------------------------------------------------------- snippets


def _venv_python(venv: Path, code: str, *args: str, cwd: Path | None = None, timeout: float = 120) -> Any:
    """Run ``code`` in ``venv``'s Python with ``args`` in ``sys.argv[1:]``; it must print one JSON
    document on its last stdout line, which is returned."""
    proc = subprocess.run(
        [str(venv / "bin/python"), "-c", code, *args],
        cwd=cwd or tempfile.gettempdir(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(f"snippet failed in {venv.name} ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def nemo_gym_python(code: str, *args: str, **kw: Any) -> Any:
    """A snippet in NeMo Gym's venv (``nemo_gym``, ``openai==2.6.1`` importable)."""
    return _venv_python(NG_VENV, code, *args, **kw)


def sdk_python(code: str, *args: str, **kw: Any) -> Any:
    """A snippet in the newest-SDK venv (``openai`` importable)."""
    return _venv_python(SDK_VENV, code, *args, **kw)


#: Validate JSONL rows with NeMo Gym's models: argv[1] a JSONL path; prints per-row error lists.
VALIDATE_ROWS = r"""
import json, sys
from pydantic import ValidationError
from nemo_gym.base_resources_server import BaseRunRequest, BaseVerifyResponse
from nemo_gym.openai_utils import NeMoGymResponse

def errors(model, value):
    try:
        model.model_validate(value)
        return []
    except ValidationError as exc:
        # Union members that are not function tools only add noise: keep the rest.
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
                if not any(str(p).endswith(('ToolParam', 'Mcp', 'CodeInterpreter', 'ImageGeneration', 'LocalShell'))
                           and not str(p).startswith('FunctionToolParam') for p in e['loc'])]

out = []
for line in open(sys.argv[1]):
    row = json.loads(line)
    out.append({
        "response": errors(NeMoGymResponse, row.get("response")),
        "verify_response": errors(BaseVerifyResponse, row),
        "run_request": errors(BaseRunRequest, row),
    })
print(json.dumps(out))
"""

#: NeMo Gym's reward profiling: argv[1] materialized inputs, argv[2] rollouts; prints agent metrics.
REWARD_PROFILE = r"""
import json, sys
import orjson
from nemo_gym.reward_profile import RewardProfiler
rows = [orjson.loads(l) for l in open(sys.argv[1])]
results = [orjson.loads(l) for l in open(sys.argv[2])]
key = lambda r: (r["_ng_task_index"], r["_ng_rollout_index"])
rows.sort(key=key); results.sort(key=key)
group, agent = RewardProfiler().profile_from_data(rows, results)
print(json.dumps({"group": len(group), "agent": RewardProfiler().prepare_for_serialization(agent)}, default=str))
"""


# --------------------------------------------------------------------------- rows


def post_rows(url: str, rows: list[dict[str, Any]], concurrency: int, timeout: float = 120) -> list[tuple[int, Any]]:
    """POST every row to ``url`` (an agent's ``/run``), ``concurrency`` at a time; (status, body) per row."""
    import asyncio

    async def main() -> list[tuple[int, Any]]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:

            async def one(row: dict[str, Any]) -> tuple[int, Any]:
                async with gate:
                    resp = await client.post(url, json=row)
                    try:
                        return resp.status_code, resp.json()
                    except ValueError:
                        return resp.status_code, resp.text

            return await asyncio.gather(*(one(r) for r in rows))

    return asyncio.run(main())


def counter_rows(n: int) -> list[dict[str, Any]]:
    """``n`` tasks of NeMo Gym's example_session_state_mgmt shape, each with its own numbers."""
    tools = [
        {
            "name": "increment_counter",
            "parameters": {
                "type": "object",
                "properties": {"count": {"type": "integer", "description": ""}},
                "required": ["count"],
                "additionalProperties": False,
            },
            "strict": True,
            "type": "function",
            "description": "",
        },
        {
            "name": "get_counter_value",
            "parameters": {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
            "strict": True,
            "type": "function",
            "description": "",
        },
    ]
    rows = []
    for i in range(n):
        a, b, initial = i % 7 + 1, i % 5 + 2, i % 11
        rows.append(
            {
                "responses_create_params": {
                    "input": [{"role": "user", "content": f"add {a} then add {b} then get the count"}],
                    "tools": tools,
                },
                "expected_count": initial + a + b,
                "initial_count": initial,
            }
        )
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rewards_by_task(rows: list[dict[str, Any]]) -> dict[tuple[int, int], float]:
    return {(r["_ng_task_index"], r["_ng_rollout_index"]): r.get("reward") for r in rows}
