"""Folds: K-fold splits, fitting one configuration on one fold, and aggregating fold scores.

:func:`run_fold` is what every Ray task of a search runs. This module imports neither MLflow
nor Optuna, so a worker's first task starts fast.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.core import costs, metrics
from dripml.core.model import FittedRecipe
from dripml.core.results import FoldScore
from dripml.core.spec import Spec
from dripml.discover import probe_calibration


def make_folds(y: np.ndarray, spec: Spec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, validation indices) per fold, stratified for classification."""
    kf = spec.k_fold
    seed = kf.seed if kf.shuffle else None
    splitter = (StratifiedKFold if spec.stratified else KFold)(
        n_splits=kf.n_splits, shuffle=kf.shuffle, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


@dataclass(frozen=True)
class TransformedFold:
    """One fold's rows through a fitted preprocessor: ``train`` (n_train, m), ``validation``
    (n_val, m), dense or sparse; ``fit_time_s``: fitting + transforming, seconds;
    ``preprocessor``: the fitted preprocessor itself (the cost probe predicts through it)."""

    train: Any
    validation: Any
    fit_time_s: float
    preprocessor: Any = None


def transform_fold(
    X: Any,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    fold: int,
    algorithm_name: str,
    params: dict[str, Any],
    ctx: BuildContext,
) -> TransformedFold:
    """Fit the recipe's preprocessor on fold ``fold``'s training rows and labels and transform
    both sides (a Ray task; its output is shared by every trial with the same
    preprocessor_key). ``y`` (shape (n_rows,), like ``X``'s rows) is what a target encoding
    learns from: only the fold's training labels reach it."""
    from threadpoolctl import threadpool_limits

    train_idx, val_idx = splits[fold]
    preprocessor = algorithms.build(algorithm_name, ctx, params).preprocessor
    with threadpool_limits(limits=ctx.n_threads):
        started = time.perf_counter()
        train = preprocessor.fit_transform(X[train_idx], y[train_idx])
        validation = preprocessor.transform(X[val_idx])
    return TransformedFold(train, validation, time.perf_counter() - started, preprocessor)


def run_fold(
    X: Any,
    y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    fold: int,
    algorithm_name: str,
    params: dict[str, Any],
    ctx: BuildContext,
    n_classes: int,
    train_metrics: list[metrics.BoundMetric],
    validation_metrics: list[metrics.BoundMetric],
    transformed: TransformedFold | None = None,
    probe_calls: int = 0,
    row_calls: int = 0,
    keep_predictions: bool = False,
) -> FoldScore:
    """Fit one configuration on fold ``fold`` of ``splits`` and score it (a Ray task).

    ``X``, ``y`` and ``splits`` arrive from Ray's object store, put there once per search:
    a fold's training indices alone are ~200 KB on Adult, above Ray's inline limit. With
    ``transformed`` (from :func:`transform_fold`) only the estimator is fitted; ``X`` is
    then unused. ``fit_time_s`` includes the preprocessor's share either way.

    With ``probe_calls`` > 0 the fitted model is then probed for its serving cost: that many
    single-row predictions (two sweeps over ``probe_calls / 2`` validation rows),
    preprocessing included, on one thread (see :func:`dripml.core.costs.probe_latency_ms`), and
    its pickled size. The probe is not part of
    ``fit_time_s``. Rows arrive encoded, so the probe leaves out the JSON-record encoding a
    served request adds (tens of microseconds).

    With ``row_calls`` > 0 and no probe, that many single-row predictions of validation rows
    (after one untimed) give ``predict_row_ms``, their median: what a time budget needs to
    know of the model's serving speed (see :mod:`dripml.core.budget`); not part of
    ``fit_time_s`` either.

    With ``keep_predictions`` the validation predictions come back too (``FoldScore.oof``,
    float32), for Refine's ensembles.
    """
    from threadpoolctl import threadpool_limits

    started_ms = int(time.time() * 1000)
    train_idx, val_idx = splits[fold]
    y_train, y_val = y[train_idx], y[val_idx]
    recipe = algorithms.build(algorithm_name, ctx, params)
    fitted = FittedRecipe(recipe, ctx.task, n_classes)
    with threadpool_limits(limits=ctx.n_threads):
        started = time.perf_counter()
        if transformed is not None:
            fitted.fit_transformed(transformed.train, y_train)
            fit_time_s = time.perf_counter() - started + transformed.fit_time_s
            predict = fitted.predict_transformed
            X_train, X_val = transformed.train, transformed.validation
        else:
            X_train = X.iloc[train_idx] if hasattr(X, "iloc") else X[train_idx]
            X_val = X.iloc[val_idx] if hasattr(X, "iloc") else X[val_idx]
            if recipe.preprocessor is not None:
                X_train = recipe.preprocessor.fit_transform(X_train, y_train)
            fitted.fit_transformed(X_train, y_train)
            fit_time_s = time.perf_counter() - started
            predict = fitted.predict
        predicted = predict(X_val)
        scores = _scored(predicted, y_val, validation_metrics, "validation")
        oof = _compact(predicted, ctx.task) if keep_predictions else None
        if train_metrics:
            # On the rows the estimator was fitted on, as the shared path does: a target
            # encoding's are cross-fitted; transform(X_train) would hand each row its own label.
            scores |= _score(fitted.predict_transformed, X_train, y_train, train_metrics, "train")
        row_ms = (time_rows_ms(predict, X_val, row_calls)
                  if row_calls > 0 and probe_calls <= 0 else None)
    if probe_calls <= 0:
        return FoldScore(fold=fold, metrics=scores, fit_time_s=fit_time_s,
                         predict_row_ms=row_ms, started_ms=started_ms,
                         ended_ms=int(time.time() * 1000), oof=oof)
    if transformed is not None:
        fitted.recipe.preprocessor = transformed.preprocessor
    rows = X.iloc[val_idx] if hasattr(X, "iloc") else X[val_idx]
    latency, size_mb, reference_ms = probe(fitted, rows, probe_calls)
    return FoldScore(fold=fold, metrics=scores, fit_time_s=fit_time_s,
                     probe_latency_p50_ms=latency.p50_ms, probe_latency_p99_ms=latency.p99_ms,
                     probe_model_mb=size_mb, probe_reference_ms=reference_ms,
                     started_ms=started_ms,
                     ended_ms=int(time.time() * 1000), oof=oof)


def probe(fitted: FittedRecipe, rows: Any, calls: int) -> tuple[costs.Latency, float, float]:
    """Single-row latency of ``fitted`` over ``rows`` (encoded matrix or, for custom models,
    a DataFrame), its pickled size in MB, and the p50 ms of the reference model timed beside
    it (:mod:`dripml.discover.probe_calibration`: the driver calibrates the latency with it)."""
    from threadpoolctl import threadpool_limits

    fitted.single_threaded()
    n = max(1, min(len(rows), calls // 2))
    single = ([rows.iloc[i:i + 1] for i in range(n)] if hasattr(rows, "iloc")
              else [rows[i:i + 1] for i in range(n)])
    with threadpool_limits(limits=1):
        latency, reference_ms = probe_calibration.probe_with_reference(
            lambda i: fitted.predict(single[i]), rows=n, passes=2)
    return latency, costs.model_size_mb(fitted), reference_ms


def time_rows_ms(predict: Callable[[Any], Any], rows: Any, calls: int) -> float:
    """Median milliseconds of ``predict`` on one row, over the first ``calls`` rows of
    ``rows`` (a matrix or a DataFrame) after one untimed call."""
    n = max(1, min(calls, rows.shape[0]))
    single = ([rows.iloc[i:i + 1] for i in range(n)] if hasattr(rows, "iloc")
              else [rows[i:i + 1] for i in range(n)])
    predict(single[0])
    times = []
    for row in single:
        started = time.perf_counter()
        predict(row)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000


def _score(predict: Callable[[Any], tuple[np.ndarray, np.ndarray | None]], X: Any,
           y: np.ndarray, bound: list[metrics.BoundMetric], split: str) -> dict[str, float]:
    return _scored(predict(X), y, bound, split)


def _scored(predicted: tuple[np.ndarray, np.ndarray | None], y: np.ndarray,
            bound: list[metrics.BoundMetric], split: str) -> dict[str, float]:
    y_pred, proba = predicted
    return {f"{split}_{k}": v for k, v in metrics.score_all(bound, y, y_pred, proba).items()}


def _compact(predicted: tuple[np.ndarray, np.ndarray | None], task: str) -> np.ndarray | None:
    """Validation predictions as an ensemble reads them, float32: probabilities (n, K) for
    classification (None when the model gives none), values (n,) for regression."""
    y_pred, proba = predicted
    kept = y_pred if task == "regression" else proba
    return None if kept is None else np.asarray(kept, dtype=np.float32)


def warm_up(algorithm_names: Sequence[str]) -> str:
    """Import what fold tasks of these algorithms need, so the first fold does not wait on it.

    Returns the worker's process id (a task must return something to be awaited).
    """
    import importlib
    import os

    for name in algorithm_names:
        module = algorithms.dependency_module(name)
        if module is not None:
            importlib.import_module(module)
    return str(os.getpid())
