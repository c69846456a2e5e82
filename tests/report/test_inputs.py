"""What ng_report reads: NeMo Gym rows, argument forms, bad input, the optional extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

BIN = Path(sys.executable).parent


def _ng_report(*args: str, cwd: Path, extra: str = "") -> subprocess.CompletedProcess[str]:
    """ng_report as a user runs it: a separate process, the console script's entry point."""
    code = f"import sys\n{extra}\nfrom nemo_gym_cli.cli import report_main\nsys.argv[0] = 'ng_report'\nreport_main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


#: A line of an input (task) file: a prompt and the verifier's fields, no reward, no response.
TASK_LINE = '{"responses_create_params": {"input": [{"role": "user", "content": "2+2?"}]}, "expected_answer": "4"}\n'


def _nemo_gym_row(prompt: str, model: str, reward: float) -> dict[str, Any]:
    """A row as NeMo Gym 0.2.1 writes it: no _ng_* fields."""
    return {
        "responses_create_params": {"input": [{"role": "user", "content": prompt}], "temperature": 0.0},
        "response": {
            "model": model,
            "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}],
            "usage": {"input_tokens": 10, "output_tokens": 2},
        },
        "reward": reward,
    }


def test_nemo_gym_rows_are_grouped_by_model_and_paired_by_their_input(
    tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any
) -> None:
    rows = []
    for repeat in range(2):  # each task twice: repeats are told apart by row order
        for task in range(3):
            rows.append(_nemo_gym_row(f"question {task}", "model-a", 1.0 if task == 0 else 0.0))
            rows.append(_nemo_gym_row(f"question {task}", "model-b", 1.0 if task < 2 or repeat else 0.0))
    write_jsonl(tmp_path / "nemo.jsonl", rows)
    code, out, err = run_report(str(tmp_path / "nemo.jsonl"))
    assert code == 0, err
    report = load_json(tmp_path / "report_nemo" / "report.json")
    a, b = report["variants"]
    assert (a["name"], a["rollouts"], a["tasks"]) == ("model-a", 6, 3)
    assert (b["name"], b["rollouts"], b["tasks"]) == ("model-b", 6, 3)
    assert a["reward"]["mean"] == pytest.approx(1 / 3)
    assert b["reward"]["mean"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert a["pass_at_k"] == {"1": pytest.approx(1 / 3), "2": pytest.approx(1 / 3)}
    assert a["cost"] == {
        "total_usd": None,
        "per_rollout_usd": None,
        "per_solved_task_usd": None,
        "rollouts_without_cost": 6,
    }
    (comparison,) = report["comparisons"]
    assert (comparison["a"], comparison["b"], comparison["tasks"]) == ("model-a", "model-b", 3)
    assert "model-a: 6 of 6 rollouts have no cost" in err


def test_files_of_a_directory_without_manifest_are_variants_named_by_stem(
    tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any
) -> None:
    for name in ("cheap", "smart"):
        write_jsonl(tmp_path / "sweep" / f"{name}.jsonl", [_nemo_gym_row(f"q{t}", "m", 1.0) for t in range(4)])
    code, out, _ = run_report(str(tmp_path / "sweep"), "+pass_threshold=0.5", "+group_by=none")
    assert code == 0
    report = load_json(tmp_path / "sweep" / "report" / "report.json")
    assert [v["name"] for v in report["variants"]] == ["cheap", "smart"]
    assert report["settings"]["pass_threshold"] == 0.5 and report["settings"]["group_by"] is None
    assert report["comparisons"][0]["tasks"] == 4
    assert out.splitlines()[0] == "2 variants, 8 rollouts over 4 tasks"


@pytest.mark.e2e
def test_override_inputs_and_bare_paths_combine_and_the_report_goes_beside_the_files_named_after_them(
    tmp_path: Path, write_jsonl: Any
) -> None:
    results = tmp_path / "results"
    write_jsonl(results / "a.jsonl", [_nemo_gym_row("q", "m", 1.0)])
    write_jsonl(results / "b.jsonl", [_nemo_gym_row("q", "m", 0.0)])
    done = _ng_report("+inputs=[results/a.jsonl]", "results/b.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (results / "report_a+b" / "report.html").is_file()  # named after the files, beside them
    assert "b beats a" in done.stdout or "no significant difference between a and b" in done.stdout
    umbrella = subprocess.run(
        [str(BIN / "ng"), "report", "results/a.jsonl", "results/b.jsonl", "+report_dir=elsewhere"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert umbrella.returncode == 0, umbrella.stderr
    assert (tmp_path / "elsewhere" / "report.json").is_file()


def test_a_line_that_is_not_json_is_named_once_skipped_and_counted(
    tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any
) -> None:
    path = write_jsonl(
        tmp_path / "out.jsonl",
        [
            {"_ng_task_index": 0, "_ng_rollout_index": 0, "reward": 1.0},
            b'{"_ng_task_index": 1, "rew',
            {"_ng_task_index": 1, "_ng_rollout_index": 0},  # no reward, no response: still a rollout
        ],
    )
    code, _, err = run_report(str(path))
    assert code == 0
    assert err.count("not valid JSON") == 1
    assert f"warning: {path}:2: not valid JSON; line skipped" in err
    report = load_json(tmp_path / "report_out" / "report.json")
    assert report["input_quality"]["skipped_lines"] == 1
    (v,) = report["variants"]
    assert (v["rollouts"], v["rollouts_without_reward"], v["reward"]["mean"]) == (2, 1, 0.5)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["results/missing.jsonl"], {}, "error: input 'results/missing.jsonl' does not exist"),
        (["results/empty.jsonl"], {"results/empty.jsonl": ""}, "error: no rollouts to report: results/empty.jsonl"),
        ([], {}, "error: no inputs: name output JSONL files or a sweep directory"),
        (["results", "+colour=red"], {}, "error: unknown key +colour; ng_report knows:"),
        (["+inputs=[a.jsonl", "x"], {}, "error: command-line argument '+inputs=[a.jsonl' is not an override"),
        (["results/a.jsonl", "+pass_threshold=high"], {"results/a.jsonl": "{}"}, "error: +pass_threshold must be"),
        (["results/a.jsonl", "+overwrite=maybe"], {"results/a.jsonl": "{}"}, "error: +overwrite must be true or false"),
        (
            ["data/questions.jsonl"],
            {"data/questions.jsonl": TASK_LINE * 3},
            "error: data/questions.jsonl holds tasks, not rollouts: none of its 3 rows has a reward or a response",
        ),
    ],
    ids=[
        "missing-file",
        "empty-file",
        "no-inputs",
        "unknown-key",
        "bad-override",
        "bad-value",
        "bad-flag",
        "task-file",
    ],
)
def test_usage_errors_are_one_line_and_exit_code_2(
    tmp_path: Path, args: list[str], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    done = _ng_report(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_task_file_is_refused_and_nothing_is_written(tmp_path: Path, run_report: Any) -> None:
    """Given a task file (the mcqa questions) instead of an output, no "(unknown model)" report."""
    from nemo_gym_cli.errors import ConfigError

    tasks = Path(__file__).resolve().parents[2] / "resources_servers" / "mcqa" / "data" / "questions.jsonl"
    (tmp_path / "questions.jsonl").write_bytes(tasks.read_bytes())
    with pytest.raises(ConfigError, match=r"questions\.jsonl holds tasks, not rollouts: none of its 70 rows"):
        run_report(str(tmp_path / "questions.jsonl"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.jsonl"]


def test_a_report_of_other_inputs_is_never_replaced_without_saying_so(
    tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any
) -> None:
    from nemo_gym_cli.errors import ConfigError

    sweep = tmp_path / "sweep"
    for name in ("a", "b", "c"):
        write_jsonl(sweep / f"{name}.jsonl", [_nemo_gym_row(f"q{t}", "m", float(t % 2)) for t in range(4)])
    assert run_report(str(sweep))[0] == 0
    sweep_report = (sweep / "report" / "report.json").read_bytes()
    # two files of the sweep: their own folder by default, the sweep's report untouched
    code, out, _ = run_report(str(sweep / "a.jsonl"), str(sweep / "b.jsonl"))
    assert code == 0 and f"wrote {sweep / 'report_a+b' / 'report.html'}" in out
    assert (sweep / "report" / "report.json").read_bytes() == sweep_report
    # pointed at the sweep's folder: refused, saying what to type
    with pytest.raises(ConfigError) as refused:
        run_report(str(sweep / "a.jsonl"), str(sweep / "b.jsonl"), f"+report_dir={sweep / 'report'}")
    assert str(refused.value) == (
        f"{sweep / 'report'} already holds the report of sweep; write this one elsewhere with "
        "+report_dir=<another folder>, or replace it with +overwrite=true"
    )
    assert (sweep / "report" / "report.json").read_bytes() == sweep_report
    # the same inputs again: replaced, and said
    code, out, _ = run_report(str(sweep))
    assert code == 0 and "(replacing the report of the same inputs)" in out
    # asked for: replaced, and said
    code, out, _ = run_report(str(sweep / "a.jsonl"), f"+report_dir={sweep / 'report'}", "+overwrite=true")
    assert code == 0 and "(replacing the report of other inputs: +overwrite=true)" in out
    assert [v["name"] for v in load_json(sweep / "report" / "report.json")["variants"]] == ["m"]


def test_an_empty_file_beside_others_is_a_warning(tmp_path: Path, write_jsonl: Any, run_report: Any) -> None:
    write_jsonl(tmp_path / "a.jsonl", [_nemo_gym_row("q", "m", 1.0)])
    (tmp_path / "b.jsonl").write_text("")
    code, _, err = run_report(str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"))
    assert code == 0
    assert f"warning: {tmp_path / 'b.jsonl'}: no rows and no failures: left out" in err


@pytest.mark.e2e
def test_without_the_report_extra_it_says_what_to_install(tmp_path: Path) -> None:
    done = _ng_report("results", cwd=tmp_path, extra="sys.modules['matplotlib'] = None")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: ng_report needs matplotlib (the report extra): pip install -e '.[report]' in a clone of nemo-gym-cli"
    )


@pytest.mark.e2e
def test_the_rest_of_the_toolkit_never_imports_the_report_extra() -> None:
    code = (
        "import sys\n"
        "import nemo_gym_cli, nemo_gym_cli.cli, nemo_gym_cli.commands.collect, nemo_gym_cli.commands.run\n"
        "import nemo_gym_cli.report, nemo_gym_cli.server.agent, nemo_gym_cli.server.resources\n"
        "import nemo_gym_cli.report.command\n"
        "print(sorted(m for m in ('numpy', 'matplotlib', 'jinja2', 'msgspec') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_rows_of_odd_shapes_still_count_and_any_dotted_field_groups(
    tmp_path: Path, write_jsonl: Any, run_report: Any, load_json: Any
) -> None:
    path = write_jsonl(
        tmp_path / "odd.jsonl",
        [
            {"_ng_task_index": 0, "reward": 1, "response": "an error string", "_ng_variant": "v"},
            {"_ng_task_index": 1, "reward": "1.0", "response": {"usage": [3], "provider": "P"}, "_ng_variant": "v"},
            {
                "_ng_task_index": 2,
                "_ng_rollout_index": 10**12,  # nonsense: numbered in reading order instead
                "reward": 0.0,
                "response": {"model": "m", "provider": "Q", "usage": {"input_tokens": 1e300}},
                "_ng_variant": "v",
            },
        ],
    )
    code, _, err = run_report(str(path), "+group_by=response.provider")  # a path into a narrowed field
    assert code == 0, err
    report = load_json(tmp_path / "report_odd" / "report.json")
    (v,) = report["variants"]
    assert (v["rollouts"], v["rollouts_without_reward"], v["rollouts_without_usage"]) == (3, 1, 3)
    assert v["reward"]["mean"] == pytest.approx(1 / 3)  # the string reward counts 0, and is counted
    assert {g["value"]: g["tasks"] for g in report["groups"]} == {"P": 1, "Q": 1, "(none)": 1}


def test_rows_of_the_usual_shapes_take_the_fast_path() -> None:
    from nemo_gym_cli.report.rows import RowReader, input_key

    reader = RowReader("meta.category")
    ours = {
        **_nemo_gym_row("q", "m", 1.0),
        "meta": {"category": "c"},
        "_ng_task_index": 3,
        "_ng_rollout_index": 1,
        "_ng_variant": "v",
        "_ng_latency_s": 0.5,
        "_ng_requested_model": "m",
    }
    ours["response"]["usage"]["cost"] = 0.1
    for row in (ours, _nemo_gym_row("q", "m", 1.0)):
        decoded = reader._decode(orjson.dumps(row))  # raises if the struct rejects the shape
        assert decoded == reader.loose_row(row)
    assert input_key(reader._decode(orjson.dumps(ours))) == input_key(reader.loose_row(ours)) is not None
