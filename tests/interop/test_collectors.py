"""Each toolkit's ``ng_collect_rollouts`` against the other's ``ng_run``.

Acceptance (issue 10): every row completes and the rewards equal those of the native pairing
(the same collector's own toolkit on the same input). What NeMo Gym's collector needs from a
head server is in docs/nemo_gym.md ("Head server").
"""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml
from interop_harness import (
    ROOT,
    NemoGymRun,
    nemo_gym_collect,
    nemo_gym_python,
    nemo_gym_site,
    our_collect,
    read_jsonl,
    rewards_by_task,
)

from support.cli import NgRun

WEATHER = ROOT / "resources_servers/simple_weather/data/example.jsonl"
OUR_AGENT = "simple_weather_simple_agent"
THEIR_AGENT = "example_single_tool_call_simple_agent"


def _head_port(url: str) -> str:
    return url.rsplit(":", 1)[1]


def _our_native(ours: NgRun, tmp: Path, *extra: str) -> list[dict]:
    out = tmp / "our_native.jsonl"
    proc = our_collect(
        f"+head_server.port={ours.head_port}",
        f"+agent_name={OUR_AGENT}",
        f"+input_jsonl_fpath={WEATHER}",
        f"+output_jsonl_fpath={out}",
        *extra,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return read_jsonl(out)


def test_nemo_gym_collector_completes_every_row_against_our_ng_run(ours: NgRun, tmp_path: Path) -> None:
    native = _our_native(ours, tmp_path, "+num_repeats=2")
    out = tmp_path / "theirs_on_ours.jsonl"
    proc = nemo_gym_collect(ours.head_url, OUR_AGENT, WEATHER, out, "+num_repeats=2", "+num_samples_in_parallel=4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_jsonl(out)
    assert len(rows) == len(native) == 10
    assert rewards_by_task(rows) == rewards_by_task(native)
    assert (tmp_path / "theirs_on_ours_agent_metrics.json").is_file()  # its reward profiling ran on our rows


def test_our_collector_completes_every_row_against_nemo_gym_ng_run(nemo_gym: NemoGymRun, tmp_path: Path) -> None:
    data = nemo_gym_site() / "resources_servers/example_single_tool_call/data/example.jsonl"
    native_out = tmp_path / "native.jsonl"
    proc = nemo_gym_collect(nemo_gym.head_url, THEIR_AGENT, data, native_out, "+num_repeats=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "ours_on_theirs.jsonl"
    proc = our_collect(
        f"+head_server.port={nemo_gym.head_port}",
        f"+agent_name={THEIR_AGENT}",
        f"+input_jsonl_fpath={data}",
        f"+output_jsonl_fpath={out}",
        "+num_repeats=2",
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = read_jsonl(out)
    assert len(rows) == 10
    assert rewards_by_task(rows) == rewards_by_task(read_jsonl(native_out))


def test_our_head_server_gives_nemo_gym_clients_every_address_and_no_secret(ours: NgRun) -> None:
    """NeMo Gym's ServerClient.load_from_global_config: GET /global_config_dict_yaml, json.loads,
    OmegaConf.create, then get_first_server_config_dict(cfg, name) -> host, port."""
    code = r"""
import json, sys
from nemo_gym.global_config import get_first_server_config_dict
from nemo_gym.server_utils import ServerClient, BaseServerConfig
client = ServerClient.load_from_global_config(BaseServerConfig(host="127.0.0.1", port=int(sys.argv[1])))
names = json.loads(sys.argv[2])
print(json.dumps({n: f"http://{get_first_server_config_dict(client.global_config_dict, n)['host']}:"
                     f"{get_first_server_config_dict(client.global_config_dict, n)['port']}" for n in names}))
"""
    ours_instances = {r["name"]: r["url"] for r in ours.wait_ready()}
    import json

    got = nemo_gym_python(code, str(ours.head_port), json.dumps(sorted(ours_instances)))
    assert got == ours_instances
    text = httpx.get(ours.head_url + "/global_config_dict_yaml", timeout=5).json()
    assert "sk-or-emulator-offline-key" not in text  # configs/offline.yaml's policy_api_key
    assert isinstance(yaml.safe_load(text), dict)
    listed = httpx.get(ours.head_url + "/server_instances", timeout=5).json()
    assert {r["config_path"]: r["url"] for r in listed} == ours_instances
    agent = next(r for r in listed if r["process_name"] == OUR_AGENT)
    assert agent["name"] == "simple_agent" and agent["server_type"] == "responses_api_agents"


def test_nemo_gym_status_command_reads_our_head_server(ours: NgRun, tmp_path: Path) -> None:
    """ng_status: GET /server_instances, each row through its ServerInstanceDisplayConfig."""
    code = r"""
import json, sys
import requests
from nemo_gym.server_utils import ServerInstanceDisplayConfig
rows = requests.get(f"http://127.0.0.1:{sys.argv[1]}/server_instances", timeout=5).json()
shown = [ServerInstanceDisplayConfig(**row) for row in rows]
print(json.dumps(sorted((s.process_name, s.server_type, s.name, s.status) for s in shown)))
"""
    shown = nemo_gym_python(code, str(ours.head_port))
    assert ["simple_weather_simple_agent", "responses_api_agents", "simple_agent", "success"] in shown
    assert len(shown) == 4


def test_our_collector_honours_nemo_gym_collector_keys(ours: NgRun, tmp_path: Path) -> None:
    """NeMo Gym's documented keys with its semantics (docs/nemo_gym.md, "Collector keys"):
    num_repeats_add_seed puts seed = rollout index into responses_create_params;
    resume_from_cache=true skips the (task, rollout) pairs already in the output."""
    out = tmp_path / "keys.jsonl"
    common = [
        f"+head_server.port={ours.head_port}",
        f"+agent_name={OUR_AGENT}",
        f"+input_jsonl_fpath={WEATHER}",
        f"+output_jsonl_fpath={out}",
        "+limit=2",
        "+num_repeats=2",
        "+num_samples_in_parallel=2",
    ]
    proc = our_collect(*common, "+num_repeats_add_seed=true")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = read_jsonl(out)
    assert sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert all(r["responses_create_params"].get("seed") == r["_ng_rollout_index"] for r in rows)
    out.write_text("".join(line + "\n" for line in out.read_text().splitlines()[:3]))
    proc = our_collect(*common, "+num_repeats_add_seed=true", "+resume_from_cache=true")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert len(read_jsonl(out)) == 4
