"""An unknown model stops start-up with a message naming the key that really sets the model
in the composed config (``+emulator_model`` in the offline configs), not a key they refuse."""

from __future__ import annotations

import pytest

from nemo_gym_cli.commands.options import ALL_OPTIONS, RUN_OPTIONS
from nemo_gym_cli.config import load_config
from nemo_gym_cli.server.serve import import_implementation, server_class
from support.cli import ROOT, NgRun


def _setting(*args: str) -> str:
    config = load_config(list(args), cwd=ROOT, command=RUN_OPTIONS, everywhere=ALL_OPTIONS, env_yaml=False)
    inst = config.instances["policy_model"]
    cls = server_class(import_implementation(inst.entrypoint, inst.server_type, inst.implementation))
    return cls.from_spec(inst.spec({"provider_emulator": "http://127.0.0.1:1"})).model_setting()


def test_the_model_is_named_by_the_key_its_config_file_interpolates_else_by_the_instance_key() -> None:
    assert _setting("+config_paths=[configs/offline.yaml]", "+emulator_model=acme/typo") == "+emulator_model"
    openrouter = "+config_paths=[responses_api_models/openai_model/configs/openrouter.yaml]"
    given = "++policy_model.responses_api_models.openai_model.openai_model=acme/typo"
    assert _setting(openrouter, given) == "++policy_model.responses_api_models.openai_model.openai_model"


@pytest.mark.e2e
def test_an_offline_model_the_emulator_does_not_offer_says_to_set_emulator_model() -> None:
    run = NgRun("+emulator_model=acme/typo-model")
    code = run.proc.wait(timeout=60)
    out = run.proc.stdout.read() if run.proc.stdout else ""
    assert code != 0
    assert "then set +emulator_model=<id>" in out and "+policy_model_name" not in out, out
