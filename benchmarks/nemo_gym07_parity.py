"""Re-verification parity on NeMo Gym 0.7.0's environments: how many recorded rollouts of
each environment's ``data/example_rollouts.jsonl`` get their recorded reward back from the
environment's resources server, on NeMo Gym's own stack and under our ``ng_run``.

    .venv/bin/python benchmarks/nemo_gym07_parity.py --stack nemo_gym    # every offline env
    .venv/bin/python benchmarks/nemo_gym07_parity.py --stack ours --envs mcqa,example_multi_step

Needs ``.interop/nemo-gym07-py313`` (``scripts/interop_setup``: nemo-gym 0.7.0 on Python
3.13.0 with ``--ignore-requires-python``, a test deviation: it declares >= 3.13.14).

Per rollout, as 0.7's agent and ``gym eval reverify`` do: the verify body is the task's input
row (its line of ``example.jsonl``, found by ``_ng_task_index`` or by its input; a rollout
with no such line carries its task fields itself) with the recorded ``response``. One HTTP
client per rollout carries the resources server's session cookie as 0.7's simple_agent does:
``POST /seed_session`` (the row), then, for environments that keep state in the session,
each recorded ``function_call`` replayed to its tool route, then ``POST /verify``. A row is
reproduced when the reward returned equals the recorded one (1e-6).

Stacks:

- ``nemo_gym``: each resources server started as 0.7's ``ng_run`` starts it (``python app.py``
  in its folder, ``NEMO_GYM_CONFIG_DICT`` / ``NEMO_GYM_CONFIG_PATH``), from the 0.7 venv or,
  for a folder whose ``requirements.txt`` asks for more, a venv that sees the 0.7 venv
  through a ``.pth`` file plus those requirements (built once per requirements set into
  ``.interop/nemo-gym07-envs/``). Servers that initialise Ray join one shared local cluster.
- ``ours``: our ``ng_run`` (``--ng-run``, default this checkout's) on
  ``configs/offline_model.yaml`` + the environment's config as NeMo Gym ships it
  (``nemo_gym:<path>``), hosting NeMo Gym's servers from ``+nemo_gym.venv=<the 0.7 venv>``.

Prints a table (environment | rows | reproduced | rate | notes) and writes JSON (``--json``).
The environments left out (network, Docker, GPU, an LLM judge, data not shipped) are listed
with why in ``EXCLUDED`` and in the JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "interop"), str(ROOT / "tests")]

# The interop suite's peers: one way to start a process for sure, a Ray head on free ports.
from interop_harness import NG_ENV, Process, RayHead, free_port, nemo_gym_site  # noqa: E402

INTEROP = ROOT / ".interop"
#: nemo-gym 0.7.0's venv ($NG07_VENV: another one with nemo-gym 0.7.0 installed)
BASE_VENV = Path(os.environ.get("NG07_VENV") or INTEROP / "nemo-gym07-py313")
ENV_VENVS = INTEROP / "nemo-gym07-envs"
HOSTED_CACHE = INTEROP / "nemo-gym07-hosted"
OUR_NG_RUN = Path(sys.executable).parent / "ng_run"
TOLERANCE = 1e-6


@dataclass(frozen=True)
class Environment:
    """One of 0.7's environments re-verified offline: ``resources_servers/<name>``."""

    name: str
    #: its config under ``configs/`` (default ``<name>.yaml``)
    config: str = ""
    #: replay the recorded tool calls in the session before /verify (state lives there)
    session_replay: bool = False
    #: fields of its resources server block set for the run (both stacks alike)
    overrides: dict[str, Any] = field(default_factory=dict)
    #: top-level keys the other servers of its config interpolate (``--stack ours`` starts
    #: them all; NeMo Gym's stack here starts the resources server alone)
    globals: dict[str, Any] = field(default_factory=dict)
    #: servers of its config that cannot start (``--stack ours`` deletes them: ``~<name>``,
    #: what our ng_run's start-up error says to type; NeMo Gym's stack here starts the
    #: resources server alone)
    drop: tuple[str, ...] = ()
    notes: str = ""

    @property
    def config_file(self) -> str:
        return f"resources_servers/{self.name}/configs/{self.config or self.name + '.yaml'}"


