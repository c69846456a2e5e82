"""Re-scoring an output with the current verifier of its environment, without the model.

A verifier bug fixed after 100,000 rollouts should cost 100,000 ``/verify`` calls, not
100,000 rollouts. Each row of the output already holds its task fields and its recorded
``response``; re-scoring it is what an agent's ``/run`` does after the loop:

1. ``POST /seed_session`` to the row's resources server with the row's task fields (the
   row without ``response`` and ``reward``), in a new session: ours by the
   ``x-ng-session-id`` header, NeMo Gym's by the cookie its answer sets (both are sent);
2. each recorded ``function_call`` of the response replayed, in order, to its tool route in
   that session (``collect/replay.py``), so a verifier that reads the state the tools built
   (a shop's cart) sees it; each answer compared with the recorded output, and a row whose
   tools now answer differently flagged (``_ng_tool_outputs_differ``) with its new reward
   kept. ``+replay_tool_calls=false`` skips this (a row without calls skips it anyway);
3. ``POST /verify`` with those fields plus the recorded ``response``; its answer is the new
   row, the old reward kept as ``_ng_previous_reward``.

The row's resources server is its agent's (``agent_ref.name``, else ``+agent_name``; the
config's agents name their ``resources_server``). Given ``config_paths``, only those
resources servers are started, with the instances they refer to (a judge's model server
and what that one needs): the policy model is never started, so an LLM judge is the only
model paid for. Without ``config_paths``, the resources servers of a running ``ng_run``.

Rows are re-scored by a fixed pool of ``concurrency`` workers over a lazy reader (memory
flat in the file's size), each written and flushed as it finishes; a row that cannot be
re-scored (after ``max_attempts`` for a retryable error; a tool call that fails on replay
for a reason not the model's, a 5xx, is one) goes to ``<stem>_failures.jsonl``, and each
distinct tool-call error is one line on the terminal. What changed, the rows whose tools
answered differently, and the mean before and after with a paired interval over tasks, are
``<stem>_reverify.json``.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from nemo_gym_cli.collect.files import FailuresFile, OutputFile
from nemo_gym_cli.collect.replay import RecordedCall, Replayed, ReplayError, recorded_calls, replay
from nemo_gym_cli.config import GlobalConfig
from nemo_gym_cli.config.load import _placeholders
from nemo_gym_cli.errors import ConfigError, InputError, NemoGymError, ServerError
from nemo_gym_cli.server.config import validate_model
from nemo_gym_cli.server.spec import SESSION_HEADER, new_session_id
from nemo_gym_cli.wire import dumps, loads

if TYPE_CHECKING:  # the client (aiohttp) is imported when a run starts: ng_run lists these options
    from nemo_gym_cli.server.client import JSONClient

__all__ = ["ReverifyOptions", "Reverified", "record_path", "reverify", "servers_needed"]

Note = Callable[[str], None]

#: Fields of an output row that are the rollout's result, not its task.
RESULT_FIELDS = ("response", "reward", "_ng_previous_reward", "_ng_tool_outputs_differ")
#: Changed rows named one by one on the terminal (all of them are in the record).
SHOWN_CHANGES = 20


class ReverifyOptions(BaseModel):
    """Options of ``ng reverify`` (Hydra keys of the same names)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    input_jsonl_fpath: str = Field(description="the output to re-score: rows with their response (required)")
    output_jsonl_fpath: str | None = Field(
        None, description="the re-scored rows (default <input stem>_reverified.jsonl)"
    )
    agent_name: str | None = Field(None, description="the agent of rows that name none in agent_ref.name")
    limit: int | None = Field(None, ge=0, description="first N rows only (default: all)")
    concurrency: int = Field(32, ge=1, le=10_000, description="verifications in flight")
    max_attempts: int = Field(3, ge=1, le=100, description="attempts per row before it is a failure")
    timeout_s: float = Field(600.0, gt=0, description="timeout of one /seed_session, tool or /verify call")
    replay_tool_calls: bool = Field(
        True, description="replay each row's recorded tool calls in its session before /verify"
    )
    overwrite: bool = Field(False, description="replace an existing output")

    @classmethod
    def from_config(cls, options: dict[str, Any]) -> ReverifyOptions:
        if options.get("input_jsonl_fpath") in (None, ""):
            raise ConfigError("+input_jsonl_fpath=<output to re-score> is required (see ng reverify --help)")
        return validate_model(cls, {k: v for k, v in options.items() if k in cls.model_fields}, "+")

    @property
    def input_path(self) -> Path:
        return Path(self.input_jsonl_fpath).expanduser()

    @property
    def output_path(self) -> Path:
        if self.output_jsonl_fpath:
            return Path(self.output_jsonl_fpath).expanduser()
        return self.input_path.with_name(f"{self.input_path.stem}_reverified.jsonl")

    def check_paths(self) -> None:
        source, out = self.input_path, self.output_path
        if not source.is_file():
            raise InputError(f"+input_jsonl_fpath={str(source)!r} does not exist (or is not a file)")
        if out.resolve() == source.resolve():
            raise InputError(f"+output_jsonl_fpath={str(out)!r} is the input: the rows re-scored go to a new file")
        if out.exists() and out.stat().st_size and not self.overwrite:
            raise InputError(f"output {str(out)!r} already exists; add +overwrite=true or choose another path")


