"""Fixtures of the interop suite (``pytest -m interop tests/interop``; see ``scripts/interop``).

Session-scoped peers, started once and stopped for sure: the provider emulator, the
reference upstream, NeMo Gym 0.2.1's ``ng_run`` (example_single_tool_call and the stateful
example_session_state_mgmt, each with its simple_agent), NeMo Gym 0.7.0's ``ng_run``
(example_single_tool_call, its simple_agent and environment server) and our offline ``ng_run``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interop_harness import NemoGymRun, Upstream, check_venvs  # noqa: E402
from ng07_harness import NemoGym07Run  # noqa: E402

from support.cli import NgRun  # noqa: E402

#: NeMo Gym's stack: its weather-like example and its stateful counter example, each with its
#: simple_agent. The counter's agent plays through ``counter_model`` (the reference upstream,
#: whose policy plays the counter tasks); everything else through ``policy_model`` (emulator).
NEMO_GYM_CONFIGS = (
    "responses_api_models/openai_model/configs/openai_model.yaml",
    "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
    "resources_servers/example_session_state_mgmt/configs/example_session_state_mgmt.yaml",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.interop)


@pytest.fixture(scope="session", autouse=True)
def interop_venvs() -> None:
    problem = check_venvs()
    if problem:
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def interop_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("interop")


@pytest.fixture(scope="session")
def emulator(interop_tmp: Path) -> Iterator[Upstream]:
    upstream = Upstream("emulator", interop_tmp)
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(scope="session")
def reference(interop_tmp: Path) -> Iterator[Upstream]:
    upstream = Upstream("reference", interop_tmp)
    try:
        yield upstream
    finally:
        upstream.stop()


@pytest.fixture(scope="session")
def nemo_gym(interop_tmp: Path, emulator: Upstream, reference: Upstream) -> Iterator[NemoGymRun]:
    counter_model = {
        "counter_model": {
            "responses_api_models": {
                "openai_model": {
                    "entrypoint": "app.py",
                    "openai_base_url": reference.base_url,
                    "openai_api_key": "sk-interop-dummy",
                    "openai_model": reference.model,
                }
            }
        },
        "example_session_state_mgmt_simple_agent": {
            "responses_api_agents": {"simple_agent": {"model_server": {"name": "counter_model"}}}
        },
    }
    run = NemoGymRun(NEMO_GYM_CONFIGS, emulator.base_url, emulator.model, interop_tmp, extra_config=counter_model)
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


#: NeMo Gym 0.7.0's stack: the example_single_tool_call config as its wheel ships it (resources
#: server, simple_agent, legacy_agent environment server) with openai_model -> our emulator.
NEMO_GYM07_CONFIGS = (
    "responses_api_models/openai_model/configs/openai_model.yaml",
    "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml",
)


@pytest.fixture(scope="session")
def nemo_gym07(interop_tmp: Path, emulator: Upstream) -> Iterator[NemoGym07Run]:
    run = NemoGym07Run(NEMO_GYM07_CONFIGS, emulator.base_url, emulator.model, interop_tmp)
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


@pytest.fixture(scope="session")
def ours() -> Iterator[NgRun]:
    """Our offline stack: policy_model -> its own provider emulator, simple_weather + agent."""
    run = NgRun()
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()
