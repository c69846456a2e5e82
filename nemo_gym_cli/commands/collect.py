"""``ng_collect_rollouts``: tasks from JSONL through an agent, scored rows to JSONL.

This module parses the command line and prints; the run itself (where the servers come
from, the lanes of a sweep, the outputs, gates and dry-run estimates) is
``nemo_gym_cli/collect/run.py``. A sweep's models are added to the model servers'
``allowed_models`` (``collect/sweep.py``), and ``+cache=true`` turns on their response cache
(``collect/cache_options.py``), before any server starts.

Exit codes:

- 0: every rollout succeeded (or at most ``+max_failures`` failed) and every gate passed;
- 1: more than ``+max_failures`` rollouts failed, a gate such as ``+min_mean_reward`` was
  not met, the budget ran out, the provider kept failing, or a server died (the message
  says which); the output is resumable;
- 2: a usage error (bad option, input, output path; a resume of another experiment);
- 130: interrupted (Ctrl-C); re-run with ``+resume=true`` to continue.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from nemo_gym_cli.collect.cache_options import cache_model_servers
from nemo_gym_cli.collect.estimate import format_estimates
from nemo_gym_cli.collect.metrics import format_summary
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.run import collect_rollouts
from nemo_gym_cli.collect.sweep import allow_sweep_models
from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS
from nemo_gym_cli.commands.startup import load_with_forkserver
from nemo_gym_cli.config import GlobalConfig, load_config
from nemo_gym_cli.limits import raise_open_file_limit
from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.runtime import run_async, tune_gc

__all__ = ["collect"]


def print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def collect(args: list[str]) -> int:
    """Run a collection from Hydra-syntax ``args``; returns the exit code."""
    raise_open_file_limit()

    def load() -> tuple[GlobalConfig, CollectOptions]:
        config = load_config(args, command=COLLECT_OPTIONS, everywhere=ALL_OPTIONS)
        opts = CollectOptions.from_config(config.options)
        config = allow_sweep_models(config, opts)  # each variant served by the model it names
        config = cache_model_servers(config, opts)  # +cache=true: the model servers' response cache
        return config, opts

    config, opts, forkserver = load_with_forkserver(args, load)  # we may start the servers
    tune_gc()
    outcome = run_async(collect_rollouts(config, opts, forkserver, print_err))
    if outcome.estimates is not None:
        print(format_estimates(outcome.estimates))
        pilots = ", ".join(doc["output"] for doc in outcome.docs.values())
        print(f"dry run: nothing written to the output; the pilot's rows are in {pilots}")
        return 0 if not any(doc.get("error") for doc in outcome.docs.values()) else 1
    for name, doc in outcome.docs.items():
        if name:
            print(f"== {name} ({doc['run'].get('requested_model') or 'the config model'})")
        print(format_summary(doc))
        new_rows = doc["succeeded"] - doc["resumed_from_output"]
        print(f"wrote {new_rows} new rows to {doc['output']}; metrics in {metrics_path_of(doc)}")
        if doc["failed"]:
            print(f"{doc['failed']} failed rollouts are listed in {doc['failures_file']}")
    if outcome.adaptive:
        print(outcome.adaptive)
    if outcome.message:
        print_err(outcome.message)
    return outcome.code


def metrics_path_of(doc: dict[str, Any]) -> str:
    return str(OutputFiles(Path(doc["output"])).metrics)