def record_path(output: Path) -> Path:
    """``<stem>_reverify.json``: what changed, and the means before and after."""
    return output.with_name(f"{output.stem}_reverify.json")


# ------------------------------------------------------------------ which servers


def _agent_of(row: Mapping[str, Any], default: str | None) -> str | None:
    ref = row.get("agent_ref")
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name if isinstance(name, str) and name else default


def _references(value: Any, out: set[str]) -> None:
    """Instance names ``value`` refers to: ``{type, name}`` references and ``${ng_url:...}``."""
    if isinstance(value, Mapping):
        if isinstance(value.get("name"), str) and isinstance(value.get("type"), str) and len(value) <= 2:
            out.add(value["name"])
        for v in value.values():
            _references(v, out)
    elif isinstance(value, list):
        for v in value:
            _references(v, out)
    elif isinstance(value, str):
        found: list[tuple[str, str]] = []
        _placeholders(value, "", found)  # ``${ng_url:name}``, as the config loader marks it
        out.update(name for _, name in found)


def servers_needed(config: GlobalConfig, resources: set[str]) -> list[str]:
    """``resources`` and every instance they refer to, transitively (a judge's model
    server, the emulator behind it); never an agent, never the policy unless a verifier
    refers to it."""
    needed: set[str] = set()
    todo = list(resources)
    while todo:
        name = todo.pop()
        if name in needed or name not in config.instances:
            continue
        needed.add(name)
        refs: set[str] = set()
        _references(config.instances[name].fields, refs)
        todo.extend(refs - needed)
    return sorted(needed)


def _resources_by_agent(instances: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, str]:
    """Agent -> the resources server its config names (``instances``: name -> (type, fields))."""
    out = {}
    for name, (server_type, fields) in instances.items():
        ref = fields.get("resources_server") if server_type == "responses_api_agents" else None
        if isinstance(ref, Mapping) and isinstance(ref.get("name"), str):
            out[name] = ref["name"]
    return out


def _pick_resources(agents_seen: set[str | None], by_agent: dict[str, str], resources: list[str]) -> dict[Any, str]:
    """Each agent of the rows (None: rows that name none) -> its resources server."""
    out: dict[Any, str] = {}
    for agent in agents_seen:
        if agent is None:
            if len(resources) != 1:
                raise ConfigError(
                    "some rows name no agent (agent_ref.name) and the config has "
                    f"{len(resources)} resources servers ({', '.join(resources) or 'none'}): give +agent_name"
                )
            out[None] = resources[0]
        elif agent in by_agent:
            out[agent] = by_agent[agent]
        else:
            known = ", ".join(sorted(by_agent)) or "none"
            raise ConfigError(
                f"the rows' agent {agent!r} is not in the config (agents: {known}); give the config the output "
                "was collected with"
            )
    return out


# ------------------------------------------------------------------ the run


