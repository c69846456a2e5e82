"""Every command block of the docs, run as a newcomer would: offline, in reading order, in one copy.

Each ```bash / ```sh block of README.md, docs/*.md and the servers' READMEs runs in the order
a reader meets it: README.md first, then the docs it links, in link order (then the docs
those link, and last any doc nothing links), each file's blocks in the order written, all
in ONE copy of the tree (its tracked files, ``.venv`` linked): so the real checkout stays
clean, and an example that collides with an earlier one, in the same file or another
("already exists", an output path reused, a port in use), fails here as it would for a
reader. The venv's bin is on PATH; no
API key is in the environment and the copy has no key in an ``env.yaml``: every model call
goes to the provider emulator.

An HTML comment on the line before a fence says how a block runs:

    <!-- docs-test: skip (why it cannot run offline) -->   not run; the reason is required
    <!-- docs-test: file (my_sweep.yaml) -->                any block (YAML, ...): written to
        that path of the copy, for the blocks after it
    <!-- docs-test: background -->                         servers that stay up (ng_run,
        ng_emulator): each such command starts in the background and is waited for (ng_run:
        every instance ready; ng_emulator: /health); all stop (SIGINT, then SIGKILL) after
        the file's last block. Other commands of the block (``source``, ``cd``) run before each.

Every other block must exit 0 within ``TIMEOUT_S``. Fixed ports written in the blocks
(``127.0.0.1:8000``, ``--port 8000``) are replaced by free loopback ports, the same port
for the same number throughout the docs, and the copy's ``env.yaml`` sets only
``head_server.port`` (free), so ``ng_run`` and the collector meet where the docs say.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from support.cli import BIN, ROOT
from support.ports import HeldPort, held_port

pytestmark = pytest.mark.e2e

TIMEOUT_S = 180  # per block: past it the block is hung
READY_S = 60  # for a background server to be ready
DOCS = ["README.md", "docs/*.md", "data/README.md", "resources_servers/*/README.md", "responses_api_models/*/README.md",
        "responses_api_agents/*/README.md"]  # fmt: skip
SHELLS = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^(\s*)```\s*(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*docs-test:\s*(\w+)\s*(?:\((.*)\))?\s*-->$")
LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
PORT = re.compile(r"(127\.0\.0\.1:|localhost:|--port |head_server\.port=)(\d{2,5})\b")


@dataclass(frozen=True)
class Block:
    """One command block: where it is, its commands, and how it runs (``run``, ``skip``, ``background``)."""

    file: str
    line: int  # of the opening fence, 1-based
    code: str
    mode: str = "run"
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def parse(file: str, text: str) -> list[Block]:
    """The shell blocks of a markdown text, each with the docs-test marker on the line before it."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if FENCE.match(lines[j])), len(lines))
        before = lines[i - 1].strip() if i else ""
        marker = MARKER.match(before)
        if marker and marker.group(1) == "file":  # a file the later blocks use, written as shown
            blocks.append(
                Block(file, i + 1, "\n".join(lines[i + 1 : end]) + "\n", "file", (marker.group(2) or "").strip())
            )
        elif fence.group(2) in SHELLS:
            indent = len(fence.group(1))
            body = [line[indent:] if not line[:indent].strip() else line.lstrip() for line in lines[i + 1 : end]]
            if fence.group(2) == "console":  # only the prompt lines are commands
                body = [line[2:] for line in body if line.startswith("$ ")]
            mode, reason = (marker.group(1), (marker.group(2) or "").strip()) if marker else ("run", "")
            if before.startswith("<!--") and "docs-test" in before and not marker:
                mode, reason = "invalid", f"unreadable marker {before!r}"
            blocks.append(Block(file, i + 1, "\n".join(body) + "\n", mode, reason))
        i = end + 1
    return blocks


def doc_files() -> list[str]:
    """The docs in reading order: README.md, then the docs it links in link order, then the
    docs those link (breadth first), then any doc nothing links (sorted)."""
    known = {str(p.relative_to(ROOT)) for pattern in DOCS for p in ROOT.glob(pattern)}
    order, queue = [], ["README.md"]
    while queue:
        file = queue.pop(0)
        if file in order or file not in known:
            continue
        order.append(file)
        folder = (ROOT / file).parent
        for target in LINK.findall((ROOT / file).read_text()):
            path = (folder / target).resolve()
            if path.is_relative_to(ROOT):
                queue.append(str(path.relative_to(ROOT)))
    return order + sorted(known - set(order))


def all_blocks() -> list[Block]:
    return [b for f in doc_files() for b in parse(f, (ROOT / f).read_text())]


