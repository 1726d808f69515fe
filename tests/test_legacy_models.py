"""Models registered by the pre-0.2 flat layout still load and serve.

Their pickles name classes by the old module paths (``dripml.tracking.PyfuncModel``,
``dripml.model.TrainedModel``, ``dripml.features.TabularEncoder``, ``dripml.algorithms.
as_float``...). The fixture builds such a pickle here: a model pickled while each class names
its old module, which ``dripml._legacy`` (and ``dripml.algorithms``' legacy names) resolve.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from conftest import free_port, stop_process_group
from dripml.algorithms import registry as algorithms
from dripml.core import features, model
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe, TrainedModel
from dripml.productionize import pyfunc

OLD_PATHS = {  # the object -> the module that defined it before 0.2
    (pyfunc, "PyfuncModel"): "dripml.tracking",
    (model, "TrainedModel"): "dripml.model",
    (model, "FittedRecipe"): "dripml.model",
    (model, "Recipe"): "dripml.algorithms",
    (features, "TabularEncoder"): "dripml.features",
    (features, "ColumnLayout"): "dripml.features",
    (features, "Feature"): "dripml.features",
    (algorithms, "as_float"): "dripml.algorithms",
}
HEAVY = ("ray", "optuna", "torch", "kfp", "transformers")
RECORD = {"x": 0.7, "c": "a"}


def tiny_model() -> TrainedModel:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], size=200)})
    y = ((frame["x"] + (frame["c"] == "a")) > 0.5).to_numpy(dtype=np.int64)
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    recipe = algorithms.build("lightgbm",
                              algorithms.BuildContext(task="binary", layout=encoder.layout),
                              {"n_estimators": 5, "num_leaves": 4})
    fitted = FittedRecipe(recipe, "binary", 2).fit(encoder.transform(frame), y)
    return TrainedModel(encoder=encoder, fitted=fitted, task="binary", classes=("no", "yes"),
                        label="y", algorithm="lightgbm", example=dict(RECORD))


@contextlib.contextmanager
def old_class_paths() -> Iterator[None]:
    """Pickle as the pre-0.2 code did: each class names its old module while this is open."""
    saved = {}
    for (module, name), old in OLD_PATHS.items():
        importlib.import_module(old)  # the alias must be importable, else cloudpickle pickles
        obj = getattr(module, name)   # the class by value and the test proves nothing
        saved[obj] = obj.__module__
        obj.__module__ = old
    try:
        yield
    finally:
        for obj, module_name in saved.items():
            obj.__module__ = module_name


def old_pickle() -> bytes:
    with old_class_paths():
        data = cloudpickle.dumps(pyfunc.PyfuncModel(tiny_model()))
    for old in set(OLD_PATHS.values()):
        assert old.encode() in data, old
    assert b"dripml.productionize" not in data and b"dripml.core" not in data
    return data


def test_an_old_layout_pickle_loads_and_predicts_without_the_search(tmp_path: Path) -> None:
    path = tmp_path / "python_model.pkl"
    path.write_bytes(old_pickle())
    expected = tiny_model().predict_records([RECORD])
    probe = ("import json, sys, cloudpickle; m = cloudpickle.loads(open(sys.argv[1], 'rb')"
             ".read()); p = m.model.predict_records([{'x': 0.7, 'c': 'a'}]); "
             f"heavy = sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r})); "
             "print(json.dumps([type(m).__module__, p.labels, p.probabilities.tolist(), heavy]))")
    done = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True,
                          text=True, timeout=120, check=True)
    module, labels, probabilities, heavy = json.loads(done.stdout.strip().splitlines()[-1])
    assert module == "dripml.productionize.pyfunc"
    assert labels == expected.labels
    assert np.allclose(probabilities, expected.probabilities)
    assert heavy == []


@pytest.mark.slow
def test_an_old_layout_registered_model_serves(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    trained = tiny_model()
    try:
        mlflow.set_experiment("legacy")
        with mlflow.start_run(), old_class_paths():
            mlflow.pyfunc.log_model(name="model", python_model=pyfunc.PyfuncModel(trained),
                                    input_example=pd.DataFrame([RECORD]),
                                    registered_model_name="legacy")
    finally:  # other tests read MLflow's global URIs
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    artifact = next(tmp_path.rglob("python_model.pkl")).read_bytes()
    assert b"dripml.tracking" in artifact and b"dripml.productionize" not in artifact
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("drip")), "serve", "legacy/1", "--port", str(port),
         "--tracking-uri", uri], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        answer = None
        for _ in range(1200):
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/predict",
                                    json={"records": [RECORD]}, timeout=5)
                break
            except httpx.HTTPError:
                assert server.poll() is None, server.stdout.read().decode()[-3000:]
                time.sleep(0.1)
        assert answer is not None and answer.status_code == 200, answer
        assert answer.json()["predictions"] == trained.predict_records([RECORD]).labels
    finally:
        stop_process_group(server)  # SIGTERM to `drip serve`, at once after the first answer
    assert not servers_on(port, wait_s=20), "drip serve left its BentoML server running"


def servers_on(port: int, wait_s: float) -> list[int]:
    """PIDs of processes whose command line serves ``port``, after waiting for them to end."""
    deadline = time.monotonic() + wait_s
    while True:
        left = [p.pid for p in psutil.process_iter(["cmdline"])
                if str(port) in (p.info["cmdline"] or []) and "--port" in p.info["cmdline"]]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)
