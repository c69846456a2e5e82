"""Replaying a rollout's recorded tool calls in a new session, so its verifier sees the state they built.

A verifier may score what the rollout's tools did rather than what the model said (the
multi_step_tools shop scores the final state of its world; NeMo Gym 0.7's
example_session_state_mgmt a counter the tools moved). Re-scored in a freshly seeded
session, such a row scores as if the model had done nothing. ``ng reverify`` therefore
sends each recorded ``function_call`` of ``response.output``, in order, to its tool route
(``POST /<name>`` with the call's arguments) in the row's new session, as the agent did, and
only then ``/verify``: the same session header, the cookies ``/seed_session`` set, updated by
each tool's answer (NeMo Gym's environments keep their session in a cookie).

Each replayed answer is compared with the recorded ``function_call_output`` (as JSON values,
so key order and spacing do not count). A difference means the environment changed under
the row: its new reward is kept, and the row is flagged with the calls that differ. A refusal
the agent would have handed to the model (404/405 an unknown tool, 422 a call the tool
refused) is compared the same way, as the ``{"error": ...}`` the model read; any other
failure (5xx, no session, no answer) raises ``ReplayError``: the row cannot be re-scored.
A call whose arguments are not a JSON object never reached the resources server during the
rollout, and is not sent now either.

NeMo Gym 0.7's own ``gym eval reverify`` replays nothing: it posts ``/verify`` alone and
refuses a server whose ``/reverify_mode`` is not ``stateless`` unless forced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nemo_gym_cli.errors import ServerError
from nemo_gym_cli.server.spec import SESSION_HEADER
from nemo_gym_cli.wire import dumps, loads

if TYPE_CHECKING:
    from nemo_gym_cli.server.client import JSONClient

__all__ = ["RecordedCall", "ReplayError", "Replayed", "recorded_calls", "replay"]

#: Characters of a recorded and a replayed output kept in the record, per differing call.
SHOWN_OUTPUT = 300


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One ``function_call`` of a recorded response, with the output the rollout got for it."""

    index: int  # among the response's function calls, from 0
    name: str
    call_id: Any
    arguments: dict[str, Any] | None  # None: not a JSON object (the agent never sent it)
    output: str | None  # the matching function_call_output's ``output``; None: none recorded


def recorded_calls(response: Mapping[str, Any]) -> list[RecordedCall]:
    """The function calls of ``response["output"]`` in order, each with its recorded output:
    the ``function_call_output`` of the same ``call_id``, else the first unmatched one after it."""
    output = response.get("output")
    if not isinstance(output, list):
        return []
    calls: list[dict[str, Any]] = []
    outputs: dict[int, str] = {}  # position in ``calls`` -> recorded output
    pending: list[int] = []
    for item in output:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call":
            pending.append(len(calls))
            calls.append(item)
        elif kind == "function_call_output" and pending:
            call_id = item.get("call_id")
            match = next((p for p in pending if call_id is not None and calls[p].get("call_id") == call_id), pending[0])
            pending.remove(match)
            value = item.get("output")
            outputs[match] = value if isinstance(value, str) else dumps(value).decode()
    out = []
    for i, call in enumerate(calls):
        try:
            arguments = loads(call.get("arguments") or "{}")
        except ValueError:
            arguments = None
        out.append(
            RecordedCall(
                i, str(call.get("name") or ""), call.get("call_id"),
                arguments if isinstance(arguments, dict) else None, outputs.get(i),
            )
        )  # fmt: skip
    return out


class ReplayError(ServerError):
    """A recorded tool call failed on replay for a reason that is not the model's (5xx, no
    session, no answer): the row's state cannot be rebuilt. ``signature`` is the error without
    the row's particulars, one line per distinct one on the terminal."""

    def __init__(self, call: RecordedCall, calls: int, exc: ServerError) -> None:
        super().__init__(
            f"replaying tool call {call.index + 1} of {calls} ({call.name}): {exc}",
            url=exc.url, status=exc.status, kind="tool_call_failed", retryable=exc.retryable, detail=exc.detail,
        )  # fmt: skip
        self.signature = _signature(call.name, exc)


def _signature(name: str, exc: ServerError) -> str:
    return f"POST /{name} answered {exc.status} ({exc.kind})" if exc.status else f"POST /{name}: {exc.kind}"


@dataclass
class Replayed:
    """What replaying one row's calls did: the session's cookies after them, the calls whose
    output differs from the recorded one, and the distinct refusals among those (a 404: a
    tool the rollout used is gone)."""

    cookies: dict[str, str]
    sent: int = 0
    differing: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (signature, message)


def _same(recorded: str, replayed: Any) -> bool:
    try:
        return bool(loads(recorded) == replayed)
    except ValueError:  # a recorded output that is not JSON: compared as text
        return isinstance(replayed, str) and recorded == replayed


def _clip(text: str | None) -> str | None:
    return text if text is None or len(text) <= SHOWN_OUTPUT else text[:SHOWN_OUTPUT] + "..."


async def replay(
    client: JSONClient, base: str, calls: list[RecordedCall], session: str, cookies: dict[str, str]
) -> Replayed:
    """Send ``calls`` in order to the resources server at ``base`` in ``session``; raises
    ``ReplayError`` when one fails for a reason that is not the model's."""
    from nemo_gym_cli.server.agent import tool_refusal
    from nemo_gym_cli.server.client import cookie_header

    done = Replayed(dict(cookies))
    for call in calls:
        if call.arguments is None:
            continue
        headers = {SESSION_HEADER: session, **cookie_header(done.cookies)}
        try:
            answer = await client.exchange("POST", f"{base}/{call.name}", call.arguments, headers=headers)
        except ServerError as exc:
            refused = tool_refusal(call.name, exc)
            if refused is None:
                raise ReplayError(call, len(calls), exc) from None
            value: Any = refused
            if exc.status in (404, 405) and (call.output is None or not _same(call.output, value)):
                done.errors.append((_signature(call.name, exc), exc.detail[:200]))
        else:
            done.cookies.update(answer.cookies)
            value = answer.data
        done.sent += 1
        if call.output is not None and not _same(call.output, value):
            done.differing.append(
                {"index": call.index, "name": call.name, "call_id": call.call_id,
                 "recorded": _clip(call.output), "replayed": _clip(dumps(value).decode())}
            )  # fmt: skip
    return done
