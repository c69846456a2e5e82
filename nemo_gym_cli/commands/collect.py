"""``ng_collect_rollouts``: tasks from JSONL through an agent, scored rows to JSONL.

Where the servers come from: given ``config_paths``, the collector starts its own, on free
ports, and stops them at the end (one command for CI), never attaching to servers someone
else runs; without them it uses the servers of a running head server (``ng_run``'s, or NeMo
Gym's), and records which. It runs the collection (``collect/collector.py``), one output per
variant for a sweep (``+models=[...]`` or ``variants:``), writes ``<stem>_metrics.json``
(with the ``run`` record), ``<stem>_materialized_inputs.jsonl`` and, for a sweep,
``sweep.json``; prints the summary and applies the exit-code gates. A sweep's models are
added to the model servers' ``allowed_models`` (``collect/sweep.py``).

Exit codes:

- 0: every rollout succeeded (or at most ``+max_failures`` failed) and every gate passed;
- 1: more than ``+max_failures`` rollouts failed, a gate such as ``+min_mean_reward`` was
  not met, the budget ran out, the provider kept failing, or a server died (the message
  says which); the output is resumable;
- 2: a usage error (bad option, input, output path; a resume of another experiment);
- 130: interrupted (Ctrl-C); re-run with ``+resume=true`` to continue.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_gym_cli.collect.collector import Collector, Lane
from nemo_gym_cli.collect.discovery import discover
from nemo_gym_cli.collect.estimate import Estimate, estimate, format_estimates
from nemo_gym_cli.collect.files import count_tasks, metrics_path, read_tasks
from nemo_gym_cli.collect.metrics import Progress, format_summary
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.record import check_resume, input_digest, now, run_record
from nemo_gym_cli.collect.sweep import allow_sweep_models, check_served, sweep_models
from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS
from nemo_gym_cli.config import GlobalConfig, load_config, substitute_urls
from nemo_gym_cli.errors import ConfigError, NemoGymError, ServerError
from nemo_gym_cli.process.forkserver import ForkServer, fork_supported
from nemo_gym_cli.process.limits import fd_budget, open_file_limit, raise_open_file_limit
from nemo_gym_cli.process.runtime import run_async, tune_gc
from nemo_gym_cli.process.supervisor import Supervisor, connect_cluster, running_servers, stop_on_signals
from nemo_gym_cli.providers.catalogue import ModelInfo, fetch_models
from nemo_gym_cli.providers.upstream import AiohttpWire, Upstream
from nemo_gym_cli.server.client import open_json_client
from nemo_gym_cli.wire import dumps, dumps_line, loads

__all__ = ["collect"]

log = logging.getLogger(__name__)

#: Most connections to the agents; more rollouts than this wait on the collector's gate.
MAX_POOL = 1024
#: Fewest connections worth running with (below: the open-file limit is the problem).
MIN_POOL = 8


def print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


#: What to do when an agent dies, by where the servers came from.
_HINT_HEAD = (
    "start the servers again (ng_run with the same +config_paths), then re-run with "
    "+resume=true to continue where this run stopped"
)
_HINT_ONE_COMMAND = "its output is above; re-run this command with +resume=true to continue where it stopped"


@dataclass
class Outcome:
    docs: dict[str, dict[str, Any]]  # lane -> metrics document
    code: int
    message: str
    lanes: list[Lane] = field(default_factory=list)
    estimates: list[Estimate] | None = None


def pool_size(in_flight: int) -> int:
    """Connections to the agents: what the rollouts in flight need, within the open-file
    limit (a third of what is left of it: each connection costs a few descriptors in every
    server it crosses, and our servers share this limit)."""
    budget = fd_budget()
    size = min(in_flight, MAX_POOL)
    if budget is None:
        return size
    fits = budget // 3
    if fits < MIN_POOL:
        raise ConfigError(
            f"the open-file limit ({open_file_limit()}, ulimit -n; the hard limit could not raise it) leaves room "
            f"for {fits} connections: raise it (`ulimit -n 65536` in the shell, or LimitNOFILE= for a service) and "
            "run again"
        )
    if fits < size:
        print_err(
            f"note: the open-file limit ({open_file_limit()}) allows {fits} connections at once; the other "
            f"{in_flight - fits} rollouts in flight wait their turn (raise `ulimit -n` for more)"
        )
    return min(size, fits)


async def _watch_servers(supervisor: Supervisor, collector: Collector) -> None:
    """One-command mode: a server that dies (the last replica of one) ends the run (``watch``
    prints its last output)."""
    if await supervisor.watch(asyncio.Event()):
        dead = supervisor.lost
        url = dead.url if dead else ""
        where = f"{dead.instance.name!r} at {url}" if dead else "a server"
        message = (
            f"server {where} exited during the collection (its last output is above); fix "
            "that, then re-run this command with +resume=true to continue where it stopped"
        )
        collector.stop_fatally(ServerError(message, url=url))


def _agents_for(opts: CollectOptions, agents: dict[str, list[str]]) -> CollectOptions:
    """``+agent_name`` checked against the running agents, once, before any row: unknown, or
    missing while the rows name no agent either, is one error listing the agents."""
    known = ", ".join(sorted(agents)) or "none"
    if opts.agent_name is not None:
        if opts.agent_name not in agents:
            raise ConfigError(f"+agent_name={opts.agent_name!r} is not a running agent; agents: {known}")
        return opts
    first = next((item.row for item in read_tasks(opts.input_path, 1) if item.row is not None), None)
    ref = first.get("agent_ref") if isinstance(first, dict) else None
    if isinstance(ref, dict) and ref.get("name"):
        return opts  # the rows name their agents
    if len(agents) == 1:
        (only,) = agents
        print_err(f"note: +agent_name not given; using the only agent, {only!r}")
        return opts.model_copy(update={"agent_name": only})
    raise ConfigError(f"+agent_name=... is required: the rows name no agent (agent_ref.name); agents: {known}")


def _lanes(opts: CollectOptions) -> list[Lane]:
    variants = {v.name: v for v in opts.sweep()}
    lanes = []
    for name, output in opts.outputs().items():
        variant = variants.get(name)
        concurrency = (variant.concurrency if variant and variant.concurrency else None) or opts.in_flight
        lanes.append(Lane(name, output, variant, concurrency, opts))
    return lanes


def _previous_record(lane: Lane) -> dict[str, Any] | None:
    path = metrics_path(lane.output)
    try:
        doc = loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _pilot(opts: CollectOptions) -> CollectOptions:
    """The options of a ``+dry_run`` pilot: a few rows per variant, into their own files."""
    out = opts.output_path
    pilot = opts.model_copy(
        update={
            "output_jsonl_fpath": str(out.with_name(out.stem + "_dry_run.jsonl")),
            "limit": min(opts.dry_run_rows, opts.limit) if opts.limit is not None else opts.dry_run_rows,
            "num_repeats": 1,
            "resume": False,
            "resume_from_cache": False,
            "max_cost_usd": None,
            "materialize_inputs": False,
        }
    )
    for path in pilot.outputs().values():
        for stale in (path, metrics_path(path), path.with_name(path.stem + "_failures.jsonl")):
            stale.unlink(missing_ok=True)
    return pilot


async def _collect(config: GlobalConfig, opts: CollectOptions, forkserver: ForkServer | None) -> Outcome:
    full = opts
    if opts.dry_run:
        opts = _pilot(opts)
    opts.check_paths()
    if opts.input_path != Path(opts.input_jsonl_fpath).expanduser():
        print_err(
            f"note: no {opts.input_jsonl_fpath} here; reading the one installed with the toolkit: {opts.input_path}"
        )
    num_tasks = count_tasks(opts.input_path, opts.limit)
    digest = input_digest(opts.input_path)
    stop_event = asyncio.Event()
    if config.instances and config.ray is not None:
        # Before stop_on_signals: joining a Ray cluster sets Ray's own SIGTERM handler.
        cluster = connect_cluster(config.ray, config.instances.values())
        try:
            return await _collect_on(config, opts, full, num_tasks, digest, stop_event, forkserver, cluster)
        finally:
            cluster.close()
    return await _collect_on(config, opts, full, num_tasks, digest, stop_event, forkserver, None)


async def _collect_on(
    config: GlobalConfig,
    opts: CollectOptions,
    full: CollectOptions,
    num_tasks: int,
    digest: str,
    stop_event: asyncio.Event,
    forkserver: ForkServer | None,
    cluster: Any,
) -> Outcome:
    with stop_on_signals(stop_event):
        if not config.instances:  # no config_paths: the servers of a running head server
            found = await discover(config.head_url)
            if found is None:
                raise ServerError(
                    f"no head server answers at {config.head_url}: start the servers with "
                    'ng_run "+config_paths=[...]", or give ng_collect_rollouts the same '
                    "+config_paths to start them itself",
                    url=config.head_url,
                )
            agents, where = found
            if models := sweep_models(opts):
                await check_served(config.head_url, models, opts.agent_name)
            print_err(f"using the servers of {where}")
            outcome = await _collect_with(config, opts, agents, where, num_tasks, digest, stop_event, _HINT_HEAD)
            if full.dry_run:
                outcome.estimates = await _estimates(full, config, outcome, {})
            return outcome
        # config_paths given: our own servers on free ports, never someone else's.
        servers = running_servers(
            config, stop_event=stop_event, write=print_err, forkserver=forkserver, cluster=cluster
        )
        async with servers as supervisor:
            agents = {
                name: supervisor.replica_urls.get(name) or [supervisor.urls[name]]
                for name, inst in config.instances.items()
                if inst.server_type == "responses_api_agents"
            }
            where = "servers started for this run"
            outcome = await _collect_with(
                config, opts, agents, where, num_tasks, digest, stop_event, _HINT_ONE_COMMAND, supervisor
            )
            if full.dry_run:
                outcome.estimates = await _estimates(full, config, outcome, supervisor.urls)
            return outcome


async def _estimates(
    opts: CollectOptions, config: GlobalConfig, outcome: Outcome, urls: dict[str, str]
) -> list[Estimate]:
    """The pilot's figures extrapolated to the whole run, per variant."""
    rollouts = count_tasks(opts.input_path, opts.limit) * opts.num_repeats
    catalogue = await _catalogue(config, opts.agent_name, urls)
    estimates = []
    for lane in outcome.lanes:
        model = lane.variant.model if lane.variant is not None else None
        model = model or outcome.docs[lane.name]["run"].get("requested_model")
        estimates.append(estimate(lane.name, model, lane.metrics, rollouts, catalogue))
    return estimates


