"""Rows across toolkits: ours through NeMo Gym's models and reward profiling, theirs through
our ``+resume=true`` and metrics. Row shapes are in docs/nemo_gym.md ("Output rows").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from interop_harness import (
    REWARD_PROFILE,
    ROOT,
    VALIDATE_ROWS,
    NemoGymRun,
    nemo_gym_cli,
    nemo_gym_collect,
    nemo_gym_python,
    nemo_gym_site,
    our_collect,
    read_jsonl,
)

from support.cli import NgRun

WEATHER = ROOT / "resources_servers/simple_weather/data/example.jsonl"
OUR_AGENT = "simple_weather_simple_agent"
THEIR_AGENT = "example_single_tool_call_simple_agent"

#: NeMo Gym's own materialization of an input file (agent_ref, _ng_task_index,
#: _ng_rollout_index; rows repeated aabb): argv = input, agent, num_repeats, output path.
MATERIALIZE = r"""
import json, sys
import orjson
from nemo_gym.rollout_collection import RolloutCollectionConfig, RolloutCollectionHelper
config = RolloutCollectionConfig(input_jsonl_fpath=sys.argv[1], agent_name=sys.argv[2],
                                 num_repeats=int(sys.argv[3]), output_jsonl_fpath=sys.argv[4])
rows = RolloutCollectionHelper()._preprocess_rows_from_config(config)
with open(config.materialized_jsonl_fpath, "wb") as f:
    for row in rows:
        f.write(orjson.dumps(row) + b"\n")