@dataclass
class Reverified:
    """The outcome: counts, what changed, the paired statistics; ``document()`` is the record."""

    input: Path
    output: Path
    rows: int = 0
    rescored: int = 0
    failed: int = 0
    skipped: list[str] = field(default_factory=list)  # rows that cannot be re-scored, and why
    changed: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[tuple[Any, float, float]] = field(default_factory=list)  # (task, before, after) per row
    servers: list[str] = field(default_factory=list)
    #: what the verifiers reported spending (an LLM judge's ``verifier_usage.cost``)
    verifier_cost_usd: float = 0.0
    replay_tool_calls: bool = True
    rows_replayed: int = 0
    tool_calls_replayed: int = 0
    #: rows whose replayed tool outputs differ from the recorded ones, and which calls
    differing: list[dict[str, Any]] = field(default_factory=list)
    #: distinct tool-call errors of the replay: signature -> {"example", "rows"}
    tool_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    failure_noted: bool = False
    wall_time_s: float = 0.0
    statistics: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rescored / self.wall_time_s if self.wall_time_s > 0 else 0.0

    def document(self) -> dict[str, Any]:
        return {
            "input": str(self.input),
            "output": str(self.output),
            "rows": self.rows,
            "rescored": self.rescored,
            "failed": self.failed,
            "failures_file": str(FailuresFile(self.output).path) if self.failed else None,
            "servers": self.servers,
            "verifier_cost_usd": round(self.verifier_cost_usd, 9),
            "wall_time_s": round(self.wall_time_s, 3),
            "rows_per_s": round(self.rows_per_s, 1),
            "changed_rows": len(self.changed),
            "reward": self.statistics,
            "changed": sorted(self.changed, key=_order),
            "replay_tool_calls": self.replay_tool_calls,
            "rows_replayed": self.rows_replayed,
            "tool_calls_replayed": self.tool_calls_replayed,
            "tool_outputs_differ_rows": len(self.differing),
            "tool_outputs_differ": sorted(self.differing, key=_order),
            "tool_errors": [{"error": k, **v} for k, v in sorted(self.tool_errors.items())],
        }

    def lines(self) -> list[str]:
        """What the command prints."""
        out = [
            f"re-scored {self.rescored} of {self.rows} rows in {self.wall_time_s:.2f} s ({self.rows_per_s:.0f} rows/s)"
            + (f"; {self.failed} could not be (see {FailuresFile(self.output).path})" if self.failed else "")
        ]
        if self.verifier_cost_usd:
            out.append(f"the verifiers' judge model cost ${self.verifier_cost_usd:.6f} (no policy model was called)")
        if self.rows_replayed:
            calls, rows = self.tool_calls_replayed, self.rows_replayed
            out.append(f"replayed {calls} recorded tool calls in {rows} rows' sessions")
        for error, seen in sorted(self.tool_errors.items()):
            out.append(f"tool call error on replay: {error} in {seen['rows']} rows, e.g. {seen['example']}")
        if self.differing:
            out.append(
                f"{len(self.differing)} rows' tools answered differently than when collected (the environment "
                "changed under them): re-scored on the new answers, flagged _ng_tool_outputs_differ"
            )
            for d in sorted(self.differing, key=_order)[:SHOWN_CHANGES]:
                c = d["calls"][0]
                more = f" (+{len(d['calls']) - 1} more calls)" if len(d["calls"]) > 1 else ""
                out.append(
                    f"  task {d['task']} rollout {d['rollout']}: call {c['index'] + 1} {c['name']}: recorded "
                    f"{_short(c['recorded'])}, now {_short(c['replayed'])}{more}"
                )
            if len(self.differing) > SHOWN_CHANGES:
                out.append(f"  ... and {len(self.differing) - SHOWN_CHANGES} more (all in {record_path(self.output)})")
        elif self.replay_tool_calls and self.rows_replayed:
            out.append("every replayed tool call answered as recorded")
        out.append(f"{len(self.changed)} rows' rewards changed")
        for c in sorted(self.changed, key=_order)[:SHOWN_CHANGES]:
            out.append(f"  task {c['task']} rollout {c['rollout']}: {c['before']:g} -> {c['after']:g}")
        if len(self.changed) > SHOWN_CHANGES:
            out.append(f"  ... and {len(self.changed) - SHOWN_CHANGES} more (all in {record_path(self.output)})")
        s = self.statistics
        if s.get("tasks"):
            p = s["p_value"]
            p_text = "" if p is None else (f", p={p:.3f}" if p >= 0.001 else ", p<0.001")
            out.append(
                f"mean reward {s['mean_before']:.4f} -> {s['mean_after']:.4f}: paired difference "
                f"{s['diff']:+.4f}, 95% CI {s['ci95_low']:+.4f}..{s['ci95_high']:+.4f}{p_text} "
                f"(n={s['tasks']} tasks; {s['method']})"
            )
        return out