async def _catalogue(config: GlobalConfig, agent: str | None, urls: dict[str, str]) -> list[ModelInfo]:
    """The upstream's ``/models`` (prices), when the config says which upstream; else none."""
    inst = config.instances.get(agent or "")
    ref = inst.fields.get("model_server") if inst else None
    target = config.instances.get(ref.get("name", "")) if isinstance(ref, dict) else None
    if target is None or "openai_base_url" not in target.fields:
        return []
    fields = substitute_urls(target.fields, urls, target.where)
    upstream = Upstream(str(fields["openai_base_url"]), str(fields.get("openai_api_key") or ""), "")
    headers = {str(k): str(v) for k, v in (fields.get("default_headers") or {}).items()}
    try:
        async with AiohttpWire.open(pool_size=2, connect_timeout_s=10.0, read_timeout_s=30.0) as wire:
            entries = await fetch_models(wire, upstream, headers=headers)
    except NemoGymError as exc:
        print_err(f"note: no catalogue prices ({exc})")
        return []
    return [ModelInfo.parse(e) for e in entries]


async def _collect_with(
    config: GlobalConfig,
    opts: CollectOptions,
    agents: dict[str, list[str]],
    where: str,
    num_tasks: int,
    digest: str,
    stop_event: asyncio.Event,
    restart_hint: str,
    supervisor: Supervisor | None = None,
) -> Outcome:
    opts = _agents_for(opts, agents)
    lanes = _lanes(opts)
    started_at = now()
    records = {}
    for lane in lanes:
        record = run_record(
            opts,
            config,
            lane=lane.name,
            variant=lane.variant,
            servers=where,
            agents=agents,
            input_sha256=digest,
            num_tasks=num_tasks,
            started_at=started_at,
        )
        previous = _previous_record(lane) if opts.resuming else None
        if previous is not None:
            check_resume(previous.get("run"), record, lane.output)
            cost = previous.get("cost")
            earlier = cost.get("failed_attempts_usd") if isinstance(cost, dict) else None
            if isinstance(earlier, (int, float)):
                lane.metrics.previous_failed_cost = float(earlier)
        records[lane.name] = record
        _write_metrics(lane, {"status": "running", "run": record})
    progress = Progress(opts.progress_interval_s)
    total_in_flight = sum(lane.concurrency for lane in lanes)
    pool = pool_size(total_in_flight)
    # The client is closed before the servers stop: they need not wait for its idle
    # keep-alive connections, so the run ends as soon as its last row is written.
    async with open_json_client(pool_size=pool, timeout=opts.rollout_timeout_s) as client:
        collector = Collector(
            opts, agents, client, stop_event, progress, restart_hint=restart_hint, max_in_flight=pool, lanes=lanes,
            announce=print_err,
        )  # fmt: skip
        collector.prepare_output(num_tasks)
        outstanding = {lane.name: num_tasks * opts.num_repeats - len(lane.done) for lane in lanes}
        progress.start(max(0, sum(outstanding.values())))
        watcher = asyncio.create_task(_watch_servers(supervisor, collector)) if supervisor else None
        started = time.perf_counter()
        try:
            await collector.run(outstanding)
        finally:
            await progress.stop()
            if watcher is not None:
                watcher.cancel()
        wall = time.perf_counter() - started
    ended_at = now()
    docs = {}
    for lane in lanes:
        own = lane.busy_time(wall) if len(lanes) > 1 else wall  # a variant's rollouts/s: its own time
        doc = lane.metrics.summary(wall_time_s=own, new_rollouts=lane.new_rollouts)
        doc["output"] = str(lane.output)
        doc["failures_file"] = str(lane.failures.path)
        doc["concurrency"] = {"requested": lane.concurrency, "workers": lane.workers}
        doc["complete"] = lane.complete and collector.fatal is None and collector.stopped is None
        doc["interrupted"] = not doc["complete"] and collector.fatal is None and collector.stopped is None
        doc["status"] = "complete" if doc["complete"] else "stopped" if collector.stopped else "interrupted"
        if collector.fatal is not None:
            doc["error"] = str(collector.fatal)
            doc["status"] = "failed"
        if collector.stopped is not None:
            doc["stopped"] = str(collector.stopped)
        doc["run"] = {**records[lane.name], "ended_at": ended_at}
        _write_metrics(lane, doc)
        if opts.materialize_inputs:
            _materialize_inputs(lane, opts, num_tasks)
        docs[lane.name] = doc
    if len(lanes) > 1 or lanes[0].variant is not None:
        _write_sweep(opts, lanes, docs)
    if collector.fatal is not None:
        raise collector.fatal
    code, message = _gates(docs, opts, collector)
    return Outcome(docs, code, message, lanes)