E = Environment
#: Every 0.7.0 environment whose resources server verifies without network, Docker, GPU or an
#: LLM judge (the survey of the wheel's 145, /tmp/research/ng07_envs.md: 54 feasible). A
#: model reference in a resources server's block (a judge never called on these rows) is
#: pointed at ``policy_model``, which both stacks serve.
ENVIRONMENTS: tuple[Environment, ...] = (
    E("arc_agi"),
    E("asr_with_pc"),
    E("assaybench"),
    E("bunsenbench_chemistry_mcq"),
    E("calendar"),
    E("circle_click"),
    E("circle_count"),
    E("citation_if"),
    E("code_gen", notes="ray_enabled: joins a local Ray cluster; runs the unit tests in subprocesses"),
    E("equivalence_rule", config="lc.yaml"),
    E(
        "example_mcp_weather",
        session_replay=True,
        globals={"anthropic_api_key": "none"},  # its config's claude_code_agent interpolates it
        notes="state in the session: tool calls replayed",
    ),
    E("example_multi_step"),
    E("example_session_state_mgmt", session_replay=True, notes="state in the session: tool calls replayed"),
    E("example_single_tool_call"),
    E("example_tool_call_multireward"),
    E("format_verification", config="freeform_formatting.yaml"),
    E("fukuyamabench"),
    E("generative_reward_model", config="genrm_train.yaml"),
    E("google_search", overrides={"google_api_key": "x", "google_cx": "x"}, notes="verify needs no search: dummy keys"),
    E("gpqa_diamond"),
    E("graphwalks"),
    E("gui_coordinate"),
    E("hotpotqa_qa"),
    E("iheval"),
    E("image_tools", config="image_tools_pivot.yaml"),
    E("imo_gradingbench"),
    E(
        "lc_niah",
        overrides={"overlap_metric_rule": "lcs"},
        notes="recorded with overlap_metric_rule=lcs (config: ngram)",
    ),
    E("litmus_agent", overrides={"sandbox_provider": None}, notes="sandbox_provider=null: verify needs none"),
    E("math_proof_judgement"),
    E("math_with_autograder", overrides={"should_use_judge": False}, notes="should_use_judge=false"),
    E("math_with_code"),
    E("math_with_judge"),
    E("mcqa"),
    E("moldetox"),
    E("mrcr"),
    E("nvarc", config="transductive.yaml"),
    E("physics_judge", notes="math-verify passes every row: the judge is never called"),
    E("polymath"),
    E("proof_genselect"),
    E("ragtruth"),
    E("reasoning_gym", config="resources_only.yaml"),
    E("ruler2"),
    E("scicodepile"),
    E("single_step_tool_use_with_argument_comparison"),
    E("spartqa"),
    E("string_match"),
    E("structeval", config="structeval_nonrenderable.yaml"),
    E("swe_pivot"),
    E("swerl_llm_judge"),
    E("terminal_multi_harness", config="terminal_multi_harness_agent006.yaml"),
    E("terminus_judge", config="terminus_judge_string_only.yaml", notes="string-only config (no judge)"),
    E("ugphysics_judge", notes="math-verify passes every row: the judge is never called"),
    E(
        "widesearch",
        drop=("widesearch_example_agent", "widesearch_example_environment_server"),
        notes="its shipped config's agent (harness_exa_search) lacks required `agent` and `image` and cannot "
        "start: ours deletes it and the environment server naming it (~widesearch_example_agent "
        "~widesearch_example_environment_server); NeMo Gym's stack here starts the resources server alone",
    ),
    E("xlam_fc"),
)

