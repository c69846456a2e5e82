"""Command-line entry points: ``ng`` (typer, with subcommands) and the console scripts
``ng_run``, ``ng_collect_rollouts``, ``ng_models``, ``ng_emulator``, ``ng_report``,
``ng_reverify``. Each
command's logic lives in its own module; this file only parses, catches the toolkit's
errors and sets the exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import typer

from nemo_gym_cli.errors import NemoGymError
from nemo_gym_cli.redaction import mask_output

__all__ = ["app", "collect_main", "models_main", "report_main", "reverify_main", "run_main"]

RUN_HELP = """Start every server named by the config, then supervise them until Ctrl-C.

Arguments are Hydra overrides: +key=value, ++key=value, key=value, ~key; lists as
"+config_paths=[a.yaml,b.yaml]"; nested keys as +a.b=c.

\b
Keys (ng_run has only these; each server's keys are in its config, see its README):
  config_paths        YAML files to compose (followed recursively). Required.
  head_server.host    head server host (default 127.0.0.1)
  head_server.port    head server port (default 11000)
  cache               model servers answer calls seen before from the response cache (false)
  cache_path, cache_ttl_s, cache_refresh   its folder, time-to-live (7 days), overwrite
  ray.address         run the servers on a Ray cluster: auto, local or host:port
                      (then each server takes num_replicas and num_cpus; docs/scale-out.md)
  ray.placement_timeout_s  how long to wait for room for every replica (60)
  nemo_gym.*          how NeMo Gym 0.7's own servers are hosted: version, venv, python,
                      ignore_requires_python, cache_dir, root (docs/nemo_gym.md)
  dry_run             build NeMo Gym's environments, start nothing (false)
  server_spinup_timeout_seconds  how long to wait for every server to be ready (60; 300
                      with NeMo Gym servers; 0: forever)
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
  adaptive                 race a sweep's variants in rounds, dropping the confidently beaten
                           (docs/compare.md, "Adaptive sweeps") (false)
  objective                adaptive: best, within_margin or target (best)
  margin                   adaptive: reward difference that counts as a tie (0.02)
  target_reward            adaptive, objective=target: the mean reward to reach (none)
  alpha                    adaptive: error rate, however often the race looks (0.05)
  round_tasks              adaptive: tasks per round, for every variant in the race (20)
  adaptive_seed            adaptive: seed of the random task order (0)
  materialize_inputs       write <stem>_materialized_inputs.jsonl (NeMo Gym's reward
                           profiling reads it) (true)
  disable_aggregation      NeMo Gym 0.7's: skip <stem>_aggregate_metrics.json (false)
  aggregation_max_rows     most rows that file is written for: it needs them all in memory
                           (20000; more: ng eval aggregate writes it afterwards)
  interleave_repeats       NeMo Gym 0.7's: repeats round by round, not back to back (false)
  environment_routing_mode NeMo Gym 0.7's: agent (rows via their agent's environment
                           server) or legacy (all via environment_server_name) (agent)
  environment_server_name  with environment_routing_mode=legacy: the one environment server
  environment_server_routes  NeMo Gym 0.7's taskset routes; must be empty here ({})
  junit_xml                write JUnit XML here: one test case per task; an error when a
                           rollout failed, a failure when its reward is low (none)
  junit_min_reward         a task whose mean reward is lower fails its test case (pass_threshold)
  baseline                 an output or sweep folder: exit 1 when this run is significantly
                           worse on the tasks both ran (paired by task; needs the report extra)
  gate_alpha               significance level of the baseline gate (0.05)
  gate_margin              a drop in mean reward the baseline gate tolerates (0)
  cache                    answer model calls seen before from the response cache: 0 upstream
                           calls, $0 (false); with config_paths only (ng_run +cache=true otherwise)
  cache_path               the cache's folder (${XDG_CACHE_HOME:-~/.cache}/nemo-gym-cli/responses)
  cache_ttl_s              entries older than this are misses (604800: 7 days)
  cache_refresh            ignore existing entries and overwrite them (false)
  config_paths             YAML files: start these servers for this run
  head_server.host/.port   where the running head server is (127.0.0.1:11000)
  ray.address, ray.placement_timeout_s   with config_paths: run them on a Ray cluster
