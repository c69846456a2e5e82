"""The provider emulator as a test upstream: served on loopback, its counters, what to ask it.

    with emulated(fault_schedule={1: "429"}) as url:          # the emulator, for real
        ...  # point a client at url + "/api/v1"
        assert stats(url)["faults"] == {"429": 1}

``emulator(**fields)`` is the factory ``serving`` takes, for stacks of several servers.
``CHAT`` and ``RESPONSES_PARAMS`` ask about the weather in San Francisco with a
``get_weather`` tool: the emulator answers them with one ``get_weather`` call.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from nemo_gym_cli.server import ServerSpec
from responses_api_models.provider_emulator.app import ProviderEmulator
from support.servers import Factory, serving

__all__ = ["CHAT", "KEY", "MODEL", "RESPONSES_PARAMS", "WEATHER_TOOL", "emulated", "emulator", "stats"]

#: A key distinctive enough to find anywhere it leaks.
KEY = "sk-or-v1-TESTKEY-5f3a9c1e7b2d"
MODEL = "emulator/scripted-tool-caller"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CHAT = {"messages": [{"role": "user", "content": "what's it like in sf?"}], "tools": [WEATHER_TOOL]}
RESPONSES_PARAMS = {
    "input": [{"role": "user", "content": "what's it like in sf?"}],
    "tools": [
        {
            "type": "function",
            "name": "get_weather",
            **{k: v for k, v in WEATHER_TOOL["function"].items() if k != "name"},
        }
    ],
}


def emulator(**fields: Any) -> Factory:
    """A ``serving`` factory: the emulator with these config fields."""

    def build(spec: ServerSpec) -> ProviderEmulator:
        return ProviderEmulator.from_fields(fields, spec)

    return build


@contextmanager
def emulated(**fields: Any) -> Iterator[str]:
    """The emulator with these config fields on a loopback port; yields its URL (the
    OpenRouter-compatible API is under ``/api/v1``)."""
    with serving({"emulator": emulator(**fields)}) as stack:
        yield stack.urls["emulator"]


def stats(url: str) -> dict[str, Any]:
    """``GET /emulator/stats`` of the emulator at ``url``."""
    resp = httpx.get(url + "/emulator/stats", timeout=10, trust_env=False)
    resp.raise_for_status()
    return resp.json()