#: The other 0.7.0 environments, each with why it is not re-verified offline (from the survey).
EXCLUDED: dict[str, str] = {
    "aalcr": "llm_judge: needs an LLM judge model for every recorded row",
    "abstention": "llm_judge: needs an LLM judge model for every recorded row",
    "aegis_v4_safety": "llm_judge: needs an LLM judge model for every recorded row",
    "agentif": (
        "llm_judge: needs an LLM judge; also recorded rewards are CSR-style fractions (0.75, 0.5833) while "
        "0.7.0 verify returns binary ISR, so they would not match anyway"
    ),
    "arena": "llm_judge/network: recorded 0.5/1.0 rewards come from judge games",
    "arena_judge": "llm_judge: needs an LLM judge model for every recorded row",
    "aviary": (
        "docker/network: verify returns env_id_to_total_reward[response.env_id] accumulated during the "
        "episode (stateful); git dependency"
    ),
    "bbq": (
        "llm_judge: needs two judge calls per row; recorded rows also lack "
        "`response`/`responses_create_params` (not replayable)"
    ),
    "bigcodebench": "external_binary/network/sandbox: startup needs GitHub + a large eval venv (tensorflow etc.)",
    "bird_sql": (
        "large_download: SQLite databases are downloaded from a non-PyPI host at startup (feasible only if "
        "dev_databases are pre-staged)"
    ),
    "blackjack": (
        "GymnasiumServer.verify raises NotImplementedError: rewards come from /step, so /verify replay is "
        "impossible (would need /reset + /step replay of each assistant turn)"
    ),
    "browsecomp_advanced_harness": (
        "llm_judge/network: example_rollouts.jsonl contains only '<PLACEHOLDER ROW>' lines; verify also reads"
        " per-session metrics"
    ),
    "code_fim": "network: dependency only on GitHub",
    "competitive_coding_challenges": (
        "large_download/sandbox: needs external code-execution sandbox service + test data"
    ),
    "conversational_tool_use_simulation": (
        "llm_judge: verify reads the per-session conversation state and calls the LLM judge"
    ),
    "critpt": "network: grading is done by a remote paid API",
    "cvdp": "docker/external_binary/sandbox: RTL is graded by simulator harness in containers",
    "deepsearchqa": "llm_judge: needs judge; recorded rows carry no `reward` field",
    "deepswe": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "denovo_swe": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "equivalence_llm_judge": "llm_judge: needs an LLM judge model for every recorded row",
    "ether0": "large_download/network: git clone at startup",
    "evalplus": "network: dataset download from GitHub at startup (cache could be pre-staged)",
    "example_multi_turn_gymnasium": (
        "GymnasiumServer.verify raises NotImplementedError: rewards come from /step, so /verify replay is "
        "impossible (would need /reset + /step replay of each assistant turn)"
    ),
    "false_statement_judge": "llm_judge: needs an LLM judge model for every recorded row",
    "finance_agent_v2": (
        "large_download/llm_judge/network: judge decides reward; git dependency (finance-agent) not on PyPI"
    ),
    "finance_sec_search": "llm_judge/network: judge decides reward",
    "frontierscience_judge": "llm_judge: needs an LLM judge model for every recorded row",
    "gdp_pdf": "llm_judge: needs an LLM judge model for every recorded row",
    "gdpval": "external_binary/llm_judge: judge panel decides reward",
    "genrm_compare": (
        "llm_judge: needs GenRM model; cohort-based verify; recorded rows have no `response` or `reward`"
    ),
    "grl_sokoban": (
        "GymnasiumServer.verify raises NotImplementedError: rewards come from /step, so /verify replay is "
        "impossible (would need /reset + /step replay of each assistant turn)"
    ),
    "grl_tetris": (
        "GymnasiumServer.verify raises NotImplementedError: rewards come from /step, so /verify replay is "
        "impossible (would need /reset + /step replay of each assistant turn)"
    ),
    "gymnasium": "not a standalone server; /verify raises NotImplementedError",
    "ifbench": "network: GitHub clone + non-PyPI spaCy model",
    "imo_proofbench_judge": "llm_judge: needs an LLM judge model for every recorded row",
    "indian_banking": "llm_judge: GymnasiumServer (no /verify); needs user-simulator/judge model",
    "indirect_prompt_injection": (
        "rollout rows lack `injection`/`required_tools` and do not match example.jsonl inputs (from a "
        "different dataset), so the verify request cannot be built"
    ),
    "instruction_following": "network: dependencies only on GitHub",
    "interactive_browser": (
        "external_binary/network: verify measures the live browser session state (session must exist)"
    ),
    "inverse_if": "llm_judge: needs an LLM judge model for every recorded row",
    "jailbreak_detection": "llm_judge: needs judge; example_rollouts.jsonl contains only '<PLACEHOLDER ROW>' lines",
    "job_bench": "large_download/llm_judge/sandbox: sandbox + external judge",
    "labbench2_vlm": "llm_judge: needs an LLM judge model for every recorded row",
    "legal_agent_bench": (
        "docker/llm_judge/network: verify is a constant 0.0 (reward comes from Harbor via the agent); startup"
        " downloads assets. A plain /verify returns 0.0 = recorded 0.0, but it tests nothing"
    ),
    "longmemeval": "llm_judge: needs an LLM judge model for every recorded row",
    "longmt_eval": (
        "gpu/large_download/network: reward is the SEGALE/COMET score (recorded 0.5-0.77); "
        "compute_segale=false returns 0.0"
    ),
    "math_advanced_calculations": (
        "rollout rows lack required `ground_truth`/`id`/`depth`/`breadth` and do not match any example.jsonl row"
    ),
    "math_formal_lean": "external_binary/sandbox: proofs are compiled by an external Lean sandbox",
    "multichallenge": "llm_judge: needs judge; recorded rows have no `response` or `reward`",
    "nemo_user_sim": (
        "llm_judge/network: verify requires a seeded episode and judge models; recorded rows lack `response`"
    ),
    "newton_bench": (
        "network: verify needs session metadata from /seed_session + experiments; startup clones GitHub and "
        "demands an API key"
    ),
    "ns_tools": "network/sandbox: git-only dependency; verify proxies to a separate verifier server",
    "omniscience": "llm_judge: needs an LLM judge model for every recorded row",
    "openair_congestion": (
        "GymnasiumServer.verify raises NotImplementedError: rewards come from /step, so /verify replay is "
        "impossible (would need /reset + /step replay of each assistant turn)"
    ),
    "openenv": (
        "network: verify returns reward accumulated by /step in the session (all recorded rewards 0.0, so a "
        "plain /verify would trivially match), but install needs GitHub-only packages"
    ),
    "osworld": "docker/sandbox: verify evaluates the live VM session",
    "over_refusal_detection": (
        "llm_judge: needs judge; example_rollouts.jsonl contains only '<PLACEHOLDER ROW>' lines"
    ),
    "proof_judge": "llm_judge: needs an LLM judge model for every recorded row",
    "proof_verification": "llm_judge: needs an LLM judge model for every recorded row",
    "rolemrc": (
        "large_download/llm_judge/network: server startup fails offline: NLTK wordnet/punkt data are not on "
        "PyPI and the LookupError is not caught (reference-mode reward would be ROUGE-L otherwise)"
    ),
    "ruler": "rollout rows lack required `outputs`/`length`/`subset` and do not match example.jsonl",
    "scale_swe": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "scicode": "large_download: verify needs test_data.h5 targets; not downloadable from PyPI",
    "sec_local_index": "not a standalone resources server (no /verify); rollouts rows exist but cannot be verified",
    "simpleqa": "llm_judge: needs an LLM judge model for every recorded row",
    "speed_bench": (
        "network: verify fails without a reachable vLLM/SGLang /metrics endpoint (reward itself is a constant"
        " 0.0 placeholder)"
    ),
    "spider2_lite": (
        "large_download: DB download from non-PyPI host; also rollout rows lack gold fields "
        "(condition_cols/ignore_order) and do not match example.jsonl"
    ),
    "structured_outputs": "rollout rows lack required `schema_str` etc. and do not match example.jsonl inputs",
    "swe_next": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "swe_rebench": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "swebench": "docker/network/sandbox: verify runs SWE-bench tests in containers",
    "swebench_pro": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "swemer_oml": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "swemer_v1": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "swemer_v2": (
        "docker/network/sandbox: verify runs tests inside a per-task container sandbox and extracts the patch"
        " from the agent's sandbox session"
    ),
    "swerl_gen": "external_binary/network/sandbox: verify executes tests inside singularity images",
    "tales": "network: GymnasiumServer (no /verify); git-only dependency",
    "tavily_search": "llm_judge/network: example_rollouts.jsonl contains only '<PLACEHOLDER ROW>' lines",
    "terminal_bench_2_1": "docker/sandbox: verify runs the task's tests in a sandbox container",
    "terminal_bench_4": "docker/network/sandbox: verify runs verifier in sandbox containers",
    "text_to_sql": "llm_judge: needs an LLM judge model for every recorded row",
    "toolsandbox": (
        "llm_judge/network: verify pops scoring computed during /step playback keyed by response.env_id "
        "(stateful); needs user-simulator model"
    ),
    "verifif": "llm_judge/network: every example row has 5 llm_judge criteria besides the rule-based ones",
    "vibench": (
        "docker/external_binary/network/sandbox: grading shells into a ViBench checkout with docker-compose/playwright"
    ),
    "vlm_eval_kit": "network: git clone at startup",
    "wmt_translation": (
        "gpu/large_download/network: verify downloads the FLORES-200 SentencePiece model (non-PyPI host) -> "
        "URLError offline"
    ),
    "wordle": (
        "GymnasiumServer.verify raises NotImplementedError: rewards come from /step, so /verify replay is "
        "impossible (would need /reset + /step replay of each assistant turn)"
    ),
    "workplace_assistant": (
        "rollout rows lack required `ground_truth`/`id`/`category`/`environment_name` and their prompts are "
        "not in example.jsonl"
    ),
    "workspace_bench": "large_download/llm_judge/sandbox: sandbox + external judge",
    "xstest": "llm_judge: needs an LLM judge model for every recorded row",
}

