"""``aggregate_metrics`` gives NeMo Gym 0.7's ``/aggregate_metrics`` figures, checked against
what 0.7 itself computed: a real 0.7 collection's ``_aggregate_metrics.json``, and 0.7's
``compute_aggregate_metrics`` run on a synthetic set with masking, a missing rollout,
booleans and uneven rewards (tests/fixtures/nemo_gym07/, made with nemo-gym 0.7.0)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from nemo_gym_cli.server.aggregate import aggregate_metrics, t_interval

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nemo_gym07"


def _close(mine: object, theirs: object, where: str = "") -> None:
    if isinstance(theirs, dict):
        assert isinstance(mine, dict) and list(mine) == list(theirs), f"{where}: keys {list(mine)} != {list(theirs)}"
        for key in theirs:
            _close(mine[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(mine, list) and len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _close(a, b, f"{where}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(mine, (int, float)) and math.isclose(mine, theirs, rel_tol=1e-9, abs_tol=1e-12), where
    else:
        assert mine == theirs, f"{where}: {mine!r} != {theirs!r}"


def test_a_real_collections_aggregate_metrics_are_reproduced_exactly():
    rows = [json.loads(line) for line in (FIXTURES / "collected_rollouts.jsonl").read_text().splitlines()]
    (theirs,) = json.loads((FIXTURES / "collected_rollouts_aggregate_metrics.json").read_text())
    mine = aggregate_metrics(rows)
    for key in ("agent_metrics", "key_metrics", "group_level_metrics", "repeat_level_metrics"):
        _close(mine[key], theirs[key], key)


def test_masked_missing_and_boolean_fields_match_nemo_gyms_own_computation():
    fixture = json.loads((FIXTURES / "synthetic_aggregate.json").read_text())
    mine = aggregate_metrics(fixture["verify_responses"])
    theirs = fixture["aggregate_metrics"]
    for key in ("agent_metrics", "key_metrics", "group_level_metrics", "repeat_level_metrics"):
        _close(mine[key], theirs[key], key)
    assert mine["agent_metrics"]["coverage/masked_rollouts"] == 1


def test_no_rows_is_the_empty_answer():
    assert aggregate_metrics([]) == {
        "group_level_metrics": [],
        "agent_metrics": {},
        "key_metrics": {},
        "perf_summary": None,
        "repeat_level_metrics": [],
    }


@pytest.mark.parametrize(
    ("df", "quantile"),  # scipy.stats.t.ppf(0.975, df)
    [(1, 12.706204736174694), (2, 4.302652729749462), (4, 2.7764451051977934), (29, 2.045229642132703)],
)
def test_the_t_interval_uses_students_quantiles(df: int, quantile: float):
    low, high = t_interval(10.0, 1.0, df + 1)
    assert math.isclose(high - 10.0, quantile, rel_tol=1e-12)
    assert math.isclose(10.0 - low, quantile, rel_tol=1e-12)


def test_resources_servers_answer_aggregate_metrics_and_07s_probes_with_their_hooks():
    from starlette.testclient import TestClient

    from nemo_gym_cli.server import asgi
    from resources_servers.simple_weather.app import SimpleWeather

    class Weather(SimpleWeather):
        def compute_metrics(self, tasks: list[list[dict]]) -> dict:
            return {"tasks_all_correct": sum(all(r["reward"] == 1.0 for r in rows) for rows in tasks)}

        def key_metrics(self, agent_metrics: dict) -> dict:
            return {
                "mean/reward": agent_metrics["mean/reward"],
                "tasks_all_correct": agent_metrics["tasks_all_correct"],
            }

    rows = [
        {"_ng_task_index": t, "_ng_rollout_index": r, "reward": float(t == 0 or r == 0)} for t in (0, 1) for r in (0, 1)
    ]
    with TestClient(asgi(Weather())) as c:
        for probe in ("/health", "/healthz", "/livez", "/readyz"):
            assert c.get(probe).json()["status"] == "ok"
        answer = c.post("/aggregate_metrics", json={"verify_responses": rows}).json()
        assert answer["agent_metrics"]["mean/reward"] == 0.75
        assert answer["agent_metrics"]["tasks_all_correct"] == 1
        assert answer["key_metrics"] == {"mean/reward": 0.75, "tasks_all_correct": 1}
        assert [g["_ng_task_index"] for g in answer["group_level_metrics"]] == [0, 1]
        bad = c.post("/aggregate_metrics", json={"verify_responses": "no"})
        assert bad.status_code == 400 and "verify_responses" in bad.json()["error"]["message"]
