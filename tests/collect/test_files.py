"""rollout_io: lazy task input, the resume bitset, crash-safe output, the failures file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from nemo_gym_cli.collect.files import (
    DoneSet,
    FailuresFile,
    OutputFile,
    TaskIndex,
    count_tasks,
    failures_path,
    metrics_path,
    read_tasks,
)
from nemo_gym_cli.errors import InputError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- input


def test_read_tasks_numbers_non_blank_lines_and_keeps_physical_line_numbers(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"a": 1}\n\n   \n{"a": 2}\n{"a": 3}')
    items = list(read_tasks(path))
    assert [(i.task_index, i.line_number, i.row) for i in items] == [
        (0, 1, {"a": 1}),
        (1, 4, {"a": 2}),
        (2, 5, {"a": 3}),
    ]


def test_read_tasks_stops_at_the_limit(tmp_path):
    path = write(tmp_path / "in.jsonl", "".join(f'{{"a": {i}}}\n' for i in range(10)))
    assert [i.row["a"] for i in read_tasks(path, limit=3)] == [0, 1, 2]
    assert list(read_tasks(path, limit=0)) == []


def test_read_tasks_reports_bad_lines_with_their_line_number_and_goes_on(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"a": 1}\nnot json\n[1, 2]\n{"a": 4}\n')
    items = list(read_tasks(path))
    assert [i.task_index for i in items] == [0, 1, 2, 3]
    assert items[1].row is None and items[1].error.startswith(f"{path}:2: not valid JSON")
    assert items[2].row is None
    assert items[2].error == f"{path}:3: a row must be a JSON object, got list"
    assert items[3].row == {"a": 4}


def test_a_task_index_reads_any_tasks_as_read_tasks_numbers_and_parses_them(tmp_path):
    # blank lines, CRLF, a bad line, a non-object, a last line without its newline
    text = '{"a": 0}\n\n  \r\n{"a": 1}\r\nnot json\n[1]\n\n{"a": "\u00e9"}\n{"a": 5}'
    path = tmp_path / "in.jsonl"
    path.write_bytes(text.encode())
    every = list(read_tasks(path))
    index = TaskIndex(path)
    assert len(index) == len(every) == 6
    assert index.read([5, 0, 3, 5, 2]) == [every[0], every[2], every[3], every[5]]  # task order, once each
    assert index.read(range(6)) == every
    assert index.read([]) == []
    limited = TaskIndex(path, limit=3)
    assert len(limited) == 3 and limited.read([2]) == [every[2]]
    with pytest.raises(IndexError, match="has no task 3"):
        limited.read([3])


def test_count_tasks_counts_non_blank_lines_up_to_the_limit(tmp_path):
    path = write(tmp_path / "in.jsonl", '{"a": 1}\n\nnot json\n{"a": 3}\n')
    assert count_tasks(path) == 3
    assert count_tasks(path, limit=2) == 2
    assert count_tasks(path, limit=10) == 3
    assert count_tasks(path, limit=0) == 0


# ---------------------------------------------------------------------- done set


def test_done_set_adds_pairs_once_and_reports_duplicates():
    done = DoneSet(num_repeats=3)
    assert done.add(0, 0) and done.add(0, 2) and done.add(5, 1)
    assert not done.add(0, 2)  # a duplicate
    assert (0, 0) in done and (0, 2) in done and (5, 1) in done
    assert (0, 1) not in done and (1, 0) not in done and (5, 2) not in done
    assert len(done) == 3


def test_done_set_refuses_pairs_that_are_not_of_this_run():
    done = DoneSet(num_repeats=2)
    assert not done.add(0, 2)  # rollout index of a run with more repeats
    assert not done.add(-1, 0)
    assert (0, 2) not in done and (-1, 0) not in done and (1, 0) not in done
    assert len(done) == 0


def test_done_set_grows_to_far_task_indexes_as_one_bit_per_pair():
    done = DoneSet(num_repeats=4)
    assert done.add(999_999, 3)
    assert (999_999, 3) in done and (999_999, 2) not in done
    assert len(done.bits) <= 2 * (1_000_000 * 4 // 8) + 64


# ---------------------------------------------------------------------- output


def rows_text(*rows: dict) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_resume_cuts_a_torn_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    whole = rows_text({"_ng_task_index": 0}, {"_ng_task_index": 1})
    path.write_bytes(whole + b'{"_ng_task_index": 2, "response": {"out')
    assert list(OutputFile(path).existing_rows()) == [{"_ng_task_index": 0}, {"_ng_task_index": 1}]
    assert path.read_bytes() == whole


def test_resume_keeps_a_complete_last_line_that_lacks_its_newline(tmp_path):
    path = tmp_path / "out.jsonl"
    text = rows_text({"_ng_task_index": 0}) + b'{"_ng_task_index": 1}'
    path.write_bytes(text)
    assert [r["_ng_task_index"] for r in OutputFile(path).existing_rows()] == [0, 1]
    assert path.read_bytes() == text + b"\n"  # kept, and terminated so appends stay apart


def test_resume_of_a_file_holding_only_a_torn_row_empties_it(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"_ng_task_index": 0, "resp')
    assert list(OutputFile(path).existing_rows()) == []
    assert path.read_bytes() == b""


def test_a_bad_line_inside_an_existing_output_is_an_error_naming_it(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(rows_text({"a": 1}) + b"garbage\n" + rows_text({"a": 3}))
    with pytest.raises(InputError, match=r"out\.jsonl:2: existing output line is not valid JSON"):
        list(OutputFile(path).existing_rows())


def test_output_appends_one_line_per_row(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    out = OutputFile(path)
    out.open(append=True)
    out.write({"a": 1})
    assert path.read_bytes() == b'{"a":1}\n'  # flushed at once, before the file is closed
    out.close()
    again = OutputFile(path)
    again.open(append=True)
    again.write({"a": 2})
    again.close()
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n'


def test_failures_file_is_created_on_the_first_failure_and_reset_removes_it(tmp_path):
    out = tmp_path / "run.jsonl"
    failures = FailuresFile(out)
    assert failures.path == tmp_path / "run_failures.jsonl"
    failures.reset()
    assert not failures.path.exists()
    failures.write({"_ng_task_index": 3, "attempts": 2})
    failures.close()
    assert failures.path.read_bytes() == b'{"_ng_task_index":3,"attempts":2}\n'
    FailuresFile(out).reset()
    assert not failures.path.exists()


def test_side_files_are_named_after_the_output_stem():
    out = Path("results/my.run.jsonl")
    assert metrics_path(out) == Path("results/my.run_metrics.json")
    assert failures_path(out) == Path("results/my.run_failures.jsonl")


@pytest.mark.e2e
def test_an_empty_input_file_is_named_in_a_warning_before_anything_runs(tmp_path: Path) -> None:
    import socket

    from support.cli import run_cli

    (tmp_path / "empty.jsonl").write_text("\n")
    with socket.socket() as s:  # a port nobody listens on: no head server, so nothing starts
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_cli(
        "ng_collect_rollouts", f"+head_server.port={port}", "+agent_name=a",
        f"+input_jsonl_fpath={tmp_path / 'empty.jsonl'}", f"+output_jsonl_fpath={tmp_path / 'out.jsonl'}",
    )  # fmt: skip
    warning = f"warning: {tmp_path / 'empty.jsonl'} holds no tasks (no non-blank line): nothing to collect"
    assert warning in done.stderr.splitlines(), done.stderr
