"""benchmarks/drip_vs_automl.py: which dripml points the three claims are about and how they
are judged; benchmarks/automl_server.py: the competitors' endpoint, a real server on
127.0.0.1 around a model automl_runner.py saved."""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from dripml.core.network import free_loopback_port

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module(name)


@pytest.fixture
def claims(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return _bench("drip_vs_automl", monkeypatch)


def _rows(claims: ModuleType, **metrics: float) -> list[Any]:
    return [claims.Row(dataset="adult", budget_s=30, tool=tool.replace("_", "-"),
                       metric="roc_auc", test_metric=value) for tool, value in metrics.items()]


def _point(version: str, algorithm: str, metric: float, p50: float, *, served: bool = True,
           inproc: float = 0.1) -> dict[str, Any]:
    return {"version": version, "algorithm": algorithm, "model": "m", "trial": int(version),
            "test_metric": metric, "served": served, "latency_p50_ms": p50,
            "inproc_latency_p50_ms": inproc, "chosen": False, "frontier": "latency_p99_ms"}


POINTS = [
    _point("1", "logistic_regression", 0.905, 1.5),
    _point("2", "lightgbm+tl2cgen", 0.929, 2.0),
    _point("3", "ensemble_greedy", 0.932, 5.0),
    _point("4", "random_forest", 0.850, 1.0),  # cheapest, but under the baseline
]


def _endpoints(claims: ModuleType, dripml: dict[str, float], others: dict[str, float]
               ) -> dict[str, Any]:
    """Endpoints with these p50s (p99 twice that): dripml's by version, the others by tool."""
    by_version = {p["version"]: p for p in POINTS}
    names = {claims.point_name(by_version[v]): ms for v, ms in dripml.items()} | others
    return {name: claims.Endpoint(name, p50_ms=ms, p99_ms=2 * ms) for name, ms in names.items()}


@pytest.mark.parametrize(("gluon_high_p50", "passed"), [(30.0, True), (15.0, False)])
def test_claims_pick_the_cheapest_eligible_points_and_judge_them(
        claims: ModuleType, gluon_high_p50: float, passed: bool) -> None:
    rows = _rows(claims, dripml=0.929, autogluon_medium=0.930, autogluon_high=0.931,
                 flaml=0.928, baseline=0.900)
    chosen = claims.claim_points(rows, POINTS)
    # Best of all: 0.932 (the ensemble); within 0.5 %: the twin (0.929) and the ensemble.
    assert chosen["on_par"]["version"] == "2"
    assert chosen["beats_baseline"]["version"] == "1"
    assert chosen["best"]["version"] == "3"

    endpoints = _endpoints(claims, {"1": 1.5, "2": 2.0, "3": 5.0},
                           {"autogluon-medium": 25.0, "autogluon-high": gluon_high_p50,
                            "flaml": 10.0, "baseline": 8.0})
    on_par, above_floor, best = claims.judge("adult", rows, POINTS, chosen, endpoints)
    assert on_par.passed is passed
    assert on_par.p50_ratio["autogluon-medium"] == pytest.approx(0.08)
    assert on_par.p50_ratio["autogluon-high"] == pytest.approx(2.0 / gluon_high_p50)
    assert on_par.difference == pytest.approx(0.929 - 0.932)
    assert above_floor.passed and above_floor.difference == pytest.approx(0.005)
    assert above_floor.p50_ratio["baseline"] == pytest.approx(1.5 / 8.0)
    assert best.passed and best.difference == 0


def test_claims_miss_when_another_tool_is_best_or_no_point_qualifies(
        claims: ModuleType) -> None:
    rows = _rows(claims, dripml=0.929, autogluon_medium=0.930, autogluon_high=0.960,
                 flaml=0.928, baseline=0.940)
    points = POINTS[:2]
    chosen = claims.claim_points(rows, points)
    assert chosen["on_par"] is None and chosen["beats_baseline"] is None
    on_par, above_floor, best = claims.judge("adult", rows, points, chosen, {})
    assert not on_par.passed and "within 0.5 %" in on_par.note
    assert not above_floor.passed and "beats the baseline" in above_floor.note
    assert not best.passed and best.difference == pytest.approx(0.929 - 0.960)
    assert "autogluon-high" in best.note


def test_cheapest_falls_back_to_in_process_latency_when_a_point_was_not_served(
        claims: ModuleType) -> None:
    served = _point("1", "lightgbm", 0.9, 3.0, inproc=0.5)
    unserved = _point("2", "xgboost", 0.9, 0.8, served=False, inproc=0.8)
    # Endpoint 3.0 ms against an in-process 0.8 ms would be apples and oranges.
    assert claims.cheapest([served, unserved])["version"] == "1"
    assert claims.cheapest([served])["version"] == "1"
    assert claims.cheapest([]) is None


def test_automl_server_answers_like_the_saved_model(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    runner = _bench("automl_runner", monkeypatch)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 80, 400),
                          "job": rng.choice(["a", "b", "c"], 400),
                          "hours": rng.normal(40, 5, 400)})
    frame["label"] = np.where((frame["age"] > 45) ^ (rng.random(400) < 0.1), "yes", "no")
    frame.to_parquet(tmp_path / "test.parquet")
    X = frame.drop(columns=["label"])
    pipeline = runner.baseline_pipeline(X, "binary").fit(X, frame["label"])
    args = argparse.Namespace(save=str(tmp_path / "model"), tool="baseline", task="binary",
                              positive="yes", label="label")
    runner.save_model(args, pipeline, "baseline.pkl")

    port = free_loopback_port()
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "automl_server.py"), "--model-dir", args.save, "--test",
         str(tmp_path / "test.parquet"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=5.0, trust_env=False) as client:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, server.communicate()[1].decode()
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "automl_server.py never got ready"
                    time.sleep(0.1)
            records = json.loads(X.iloc[:3].to_json(orient="records"))
            answer = client.post("/predict", json={"records": records})
            assert answer.status_code == 200
            expected = pipeline.predict_proba(X.iloc[:3])[:, 1]
            assert answer.json()["predictions"] == pytest.approx(expected.tolist())
            bad = client.post("/predict", content=b"{not json",
                              headers={"Content-Type": "application/json"})
            assert bad.status_code == 400
            wrong_type = client.post("/predict", json={"records": [{**records[0], "age": "x"}]})
            assert wrong_type.status_code == 400 and "bad request" in wrong_type.json()["error"]
    finally:
        server.terminate()
        server.wait(timeout=10)
