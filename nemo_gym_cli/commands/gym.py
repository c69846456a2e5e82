"""NeMo Gym 0.7's command lines, under our ``ng``: ``ng env start``, ``ng eval run``, ...

0.7 moved its console scripts under one tree (``gym``, also installed as ``ng``): ``gym env
start`` is its ``ng_run``, ``gym eval run`` its collector, and flags such as ``--config``,
``-a``, ``-i``, ``--concurrency`` stand for Hydra overrides. A 0.7 user types those here
and gets our command with the same keys; a command we have no counterpart for says, in
one line, what to type instead (``CommandMoved``, exit 2). Only flags are translated;
``+key=value`` overrides pass through as they are.

Asset selectors (``--resources-server NAME[/FLAVOR]``, ``--environment``, ``--benchmark``,
``--model-type``, ``--agent-type``) name 0.7's files, found as 0.7 finds them: in the
working directory first, else in NeMo Gym's root (``nemo_gym:`` prefix, docs/nemo_gym.md),
never one of ours that happens to share the name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nemo_gym_cli.errors import ConfigError

__all__ = ["GYM_GROUPS", "CommandMoved", "translate"]


class CommandMoved(ConfigError):
    """A 0.7 command with no counterpart here: the message says what to type instead."""


#: ``--flag`` -> the Hydra key it sets (``None``: a switch that sets ``+key=true``).
_VALUE_FLAGS = {
    "--agent": "agent_name",
    "-a": "agent_name",
    "--input": "input_jsonl_fpath",
    "-i": "input_jsonl_fpath",
    "--output": "output_jsonl_fpath",
    "-o": "output_jsonl_fpath",
    "--limit": "limit",
    "--num-repeats": "num_repeats",
    "--concurrency": "num_samples_in_parallel",
    "--model": "policy_model_name",
    "-m": "policy_model_name",
    "--model-url": "policy_base_url",
    "--model-api-key": "policy_api_key",
    "--temperature": "responses_create_params.temperature",
    "--top-p": "responses_create_params.top_p",
    "--max-output-tokens": "responses_create_params.max_output_tokens",
}
_SWITCHES = {
    "--resume": "resume_from_cache",
    "--interleave-repeats": "interleave_repeats",
    "--disable-aggregation": "disable_aggregation",
    "--allow-unsupported-pairing": "allow_unsupported_pairing",
    "--dry-run": "dry_run",
}
#: Flags of 0.7's own post-run checks and dataset tooling: accepted with a note, no effect here.
_NO_EFFECT = {
    "--no-health-check": 0,
    "--health-check-workers": 1,
    "--health-check-ignore": 1,
    "-v": 0,
    "--verbose": 0,
}
#: ``--flag NAME[/FLAVOR]`` -> (folder, configs subfolder, default flavor; None: NAME).
_ASSETS = {
    "--benchmark": ("benchmarks", "", "config"),
    "--environment": ("environments", "", "config"),
    "--resources-server": ("resources_servers", "configs", None),
    "--model-type": ("responses_api_models", "configs", None),
    "--agent-type": ("responses_api_agents", "configs", None),
}


def _asset_path(flag: str, value: str, cwd: Path) -> str:
    parent, subdir, default = _ASSETS[flag]
    name, _, flavor = value.partition("/")
    if flag in ("--benchmark", "--environment") and "/" in value:
        relative = f"{parent}/{value}/config.yaml"
    else:
        relative = "/".join(p for p in (parent, name, subdir, f"{flavor or default or name}.yaml") if p)
    return relative if (cwd / relative).is_file() else f"nemo_gym:{relative}"


@dataclass(frozen=True)
class Translated:
    """What to run: one of our commands and its Hydra overrides."""

    command: str  # run, collect, reverify, report, init, status, aggregate
    args: list[str]
    notes: list[str]


def _overrides(argv: list[str], where: str, cwd: Path, *, extra: dict[str, str] | None = None) -> Translated:
    """Flags to Hydra overrides (``+config_paths`` merged into one, as 0.7 does)."""
    paths: list[str] = []
    out: list[str] = []
    notes: list[str] = []
    value_flags = {**_VALUE_FLAGS, **(extra or {})}
    tokens = iter(argv)
    for token in tokens:
        if not token.startswith("-"):
            if token.startswith(("+config_paths=[", "++config_paths=[")) and token.endswith("]"):
                paths.extend(p for p in token.split("=", 1)[1][1:-1].split(",") if p)
            else:
                out.append(token)
            continue
        flag, eq, inline = token.partition("=")

        def value(flag: str = flag, eq: str = eq, inline: str = inline) -> str:
            if eq:
                return inline
            following = next(tokens, None)
            if following is None:
                raise ConfigError(f"{where}: {flag} needs a value")
            return following

        if flag in ("--config", "-c"):
            paths.append(value())
        elif flag in _ASSETS:
            paths.append(_asset_path(flag, value(), cwd))
        elif flag in value_flags:
            out.append(f"+{value_flags[flag]}={value()}")
        elif flag in _SWITCHES:
            out.append(f"+{_SWITCHES[flag]}=true")
        elif flag in _NO_EFFECT:
            if _NO_EFFECT[flag]:
                value()
            notes.append(f"note: {flag} has no effect here (0.7's post-run health checks and log levels are its own)")
        elif flag == "--search-dir":
            raise ConfigError(
                f"{where}: --search-dir is not supported here; give the file itself with --config <path> (or "
                "+config_paths=[...])"
            )
        else:
            raise ConfigError(
                f"{where}: unknown flag {flag!r}; give it as a Hydra override instead (+key=value, see "
                "ng_collect_rollouts --help and ng_run --help)"
            )
    if paths:
        out.insert(0, f"+config_paths=[{','.join(paths)}]")
    return Translated("", out, notes)


def _moved(what: str, instead: str) -> Callable[[list[str], Path], Translated]:
    def refuse(argv: list[str], cwd: Path) -> Translated:
        raise CommandMoved(f"{what} is not available here: {instead}")

    return refuse


def _env_start(argv: list[str], cwd: Path) -> Translated:
    t = _overrides(argv, "ng env start", cwd)
    return Translated("run", t.args, t.notes)


def _env_prefetch(argv: list[str], cwd: Path) -> Translated:
    t = _overrides(argv, "ng env prefetch", cwd)
    return Translated("run", [*t.args, "+dry_run=true"], t.notes)


def _eval_run(argv: list[str], cwd: Path) -> Translated:
    no_serve = "--no-serve" in argv
    t = _overrides([a for a in argv if a != "--no-serve"], "ng eval run", cwd)
    has_paths = any(a.startswith("+config_paths=") for a in t.args)
    if no_serve and has_paths:
        raise ConfigError(
            "ng eval run: --no-serve uses the servers of a running ng_run; drop --config/--resources-server, or "
            "drop --no-serve to start them for this run"
        )
    if not no_serve and not has_paths:
        raise ConfigError(
            "ng eval run starts the servers of --config (or --resources-server NAME); name them, or add "
            "--no-serve to use a running ng_run's"
        )
    return Translated("collect", t.args, t.notes)


def _eval_compare(argv: list[str], cwd: Path) -> Translated:
    t = _overrides(argv, "ng eval compare", cwd, extra={"--baseline": "_baseline", "--candidates": "_candidates"})
    inputs: list[str] = []
    rest: list[str] = []
    report_dir = None
    for arg in t.args:
        key, _, value = arg.lstrip("+").partition("=")
        if key in ("_baseline", "_candidates"):
            inputs.extend(v for v in value.split(",") if v)
        elif key == "output_jsonl_fpath":  # -o/--output DIR: where the report goes
            report_dir = value
        else:
            rest.append(arg)
    if len(inputs) < 2:
        raise ConfigError("ng eval compare needs --baseline <rollouts.jsonl> and --candidates <rollouts.jsonl>")
    args = [f"+inputs=[{','.join(inputs)}]", *rest]
    if report_dir:
        args.append(f"+report_dir={report_dir}")
    return Translated("report", args, t.notes)


#: 0.7's ``gym eval reverify`` flags with no counterpart here, and why.
_REVERIFY_REFUSED = {
    "--input-format": "only 0.7's own rollout rows (gym) are read here; ATIF input is 0.7's",
    "--atif-manifest": "ATIF input is 0.7's",
    "--judge-failed-only": "every row is re-scored here; pick rows with +limit or a filtered file",
    "--append": "the re-scored rows always go to a new file here",
    "--resume": "re-run the command with +overwrite=true (re-scoring is verification-bound and quick)",
}


def _eval_reverify(argv: list[str], cwd: Path) -> Translated:
    """``gym eval reverify --rollouts X -o Y [--config C] [--concurrency N] [--limit N]`` as
    ``ng reverify``; unlike 0.7, without ``--config`` it uses a running ng_run's servers."""
    kept: list[str] = []
    notes: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        flag, eq, _ = token.partition("=")
        if flag == "--input-format" and (token.endswith("=gym") or (not eq and next(tokens, None) == "gym")):
            continue
        if flag in _REVERIFY_REFUSED:
            raise ConfigError(f"ng eval reverify: {flag} is not supported: {_REVERIFY_REFUSED[flag]}")
        if flag == "--inputs":  # 0.7's materialized inputs: our rows carry their task fields
            if not eq:
                next(tokens, None)
            notes.append("note: --inputs is not needed here: each rollout row carries its task fields")
        elif flag == "--overwrite":
            kept.append("+overwrite=true")
        elif flag == "--force":
            notes.append(
                "note: --force has no effect here: a stateful server's session is rebuilt by replaying each row's "
                "recorded tool calls"
            )
        elif flag == "--disable-aggregation":
            notes.append("note: --disable-aggregation has no effect: ng reverify writes no aggregate metrics")
        else:
            kept.append(token)
    t = _overrides(
        kept, "ng eval reverify", cwd,
        extra={"--rollouts": "input_jsonl_fpath", "--concurrency": "concurrency"},
    )  # fmt: skip
    return Translated("reverify", t.args, notes + t.notes)


