"""The regression gate: is a candidate run significantly worse than a baseline run?

CI asks one question of a pull request: on the tasks both ran, does the candidate score
lower than the baseline by more than chance (and more than a margin it tolerates)? The
answer is the report's paired comparison (``report/stats.py``), per task, so task
difficulty cancels: d = reward_candidate - reward_baseline per task (a task's reward is
the mean over its rollouts, a failure counting 0); the candidate *fails* the gate when
mean(d) < -margin and the two-sided sign-flip p-value of mean(d + margin) = 0 is below
``alpha``. The interval printed beside it is the (1 - alpha) paired bootstrap interval.

Which runs are paired: when either side holds one variant (a single run, or a sweep of
one), every variant of the other side is paired with it; when both are sweeps, variants
are paired by name. It reads outputs the way ``ng_report`` does (``report/load.py``), so it
needs the ``report`` extra (numpy): asked for without it, it refuses in one line before
any work.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nemo_gym_cli.errors import ConfigError

__all__ = ["GateResult", "check_gate_ready", "gate"]

#: What the gate reads outputs with: the report extra's packages.
_NEEDS = ("numpy", "msgspec")


@dataclass(frozen=True)
class GateResult:
    """One candidate variant against its baseline."""

    candidate: str
    baseline: str
    tasks: int  # tasks both ran
    diff: float  # mean over those tasks of candidate - baseline
    low: float  # (1 - alpha) paired bootstrap interval of diff
    high: float
    p_value: float  # two-sided sign-flip p-value of diff = -margin
    alpha: float
    margin: float

    @property
    def worse(self) -> bool:
        return self.diff < -self.margin and self.p_value < self.alpha

    def line(self) -> str:
        """One line saying by how much and with what confidence."""
        level = f"{100 * (1 - self.alpha):g}%"
        p = f"p={self.p_value:.3f}" if self.p_value >= 0.001 else "p<0.001"
        figures = (
            f"{self.diff:+.3f} mean reward, {level} CI {self.low:+.3f}..{self.high:+.3f}, {p} "
            f"(n={self.tasks} tasks both ran; +gate_alpha={self.alpha:g}, +gate_margin={self.margin:g})"
        )
        who = f"{self.candidate} against the baseline {self.baseline}"
        if self.worse:
            return f"gate failed: {who} is significantly worse by {-self.diff:.3f}: {figures}"
        return f"gate passed: {who} is not significantly worse: {figures}"


def check_gate_ready(baseline: str) -> None:
    """Refuse ``+baseline`` up front: without the report extra, or naming nothing."""
    missing = [name for name in _NEEDS if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            f"+baseline needs {', '.join(missing)} (the report extra) to compare runs: "
            "pip install -e '.[report]' in a clone of nemo-gym-cli, or drop +baseline"
        )
    path = Path(baseline).expanduser()
    if not path.exists():
        raise ConfigError(f"+baseline={baseline!r} does not exist (looked in {Path.cwd()}); name an output or a sweep")


def _named(sources: list[Any], side: str) -> dict[str, list[Any]]:
    """The sources of one side, by variant: the manifest's name, else the file's stem."""
    out: dict[str, list[Any]] = {}
    for source in sources:
        out.setdefault(source.variant or source.path.stem, []).append(source)
    if not out:
        raise ConfigError(f"the {side} has no output to compare")
    return out


def _pairs(candidates: dict[str, list[Any]], baselines: dict[str, list[Any]]) -> list[tuple[str, str]]:
    if len(baselines) == 1:
        (only,) = baselines
        return [(c, only) for c in candidates]
    if len(candidates) == 1:
        (only,) = candidates
        return [(only, b) for b in baselines]
    pairs = [(name, name) for name in candidates if name in baselines]
    if not pairs:
        raise ConfigError(
            f"+baseline: the baseline's variants ({', '.join(sorted(baselines))}) and the candidate's "
            f"({', '.join(sorted(candidates))}) share no name; compare one output with one"
        )
    return pairs


def gate(
    candidate: list[str],
    baseline: str,
    *,
    alpha: float = 0.05,
    margin: float = 0.0,
    seed: int = 0,
    n_boot: int = 2000,
    n_perm: int = 10000,
) -> list[GateResult]:
    """Each candidate variant (of the outputs or sweep folders ``candidate``) against its
    baseline variant; a pair with no task in common is a ``ConfigError``."""
    check_gate_ready(baseline)
    import numpy as np

    from nemo_gym_cli.report.load import load
    from nemo_gym_cli.report.sources import find_sources
    from nemo_gym_cli.report.stats import _rng, bootstrap_means, sign_flip_p

    warnings: list[str] = []
    candidates = _named(find_sources(candidate, warnings), "candidate")
    baselines = _named(find_sources([baseline], warnings), "baseline")
    results = []
    for cand, base in _pairs(candidates, baselines):
        sources = [replace(s, variant="candidate") for s in candidates[cand]]
        sources += [replace(s, variant="baseline") for s in baselines[base]]
        records = load(sources, group_by="")
        # Task rewards as the report computes them (analyse): here only the two rows needed.
        ours = _task_rewards(records, np)
        c, b = ours.get("candidate"), ours.get("baseline")
        common = sorted(set(c or {}) & set(b or {}))
        if not common:
            raise ConfigError(
                f"+baseline: {cand} and the baseline {base} ran no task in common (tasks are matched by "
                "_ng_task_index); run the baseline on the same input"
            )
        d = np.array([c[t] - b[t] for t in common])  # type: ignore[index]
        rng = _rng(seed, "gate", cand, base)
        boot = bootstrap_means(d, n_boot, rng)
        low, high = (float(x) for x in np.percentile(boot, [50 * alpha, 100 - 50 * alpha]))
        p = sign_flip_p(d + margin, n_perm, rng)
        results.append(GateResult(cand, base, len(common), float(d.mean()), low, high, p, alpha, margin))
    return results


def _task_rewards(records: Any, np: Any) -> dict[str, dict[Any, float]]:
    """Variant -> task key -> mean reward over its rollouts (a failure, or no reward: 0), on
    the rollouts the report counts (``stats.analyse``'s rule: duplicates and stale failures
    left out)."""
    from nemo_gym_cli.report.stats import analyse

    a = analyse(records, n_boot=100, n_perm=100)
    out: dict[str, dict[Any, float]] = {}
    for v, name in enumerate(records.variants.names):
        ran = a.task_rollouts[v] > 0
        out[name] = {records.task_keys[t]: float(a.task_reward[v, t]) for t in np.flatnonzero(ran).tolist()}
    return out
