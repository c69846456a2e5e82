"""Command-line entry points: ``ng`` (typer, with subcommands) and the console scripts
``ng_run``, ``ng_collect_rollouts``, ``ng_models``, ``ng_emulator``, ``ng_report``. Each
command's logic lives in its own module; this file only parses, catches the toolkit's
errors and sets the exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import typer

from nemo_gym_cli.errors import NemoGymError
from nemo_gym_cli.redaction import mask_output

__all__ = ["app", "collect_main", "models_main", "report_main", "run_main"]

RUN_HELP = """Start every server named by the config, then supervise them until Ctrl-C.

Arguments are Hydra overrides: +key=value, ++key=value, key=value, ~key; lists as
"+config_paths=[a.yaml,b.yaml]"; nested keys as +a.b=c.

\b
Keys (ng_run has only these; each server's keys are in its config, see its README):
  config_paths        YAML files to compose (followed recursively). Required.
  head_server.host    head server host (default 127.0.0.1)
  head_server.port    head server port (default 11000)
  ray.address         run the servers on a Ray cluster: auto, local or host:port
                      (then each server takes num_replicas and num_cpus; docs/scale-out.md)
  ray.placement_timeout_s  how long to wait for room for every replica (60)
\b
Precedence (later wins): config_paths files, ./env.yaml, the command line.
\b
Example (offline, no API key):
  ng_run "+config_paths=[configs/offline.yaml]"
"""

COLLECT_HELP = """Run tasks from an input JSONL through an agent; write scored rollouts to JSONL.

Arguments are Hydra overrides (+key=value). Given +config_paths, starts its own servers on
free ports and stops them at the end; without, uses the servers of a running ng_run (or
NeMo Gym) head server.

\b
Keys (default):
  input_jsonl_fpath        tasks, one JSON object per line (required)
  output_jsonl_fpath       output rows (results/<input stem>_rollouts.jsonl)
  agent_name               agent instance; rows may name their own in agent_ref.name (the only agent)
  limit                    first N tasks only (all)
  concurrency              rollouts in flight, per variant (10)
  num_samples_in_parallel  NeMo Gym's name for concurrency
  num_repeats              rollouts per task (1)
  num_repeats_add_seed     NeMo Gym's: responses_create_params.seed = the rollout index (false)
  responses_create_params  merged into every row's responses_create_params ({})
  models                   a sweep: one variant per model, "+models=[a/x,b/y]" (none)
  variants                 a sweep in YAML: [{name, model, responses_create_params, provider,
                           concurrency}] (none)
  resume                   continue an existing output, skipping rows already there (false)
  resume_from_cache        NeMo Gym's name for resume (false)
  max_attempts             attempts per rollout before it is a failure (3)
  max_failures             failed rollouts allowed before exit code 1 (0)
  min_mean_reward          exit 1 when the mean reward (failures count 0) is lower (no gate)
  gate_on                  the mean that gate checks: all or succeeded (all)
  pass_threshold           reward that counts as a pass for pass@k (1.0)
  rollout_timeout_s        timeout of one rollout (3600)
  progress_interval_s      seconds between progress lines when not on a terminal (10)
  circuit_breaker          stop after this many rollouts in a row failed because of the
                           model provider; 0: never (20)
  max_cost_usd             stop when the cost the provider reports reaches this (no limit)
  dry_run                  estimate tokens and cost from a pilot of a few rows, then exit (false)
  dry_run_rows             pilot rollouts per variant of dry_run (3)
  materialize_inputs       write <stem>_materialized_inputs.jsonl (NeMo Gym's reward
                           profiling reads it) (true)
  disable_aggregation      NeMo Gym 0.7's: skip <stem>_aggregate_metrics.json (false)
  interleave_repeats       NeMo Gym 0.7's: repeats round by round, not back to back (false)
  environment_routing_mode NeMo Gym 0.7's: agent (rows via their agent's environment
                           server) or legacy (all via environment_server_name) (agent)
  environment_server_name  with environment_routing_mode=legacy: the one environment server
  environment_server_routes  NeMo Gym 0.7's taskset routes; must be empty here ({})
  config_paths             YAML files: start these servers for this run
  head_server.host/.port   where the running head server is (127.0.0.1:11000)
  ray.address, ray.placement_timeout_s   with config_paths: run them on a Ray cluster