def _short(text: str | None, width: int = 60) -> str:
    if text is None:
        return "nothing"
    return text if len(text) <= width else text[: width - 3] + "..."


def _order(change: dict[str, Any]) -> tuple[Any, ...]:
    """Task then rollout, numbers in numeric order (a row without indices after them)."""
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in (change["task"], change["rollout"]))


def _reward(row: Mapping[str, Any]) -> float:
    value = row.get("reward")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _rows(path: Path, limit: int | None) -> Generator[tuple[int, dict[str, Any] | None, str], None, None]:
    """(line number, row or None, why not) for each non-blank line."""
    seen = 0
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if limit is not None and seen >= limit:
                return
            if not line.strip():
                continue
            seen += 1
            try:
                row = loads(line)
            except ValueError:
                yield number, None, f"{path}:{number}: not valid JSON"
                continue
            if not isinstance(row, dict):
                yield number, None, f"{path}:{number}: not a JSON object"
            elif not isinstance(row.get("response"), dict):
                yield number, None, f"{path}:{number}: the row has no recorded response to re-score"
            else:
                yield number, row, ""


def _scan(path: Path, limit: int | None, agent_name: str | None) -> tuple[int, set[str | None]]:
    """Rows and the agents they name, read once before any server starts."""
    rows, agents = 0, set()
    for _, row, _ in _rows(path, limit):
        rows += 1
        if row is not None:
            agents.add(_agent_of(row, agent_name))
    return rows, agents


async def reverify(config: GlobalConfig, opts: ReverifyOptions, note: Note, forkserver: Any = None) -> Reverified:
    """Re-score ``opts.input_jsonl_fpath`` into ``opts.output_jsonl_fpath`` (see the module)."""
    from nemo_gym_cli.process.supervisor import running_servers, stop_on_signals

    opts.check_paths()
    rows, agents = _scan(opts.input_path, opts.limit, opts.agent_name)
    result = Reverified(opts.input_path, opts.output_path, rows=rows, replay_tool_calls=opts.replay_tool_calls)
    stop = asyncio.Event()
    with stop_on_signals(stop):
        if config.instances:
            kinds = {n: (i.server_type, i.fields) for n, i in config.instances.items()}
            resources = sorted(n for n, i in config.instances.items() if i.server_type == "resources_servers")
            route = _pick_resources(agents, _resources_by_agent(kinds), resources)
            only = servers_needed(config, set(route.values()))
            result.servers = only
            note(f"starting {', '.join(only)} (resources servers and what they refer to; no policy model)")
            # The config without the instances not started: a NeMo Gym server gets the whole
            # config, whose other instances' ${ng_url:...} would name servers that do not run.
            started = replace(config, instances={n: config.instances[n] for n in only})
            async with running_servers(started, stop_event=stop, write=note, forkserver=forkserver) as sup:
                urls = {n: sup.replica_urls.get(n) or [sup.urls[n]] for n in only}
                await _run(opts, {a: urls[r] for a, r in route.items()}, result, stop, note)
        else:
            urls_by_agent = await _head_routes(config, agents, note)
            await _run(opts, urls_by_agent, result, stop, note)
    result.statistics = paired_statistics(result.pairs)
    record_path(result.output).write_bytes(dumps(result.document()))
    return result


async def _head_routes(config: GlobalConfig, agents: set[str | None], note: Note) -> dict[Any, list[str]]:
    """Each agent's resources server among a running head server's instances."""
    from nemo_gym_cli.collect.discovery import discover

    found = await discover(config.head_url)
    if found is None:
        raise ServerError(
            f"no head server answers at {config.head_url}: give +config_paths=[...] (the config the output was "
            'collected with) to start its resources servers, or start them with ng_run "+config_paths=[...]"',
            url=config.head_url,
        )
    _, where, head_config = found
    kinds: dict[str, tuple[str, Mapping[str, Any]]] = {}
    urls: dict[str, list[str]] = {}
    for name, value in head_config.items():
        if isinstance(value, Mapping) and len(value) == 1:
            ((server_type, inner),) = value.items()
            if isinstance(inner, Mapping) and len(inner) == 1:
                ((_, fields),) = inner.items()
                if isinstance(fields, Mapping):
                    kinds[str(name)] = (str(server_type), fields)
                    if fields.get("host") and fields.get("port"):
                        urls[str(name)] = [f"http://{fields['host']}:{fields['port']}"]
    resources = sorted(n for n, (t, _) in kinds.items() if t == "resources_servers")
    route = _pick_resources(agents, _resources_by_agent(kinds), resources)
    missing = sorted({r for r in route.values() if r not in urls})
    if missing:
        raise ServerError(f"{where} does not say where {', '.join(missing)} is (no host and port in its config)")
    note(f"using the resources servers of {where}")
    return {a: urls[r] for a, r in route.items()}


