"""Replay NeMo Gym 0.7.0's recorded trajectories through our collector, agent and emulator.

    .venv/bin/python benchmarks/nemo_gym07_replay.py                 # every single-turn env
    .venv/bin/python benchmarks/nemo_gym07_replay.py --envs mcqa --json results/replay.json

Each row of an environment's ``data/example_rollouts.jsonl`` becomes an input row (its task
fields, from its line of ``example.jsonl`` as in ``nemo_gym07_parity.py``) whose
``responses_create_params.metadata.emulator_script`` replays the recorded model turns: the
reasoning (its ``reasoning`` items' summary texts: the emulator sends it as OpenRouter sends
a reasoning model's, our openai_model makes it a ``reasoning`` item again), the
``function_call`` items of each step, then the final message text (docs/emulator.md,
"Scripts"). Our ``ng_collect_rollouts`` then plays them with ``configs/offline_model.yaml``
(the emulator behind our openai_model), OUR simple_agent, and the environment's resources
server hosted from NeMo Gym 0.7.0 by our ``ng_run`` (``nemo_gym:<config>``,
``+nemo_gym.venv``); a row counts when the reward equals the recorded one.

``replay_script`` and ``replay_row`` do not depend on this toolkit: they turn any Responses
``output`` into an emulator script.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nemo_gym07_parity import (  # noqa: E402
    BASE_VENV,
    ENVIRONMENTS,
    HOSTED_CACHE,
    ROOT,
    TOLERANCE,
    Environment,
    _config_of,
    _hydra_overrides,
    _instance,
    block_overrides,
    resources_instance,
    rollouts,
    site,
)

OUR_BIN = Path(sys.executable).parent


def _assistant_turns_in(params: dict[str, Any]) -> int:
    """Assistant turns already in the request's input: the script's first entry is played
    after them (the emulator numbers turns by the assistant messages it is sent)."""
    from responses_api_models.provider_emulator.policy import assistant_turns, messages_from_responses

    return assistant_turns(messages_from_responses(params))


def replay_script(output: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model's turns of a recorded Responses ``output`` as an emulator script: one entry
    per model call, its reasoning (the summary texts of its ``reasoning`` items, joined as
    verifiers read them), its text and its tool calls (arguments verbatim); the agent's
    ``function_call_output`` items end a turn."""
    turns: list[dict[str, Any]] = []
    thoughts: list[str] = []
    text: list[str] = []
    calls: list[dict[str, Any]] = []

    def close() -> None:
        if text or calls or thoughts:
            turn: dict[str, Any] = {"text": "".join(text)}
            if any(thoughts):
                turn["reasoning"] = "".join(thoughts)
            if calls:
                turn["tool_calls"] = list(calls)
            turns.append(turn)
        thoughts.clear()
        text.clear()
        calls.clear()

    for item in output:
        kind = item.get("type")
        if kind == "function_call_output":
            if calls:
                close()
        elif kind == "reasoning":
            thoughts.extend(p.get("text") or "" for p in item.get("summary") or [] if isinstance(p, dict))
        elif kind == "function_call":
            calls.append({"name": item["name"], "arguments": item.get("arguments") or "{}"})
        elif kind == "message" and item.get("role", "assistant") == "assistant":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    text.append(part.get("text") or "")
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    text.append(part.get("refusal") or "")
    close()
    return turns or [{"text": ""}]


def replay_row(body: dict[str, Any]) -> dict[str, Any]:
    """A verify body (task fields, ``responses_create_params``, recorded ``response``) as an
    input row whose model answers replay the recorded ones."""
    # The recorded agent is not ours: the collector's +agent_name chooses (a row's agent_ref wins).
    row = {k: v for k, v in body.items() if k not in ("response", "agent_ref")}
    params = dict(row["responses_create_params"])
    script = [{"text": ""}] * _assistant_turns_in(params) + replay_script(body["response"].get("output") or [])
    params["metadata"] = {**(params.get("metadata") or {}), "emulator_script": json.dumps(script)}
    row["responses_create_params"] = params
    return row


