"""``ng reverify`` on NeMo Gym 0.7.0's own stateful environment, hosted by us: the replay counts.

example_session_state_mgmt keeps a counter per session cookie; its tools move it and
``/verify`` compares it with the row's ``expected_count``. Its shipped
``data/example_rollouts.jsonl`` rows carry no task fields (and ``example.jsonl``'s inputs
are other tasks), so each row's are read off its own recording: ``expected_count`` the last
``get_counter_value`` answer, ``initial_count`` that minus the increments. Re-scored with
the replay of the recorded calls, every recorded reward comes back, every call answers as
recorded (the session travels in 0.7's signed cookie); without it, every row scores 0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from interop_harness import NG07_VENV, NG_ENV, ROOT
from ng07_harness import ng07_site

from support.cli import run_cli

pytestmark = pytest.mark.interop

ENV = "resources_servers/example_session_state_mgmt"
CONFIG = f"+config_paths=[configs/offline_model.yaml,nemo_gym:{ENV}/configs/example_session_state_mgmt.yaml]"


def _rows(tmp: Path) -> Path:
    path = tmp / "session_state_rollouts.jsonl"
    with path.open("w") as out:
        for i, line in enumerate((ng07_site() / ENV / "data/example_rollouts.jsonl").read_text().splitlines()):
            row = json.loads(line)
            items = row["response"]["output"]
            added = sum(
                json.loads(c["arguments"])["count"] for c in items if c.get("name") == "increment_counter"
            )  # fmt: skip
            counts = [json.loads(o["output"]) for o in items if o.get("type") == "function_call_output"]
            final = [c["count"] for c in counts if "count" in c][-1]
            task = {"responses_create_params": {"input": row["responses_create_params"]["input"]}}
            out.write(
                json.dumps(
                    {**task, "initial_count": final - added, "expected_count": final, "response": row["response"],
                     "reward": row["reward"], "_ng_task_index": i, "_ng_rollout_index": 0}
                ) + "\n"
            )  # fmt: skip
    return path


def test_their_session_counter_gets_its_rewards_back_only_with_the_replay(tmp_path: Path):
    rows = _rows(tmp_path)
    hosting = [
        f"+nemo_gym.venv={NG07_VENV}", f"+nemo_gym.cache_dir={tmp_path / 'hosted'}",
        "+nemo_gym.ignore_requires_python=true", "+agent_name=example_session_state_mgmt_simple_agent",
        f"+input_jsonl_fpath={rows}",
    ]  # fmt: skip
    records = {}
    for replay in ("true", "false"):
        done = run_cli(
            "ng", "reverify", CONFIG, *hosting, f"+output_jsonl_fpath={tmp_path / replay}.jsonl",
            f"+replay_tool_calls={replay}", cwd=ROOT, env=NG_ENV, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        records[replay] = json.loads((tmp_path / f"{replay}_reverify.json").read_text())
    on, off = records["true"], records["false"]
    assert on["rescored"] == 5 and on["changed_rows"] == 0 and on["reward"]["mean_after"] == 1.0
    assert on["tool_calls_replayed"] == 15 and on["tool_outputs_differ_rows"] == 0 and on["tool_errors"] == []
    assert off["rescored"] == 5 and off["reward"]["mean_after"] == 0.0 and off["changed_rows"] == 5
