"""llm_judge: a second model (the judge) grades the policy's answer against a reference.

``verify`` builds the judge request (``judge.build_judge_request``: rubric, fenced answer,
temperature 0, the row's ``judge_script`` for the offline emulator) and posts it to the
judge model server's ``/v1/chat/completions`` (``judge_model_server`` in the config: any
model server of ours, in front of any OpenAI-compatible endpoint). The verdict, score and
reasoning go in the row (``judge_*``), and what judging cost goes in ``verifier_usage``
(tokens and ``cost``), which the collector adds to the run's cost.

When the judge model server runs as several replicas (on a Ray cluster), judge calls spread
over them, and a replica that does not answer is picked no more (``Replicas``).

A judge that fails is not a wrong answer: when the judge model server answers an error, or
its reply has no readable verdict, the rollout fails (502 ``judge_error``, retryable when
the judge's own error was), and what the judge had cost travels in the error's ``usage``.
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import Field

from nemo_gym_cli.errors import HTTPError, ServerError
from nemo_gym_cli.server import ResourcesServer, ServerRef, final_text
from nemo_gym_cli.server.client import JSONClient, open_json_client
from nemo_gym_cli.server.replicas import Replicas
from resources_servers.llm_judge.judge import build_judge_request, judge_result, parse_verdict


def judge_usage(usage: Any) -> dict[str, Any]:
    """A chat completion's ``usage`` in the Responses API's names (what rows and the
    collector count): ``input_tokens``, ``output_tokens``, ``total_tokens``, ``cost``."""
    if not isinstance(usage, dict):
        return {}
    out: dict[str, Any] = {}
    for ours, theirs in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens")):
        value = usage.get(ours, usage.get(theirs))
        if isinstance(value, int) and not isinstance(value, bool):
            out[ours] = value
    if out:
        out["total_tokens"] = out.get("input_tokens", 0) + out.get("output_tokens", 0)
    cost = usage.get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        out["cost"] = round(cost, 12)  # as the agent sums costs: no binary-float dust in rows
    return out


def judge_error(message: str, *, retryable: bool, usage: dict[str, Any]) -> HTTPError:
    """The rollout's failure when judging failed; ``usage`` is what the judge had cost."""
    # The envelope carries the usage to the collector.
    return HTTPError(502, message, kind="judge_error", retryable=retryable, usage=usage or None)


def reply_text(completion: Any) -> str | None:
    """The judge's reply text, or None when the answer is not a chat completion with one."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""


class LLMJudge(ResourcesServer):
    """No tools: the policy answers once; ``/verify`` asks the judge model server."""

    class Config(ResourcesServer.Config):
        judge_model_server: ServerRef = Field(
            description="the judge's model server: {type: responses_api_models, name: judge_model}"
        )
        judge_max_tokens: int = Field(400, ge=16, description="most tokens of one judge reply")
        judge_timeout_s: float = Field(120.0, gt=0, description="longest wait for one judge reply")
        rubric: str | None = Field(None, description="grading rubric of rows without their own (default: judge.py's)")

    client: JSONClient
    judges: Replicas

    async def start(self) -> None:
        self.judges = self.replicas_for(self.config.judge_model_server, "judge_model_server")
        self._calls = itertools.count()  # spreads judge calls over the replicas
        self.client = await self.enter(open_json_client(timeout=self.config.judge_timeout_s))

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        for key in ("question", "reference_answer"):
            if not isinstance(body.get(key), str) or not body[key].strip():
                raise HTTPError(
                    400, f"llm_judge row needs {key}, a non-empty string, got {body.get(key)!r}: fix the row"
                )
        try:
            request = build_judge_request(
                body,
                final_text(body),
                # No model: the judge's model server judges with its configured one (a model it
                # was not configured for would be refused).
                model=None,
                rubric=body.get("rubric") or self.config.rubric,
                max_tokens=self.config.judge_max_tokens,
            )
        except ValueError as exc:  # a malformed judge_script: a data error
            raise HTTPError(400, f"{exc}: fix the row") from None
        base = self.judges.pick(str(next(self._calls)))
        try:
            completion = await self.client.post(f"{base}/v1/chat/completions", request)
        except ServerError as exc:
            self.judges.failed(base, exc)
            raise judge_error(
                f"the judge failed: {exc.detail}", retryable=exc.retryable, usage=judge_usage(exc.usage)
            ) from None
        usage = judge_usage(completion.get("usage") if isinstance(completion, dict) else None)
        text = reply_text(completion)
        if text is None:
            raise judge_error(
                f"the judge answered something that is not a chat completion: {str(completion)[:200]}",
                retryable=True,
                usage=usage,
            )
        verdict = parse_verdict(text)
        if verdict.verdict is None:
            # The same request at temperature 0 would most likely be misread again.
            raise judge_error(
                f"the judge's reply has no verdict ({verdict.parse_error}): {text[:300]!r}",
                retryable=False,
                usage=usage,
            )
        return {**judge_result(verdict), "judge_model": completion.get("model"), "verifier_usage": usage}