def commands(code: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped."""
    out, current = [], ""
    for line in code.splitlines():
        current += line.strip() if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            out.append(current.strip())
        current = ""
    return out


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout  # fmt: skip
    return [name for name in listed.decode().split("\0") if name and (ROOT / name).is_file()]


@dataclass
class DocRun:
    """The docs' blocks in one copy of the tree: ports, background servers (stopped at the end
    of the file that started them), logs."""

    file: str
    root: Path
    env: dict[str, str]
    ports: dict[str, str] = field(default_factory=dict)
    servers: list[subprocess.Popen] = field(default_factory=list)
    holds: list[HeldPort] = field(default_factory=list)  # the ports, held until stop()
    done: set[int] = field(default_factory=set)

    @classmethod
    def start(cls, file: str, tmp: Path) -> DocRun:
        root = tmp / "tree"
        for name in tracked_files():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)
        (root / ".venv").symlink_to(ROOT / ".venv")
        head = held_port()
        (root / "env.yaml").write_text(f"head_server:\n  port: {head.port}\n")
        env = {k: v for k, v in os.environ.items() if "API_KEY" not in k and not k.startswith("OPENROUTER")}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", VIRTUAL_ENV=str(ROOT / ".venv"))
        env.pop("PYTHONPATH", None)
        return cls(file, root, env, ports={"11000": str(head.port)}, holds=[head])

    def localize(self, code: str) -> str:
        """The block with each fixed port replaced by this file's free port for it."""

        def swap(match: re.Match) -> str:
            before, port = match.groups()
            if port not in self.ports:
                self.holds.append(held_port())
                self.ports[port] = str(self.holds[-1].port)
            return before + self.ports[port]

        return PORT.sub(swap, code)

    def run(self, block: Block) -> None:
        self.done.add(block.id)
        if block.mode == "skip":
            return
        if block.mode == "file":
            (self.root / block.reason).write_text(block.code)
            return
        code = self.localize(block.code)
        if block.mode == "background":
            self.background(block, code)
            return
        log = self.root / f".docs-test-{block.line}.log"
        script = self.root / f".docs-test-{block.line}.sh"
        script.write_text(code)
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", "-eo", "pipefail", str(script)], cwd=self.root, env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            try:
                code_ = proc.wait(TIMEOUT_S)
            except subprocess.TimeoutExpired:
                code_ = None
            finally:
                _stop_group(proc, signal.SIGKILL)
        output = log.read_text(errors="replace")[-4000:]
        assert code_ is not None, f"{block.id}: still running after {TIMEOUT_S} s (hung?):\n{output}"
        assert code_ == 0, (
            f"{block.id}: exited {code_}; fix the docs or the code (a block that cannot run offline carries "
            f"<!-- docs-test: skip (why) --> on the line before its fence):\n{code}\n--- output:\n{output}"
        )

    def background(self, block: Block, code: str) -> None:
        setup: list[str] = []
        for command in commands(code):
            words = command.split()
            if words[0] not in ("ng_run", "ng_emulator") and words[:2] != ["ng", "run"]:
                setup.append(command)
                continue
            log = (self.root / f".docs-test-{block.line}-{len(self.servers)}.log").open("wb")
            proc = subprocess.Popen(["bash", "-c", "\n".join([*setup, "exec " + command])], cwd=self.root,
                                    env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)  # fmt: skip
            self.servers.append(proc)
            if words[0] == "ng_emulator":
                port = next((words[i + 1] for i, w in enumerate(words[:-1]) if w == "--port"), None)
                assert port and port != "0", f"{block.id}: give ng_emulator a --port the later blocks can use"
                url, ready = f"http://127.0.0.1:{port}/health", lambda r: r.status_code == 200
            else:
                port = self.ports["11000"]
                url = f"http://127.0.0.1:{port}/instances"
                ready = lambda r: r.status_code == 200 and all(i["ready"] for i in r.json()["instances"])  # noqa: E731
            self.wait_ready(block, proc, url, ready, Path(log.name), f"http://127.0.0.1:{port}")
        assert self.servers, f"{block.id}: marked background but starts no ng_run or ng_emulator"

    def wait_ready(self, block: Block, proc: subprocess.Popen, url: str, ready, log: Path, serving: str) -> None:
        """Ready: it says it serves at ``serving`` (so it bound the port: another server's answer
        there does not count), it is still running, and ``url`` answers ``ready``."""
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"{block.id}: server exited {proc.returncode}:\n{log.read_text()}"
            try:
                if serving in log.read_text() and ready(httpx.get(url, timeout=1, trust_env=False)):
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{block.id}: not ready at {url} after {READY_S} s:\n{log.read_text()}")

    def stop_servers(self) -> None:
        """Stop the background servers (a reader stops them before the next file)."""
        for proc in self.servers:
            _stop_group(proc, signal.SIGINT)
        self.servers.clear()

    def stop(self) -> None:
        self.stop_servers()
        for hold in self.holds:
            hold.release()
        shutil.rmtree(self.root, ignore_errors=True)


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    """Stop the block's whole process group (a server it left behind too): ``sig``, then SIGKILL."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


BLOCKS = all_blocks()
LAST_OF_FILE = {b.file: b for b in BLOCKS}


@pytest.fixture(scope="module")
def docs() -> Iterator[DocRun]:
    """The one copy every docs file's blocks run in, in reading order; stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="docs-test-") as tmp:
        run = DocRun.start("(all docs)", Path(tmp))
        try:
            yield run
        finally:
            run.stop()


