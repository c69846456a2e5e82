"""Fixtures shared by the test suite (helpers live in tests/support/)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cli import NgRun


@pytest.fixture
def ng_run() -> Iterator[NgRun]:
    """The offline stack under a real ng_run, stopped after the test."""
    run = NgRun()
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


def _wants_interop(config: pytest.Config) -> bool:
    """Whether ``-m`` selects interop tests: the default ``-m "not interop"`` (pyproject) does not."""
    expr = config.getoption("markexpr") or ""
    return "interop" in expr.replace("not interop", "")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # tests/interop needs the peer venvs (scripts/interop_setup): not even collected by default.
    if collection_path.name == "interop" and collection_path.parent.name == "tests" and not _wants_interop(config):
        return True
    return None
