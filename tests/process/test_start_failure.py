"""What a server that could not start is reported as: the reason its last lines give."""

from __future__ import annotations

from nemo_gym_cli.process.supervisor import failure_reason

#: The end of NeMo Gym 0.7.0's widesearch agent (harness_exa_search) failing as shipped.
PYDANTIC_TAIL = """\
    server_config = server_config_cls.model_validate(
        OmegaConf.to_container(server_config_dict, resolve=True) | {"name": config_path_str}
    )
pydantic_core._pydantic_core.ValidationError: 2 validation errors for HarnessExaSearchConfig
agent
  Field required [type=missing, input_value={'resources_server': {'ty...}, input_type=dict]
    For further information visit https://errors.pydantic.dev/2.14/v/missing
image
  Field required [type=missing, input_value={'resources_server': {'ty...}, input_type=dict]
    For further information visit https://errors.pydantic.dev/2.14/v/missing
""".splitlines()


def test_a_validation_error_is_reported_with_each_field_and_what_is_wrong_not_pydantics_link():
    assert failure_reason(PYDANTIC_TAIL) == (
        "ValidationError: 2 validation errors for HarnessExaSearchConfig (agent: Field required; image: Field required)"
    )


def test_the_exception_a_traceback_ends_with_wins_over_lines_after_it():
    tail = ["Traceback (most recent call last):", '  File "app.py", line 2', "ModuleNotFoundError: No module named 'x'"]
    assert failure_reason([*tail, "INFO: shutting down", ""]) == "ModuleNotFoundError: No module named 'x'"


def test_without_a_traceback_the_last_line_is_the_reason():
    assert failure_reason(["starting", "port 8000 is taken  ", "  "]) == "port 8000 is taken"
    assert failure_reason([]) == "no output"
