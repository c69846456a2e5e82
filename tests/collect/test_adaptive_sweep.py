"""An offline adaptive sweep end to end: the three emulated models on 480 math problems,
against the full sweep's report, killed with SIGKILL in the middle and resumed.

The emulator runs here, on loopback, for the whole test: its bill (``/emulator/stats``)
is what each sweep cost, calls in flight when the adaptive sweep was killed included.
Which problems each model gets wrong is a hash of the model and the problem
(``policy.gets_wrong``), so the race an uninterrupted sweep would run is known in advance:
the resumed one must run the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from nemo_gym_cli.collect.adaptive import task_order
from nemo_gym_cli.collect.race import Race, RaceRules
from responses_api_models.provider_emulator import policy
from support.cli import BIN, ROOT, run_cli
from support.emulator import emulated, stats
from support.procs import descendants

pytestmark = pytest.mark.e2e

MODELS = {"emulator/small": 0.55, "emulator/medium": 0.75, "emulator/large": 0.92}
PRICES = {"emulator/small": (5e-8, 2e-7), "emulator/medium": (4e-7, 1.6e-6), "emulator/large": (3e-6, 1.5e-5)}
VARIANTS = [m.replace("/", "__") for m in MODELS]


def config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(
        f"""config_paths:
  - resources_servers/math/configs/math.yaml
policy_model:
  responses_api_models:
    openai_model:
      entrypoint: app.py
      openai_base_url: {url}/api/v1
      openai_api_key: sk-or-emulator-offline-key
      openai_model: emulator/medium
      emulator_metadata: true
      max_concurrency: 2048
"""
    )
    return path


def sweep_args(cfg: Path, problems: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"+config_paths=[{cfg}]",
        "+agent_name=math_simple_agent",
        f"+input_jsonl_fpath={problems}",
        f"+models=[{','.join(MODELS)}]",
        f"+output_jsonl_fpath={out}",
        "+concurrency=32",
        *extra,
    ]


def predicted_race(problems: Path) -> Race:
    """The race an uninterrupted adaptive sweep runs, from the emulator's own rule."""
    rows = [orjson.loads(line) for line in problems.read_bytes().splitlines()]
    keys = [policy.task_key(r["responses_create_params"]["input"]) for r in rows]
    rewards = {
        m.replace("/", "__"): [0.0 if policy.gets_wrong(m, a, k) else 1.0 for k in keys] for m, a in MODELS.items()
    }
    # cost only orders the variants here: small < medium < large at any tokens
    costs = {m.replace("/", "__"): PRICES[m][0] for m in MODELS}
    race, order = Race(VARIANTS, RaceRules("best")), task_order(len(rows), 0)
    for start in range(0, len(rows), 20):
        if race.ended:
            break
        block = order[start : start + 20]
        race.add_round({n: [rewards[n][t] for t in block] for n in race.live}, costs)
    return race


def test_an_adaptive_sweep_reaches_the_full_sweeps_decision_for_at_most_half_its_bill_and_resumes_after_sigkill(
    tmp_path: Path,
) -> None:
    problems = tmp_path / "problems.jsonl"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "resources_servers/math/generate.py"),
            "-n",
            "480",
            "--seed",
            "1",
            "-o",
            str(problems),
        ],
        check=True,
        capture_output=True,
    )
    models = [
        {"id": m, "prompt_price": PRICES[m][0], "completion_price": PRICES[m][1], "accuracy": a, "latency_ms": 0}
        for m, a in MODELS.items()
    ]
    with emulated(models=models) as url:
        cfg = config(tmp_path, url)

        # The full sweep, and what its report says is best.
        full = run_cli("ng_collect_rollouts", *sweep_args(cfg, problems, tmp_path / "full.jsonl"), timeout=300)
        assert full.returncode == 0, full.stderr[-2000:]
        full_bill = stats(url)["cost"]
        shown = run_cli("ng_report", str(tmp_path / "full"), timeout=120)
        assert shown.returncode == 0, shown.stderr
        report = orjson.loads((tmp_path / "full" / "report" / "report.json").read_bytes())
        means = {v["name"]: v["reward"]["mean"] for v in report["variants"]}
        best = max(means, key=lambda n: means[n])
        beaten = {c["a"] for c in report["comparisons"] if c["significant"] and c["b"] == best}
        assert best == "emulator__large" and beaten == {"emulator__small", "emulator__medium"}, report["comparisons"]

        # The adaptive sweep, killed once two rounds are recorded, then resumed.
        out = tmp_path / "adaptive.jsonl"
        record = tmp_path / "adaptive" / "adaptive.json"
        args = sweep_args(cfg, problems, out, "+adaptive=true", "+objective=best")
        proc = subprocess.Popen(
            [str(BIN / "ng_collect_rollouts"), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        children: list[int] = []
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                if record.exists() and len(orjson.loads(record.read_bytes())["rounds"]) >= 2:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, "the adaptive sweep ended before it could be killed"
            children = descendants(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            for pid in descendants(proc.pid) + children:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        killed_at = len(orjson.loads(record.read_bytes())["rounds"])
        resumed = run_cli("ng_collect_rollouts", *args, "+resume=true", timeout=300)
        assert resumed.returncode == 0, resumed.stderr[-2000:]
        adaptive_bill = stats(url)["cost"] - full_bill

    doc = orjson.loads(record.read_bytes())
    end = doc["end"]
    assert (end["winner"], end["reason"], end["confident"]) == (best, "one_left", True)
    assert adaptive_bill <= 0.5 * full_bill, (adaptive_bill, full_bill)
    # the same race an uninterrupted sweep runs: the same rounds, drops and intervals
    expected = predicted_race(problems)
    assert killed_at < end["rounds"] == expected.rounds
    assert [(d["variant"], d["round"], d["by"]) for d in doc["drops"]] == [
        (d.variant, d.round, d.by) for d in expected.drops
    ]
    assert [r["race"]["pairs"] for r in doc["rounds"]] == [h["pairs"] for h in expected.history]
    assert f"{best} wins" in resumed.stdout and "every other variant was dropped" in resumed.stdout
    # every rollout of the race is in the outputs once, the dropped variants' included
    for name in VARIANTS:
        rows = [orjson.loads(line) for line in (tmp_path / "adaptive" / f"{name}.jsonl").read_bytes().splitlines()]
        pairs = [(r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows]
        assert len(pairs) == len(set(pairs)) == end["rollouts"][name]
    # the report draws the race
    shown = run_cli("ng_report", str(tmp_path / "adaptive"), timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "adaptive sweep (best, alpha 0.05): emulator__large wins" in shown.stdout
    html = (tmp_path / "adaptive" / "report" / "report.html").read_text()
    assert 'id="plot-race"' in html and "emulator__medium - emulator__large" in html
    assert orjson.loads((tmp_path / "adaptive" / "report" / "report.json").read_bytes())["adaptive"]["end"] == end
