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
    composed = compose(["+config_paths=[a.yaml,b.yaml]", "+w=cli"], cwd=tmp_path)
    cfg = composed.config
    assert (cfg.x, cfg.y, cfg.z, cfg.w) == ("a", "b", "env", "cli")
    assert [composed.sources.of(k) for k in "xyzw"] == ["a.yaml", "b.yaml", "env.yaml", "command line"]


def test_config_paths_are_followed_recursively_and_each_file_read_once(tmp_path):
    write(tmp_path / "base.yaml", "v: base\nbase_only: 1\n")
    write(tmp_path / "mid.yaml", "config_paths: [base.yaml]\nv: mid\n")
    write(tmp_path / "top.yaml", "config_paths: [mid.yaml, base.yaml]\nv: top\n")
    cfg = compose(["+config_paths=[top.yaml,mid.yaml]"], cwd=tmp_path).config
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
    assert cfg.bind({"res": "http://127.0.0.1:12345"})["url"] == "http://127.0.0.1:12345/v1"
    assert cfg.instances["res"].fields["copied"] == "from-env"


def test_reading_a_config_opens_no_socket_ports_stay_unset_until_the_supervisor_binds_them(tmp_path):
    body = "".join(f"r{i}:\n  resources_servers:\n    simple_weather: {{}}\n" for i in range(6))
    body += "u: ${ng_url:r3}/x\n"
    write(tmp_path / "a.yaml", body)
    cfg = load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)
    assert {i.port for i in cfg.instances.values()} == {None}
    assert {i.host for i in cfg.instances.values()} == {"127.0.0.1"}
    urls = {name: f"http://127.0.0.1:{9000 + n}" for n, name in enumerate(cfg.instances)}
    assert cfg.bind(urls)["u"] == "http://127.0.0.1:9003/x"
    spec = cfg.instances["r3"].spec(urls, port=9003)
    assert spec.port == 9003 and spec.server_urls == urls


def test_ng_url_naming_no_instance_is_an_error_naming_the_key(tmp_path):
    write(tmp_path / "a.yaml", "r:\n  resources_servers:\n    simple_weather:\n      peer: ${ng_url:nobody}\n")
    with pytest.raises(
        ConfigError,
        match=r"r\.resources_servers\.simple_weather\.peer: \$\{ng_url:nobody\} names no server instance "
        r"\(instances: r\)",
    ):
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


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
        compose(["+config_paths=[configs/wether.yaml]"], cwd=tmp_path)  # noqa


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


def test_a_deletion_on_the_command_line_removes_a_server_a_config_file_defines(tmp_path):
    cfg = load_config(["+config_paths=[configs/offline.yaml]", "~simple_weather_simple_agent"], cwd=tmp_path)
    assert set(cfg.instances) == {"provider_emulator", "policy_model", "simple_weather"}


def test_deleting_a_server_others_refer_to_names_every_deletion_it_takes(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"simple_weather_simple_agent\.responses_api_agents\.simple_agent\.resources_server refers to "
        r"instance 'simple_weather', which ~simple_weather deleted; delete what refers to it as well: "
        r"~simple_weather_simple_agent$",
    ):
        load_config(["+config_paths=[configs/offline.yaml]", "~simple_weather"], cwd=tmp_path)
    cfg = load_config(["+config_paths=[configs/offline.yaml]", "~simple_weather", "~simple_weather_simple_agent"])
    assert set(cfg.instances) == {"provider_emulator", "policy_model"}


