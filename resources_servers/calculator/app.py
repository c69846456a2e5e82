"""calculator: four arithmetic tools and a verifier of the final answer (docs/environments.md)."""

from __future__ import annotations

import re
from typing import Any

from nemo_gym_cli.server import ResourcesServer, ToolError, final_text, tool

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class Calculator(ResourcesServer):
    @tool
    async def add(self, a: float, b: float) -> float:
        """Add two numbers."""
        return a + b

    @tool
    async def subtract(self, a: float, b: float) -> float:
        """Subtract b from a."""
        return a - b

    @tool
    async def multiply(self, a: float, b: float) -> float:
        """Multiply two numbers."""
        return a * b

    @tool
    async def divide(self, a: float, b: float) -> float:
        """Divide a by b."""
        if b == 0:
            raise ToolError("cannot divide by zero")
        return a / b

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        numbers = NUMBER.findall(final_text(body).replace(",", ""))
        answer = float(numbers[-1]) if numbers else None
        correct = answer is not None and abs(answer - float(body["expected_answer"])) < 1e-6
        return {"reward": 1.0 if correct else 0.0, "parsed_answer": answer}
