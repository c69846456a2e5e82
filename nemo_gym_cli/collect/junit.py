"""A collection as JUnit XML (``+junit_xml=<path>``): what CI systems show natively.

One ``<testsuite>`` per variant (one for a single run), one ``<testcase>`` per task. A task
is an *error* when one of its rollouts failed (its record in ``<stem>_failures.jsonl``),
a *failure* when its reward (the mean over its rollouts) is under the threshold
(``+junit_min_reward``, else ``+pass_threshold``), else it passes. Every message names the
task and its rollouts and where each trajectory is: ``<output>:<line>`` (or the failures
file's line), so a red test leads straight to the row to read.

Written with the standard library's ElementTree (escaping is its job); characters XML 1.0
cannot hold (control characters a provider's error text may carry) are dropped first.
The file is read back from the outputs after the run, so resumed rows count as well.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nemo_gym_cli.outputs import OutputFiles
from nemo_gym_cli.wire import loads

__all__ = ["junit_document", "write_junit"]

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: Most characters of one message (the body holds every rollout).
_MESSAGE_CHARS = 1000


def _clean(text: str) -> str:
    return _NOT_XML.sub("", text)


@dataclass
class _Task:
    rewards: list[tuple[int, float, str]] = field(default_factory=list)  # (rollout, reward, where)
    errors: list[tuple[int, str, str, str]] = field(default_factory=list)  # (rollout, type, message, where)
    seconds: float = 0.0


def _reward(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _read(output: Path) -> dict[int, _Task]:
    """Every task of one output and its failures file, with where each rollout's record is."""
    tasks: dict[int, _Task] = {}
    files = OutputFiles(output)
    for path, failed in ((output, False), (files.failures, True)):
        if not path.is_file():
            continue
        with path.open("rb") as f:
            for number, line in enumerate(f, 1):
                try:
                    row = loads(line)
                except ValueError:
                    continue  # a torn last line: the collector cuts it on resume
                if not isinstance(row, dict) or not isinstance(row.get("_ng_task_index"), int):
                    continue
                task = tasks.setdefault(row["_ng_task_index"], _Task())
                rollout = row.get("_ng_rollout_index")
                rollout = rollout if isinstance(rollout, int) else -1
                where = f"{path}:{number}"
                if failed:
                    kind = str(row.get("error_type") or row.get("failure_kind") or "error")
                    task.errors.append((rollout, kind, str(row.get("message") or ""), where))
                else:
                    task.rewards.append((rollout, _reward(row.get("reward")), where))
                    latency = row.get("_ng_latency_s")
                    task.seconds += latency if isinstance(latency, (int, float)) else 0.0
    # A failure the output also has a row for is stale (a later attempt or resume succeeded).
    for task in tasks.values():
        done = {r for r, _, _ in task.rewards}
        task.errors = [e for e in task.errors if e[0] not in done]
    return tasks


def _suite(name: str, output: Path, threshold: float) -> ET.Element:
    suite = ET.Element("testsuite", name=name or output.stem)
    counts = {"tests": 0, "failures": 0, "errors": 0}
    total = 0.0
    for index, task in sorted(_read(output).items()):
        counts["tests"] += 1
        total += task.seconds
        case = ET.SubElement(
            suite, "testcase", classname=name or output.stem, name=f"task {index}", time=f"{task.seconds:.3f}"
        )
        rollouts = len(task.rewards) + len(task.errors)
        mean = sum(r for _, r, _ in task.rewards) / rollouts if rollouts else 0.0
        lines = [f"rollout {r}: reward {reward:g} ({where})" for r, reward, where in sorted(task.rewards)]
        lines += [f"rollout {r}: {kind}: {message} ({where})" for r, kind, message, where in sorted(task.errors)]
        body = _clean("\n".join(lines))
        if task.errors:
            counts["errors"] += 1
            r, kind, message, where = sorted(task.errors)[0]
            text = f"task {index} rollout {r} failed: {kind}: {message} (record at {where})"
            ET.SubElement(case, "error", message=_clean(text[:_MESSAGE_CHARS]), type=_clean(kind)).text = body
        elif mean < threshold:
            counts["failures"] += 1
            low = [(r, reward, where) for r, reward, where in sorted(task.rewards) if reward < threshold]
            where = ", ".join(f"rollout {r}: {reward:g} at {w}" for r, reward, w in low)
            text = f"task {index}: reward {mean:g} is below {threshold:g} ({where})"
            ET.SubElement(case, "failure", message=_clean(text[:_MESSAGE_CHARS]), type="reward").text = body
        else:
            ET.SubElement(case, "system-out").text = body
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{total:.3f}")
    return suite


def junit_document(outputs: dict[str, Path], threshold: float) -> ET.ElementTree:
    """The JUnit document of a run's outputs (variant name -> output file; "" a single run)."""
    root = ET.Element("testsuites", name="ng_collect_rollouts")
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for name, output in outputs.items():
        suite = _suite(name, output, threshold)
        root.append(suite)
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    return ET.ElementTree(root)


def write_junit(path: Path, outputs: dict[str, Path], threshold: float) -> dict[str, int]:
    """Write the JUnit XML of ``outputs`` to ``path`` (atomically); returns its totals."""
    tree = junit_document(outputs, threshold)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.indent(tree)
    partial = path.with_name(path.name + ".partial")
    tree.write(partial, encoding="utf-8", xml_declaration=True)
    partial.replace(path)
    root = tree.getroot()
    assert root is not None
    return {key: int(root.get(key, "0")) for key in ("tests", "failures", "errors")}
