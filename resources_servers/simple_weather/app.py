"""simple_weather: one tool, ``get_weather(city)``, and a verifier.

Reward 1.0 when the rollout called ``get_weather`` for the row's ``expected_city`` (if the
row names one) and the trajectory ends with an assistant message; otherwise 0.0.
"""

from __future__ import annotations

import zlib
from typing import Any

from nemo_gym_cli.server import ResourcesServer, ToolError, tool

_CONDITIONS = ("sunny", "cloudy", "rainy", "windy", "foggy", "snowy")
_KNOWN = {
    "san francisco": ("foggy", 16),
    "new york": ("sunny", 22),
    "london": ("rainy", 13),
    "paris": ("cloudy", 18),
    "tokyo": ("sunny", 24),
}


def _normal(city: Any) -> str:
    return " ".join(str(city).lower().split())


def weather_for(city: str) -> dict[str, Any]:
    """Deterministic weather: fixed for a few cities, derived from the name for the rest."""
    key = _normal(city)
    if key in _KNOWN:
        condition, temp = _KNOWN[key]
    else:
        h = zlib.crc32(key.encode())
        condition, temp = _CONDITIONS[h % len(_CONDITIONS)], (h >> 8) % 35 - 5
    return {"city": city, "condition": condition, "temperature_c": temp}


class SimpleWeather(ResourcesServer):
    @tool
    async def get_weather(self, session: dict[str, Any], city: str) -> dict[str, Any]:
        """Get the current weather in a city.

        Args:
            city: The city name, e.g. Paris.
        """
        if not city.strip():
            raise ToolError('get_weather needs a city, e.g. {"city": "Paris"}')
        session.setdefault("cities", []).append(city.strip())
        return weather_for(city.strip())

    async def verify(self, session: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
        output = body["response"].get("output") or []
        last = output[-1] if output else {}
        ends_with_message = last.get("type") == "message" and last.get("role", "assistant") == "assistant"
        called = [_normal(c) for c in session.get("cities", [])]
        expected = body.get("expected_city")
        called_expected = _normal(expected) in called if expected else bool(called)
        return {"reward": 1.0 if (ends_with_message and called_expected) else 0.0, "num_tool_calls": len(called)}
