"""The options of ``ng_collect_rollouts``: one typed model, validated once.

Every key is a field with a default and a one-line description; ``--help`` is generated
from them. Types are strict (``+concurrency=1e9`` is not an integer, ``+resume=yes`` is not
a boolean), unknown keys are refused before this (``config/load.py``), and paths are checked
before any work (``check_paths``). NeMo Gym 0.2.1's collector keys are honoured under their
names (``num_samples_in_parallel``, ``num_repeats_add_seed``, ``resume_from_cache``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nemo_gym_cli.collect.cache_options import CacheOptions
from nemo_gym_cli.config.compose import PACKAGE_ROOT
from nemo_gym_cli.errors import ConfigError, InputError
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.server.config import validate_model

__all__ = ["MAX_CONCURRENCY", "CollectOptions", "Variant"]

#: Most rollouts in flight: beyond this a run only queues, and each waiting rollout costs memory.
MAX_CONCURRENCY = 100_000


class Variant(BaseModel):
    """One way to run the tasks: a model, sampling parameters, provider routing."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str = Field(description="the variant's name: its output is <output stem>/<name>.jsonl")
    model: str | None = Field(None, description="the model to ask for (passed through, e.g. openrouter:x/y)")
    responses_create_params: dict[str, Any] = Field(
        default_factory=dict, description="merged into every row's responses_create_params (temperature, ...)"
    )
    provider: dict[str, Any] | None = Field(None, description="OpenRouter provider routing (order, sort, ...)")
    concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY, description="this variant's rollouts in flight")

    @field_validator("name")
    @classmethod
    def _file_name(cls, value: str) -> str:
        if not value or value.startswith(".") or any(c in value for c in '/\\:*?"<>|') or len(value) > 100:
            raise ValueError(f'{value!r} must be a plain file name (no / \\ : * ? " < > |, not starting with .)')
        return value

    def params(self) -> dict[str, Any]:
        """What this variant merges into each row's ``responses_create_params``."""
        out = dict(self.responses_create_params)
        if self.model is not None:
            out["model"] = self.model
        if self.provider is not None:
            out["provider"] = self.provider
        return out