def _run_in_order(run: DocRun, block: Block) -> None:
    """Run ``block``, and first every block before it not yet run (a block alone, -k, still
    gets what a reader did before); a file's background servers stop after its last block."""
    for earlier in BLOCKS[: BLOCKS.index(block) + 1]:
        if earlier.id in run.done:
            continue
        try:
            run.run(earlier)
        finally:
            if earlier is LAST_OF_FILE[earlier.file]:
                run.stop_servers()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_every_command_block_of_the_docs_runs_offline_or_says_why_not(block: Block, docs: DocRun) -> None:
    assert block.mode in ("run", "skip", "background", "file"), (
        f"{block.id}: {block.reason or 'unknown mode ' + block.mode}"
    )
    if block.mode in ("run", "background"):  # the copy shares the checkout's .venv: never install into it
        assert not re.search(r"\bpip3? install\b", block.code), (
            f"{block.id}: runs pip install, which would install the test's copy into the shared .venv: "
            "mark it <!-- docs-test: skip (pip needs the network) -->"
        )
    if block.mode == "file":
        path = Path(block.reason)
        assert block.reason and not path.is_absolute() and ".." not in path.parts, f"{block.id}: file (a relative path)"
    assert block.mode != "skip" or block.reason, f"{block.id}: a skipped block says why: <!-- docs-test: skip (why) -->"
    _run_in_order(docs, block)
    if block.mode == "skip":
        pytest.skip(f"{block.id}: {block.reason}")


def test_blocks_and_markers_are_read_as_written() -> None:
    text = "\n".join([
        "# T", "```bash", "ng_run x", "```", "",
        "<!-- docs-test: skip (needs a key) -->", "```sh", "a \\", "  b  # c", "```",
        "1. step", "   <!-- docs-test: background -->", "   ```bash", "   ng_emulator --port 8000", "   ```",
        "<!-- docs-test: skip -->", "```bash", "x", "```",
        "<!-- docs-test: skip(reason -->", "```bash", "x", "```",
        "```yaml", "a: 1", "```",
        "```console", "$ ng models", "output", "```",
        "<!-- docs-test: file (my.yaml) -->", "```yaml", "a: 1", "```",
    ])  # fmt: skip
    blocks = parse("f.md", text)
    assert [(b.line, b.mode, b.reason) for b in blocks] == [
        (2, "run", ""), (7, "skip", "needs a key"), (13, "background", ""), (17, "skip", ""),
        (21, "invalid", "unreadable marker '<!-- docs-test: skip(reason -->'"), (27, "run", ""),
        (32, "file", "my.yaml"),
    ]  # fmt: skip
    assert blocks[6].code == "a: 1\n"
    assert blocks[2].code == "ng_emulator --port 8000\n" and blocks[5].code == "ng models\n"
    assert blocks[1].code == "a \\\n  b  # c\n" and commands(blocks[1].code) == ["a b  # c"]
    assert commands("# only a comment\n\nsource x\nng_run \\\n  y\n") == ["source x", "ng_run y"]


def test_fixed_ports_become_the_same_free_port_throughout_a_file(tmp_path) -> None:
    run = DocRun("f.md", tmp_path, {}, ports={"11000": "12345"})  # one mapping for all the docs
    first = run.localize("ng_emulator --port 8000\ncurl http://127.0.0.1:8000/x localhost:8001 --port 0")
    second = run.localize("curl -s http://127.0.0.1:8000/y +head_server.port=11000")
    port, other = run.ports["8000"], run.ports["8001"]
    assert first == f"ng_emulator --port {port}\ncurl http://127.0.0.1:{port}/x localhost:{other} --port 0"
    assert second == f"curl -s http://127.0.0.1:{port}/y +head_server.port=12345"
    assert len({port, other, "8000", "8001"}) == 4
    for hold in run.holds:
        hold.release()


def test_the_docs_run_in_reading_order_readme_first_then_what_it_links() -> None:
    order = doc_files()
    assert order[0] == "README.md"
    readme = (ROOT / "README.md").read_text()
    linked = list(dict.fromkeys(t for t in LINK.findall(readme) if (ROOT / t).is_file()))
    assert order[1 : 1 + len(linked)] == linked  # README's links, in the order it links them
    assert order.index("docs/environments.md") < order.index("docs/compare.md")
    files = [b.file for b in BLOCKS]
    assert files == sorted(files, key=order.index)  # every file's blocks together, files in reading order


def test_the_docs_have_command_blocks_in_every_file_that_shows_commands() -> None:
    files = {b.file for b in BLOCKS}
    assert {"README.md", "docs/emulator.md", "docs/openrouter.md", "resources_servers/calculator/README.md"} <= files
    assert sum(b.mode != "skip" for b in BLOCKS) >= 10  # most blocks run: skipping is the exception
