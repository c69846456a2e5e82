"""``ng_collect_rollouts``: tasks from JSONL through an agent, scored rows to JSONL.

This module is the command: it finds the agents (a running ``ng_run``'s head server, or,
given ``config_paths`` and no head server, servers it starts itself and stops afterwards:
one command for CI), runs the collection (``collector.py``), writes
``<output stem>_metrics.json``, prints the summary and applies the exit-code gates:

- 0: every rollout succeeded (or at most ``+max_failures`` failed) and every gate passed;
- 1: more than ``+max_failures`` rollouts failed, a gate such as ``+min_mean_reward`` was
  not met, or a server died (the message says which);
- 130: interrupted (Ctrl-C); re-run with ``+resume=true`` to continue.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import httpx

from nemo_gym_cli.collect.collector import CollectOptions, Collector, JSONPoster
from nemo_gym_cli.collect.files import count_tasks, metrics_path
from nemo_gym_cli.collect.metrics import Progress, format_summary
from nemo_gym_cli.commands.options import ALL_OPTIONS, COLLECT_OPTIONS
from nemo_gym_cli.config import GlobalConfig, load_config
from nemo_gym_cli.errors import ConfigError, ServerError
from nemo_gym_cli.process.forkserver import ForkServer, fork_supported
from nemo_gym_cli.process.supervisor import Supervisor, running_servers, stop_on_signals
from nemo_gym_cli.server.client import open_json_client
from nemo_gym_cli.server.serve import run_async, tune_gc
from nemo_gym_cli.wire import dumps

__all__ = ["CollectOptions", "collect"]

log = logging.getLogger(__name__)

#: Most connections to the agents; more rollouts than this wait on the collector's gate.
MAX_POOL = 1024


def print_err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _discover(config: GlobalConfig) -> dict[str, str] | None:
    """Agent name -> URL from a running head server, or None if none answers."""
    try:
        async with httpx.AsyncClient(timeout=5.0, trust_env=False) as http:
            resp = await http.get(config.head_url + "/instances")
    except httpx.TransportError:
        return None
    try:
        rows = resp.json()["instances"] if resp.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        rows = None
    if not isinstance(rows, list):
        raise ServerError(
            f"{config.head_url}/instances did not answer like an ng_run head server "
            f"(HTTP {resp.status_code}); is +head_server.port right?",
            url=config.head_url,
        )
    return {r["name"]: r["url"] for r in rows if r.get("type") == "responses_api_agents"}


async def _watch_servers(supervisor: Supervisor, collector: Collector) -> None:
    """One-command mode: a server that dies ends the run (``watch`` prints its last output)."""
    if await supervisor.watch(asyncio.Event()):
        dead = supervisor.first_dead()
        url = dead.url if dead else ""
        where = f"{dead.instance.name!r} at {url}" if dead else "a server"
        message = (
            f"server {where} exited during the collection (its last output is above); fix "
            "that, then re-run this command with +resume=true to continue where it stopped"
        )
        collector.stop_fatally(ServerError(message, url=url))


#: What to do when an agent dies, by where the servers came from.
_HINT_NG_RUN = (
    "start the servers again (ng_run with the same +config_paths), then re-run with "
    "+resume=true to continue where this run stopped"
)
_HINT_ONE_COMMAND = "its output is above; re-run this command with +resume=true to continue where it stopped"


async def _collect(
    config: GlobalConfig, opts: CollectOptions, forkserver: ForkServer | None
) -> tuple[dict[str, Any], int, str]:
    opts.check_paths()
    stop_event = asyncio.Event()
    pool = min(opts.concurrency, MAX_POOL)
    async with open_json_client(pool_size=pool, timeout=opts.rollout_timeout_s) as client:
        with stop_on_signals(stop_event):
            if not config.instances:  # no config_paths: use the servers of a running ng_run
                agents = await _discover(config)
                if agents is None:
                    raise ServerError(
                        f"no head server answers at {config.head_url}: start the servers with "
                        'ng_run "+config_paths=[...]", or give ng_collect_rollouts the same '
                        "+config_paths to start them itself",
                        url=config.head_url,
                    )
                log.info("using the servers of the head server at %s", config.head_url)
                return await _collect_with(agents, client, opts, stop_event, _HINT_NG_RUN)
            # config_paths given: our own servers on free ports, never someone else's.
            servers = running_servers(config, stop_event=stop_event, write=print_err, forkserver=forkserver)
            async with servers as supervisor:
                agents = {
                    name: supervisor.urls[name]
                    for name, inst in config.instances.items()
                    if inst.server_type == "responses_api_agents"
                }
                return await _collect_with(agents, client, opts, stop_event, _HINT_ONE_COMMAND, supervisor)


async def _collect_with(
    agents: dict[str, str],
    client: JSONPoster,
    opts: CollectOptions,
    stop_event: asyncio.Event,
    restart_hint: str,
    supervisor: Supervisor | None = None,
) -> tuple[dict[str, Any], int, str]:
    if opts.agent_name and opts.agent_name not in agents:
        known = ", ".join(sorted(agents)) or "none"
        raise ConfigError(f"+agent_name={opts.agent_name!r} is not a running agent; agents: {known}")
    num_tasks = count_tasks(opts.input_jsonl_fpath, opts.limit)
    progress = Progress(opts.progress_interval_s)
    collector = Collector(
        opts,
        agents,
        client,
        stop_event,
        progress,
        restart_hint=restart_hint,
        max_in_flight=min(opts.concurrency, MAX_POOL),
    )
    collector.prepare_output(num_tasks)
    progress.start(max(0, num_tasks * opts.num_repeats - len(collector.done)))
    watcher = asyncio.create_task(_watch_servers(supervisor, collector)) if supervisor else None
    started = time.perf_counter()
    try:
        await collector.run()
    finally:
        await progress.stop()
        if watcher is not None:
            watcher.cancel()
    wall = time.perf_counter() - started
    doc = collector.metrics.summary(wall_time_s=wall, new_rollouts=collector.new_rollouts)
    doc["output"] = str(opts.output_jsonl_fpath)
    doc["failures_file"] = str(collector.failures.path)
    doc["complete"] = collector.complete
    doc["interrupted"] = not collector.complete and collector.fatal is None
    if collector.fatal is not None:
        doc["error"] = str(collector.fatal)
    metrics_path(opts.output_jsonl_fpath).write_bytes(dumps(doc))
    if collector.fatal is not None:
        raise collector.fatal
    return doc, *_gates(doc, opts)


def _gates(doc: dict[str, Any], opts: CollectOptions) -> tuple[int, str]:
    """The exit code and, if not 0, the message saying why."""
    if doc["interrupted"]:
        return 130, "interrupted: re-run the same command with +resume=true to continue"
    if doc["failed"] > opts.max_failures:
        return 1, (
            f"gate failed: {doc['failed']} rollouts failed, more than "
            f"+max_failures={opts.max_failures} (see {doc['failures_file']})"
        )
    gate = opts.min_mean_reward
    if gate is not None:
        reward = doc["metrics"].get("reward", {}).get("mean")
        if reward is None:
            return (
                1,
                f"gate failed: no rollout has a reward to compare with +min_mean_reward={gate}",
            )
        if reward < gate:
            return 1, f"gate failed: mean reward {reward:.4f} is below +min_mean_reward={gate}"
    return 0, ""


def collect(args: list[str]) -> int:
    """Run a collection from Hydra-syntax ``args``; returns the exit code."""
    # We may start the servers: the fork server imports their frameworks while we compose.
    forkserver = ForkServer() if fork_supported() and any("config_paths" in a for a in args) else None
    try:
        config = load_config(args, command=COLLECT_OPTIONS, everywhere=ALL_OPTIONS)
        opts = CollectOptions.from_config(config.options)
    except BaseException:
        if forkserver is not None:
            forkserver.close()
        raise
    if forkserver is not None and not config.instances:
        forkserver.close()
        forkserver = None
    tune_gc()
    doc, code, message = run_async(_collect(config, opts, forkserver))
    print(format_summary(doc))
    new_rows = doc["succeeded"] - doc["resumed_from_output"]
    print(f"wrote {new_rows} new rows to {opts.output_jsonl_fpath}; metrics in {metrics_path(opts.output_jsonl_fpath)}")
    if doc["failed"]:
        print(f"{doc['failed']} failed rollouts are listed in {doc['failures_file']}")
    if message:
        print_err(message)
    return code