async def _run(
    opts: ReverifyOptions, urls: dict[Any, list[str]], result: Reverified, stop: asyncio.Event, note: Note
) -> None:
    from nemo_gym_cli.server.client import open_json_client

    out = OutputFile(opts.output_path)
    failures = FailuresFile(opts.output_path)
    failures.reset()
    out.open(append=False)
    rows = _rows(opts.input_path, opts.limit)
    started = time.perf_counter()
    async with open_json_client(pool_size=opts.concurrency, timeout=opts.timeout_s) as client:

        async def worker() -> None:
            while not stop.is_set():
                item = next(rows, None)
                if item is None:
                    return
                number, row, why = item
                if row is None:
                    _fail(result, failures, None, number, "InputError", why, note)
                    continue
                bases = urls[_agent_of(row, opts.agent_name)]
                calls = recorded_calls(row["response"]) if opts.replay_tool_calls else []
                try:
                    new, replayed = await _rescore(client, bases, row, calls, opts.max_attempts, stop)
                except ReplayError as exc:
                    where = f"those rows could not be re-scored: listed in {failures.path}"
                    _tool_error(result, exc.signature, exc.detail, where, note)
                    _fail(result, failures, row, number, exc.kind, str(exc), None)
                    continue
                except NemoGymError as exc:
                    kind = getattr(exc, "kind", None) or type(exc).__name__
                    _fail(result, failures, row, number, kind, str(exc), note)
                    continue
                task = row.get("_ng_task_index", f"line {number}")
                if replayed is not None:
                    result.rows_replayed += 1
                    result.tool_calls_replayed += replayed.sent
                    for signature, example in dict(replayed.errors).items():
                        _tool_error(result, signature, example, "those rows are flagged _ng_tool_outputs_differ", note)
                    if replayed.differing:
                        new["_ng_tool_outputs_differ"] = [
                            {k: d[k] for k in ("index", "name", "call_id")} for d in replayed.differing
                        ]
                        result.differing.append(
                            {"task": task, "rollout": row.get("_ng_rollout_index"), "line": number,
                             "calls": replayed.differing}
                        )  # fmt: skip
                out.write(new)
                result.rescored += 1
                spent = new.get("verifier_usage")
                cost = spent.get("cost") if isinstance(spent, dict) else None
                if isinstance(cost, (int, float)) and not isinstance(cost, bool):
                    result.verifier_cost_usd += cost
                before, after = _reward(row), _reward(new)
                result.pairs.append((task, before, after))
                if before != after:
                    result.changed.append(
                        {"task": task, "rollout": row.get("_ng_rollout_index"), "before": before, "after": after,
                         "line": number}
                    )  # fmt: skip

        try:
            await asyncio.gather(*(worker() for _ in range(opts.concurrency)))
        finally:
            rows.close()
            out.close()
            failures.close()
    result.wall_time_s = time.perf_counter() - started
    if stop.is_set():
        raise NemoGymError(
            f"interrupted: {result.rescored} rows re-scored into {opts.output_path}; run it again to re-score all"
        )


