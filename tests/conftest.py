"""Fixtures shared by the test suite (helpers live in harness.py)."""

from harness import ng_run  # noqa: F401
