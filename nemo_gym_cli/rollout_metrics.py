"""Aggregate metrics of a collection, in constant memory per metric.

Per numeric metric: count, mean, min, max, std (Welford). Per rollout: tokens, cost, model
and provider that served (from the response's usage), latency percentiles from a bounded
reservoir (exact up to ``RESERVOIR`` rollouts). With ``num_repeats=k > 1``: pass@k and
mean@k over tasks (per-task counters in compact arrays).
"""

from __future__ import annotations

import math
import random
from array import array
from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["CollectionMetrics", "RunningStat"]

RESERVOIR = 20_000


@dataclass
class RunningStat:
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
        return {"count": self.count, "mean": self.mean, "min": self.min, "max": self.max, "std": std}


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    pos = (len(sorted_values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class CollectionMetrics:
    """Accumulates finished rollouts and failures; ``summary()`` gives the metrics document."""

    def __init__(self, *, num_repeats: int = 1, pass_threshold: float = 1.0) -> None:
        self.k = num_repeats
        self.pass_threshold = pass_threshold
        self.stats: dict[str, RunningStat] = {}
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
        self._task_n = array("H")
        self._task_pass = array("H")
        self._task_sum = array("d")

    # ------------------------------------------------------------------ adding

    def add_row(self, row: dict[str, Any], input_keys: frozenset[str] | set[str] = frozenset(), latency_s: float | None = None, resumed: bool = False) -> None:
        self.succeeded += 1
        if resumed:
            self.resumed += 1
        for key, value in row.items():
            if key.startswith("_ng_") or key in input_keys or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(value):
                stat = self.stats.get(key)
                if stat is None:
                    stat = self.stats[key] = RunningStat()
                stat.add(float(value))
        response = row.get("response")
        if isinstance(response, dict):
            usage = response.get("usage") or {}
            self.input_tokens += int(usage.get("input_tokens") or 0)
            self.output_tokens += int(usage.get("output_tokens") or 0)
            cost = usage.get("cost")
            if isinstance(cost, (int, float)):
                self.cost += float(cost)
            if response.get("model"):
                self.models[str(response["model"])] += 1
            if response.get("provider"):
                self.providers[str(response["provider"])] += 1
        if latency_s is not None:
            self._add_latency(latency_s)
        reward = row.get("reward")
        task = row.get("_ng_task_index")
        if self.k > 1 and isinstance(task, int) and isinstance(reward, (int, float)):
            self._add_task_reward(task, float(reward))

    def add_failure(self, error_type: str) -> None:
        self.failed += 1
        self.failure_types[error_type] += 1

    def _add_latency(self, x: float) -> None:
        self._seen_latencies += 1
        if len(self._latencies) < RESERVOIR:
            self._latencies.append(x)
        else:
            j = self._rng.randrange(self._seen_latencies)
            if j < RESERVOIR:
                self._latencies[j] = x

    def _add_task_reward(self, task: int, reward: float) -> None:
        if task >= len(self._task_n):
            grow = task + 1 - len(self._task_n) + len(self._task_n) // 2
            self._task_n.extend([0] * grow)
            self._task_pass.extend([0] * grow)
            self._task_sum.extend([0.0] * grow)
        self._task_n[task] = min(self._task_n[task] + 1, 65535)
        if reward >= self.pass_threshold:
            self._task_pass[task] = min(self._task_pass[task] + 1, 65535)
        self._task_sum[task] += reward

    # ------------------------------------------------------------------ reporting

    def summary(self, *, wall_time_s: float, new_rollouts: int) -> dict[str, Any]:
        lat = sorted(self._latencies)
        doc: dict[str, Any] = {
            "rollouts": self.succeeded + self.failed,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "resumed_from_output": self.resumed,
            "failure_types": dict(self.failure_types),
            "metrics": {k: v.summary() for k, v in sorted(self.stats.items())},
            "tokens": {"input": self.input_tokens, "output": self.output_tokens},
            "cost_usd": round(self.cost, 10),
            "models": dict(self.models),
            "providers": dict(self.providers),
            "latency_s": {"p50": _percentile(lat, 0.5), "p95": _percentile(lat, 0.95), "samples": len(lat)},
            "wall_time_s": wall_time_s,
            "rollouts_per_s": new_rollouts / wall_time_s if wall_time_s > 0 else 0.0,
        }
        if self.k > 1:
            tasks = [i for i, n in enumerate(self._task_n) if n]
            doc["num_repeats"] = self.k
            doc["pass_threshold"] = self.pass_threshold
            doc[f"pass@{self.k}"] = sum(1 for i in tasks if self._task_pass[i]) / len(tasks) if tasks else 0.0
            doc[f"mean@{self.k}"] = sum(self._task_sum[i] / self._task_n[i] for i in tasks) / len(tasks) if tasks else 0.0
            doc["tasks"] = len(tasks)
        return doc


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
            lines.append(f"{name.ljust(width)}  {s['mean']:>10.4f} {s['min']:>10.4f} {s['max']:>10.4f} {s['std']:>10.4f}")
    if "num_repeats" in doc:
        k = doc["num_repeats"]
        lines.append(f"pass@{k} {doc[f'pass@{k}']:.4f}  mean@{k} {doc[f'mean@{k}']:.4f}  over {doc['tasks']} tasks")
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
