"""Aggregate metrics of a collection, in memory that does not grow with the input, and how
they are shown: the summary table, and progress while the run goes.

- Per numeric top-level field of the output rows: count, mean, min, max, std (Welford).
  Fields the input rows carry are input, not metrics, and are left out (``reward`` is
  always a metric, even if the input has one).
- Tokens in/out and cost (from the response's ``usage``), the models and providers that
  served, latency percentiles from a bounded reservoir (exact up to ``RESERVOIR`` rollouts).
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
    """pass@k / mean@k accumulators: closed tasks summed up, open ones kept by index."""

    def __init__(self, k: int, threshold: float) -> None:
        self.k = k
        self.threshold = threshold
        # task -> [rollouts accounted for, rollouts scored, rollouts passed, reward sum]
        self.open: dict[int, list[float]] = {}
        self.tasks = 0
        self.passed = 0
        self.mean_sum = 0.0

    def add(self, task: int, reward: float | None) -> None:
        """One rollout of ``task`` finished: with a reward, or without (failed, no reward)."""
        entry = self.open.get(task)
        if entry is None:
            entry = self.open[task] = [0, 0, 0, 0.0]
        entry[0] += 1
        if reward is not None:
            entry[1] += 1
            entry[2] += reward >= self.threshold
            entry[3] += reward
        if entry[0] >= self.k:
            del self.open[task]
            _, scored, passes, total = entry
            if scored:
                self.tasks += 1
                self.passed += passes > 0
                self.mean_sum += total / scored

    def summary(self) -> dict[str, Any]:
        """Totals, counting tasks still open (an interrupted run) with the rollouts they have."""
        tasks, passed, mean_sum = self.tasks, self.passed, self.mean_sum
        for _, scored, passes, total in self.open.values():
            if scored:
                tasks += 1
                passed += passes > 0
                mean_sum += total / scored
        return {
            "num_repeats": self.k,
            "pass_threshold": self.threshold,
            f"pass@{self.k}": passed / tasks if tasks else 0.0,
            f"mean@{self.k}": mean_sum / tasks if tasks else 0.0,
            "tasks": tasks,
        }


class CollectionMetrics:
    """Accumulates finished rollouts and failures; ``summary()`` gives the metrics document."""

    def __init__(self, *, num_repeats: int = 1, pass_threshold: float = 1.0) -> None:
        self.k = num_repeats
        self.pass_threshold = pass_threshold
        self.stats: dict[str, RunningStat] = {}
        self.input_keys: set[str] = set()
        self.succeeded = 0
        self.failed = 0
        self.resumed = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost = 0.0
        self.models: Counter[str] = Counter()
        self.providers: Counter[str] = Counter()
        self.failure_types: Counter[str] = Counter()
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
        response = row.get("response")
        if isinstance(response, dict):
            usage = response.get("usage")
            if isinstance(usage, dict):
                self.input_tokens += _int(usage.get("input_tokens"))
                self.output_tokens += _int(usage.get("output_tokens"))
                cost = usage.get("cost")
                if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                    self.cost += float(cost)
            if response.get("model"):
                self.models[str(response["model"])] += 1
            if response.get("provider"):
                self.providers[str(response["provider"])] += 1
        if latency_s is not None:
            self._add_latency(latency_s)
        if self._tasks is not None:
            task = row.get("_ng_task_index")
            if isinstance(task, int):
                reward = row.get("reward")
                scored = isinstance(reward, (int, float)) and not isinstance(reward, bool)
                self._tasks.add(task, float(reward) if scored and reward is not None else None)

    def add_failure(self, error_type: str, task: int | None = None) -> None:
        """A rollout that failed for good (of ``task``, if it has one)."""
        self.failed += 1
        self.failure_types[error_type] += 1
        if self._tasks is not None and task is not None:
            self._tasks.add(task, None)

    def _add_latency(self, x: float) -> None:
        self._seen_latencies += 1
        if len(self._latencies) < RESERVOIR:
            self._latencies.append(x)
        else:
            j = self._rng.randrange(self._seen_latencies)
            if j < RESERVOIR:
                self._latencies[j] = x

    # ------------------------------------------------------------------ reporting

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
            "metrics": metrics,
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "cost_usd": round(self.cost, 10),
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
    lines.append(f"tokens in {tokens['input']}  out {tokens['output']}  cost ${doc['cost_usd']:.6f}")
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
