"""Secrets are never printed or written, wherever a user puts them: a key placed by mistake
in any string field of a config (``openai_base_url: ${policy_api_key}``) is masked in every
line the commands print (the servers' forwarded output and the error line included) and in
every file they write, as CI systems mask secrets (``nemo_gym_cli/redaction.py``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from nemo_gym_cli.config import load_config
from nemo_gym_cli.redaction import REDACTED, Scrubber, _MaskedStream, remember_secrets
from support.cli import ROOT, run_cli

CANARY = "sk-or-v1-CANARY" + "5f0c9d7e3b1a4c2d8e6f"
PLAIN_CANARY = "CANARY-not-key-shaped-7d3e91"  # masked only because it is a configured secret
INPUT = ROOT / "resources_servers" / "simple_weather" / "data" / "example.jsonl"


def _string_fields() -> list[str]:
    """Every string field (dotted path) of configs/offline.yaml's instances, lists left out."""
    config = load_config(["+config_paths=[configs/offline.yaml]"], cwd=ROOT, env_yaml=False)
    found: list[str] = []

    def walk(value: object, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}")
        elif isinstance(value, str):
            found.append(path)

    for name, inst in config.instances.items():
        walk(inst.fields, f"{name}.{inst.server_type}.{inst.implementation}")
        found.append(f"{name}.{inst.server_type}.{inst.implementation}.entrypoint")
    return sorted(set(found))


def test_a_configured_secret_and_a_key_shaped_string_are_masked_in_what_is_printed() -> None:
    remember_secrets({"policy_api_key": PLAIN_CANARY, "max_tokens": 12345678})
    out = io.StringIO()
    stream = _MaskedStream(out)
    stream.write(f"cannot reach {PLAIN_CANARY}/key; echoed {CANARY}\n")
    assert out.getvalue() == f"cannot reach {REDACTED}/key; echoed {REDACTED}\n"
    assert Scrubber([]).scrub("max_tokens 12345678 in task-abcdefghijklmnopqrstuvwxyz") == (
        "max_tokens 12345678 in task-abcdefghijklmnopqrstuvwxyz"  # not a secret, not a key's shape
    )


@pytest.mark.e2e
@pytest.mark.parametrize("canary", [PLAIN_CANARY, CANARY])
def test_a_key_in_any_string_field_of_a_config_never_appears_in_any_output_or_file(tmp_path: Path, canary: str) -> None:
    fields = _string_fields()
    assert len(fields) >= 8 and any(f.endswith(".openai_base_url") for f in fields)
    for field in fields:
        cwd = tmp_path / field.replace("/", "_")
        cwd.mkdir()
        args = [
            "+config_paths=[configs/offline.yaml]",
            f"+policy_api_key={canary}",
            f"++{field}=${{policy_api_key}}",
        ]
        runs = [
            run_cli(
                "ng_collect_rollouts",
                *args,
                "+agent_name=simple_weather_simple_agent",
                f"+input_jsonl_fpath={INPUT}",
                "+output_jsonl_fpath=results/out.jsonl",
                cwd=cwd,
                timeout=180,
            )
        ]
        if field.endswith(".openai_base_url"):  # the start-up error of the issue, under ng_run too
            runs.append(run_cli("ng_run", *args, "+head_server.port=0", cwd=cwd, timeout=60))
        for done in runs:
            printed = done.stdout + done.stderr
            assert canary not in printed, f"{field}: printed\n{printed}"
        assert runs[0].stdout or runs[0].stderr  # it said something (a result, or an error)
        for path in cwd.rglob("*"):
            if path.is_file():
                assert canary not in path.read_text(errors="replace"), f"{field}: written to {path}"
