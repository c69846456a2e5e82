"""math: free-form answers checked for mathematical equivalence (math-verify), off the event loop.

``verify`` runs ``verifier.verify_answer`` in the kernel's worker pool (``self.offload``):
math-verify parses LaTeX with sympy, which takes milliseconds on a normal answer and forever
on a pathological one (``2^{2^{2^{100}}}``). A check that runs past ``offload_timeout_s``
has its worker killed and the rollout fails with ``offload_timeout`` (recorded, not retried:
the same answer would hang again); the server goes on serving.

math-verify is the ``math`` extra: without it the server refuses to start, in one line.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from nemo_gym_cli.errors import HTTPError, NemoGymError
from nemo_gym_cli.server import ResourcesServer, final_text
from resources_servers.math.verifier import verify_answer

MISSING_EXTRA = (
    "the math environment checks answers with math-verify, which is not installed: "
    "pip install -e '.[math]' in a clone of nemo-gym-cli (scripts/setup installs it)"
)


def math_verify_installed() -> bool:
    """Whether math-verify can be imported (looked up, not imported: it pulls in sympy)."""
    try:
        return importlib.util.find_spec("math_verify") is not None
    except ValueError:  # a module object without a spec in sys.modules
        return False


class Math(ResourcesServer):
    """No tools: the policy answers once; ``/verify`` reads and checks its final answer."""

    async def start(self) -> None:
        if not math_verify_installed():
            raise NemoGymError(MISSING_EXTRA)

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        expected = body.get("expected_answer")
        if not isinstance(expected, str) or not expected.strip():
            raise HTTPError(400, f"math row needs expected_answer, a non-empty string, got {expected!r}: fix the row")
        # reward, parsed_answer, expected_answer, verdict_reason
        result: dict[str, Any] = await self.offload(
            verify_answer, expected, final_text(body), timeout=self.config.offload_timeout_s
        )
        return result