LIGHT = ("example_single_tool_call", "mcqa", "example_multi_step")


# --------------------------------------------------------------------------- the 0.7 install


def site(venv: Path = BASE_VENV) -> Path:
    """The site-packages of ``venv`` (the 0.7 venv's: NeMo Gym's root, its server folders)."""
    return nemo_gym_site(venv)


def requirements(folder: Path) -> list[str]:
    """A server folder's extra requirements (minus 0.7's self-reference ``-e nemo-gym @ ../..``)."""
    path = folder / "requirements.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    out = [line.split(" #", 1)[0].strip() for line in lines]
    return [line for line in out if line and not line.startswith("#") and "../.." not in line]


def env_python(folder: Path, log: Path) -> Path:
    """The interpreter 0.7's ng_run would give ``folder``: the base venv's, or a venv with its
    extra requirements on top (built once per requirements set, stamped when complete)."""
    extra = requirements(folder)
    if not extra:
        return BASE_VENV / "bin/python"
    key = hashlib.sha256(json.dumps([str(BASE_VENV.resolve()), sorted(extra)]).encode()).hexdigest()[:16]
    venv = ENV_VENVS / key
    stamp = venv / ".parity-stamp"
    # The base venv's real path: the .interop link of the checkout that built this venv may be gone.
    base_site = str(site().resolve()) + "\n"
    if stamp.is_file():
        pth = site(venv) / "_nemo_gym07_base.pth"
        if pth.read_text() != base_site:  # built through another checkout's link: see the base where it is
            pth.write_text(base_site)
        return venv / "bin/python"
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    base_python = str(BASE_VENV / "bin/python")
    with open(log, "ab") as out:
        subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True, stdout=out, stderr=out)
        (site(venv) / "_nemo_gym07_base.pth").write_text(base_site)
        pip = [base_python, "-m", "pip", "--python", str(venv / "bin/python"), "install", "--no-input"]
        done = subprocess.run([*pip, "--ignore-requires-python", *extra], stdout=out, stderr=out)
    if done.returncode != 0:
        raise RuntimeError(f"installing {extra} for {folder.name} failed (see {log})")
    stamp.write_text(json.dumps(extra) + "\n")
    return venv / "bin/python"