def test_the_deletion_that_starts_a_config_without_a_server_follows_references_through_servers(tmp_path):
    write(
        tmp_path / "env.yaml",
        """
        config_paths: [configs/offline.yaml]
        weather_environment_server:
          environment_servers:
            legacy_agent:
              agent_server: {type: responses_api_agents, name: simple_weather_simple_agent}
        """,
    )
    cfg = load_config([], cwd=tmp_path)
    both = "~simple_weather_simple_agent ~weather_environment_server"
    assert cfg.deletion("simple_weather") == f"~simple_weather {both}"  # through the agent
    # the model is referred to by the agent; the emulator only by an interpolation (${ng_url:...})
    assert cfg.deletion("policy_model") == f"~policy_model {both}"
    assert cfg.deletion("weather_environment_server") == "~weather_environment_server"
    cfg = load_config(["~simple_weather", *both.split()], cwd=tmp_path)
    assert set(cfg.instances) == {"provider_emulator", "policy_model"}


def test_bad_override_syntax_is_one_clear_error():
    with pytest.raises(ConfigError, match="is not an override"):
        parse_overrides(["+a=[unclosed"])


def test_command_line_plus_switches_a_value_set_in_files(tmp_path):
    cfg = load_config(
        ["+config_paths=[configs/offline.yaml]", "+emulator_model=openai/gpt-4o-mini"],
        cwd=tmp_path,
    )
    assert cfg.instances["policy_model"].fields["openai_model"] == "openai/gpt-4o-mini"


def test_an_entrypoint_outside_the_implementation_folder_is_refused(tmp_path):
    for entry in ("/etc/passwd", "../openai_model/app.py", "app.txt", "../../../../tmp/x.py"):
        write(tmp_path / "a.yaml", f"x:\n  resources_servers:\n    simple_weather:\n      entrypoint: {entry}\n")
        with pytest.raises(ConfigError, match="it must be a .py file inside the implementation's folder"):
            load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


def test_an_entrypoint_symlink_leading_out_of_the_folder_is_refused(tmp_path):
    folder = tmp_path / "resources_servers" / "mine"
    folder.mkdir(parents=True)
    outside = write(tmp_path / "evil.py", "print('pwned')\n")
    (folder / "app.py").symlink_to(outside)
    write(tmp_path / "a.yaml", "x:\n  resources_servers:\n    mine:\n      entrypoint: app.py\n")
    with pytest.raises(ConfigError, match="leads outside"):
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path)


def test_a_command_line_key_no_command_reads_is_an_error_with_the_closest_known_key(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(["+config_paths=[configs/offline.yaml]", "+concurency=64"], cwd=tmp_path, command={"concurrency"})
    assert "'concurency' (command line): unknown key; did you mean 'concurrency'?" in str(info.value)


def test_a_file_key_nothing_uses_is_an_error_but_env_yaml_defaults_and_shared_options_are_not(tmp_path):
    write(
        tmp_path / "a.yaml",
        "shared: 1\nr:\n  resources_servers:\n    simple_weather:\n      x: ${shared}\n"
        "num_repeats: 4\npolicy_modle_name: x\n",
    )
    write(tmp_path / "env.yaml", "policy_api_key: sk-or-v1-personal\n")
    with pytest.raises(ConfigError) as info:
        load_config(["+config_paths=[a.yaml]"], cwd=tmp_path, command=set(), everywhere={"num_repeats"})
    message = str(info.value)
    assert "'policy_modle_name' (a.yaml): unknown key" in message
    assert message.count("unknown key") == 1
    assert "shared" not in message and "policy_api_key" not in message and "num_repeats" not in message


def test_instance_repr_never_shows_fields_that_may_hold_keys(tmp_path):
    cfg = load_config(["+config_paths=[configs/offline.yaml]"], cwd=tmp_path)
    assert "sk-or-emulator-offline-key" not in repr(cfg.instances) + repr(cfg)


def test_ng_run_help_lists_every_key_ng_run_reads():
    import dataclasses

    from nemo_gym_cli.cli import RUN_HELP
    from nemo_gym_cli.config.load import RayOptions

    listed = {line.split()[0] for line in RUN_HELP.splitlines() if line.startswith("  ") and line.split()}
    ray_keys = {f"ray.{f.name}" for f in dataclasses.fields(RayOptions)}
    assert {"config_paths", "head_server.host", "head_server.port"} | ray_keys <= listed
