"""The collection engine: runs the rollouts of one collection, one *lane* per variant.

- A lane is one output file: the single run, or one variant of a sweep (a model, sampling
  parameters, provider routing). Each lane has its own workers, as many as its concurrency
  (fewer when fewer rollouts are left), all started when the run starts and pulling from
  the lane's one lazy reader of the input: a slow model never starves the others, and
  memory grows with the concurrency, not with the input. Requests to the agents go through
  at most ``connections`` at once (the client's pool; the others wait their turn here).
- Each finished row is written and flushed before it counts. A failed attempt is retried
  (bounded, jittered exponential backoff) only when its error envelope says ``retryable``
  (or no answer came and the agent is still alive); what it had cost (the envelope's
  ``usage``) counts in the run's cost. A rollout that keeps failing goes to the lane's
  ``<stem>_failures.jsonl`` and the run goes on; the first failure of each kind is shown in
  full, once. An error in the user's code (a verifier, a tool, an agent's loop) is not
  retryable (its envelope says so: ``server/usercode.py``): one line per distinct error,
  and their counts at the end.
- An agent with several replicas (on a Ray cluster) gets each rollout on one of them; a
  replica that stops answering gets no more, and its rollouts are retried on the others.
- The run stops at once, resumable, when: an agent stops answering (connection refused;
  with replicas, the last of them),
  the provider keeps failing (``+circuit_breaker`` rollouts in a row failed because of it),
  or the reported cost reaches ``+max_cost_usd`` (in-flight rollouts counted at the mean
  cost so far, so the total lands within one in-flight batch of the limit).
- On resume, the rows already in a lane's output are skipped (a ``DoneSet`` bitset).
- Stopping (Ctrl-C): no new rollouts; in-flight ones get ``INTERRUPT_GRACE_S`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from nemo_gym_cli.collect.environments import Route, failure_kind, stamp
from nemo_gym_cli.collect.files import DoneSet, FailuresFile, InputRow, OutputFile, read_tasks
from nemo_gym_cli.collect.metrics import CollectionMetrics, Progress
from nemo_gym_cli.collect.options import CollectOptions, Variant
from nemo_gym_cli.errors import InputError, NemoGymError, ServerError
from nemo_gym_cli.redaction import MASK
from nemo_gym_cli.server.replicas import Replicas
from nemo_gym_cli.server.usercode import USER_ERROR_KIND, USER_ERROR_PREFIX

__all__ = ["INTERRUPT_GRACE_S", "BudgetSpent", "CollectOptions", "Collector", "Lane", "StopReason"]

log = logging.getLogger(__name__)

#: Seconds in-flight rollouts get to finish after Ctrl-C before they are cancelled.
INTERRUPT_GRACE_S = 3.0
#: Longest wait between two attempts of one rollout.
MAX_BACKOFF_S = 30.0


class JSONPoster(Protocol):
    """What the collector needs of a client (``server.client.JSONClient``): JSON in and out,
    every failure a ``ServerError`` whose ``status`` is None when no HTTP answer came."""

    async def post(self, url: str, payload: Any) -> Any: ...

    async def get(self, url: str) -> Any: ...


class StopReason(NemoGymError):
    """Why the run stopped before its end, resumable (the budget, a failing provider)."""


class BudgetSpent(StopReason):
    """The run stopped at ``+max_cost_usd``."""


@dataclass(slots=True)
class _Job:
    task_index: int
    rollout_index: int
    row: dict[str, Any] | None  # None: the input line is bad (see input_error)
    line_number: int
    input_error: str = ""


@dataclass
class Lane:
    """One output file's collection: the single run, or one variant of a sweep."""

    name: str
    output: Path
    variant: Variant | None
    concurrency: int
    opts: CollectOptions
    out: OutputFile = field(init=False)
    failures: FailuresFile = field(init=False)
    metrics: CollectionMetrics = field(init=False)
    done: DoneSet = field(init=False)
    dispatched: int = 0
    new_rollouts: int = 0
    failed: int = 0
    exhausted: bool = False
    #: its rollouts in flight now
    running: int = 0
    #: perf_counter() of its first dispatched rollout and of the last one finished: a
    #: variant's own time, for its rollouts/s (variants of a sweep share the run's wall time)
    first_started: float | None = None
    last_finished: float | None = None
    #: workers started: its concurrency, or fewer when fewer rollouts were left to run
    workers: int = 0
    #: only these tasks' rows, read once by the adaptive sweep for its round (None: every task,
    #: from the input)
    round_rows: list[InputRow] | None = None

    def busy_time(self, default: float) -> float:
        if self.first_started is None or self.last_finished is None:
            return default
        return self.last_finished - self.first_started

    def __post_init__(self) -> None:
        self.out = OutputFile(self.output)
        self.failures = FailuresFile(self.output)
        self.metrics = CollectionMetrics(num_repeats=self.opts.num_repeats, pass_threshold=self.opts.pass_threshold)
        self.done = DoneSet(self.opts.num_repeats)
        overrides = dict(self.opts.responses_create_params)
        if self.variant is not None:
            overrides.update(self.variant.params())
        self.overrides = overrides

    @property
    def complete(self) -> bool:
        """Every rollout of the input is now in the output or in the failures file."""
        return self.exhausted and self.new_rollouts + self.failed == self.dispatched

    def prepare(self, num_tasks: int) -> None:
        """On resume, read back the rows already written (cutting a torn last line) so they
        are skipped and counted; then open the output for appending."""
        if self.opts.resuming and self.out.path.exists():
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
                    "%d rows of %s are duplicates or not of this run (other +limit or +num_repeats); they stay "
                    "in the file but are not counted",
                    ignored,
                    self.out.path,
                )
        self.failures.reset()
        self.out.open(append=True)

    def only(self, rows: list[InputRow]) -> None:
        """Run only these tasks from now on (an adaptive sweep's round, its rows read once for
        every lane; empty: none)."""
        self.round_rows = rows
        self.exhausted = False

    def jobs(self) -> Generator[_Job, None, None]:
        """The lane's rollouts not yet in its output, lazily: task by task, each task's
        repeats back to back, or (``+interleave_repeats``) round by round, the input read
        once a round."""
        opts = self.opts
        rounds = [range(r, r + 1) for r in range(opts.num_repeats)] if opts.interleave_repeats else [None]
        for repeats in rounds:
            items = self.round_rows if self.round_rows is not None else read_tasks(opts.input_path, opts.limit)
            for item in items:
                row = item.row
                if row is not None:
                    if repeats is None or repeats.start == 0:
                        self.metrics.note_input_keys(row)
                    row = self.row_sent(row)
                for r in repeats or range(opts.num_repeats):
                    if (item.task_index, r) not in self.done:
                        self.dispatched += 1
                        job_row = row
                        if row is not None:
                            # The indices ride in the row to /run, as NeMo Gym's collector sends
                            # them: the agent tells the model server which repeat a call is.
                            job_row = {**row, "_ng_task_index": item.task_index, "_ng_rollout_index": r}
                            if opts.num_repeats_add_seed:
                                job_row["responses_create_params"] = {**row["responses_create_params"], "seed": r}
                        yield _Job(item.task_index, r, job_row, item.line_number, item.error)
        self.exhausted = True

    @property
    def model(self) -> str | None:
        """The model its variant asks for (None: the config's model)."""
        return self.variant.model if self.variant is not None else None

    def row_sent(self, row: dict[str, Any]) -> dict[str, Any]:
        """The row as this lane sends it: overrides merged, the variant named."""
        if not self.overrides and self.variant is None:
            return row
        params = row.get("responses_create_params")
        merged = {**(params if isinstance(params, dict) else {}), **self.overrides}
        out = {**row, "responses_create_params": merged}
        if self.variant is not None:
            out["_ng_variant"] = self.variant.name
            if self.model is not None:
                out["_ng_requested_model"] = self.model
        return out


