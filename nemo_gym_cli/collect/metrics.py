"""Aggregate metrics of a collection, in memory that does not grow with the input, and how
they are shown: the summary table, and progress while the run goes.

- Per numeric top-level field of the output rows: count, mean, min, max, std (Welford).
  Fields the input rows carry are input, not metrics, and are left out (``reward`` is
  always a metric, even if the input has one).
- Tokens in/out and cost (from the response's ``usage``), the models and providers that
  served, latency percentiles from a bounded reservoir (exact up to ``RESERVOIR`` rollouts).
- The response cache (``usage.response_cache`` of model servers with ``+cache=true``): model
  calls answered from it (hits, which cost $0) and not (misses), and the dollars the hits
  saved (what their answers cost when they were paid for), reported beside the cost.
- With ``num_repeats=k > 1``: pass@k (share of tasks with at least one rollout whose reward
  reached ``pass_threshold``) and mean@k (mean over tasks of the task's mean reward), over
  the tasks with at least one scored rollout. A task is held in memory only while some of
  its rollouts are outstanding, so this costs O(rollouts in flight), not O(tasks).
- Progress: a tqdm bar on a terminal; elsewhere (CI logs) a plain ``progress:`` line every
  ``progress_interval_s`` (done, failed, rate, ETA) instead of a flood of bar redraws.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TextIO

__all__ = ["CollectionMetrics", "Progress", "RunningStat", "format_summary", "percentile"]

#: Latency samples kept; beyond this the percentiles come from a uniform random sample.
RESERVOIR = 20_000
#: Distinct input field names remembered (a real input has a handful; this bounds a weird one).
MAX_INPUT_KEYS = 10_000


@dataclass
class RunningStat:
    """Count, mean, min, max and population std of a stream of numbers (Welford)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, x: float) -> None:
        self.count += 1
        d = x - self.mean
        self.mean += d / self.count
        self.m2 += d * (x - self.mean)
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x

    def summary(self) -> dict[str, float]:
        std = math.sqrt(self.m2 / self.count) if self.count else 0.0
        return {
            "count": self.count,
            "mean": self.mean,
            "min": self.min,
            "max": self.max,
            "std": std,
        }


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of sorted values, linearly interpolated; 0.0 if empty."""
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class _TaskScores:
    """pass@k / mean@k accumulators: closed tasks summed up, open ones kept by index.

    Every attempted rollout counts: a failed one, or one without a numeric reward, scores 0
    (it never passes). A task counts once any rollout of it was attempted.
    """

    def __init__(self, k: int, threshold: float) -> None:
        self.k = k
        self.threshold = threshold
        # task -> [rollouts accounted for, rollouts attempted, rollouts passed, reward sum]
        self.open: dict[int, list[float]] = {}
        self.tasks = 0
        self.passed = 0
        self.mean_sum = 0.0

    def add(self, task: int, reward: float | None, attempted: bool = True) -> None:
        """One rollout of ``task`` ended: scored ``reward`` (None: failed, or no reward), or
        never attempted (a bad input row)."""
        entry = self.open.get(task)
        if entry is None:
            entry = self.open[task] = [0, 0, 0, 0.0]
        entry[0] += 1
        if attempted:
            entry[1] += 1
            if reward is not None:
                entry[2] += reward >= self.threshold
                entry[3] += reward
        if entry[0] >= self.k:
            del self.open[task]
            self._close(entry)

    def _close(self, entry: list[float], totals: list[float] | None = None) -> None:
        _, attempted, passes, total = entry
        if not attempted:
            return
        if totals is None:
            self.tasks += 1
            self.passed += passes > 0
            self.mean_sum += total / attempted
        else:
            totals[0] += 1
            totals[1] += passes > 0
            totals[2] += total / attempted

    def summary(self) -> dict[str, Any]:
        """Totals, counting tasks still open (an interrupted run) with the rollouts they have."""
        totals = [float(self.tasks), float(self.passed), self.mean_sum]
        for entry in self.open.values():
            self._close(entry, totals)
        tasks, passed, mean_sum = totals
        return {
            "num_repeats": self.k,
            "pass_threshold": self.threshold,
            f"pass@{self.k}": passed / tasks if tasks else 0.0,
            f"mean@{self.k}": mean_sum / tasks if tasks else 0.0,
            "tasks": int(tasks),
        }


class CollectionMetrics:
    """Accumulates finished rollouts and failures; ``summary()`` gives the metrics document.

    Honest by construction: the headline reward mean is over every attempted rollout (a
    failure counts 0), beside the mean over succeeded ones; the cost counts every upstream
    call that reported one, failed rollouts and retried attempts included.
    """

    def __init__(self, *, num_repeats: int = 1, pass_threshold: float = 1.0) -> None:
        self.k = num_repeats
        self.pass_threshold = pass_threshold
        self.stats: dict[str, RunningStat] = {}
        self.input_keys: set[str] = set()
        self.succeeded = 0
        self.failed = 0
        self.not_attempted = 0
        self.resumed = 0
        self.reward_sum = 0.0
        self.rewarded = 0  # succeeded rows with a numeric reward
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0  # of the rows in the output
        self.failed_cost = 0.0  # of failed attempts (failed rollouts, and retried attempts)
        self.previous_failed_cost = 0.0  # failed attempts of the runs this one resumes
        self.unpriced_calls = 0
        self.cache_hits = 0  # model calls answered from the response cache
        self.cache_misses = 0
        self.cache_saved = 0.0  # what the hits' answers cost when they were paid for
        self.models: Counter[str] = Counter()
        self.providers: Counter[str] = Counter()
        self.failure_types: Counter[str] = Counter()
        self.retries: Counter[str] = Counter()  # the collector's retries of /run, by error type
        self.upstream_retries: Counter[str] = Counter()  # the model server's, by kind
        self._latencies: list[float] = []
        self._seen_latencies = 0
        self._rng = random.Random(0)
        self._tasks = _TaskScores(num_repeats, pass_threshold) if num_repeats > 1 else None

    # ------------------------------------------------------------------ adding

    def note_input_keys(self, keys: Iterable[str]) -> None:
        """Field names of an input row: those are input, not metrics."""
        if len(self.input_keys) < MAX_INPUT_KEYS:
            self.input_keys.update(keys)

    def add_row(self, row: dict[str, Any], latency_s: float | None = None, *, resumed: bool = False) -> None:
        """A finished rollout (its output row); ``resumed`` if it was already in the output."""
        self.succeeded += 1
        if resumed:
            self.resumed += 1
        stats = self.stats
        for key, value in row.items():
            # numbers only (a bool is an int subclass: exact type checks leave it out)
            if (type(value) is float or type(value) is int) and not key.startswith("_ng_") and math.isfinite(value):
                stat = stats.get(key)
                if stat is None:
                    stat = stats[key] = RunningStat()
                stat.add(float(value))
        reward = row.get("reward")
        scored = (type(reward) is float or type(reward) is int) and math.isfinite(reward)
        if scored and reward is not None:
            self.reward_sum += reward
            self.rewarded += 1
        # A verifier that calls a model (an LLM judge) reports what that cost in the row.
        self._add_usage(row.get("verifier_usage"), into_rows=True)
        response = row.get("response")
        if isinstance(response, dict):
            self._add_usage(response.get("usage"), into_rows=True)
            if response.get("model"):
                self.models[str(response["model"])] += 1
            if response.get("provider"):
                self.providers[str(response["provider"])] += 1
        if latency_s is None:
            latency = row.get("_ng_latency_s")
            latency_s = float(latency) if type(latency) is float else None
        if latency_s is not None:
            self._add_latency(latency_s)
        if self._tasks is not None:
            task = row.get("_ng_task_index")
            if isinstance(task, int):
                self._tasks.add(task, float(reward) if scored and reward is not None else None)

    def add_failure(self, error_type: str, task: int | None = None, *, attempted: bool = True) -> None:
        """A rollout that failed for good (of ``task``, if it has one); ``attempted`` False
        for a row that could not even be sent (a bad input line)."""
        self.failed += 1
        if not attempted:
            self.not_attempted += 1
        self.failure_types[error_type] += 1
        if self._tasks is not None and task is not None:
            self._tasks.add(task, None, attempted)

    def add_failed_attempt(self, usage: Any) -> None:
        """What a failed attempt of ``/run`` had cost (its error envelope's ``usage``)."""
        self._add_usage(usage, into_rows=False)

    def add_retry(self, error_type: str) -> None:
        self.retries[error_type] += 1

    def _add_usage(self, usage: Any, *, into_rows: bool) -> None:
        if not isinstance(usage, dict):
            return
        self.input_tokens += _int(usage.get("input_tokens"))
        self.output_tokens += _int(usage.get("output_tokens"))
        cost = usage.get("cost")
        if isinstance(cost, (int, float)) and not isinstance(cost, bool) and math.isfinite(cost):
            if into_rows:
                self.cost += float(cost)
            else:
                self.failed_cost += float(cost)
        self.unpriced_calls += _int(usage.get("unpriced_calls"))
        retries = usage.get("retries")
        if isinstance(retries, dict):
            for kind, n in retries.items():
                self.upstream_retries[str(kind)] += _int(n)
        cached = usage.get("response_cache")
        if isinstance(cached, dict):
            self.cache_hits += _int(cached.get("hits"))
            self.cache_misses += _int(cached.get("misses"))
            saved = cached.get("saved_usd")
            if isinstance(saved, (int, float)) and not isinstance(saved, bool) and math.isfinite(saved):
                self.cache_saved += float(saved)

    def _add_latency(self, x: float) -> None:
        self._seen_latencies += 1
        if len(self._latencies) < RESERVOIR:
            self._latencies.append(x)
        else:
            j = self._rng.randrange(self._seen_latencies)
            if j < RESERVOIR:
                self._latencies[j] = x

    # ------------------------------------------------------------------ reporting

    @property
    def attempted(self) -> int:
        return self.succeeded + self.failed - self.not_attempted

    @property
    def mean_reward(self) -> float | None:
        """Over every attempted rollout, a failure (or a row without reward) counting 0."""
        return self.reward_sum / self.attempted if self.attempted else None

    @property
    def total_cost(self) -> float:
        return self.cost + self.failed_cost + self.previous_failed_cost

    def summary(self, *, wall_time_s: float, new_rollouts: int) -> dict[str, Any]:
        """The metrics document (what ``<output stem>_metrics.json`` holds)."""
        lat = sorted(self._latencies)
        metrics = {k: v.summary() for k, v in sorted(self.stats.items()) if k == "reward" or k not in self.input_keys}
        doc: dict[str, Any] = {
            "rollouts": self.succeeded + self.failed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "resumed_from_output": self.resumed,
            "failure_types": dict(self.failure_types),
            "reward": {
                "mean": self.mean_reward,
                "mean_succeeded": self.reward_sum / self.rewarded if self.rewarded else None,
                "attempted": self.attempted,
                "succeeded": self.succeeded,
                "failed": self.failed - self.not_attempted,
                "not_attempted": self.not_attempted,
                "without_reward": self.succeeded - self.rewarded,
                "note": "mean: over every attempted rollout, a failure (or a row without reward) counting 0",
            },
            "metrics": metrics,
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "cost_usd": round(self.total_cost, 10),
            "cost": {
                "total_usd": round(self.total_cost, 10),
                "rows_usd": round(self.cost, 10),
                "failed_attempts_usd": round(self.failed_cost + self.previous_failed_cost, 10),
                "unpriced_upstream_calls": self.unpriced_calls,
                "note": "every upstream call that reported a cost: the output's rows (the policy's and a "
                "verifier's, verifier_usage), failed rollouts and retried attempts; unpriced_upstream_calls were "
                "billed but their cost could not be read",
            },
            "retries": {"rollouts": dict(self.retries), "upstream": dict(self.upstream_retries)},
            "models": dict(self.models),
            "providers": dict(self.providers),
            "latency_s": {
                "p50": percentile(lat, 0.5),
                "p95": percentile(lat, 0.95),
                "samples": len(lat),
            },
            "wall_time_s": wall_time_s,
            "rollouts_per_s": new_rollouts / wall_time_s if wall_time_s > 0 else 0.0,
        }
        if self.cache_hits or self.cache_misses:  # only runs with +cache=true have the block
            doc["response_cache"] = {
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "saved_usd": round(self.cache_saved, 10),
                "note": "model calls answered from the response cache (+cache=true; each counts $0 in cost) and not; "
                "saved_usd: what the hits' answers cost when they were paid for",
            }
        if self._tasks is not None:
            doc.update(self._tasks.summary())
        return doc


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def format_summary(doc: dict[str, Any]) -> str:
    """A short human-readable table of the metrics document."""
    lines = [
        f"rollouts {doc['rollouts']}  succeeded {doc['succeeded']}  failed {doc['failed']}"
        + (f"  (resumed {doc['resumed_from_output']})" if doc.get("resumed_from_output") else ""),
    ]
    reward = doc.get("reward") or {}
    if reward.get("mean") is not None:
        over_ok = reward.get("mean_succeeded")
        lines.append(
            f"mean reward {reward['mean']:.4f} over {reward['attempted']} attempted rollouts (a failure counts 0)"
            + (f"; {over_ok:.4f} over the {reward['succeeded']} that succeeded" if over_ok is not None else "")
        )
    metrics = doc["metrics"]
    if metrics:
        width = max(len(k) for k in metrics)
        lines.append(f"{'metric'.ljust(width)}  {'mean':>10} {'min':>10} {'max':>10} {'std':>10}")
        for name, s in metrics.items():
            values = " ".join(f"{s[c]:>10.4f}" for c in ("mean", "min", "max", "std"))
            lines.append(f"{name.ljust(width)}  {values}")
    if "num_repeats" in doc:
        k = doc["num_repeats"]
        pass_k, mean_k = doc[f"pass@{k}"], doc[f"mean@{k}"]
        lines.append(f"pass@{k} {pass_k:.4f}  mean@{k} {mean_k:.4f}  over {doc['tasks']} tasks")
    tokens = doc["tokens"]
    cost = doc.get("cost") or {}
    failed_cost = cost.get("failed_attempts_usd") or 0.0
    lines.append(
        f"tokens in {tokens['input']}  out {tokens['output']}  cost ${doc['cost_usd']:.6f}"
        + (f" (${failed_cost:.6f} of it on failed attempts)" if failed_cost else "")
        + (
            f"; {cost['unpriced_upstream_calls']} upstream answers were billed without a readable cost"
            if cost.get("unpriced_upstream_calls")
            else ""
        )
    )
    cached = doc.get("response_cache")
    if cached:
        calls = cached["hits"] + cached["misses"]
        lines.append(
            f"response cache: {cached['hits']} of {calls} model calls answered from it ($0 each), "
            f"${cached['saved_usd']:.6f} saved"
        )
    if doc["models"]:
        lines.append("served by " + ", ".join(f"{m} ({n})" for m, n in doc["models"].items()))
    lat = doc["latency_s"]
    lines.append(
        f"latency p50 {lat['p50']:.3f} s  p95 {lat['p95']:.3f} s  wall {doc['wall_time_s']:.2f} s  "
        f"{doc['rollouts_per_s']:.1f} rollouts/s"
    )
    return "\n".join(lines)


class Progress:
    """A tqdm bar on a terminal; elsewhere a plain ``progress:`` line every ``interval`` s."""

    def __init__(self, interval: float, stream: TextIO | None = None) -> None:
        self.interval = interval
        self.stream = stream
        self.total = 0
        self.done = 0
        self.failed = 0
        self.started = time.monotonic()
        self._bar: Any = None
        self._ticker: asyncio.Task[None] | None = None

    def start(self, total: int) -> None:
        """Begin counting ``total`` rollouts (call inside the event loop)."""
        stream = self.stream or sys.stderr
        self.total = total
        self.started = time.monotonic()
        if stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="rollout", file=stream, dynamic_ncols=True)
        else:
            self._ticker = asyncio.create_task(self._tick(stream))

    def add(self, done: int, failed: int) -> None:
        self.done += done
        self.failed += failed
        if self._bar is not None:
            self._bar.update(done + failed)
            if failed:
                self._bar.set_postfix(failed=self.failed, refresh=False)

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        n = self.done + self.failed
        rate = n / elapsed
        eta = f"{(self.total - n) / rate:.0f} s" if rate > 0 else "?"
        return f"progress: {n}/{self.total} done ({self.failed} failed), {rate:.1f} rollouts/s, ETA {eta}"

    async def _tick(self, stream: TextIO) -> None:
        while True:
            await asyncio.sleep(self.interval)
            print(self.line(), file=stream, flush=True)

    async def stop(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
