"""Config composition: precedence, recursion, interpolation, instances, and its errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nemo_gym_cli.config import compose, load_config, parse_overrides
from nemo_gym_cli.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_overrides_accept_hydra_syntax():
    cfg, deletions = parse_overrides(
        [
            "+a=1",
            "++b=two",
            "c.d=3",
            "+lst=[x,y]",
            "+q='quoted string'",
            "+n=null",
            "~gone",
            "+f=0.5",
        ]
    )
    assert cfg.a == 1 and cfg.b == "two" and cfg.c.d == 3
    assert list(cfg.lst) == ["x", "y"] and cfg.q == "quoted string" and cfg.n is None and cfg.f == 0.5
    assert deletions == ["gone"]


def test_later_sources_win_files_then_env_yaml_then_command_line(tmp_path):
    write(tmp_path / "a.yaml", "x: a\ny: a\nz: a\nw: a\n")
    write(tmp_path / "b.yaml", "y: b\nz: b\nw: b\n")
    write(tmp_path / "env.yaml", "z: env\nw: env\n")
    cfg = compose(["+config_paths=[a.yaml,b.yaml]", "+w=cli"], cwd=tmp_path)
    assert (cfg.x, cfg.y, cfg.z, cfg.w) == ("a", "b", "env", "cli")


def test_config_paths_are_followed_recursively_and_each_file_read_once(tmp_path):
    write(tmp_path / "base.yaml", "v: base\nbase_only: 1\n")
    write(tmp_path / "mid.yaml", "config_paths: [base.yaml]\nv: mid\n")
    write(tmp_path / "top.yaml", "config_paths: [mid.yaml, base.yaml]\nv: top\n")
    cfg = compose(["+config_paths=[top.yaml,mid.yaml]"], cwd=tmp_path)
    # base is merged first (once), then mid, then top; mid listed again is not re-read.
    assert cfg.v == "top" and cfg.base_only == 1


def test_built_in_configs_are_found_from_any_working_directory(tmp_path):
    cfg = load_config(["+config_paths=[configs/offline.yaml]"], cwd=tmp_path)
    assert {
        "policy_model",
        "simple_weather",
        "simple_weather_simple_agent",
        "provider_emulator",
    } <= set(cfg.instances)


def test_interpolation_resolves_across_files_env_vars_and_instance_urls(tmp_path, monkeypatch):
    monkeypatch.setenv("NG_TEST_KEY", "from-env")
    write(tmp_path / "a.yaml", "key: ${oc.env:NG_TEST_KEY,}\nurl: ${ng_url:res}/v1\n")
    write(
        tmp_path / "b.yaml",
        """
        res:
          resources_servers:
            simple_weather:
              port: 12345
              copied: ${key}
        """,
    )
    cfg = load_config(["+config_paths=[a.yaml,b.yaml]"], cwd=tmp_path)
    assert cfg.options["key"] == "from-env"
    assert cfg.options["url"] == "http://127.0.0.1:12345/v1"
    assert cfg.instances["res"].fields["copied"] == "from-env"


def test_missing_ports_get_distinct_free_ports_and_host_defaults_to_loopback(tmp_path):
    body = "".join(f"r{i}:\n  resources_servers:\n    simple_weather: {{}}\n" for i in range(6))
    write(tmp_path / "a.yaml", body)
    cfg = load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)
    ports = [i.port for i in cfg.instances.values()]
    assert len(set(ports)) == 6 and all(p > 0 for p in ports)
    assert {i.host for i in cfg.instances.values()} == {"127.0.0.1"}


def test_the_same_explicit_port_on_two_instances_is_an_error(tmp_path):
    write(
        tmp_path / "a.yaml",
        "a:\n  resources_servers:\n    simple_weather: {port: 9000}\n"
        "b:\n  resources_servers:\n    simple_weather: {port: 9000}\n",
    )
    with pytest.raises(ConfigError, match="port 9000 is also used by a"):
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


def test_missing_config_file_names_the_entry_and_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match=r"config_paths entry 'configs/wether.yaml' does not exist \(looked in"):
        compose(["+config_paths=[configs/wether.yaml]"], cwd=tmp_path)


def test_yaml_syntax_error_names_the_file_and_line(tmp_path):
    write(tmp_path / "bad.yaml", "a: 1\nb: [unclosed\nc: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:\d+: YAML syntax error"):
        compose(["+config_paths=[bad.yaml]"], cwd=tmp_path)


def test_every_required_value_left_unset_is_listed_at_once(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(
            ["+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml]"],
            cwd=tmp_path,
        )
    message = str(info.value)
    assert "policy_base_url" in message and "policy_api_key" in message and "policy_model_name" in message
    assert "env.yaml" in message


def test_unknown_server_type_is_an_error_listing_the_known_ones(tmp_path):
    write(
        tmp_path / "a.yaml",
        "x:\n  resource_servers:\n    simple_weather:\n      entrypoint: app.py\n",
    )
    with pytest.raises(ConfigError, match="unknown server type 'resource_servers'.*resources_servers"):
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


def test_implementation_folder_not_found_lists_known_implementations(tmp_path):
    write(
        tmp_path / "a.yaml",
        "x:\n  resources_servers:\n    simple_wether:\n      entrypoint: app.py\n",
    )
    with pytest.raises(ConfigError, match="resources_servers/simple_wether not found.*known: .*simple_weather"):
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


def test_dangling_server_reference_lists_the_defined_instances(tmp_path):
    write(
        tmp_path / "a.yaml",
        """
        agent:
          responses_api_agents:
            simple_agent:
              resources_server: {type: resources_servers, name: weather}
              model_server: {type: responses_api_models, name: policy_model}
        simple_weather:
          resources_servers:
            simple_weather: {}
        """,
    )
    with pytest.raises(
        ConfigError,
        match=r"refers to instance 'weather', which is not defined; defined instances: agent, simple_weather",
    ):
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


def test_bad_override_syntax_is_one_clear_error():
    with pytest.raises(ConfigError, match="is not an override"):
        parse_overrides(["+a=[unclosed"])


def test_command_line_plus_switches_a_value_set_in_files(tmp_path):
    cfg = load_config(
        ["+config_paths=[configs/offline.yaml]", "+policy_model_name=openai/gpt-4o-mini"],
        cwd=tmp_path,
    )
    assert cfg.instances["policy_model"].fields["openai_model"] == "openai/gpt-4o-mini"


def test_instance_repr_never_shows_fields_that_may_hold_keys(tmp_path):
    cfg = load_config(["+config_paths=[configs/offline.yaml]"], cwd=tmp_path)
    assert "sk-or-emulator-offline-key" not in repr(cfg.instances) + repr(cfg)