\b
Writes <stem>_metrics.json (figures and the run record), <stem>_failures.jsonl (failed
rollouts), <stem>_aggregate_metrics.json (NeMo Gym 0.7's summary) and, for a sweep,
<output stem>/<variant>.jsonl each and sweep.json; appends a Markdown summary to
$GITHUB_STEP_SUMMARY when it is set (docs/ci.md).
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
self-contained report.html (a verdict, plots, every task's reward, a trajectory viewer; works
offline) and prints the verdict and a table.
Arguments are Hydra overrides (+key=value); bare paths are added to +inputs.

\b
Keys (default):
  inputs               output JSONL files and/or sweep directories (required)
  report_dir           where the report goes (<sweep dir>/report; for files, report_<stems>/ beside
                       the first); another report of other inputs there is never replaced silently
  overwrite            replace a report of other inputs in report_dir (false)
  pass_threshold       reward that counts as a pass for pass@k and solved tasks (1.0)
  group_by             dotted row field for reward by subset, e.g. meta.category (auto: subset,
                       subject, category or meta.category when present; none: no breakdown)
  seed                 seed of the bootstrap and permutation tests (0)
  bootstrap_resamples  resamples behind each 95% interval (2000)
  permutations         sign flips behind each paired p-value (10000)
  viewer_tasks         most tasks whose trajectories report.html embeds (200)
  baseline             an output or sweep folder: exit 1 when a variant is significantly
                       worse than it on the tasks both ran (paired by task) (none)
  gate_alpha           significance level of that gate (0.05)
  gate_margin          a drop in mean reward that gate tolerates (0)
  margin               reward the "cheapest within a margin of the best" pick may give up (0.02)
  project_tasks        tasks the projected cost is for (default: the tasks of the inputs)
\b
Needs the report extra: pip install -e '.[report]' in a clone. Figures: docs/compare.md.
\b
Examples:
  ng_report results/sweep/
  ng_report "+inputs=[results/a.jsonl,results/b.jsonl]" +report_dir=results/report +group_by=meta.category
"""

REVERIFY_HELP = """Re-score an output with the current verifier of its environment, without the model.

Each row's recorded response goes to its resources server (/seed_session with the row's
task fields, the row's recorded tool calls replayed in that session, then /verify) into a
new output; prints and records (<stem>_reverify.json) which rows' rewards changed, the rows
whose tools now answer differently (flagged _ng_tool_outputs_differ), and the mean before
and after with a paired 95% interval.
Given +config_paths (the config the output was collected with), starts only the resources
servers the rows need and what they refer to (an LLM judge's model server: the judge is the
only model paid for); without, uses a running ng_run's.

\b
Keys (default):
  input_jsonl_fpath    the output to re-score (required)
  output_jsonl_fpath   the re-scored rows (<input stem>_reverified.jsonl); the old reward is
                       kept in each row as _ng_previous_reward
  agent_name           the agent of rows that name none in agent_ref.name
  limit                first N rows only (all)
  concurrency          verifications in flight (32)
  max_attempts         attempts per row before it is a failure (3)
  timeout_s            timeout of one /seed_session, tool or /verify call (600)
  replay_tool_calls    replay each row's recorded tool calls in its session before /verify (true)
  overwrite            replace an existing output (false)
  config_paths         YAML files: start the resources servers of this config
  head_server.host/.port   where the running head server is (127.0.0.1:11000)
\b
Example:
  ng reverify "+config_paths=[configs/offline_model.yaml,resources_servers/mcqa/configs/mcqa.yaml]" \\
    +input_jsonl_fpath=results/mcqa_rollouts.jsonl +output_jsonl_fpath=results/mcqa_reverified.jsonl
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


@app.command("reverify", help=REVERIFY_HELP)
def reverify_command(overrides: list[str] | None = _OVERRIDES) -> None:
    from nemo_gym_cli.commands.reverify import reverify_command as reverify

    _guarded(reverify, overrides)


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
    if t.command == "reverify":
        from nemo_gym_cli.commands.reverify import reverify_command as reverify

        return reverify(t.args)
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


def reverify_main() -> None:
    _single_app(reverify_command, REVERIFY_HELP)(prog_name="ng_reverify")