class CollectOptions(CacheOptions):
    """Options of ``ng_collect_rollouts`` (Hydra keys of the same names; the response cache's
    come from ``CacheOptions``)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    input_jsonl_fpath: str = Field(description="tasks, one JSON object per line (required)")
    output_jsonl_fpath: str | None = Field(
        None, description="output rows (default results/<input stem>_rollouts.jsonl)"
    )
    agent_name: str | None = Field(None, description="agent instance to use; rows may name their own in agent_ref.name")
    limit: int | None = Field(None, ge=0, description="first N tasks only (default: all)")
    concurrency: int = Field(10, ge=1, le=MAX_CONCURRENCY, description="rollouts in flight (per variant)")
    num_samples_in_parallel: int | None = Field(
        None, ge=1, le=MAX_CONCURRENCY, description="NeMo Gym's name for concurrency"
    )
    num_repeats: int = Field(1, ge=1, le=10_000, description="rollouts per task")
    num_repeats_add_seed: bool = Field(
        False, description="NeMo Gym's: set responses_create_params.seed to the rollout index"
    )
    responses_create_params: dict[str, Any] = Field(
        default_factory=dict, description="merged into every row's responses_create_params"
    )
    models: list[str] | None = Field(None, description="a sweep: one variant per model, e.g. [a/x,b/y]")
    variants: list[Variant] | None = Field(
        None, description="a sweep: {name, model, responses_create_params, provider, concurrency}"
    )
    resume: bool = Field(False, description="continue an existing output, skipping rows already there")
    resume_from_cache: bool = Field(False, description="NeMo Gym's name for resume")
    max_attempts: int = Field(3, ge=1, le=100, description="attempts per rollout before it is a failure")
    max_failures: int = Field(0, ge=0, description="failed rollouts allowed before exit code 1")
    min_mean_reward: float | None = Field(None, description="exit 1 when the mean reward (failures count 0) is lower")
    gate_on: str = Field("all", description="which mean +min_mean_reward checks: all (failures count 0) or succeeded")
    pass_threshold: float = Field(1.0, description="reward that counts as a pass for pass@k")
    rollout_timeout_s: float = Field(3600.0, gt=0, description="timeout of one rollout")
    progress_interval_s: float = Field(10.0, gt=0, description="seconds between progress lines when not on a terminal")
    circuit_breaker: int = Field(
        20, ge=0, description="stop after this many rollouts in a row failed because of the provider (0: never)"
    )
    max_cost_usd: float | None = Field(None, gt=0, description="stop when the cost the provider reports reaches this")
    dry_run: bool = Field(False, description="estimate tokens and cost from a pilot of a few rows, then exit")
    dry_run_rows: int = Field(3, ge=1, le=1000, description="pilot rollouts per variant of +dry_run")
    materialize_inputs: bool = Field(
        True, description="write <stem>_materialized_inputs.jsonl (what NeMo Gym's reward profiling reads)"
    )
    aggregation_max_rows: int = Field(
        20_000, ge=0, description="most rows <stem>_aggregate_metrics.json is written for (it holds them all at once)"
    )
    disable_aggregation: bool = Field(
        False, description="NeMo Gym 0.7's: skip <stem>_aggregate_metrics.json (its /aggregate_metrics summary)"
    )
    interleave_repeats: bool = Field(
        False, description="NeMo Gym 0.7's: run repeats round by round (every task once, then again) not back to back"
    )
    environment_routing_mode: str = Field(
        "agent", description="NeMo Gym 0.7's: agent (each row via its agent's environment server) or legacy"
    )
    environment_server_name: str | None = Field(
        None, description="NeMo Gym 0.7's: with environment_routing_mode=legacy, the environment server of every row"
    )
    junit_xml: str | None = Field(
        None, description="write JUnit XML here: one test case per task (an error, or a reward under junit_min_reward)"
    )
    junit_min_reward: float | None = Field(
        None, description="a task whose mean reward is lower is a failed test case (default: pass_threshold)"
    )
    baseline: str | None = Field(
        None, description="an output or sweep folder: exit 1 when this run is significantly worse on the same tasks"
    )
    gate_alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the +baseline gate")
    gate_margin: float = Field(0.0, ge=0, description="a drop in mean reward the +baseline gate tolerates")
    adaptive: bool = Field(
        False, description="a sweep in rounds that drops variants once confidently beaten (docs/compare.md)"
    )
    objective: str = Field(
        "best",
        description="what +adaptive decides: best (highest reward), within_margin (cheapest within"
        " +margin of the best) or target (cheapest reaching +target_reward)",
    )
    margin: float = Field(0.02, ge=0, le=1, description="+adaptive: reward difference that counts as a tie")
    target_reward: float | None = Field(
        None, ge=0, le=1, description="+adaptive with +objective=target: the reward to reach"
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="+adaptive: error rate, however often the race looks")
    round_tasks: int = Field(
        20, ge=1, le=100_000, description="+adaptive: tasks per round, for every variant in the race"
    )
    adaptive_seed: int = Field(0, description="+adaptive: seed of the random task order")
    environment_server_routes: dict[str, str] = Field(
        default_factory=dict, description="NeMo Gym 0.7's taskset routes: for its materialized rows; must be empty"
    )

    @field_validator("environment_server_routes")
    @classmethod
    def _no_taskset_routes(cls, value: dict[str, str]) -> dict[str, str]:
        if value:
            raise ValueError(
                "NeMo Gym 0.7 routes its materialized task rows by taskset; rows here are routed by their agent "
                "(or all to +environment_server_name with +environment_routing_mode=legacy): remove it"
            )
        return value

    @field_validator("gate_on")
    @classmethod
    def _gate_on(cls, value: str) -> str:
        if value not in ("all", "succeeded"):
            raise ValueError("must be 'all' (failures count as reward 0) or 'succeeded'")
        return value

    @model_validator(mode="after")
    def _one_sweep_form(self) -> CollectOptions:
        if self.models is not None and self.variants is not None:
            raise ValueError("give +models or variants, not both")
        names = [v.name for v in self.sweep()]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique, got {names}")
        if self.objective not in ("best", "within_margin", "target"):
            raise ValueError(f"+objective must be best, within_margin or target, got {self.objective!r}")
        if self.adaptive and len(names) < 2:
            raise ValueError("+adaptive=true races the variants of a sweep: give +models=[a,b,...] or variants")
        if self.adaptive and self.objective == "target" and self.target_reward is None:
            raise ValueError("+objective=target needs +target_reward=... (the mean reward to reach, 0..1)")
        return self

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> CollectOptions:
        if options.get("input_jsonl_fpath") in (None, ""):
            raise ConfigError("+input_jsonl_fpath=... is required (see ng_collect_rollouts --help)")
        return validate_model(cls, {k: v for k, v in options.items() if k in cls.model_fields}, "+")

    # ------------------------------------------------------------------ derived

    @property
    def input_path(self) -> Path:
        """The task file: relative to the working directory or, failing that (as for
        ``config_paths``), to where the toolkit is installed, so the task files it ships
        (``resources_servers/*/data/*.jsonl``) are found from an installed wheel too."""
        path = Path(self.input_jsonl_fpath).expanduser()
        if not path.is_absolute() and not path.exists() and (PACKAGE_ROOT / path).is_file():
            return PACKAGE_ROOT / path
        return path

    @property
    def output_path(self) -> Path:
        if self.output_jsonl_fpath:
            return Path(self.output_jsonl_fpath).expanduser()
        return Path("results") / f"{self.input_path.stem}_rollouts.jsonl"

    @property
    def lane_concurrency(self) -> int:
        """The most rollouts in flight per variant: ``+concurrency``, or NeMo Gym's
        ``num_samples_in_parallel`` when given."""
        return self.num_samples_in_parallel or self.concurrency

    @property
    def resuming(self) -> bool:
        return self.resume or self.resume_from_cache

    def sweep(self) -> list[Variant]:
        """The variants of a sweep (empty: a single run with the config's model)."""
        if self.variants is not None:
            return list(self.variants)
        if self.models is not None:
            return [Variant(name=_variant_name(m), model=m) for m in self.models]
        return []

    def outputs(self) -> dict[str, Path]:
        """Output file per variant (``""``: the single run)."""
        sweep = self.sweep()
        if not sweep:
            return {"": self.output_path}
        files = OutputFiles(self.output_path)
        return {v.name: files.variant(v.name) for v in sweep}

    def check_paths(self) -> None:
        """Fail before any work: no input, or an output that cannot be written, or that a
        run without resume would clobber."""
        inp = self.input_path
        if not inp.is_file():
            where = "" if inp.is_absolute() else f" (looked in {Path.cwd()} and {PACKAGE_ROOT})"
            raise InputError(f"+input_jsonl_fpath={str(inp)!r} does not exist (or is not a file){where}")
        if not os.access(inp, os.R_OK):
            raise InputError(f"+input_jsonl_fpath={str(inp)!r} is not readable")
        if self.junit_xml:
            _check_writable(Path(self.junit_xml).expanduser(), "+junit_xml")
        if self.baseline:
            from nemo_gym_cli.report.gate import check_gate_ready

            check_gate_ready(self.baseline)
        for out in self.outputs().values():
            _check_writable(out)
            if not self.resuming and out.exists() and out.stat().st_size > 0:
                raise InputError(
                    f"output {str(out)!r} already exists; add +resume=true to continue that run "
                    "(rows already there are skipped, failed ones retried), or choose another "
                    "+output_jsonl_fpath"
                )


def _variant_name(model: str) -> str:
    """A file name for a model id: ``openai/gpt-4o-mini`` -> ``openai__gpt-4o-mini``."""
    return model.replace("/", "__").replace(":", "_")


def _check_writable(path: Path, key: str = "+output_jsonl_fpath") -> None:
    """The output's folder exists (or can be made) and is writable, and the path is a file."""
    if path.exists() and not path.is_file():
        raise InputError(f"output {str(path)!r} is not a regular file; choose another {key}")
    folder = path.parent
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"cannot write the output {str(path)!r}: {str(existing)!r} is not a writable folder")
    if str(path.resolve()).startswith(("/proc/", "/sys/", "/dev/")):
        raise InputError(f"cannot write the output {str(path)!r}: not a place for files; choose another path")