print(json.dumps(str(config.materialized_jsonl_fpath)))
"""


@pytest.fixture(scope="module")
def our_rows(ours: NgRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Our collector's output on our offline stack: 5 example tasks x 2."""
    out = tmp_path_factory.mktemp("our_rows") / "ours.jsonl"
    proc = our_collect(
        f"+head_server.port={ours.head_port}",
        f"+agent_name={OUR_AGENT}",
        f"+input_jsonl_fpath={WEATHER}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=2",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def their_rows(nemo_gym: NemoGymRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """NeMo Gym's collector output on its own stack: its 5 example tasks x 2."""
    data = nemo_gym_site() / "resources_servers/example_single_tool_call/data/example.jsonl"
    out = tmp_path_factory.mktemp("their_rows") / "theirs.jsonl"
    proc = nemo_gym_collect(nemo_gym.head_url, THEIR_AGENT, data, out, "+num_repeats=2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_our_rows_responses_validate_as_nemo_gym_responses(our_rows: Path) -> None:
    report = nemo_gym_python(VALIDATE_ROWS, str(our_rows))
    assert len(report) == 10
    assert [r["response"] for r in report] == [[]] * 10


def test_our_rows_validate_as_nemo_gym_verify_responses(our_rows: Path) -> None:
    report = nemo_gym_python(VALIDATE_ROWS, str(our_rows))
    assert [r["verify_response"] for r in report] == [[]] * 10


def test_our_rows_have_every_key_nemo_gym_writes_and_our_extras(our_rows: Path, their_rows: Path) -> None:
    """NeMo Gym's rows' response has the 30 fields of openai 2.6.1's Response plus what the
    upstream added (``provider``; the emulator's ``store`` passes through its openai_model);
    ours the 31 with ``created_at`` a float, ``function_call_output`` items with ``id`` and
    ``status``, and usage complete (``cache_write_tokens``, ``cost_details``), plus our extras."""
    fields = set(
        nemo_gym_python(
            "import json; from openai.types.responses import Response; print(json.dumps(list(Response.model_fields)))"
        )
    )
    ours, theirs = read_jsonl(our_rows), read_jsonl(their_rows)
    assert len(fields) == 30 and set(theirs[0]["response"]) >= fields | {"provider"}
    for row in ours:
        response = row["response"]
        assert set(response) == fields | {"provider"}
        assert isinstance(response["created_at"], float)
        outputs = [i for i in response["output"] if i["type"] == "function_call_output"]
        assert outputs and all({"id", "status"} <= set(i) for i in outputs)
        usage = response["usage"]
        assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
        assert usage["cost_details"] == {"upstream_inference_cost": None}
        assert usage["cost"] > 0 and usage["retries"] == {} and usage["unpriced_calls"] == 0
        assert response["provider"] == "Emulator"


def test_our_example_tasks_and_generated_ones_are_valid_nemo_gym_input(tmp_path: Path) -> None:
    generated = tmp_path / "generated.jsonl"
    script = ROOT / "resources_servers/simple_weather/generate_tasks.py"
    subprocess.run([sys.executable, str(script), "-n", "50", "--out", str(generated)], check=True, capture_output=True)
    # The examples this repository ships (tracked by git): an environment of your own in the
    # tree is not ours to validate, and must not make this fail.
    tracked = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "resources_servers/*/data/example.jsonl"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    shipped = [ROOT / f for f in sorted(tracked)]
    assert {p.parent.parent.name for p in shipped} >= {"simple_weather", "calculator"}
    files = [*shipped, generated]
    for data in files:
        report = nemo_gym_python(VALIDATE_ROWS, str(data))
        assert report and [r["run_request"] for r in report] == [[]] * len(report), data


def test_nemo_gym_reward_profiling_reads_our_rows(our_rows: Path, tmp_path: Path) -> None:
    """RewardProfiler.profile_from_data on our rows, with inputs materialized by NeMo Gym itself."""
    materialized = nemo_gym_python(MATERIALIZE, str(WEATHER), OUR_AGENT, "2", str(tmp_path / "ours.jsonl"))
    report = nemo_gym_python(REWARD_PROFILE, materialized, str(our_rows))
    assert report["group"] == 5
    (agent,) = report["agent"]
    assert agent["agent_ref"] == {"name": OUR_AGENT}
    ours = [r["reward"] for r in read_jsonl(our_rows)]
    assert agent["mean/reward"] == pytest.approx(sum(ours) / len(ours))
    assert "mean/input_tokens" in agent  # it flattens response.usage into the metrics


def test_nemo_gym_reward_profile_command_runs_on_our_output(our_rows: Path, tmp_path: Path) -> None:
    out = tmp_path / our_rows.name
    shutil.copy(our_rows, out)
    materialized = our_rows.with_name(our_rows.stem + "_materialized_inputs.jsonl")
    assert materialized.is_file(), f"no {materialized.name} next to our output"
    proc = nemo_gym_cli(
        "ng_reward_profile",
        f"+materialized_inputs_jsonl_fpath={materialized}",
        f"+rollouts_jsonl_fpath={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / (out.stem + "_agent_metrics.json")).is_file()


def test_our_resume_counts_nemo_gym_rows_as_done(ours: NgRun, their_rows: Path, tmp_path: Path) -> None:
    out = tmp_path / "resume.jsonl"
    shutil.copy(their_rows, out)
    theirs = read_jsonl(their_rows)
    proc = our_collect(
        f"+head_server.port={ours.head_port}",
        f"+agent_name={OUR_AGENT}",
        f"+input_jsonl_fpath={nemo_gym_site() / 'resources_servers/example_single_tool_call/data/example.jsonl'}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=2",
        "+resume=true",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert read_jsonl(out) == theirs  # nothing re-run, nothing rewritten
    metrics = json.loads((tmp_path / "resume_metrics.json").read_text())
    assert metrics["resumed_from_output"] == metrics["succeeded"] == 10
    assert metrics["metrics"]["reward"]["mean"] == pytest.approx(sum(r["reward"] for r in theirs) / 10)
    assert metrics["tokens"]["input"] == sum(r["response"]["usage"]["input_tokens"] for r in theirs)


def test_our_resume_completes_a_partial_nemo_gym_output(ours: NgRun, their_rows: Path, tmp_path: Path) -> None:
    """NeMo Gym writes rows in completion order; we resume from whatever (task, rollout) pairs are there."""
    out = tmp_path / "partial.jsonl"
    theirs = read_jsonl(their_rows)
    out.write_text("".join(json.dumps(r) + "\n" for r in theirs[:4]))
    proc = our_collect(
        f"+head_server.port={ours.head_port}",
        f"+agent_name={OUR_AGENT}",
        f"+input_jsonl_fpath={nemo_gym_site() / 'resources_servers/example_single_tool_call/data/example.jsonl'}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=2",
        "+resume=true",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = read_jsonl(out)
    assert rows[:4] == theirs[:4]
    pairs = sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows)
    assert pairs == [(t, k) for t in range(5) for k in range(2)]


#: POST Responses and Chat bodies to argv[1] (a /v1 base URL) and validate the answers with the
#: models NeMo Gym's agents and model servers use; prints the error lists.
NEMO_GYM_READS_MODEL = r"""
import json, sys
import httpx
from pydantic import ValidationError
from nemo_gym.openai_utils import NeMoGymChatCompletion, NeMoGymResponse
tool = {"type": "function", "name": "get_weather", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                       "additionalProperties": False}}
chat_tool = {"type": "function", "function": {k: v for k, v in tool.items() if k != "type"}}
calls = {
    "responses_tool_call": ("/responses", {"input": "what's it like in sf?", "tools": [tool]}, NeMoGymResponse),
    "responses_text": ("/responses", {"input": "say hello"}, NeMoGymResponse),
    "chat_tool_call": ("/chat/completions",
                       {"messages": [{"role": "user", "content": "what's it like in sf?"}], "tools": [chat_tool]},
                       NeMoGymChatCompletion),
    "chat_text": ("/chat/completions", {"messages": [{"role": "user", "content": "say hello"}]}, NeMoGymChatCompletion),
}
out = {}
for name, (path, body, model) in calls.items():
    resp = httpx.post(sys.argv[1] + path, json={"model": sys.argv[2], **body}, timeout=30,
                      headers={"Authorization": "Bearer sk-dummy"})
    try:
        model.model_validate(resp.json())
        out[name] = []
    except ValidationError as exc:
        out[name] = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()][:10]
    except ValueError:
        out[name] = [f"HTTP {resp.status_code}: {resp.text[:200]}"]
print(json.dumps(out))
"""


def test_nemo_gym_models_read_our_model_server_and_emulator_bodies(ours: NgRun) -> None:
    """What NeMo Gym's simple_agent (NeMoGymResponse) and its model servers validate our answers with."""
    urls = {r["name"]: r["url"] for r in ours.wait_ready()}
    for base in (urls["policy_model"] + "/v1", urls["provider_emulator"] + "/api/v1"):
        report = nemo_gym_python(NEMO_GYM_READS_MODEL, base, "emulator/scripted-tool-caller")
        assert report == {k: [] for k in report}, (base, report)
