"""Every built-in fits and predicts for each task it supports; custom code by import path."""

from __future__ import annotations

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BUILTINS, BuildContext
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe, TrainedModel
from dripml.core.spec import AlgorithmSpec
from dripml.errors import SpecError


def make_frame(task: str, n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    words = np.where(x > 0, "great value fast delivery", "broken late refund please")
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=n), "color": color,
                          "review": [f"{w} item {i % 7}" for i, w in enumerate(words)]})
    frame.loc[frame.sample(frac=0.1, random_state=seed).index, "x"] = np.nan
    signal = np.nan_to_num(frame["x"].to_numpy()) + (color == "red")
    if task == "regression":
        return frame, 3 * signal + rng.normal(scale=0.1, size=n)
    if task == "binary":
        return frame, (signal > 0.5).astype(np.int64)
    return frame, np.digitize(signal, [-0.5, 0.7]).astype(np.int64)


# The fine-tuned transformer reads the text column only (the signal here is partly tabular):
# tests/test_text_models.py covers it on real text.
CASES = [(name, task) for name, a in BUILTINS.items() for task in sorted(a.tasks)
         if name != "transformer"]


@pytest.mark.parametrize(("name", "task"), CASES)
def test_builtin_fits_and_round_trips(name: str, task: str) -> None:
    frame, y = make_frame(task)
    if not BUILTINS[name].needs_text:
        frame = frame.drop(columns="review")
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {"review": "text"}))
    ctx = BuildContext(task=task, layout=encoder.layout, n_threads=1)
    params = {"epochs": 5} if name == "mlp" else {}
    n_classes = 0 if task == "regression" else int(y.max()) + 1
    fitted = FittedRecipe(algorithms.build(name, ctx, params), task, n_classes)
    fitted.fit(encoder.transform(frame), y)
    y_pred, proba = fitted.predict(encoder.transform(frame))
    assert y_pred.shape == (len(frame),)
    if task == "regression":
        assert proba is None and np.corrcoef(y_pred, y)[0, 1] > 0.5
    else:
        assert proba.shape == (len(frame), n_classes)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        assert (y_pred == y).mean() > 0.6
    classes = tuple(str(i) for i in range(n_classes))
    model = TrainedModel(encoder, fitted, task, classes, "y", name)
    restored = cloudpickle.loads(cloudpickle.dumps(model))
    records = frame.head(3).astype(object).where(frame.head(3).notna(), None).to_dict("records")
    assert restored.predict_records(records).labels == model.predict_frame(frame.head(3)).labels


def test_text_algorithm_needs_a_text_column() -> None:
    frame, _ = make_frame("binary")
    encoder = TabularEncoder().fit(frame.drop(columns="review"),
                                   infer_kinds(frame.drop(columns="review"), {}))
    with pytest.raises(SpecError, match="needs a text column"):
        algorithms.check(AlgorithmSpec(name="tfidf_linear"), "binary", encoder.layout)


def test_custom_model_by_import_path() -> None:
    spec = AlgorithmSpec(name="custom_components:MajorityThenAge", params={"slope": 0.2})
    algorithms.check(spec, "binary")
    recipe = algorithms.build(spec.name, BuildContext("binary", TabularEncoder().layout),
                              spec.params)
    assert recipe.input_kind == "frame" and recipe.estimator.slope == 0.2
    with pytest.raises(SpecError, match="lacks \\['fit', 'predict'\\]"):
        algorithms.check(AlgorithmSpec(name="collections:OrderedDict"), "binary")


def test_default_spaces_are_valid_for_every_task() -> None:
    for name, algorithm in BUILTINS.items():
        for task in algorithm.tasks:
            space = algorithms.search_space(AlgorithmSpec(name=name), task)
            assert space, name
    # fixed params alone mean: train with those, tune nothing
    assert algorithms.search_space(AlgorithmSpec(name="lightgbm", params={"n_estimators": 5}),
                                   "binary") == {}