def _eval_aggregate(argv: list[str], cwd: Path) -> Translated:
    t = _overrides(argv, "ng eval aggregate", cwd, extra={"--input-glob": "input_glob"})
    return Translated("aggregate", t.args, t.notes)


def _env_init(argv: list[str], cwd: Path) -> Translated:
    names = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--resources-server"]
    if len(names) != 1:
        raise ConfigError("ng env init: give --resources-server NAME (or run ng init resources_server NAME)")
    return Translated("init", ["resources_server", names[0]], [])


def _env_status(argv: list[str], cwd: Path) -> Translated:
    t = _overrides([a for a in argv if a != "--json"], "ng env status", cwd)
    return Translated("status", t.args, t.notes)


_DATASETS = "0.7's dataset tooling (Hugging Face, GitLab) is its own: run it with NeMo Gym's `gym dataset ...`"
_CATALOG = (
    "0.7's catalog is its own: run `gym list ...` from NeMo Gym, or see docs/nemo_gym.md for the environments "
    "that run here"
)

#: ``ng <group> <command>`` -> its translation.
GYM_GROUPS: dict[str, dict[str, Callable[[list[str], Path], Translated]]] = {
    "env": {
        "start": _env_start,
        "prefetch": _env_prefetch,
        "status": _env_status,
        "init": _env_init,
        "resolve": _moved(
            "ng env resolve",
            "ng_run prints every server it starts; the head server's "
            "/global_config_dict_yaml gives the resolved config with secrets redacted",
        ),  # fmt: skip
        "test": _moved("ng env test", "run that environment's tests with `python -m pytest resources_servers/<name>`"),
        "validate": _moved("ng env validate", "ng_run checks every config key before it starts anything"),
        "schema": _moved("ng env schema", "GET /tools of a running resources server lists its tools and schemas"),
        "packages": _moved("ng env packages", "run pip list with the environment's own Python (docs/nemo_gym.md)"),
        "publish": _moved("ng env publish", "publishing is NeMo Gym's: run `gym env publish`"),
    },
    "eval": {
        "run": _eval_run,
        "aggregate": _eval_aggregate,
        "compare": _eval_compare,
        "profile": _moved(
            "ng eval profile",
            "ng_report <rollouts.jsonl> reports reward, pass@k and per-task "
            "figures (0.7's `gym eval profile` also reads our outputs as they are)",
        ),  # fmt: skip
        "reverify": _eval_reverify,
        "health-check": _moved(
            "ng eval health-check",
            "ng_report <rollouts.jsonl> shows failures and per-task "
            "figures; 0.7's `gym eval health-check` reads our outputs as they are",
        ),  # fmt: skip
        "prepare": _moved("ng eval prepare", "benchmark preparation is NeMo Gym's: run `gym eval prepare`"),
        "submit": _moved("ng eval submit", "cluster submission is NeMo Gym's: run `gym eval submit`"),
        "export": _moved("ng eval export", "ATIF export is NeMo Gym's: run `gym eval export` on our outputs"),
    },
    "dataset": {
        name: _moved(f"ng dataset {name}", _DATASETS)
        for name in ("upload", "download", "rm", "migrate", "render", "collate")
    },  # fmt: skip
    "list": {
        name: _moved(f"ng list {name}", _CATALOG)
        for name in ("benchmarks", "environments", "agents", "models", "resources-servers")
    },  # fmt: skip
    "dev": {"test": _moved("ng dev test", "run `bash scripts/test`")},
}


def translate(group: str, argv: list[str], cwd: Path | None = None) -> Translated:
    """``ng <group> <command> <argv...>`` as one of our commands (or ``CommandMoved``)."""
    commands = GYM_GROUPS[group]
    if not argv or argv[0] not in commands:
        known = ", ".join(commands)
        given = repr(argv[0]) if argv else "nothing"
        raise ConfigError(f"ng {group}: unknown command {given}; NeMo Gym 0.7's ng {group} commands are: {known}")
    result = commands[argv[0]](argv[1:], (cwd or Path.cwd()).resolve())
    for note in result.notes:
        print(note, file=sys.stderr)
    return result