\b
Writes <stem>_metrics.json (figures and the run record), <stem>_failures.jsonl (failed
rollouts), <stem>_aggregate_metrics.json (NeMo Gym 0.7's summary) and, for a sweep,
<output stem>/<variant>.jsonl each and sweep.json.
\b
Example:
  ng_collect_rollouts "+config_paths=[configs/offline.yaml]" +agent_name=simple_weather_simple_agent \\
    +input_jsonl_fpath=resources_servers/simple_weather/data/example.jsonl \\
    +output_jsonl_fpath=results/help_example.jsonl +concurrency=10
"""

MODELS_HELP = """List the models the configured upstream offers: context length, price, tool support.

Arguments are Hydra overrides. The upstream is the model server of the config (its
openai_base_url, openai_api_key and default_headers), or +base_url (and +api_key) directly.

\b
Keys:
  config_paths    YAML files to compose, as for ng_run (default: ./env.yaml's policy_base_url)
  base_url        ask this OpenAI-compatible base URL instead
  api_key         its key (OpenRouter lists models without one)
  model_server    which model server instance (default policy_model, or the only one)
  tools           true: only models that support tool calls
  max_price       only models whose prompt and completion prices are at most this (USD/M tokens)
  search          only models whose id or name contains this text
  json            true: one JSON object per model instead of the table
\b
Examples:
  ng models "+config_paths=[responses_api_models/openai_model/configs/openrouter.yaml]" +tools=true
  ng models +base_url=https://openrouter.ai/api/v1 +max_price=1 +search=llama
"""

REPORT_HELP = """Compare variants (models, sampling params, provider routing) over scored rollouts.

Reads output JSONL files of ng_collect_rollouts (or NeMo Gym), or a sweep directory (one
<variant>.jsonl per variant, a sweep.json manifest); writes report.json, report.md and one
self-contained report.html (plots, a trajectory viewer; works offline) and prints a table.
Arguments are Hydra overrides (+key=value); bare paths are added to +inputs.

\b
Keys (default):
  inputs               output JSONL files and/or sweep directories (required)
  report_dir           where the report goes (<sweep dir>/report, or report/ beside the first file)
  pass_threshold       reward that counts as a pass for pass@k and solved tasks (1.0)
  group_by             dotted row field for reward by subset, e.g. meta.category (auto: subset,
                       subject, category or meta.category when present; none: no breakdown)
  seed                 seed of the bootstrap and permutation tests (0)
  bootstrap_resamples  resamples behind each 95% interval (2000)
  permutations         sign flips behind each paired p-value (10000)
  viewer_tasks         most tasks whose trajectories report.html embeds (200)
\b
Needs the report extra: pip install -e '.[report]' in a clone. Figures: docs/compare.md.
\b
Examples:
  ng_report results/sweep/
  ng_report "+inputs=[results/a.jsonl,results/b.jsonl]" +report_dir=results/report +group_by=meta.category
"""

app = typer.Typer(
    name="ng",
    help="Collect scored RL rollouts from LLM agents (NeMo Gym compatible).",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # help texts show Hydra lists like [a,b], not Rich markup
    context_settings={"help_option_names": ["-h", "--help"]},
)

_OVERRIDES = typer.Argument(None, help="Hydra overrides, e.g. +key=value", show_default=False)


def _setup_logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _guarded(fn: Callable[[list[str]], int], overrides: list[str] | None) -> None:
    mask_output()  # every line we print, the servers' forwarded output and the error line included
    _setup_logging()
    try:
        code = fn(list(overrides or []))
    except NemoGymError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)


@app.command("run", help=RUN_HELP)
def run_command(overrides: list[str] | None = _OVERRIDES) -> None:
    from nemo_gym_cli.commands.run import run

    _guarded(run, overrides)


@app.command("collect", help=COLLECT_HELP)
def collect_command(overrides: list[str] | None = _OVERRIDES) -> None:
    from nemo_gym_cli.commands.collect import collect

    _guarded(collect, overrides)


@app.command("models", help=MODELS_HELP)
def models_command(overrides: list[str] | None = _OVERRIDES) -> None:
    from nemo_gym_cli.commands.models import models

    _guarded(models, overrides)


@app.command("report", help=REPORT_HELP)
def report_command(overrides: list[str] | None = _OVERRIDES) -> None:
    from nemo_gym_cli.report import report

    _guarded(report, overrides)


@app.command(
    "init", help="Scaffold a new environment or agent in the working directory (ng init resources_server my_env)."
)
def init_command(
    kind: str = typer.Argument(help="resources_server or agent"), name: str = typer.Argument(help="e.g. my_env")
) -> None:
    from nemo_gym_cli.commands.init import run

    _guarded(lambda _: run(kind, name), None)


@app.command(
    "emulator",
    help="Start the local OpenRouter-compatible provider emulator (see ng_emulator --help).",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def emulator_command(ctx: typer.Context) -> None:
    # The emulator is an implementation, not the core: found by its console script's entry
    # point (pyproject.toml), the one place that names its module.
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="ng_emulator")
    script.load()(list(ctx.args))


GYM_HELP = """NeMo Gym 0.7's `{group}` commands (its `gym {group} ...`, also its `ng {group} ...`).

Each runs our counterpart with the same flags (--config, -a, -i, -o, --concurrency, ...;
+key=value overrides pass through), or says in one line what to type instead:
{commands}. docs/nemo_gym.md has the table.
"""


def _gym_group(group: str) -> None:
    from nemo_gym_cli.commands.gym import GYM_GROUPS

    def command(ctx: typer.Context) -> None:
        _guarded(lambda _: _run_gym(group, list(ctx.args)), None)

    app.command(
        group,
        help=GYM_HELP.format(group=group, commands=", ".join(GYM_GROUPS[group])),
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(command)


def _run_gym(group: str, argv: list[str]) -> int:
    from nemo_gym_cli.commands.gym import translate

    t = translate(group, argv)
    if t.command == "run":
        from nemo_gym_cli.commands.run import run

        return run(t.args)
    if t.command == "collect":
        from nemo_gym_cli.commands.collect import collect

        return collect(t.args)
    if t.command == "report":
        from nemo_gym_cli.report import report

        return report(t.args)
    if t.command == "status":
        from nemo_gym_cli.commands.status import status

        return status(t.args)
    if t.command == "aggregate":
        from nemo_gym_cli.commands.status import aggregate

        return aggregate(t.args)
    from nemo_gym_cli.commands.init import run as init

    return init(*t.args)


for _group in ("env", "eval", "dataset", "list", "dev"):
    _gym_group(_group)


def _single_app(command: Callable[..., None], help_text: str) -> typer.Typer:
    single = typer.Typer(
        add_completion=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    single.command(help=help_text)(command)
    return single


def run_main() -> None:
    _single_app(run_command, RUN_HELP)(prog_name="ng_run")


def collect_main() -> None:
    _single_app(collect_command, COLLECT_HELP)(prog_name="ng_collect_rollouts")


def models_main() -> None:
    _single_app(models_command, MODELS_HELP)(prog_name="ng_models")


def report_main() -> None:
    _single_app(report_command, REPORT_HELP)(prog_name="ng_report")