async def _rescore(
    client: JSONClient,
    bases: list[str],
    row: dict[str, Any],
    calls: list[RecordedCall],
    attempts: int,
    stop: asyncio.Event,
) -> tuple[dict[str, Any], Replayed | None]:
    """Seed a new session with the row's task fields, replay its recorded tool ``calls`` in
    it, verify its recorded response; the new row and what the replay found (None: no calls)."""
    from nemo_gym_cli.server.client import cookie_header

    task = {k: v for k, v in row.items() if k not in RESULT_FIELDS}
    error: ServerError | None = None
    for attempt in range(1, attempts + 1):
        session = new_session_id()
        base = bases[hash(session) % len(bases)]
        headers = {SESSION_HEADER: session}
        replayed = None
        try:
            seeded = await client.exchange("POST", base + "/seed_session", task, headers=headers)
            cookies = seeded.cookies
            if calls:
                replayed = await replay(client, base, calls, session, cookies)
                cookies = replayed.cookies
            answer = await client.exchange(
                "POST", base + "/verify", {**task, "response": row["response"]},
                headers={**headers, **cookie_header(cookies)},
            )  # fmt: skip
        except ServerError as exc:
            error = exc
            if not exc.retryable or attempt == attempts or stop.is_set():
                break
            await asyncio.sleep(min(8.0, 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0))
            continue
        new = answer.data
        if not isinstance(new, dict) or not isinstance(new.get("reward"), (int, float)):
            raise ServerError(f"POST {base}/verify answered without a numeric reward", url=base, kind="bad_response")
        return {**new, "_ng_previous_reward": row.get("reward")}, replayed
    assert error is not None
    raise error


def _tool_error(result: Reverified, signature: str, example: str, where: str, note: Note) -> None:
    """Count a row under a distinct tool-call error; the first row with it prints one line."""
    seen = result.tool_errors.get(signature)
    if seen is None:
        result.tool_errors[signature] = {"example": example[:200], "rows": 1}
        note(f"replaying tool calls: {signature}, e.g. {example[:200]} ({where})")
    else:
        seen["rows"] += 1


def _fail(
    result: Reverified, failures: FailuresFile, row: dict[str, Any] | None, number: int, kind: str, message: str,
    note: Note | None,
) -> None:  # fmt: skip
    """List a row that could not be re-scored; the first one prints a line (``note`` None:
    its error was printed already)."""
    result.failed += 1
    if note is not None and not result.failure_noted:
        result.failure_noted = True
        note(f"a row could not be re-scored: {message} (the rest are counted and listed in {failures.path})")
    failures.write(
        {
            "_ng_task_index": (row or {}).get("_ng_task_index"),
            "_ng_rollout_index": (row or {}).get("_ng_rollout_index"),
            "line_number": number,
            "error_type": kind,
            "message": message,
        }
    )


# ------------------------------------------------------------------ statistics


def paired_statistics(pairs: list[tuple[Any, float, float]], seed: int = 0) -> dict[str, Any]:
    """Mean reward before and after, and the paired difference over tasks (a task's reward
    the mean over its rollouts): with numpy, the report's paired bootstrap interval and
    sign-flip p-value (``report/stats.py``); without it, a normal-approximation interval."""
    by_task: dict[Any, list[float]] = {}
    for task, before, after in pairs:
        entry = by_task.setdefault(task, [0.0, 0.0, 0])
        entry[0] += before
        entry[1] += after
        entry[2] += 1
    if not by_task:
        return {"tasks": 0}
    befores = [b / n for b, _, n in by_task.values()]
    afters = [a / n for _, a, n in by_task.values()]
    diffs = [a - b for a, b in zip(afters, befores, strict=True)]
    out: dict[str, Any] = {
        "tasks": len(diffs),
        "rows": len(pairs),
        "mean_before": statistics.fmean(befores),
        "mean_after": statistics.fmean(afters),
        "diff": statistics.fmean(diffs),
    }
    try:
        import numpy as np

        from nemo_gym_cli.report.stats import _rng, bootstrap_means, sign_flip_p
    except ImportError:
        sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        half = 1.959964 * sd / math.sqrt(len(diffs))
        out.update(
            ci95_low=out["diff"] - half, ci95_high=out["diff"] + half, p_value=None,
            method="normal approximation (install the report extra for a bootstrap interval)",
        )  # fmt: skip
        return out
    d = np.asarray(diffs)
    rng = _rng(seed, "reverify")
    low, high = (float(x) for x in np.percentile(bootstrap_means(d, 2000, rng), [2.5, 97.5]))
    out.update(
        ci95_low=low, ci95_high=high, p_value=sign_flip_p(d, 10000, rng),
        method="paired bootstrap over tasks, sign-flip p-value",
    )  # fmt: skip
    return out
