"""Testing an environment's ``/verify``: cases of a request and what the verified row must hold
(NeMo Gym's ``VerifierFixture`` shape), checked through the app production serves.

    from nemo_gym_cli.testing import VerifyCase, check_verify

    CASES = [
        VerifyCase("right", "2 plus 3 is 5.", {"reward": 1.0, "parsed_answer": 5.0}),
        VerifyCase("no number", "I am not sure.", {"reward": 0.0, "parsed_answer": None}),
    ]

    @pytest.mark.parametrize("case", CASES, ids=str)
    def test_the_verifier(case):
        with TestClient(asgi(Calculator())) as client:
            check_verify(client, case, fields={"expected_answer": 5})

A case's ``answer`` is the model's final text (sent as one assistant message), or
``response`` a whole Responses API object; ``fields`` are the task row's fields sent beside it;
``expect`` the fields the verified row must equal and ``expect_prefix`` the text fields it
must start with. ``VerifyCase.load(path)`` reads cases from a JSONL file (one object a line
with these keys). ``client`` is anything with ``post(path, json=..., headers=...)`` on the
server's base URL: Starlette's ``TestClient(asgi(server))``, or an ``httpx.Client(base_url=...)``.

``collect_offline(config, agent, input, out)`` runs the environment end to end as a user does,
``ng_collect_rollouts`` as a process on the offline model (the emulator plays each row's
script), and returns the rows it wrote.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["VerifyCase", "check_verify", "collect_offline", "reply"]


def reply(text: str) -> dict[str, Any]:
    """A response whose output is one assistant message saying ``text``."""
    return {"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


@dataclass(frozen=True)
class VerifyCase:
    """One ``/verify`` request and what its verified row must hold."""

    id: str
    answer: str | None = None
    expect: Mapping[str, Any] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] | None = None
    expect_prefix: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.answer is None) == (self.response is None):
            raise ValueError(f"verify case {self.id!r}: give an answer (the final text) or a response, not both")

    def __str__(self) -> str:
        return self.id

    def body(self, fields: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The ``/verify`` request: ``fields`` (shared by the cases), the case's own, the response."""
        response = reply(self.answer) if self.answer is not None else dict(self.response or {})
        return {**(fields or {}), **self.fields, "response": response}

    def check(self, row: Mapping[str, Any]) -> None:
        """Raise ``AssertionError`` naming the case and each field that is not as expected."""
        wrong = [
            f"{k}: expected {v!r}, got {row[k]!r}" if k in row else f"{k}: expected {v!r}, missing"
            for k, v in self.expect.items()
            if k not in row or row[k] != v
        ]
        for k, prefix in self.expect_prefix.items():
            value = row.get(k)
            if not isinstance(value, str) or not value.startswith(prefix):
                wrong.append(f"{k}: expected to start with {prefix!r}, got {value!r}")
        if wrong:
            raise AssertionError(f"verify case {self.id!r}: " + "; ".join(wrong))

    @classmethod
    def load(cls, path: str | Path) -> list[VerifyCase]:
        """The cases of a JSONL file: ``{"id", "answer" or "response", "expect", "fields", "expect_prefix"}``."""
        cases = []
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    cases.append(cls(**json.loads(line)))
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{path}:{number}: not a verify case ({exc})") from None
        return cases


class _Client(Protocol):
    def post(self, url: str, *, json: Any = ..., headers: Any = ...) -> Any: ...


def check_verify(
    client: _Client,
    case: VerifyCase,
    *,
    fields: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST the case to ``/verify``, check the answer is a 200 whose row holds what the case
    expects, and return the row (for the checks a case cannot say)."""
    resp = client.post("/verify", json=case.body(fields), headers=dict(headers or {}))
    if resp.status_code != 200:
        raise AssertionError(f"verify case {case.id!r}: /verify answered {resp.status_code}: {resp.text}")
    row: dict[str, Any] = resp.json()
    case.check(row)
    return row


def collect_offline(
    config: str,
    agent: str,
    input_jsonl: str | Path,
    out: Path,
    *overrides: str,
    model_config: str = "configs/offline_model.yaml",
    cwd: str | Path | None = None,
    timeout: float = 300.0,
) -> list[dict[str, Any]]:
    """Run ``ng_collect_rollouts`` as a process with ``model_config`` and the environment's
    ``config``, the agent ``agent``, the tasks ``input_jsonl`` and ``overrides``; return the rows
    written to ``out``. A non-zero exit is an ``AssertionError`` carrying its stderr."""
    binary = Path(sys.executable).parent / "ng_collect_rollouts"
    command = str(binary) if binary.exists() else shutil.which("ng_collect_rollouts") or "ng_collect_rollouts"
    args = [
        f"+config_paths=[{model_config},{config}]",
        f"+agent_name={agent}",
        f"+input_jsonl_fpath={input_jsonl}",
        f"+output_jsonl_fpath={out}",
        *overrides,
    ]
    done = subprocess.run(
        [command, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"ng_collect_rollouts exited {done.returncode}:\n{done.stderr}")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