class Collector:
    """Runs the rollouts of one collection over its lanes."""

    def __init__(
        self,
        opts: CollectOptions,
        agent_urls: dict[str, str] | dict[str, list[str]],
        client: JSONPoster,
        stop_event: asyncio.Event,
        progress: Progress,
        *,
        restart_hint: str,
        connections: int | None = None,
        lanes: list[Lane] | None = None,
        announce: Callable[[str], None] | None = None,
        routes: dict[str, Route] | None = None,
    ) -> None:
        self.opts = opts
        #: each agent's replicas (one URL, unless it runs on a Ray cluster)
        self.agents = {name: Replicas(name, [u] if isinstance(u, str) else u) for name, u in agent_urls.items()}
        #: how each agent's rows are stamped (NeMo Gym 0.7's environment server; ``environments.py``)
        self.routes = routes or {
            name: Route(name, name, "", list(r.urls)) for name, r in self.agents.items()
        }  # fmt: skip
        self.client = client
        self.stop_event = stop_event
        self.progress = progress
        self.restart_hint = restart_hint
        self.announce = announce or (lambda line: log.warning("%s", line))
        # At most this many requests reach the client at once: aiohttp counts the wait for a
        # pooled connection against its connect timeout, so requests must not queue in it.
        self._connections = asyncio.Semaphore(connections or opts.lane_concurrency)
        if lanes is None:
            lanes = [Lane("", opts.output_path, None, opts.lane_concurrency, opts)]
        self.lanes = lanes
        self.fatal: NemoGymError | None = None
        self.stopped: StopReason | None = None
        self._shown: set[str] = set()
        #: rollouts failed by each distinct error in the user's code (its one line)
        self.user_errors: Counter[str] = Counter()
        self._upstream_streak = 0
        self._last_upstream_error = ""

    # ------------------------------------------------------------------ state

    @property
    def complete(self) -> bool:
        return self.fatal is None and self.stopped is None and all(lane.complete for lane in self.lanes)

    @property
    def new_rollouts(self) -> int:
        return sum(lane.new_rollouts for lane in self.lanes)

    @property
    def failed(self) -> int:
        return sum(lane.failed for lane in self.lanes)

    @property
    def cost(self) -> float:
        return sum(lane.metrics.total_cost for lane in self.lanes)

    def prepare_output(self, num_tasks: int) -> None:
        for lane in self.lanes:
            lane.prepare(num_tasks)

    def agent(self, row: dict[str, Any]) -> Replicas:
        """The agent the row names (``agent_ref.name``), else ``+agent_name``."""
        ref = row.get("agent_ref")
        name = (ref.get("name") if isinstance(ref, dict) else None) or self.opts.agent_name
        if not name or not isinstance(name, str):
            raise InputError("the row names no agent (agent_ref: {name: ...}) and no +agent_name was given")
        replicas = self.agents.get(name)
        if replicas is None:
            known = ", ".join(sorted(self.agents)) or "none"
            raise InputError(f"the row's agent {name!r} is not a running agent (agents: {known})")
        return replicas

    # ------------------------------------------------------------------ running

    async def run(self, outstanding: dict[str, int] | None = None) -> None:
        """Run every lane to its end (or until stopped). ``outstanding`` (lane -> rollouts
        left) bounds how many workers each lane starts."""
        lanes = []
        for lane in self.lanes:
            jobs = lane.jobs()
            left = (outstanding or {}).get(lane.name, lane.concurrency)
            lane.workers = max(1, min(lane.concurrency, left))
            lanes.append((lane, jobs, [asyncio.create_task(self._worker(lane, jobs)) for _ in range(lane.workers)]))
        tasks = [t for _, _, ws in lanes for t in ws]
        all_done: asyncio.Future[list[Any]] = asyncio.gather(*tasks, return_exceptions=True)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(self.stop_event.wait())
        try:
            await asyncio.wait([all_done, stopper], return_when=asyncio.FIRST_COMPLETED)
            if not all_done.done():
                # Stopping: workers take no new job. After the budget or a failing provider,
                # in-flight rollouts finish (their cost is real and counts); after Ctrl-C or a
                # dead server they get a moment, then are cancelled (a resume redoes them).
                if self.fatal is not None:
                    grace: float | None = 0.0  # a server is gone: in-flight rollouts cannot finish
                elif self.stopped is not None:
                    grace = None
                else:
                    grace = INTERRUPT_GRACE_S
                await asyncio.wait([all_done], timeout=grace)
                for task in tasks:
                    task.cancel()
            results = await all_done
        finally:
            stopper.cancel()
            for task in tasks:
                task.cancel()
            for lane, jobs, _ in lanes:
                jobs.close()
                lane.out.close()
                lane.failures.close()
        if self.user_errors:
            counted = "; ".join(f"{n} x {line.split(' (full traceback', 1)[0]}" for line, n in self.user_errors.items())
            self.announce(f"rollouts failed by errors in your code: {counted}")
        for result in results:
            if isinstance(result, Exception):  # a bug or a full disk, not a failed rollout
                raise result

    async def _worker(self, lane: Lane, jobs: Generator[_Job, None, None]) -> None:
        try:
            while not self.stop_event.is_set():
                job = next(jobs, None)
                if job is None:
                    return
                lane.running += 1
                if lane.first_started is None:
                    lane.first_started = time.perf_counter()
                try:
                    await self._do(lane, job)
                finally:
                    lane.running -= 1
                    lane.last_finished = time.perf_counter()
        except Exception:
            self.stop_event.set()  # stop the other workers too; run() re-raises this
            raise

    async def _do(self, lane: Lane, job: _Job) -> None:
        if job.row is None:
            self._fail(lane, job, "InputError", job.input_error, attempts=0)
            return
        try:
            agent = self.agent(job.row)
        except InputError as exc:
            where = f"{self.opts.input_path}:{job.line_number}"
            self._fail(lane, job, "InputError", f"{where}: {exc}", attempts=0)
            return
        key = f"{lane.name}:{job.task_index}:{job.rollout_index}"
        error: ServerError | None = None
        for attempt in range(1, self.opts.max_attempts + 1):
            base = agent.pick(key)
            url = base + "/run"
            started = time.perf_counter()
            try:
                result = await self._attempt(url, job.row)
            except ServerError as exc:
                error = exc
            else:
                stamp(result, job.row, self.routes[agent.name])
                self._write(lane, job, result, time.perf_counter() - started)
                return
            lane.metrics.add_failed_attempt(error.usage)
            if error.status is None and base not in agent.dead and not await self._alive(base):
                if not agent.mark_dead(base):
                    message = f"the agent at {base} stopped answering (connection refused); "
                    self.stop_fatally(ServerError(message + self.restart_hint, url=base))
                    return
                self.announce(
                    f"a replica of agent {agent.name!r} at {base} stopped answering; its rollouts go to the "
                    f"{agent.live} other(s)"
                )
            if not error.retryable or attempt == self.opts.max_attempts:
                break
            lane.metrics.add_retry(error.kind)
            if await self._backoff(attempt, url, error):
                return  # stopping: not a failure, a resume retries it
        assert error is not None
        # An error in the user's code is one line already (what, file:line, the log): kept as is.
        message = error.detail if error.kind == USER_ERROR_KIND else str(error)
        self._fail(
            lane, job, error.kind, message, attempts=attempt, upstream=error.source == "upstream",
            answered=error.status is not None or error.kind == "timeout",
        )  # fmt: skip

    async def _attempt(self, url: str, row: dict[str, Any]) -> dict[str, Any]:
        """One ``POST /run``; every failure as a ``ServerError`` (``status`` None: no answer)."""
        timeout = self.opts.rollout_timeout_s
        try:
            async with self._connections, asyncio.timeout(timeout):
                result = await self.client.post(url, row)
        except TimeoutError:
            raise ServerError(
                f"POST {url}: no answer in {timeout:g} s (+rollout_timeout_s)", url=url, kind="timeout"
            ) from None
        if not isinstance(result, dict):
            kind = type(result).__name__
            raise ServerError(f"POST {url} answered a JSON {kind}, not a row (object)", url=url, kind="bad_response")
        if result.get("_ng_failure_class") and "_ng_failure_class" not in row:  # not an echo of the input's
            raise _episode_failure(url, result)
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
            async with self._connections:
                await self.client.get(base + "/health")
            return True
        except ServerError:
            return False

    def stop_fatally(self, error: NemoGymError) -> None:
        """End the run: a server is gone, so every rollout would fail."""
        if self.fatal is None:
            self.fatal = error
        self.stop_event.set()

    def stop(self, reason: StopReason) -> None:
        """End the run early but cleanly (the budget, a failing provider): resumable."""
        if self.stopped is None and self.fatal is None:
            self.stopped = reason
            self.announce(f"stopping: {reason}")
        self.stop_event.set()

    # ------------------------------------------------------------------ bookkeeping

    def _write(self, lane: Lane, job: _Job, result: dict[str, Any], latency: float) -> None:
        # Last in the row, where they always were (the verified row echoes the ones sent).
        result.pop("_ng_task_index", None)
        result.pop("_ng_rollout_index", None)
        result["_ng_task_index"] = job.task_index
        result["_ng_rollout_index"] = job.rollout_index
        result["_ng_latency_s"] = round(latency, 6)
        lane.out.write(result)  # on disk (flushed) before it counts
        lane.done.add(job.task_index, job.rollout_index)
        lane.metrics.add_row(result, latency)
        lane.new_rollouts += 1
        self.progress.add(1, 0)
        self._upstream_streak = 0
        self._check_budget()

    def _fail(
        self,
        lane: Lane,
        job: _Job,
        error_type: str,
        message: str,
        attempts: int,
        *,
        upstream: bool = False,
        answered: bool = True,
    ) -> None:
        message = MASK.scrub(message)  # a key a provider or a server echoed never reaches a file
        lane.failures.write(
            {
                "_ng_task_index": job.task_index,
                "_ng_rollout_index": job.rollout_index,
                "line_number": job.line_number,
                "error_type": error_type,
                "message": message,
                "attempts": attempts,
                # NeMo Gym 0.7's names for what went wrong
                "failure_kind": failure_kind(error_type, upstream=upstream, answered=answered),
                "failure_reason": message,
                **({"_ng_variant": lane.name} if lane.variant is not None else {}),
            }
        )
        lane.failed += 1
        lane.metrics.add_failure(error_type, job.task_index, attempted=attempts > 0)
        self.progress.add(0, 1)
        if error_type == USER_ERROR_KIND:  # each distinct error in the user's code once, counted
            self.user_errors[message] += 1
            if self.user_errors[message] == 1:
                where = f" [{lane.name}]" if lane.name else ""
                self.announce(f"{USER_ERROR_PREFIX}{message}{where} (not retried: it fails the same way every time)")
        elif error_type not in self._shown:  # the first failure of each kind in full, once
            self._shown.add(error_type)
            what = f"failed after {attempts} attempt(s)" if attempts else "not run"
            where = f" [{lane.name}]" if lane.name else ""
            self.announce(
                f"rollout (task {job.task_index}, rollout {job.rollout_index}){where} {what}: {message}"
                f" (further '{error_type}' failures are counted in the summary and {lane.failures.path})"
            )
        if upstream:
            self._upstream_streak += 1
            self._last_upstream_error = message
            limit = self.opts.circuit_breaker
            if limit and self._upstream_streak >= limit:
                self.stop(
                    StopReason(
                        f"the model provider keeps failing: the last {self._upstream_streak} rollouts failed because "
                        f"of it (the last: {message}); what finished is kept: fix the provider (or wait), then re-run "
                        "with +resume=true"
                    )
                )
        else:
            self._upstream_streak = 0
        self._check_budget()

    def _check_budget(self) -> None:
        """Stop dispatching once the cost so far plus the in-flight rollouts' expected cost
        reaches ``+max_cost_usd``."""
        limit = self.opts.max_cost_usd
        if limit is None or self.stopped is not None:
            return
        spent = self.cost
        finished = sum(lane.new_rollouts + lane.failed for lane in self.lanes)
        running = sum(lane.running for lane in self.lanes) - 1  # this one has finished
        projected = spent + max(0, running) * (spent / finished if finished else 0.0)
        if projected >= limit:
            self.stop(
                BudgetSpent(
                    f"the budget is spent: ${spent:.6f} reported so far (${projected:.6f} with the rollouts in "
                    f"flight) of +max_cost_usd={limit:g}; re-run with +resume=true and a higher +max_cost_usd "
                    "to continue"
                )
            )


def _episode_failure(url: str, record: dict[str, Any]) -> ServerError:
    """A NeMo Gym 0.7 environment server's failed episode: a 200 whose row says
    ``_ng_failure_class`` (its ``environment_server_failed``), never a rollout scored 0. A
    terminal one is not retried, as 0.7's collector does not; what its partial response had
    already cost is counted with the failed attempts."""
    stage = record.get("_ng_failure_stage")
    reason = " ".join(MASK.scrub(str(record.get("_ng_failure_message") or "no reason given")).split())
    partial = record.get("_ng_failure_partial_response")
    usage = partial.get("usage") if isinstance(partial, dict) else None
    return ServerError(
        f"POST {url}: the episode failed{f' at {stage}' if stage else ''}: {reason}",
        url=url,
        status=200,
        kind=str(record["_ng_failure_class"]),
        retryable=not record.get("_ng_failure_terminal", False),
        usage=usage if isinstance(usage, dict) else None,
    )
