"""Fixtures shared by the test suite (helpers live in tests/support/)."""

from collections.abc import Iterator

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