# --------------------------------------------------------------------------- rows


def _input_key(params: Any) -> str:
    """A task's input, comparable across the input file and a recorded rollout."""
    items = (params or {}).get("input")
    if isinstance(items, str):
        return items
    texts = []
    for item in items or []:
        content = item.get("content") if isinstance(item, dict) else item
        if isinstance(content, list):
            content = "".join(str(c.get("text") or "") if isinstance(c, dict) else str(c) for c in content)
        texts.append(content if content is not None else json.dumps(item, sort_keys=True))
    return json.dumps(texts)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


@dataclass
class Rollout:
    body: dict[str, Any]
    recorded: float | None
    calls: list[tuple[str, str]]  # recorded (tool name, arguments) in order
    joined: bool


def repaired(response: Any) -> Any:
    """A recorded response as 0.7.0's ``NeMoGymResponse`` accepts it (a few environments shipped
    rows it refuses with 422; the survey's repairs, the same on both stacks): usage in Chat
    Completions' keys (mrcr, ruler2) dropped; a synthetic response's missing required fields
    (image_tools) given their defaults."""
    if not isinstance(response, dict):
        return response
    response = dict(response)
    if isinstance(response.get("usage"), dict) and "prompt_tokens" in response["usage"]:
        del response["usage"]
    for key, default in (("created_at", 0.0), ("parallel_tool_calls", True), ("tool_choice", "auto"), ("tools", [])):
        response.setdefault(key, default)
    return response


