"""The head server: NeMo Gym's discovery routes in its shapes, and never a key."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml
from starlette.testclient import TestClient

from nemo_gym_cli.config import load_config
from nemo_gym_cli.process.head import HeadServer, redact_url
from nemo_gym_cli.server import asgi

#: Key-like values, as real ones look: each must appear in no answer of the head server.
KEY = "sk-or-v1-" + "0f3a9c1e7b2d4c5e" * 4
GATEWAY_KEY = "ng-2f1c8e7a9b3d5f60a1b2"
PROXY_PASSWORD = "hunter2-proxy-secret"
REJECTED = "sk-or-v1-broke-b7c9d1e3f5a7"

CONFIG = f"""
policy_api_key: {KEY}
gateway_key: {GATEWAY_KEY}
provider_emulator:
  responses_api_models:
    provider_emulator:
      entrypoint: app.py
      reject_keys: {{{REJECTED}: 402}}
policy_model:
  responses_api_models:
    openai_model:
      entrypoint: app.py
      openai_base_url: https://user:{PROXY_PASSWORD}@proxy.example/v1?api_key=${{gateway_key}}
      openai_api_key: ${{policy_api_key}}
      openai_model: m
      default_headers: {{X-Title: app, X-Copy: "copied ${{policy_api_key}}"}}
simple_weather:
  resources_servers:
    simple_weather:
      entrypoint: app.py
      domain: agent
simple_weather_simple_agent:
  responses_api_agents:
    simple_agent:
      entrypoint: app.py
      resources_server: {{type: resources_servers, name: simple_weather}}
      model_server: {{type: responses_api_models, name: policy_model}}
"""

ROOT = Path(__file__).resolve().parents[2]


def _head(tmp_path: Path) -> HeadServer:
    (tmp_path / "interop.yaml").write_text(CONFIG)
    config = load_config(
        [f"+config_paths=[{tmp_path / 'interop.yaml'}]", "+head_server.port=11999"], cwd=ROOT, env_yaml=False
    )
    rows = [
        {
            "name": name,
            "type": inst.server_type,
            "implementation": inst.implementation,
            "url": f"http://127.0.0.1:{20000 + i}",
            "host": "127.0.0.1",
            "port": 20000 + i,
            "pid": os.getpid(),
            "ready": True,
        }
        for i, (name, inst) in enumerate(config.instances.items())
    ]
    return HeadServer(config, lambda: rows)


def test_server_instances_are_nemo_gyms_thirteen_keys_with_the_implementation_as_name(tmp_path: Path):
    with TestClient(asgi(_head(tmp_path))) as c:
        rows = c.get("/server_instances").json()
    agent = next(r for r in rows if r["process_name"] == "simple_weather_simple_agent")
    assert set(agent) == {
        "config_path", "dir_path", "entrypoint", "host", "name", "pid", "port", "process_name",
        "server_type", "start_time", "status", "uptime_seconds", "url",
    }  # fmt: skip
    assert agent["name"] == "simple_agent" and agent["config_path"] == "simple_weather_simple_agent"
    assert agent["server_type"] == "responses_api_agents" and agent["entrypoint"] == "app.py"
    assert agent["dir_path"] == str(ROOT / "responses_api_agents/simple_agent")
    assert agent["status"] == "success" and agent["url"] == f"http://127.0.0.1:{agent['port']}"
    assert isinstance(agent["start_time"], float) and agent["start_time"] <= time.time()
    assert 0 <= agent["uptime_seconds"]


def test_the_config_is_yaml_in_a_json_string_with_every_address(tmp_path: Path):
    with TestClient(asgi(_head(tmp_path))) as c:
        raw = c.get("/global_config_dict_yaml")
    assert raw.headers["content-type"] == "application/json"
    config = yaml.safe_load(raw.json())  # what NeMo Gym's collector does: json.loads, then YAML
    agent = config["simple_weather_simple_agent"]["responses_api_agents"]["simple_agent"]
    assert (agent["host"], agent["entrypoint"]) == ("127.0.0.1", "app.py") and isinstance(agent["port"], int)
    assert config["head_server"] == {"host": "127.0.0.1", "port": 11999}


def test_no_answer_of_the_head_server_carries_a_key_or_a_password(tmp_path: Path):
    with TestClient(asgi(_head(tmp_path))) as c:
        paths = ("/instances", "/server_instances", "/global_config_dict_yaml", "/health")
        bodies = [c.get(path).text for path in paths]
    text = "\n".join(bodies)
    for secret in (KEY, GATEWAY_KEY, PROXY_PASSWORD, REJECTED, KEY[-16:]):
        assert secret not in text, secret
    config = yaml.safe_load(json.loads(bodies[2]))
    model = config["policy_model"]["responses_api_models"]["openai_model"]
    assert model["openai_base_url"] == "https://<redacted>@proxy.example/v1?api_key=<redacted>"
    assert model["default_headers"] == {"X-Title": "app", "X-Copy": "copied <redacted>"}  # copied by value
    assert model["openai_model"] == "m"  # values that are not secrets stay


def test_redact_url_hides_credentials_and_secret_query_parameters_only():
    assert (
        redact_url("see https://u:p@host:8/v1?key=abc&model=x")
        == "see https://<redacted>@host:8/v1?key=<redacted>&model=x"
    )
    assert redact_url("https://openrouter.ai/api/v1") == "https://openrouter.ai/api/v1"
    assert redact_url("mail me at a@b.c") == "mail me at a@b.c"
