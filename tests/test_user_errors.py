"""Errors in the user's own code (a verifier, a tool, an app.py that does not import): one
line each, naming the exception, file and line, once per distinct error, never retried, the
traceback in the server's errors log (``nemo_gym_cli/server/usercode.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from nemo_gym_cli.commands.init import init
from nemo_gym_cli.server import asgi
from nemo_gym_cli.server.serve import import_implementation, server_class
from support.cli import run_cli

VERIFY = "        numbers = NUMBER.findall(final_text(body))\n"


def _scaffold(tmp_path: Path, before_verify: str = "", top: str = "") -> Path:
    init("resources_server", "my_env", tmp_path)
    app = tmp_path / "resources_servers" / "my_env" / "app.py"
    source = app.read_text()
    assert VERIFY in source
    source = source.replace(VERIFY, before_verify + VERIFY)
    if top:
        source = source.replace("import re\n", "import re\n" + top)
    app.write_text(source)
    return app


def _collect(tmp_path: Path, *overrides: str):
    return run_cli(
        "ng_collect_rollouts",
        "+config_paths=[configs/offline_model.yaml,resources_servers/my_env/configs/my_env.yaml]",
        "+agent_name=my_env_simple_agent",
        "+input_jsonl_fpath=resources_servers/my_env/data/example.jsonl",
        "+output_jsonl_fpath=results/out.jsonl",
        *overrides,
        cwd=tmp_path,
        timeout=240,
    )


def test_an_exception_in_a_tool_is_one_line_naming_it_and_not_retryable_a_connection_error_is(tmp_path: Path) -> None:
    app = _scaffold(tmp_path)
    source = app.read_text().replace(
        "        count = session",
        '        if letter == "x":\n            raise ConnectionError("the service is down")\n'
        '        count = 1 / 0 if letter == "z" else None\n        count = session',
    )
    app.write_text(source)
    server = server_class(import_implementation(str(app), "resources_servers", "my_env"))
    with TestClient(asgi(server())) as client:
        broken = client.post("/count_letter", json={"letter": "z"}).json()["error"]
        transient = client.post("/count_letter", json={"letter": "x"}).json()["error"]
    assert broken["type"] == "user_code_error" and broken["retryable"] is False
    line = source.splitlines().index('        count = 1 / 0 if letter == "z" else None') + 1
    assert f"ZeroDivisionError: division by zero at {app}:{line} in count_letter" in broken["message"]
    assert transient["type"] == "user_code_error" and transient["retryable"] is True


@pytest.mark.e2e
def test_a_verifier_that_raises_prints_one_line_per_distinct_error_and_is_not_retried(tmp_path: Path) -> None:
    app = _scaffold(
        tmp_path,
        before_verify='        if body.get("word") == "banana":\n            raise KeyError("banana")\n        1 / 0\n',
    )
    source = app.read_text().splitlines()
    key_line, zero_line = source.index('            raise KeyError("banana")') + 1, source.index("        1 / 0") + 1
    done = _collect(tmp_path, "+num_repeats=2")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    shown = [line for line in lines if line.startswith("error in your code: ")]
    assert len(shown) == 2, done.stderr  # two distinct errors, each once, for 6 rollouts
    zero = next(line for line in shown if "ZeroDivisionError" in line)
    assert f"ZeroDivisionError: division by zero at resources_servers/my_env/app.py:{zero_line} in verify" in zero
    assert "full traceback in results/logs/my_env_errors.log" in zero
    assert f"KeyError: 'banana' at resources_servers/my_env/app.py:{key_line} in verify" in next(
        line for line in shown if "KeyError" in line
    )
    counted = [line for line in lines if line.startswith("rollouts failed by errors in your code: ")]
    assert len(counted) == 1 and "4 x my_env: ZeroDivisionError" in counted[0] and "2 x my_env: KeyError" in counted[0]
    assert "Traceback" not in done.stderr and len(lines) <= 4, done.stderr
    failures = [json.loads(x) for x in (tmp_path / "results" / "out_failures.jsonl").read_text().splitlines()]
    assert len(failures) == 6 and {f["attempts"] for f in failures} == {1}  # tried once each
    logged = (tmp_path / "results" / "logs" / "my_env_errors.log").read_text()
    assert logged.count("Traceback (most recent call last)") == 2 and "1 / 0" in logged


@pytest.mark.e2e
def test_a_syntax_error_in_app_py_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    _scaffold(tmp_path, top="NUMBERS = [(\n")
    done = _collect(tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: server 'my_env' could not start: SyntaxError: '(' was never closed at "
        "resources_servers/my_env/app.py:11 (full traceback in results/logs/my_env_errors.log)"
    ], done.stderr
    assert "SyntaxError" in (tmp_path / "results" / "logs" / "my_env_errors.log").read_text()