def _write_metrics(lane: Lane, doc: dict[str, Any]) -> None:
    path = metrics_path(lane.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(dumps(doc))
    tmp.replace(path)  # never a half-written metrics file


def _materialize_inputs(lane: Lane, opts: CollectOptions, num_tasks: int) -> None:
    """``<stem>_materialized_inputs.jsonl``: the input row of every rollout in the output, in
    (task, rollout) order, as NeMo Gym's reward profiling reads it beside the output."""
    path = lane.output.with_name(lane.output.stem + "_materialized_inputs.jsonl")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for item in read_tasks(opts.input_path, opts.limit):
            if item.row is None:
                continue
            row = lane._row(item.row)
            if not isinstance(row.get("agent_ref"), dict) and opts.agent_name:
                row = {**row, "agent_ref": {"name": opts.agent_name}}
            for r in range(opts.num_repeats):
                if (item.task_index, r) in lane.done:
                    f.write(dumps_line({**row, "_ng_task_index": item.task_index, "_ng_rollout_index": r}))
    tmp.replace(path)


def _write_sweep(opts: CollectOptions, lanes: list[Lane], docs: dict[str, dict[str, Any]]) -> None:
    """``sweep.json``: this run's variants, kept in the order of an earlier manifest of the
    folder over the same input, whose other variants stay (resuming one variant, or adding
    one, leaves the rest in the report)."""
    folder = opts.output_path.with_suffix("")
    current = {}
    for lane in lanes:
        assert lane.variant is not None
        current[lane.name] = {
            "name": lane.name,
            "output": lane.output.name,
            "model": lane.variant.model,
            "overrides": lane.variant.params(),
            "status": docs[lane.name]["status"],
        }
    try:
        earlier = loads((folder / "sweep.json").read_bytes())
    except (OSError, ValueError):
        earlier = None
    variants = []
    if isinstance(earlier, dict) and earlier.get("input") == str(opts.input_path):
        for entry in earlier.get("variants") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                variants.append(current.pop(entry["name"], entry))
    variants += current.values()
    manifest = {"input": str(opts.input_path), "variants": variants}
    (folder / "sweep.json").write_bytes(dumps(manifest))


def _gates(docs: dict[str, dict[str, Any]], opts: CollectOptions, collector: Collector) -> tuple[int, str]:
    """The exit code and, if not 0, the message saying why."""
    if collector.stopped is not None:
        return 1, f"stopped: {collector.stopped}"
    if any(doc["interrupted"] for doc in docs.values()):
        return 130, "interrupted: re-run the same command with +resume=true to continue"
    failed = sum(doc["failed"] for doc in docs.values())
    if failed > opts.max_failures:
        files = ", ".join(doc["failures_file"] for doc in docs.values() if doc["failed"])
        return 1, f"gate failed: {failed} rollouts failed, more than +max_failures={opts.max_failures} (see {files})"
    gate = opts.min_mean_reward
    if gate is not None:
        for name, doc in docs.items():
            reward = doc["reward"]["mean"] if opts.gate_on == "all" else doc["reward"]["mean_succeeded"]
            label = f"[{name}] " if name else ""
            which = "mean reward (failures count 0)" if opts.gate_on == "all" else "mean reward over succeeded rollouts"
            if reward is None:
                return 1, f"gate failed: {label}no rollout has a reward to compare with +min_mean_reward={gate}"
            if reward < gate:
                return 1, f"gate failed: {label}{which} {reward:.4f} is below +min_mean_reward={gate}"
    return 0, ""


def collect(args: list[str]) -> int:
    """Run a collection from Hydra-syntax ``args``; returns the exit code."""
    raise_open_file_limit()
    # We may start the servers: the fork server imports their frameworks while we compose.
    forkserver = ForkServer() if fork_supported() and any("config_paths" in a for a in args) else None
    try:
        config = load_config(args, command=COLLECT_OPTIONS, everywhere=ALL_OPTIONS)
        opts = CollectOptions.from_config(config.options)
        config = allow_sweep_models(config, opts)  # each variant served by the model it names
    except BaseException:
        if forkserver is not None:
            forkserver.close()
        raise
    if forkserver is not None and not config.instances:
        forkserver.close()
        forkserver = None
    tune_gc()
    outcome = run_async(_collect(config, opts, forkserver))
    if outcome.estimates is not None:
        print(format_estimates(outcome.estimates))
        pilots = ", ".join(doc["output"] for doc in outcome.docs.values())
        print(f"dry run: nothing written to the output; the pilot's rows are in {pilots}")
        return 0 if not any(doc.get("error") for doc in outcome.docs.values()) else 1
    for name, doc in outcome.docs.items():
        if name:
            print(f"== {name} ({doc['run'].get('requested_model') or 'the config model'})")
        print(format_summary(doc))
        new_rows = doc["succeeded"] - doc["resumed_from_output"]
        print(f"wrote {new_rows} new rows to {doc['output']}; metrics in {metrics_path_of(doc)}")
        if doc["failed"]:
            print(f"{doc['failed']} failed rollouts are listed in {doc['failures_file']}")
    if outcome.message:
        print_err(outcome.message)
    return outcome.code


def metrics_path_of(doc: dict[str, Any]) -> str:
    return str(metrics_path(Path(doc["output"])))
