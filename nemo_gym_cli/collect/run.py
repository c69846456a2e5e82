"""One ``ng_collect_rollouts`` run, from a composed config to its outputs, gates and estimates.

Where the servers come from: given ``config_paths``, the run starts its own, on free ports,
and stops them at the end (one command for CI), never attaching to servers someone else
runs; without them it uses the servers of a running head server (``ng_run``'s, or NeMo
Gym's), and records which. It runs the collection (``collector.py``), one lane per variant
of a sweep (``+models=[...]`` or ``variants:``), writes each lane's metrics (with the ``run``
record), materialized inputs and, for a sweep, ``sweep.json`` (``outputs.py``), and decides
the exit code (``gates``; the ``+baseline`` regression gate, ``gate.py``). What CI reads is
written last: ``+junit_xml`` (``junit.py``) and ``$GITHUB_STEP_SUMMARY`` (``step_summary.py``).
A ``+dry_run`` runs a pilot into its own files and extrapolates (``estimate.py``). What it
says along the way goes to ``note``: printing is the command's.

Each value keeps one name: ``concurrency`` is the most rollouts in flight (a lane's, or the
sum over lanes), ``workers`` the tasks a lane started (at most its concurrency), ``running``
a lane's rollouts in flight now, and ``connections`` the most requests handed to the client
at once (the concurrency, within the open-file limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from nemo_gym_cli.collect.adaptive import AdaptiveSweep
from nemo_gym_cli.collect.aggregate import entries, slim, with_figures, write_aggregate_metrics_entries
from nemo_gym_cli.collect.collector import Collector, Lane
from nemo_gym_cli.collect.discovery import discover
from nemo_gym_cli.collect.environments import Route, instances_of_config_dict, routes
from nemo_gym_cli.collect.estimate import Estimate, catalogue, estimate
from nemo_gym_cli.collect.files import count_tasks, read_tasks
from nemo_gym_cli.collect.junit import write_junit
from nemo_gym_cli.collect.metrics import Progress
from nemo_gym_cli.collect.options import CollectOptions
from nemo_gym_cli.collect.record import check_resume, input_digest, now, run_record
from nemo_gym_cli.collect.sweep import check_served, sweep_models
from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.config.compose import NEMO_GYM_FOLDERS, NEMO_GYM_PREFIX, NemoGymRoot
from nemo_gym_cli.errors import ConfigError, InputError, ServerError
from nemo_gym_cli.limits import fd_budget, open_file_limit
from nemo_gym_cli.outputs import OutputFiles, SweepEntry, write_materialized_inputs, write_metrics, write_sweep
from nemo_gym_cli.process.forkserver import ForkServer
from nemo_gym_cli.process.supervisor import Supervisor, connect_cluster, running_servers, stop_on_signals
from nemo_gym_cli.report.gate import gate
from nemo_gym_cli.report.step_summary import append_step_summary, collection_markdown
from nemo_gym_cli.server.client import open_json_client
from nemo_gym_cli.wire import loads

__all__ = ["Outcome", "collect_rollouts", "connection_limit"]

Note = Callable[[str], None]

#: Most connections to the agents; more rollouts than this wait for one.
MAX_CONNECTIONS = 1024
#: Fewest connections worth running with (below: the open-file limit is the problem).
MIN_CONNECTIONS = 8

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
    #: an adaptive sweep's end, in a sentence (None: not adaptive)
    adaptive: str | None = None


def connection_limit(concurrency: int, note: Note) -> int:
    """Connections to the agents: what ``concurrency`` rollouts in flight need, within the
    open-file limit (a third of what is left of it: each connection costs a few descriptors
    in every server it crosses, and our servers share this limit)."""
    budget = fd_budget()
    size = min(concurrency, MAX_CONNECTIONS)
    if budget is None:
        return size
    fits = budget // 3
    if fits < MIN_CONNECTIONS:
        raise ConfigError(
            f"the open-file limit ({open_file_limit()}, ulimit -n; the hard limit could not raise it) leaves room "
            f"for {fits} connections: raise it (`ulimit -n 65536` in the shell, or LimitNOFILE= for a service) and "
            "run again"
        )
    if fits < size:
        note(
            f"note: the open-file limit ({open_file_limit()}) allows {fits} connections at once; the other "
            f"{concurrency - fits} rollouts in flight wait their turn (raise `ulimit -n` for more)"
        )
    return min(size, fits)


async def collect_rollouts(
    config: GlobalConfig, opts: CollectOptions, forkserver: ForkServer | None, note: Note
) -> Outcome:
    """Run the collection ``opts`` asks for on the servers of ``config`` (started here when it
    has instances, else a running head server's)."""
    return await _Run(config, opts, forkserver, note).run()


class _Run:
    def __init__(self, config: GlobalConfig, opts: CollectOptions, forkserver: ForkServer | None, note: Note) -> None:
        self.config = config
        self.full = opts  # a dry run's opts are its pilot's; these are the whole run's
        self.opts = pilot(opts) if opts.dry_run else opts
        self.forkserver = forkserver
        self.note = note
        self.stop_event = asyncio.Event()

    async def run(self) -> Outcome:
        found = self._input_from_nemo_gym(self.full)
        if found is not self.full:
            self.full = found
            self.opts = self.opts.model_copy(update={"input_jsonl_fpath": found.input_jsonl_fpath})
        opts, config = self.opts, self.config
        opts.check_paths()
        if opts.input_path != Path(opts.input_jsonl_fpath).expanduser():
            self.note(
                f"note: no {opts.input_jsonl_fpath} here; reading the one installed with the toolkit: {opts.input_path}"
            )
        self.num_tasks = count_tasks(opts.input_path, opts.limit)
        if self.num_tasks == 0 and opts.limit != 0:  # most likely the wrong file: say so, lose nothing
            self.note(f"warning: {opts.input_path} holds no tasks (no non-blank line): nothing to collect")
        self.digest = input_digest(opts.input_path)
        if config.instances and config.ray is not None:
            # Before stop_on_signals: joining a Ray cluster sets Ray's own SIGTERM handler.
            cluster = connect_cluster(config.ray, config.instances.values())
            try:
                return await self._on(cluster)
            finally:
                cluster.close()
        return await self._on(None)

    async def _on(self, cluster: Any) -> Outcome:
        config, opts = self.config, self.opts
        with stop_on_signals(self.stop_event):
            if not config.instances:  # no config_paths: the servers of a running head server
                found = await discover(config.head_url)
                if found is None:
                    raise ServerError(
                        f"no head server answers at {config.head_url}: start the servers with "
                        'ng_run "+config_paths=[...]", or give ng_collect_rollouts the same '
                        "+config_paths to start them itself",
                        url=config.head_url,
                    )
                agents, where, head_config = found
                if models := sweep_models(opts):
                    await check_served(config.head_url, models, opts.agent_name)
                self.note(f"using the servers of {where}")
                found_routes = {
                    # a route to the agent itself goes to every replica /instances lists of it
                    a: replace(r, urls=agents[a]) if r.urls == agents.get(a, [])[:1] else r
                    for a, r in self._routes(instances_of_config_dict(head_config)).items()
                }
                outcome = await self._with(agents, where, _HINT_HEAD, routes=found_routes)
                if self.full.dry_run:
                    outcome.estimates = await self._estimates(outcome, {})
                return outcome
            # config_paths given: our own servers on free ports, never someone else's.
            servers = running_servers(
                config,
                stop_event=self.stop_event,
                write=self.note,
                forkserver=self.forkserver,
                cluster=cluster,
                user_errors=False,
            )
            async with servers as supervisor:
                urls = {name: supervisor.replica_urls.get(name) or [supervisor.urls[name]] for name in config.instances}
                agents = {
                    name: urls[name]
                    for name, inst in config.instances.items()
                    if inst.server_type == "responses_api_agents"
                }
                own_routes = self._routes(
                    {n: (i.server_type, i.implementation, i.fields, urls[n]) for n, i in config.instances.items()}
                )
                outcome = await self._with(
                    agents, "servers started for this run", _HINT_ONE_COMMAND, supervisor, routes=own_routes
                )
                if self.full.dry_run:
                    outcome.estimates = await self._estimates(outcome, supervisor.urls)
                return outcome

    def _input_from_nemo_gym(self, opts: CollectOptions) -> CollectOptions:
        """``+input_jsonl_fpath`` in NeMo Gym's root, as ``config_paths`` are found: with
        ``nemo_gym:`` there only; a path under its folder names (``resources_servers/...``)
        there when neither the working directory nor this package has it."""
        entry = opts.input_jsonl_fpath
        relative = entry.removeprefix(NEMO_GYM_PREFIX)
        explicit = entry.startswith(NEMO_GYM_PREFIX)
        path = Path(relative)
        if not explicit and (path.is_absolute() or opts.input_path.is_file() or path.parts[0] not in NEMO_GYM_FOLDERS):
            return opts
        root = NemoGymRoot(self.config.nemo_gym)
        if not explicit and not root.has(relative):
            return opts  # check_paths names the places it looked
        found = root() / relative
        if not found.is_file():
            raise InputError(f"+input_jsonl_fpath={entry!r} does not exist in NeMo Gym's root ({root()})")
        self.note(f"note: reading +input_jsonl_fpath={entry} from NeMo Gym {root.options.version}'s root: {found}")
        return opts.model_copy(update={"input_jsonl_fpath": str(found)})

    def _routes(self, instances: dict[str, Any]) -> dict[str, Route]:
        """Each agent's route through its environment server (``environments.py``)."""
        opts = self.opts
        return routes(instances, mode=opts.environment_routing_mode, server_name=opts.environment_server_name)

    async def _estimates(self, outcome: Outcome, urls: dict[str, str]) -> list[Estimate]:
        """The pilot's figures extrapolated to the whole run, per variant."""
        full = self.full
        rollouts = count_tasks(full.input_path, full.limit) * full.num_repeats
        prices = await catalogue(self.config, full.agent_name, urls, self.note)
        return [
            estimate(lane.name, outcome.docs[lane.name]["run"].get("requested_model"), lane.metrics, rollouts, prices)
            for lane in outcome.lanes
        ]

    async def _with(
        self,
        agents: dict[str, list[str]],
        where: str,
        restart_hint: str,
        supervisor: Supervisor | None = None,
        *,
        routes: dict[str, Route],
    ) -> Outcome:
        config, num_tasks = self.config, self.num_tasks
        opts = self._agents_for(agents)
        lanes = lanes_of(opts)
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
                input_sha256=self.digest,
                num_tasks=num_tasks,
                started_at=started_at,
            )
            previous = _previous_metrics(lane) if opts.resuming else None
            if previous is not None:
                check_resume(previous.get("run"), record, lane.output)
                cost = previous.get("cost")
                earlier = cost.get("failed_attempts_usd") if isinstance(cost, dict) else None
                if isinstance(earlier, (int, float)):
                    lane.metrics.previous_failed_cost = float(earlier)
            records[lane.name] = record
            write_metrics(lane.output, {"status": "running", "run": record})
        progress = Progress(opts.progress_interval_s)
        connections = connection_limit(sum(lane.concurrency for lane in lanes), self.note)
        # The client is closed before the servers stop: they need not wait for its idle
        # keep-alive connections, so the run ends as soon as its last row is written.
        async with open_json_client(pool_size=connections, timeout=opts.rollout_timeout_s) as client:
            collector = Collector(
                opts, {a: r.urls for a, r in routes.items()}, client, self.stop_event, progress,
                restart_hint=restart_hint, connections=connections, lanes=lanes, announce=self.note, routes=routes,
            )  # fmt: skip
            collector.prepare_output(num_tasks)
            outstanding = {lane.name: num_tasks * opts.num_repeats - len(lane.done) for lane in lanes}
            progress.start(max(0, sum(outstanding.values())))  # an adaptive sweep's: at most this
            watcher = asyncio.create_task(_watch_servers(supervisor, collector)) if supervisor else None
            started = time.perf_counter()
            race = AdaptiveSweep(opts, lanes, num_tasks, self.note) if opts.adaptive else None
            try:
                if race is not None:
                    race.load()
                    await race.run(collector)
                else:
                    await collector.run(outstanding)
            finally:
                await progress.stop()
                if watcher is not None:
                    watcher.cancel()
            wall = time.perf_counter() - started
            # Not after Ctrl-C (the user wants out) or a dead server; after the budget, yes.
            interrupted = self.stop_event.is_set() and collector.stopped is None
            if not opts.disable_aggregation and collector.fatal is None and not interrupted:
                for lane in lanes:
                    await self._aggregate(lane, routes, client)
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
            if race is not None and lane.name not in race.race.live:
                doc["status"] = "dropped"  # by the adaptive sweep: its rows and figures stay
            doc["run"] = {**records[lane.name], "ended_at": ended_at}
            write_metrics(lane.output, doc)
            if opts.materialize_inputs:
                write_materialized_inputs(lane.output, materialized_inputs(lane, opts))
            docs[lane.name] = doc
        if len(lanes) > 1 or lanes[0].variant is not None:
            entries = [
                SweepEntry(lane.name, lane.output, lane.model, lane.variant.params(), docs[lane.name]["status"])
                for lane in lanes
                if lane.variant is not None
            ]
            write_sweep(opts.output_path, opts.input_path, entries)
        if collector.fatal is not None:
            raise collector.fatal
        code, message = gates(docs, opts, collector)
        if not self.full.dry_run:
            code, message = self._ci(docs, code, message)
        return Outcome(docs, code, message, lanes, adaptive=race.summary() if race is not None else None)

    def _ci(self, docs: dict[str, dict[str, Any]], code: int, message: str) -> tuple[int, str]:
        """What CI reads of a finished run: the JUnit XML, the ``+baseline`` gate (only when
        every other gate passed: its verdict decides the exit code then) and the step
        summary (``$GITHUB_STEP_SUMMARY``)."""
        opts = self.opts
        outputs = {name: Path(doc["output"]) for name, doc in docs.items()}
        if opts.junit_xml:
            path = Path(opts.junit_xml).expanduser()
            threshold = opts.junit_min_reward if opts.junit_min_reward is not None else opts.pass_threshold
            totals = write_junit(path, outputs, threshold)
            self.note(
                f"JUnit XML in {path}: {totals['tests']} tasks, {totals['failures']} under reward {threshold:g}, "
                f"{totals['errors']} with a failed rollout"
            )
        verdicts = [message] if message else []
        if opts.baseline and code == 0:
            try:
                results = gate(
                    [str(p) for p in outputs.values()], opts.baseline, alpha=opts.gate_alpha, margin=opts.gate_margin
                )
            except ConfigError as exc:
                code, message = exc.exit_code, f"error: {exc}"
                verdicts.append(message)
            else:
                verdicts += [r.line() for r in results]
                worse = [r.line() for r in results if r.worse]
                for result in results:
                    if not result.worse:
                        self.note(result.line())
                if worse:
                    code, message = 1, "\n".join(worse)
        summary = append_step_summary(collection_markdown(docs, verdicts or ["every gate passed"]))
        if summary is not None:
            self.note(f"step summary appended to {summary}")
        return code, message

    async def _aggregate(self, lane: Lane, routes: dict[str, Route], client: Any) -> None:
        """``<stem>_aggregate_metrics.json`` (NeMo Gym 0.7's summary): each environment
        server's rows of the lane's output sent to its ``/aggregate_metrics``, as 0.7's
        collector does (its resources server's own metrics included); computed here
        (``server/aggregate.py``) for one that cannot answer, with a note saying so.

        Its figures need every row at once (0.7 sends them in one request), so an output of
        more than ``+aggregation_max_rows`` rows is left to ``ng eval aggregate``, with a note:
        the collection itself stays bounded in memory whatever the input's size."""
        if not lane.out.path.exists():
            return
        limit = self.opts.aggregation_max_rows
        by_server: dict[str, list[dict[str, Any]]] = {}
        count = 0
        for row in lane.out.existing_rows():
            count += 1
            if count > limit:
                self.note(
                    f"note: no {OutputFiles(lane.output).aggregate_metrics.name}: {lane.output} has more than "
                    f"+aggregation_max_rows={limit} rows, and NeMo Gym's summary needs them all in memory at once; "
                    f"write it when you want it with `ng eval aggregate -i {lane.output} -o <merged.jsonl>`"
                )
                return
            server = row.get("_ng_environment_server")
            by_server.setdefault(server if isinstance(server, str) else "", []).append(slim(row))
        if not by_server:
            return
        route_of = {r.environment_server: r for r in routes.values()}
        out = []
        for server, rows in by_server.items():
            route = route_of.get(server)
            answer = None
            if route is not None:
                try:
                    answer = await client.post(route.urls[0] + "/aggregate_metrics", {"verify_responses": rows})
                except ServerError as exc:
                    self.note(f"note: {server} could not sum the run up ({exc}); {lane.output}'s figures computed here")
            if isinstance(answer, dict):
                (label,) = entries(rows[:1])  # the entry's agent_ref and _ng_environment_server
                out.append(with_figures(label, answer))
            else:
                out.extend(entries(rows))
            rows.clear()
        write_aggregate_metrics_entries(OutputFiles(lane.output).aggregate_metrics, out)

    def _agents_for(self, agents: dict[str, list[str]]) -> CollectOptions:
        """``+agent_name`` checked against the running agents, once, before any row: unknown,
        or missing while the rows name no agent either, is one error listing the agents."""
        opts = self.opts
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
            self.note(f"note: +agent_name not given; using the only agent, {only!r}")
            return opts.model_copy(update={"agent_name": only})
        raise ConfigError(f"+agent_name=... is required: the rows name no agent (agent_ref.name); agents: {known}")


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


