"""Shared fixtures: isolated working directories, small real data, free ports, a tiny
registered model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from dripml.core import datasets
from dripml.core.model import TrainedModel

# Refine starts one real server per candidate to measure it on the serving path (seconds
# each); the suite's many small runs keep the in-process figures. The tests of the serving
# path turn it back on (monkeypatch.delenv).
os.environ.setdefault("DRIPML_REFINE_SERVING_PATH", "false")


@pytest.fixture(autouse=True)
def _ray_auth_mode_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    """`drip run` and `drip predict` set RAY_AUTH_MODE=token in their process (Ray reads it at
    import); invoked in-process by CliRunner they would leave it set, and a later test's
    embedded Ray would then fail to start (InvalidAuthToken). Undone after every test."""
    if "RAY_AUTH_MODE" in os.environ:
        monkeypatch.setenv("RAY_AUTH_MODE", os.environ["RAY_AUTH_MODE"])
    else:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)


@pytest.fixture(scope="session")
def adult_files() -> dict[str, Path]:
    """UCI Adult train/test Parquet files, fetched offline into the dripml cache once."""
    return datasets.fetch("adult")


@pytest.fixture(scope="session")
def adult_small_csv(adult_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                    ) -> dict[str, Path]:
    """1,200 train and 400 test rows of Adult as CSV files (real rows, small enough for CI)."""
    folder = tmp_path_factory.mktemp("adult_small")
    paths = {}
    for split, rows in (("train", 1200), ("test", 400)):
        frame = pd.read_parquet(adult_files[split]).sample(n=rows, random_state=0)
        paths[split] = folder / f"{split}.csv"
        frame.to_csv(paths[split], index=False)
    return paths


@pytest.fixture
def in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test with a fresh working directory and no inherited MLflow settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DRIPML_TRACKING_URI", raising=False)
    return tmp_path


TINY_SPEC = {  # a few seconds of training: used by serving and batch prediction tests
    "name": "tiny", "task": "binary",
    "data": {"train": "dataset://adult/train", "test": "dataset://adult/test",
             "label": "income", "sample_rows": 2000},
    "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 30}}],
    "search": {"num_trials": 1}, "k_fold": 2,
}


@dataclass(frozen=True)
class Trained:
    """The registered tiny model: its working folder, store, reference and loaded model."""

    root: Path
    tracking_uri: str
    ref: str
    model: TrainedModel


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """A tiny LightGBM on 2,000 Adult rows, trained and registered once, in a tmp dir."""
    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root}/mlflow.db"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        from dripml import api

        result = api.train(TINY_SPEC, tracking_uri=uri)
        model = api.load_model(result.model.alias_uri, tracking_uri=uri)
    return Trained(root, uri, "tiny", model)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process_group(process: subprocess.Popen, sig: int = signal.SIGTERM,
                       grace_s: float = 30) -> None:
    """Send ``sig`` to the process group led by ``process``; SIGKILL it after ``grace_s``."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """An embedded Ray (2 CPUs) for one test module, as ``dripml.train`` starts it."""
    from dripml.orchestration import ray_cluster as cluster

    with cluster.connect(num_cpus=2) as resources:
        yield resources


@pytest.fixture(scope="session")
def small_adult(adult_small_csv: dict[str, Path]) -> dict:
    """The spec ``data`` section of :func:`adult_small_csv` (label ``income``)."""
    return {"train": str(adult_small_csv["train"]), "test": str(adult_small_csv["test"]),
            "label": "income"}