def single_turn(env: Environment) -> bool:
    """Whether every recorded rollout of ``env`` is one model answer without tool calls."""
    found = rollouts(site() / "resources_servers" / env.name)
    return bool(found) and all(
        not r.calls and len(replay_script(r.body["response"].get("output") or [])) == 1 for r in found
    )


def replay_environment(env: Environment, tmp: Path, bin_dir: Path) -> dict[str, Any]:
    found = rollouts(site() / "resources_servers" / env.name)
    inputs = tmp / f"{env.name}_replay.jsonl"
    inputs.write_text("".join(json.dumps(replay_row(r.body)) + "\n" for r in found))
    agent = f"{env.name}_replay_agent"
    name = resources_instance(env, site())
    server_type, impl, block = _instance(_config_of(env, site()), name)
    (tmp / f"{agent}.yaml").write_text(
        yaml.safe_dump(
            {
                agent: {
                    "responses_api_agents": {
                        "simple_agent": {
                            "entrypoint": "app.py",
                            "resources_server": {
                                "type": "resources_servers",
                                "name": name,
                            },
                            "model_server": {"type": "responses_api_models", "name": "policy_model"},
                        }
                    }
                }
            }
        )
    )
    output = tmp / f"{env.name}_out.jsonl"
    proc = subprocess.run(
        [
            str(bin_dir / "ng_collect_rollouts"),
            f"+config_paths=[configs/offline_model.yaml,nemo_gym:{env.config_file},{tmp / f'{agent}.yaml'}]",
            f"+agent_name={agent}",
            f"+input_jsonl_fpath={inputs}",
            f"+output_jsonl_fpath={output}",
            f"+nemo_gym.venv={BASE_VENV}",
            f"+nemo_gym.cache_dir={HOSTED_CACHE}",
            "+nemo_gym.ignore_requires_python=true",
            # the same settings as the parity run (nemo_gym07_parity.Environment.overrides)
            *_hydra_overrides(f"{name}.{server_type}.{impl}", block_overrides(env, block)),
            *(f"~{dropped}" for dropped in env.drop),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    result: dict[str, Any] = {"environment": env.name, "rows": len(found), "reproduced": 0}
    if proc.returncode != 0 or not output.is_file():
        result["error"] = (proc.stdout[-400:] + proc.stderr[-800:]).strip()
        return result
    got = {r["_ng_task_index"]: r.get("reward") for r in map(json.loads, output.read_text().splitlines())}
    per_row = []
    for i, r in enumerate(found):
        reward = got.get(i)
        match = (
            reward is not None
            and r.recorded is not None
            and math.isclose(float(reward), float(r.recorded), rel_tol=TOLERANCE, abs_tol=TOLERANCE)
        )
        per_row.append({"recorded": r.recorded, "got": reward, "match": match})
    result["per_row"] = per_row
    result["reproduced"] = sum(p["match"] for p in per_row)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", help="comma-separated environments (default: every single-turn offline one)")
    parser.add_argument("--bin", type=Path, default=OUR_BIN, help="folder of our ng_collect_rollouts")
    parser.add_argument("--jobs", type=int, default=3, help="environments at once")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    names = args.envs.split(",") if args.envs else None
    chosen = [e for e in ENVIRONMENTS if (names is None and single_turn(e)) or (names and e.name in names)]
    with tempfile.TemporaryDirectory(prefix="ng07-replay-") as tmp:
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda e: replay_environment(e, Path(tmp), args.bin), chosen))
    print("| environment | rows | reproduced | notes |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['environment']} | {r['rows']} | {r['reproduced']} | {r.get('error', '')[:200]} |")
    rows, good = sum(r["rows"] for r in results), sum(r["reproduced"] for r in results)
    print(f"| **{len(results)} environments** | {rows} | {good} | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"environments": results, "rows": rows, "reproduced": good}, indent=1) + "\n")


if __name__ == "__main__":
    main()
