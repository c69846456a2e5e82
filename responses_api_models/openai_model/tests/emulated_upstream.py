"""The upstream of the openai_model tests: the emulator in-process (ASGI) or on a real
loopback port (uvicorn in a thread, for what ASGITransport cannot show: timeouts, refused
connections), and a transport that records what the adapter sends."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from nemo_gym_cli.emulator import EmulatorConfig, build_app
from nemo_gym_cli.servers import ServerSpec
from nemo_gym_cli.wire import loads

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


class Recorder(httpx.AsyncBaseTransport):
    """Wraps a transport; keeps every request (method, URL, headers, JSON body) and the most
    requests ever in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.requests.append(
            {
                "method": request.method,
                "url": str(request.url),
                "headers": dict(request.headers),
                "json": loads(body) if body else None,
            }
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            self.in_flight -= 1

    def posts(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == "POST"]


def emulator(**config: Any):
    """The emulator app (``app.state.emulator.stats`` has its counters)."""
    return build_app(EmulatorConfig(**config))


def model_spec(**fields: Any) -> ServerSpec:
    base = {
        "openai_base_url": "http://emulator/api/v1",
        "openai_api_key": KEY,
        "openai_model": MODEL,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
    }
    return ServerSpec("policy_model", "responses_api_models", "openai_model", "127.0.0.1", 0, {**base, **fields})


def stats(app) -> dict[str, Any]:
    return app.state.emulator.stats.as_dict()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app, port: int | None = None) -> Iterator[str]:
    """``app`` on a loopback port (free unless given; uvicorn in a daemon thread); yields its
    base URL."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = server.force_exit = True  # don't wait for stalled requests
        thread.join(5)
