"""The linear family's row path (dripml.algorithms.row_path): a few rows predicted in NumPy give
what scikit-learn's batch path gives, at what the model costs rather than what
OneHotEncoder's per-column validation costs (fast: synthetic encoded matrices, real fits)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dripml.algorithms import registry as algorithms
from dripml.algorithms.base import BuildContext
from dripml.core.features import ColumnLayout
from dripml.core.model import ROW_PATH_MAX_ROWS, FittedRecipe

ROWS, NUMERIC, CATEGORICAL, LEVELS = 1200, 6, 34, 12


def _data(task: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, ColumnLayout]:
    """A wide one-hot (34 x 12 levels), 6 numbers, one 60-level column (target encoded),
    2% missing; category codes as the encoder writes them (floats, NaN missing)."""
    rng = np.random.default_rng(seed)
    X = np.empty((ROWS, NUMERIC + CATEGORICAL + 1))
    X[:, :NUMERIC] = rng.normal(size=(ROWS, NUMERIC))
    X[:, NUMERIC:-1] = rng.integers(0, LEVELS, size=(ROWS, CATEGORICAL))
    X[:, -1] = rng.integers(0, 60, size=ROWS)
    X[rng.random(X.shape) < 0.02] = np.nan
    signal = np.nan_to_num(X[:, 0]) + (X[:, NUMERIC] == 3) - (X[:, -1] < 20)
    y = {"binary": (signal + rng.normal(size=ROWS) > 0.3).astype(np.int64),
         "multiclass": np.digitize(signal + rng.normal(size=ROWS), [-0.5, 0.5]),
         "regression": signal + rng.normal(scale=0.1, size=ROWS)}[task]
    layout = ColumnLayout(numeric=tuple(range(NUMERIC)),
                          categorical=tuple(range(NUMERIC, NUMERIC + CATEGORICAL + 1)), text=(),
                          cardinalities=(LEVELS,) * CATEGORICAL + (60,))
    return X, y, layout


def _fit(task: str) -> tuple[FittedRecipe, np.ndarray]:
    X, y, layout = _data(task)
    name = "ridge" if task == "regression" else "logistic_regression"
    recipe = algorithms.build(name, BuildContext(task=task, layout=layout), {})
    fitted = FittedRecipe(recipe, task, 1 if task == "regression" else len(set(y)))
    return fitted.fit(X, y), X


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_row_path_predicts_what_the_batch_path_does(task: str) -> None:
    fitted, X = _fit(task)
    X = X[:200].copy()
    X[0, NUMERIC] = LEVELS + 3  # a code outside the known levels: all zeros, as "ignore"
    batch_pred, batch_proba = fitted.predict(X)  # > ROW_PATH_MAX_ROWS rows: scikit-learn
    assert fitted.__dict__.get("_rows") is None
    for i in range(len(X)):
        pred, proba = fitted.predict(X[i:i + 1])
        if task == "regression":  # dense and sparse dot products sum in different orders
            np.testing.assert_allclose(pred, batch_pred[i:i + 1], rtol=0, atol=1e-12)
        else:
            assert pred.tolist() == batch_pred[i:i + 1].tolist()
        if proba is not None:
            np.testing.assert_allclose(proba, batch_proba[i:i + 1], rtol=0, atol=1e-12)
    assert fitted.__dict__["_rows"][1] is not None  # the row path was taken
    few_pred, _ = fitted.predict(X[:ROW_PATH_MAX_ROWS])
    np.testing.assert_allclose(few_pred, batch_pred[:ROW_PATH_MAX_ROWS], rtol=0, atol=1e-12)


def test_row_path_is_fast_on_a_wide_one_hot() -> None:
    fitted, X = _fit("binary")
    preprocessor, estimator = fitted.recipe.preprocessor, fitted.recipe.estimator

    def sklearn_row(i: int) -> object:  # what a single row cost before the row path
        return estimator.predict_proba(preprocessor.transform(X[i:i + 1]))

    def row(i: int) -> object:
        return fitted.predict(X[i:i + 1])

    def batch(_: int) -> object:
        return fitted.predict(X[:1000])

    def best_ms(call: object, calls: int) -> float:  # the fastest of 3 interleaved rounds
        started = time.perf_counter()
        for i in range(calls):
            call(i)  # type: ignore[operator]
        return (time.perf_counter() - started) * 1000 / calls

    row(0), sklearn_row(0), batch(0)
    rounds = [(best_ms(row, 200), best_ms(sklearn_row, 5), best_ms(batch, 2) / 1000)
              for _ in range(3)]
    row_ms = min(r[0] for r in rounds)
    sklearn_ms = min(r[1] for r in rounds)
    batch_row_ms = min(r[2] for r in rounds)
    # One row costs what the model costs: within a small multiple of a batch's per-row
    # cost (scikit-learn's row path: ~1000x, about 0.3 ms per one-hot column).
    assert row_ms < 25 * batch_row_ms, (row_ms, batch_row_ms, sklearn_ms)
    assert row_ms < sklearn_ms / 10, (row_ms, sklearn_ms)
