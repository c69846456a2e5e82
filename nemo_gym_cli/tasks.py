"""Task files an environment generates: the command line of its ``generate.py`` and the JSONL
it writes, the same in every environment.

    # resources_servers/<env>/generate.py
    def main() -> None:
        write_tasks_command(generate, __doc__, Path(__file__).parent, noun="problems", count=300)

gives ``python generate.py [-n N] [--seed S] [-o/--out FILE]``: ``-n`` when ``count`` (its
default) is given, ``--seed`` unless ``seed=None``; ``generate`` is called with ``(n, seed)``,
``(seed)`` or ``()`` accordingly and yields rows. The file defaults to ``data/<out>`` beside
the script, or ``data/generated_<n>.jsonl`` when ``out`` is not given. One row a line:
``json.dumps(row, ensure_ascii=False)``, or orjson's compact form with ``compact=True``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["one_turn_script", "write_tasks", "write_tasks_command"]


def one_turn_script(answer_text: str, wrong_text: str | None = None) -> str:
    """A row's emulator script (``metadata.emulator_script``) for a one-turn answer: a JSON
    list of turns, ``[{"text": ...}]``, with ``"wrong": {"text": ...}`` (what a model answers
    on a task it gets wrong) if given."""
    turn: dict[str, Any] = {"text": answer_text}
    if wrong_text is not None:
        turn["wrong"] = {"text": wrong_text}
    return json.dumps([turn])


def write_tasks(rows: Iterable[dict[str, Any]], out: Path, *, compact: bool = False) -> int:
    """Write ``rows`` to ``out`` (its folder made if missing), one JSON object a line; returns
    how many."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("wb") as f:
        for row in rows:
            if compact:
                f.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
            else:
                f.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))
            written += 1
    return written


def write_tasks_command(
    generate: Callable[..., Iterable[dict[str, Any]]],
    doc: str | None,
    here: Path,
    *,
    noun: str = "tasks",
    count: int | None = None,
    seed: str | None = "random seed",
    out: str | None = None,
    compact: bool = False,
    argv: Sequence[str] | None = None,
) -> Path:
    """Parse a ``generate.py`` command line (``argv``, else the process's), write the rows
    ``generate`` yields and say so (``wrote 300 problems to ...``); returns the file.

    ``here``: the script's folder (files go to its ``data/``); ``noun``: what a row is;
    ``count``: the default of ``-n`` (no ``-n`` when None); ``seed``: what ``--seed`` seeds
    (no ``--seed`` when None); ``out``: the default file name in ``data/``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if count is not None:
        parser.add_argument("-n", type=int, default=count, help=f"number of {noun} (default {count})")
    if seed is not None:
        parser.add_argument("--seed", type=int, default=0, help=f"{seed} (default 0)")
    if out is None:
        if count is None:
            raise ValueError("write_tasks_command: data/generated_<n>.jsonl, the default file, needs -n (a count)")
        parser.add_argument("-o", "--out", type=Path, help="output file (default data/generated_<n>.jsonl)")
    else:
        default = here / "data" / out
        parser.add_argument("-o", "--out", type=Path, default=default, help=f"output file (default data/{out})")
    args = parser.parse_args(argv)
    params = [value for value in (getattr(args, "n", None), getattr(args, "seed", None)) if value is not None]
    path: Path = args.out or here / "data" / f"generated_{args.n}.jsonl"
    written = write_tasks(generate(*params), path, compact=compact)
    print(f"wrote {written} {noun} to {path}")
    return path
