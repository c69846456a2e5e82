"""``ng reverify``: re-score an output with the current verifier of its environment.

This module parses the command line and prints; the re-scoring is
``nemo_gym_cli/collect/reverify.py``. Given ``+config_paths`` (the config the output was
collected with), it starts only the resources servers the rows need and what they refer to
(a judge's model server), never the policy model; without, it uses a running ``ng_run``'s.

Exit codes: 0 every row re-scored (changed rewards are the point, not a failure); 1 some
rows could not be (listed in ``<stem>_failures.jsonl``), or interrupted; 2 a usage error.
"""

from __future__ import annotations

import sys

from nemo_gym_cli.collect.reverify import ReverifyOptions, record_path, reverify
from nemo_gym_cli.commands.options import ALL_OPTIONS, REVERIFY_OPTIONS
from nemo_gym_cli.commands.startup import load_with_forkserver
from nemo_gym_cli.config import GlobalConfig, load_config
from nemo_gym_cli.runtime import run_async

__all__ = ["reverify_command"]


def _note(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def reverify_command(args: list[str]) -> int:
    """Run ``ng reverify`` with Hydra-syntax ``args``; returns the exit code."""

    def load() -> tuple[GlobalConfig, ReverifyOptions]:
        config = load_config(args, command=REVERIFY_OPTIONS, everywhere=ALL_OPTIONS)
        return config, ReverifyOptions.from_config(config.options)

    config, opts, forkserver = load_with_forkserver(args, load)
    result = run_async(reverify(config, opts, _note, forkserver))
    for line in result.lines():
        print(line)
    print(f"wrote {result.rescored} rows to {result.output}; what changed in {record_path(result.output)}")
    return 1 if result.failed else 0
