"""CollectOptions: the command's keys, typed and strict."""

from __future__ import annotations

import pytest

from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.commands.options import COLLECT_OPTIONS, COMMON
from nemo_gym_cli.errors import ConfigError


def test_the_command_knows_exactly_the_keys_the_options_model_has():
    assert COLLECT_OPTIONS - COMMON == set(CollectOptions.model_fields)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 1e9}, "+concurrency: Input should be a valid integer (got 1000000000.0)"),
        ({"concurrency": 10**9}, "+concurrency: Input should be less than or equal to 100000"),
        ({"concurrency": True}, "+concurrency: Input should be a valid integer (got True)"),
        ({"resume": "yes"}, "+resume: Input should be a valid boolean (got 'yes')"),
        ({"agent_name": [1]}, "+agent_name: Input should be a valid string (got [1])"),
        ({"limit": -1}, "+limit: Input should be greater than or equal to 0"),
        ({"gate_on": "best"}, "+gate_on: Value error, must be 'all'"),
        ({"models": ["a"], "variants": [{"name": "b"}]}, "give +models or variants, not both"),
        ({"variants": [{"name": "a/b"}]}, "+variants.0.name: Value error, 'a/b' must be a plain file name"),
        ({"variants": [{"name": "a", "temprature": 1}]}, "+variants.0.temprature: unknown key"),
    ],
)
def test_wrong_types_and_values_are_one_config_error_naming_the_key(options, message):
    with pytest.raises(ConfigError) as info:
        CollectOptions.from_config({"input_jsonl_fpath": "in.jsonl", **options})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_missing_input_is_named():
    with pytest.raises(ConfigError, match=r"\+input_jsonl_fpath=... is required"):
        CollectOptions.from_config({})


def test_models_make_one_variant_each_with_its_own_output_file():
    opts = CollectOptions.from_config(
        {
            "input_jsonl_fpath": "in.jsonl",
            "output_jsonl_fpath": "results/sweep.jsonl",
            "models": ["a/x", "openrouter:b/y"],
        }
    )
    assert [v.name for v in opts.sweep()] == ["a__x", "openrouter_b__y"]
    assert {k: str(v) for k, v in opts.outputs().items()} == {
        "a__x": "results/sweep/a__x.jsonl",
        "openrouter_b__y": "results/sweep/openrouter_b__y.jsonl",
    }
    assert opts.sweep()[1].params() == {"model": "openrouter:b/y"}


def test_the_help_lists_every_key_of_the_options_model():
    from nemo_gym_cli.cli import COLLECT_HELP

    listed = {line.split()[0] for line in COLLECT_HELP.splitlines() if line.startswith("  ") and line.split()}
    assert set(CollectOptions.model_fields) <= listed