def rollouts(folder: Path) -> list[Rollout]:
    """The verify bodies of ``data/example_rollouts.jsonl``, each joined to its input row."""
    inputs = _read_jsonl(folder / "data/example.jsonl")
    keys = [_input_key(r.get("responses_create_params")) for r in inputs]
    task_keys = set().union(*(set(r) for r in inputs)) if inputs else set()
    out = []
    for row in _read_jsonl(folder / "data/example_rollouts.jsonl"):
        key = _input_key(row.get("responses_create_params"))
        index = row.get("_ng_task_index")
        source = None
        if isinstance(index, int) and index < len(inputs) and keys[index] == key:
            source = inputs[index]
        elif key in keys:
            source = inputs[keys.index(key)]
        if source is not None:
            body = dict(source)
        else:  # no input line: the recorded row's task fields (0.7's models refuse explicit nulls)
            body = {k: row[k] for k in task_keys | {"responses_create_params"} if k in row}
            params = body.get("responses_create_params")
            if isinstance(params, dict):
                body["responses_create_params"] = {k: v for k, v in params.items() if v is not None}
        body.pop("reward", None)
        body["response"] = repaired(row.get("response"))
        output = (row.get("response") or {}).get("output") or []
        calls = [(i["name"], i.get("arguments") or "{}") for i in output if i.get("type") == "function_call"]
        out.append(Rollout(body, row.get("reward"), calls, source is not None))
    return out


def replay(url: str, rollout: Rollout, session_replay: bool, timeout: float = 120) -> dict[str, Any]:
    """One rollout through the resources server at ``url``; its reward and whether it matches."""
    with httpx.Client(base_url=url, timeout=timeout, trust_env=False) as client:  # keeps the session cookie
        seed = {k: v for k, v in rollout.body.items() if k != "response"}
        client.post("/seed_session", json=seed)
        if session_replay:
            for name, arguments in rollout.calls:
                try:
                    args = json.loads(arguments)
                except ValueError:
                    args = {}
                client.post(f"/{name}", json=args)
        answer = client.post("/verify", json=rollout.body)
    got = answer.json().get("reward") if answer.status_code == 200 else None
    want = rollout.recorded
    match = (
        got is not None
        and want is not None
        and math.isclose(float(got), float(want), rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    )
    error = None if answer.status_code == 200 else f"{answer.status_code}: {answer.text[:200]}"
    return {"recorded": want, "got": got, "match": match, "joined": rollout.joined, "error": error}


# --------------------------------------------------------------------------- processes


def wait_http(url: str, process: Process, timeout: float, ok: Any = lambda r: True) -> httpx.Response:
    """Until ``url`` gives an answer ``ok`` accepts (any, by default); that answer."""
    deadline = time.monotonic() + timeout
    while True:
        if not process.alive():
            raise RuntimeError(f"exited {process.proc.returncode}: {process.output(15)}")
        try:
            answer = httpx.get(url, timeout=2, trust_env=False)
            if ok(answer):
                return answer
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} not ready within {timeout} s: {process.output(15)}")
        time.sleep(0.1)


def _instance(config: dict[str, Any], name: str) -> tuple[str, str, dict[str, Any]]:
    ((server_type, impls),) = config[name].items()
    ((impl, block),) = impls.items()
    return server_type, impl, block


def _config_of(env: Environment, root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / env.config_file).read_text()) or {}


def resources_instance(env: Environment, root: Path) -> str:
    config = _config_of(env, root)
    names = [k for k, v in config.items() if isinstance(v, dict) and "resources_servers" in v]
    if len(names) != 1:
        raise RuntimeError(f"{env.config_file}: expected one resources server, found {names}")
    return names[0]