def lanes_of(opts: CollectOptions) -> list[Lane]:
    """One lane per output: the single run's, or each variant's with its own concurrency."""
    variants = {v.name: v for v in opts.sweep()}
    lanes = []
    for name, output in opts.outputs().items():
        variant = variants.get(name)
        concurrency = (variant.concurrency if variant and variant.concurrency else None) or opts.lane_concurrency
        lanes.append(Lane(name, output, variant, concurrency, opts))
    return lanes


def _previous_metrics(lane: Lane) -> dict[str, Any] | None:
    try:
        doc = loads(OutputFiles(lane.output).metrics.read_bytes())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def pilot(opts: CollectOptions) -> CollectOptions:
    """The options of a ``+dry_run`` pilot: a few rows per variant, into their own files
    (stale ones of an earlier pilot removed)."""
    pilot = opts.model_copy(
        update={
            "output_jsonl_fpath": str(OutputFiles(opts.output_path).dry_run),
            "limit": min(opts.dry_run_rows, opts.limit) if opts.limit is not None else opts.dry_run_rows,
            "num_repeats": 1,
            "resume": False,
            "resume_from_cache": False,
            "max_cost_usd": None,
            "materialize_inputs": False,
            "adaptive": False,
        }
    )
    for path in pilot.outputs().values():
        files = OutputFiles(path)
        for stale in (path, files.metrics, files.failures):
            stale.unlink(missing_ok=True)
    return pilot


def materialized_inputs(lane: Lane, opts: CollectOptions) -> Any:
    """The input row of every rollout in the lane's output, in (task, rollout) order, as
    NeMo Gym's reward profiling reads it beside the output."""
    for item in read_tasks(opts.input_path, opts.limit):
        if item.row is None:
            continue
        row = lane.row_sent(item.row)
        if not isinstance(row.get("agent_ref"), dict) and opts.agent_name:
            row = {**row, "agent_ref": {"name": opts.agent_name}}
        for r in range(opts.num_repeats):
            if (item.task_index, r) in lane.done:
                yield {**row, "_ng_task_index": item.task_index, "_ng_rollout_index": r}


def gates(docs: dict[str, dict[str, Any]], opts: CollectOptions, collector: Collector) -> tuple[int, str]:
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
