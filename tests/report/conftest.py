"""Fixtures for the ng_report tests: writing rows, running the command in-process, and a
headless Chromium driven over the DevTools protocol for the report's HTML."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest


def _write_jsonl(path: Path, rows: list[dict[str, Any] | bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for row in rows:
            f.write((row if isinstance(row, bytes) else orjson.dumps(row)) + b"\n")
    return path


@pytest.fixture(scope="session")
def write_jsonl() -> Callable[[Path, list[dict[str, Any] | bytes]], Path]:
    """``write_jsonl(path, rows)``: one JSON object a line (bytes are written as they are)."""
    return _write_jsonl


@pytest.fixture
def run_report(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run_report(*args)`` runs ng_report in this process: (exit code, stdout, stderr)."""
    from nemo_gym_cli.report import report

    def run(*args: str) -> tuple[int, str, str]:
        code = report(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


@pytest.fixture(scope="session")
def load_json() -> Callable[[Path], Any]:
    return read_json


# --------------------------------------------------------------------------- headless Chromium

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
]


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed by scripts/setup_browser if missing. Without it the
    browser tests are skipped, except under CI=true, where they fail."""
    if not CHROMIUM.exists():
        try:
            done = subprocess.run(
                ["bash", str(ROOT / "scripts" / "setup_browser")], capture_output=True, text=True, timeout=900
            )
            why = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = [str(exc)]
        if not CHROMIUM.exists():
            reason = f"{CHROMIUM} is missing and scripts/setup_browser could not install it: {why[0]}"
            if os.environ.get("CI") == "true":
                pytest.fail(reason)
            pytest.skip(reason)
    return CHROMIUM


class Page:
    """One Chromium tab driven over the Chrome DevTools Protocol (aiohttp's websocket
    client). Records uncaught exceptions, console errors, log errors, and every request
    that is not for a file: or data: URL."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.errors: list[str] = []
        self.requests: list[str] = []
        self._next = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = orjson.loads(message.data)
            if "id" in data:
                self._pending.pop(data["id"]).set_result(data)
                continue
            method, params = data.get("method", ""), data.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                self.errors.append(f"uncaught: {details.get('exception', {}).get('description') or details['text']}")
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                self.errors.append(
                    "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                self.errors.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith(("file:", "data:")):
                    self.requests.append(url)
            self._events.setdefault(method, asyncio.Event()).set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._next += 1
        future = self._pending[self._next] = asyncio.get_running_loop().create_future()
        await self.ws.send_str(orjson.dumps({"id": self._next, "method": method, "params": params}).decode())
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    async def open(self, url: str) -> None:
        for domain in ("Runtime", "Log", "Page", "Network"):
            await self.send(f"{domain}.enable")
        loaded = self._events.setdefault("Page.loadEventFired", asyncio.Event())
        loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded.wait(), 30)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression (JSON-serialisable), evaluated in the page."""
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")


@contextlib.asynccontextmanager
async def open_page(chromium: Path, profile: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium (its own profile directory) and its first tab."""
    proc = subprocess.Popen(
        [str(chromium), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not start (exit code {proc.poll()})")
            await asyncio.sleep(0.05)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = await resp.json()
            url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            async with http.ws_connect(url, max_msg_size=0) as ws:
                page = Page(ws)
                try:
                    yield page
                finally:
                    page._reader.cancel()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def browser_page(chromium: Path, tmp_path: Path) -> Callable[[], contextlib.AbstractAsyncContextManager[Page]]:
    """``async with browser_page() as page``: a tab of a fresh headless Chromium."""
    return lambda: open_page(chromium, tmp_path / "chromium-profile")
