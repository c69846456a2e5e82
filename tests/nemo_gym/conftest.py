"""The nemo-gym 0.7.0 environment the NeMo Gym hosting tests run NeMo Gym's servers on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def nemo_gym07_venv() -> Path:
    """``$NG_NEMO_GYM07_VENV`` if set, else the base environment the product's own builder
    makes (or finds) in the cache. 0.7.0 declares Python >= 3.13.14; where the newest Python
    is older (3.13.0 here), it is installed with ignore_requires_python: a test deviation,
    untested by NeMo Gym. No Python 3.13 at all: skipped."""
    given = os.environ.get("NG_NEMO_GYM07_VENV")
    if given:
        return Path(given)
    from nemo_gym_cli.nemo_gym.environments import Environments, _candidates, _python_version
    from nemo_gym_cli.nemo_gym.options import NemoGymOptions

    if not any((_python_version(p) or "").startswith("3.13.") for p in _candidates()):
        pytest.skip("nemo_gym: no Python 3.13 found (PATH, ~/.pyenv/versions) to build NeMo Gym 0.7.0's environment")
    return Environments(NemoGymOptions(ignore_requires_python=True)).base()
