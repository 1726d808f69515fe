"""Integration: a small search on a real local Ray, logged to a real `mlflow server`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import free_port, stop_process_group
from dripml import api

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 (one worker, no job consumers), stopped by its PID."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
               "--artifacts-destination", str(root / "artifacts")]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.5)
    else:
        os.killpg(server.pid, signal.SIGKILL)
        pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
    yield url
    stop_process_group(server)
    log.close()


def test_search_is_tracked_and_registered(mlflow_server: str, adult_small_csv: dict,
                                          in_tmp_dir: Path) -> None:
    spec = {
        "name": "integration",
        "task": "binary",
        "data": {"train": str(adult_small_csv["train"]), "test": str(adult_small_csv["test"]),
                 "label": "income"},
        "k_fold": 3,
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 50}},
                       {"name": "logistic_regression"}],
        "search": {"algorithm": "random", "num_trials": 4, "seed": 0},
        "metrics": {"validation": ["roc_auc", "accuracy"],
                    "test": ["roc_auc", "accuracy", "coverage_at_precision@0.9"]},
    }
    result = api.train(spec, tracking_uri=mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)

    experiment = client.get_experiment_by_name("integration")
    assert experiment is not None and experiment.experiment_id == result.experiment_id
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("dripml.kind") == "search"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.run_id]
    assert [p.info.run_id for p in parents] == [result.run_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert {"test_roc_auc", "test_accuracy", "test_coverage_at_precision_0.9",
            "best_cv_validation_roc_auc", "search_time_s"} <= set(parent.data.metrics)
    assert parent.data.params["task"] == "binary" and parent.data.params["k_fold"] == "3"
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"leaderboard.csv", "leaderboard.md", "spec.yaml"} <= artifacts

    assert len(children) == 4
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["algorithm"] in {"lightgbm", "logistic_regression"}
        history = client.get_metric_history(child.info.run_id, "fold_validation_roc_auc")
        assert sorted(m.step for m in history) == [0, 1, 2]
        mean = sum(m.value for m in history) / 3
        assert child.data.metrics["validation_roc_auc_mean"] == pytest.approx(mean)
        assert "validation_roc_auc_std" in child.data.metrics

    version = client.get_model_version_by_alias("integration", "champion")
    assert version.version == result.model.version and version.run_id == result.run_id
    # the chosen frontier point: the best trial, its compiled twin or an ensemble
    assert version.tags["algorithm"] == (result.chosen or result.best).algorithm

    model = api.load_model("integration@champion", tracking_uri=mlflow_server)
    test = pd.read_csv(adult_small_csv["test"]).drop(columns="income").head(20)
    prediction = model.predict_frame(test)
    assert set(prediction.labels) <= {"<=50K", ">50K"}
    assert prediction.probabilities.shape == (20, 2)
    assert 0.75 < result.test_metrics["test_roc_auc"] <= 1.0

    board = pd.read_csv(client.download_artifacts(result.run_id, "leaderboard.csv",
                                                  str(in_tmp_dir)))
    assert list(board["rank"][:4]) == [1, 2, 3, 4] and board["trial"][0] == result.best.number

    listed = subprocess.run([str(Path(sys.executable).parent / "drip"), "models",
                             "--tracking-uri", mlflow_server], capture_output=True, text=True,
                            check=True, env={**os.environ, "COLUMNS": "200"}).stdout
    assert "integration" in listed and "champion" in listed


def test_embedded_default_store_is_under_dot_dripml(adult_small_csv: dict,
                                                    in_tmp_dir: Path) -> None:
    result = api.train({
        "name": "embedded", "task": "binary", "k_fold": 2,
        "data": {"train": str(adult_small_csv["train"]), "label": "income"},
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}],
        "search": {"num_trials": 1}})
    assert result.tracking_uri == f"sqlite:///{in_tmp_dir / '.dripml' / 'mlflow.db'}"
    assert (in_tmp_dir / ".dripml" / "artifacts").is_dir()
    # one row per registered version: the trial, and its compiled twin when it is on the
    # frontier (which depends on measured latency), all of the one model
    assert {m.name for m in api.models()} == {"embedded"}
