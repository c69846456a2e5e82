"""The collection engine: ``CollectOptions`` and ``Collector``, which runs the rollouts.

- At most ``concurrency`` rollouts are in flight: a fixed pool of workers pulls jobs from one
  lazy iterator over the input, so memory does not grow with the input.
- Each finished row is written and flushed before it counts. A failed rollout is retried
  (bounded, jittered exponential backoff; a 4xx answer is not retried); if it still fails it
  goes to ``<output stem>_failures.jsonl`` and the run goes on.
- An agent that stops answering (connection refused, no ``/health``) ends the run at once.
- On resume, the rows already in the output are skipped (a ``DoneSet`` bitset) and counted.
- Stopping (Ctrl-C): no new rollouts; in-flight ones get ``INTERRUPT_GRACE_S`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nemo_gym_cli.collect.files import DoneSet, FailuresFile, OutputFile, read_tasks
from nemo_gym_cli.collect.metrics import CollectionMetrics, Progress
from nemo_gym_cli.errors import ConfigError, InputError, NemoGymError, ServerError

__all__ = ["INTERRUPT_GRACE_S", "CollectOptions", "Collector"]

log = logging.getLogger(__name__)

#: Seconds in-flight rollouts get to finish after Ctrl-C before they are cancelled.
INTERRUPT_GRACE_S = 3.0
#: Longest wait between two attempts of one rollout.
MAX_BACKOFF_S = 30.0


class JSONPoster(Protocol):
    """What the collector needs of a client (``client.JSONClient``): JSON in and out, every
    failure a ``ServerError`` whose ``status`` is None when no HTTP answer came."""

    async def post(self, url: str, payload: Any) -> Any: ...

    async def get(self, url: str) -> Any: ...


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", "", "none"):
        return False
    raise ConfigError(f"+{key} must be true or false, got {value!r}")


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

        if options.get("input_jsonl_fpath") in (None, ""):
            raise ConfigError("+input_jsonl_fpath=... is required (see ng_collect_rollouts --help)")
        input_path = Path(str(options["input_jsonl_fpath"])).expanduser()
        output = options.get("output_jsonl_fpath") or Path("results") / f"{input_path.stem}_rollouts.jsonl"
        concurrency = options.get("concurrency", options.get("num_samples_in_parallel", 10))
        rcp = options.get("responses_create_params") or {}
        if not isinstance(rcp, dict):
            raise ConfigError(f"+responses_create_params must be a mapping, got {rcp!r}")
        return cls(
            input_jsonl_fpath=input_path,
            output_jsonl_fpath=Path(str(output)).expanduser(),
            agent_name=options.get("agent_name") or None,
            limit=num("limit", None, int, 0),
            concurrency=num("concurrency", concurrency, int, 1),
            num_repeats=num("num_repeats", 1, int, 1),
            responses_create_params=dict(rcp),
            resume=_bool("resume", options.get("resume", False)),
            max_attempts=num("max_attempts", 3, int, 1),
            max_failures=num("max_failures", 0, int, 0),
            min_mean_reward=num("min_mean_reward", None, float),
            pass_threshold=num("pass_threshold", 1.0, float),
            rollout_timeout_s=num("rollout_timeout_s", 3600.0, float, 0.001),
            progress_interval_s=num("progress_interval_s", 10.0, float, 0.1),
        )

    def check_paths(self) -> None:
        """Fail before any work: no input, or an output that a run without resume would clobber."""
        if not self.input_jsonl_fpath.is_file():
            raise InputError(f"+input_jsonl_fpath={str(self.input_jsonl_fpath)!r} does not exist")
        out = self.output_jsonl_fpath
        if not self.resume and out.exists() and out.stat().st_size > 0:
            raise InputError(
                f"output {str(out)!r} already exists; add +resume=true to continue that run "
                "(rows already there are skipped, failed ones retried), or choose another "
                "+output_jsonl_fpath"
            )


@dataclass(slots=True)
class _Job:
    task_index: int
    rollout_index: int
    row: dict[str, Any] | None  # None: the input line is bad (see input_error)
    line_number: int
    input_error: str = ""


class Collector:
    """Runs the rollouts of one collection: ``concurrency`` workers pull jobs from one lazy
    iterator; each finished row is written (and flushed) before it is counted."""

    def __init__(
        self,
        opts: CollectOptions,
        agent_urls: dict[str, str],
        client: JSONPoster,
        stop_event: asyncio.Event,
        progress: Progress,
        *,
        restart_hint: str,
        max_in_flight: int | None = None,
    ) -> None:
        self.opts = opts
        self.agent_urls = agent_urls
        self.client = client
        self.stop_event = stop_event
        self.progress = progress
        self.restart_hint = restart_hint
        # At most this many requests reach the client at once: aiohttp counts the wait for a
        # pooled connection against its connect timeout, so requests must not queue in it.
        self._gate = asyncio.Semaphore(max_in_flight or opts.concurrency)
        self.out = OutputFile(opts.output_jsonl_fpath)
        self.failures = FailuresFile(opts.output_jsonl_fpath)
        self.metrics = CollectionMetrics(num_repeats=opts.num_repeats, pass_threshold=opts.pass_threshold)
        self.done = DoneSet(opts.num_repeats)
        self.fatal: NemoGymError | None = None
        self.dispatched = 0
        self.exhausted = False
        self.new_rollouts = 0
        self.failed = 0

    @property
    def complete(self) -> bool:
        """Every rollout of the input is now in the output or in the failures file."""
        return self.exhausted and self.fatal is None and self.new_rollouts + self.failed == self.dispatched

    # ------------------------------------------------------------------ setup

    def prepare_output(self, num_tasks: int) -> None:
        """On resume, read back the rows already written (cutting a torn last line) so they are
        skipped and counted; then open the output for appending."""
        if self.opts.resume and self.out.path.exists():
            ignored = 0
            for row in self.out.existing_rows():
                task, rollout = row.get("_ng_task_index"), row.get("_ng_rollout_index")
                if (
                    isinstance(task, int)
                    and isinstance(rollout, int)
                    and task < num_tasks
                    and self.done.add(task, rollout)
                ):
                    self.metrics.add_row(row, resumed=True)
                else:
                    ignored += 1
            if ignored:
                log.warning(
                    "%d rows of %s are duplicates or not of this run (other +limit or "
                    "+num_repeats); they stay in the file but are not counted",
                    ignored,
                    self.out.path,
                )
        self.failures.reset()
        self.out.open(append=True)

    def jobs(self) -> Generator[_Job, None, None]:
        rcp = self.opts.responses_create_params
        for item in read_tasks(self.opts.input_jsonl_fpath, self.opts.limit):
            row = item.row
            if row is not None:
                self.metrics.note_input_keys(row)
                if rcp:
                    row = {
                        **row,
                        "responses_create_params": {
                            **(row.get("responses_create_params") or {}),
                            **rcp,
                        },
                    }
            for r in range(self.opts.num_repeats):
                if (item.task_index, r) not in self.done:
                    self.dispatched += 1
                    yield _Job(item.task_index, r, row, item.line_number, item.error)
        self.exhausted = True

    def agent_url(self, row: dict[str, Any]) -> str:
        """Base URL of the agent the row names (``agent_ref.name``), else of ``+agent_name``."""
        ref = row.get("agent_ref")
        name = (ref.get("name") if isinstance(ref, dict) else None) or self.opts.agent_name
        if not name:
            raise InputError("the row names no agent (agent_ref: {name: ...}) and no +agent_name was given")
        url = self.agent_urls.get(name)
        if url is None:
            known = ", ".join(sorted(self.agent_urls)) or "none"
            raise InputError(f"the row's agent {name!r} is not a running agent (agents: {known})")
        return url

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        jobs = self.jobs()
        workers = [asyncio.create_task(self._worker(jobs)) for _ in range(self.opts.concurrency)]
        all_done: asyncio.Future[list[Any]] = asyncio.gather(*workers, return_exceptions=True)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self.stop_event.wait())
        try:
            await asyncio.wait([all_done, stopper], return_when=asyncio.FIRST_COMPLETED)
            if not all_done.done():
                # Stopping (Ctrl-C, a dead server): workers take no new job; in-flight
                # rollouts get a moment to finish, then are cancelled (a resume redoes them).
                await asyncio.wait({all_done}, timeout=INTERRUPT_GRACE_S)
                for task in workers:
                    task.cancel()
            results = await all_done
        finally:
            stopper.cancel()
            for task in workers:
                task.cancel()
            jobs.close()
            self.out.close()
            self.failures.close()
        for result in results:
            if isinstance(result, Exception):  # a bug or a full disk, not a failed rollout
                raise result

    async def _worker(self, jobs: Iterator[_Job]) -> None:
        try:
            while not self.stop_event.is_set():
                job = next(jobs, None)
                if job is None:
                    return
                await self._do(job)
        except Exception:
            self.stop_event.set()  # stop the other workers too; run() re-raises this
            raise

    async def _do(self, job: _Job) -> None:
        if job.row is None:
            self._fail(job, "InputError", job.input_error, attempts=0)
            return
        try:
            base = self.agent_url(job.row)
        except InputError as exc:
            where = f"{self.opts.input_jsonl_fpath}:{job.line_number}"
            self._fail(job, "InputError", f"{where}: {exc}", attempts=0)
            return
        url = base + "/run"
        for attempt in range(1, self.opts.max_attempts + 1):
            started = time.perf_counter()
            try:
                result = await self._attempt(url, job.row)
            except ServerError as exc:
                error = exc
            else:
                self._write(job, result, time.perf_counter() - started)
                return
            if error.status is None and not await self._alive(base):
                message = f"the agent at {base} stopped answering (connection refused); "
                self.stop_fatally(ServerError(message + self.restart_hint, url=base))
                return
            if _rejected(error.status) or attempt == self.opts.max_attempts:
                break
            if await self._backoff(attempt, url, error):
                return  # stopping: not a failure, a resume retries it
        self._fail(job, type(error).__name__, str(error), attempts=attempt)

    async def _attempt(self, url: str, row: dict[str, Any]) -> dict[str, Any]:
        """One ``POST /run``; every failure as a ``ServerError`` (``status`` None: no answer)."""
        timeout = self.opts.rollout_timeout_s
        try:
            async with self._gate, asyncio.timeout(timeout):
                result = await self.client.post(url, row)
        except TimeoutError:
            raise ServerError(f"POST {url}: no answer in {timeout} s (+rollout_timeout_s)", url=url) from None
        if not isinstance(result, dict):
            kind = type(result).__name__
            raise ServerError(f"POST {url} answered a JSON {kind}, not a row (object)", url=url)
        return result

    async def _backoff(self, attempt: int, url: str, error: Exception) -> bool:
        """Wait before the next attempt (jittered exponential); True if stopping meanwhile."""
        delay = min(MAX_BACKOFF_S, 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)
        log.info("attempt %d of POST %s failed (%s); retrying in %.1f s", attempt, url, error, delay)
        try:
            async with asyncio.timeout(delay):
                await self.stop_event.wait()
        except TimeoutError:
            pass
        return self.stop_event.is_set()

    async def _alive(self, base: str) -> bool:
        try:
            async with self._gate:
                await self.client.get(base + "/health")
            return True
        except ServerError:
            return False

    def stop_fatally(self, error: NemoGymError) -> None:
        """End the run: a server is gone, so every rollout would fail."""
        if self.fatal is None:
            self.fatal = error
        self.stop_event.set()

    def _write(self, job: _Job, result: dict[str, Any], latency: float) -> None:
        result["_ng_task_index"] = job.task_index
        result["_ng_rollout_index"] = job.rollout_index
        self.out.write(result)  # on disk (flushed) before it counts
        self.done.add(job.task_index, job.rollout_index)
        self.metrics.add_row(result, latency)
        self.new_rollouts += 1
        self.progress.add(1, 0)

    def _fail(self, job: _Job, error_type: str, message: str, attempts: int) -> None:
        self.failures.write(
            {
                "_ng_task_index": job.task_index,
                "_ng_rollout_index": job.rollout_index,
                "line_number": job.line_number,
                "error_type": error_type,
                "message": message,
                "attempts": attempts,
            }
        )
        self.failed += 1
        self.metrics.add_failure(error_type, job.task_index)
        self.progress.add(0, 1)
        what = f"failed after {attempts} attempt(s)" if attempts else "not run"
        log.warning("rollout (task %d, rollout %d) %s: %s", job.task_index, job.rollout_index, what, message)


def _rejected(status: int | None) -> bool:
    """The agent refused the row itself (4xx but timeout/rate limit): retrying will not help."""
    return status is not None and 400 <= status < 500 and status not in (408, 429)