def block_overrides(env: Environment, block: dict[str, Any]) -> dict[str, Any]:
    """What the run sets in the resources server's block: the environment's overrides, and
    every model reference (a judge these rows never call) pointed at ``policy_model``."""
    out: dict[str, Any] = {}
    for key, value in block.items():
        if isinstance(value, dict) and value.get("type") == "responses_api_models":
            out[key] = {**value, "name": "policy_model"}
    return {**out, **env.overrides}


#: ``policy_model`` for NeMo Gym's stack: a model server block nothing calls on these rows.
DUMMY_POLICY = {
    "policy_model": {
        "responses_api_models": {
            "openai_model": {
                "entrypoint": "app.py",
                "host": "127.0.0.1",
                "port": 9,
                "openai_base_url": "http://127.0.0.1:9/v1",
                "openai_api_key": "none",
                "openai_model": "none",
            }
        }
    }
}


def _needs_ray(folder: Path) -> bool:
    text = (folder / "app.py").read_text(errors="replace")
    return "ray_enabled = False" not in text


@contextlib.contextmanager
def nemo_gym_resources_server(env: Environment, tmp: Path, ray: Any) -> Iterator[str]:
    """``resources_servers/<env>`` as 0.7's ng_run starts it; its base URL."""
    root = site()
    name = resources_instance(env, root)
    server_type, impl, block = _instance(_config_of(env, root), name)
    folder = root / server_type / impl
    python = env_python(folder, tmp / "venvs.log")
    port = free_port()
    config: dict[str, Any] = {
        "head_server": {"host": "127.0.0.1", "port": free_port()},
        "dry_run": False,
        **DUMMY_POLICY,
        name: {server_type: {impl: {**block, **block_overrides(env, block), "host": "127.0.0.1", "port": port}}},
    }
    if _needs_ray(folder):
        config["ray_head_node_address"] = ray().address
    venv = python.parent.parent
    child_env = {
        **os.environ,
        **NG_ENV,
        "NEMO_GYM_CONFIG_DICT": yaml.safe_dump(config),
        "NEMO_GYM_CONFIG_PATH": name,
        "PYTHONPATH": str(folder),
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}",
        "HF_HOME": str(tmp / "hf"),
    }
    process = Process([str(python), "app.py"], cwd=folder, env=child_env, log=tmp / f"{env.name}.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url, process, 300)
        yield url
    finally:
        process.stop(signal.SIGINT, timeout=10)


def _hydra_overrides(prefix: str, values: dict[str, Any]) -> list[str]:
    """``++a.b.c=<json>`` per leaf (null, booleans, numbers and quoted strings read as Hydra does)."""
    out = []
    for key, value in values.items():
        if isinstance(value, dict):
            out += _hydra_overrides(f"{prefix}.{key}", value)
        else:
            out.append(f"++{prefix}.{key}={json.dumps(value)}")
    return out


@contextlib.contextmanager
def our_resources_server(env: Environment, tmp: Path, ng_run: Path) -> Iterator[str]:
    """Our ``ng_run`` on the offline model + the environment's config as NeMo Gym ships it."""
    name = resources_instance(env, site())
    server_type, impl, block = _instance(_config_of(env, site()), name)
    head = free_port()
    args = [
        str(ng_run),
        f"+config_paths=[configs/offline_model.yaml,nemo_gym:{env.config_file}]",
        f"+head_server.port={head}",
        f"+nemo_gym.venv={BASE_VENV}",
        f"+nemo_gym.cache_dir={HOSTED_CACHE}",
        "+nemo_gym.ignore_requires_python=true",
        *_hydra_overrides(f"{name}.{server_type}.{impl}", block_overrides(env, block)),
        *(f"+{key}={json.dumps(value)}" for key, value in env.globals.items()),
        *(f"~{name}" for name in env.drop),
    ]
    process = Process(args, cwd=ROOT, env={**os.environ, **NG_ENV}, log=tmp / f"{env.name}.ours.log")
    try:
        head_url = f"http://127.0.0.1:{head}"

        def ready(answer: httpx.Response) -> bool:
            rows = answer.json().get("instances") if answer.status_code == 200 else None
            return bool(rows) and all(r.get("ready") for r in rows)

        rows = wait_http(head_url + "/instances", process, 600, ready).json()["instances"]
        url = next((r["url"] for r in rows if r["name"] == name), None)
        if url is None:
            raise RuntimeError(f"our ng_run lists no {name!r}: {[r['name'] for r in rows]}")
        yield url
    finally:
        process.stop(signal.SIGINT, timeout=10)


# --------------------------------------------------------------------------- the run


def run_environment(env: Environment, stack: str, tmp: Path, ray: Any, ng_run: Path) -> dict[str, Any]:
    started = time.monotonic()
    folder = site() / "resources_servers" / env.name
    rows = rollouts(folder)
    result: dict[str, Any] = {"environment": env.name, "rows": len(rows), "notes": env.notes}
    try:
        server = (
            nemo_gym_resources_server(env, tmp, ray) if stack == "nemo_gym" else our_resources_server(env, tmp, ng_run)
        )
        with server as url:
            result["per_row"] = [replay(url, r, env.session_replay) for r in rows]
        result["reproduced"] = sum(r["match"] for r in result["per_row"])
    except Exception as exc:  # one environment's failure is a row of the table, not the end of the run
        result["reproduced"] = 0
        result["error"] = f"{type(exc).__name__}: {str(exc)[-600:]}"
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def run(stack: str, names: list[str] | None, jobs: int, ng_run: Path, tmp: Path) -> dict[str, Any]:
    chosen = [e for e in ENVIRONMENTS if names is None or e.name in names]
    unknown = sorted(set(names or ()) - {e.name for e in ENVIRONMENTS})
    if unknown:
        raise SystemExit(
            f"not among the offline environments: {unknown} (excluded: {[u for u in unknown if u in EXCLUDED]})"
        )
    heads: list[RayHead] = []

    def ray() -> RayHead:
        if not heads:
            heads.append(RayHead(BASE_VENV, tmp))
        return heads[0]

    try:
        with ThreadPoolExecutor(jobs) as pool:
            results = list(pool.map(lambda e: run_environment(e, stack, tmp, ray, ng_run), chosen))
    finally:
        for head in heads:
            head.stop()
    rows = sum(r["rows"] for r in results)
    reproduced = sum(r["reproduced"] for r in results)
    return {
        "stack": stack,
        "nemo_gym_version": "0.7.0",
        "python": "3.13.0 (--ignore-requires-python; 0.7.0 declares >=3.13.14)",
        "environments": results,
        "totals": {"environments": len(results), "rows": rows, "reproduced": reproduced},
        "excluded": EXCLUDED if names is None else {},
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"stack: {report['stack']}",
        "| environment | rows | reproduced | rate | notes |",
        "|---|---|---|---|---|",
    ]
    for r in report["environments"]:
        rate = f"{r['reproduced'] / r['rows']:.0%}" if r["rows"] else "-"
        notes = "; ".join(filter(None, [r.get("notes"), r.get("error")]))
        lines.append(f"| {r['environment']} | {r['rows']} | {r['reproduced']} | {rate} | {notes} |")
    t = report["totals"]
    rate = f"{t['reproduced'] / t['rows']:.0%}" if t["rows"] else "-"
    lines.append(f"| **{t['environments']} environments** | {t['rows']} | {t['reproduced']} | {rate} | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=("nemo_gym", "ours"), default="nemo_gym")
    parser.add_argument("--envs", help="comma-separated environments (default: every offline one)")
    parser.add_argument("--jobs", type=int, default=3, help="environments at once")
    parser.add_argument("--ng-run", type=Path, default=OUR_NG_RUN, help="our ng_run (--stack ours)")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--excluded", action="store_true", help="list the environments left out, and why")
    args = parser.parse_args()
    if args.excluded:
        for name, why in sorted(EXCLUDED.items()):
            print(f"{name}: {why}")
        return
    if not (BASE_VENV / "bin/python").exists():
        raise SystemExit(f"{BASE_VENV} is missing: run scripts/interop_setup (or set NG07_VENV)")
    names = args.envs.split(",") if args.envs else None
    with tempfile.TemporaryDirectory(prefix="ng07-parity-") as tmp:
        report = run(args.stack, names, args.jobs, args.ng_run, Path(tmp))
    print(table(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
