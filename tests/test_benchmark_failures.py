"""A benchmark whose servers do not start says why, in the failing command's own words
(``benchmarks/failures.py``), not just an exit code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import failures  # noqa: E402
import rollouts  # noqa: E402


def test_the_reason_is_the_last_error_line_else_the_last_lines() -> None:
    said = [
        "[my_env] starting",
        "error: server 'my_env' could not start: SyntaxError at app.py:3",
        "stopped all servers",
    ]
    assert failures.reason(said) == "error: server 'my_env' could not start: SyntaxError at app.py:3"
    assert failures.reason(["a", "", "b", "c", "d"]) == "b | c | d"
    assert failures.reason([]) == "(no output)"


@pytest.mark.e2e
def test_the_rollouts_benchmark_says_why_ng_run_did_not_start() -> None:
    with pytest.raises(SystemExit) as stopped:
        rollouts.Servers(config="configs/no_such_config.yaml")
    message = str(stopped.value)
    assert message.startswith("ng_run exited with 2: error: ") and "no_such_config.yaml" in message
