"""``ng_collect_rollouts``: tasks from JSONL through an agent, scored rows to JSONL.

- Input is read lazily; at most ``concurrency`` rollouts are in flight (a fixed pool of
  workers pulling from one iterator), so memory does not grow with the input.
- Each finished row is written and flushed before it counts. A failed rollout is retried
  (bounded, backed off); if it still fails it goes to ``<output stem>_failures.jsonl`` and
  the run goes on. A dead agent ends the run at once with a message saying what to start.
- ``+resume=true`` skips the rollouts already in the output and retries failed ones.
- Ctrl-C stops dispatching, gives in-flight rollouts a few seconds, and leaves valid JSONL.
- Servers come from a running ``ng_run`` (its head server); with ``config_paths`` and no
  head server, the servers are started here and stopped afterwards (one command for CI).
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from nemo_gym_cli.client import ServerClient, make_http_client
from nemo_gym_cli.config import GlobalConfig, load_config
from nemo_gym_cli.errors import ConfigError, InputError, NemoGymError, ServerError
from nemo_gym_cli.rollout_io import (
    DoneSet,
    InputRow,
    OutputFile,
    count_tasks,
    failures_path,
    metrics_path,
    read_tasks,
)
from nemo_gym_cli.rollout_metrics import CollectionMetrics, format_summary
from nemo_gym_cli.run import running_servers, stop_on_signals
from nemo_gym_cli.wire import dumps

__all__ = ["CollectOptions", "collect"]

log = logging.getLogger(__name__)

#: Seconds in-flight rollouts get to finish after Ctrl-C before they are cancelled.
INTERRUPT_GRACE_S = 3.0


@dataclass(frozen=True)
class CollectOptions:
    """Options of ``ng_collect_rollouts`` (Hydra keys of the same names)."""

    input_jsonl_fpath: Path
    output_jsonl_fpath: Path
    agent_name: str | None = None
    limit: int | None = None
    concurrency: int = 10
    num_repeats: int = 1
    responses_create_params: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    max_attempts: int = 3
    max_failures: int = 0
    min_mean_reward: float | None = None
    pass_threshold: float = 1.0
    rollout_timeout_s: float = 3600.0
    progress_interval_s: float = 10.0

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> CollectOptions:
        def req(key: str) -> Any:
            value = options.get(key)
            if value in (None, ""):
                raise ConfigError(f"+{key}=... is required (see ng_collect_rollouts --help)")
            return value

        def num(key: str, default: Any, typ: type, minimum: float | None = None) -> Any:
            value = options.get(key, default)
            if value is None:
                return None
            try:
                value = typ(value)
            except (TypeError, ValueError):
                raise ConfigError(f"+{key} must be a {typ.__name__}, got {value!r}") from None
            if minimum is not None and value < minimum:
                raise ConfigError(f"+{key} must be at least {minimum}, got {value!r}")
            return value

        concurrency = options.get("concurrency", options.get("num_samples_in_parallel", 10))
        rcp = options.get("responses_create_params") or {}
        if not isinstance(rcp, dict):
            raise ConfigError(f"+responses_create_params must be a mapping, got {rcp!r}")
        output = options.get("output_jsonl_fpath")
        input_path = Path(str(req("input_jsonl_fpath"))).expanduser()
        if not output:
            output = Path("results") / f"{input_path.stem}_rollouts.jsonl"
        return cls(
            input_jsonl_fpath=input_path,
            output_jsonl_fpath=Path(str(output)).expanduser(),
            agent_name=options.get("agent_name") or None,
            limit=num("limit", None, int, 0),
            concurrency=num("concurrency", concurrency, int, 1),
            num_repeats=num("num_repeats", 1, int, 1),
            responses_create_params=dict(rcp),
            resume=bool(options.get("resume", False)),
            max_attempts=num("max_attempts", 3, int, 1),
            max_failures=num("max_failures", 0, int, 0),
            min_mean_reward=num("min_mean_reward", None, float),
            pass_threshold=num("pass_threshold", 1.0, float),
            rollout_timeout_s=num("rollout_timeout_s", 3600.0, float, 0.001),
            progress_interval_s=num("progress_interval_s", 10.0, float, 0.1),
        )


@dataclass
class _Job:
    task_index: int
    rollout_index: int
    row: dict[str, Any] | None
    line_number: int
    input_error: str = ""


class _Fatal(NemoGymError):
    """Ends the run: the agent is gone."""


class Collector:
    def __init__(
        self,
        opts: CollectOptions,
        agent_urls: dict[str, str],
        client: ServerClient,
        stop_event: asyncio.Event,
        progress: Callable[[int, int], None],
    ) -> None:
        self.opts = opts
        self.agent_urls = agent_urls
        self.client = client
        self.stop_event = stop_event
        self.progress = progress
        self.out = OutputFile(opts.output_jsonl_fpath)
        self.failures_path = failures_path(opts.output_jsonl_fpath)
        self.metrics = CollectionMetrics(num_repeats=opts.num_repeats, pass_threshold=opts.pass_threshold)
        self.done = DoneSet(opts.num_repeats)
        self.fatal: BaseException | None = None
        self.new_rollouts = 0
        self._failures_file: Any = None

    # ------------------------------------------------------------------ setup

    def prepare_output(self) -> None:
        path = self.opts.output_jsonl_fpath
        exists = path.exists() and path.stat().st_size > 0
        if exists and not self.opts.resume:
            raise InputError(
                f"output {str(path)!r} already exists; add +resume=true to continue that run "
                "(rows already there are skipped), or choose another +output_jsonl_fpath"
            )
        if exists:
            for row in self.out.existing_rows():
                task, rollout = row.get("_ng_task_index"), row.get("_ng_rollout_index")
                if isinstance(task, int) and isinstance(rollout, int) and self.done.add(task, rollout):
                    self.metrics.add_row(row, resumed=True)
        self.out.open(append=exists)
        self._failures_file = self.failures_path.open("wb")

    def jobs(self) -> Iterator[_Job]:
        rcp = self.opts.responses_create_params
        for item in read_tasks(self.opts.input_jsonl_fpath, self.opts.limit):
            for r in range(self.opts.num_repeats):
                if (item.task_index, r) in self.done:
                    continue
                yield self._job(item, r, rcp)

    @staticmethod
    def _job(item: InputRow, r: int, rcp: dict[str, Any]) -> _Job:
        row = item.row
        if row is not None and rcp:
            row = {**row, "responses_create_params": {**(row.get("responses_create_params") or {}), **rcp}}
        return _Job(item.task_index, r, row, item.line_number, item.error)

    def agent_url(self, row: dict[str, Any]) -> str:
        ref = row.get("agent_ref")
        name = ref.get("name") if isinstance(ref, dict) else None
        name = name or self.opts.agent_name
        if not name:
            raise InputError("the row names no agent (agent_ref.name) and no +agent_name was given")
        url = self.agent_urls.get(name)
        if url is None:
            raise InputError(f"agent {name!r} is not a running agent (agents: {', '.join(sorted(self.agent_urls)) or 'none'})")
        return url

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        jobs = self.jobs()
        workers = [asyncio.create_task(self._worker(jobs)) for _ in range(self.opts.concurrency)]
        stopper = asyncio.create_task(self.stop_event.wait())
        try:
            all_done = asyncio.gather(*workers)
            await asyncio.wait({all_done, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if self.stop_event.is_set() and not all_done.done():
                # Interrupted: workers take no new job; give in-flight ones a moment.
                _, pending = await asyncio.wait(workers, timeout=INTERRUPT_GRACE_S)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            else:
                await all_done
        finally:
            stopper.cancel()
            for task in workers:
                task.cancel()
            self.out.close()
            if self._failures_file is not None:
                self._failures_file.close()

    async def _worker(self, jobs: Iterator[_Job]) -> None:
        while not self.stop_event.is_set():
            job = next(jobs, None)
            if job is None:
                return
            await self._do(job)

    async def _do(self, job: _Job) -> None:
        if job.row is None:
            self._fail(job, "InputError", job.input_error, attempts=0)
            return
        try:
            url = self.agent_url(job.row) + "/run"
        except InputError as exc:
            self._fail(job, "InputError", f"line {job.line_number}: {exc}", attempts=0)
            return
        last: Exception | None = None
        for attempt in range(1, self.opts.max_attempts + 1):
            started = time.perf_counter()
            try:
                result = await asyncio.wait_for(self.client.post(url, job.row), self.opts.rollout_timeout_s)
            except asyncio.TimeoutError:
                last = ServerError(f"rollout timed out after {self.opts.rollout_timeout_s} s", url=url)
            except ServerError as exc:
                last = exc
                if exc.status is None and not await self._alive(url):
                    self._set_fatal(url)
                    return
                if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (408, 429):
                    break  # the agent says the row is bad: retrying will not help
            else:
                if not isinstance(result, dict):
                    last = ServerError(f"agent answered {type(result).__name__}, not a row", url=url)
                else:
                    self._write(job, result, time.perf_counter() - started)
                    return
            if attempt < self.opts.max_attempts and not self.stop_event.is_set():
                await asyncio.sleep(random.uniform(0.5, 1.0) * 2 ** (attempt - 1))
            elif self.stop_event.is_set():
                return  # interrupted: not a failure; a resume retries it
        assert last is not None
        self._fail(job, type(last).__name__, str(last), attempts=attempt)

    async def _alive(self, url: str) -> bool:
        health = url.rsplit("/", 1)[0] + "/health"
        try:
            await self.client.get(health)
            return True
        except ServerError:
            return False

    def _set_fatal(self, url: str) -> None:
        if self.fatal is None:
            base = url.rsplit("/", 1)[0]
            self.fatal = ServerError(
                f"the agent at {base} stopped answering (connection refused); start the servers again "
                "(ng_run) and re-run with +resume=true to continue where this run stopped",
                url=base,
            )
            self.stop_event.set()

    def _write(self, job: _Job, result: dict[str, Any], latency: float) -> None:
        result["_ng_task_index"] = job.task_index
        result["_ng_rollout_index"] = job.rollout_index
        self.out.write(result)
        self.done.add(job.task_index, job.rollout_index)
        assert job.row is not None
        self.metrics.add_row(result, job.row.keys(), latency)
        self.new_rollouts += 1
        self.progress(1, 0)

    def _fail(self, job: _Job, error_type: str, message: str, attempts: int) -> None:
        record = {
            "_ng_task_index": job.task_index,
            "_ng_rollout_index": job.rollout_index,
            "line_number": job.line_number,
            "error_type": error_type,
            "message": message,
            "attempts": attempts,
        }
        self._failures_file.write(dumps(record) + b"\n")
        self._failures_file.flush()
        self.metrics.add_failure(error_type)
        self.progress(0, 1)
        log.warning("rollout task %d #%d failed after %d attempt(s): %s", job.task_index, job.rollout_index, attempts, message)


# ---------------------------------------------------------------------- progress


class _Progress:
    """A tqdm bar on a terminal; elsewhere (CI) a plain line every ``interval`` seconds."""

    def __init__(self, total: int, interval: float, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self.interval = interval
        self._next = self.started + interval
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="rollout", file=self.stream, dynamic_ncols=True)

    def __call__(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed
        if self.bar is not None:
            self.bar.update(done + failed)
            if failed:
                self.bar.set_postfix(failed=self.failed, refresh=False)
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval
            self.line(now)

    def line(self, now: float | None = None) -> None:
        now = now or time.monotonic()
        elapsed = max(now - self.started, 1e-9)
        n = self.done + self.failed
        rate = n / elapsed
        eta = (self.total - n) / rate if rate > 0 else float("inf")
        eta_s = f"{eta:.0f} s" if eta != float("inf") else "?"
        print(
            f"progress: {n}/{self.total} done ({self.failed} failed), {rate:.1f} rollouts/s, ETA {eta_s}",
            file=self.stream,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---------------------------------------------------------------------- entry


async def _discover(config: GlobalConfig, http: httpx.AsyncClient) -> dict[str, str] | None:
    """Agent name -> URL from a running head server, or None if none answers."""
    try:
        resp = await http.get(config.head_url + "/instances", timeout=5.0)
    except httpx.TransportError:
        return None
    if resp.status_code != 200:
        raise ServerError(f"head server at {config.head_url} answered {resp.status_code}", url=config.head_url)
    rows = resp.json().get("instances", [])
    return {r["name"]: r["url"] for r in rows if r.get("type") == "responses_api_agents"}


async def _collect(config: GlobalConfig, opts: CollectOptions) -> tuple[dict[str, Any], int, str]:
    stop_event = asyncio.Event()
    started = time.perf_counter()
    pool = min(opts.concurrency, 1024)
    async with make_http_client(pool_size=pool, timeout=opts.rollout_timeout_s) as http:
        with stop_on_signals(stop_event):
            agents = await _discover(config, http)
            if agents is not None:
                log.info("using the servers of the head server at %s", config.head_url)
                return await _collect_with(agents, http, pool, opts, stop_event, started)
            if not config.instances:
                raise ServerError(
                    f"no head server answers at {config.head_url}: start the servers with "
                    'ng_run "+config_paths=[...]", or give ng_collect_rollouts the same +config_paths '
                    "to start them itself",
                    url=config.head_url,
                )
            write = (lambda line: print(line, file=sys.stderr, flush=True))
            async with running_servers(config, stop_event=stop_event, write=write, with_head=False):
                agents = {n: i.url for n, i in config.instances.items() if i.server_type == "responses_api_agents"}
                return await _collect_with(agents, http, pool, opts, stop_event, started)


async def _collect_with(
    agents: dict[str, str],
    http: httpx.AsyncClient,
    pool: int,
    opts: CollectOptions,
    stop_event: asyncio.Event,
    started: float,
) -> tuple[dict[str, Any], int, str]:
    if opts.agent_name and opts.agent_name not in agents:
        raise ConfigError(
            f"+agent_name={opts.agent_name!r} is not a running agent; agents: {', '.join(sorted(agents)) or 'none'}"
        )
    if not opts.input_jsonl_fpath.is_file():
        raise InputError(f"+input_jsonl_fpath={str(opts.input_jsonl_fpath)!r} does not exist")
    client = ServerClient(http, max_in_flight=pool)
    total_tasks = count_tasks(opts.input_jsonl_fpath, opts.limit)
    progress = _Progress(0, opts.progress_interval_s)
    collector = Collector(opts, agents, client, stop_event, progress)
    collector.prepare_output()
    progress.total = max(0, total_tasks * opts.num_repeats - collector.done.count)
    if progress.bar is not None:
        progress.bar.total = progress.total
    try:
        await collector.run()
    finally:
        progress.close()
    wall = time.perf_counter() - started
    doc = collector.metrics.summary(wall_time_s=wall, new_rollouts=collector.new_rollouts)
    doc["output"] = str(opts.output_jsonl_fpath)
    doc["failures_file"] = str(collector.failures_path)
    doc["interrupted"] = stop_event.is_set() and collector.fatal is None
    metrics_file = metrics_path(opts.output_jsonl_fpath)
    metrics_file.write_bytes(dumps(doc))
    if collector.fatal is not None:
        raise collector.fatal
    return doc, *_gates(doc, opts)


def _gates(doc: dict[str, Any], opts: CollectOptions) -> tuple[int, str]:
    if doc["interrupted"]:
        return 130, "interrupted: re-run with +resume=true to continue"
    if doc["failed"] > opts.max_failures:
        return 1, (
            f"gate failed: {doc['failed']} rollouts failed, more than +max_failures={opts.max_failures} "
            f"(see {doc['failures_file']})"
        )
    if opts.min_mean_reward is not None:
        reward = doc["metrics"].get("reward", {}).get("mean", 0.0)
        if reward < opts.min_mean_reward:
            return 1, f"gate failed: mean reward {reward:.4f} is below +min_mean_reward={opts.min_mean_reward}"
    return 0, ""


def collect(args: list[str]) -> int:
    """Run a collection from Hydra-syntax ``args``; returns the exit code."""
    config = load_config(args)
    opts = CollectOptions.from_config(config.options)
    doc, code, message = asyncio.run(_collect(config, opts))
    print(format_summary(doc))
    print(f"wrote {doc['succeeded'] - doc['resumed_from_output']} new rows to {opts.output_jsonl_fpath}; "
          f"metrics in {metrics_path(opts.output_jsonl_fpath)}")
    if doc["failed"]:
        print(f"{doc['failed']} failed rollouts are listed in {doc['failures_file']}")
    if message:
        print(message, file=sys.stderr)
    return code
