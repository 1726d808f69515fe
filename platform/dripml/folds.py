"""Folds: K-fold splits, fitting one configuration on one fold, and aggregating fold scores.

:func:`run_fold` is what every Ray task of a search runs. This module imports neither MLflow
nor Optuna, so a worker's first task starts fast.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

from dripml import algorithms, metrics
from dripml.algorithms import BuildContext
from dripml.model import FittedRecipe
from dripml.spec import Spec


@dataclass(frozen=True)
class FoldScore:
    """One fold of one trial: ``metrics`` maps ``<split>_<metric>`` to its value;
    ``fit_time_s`` is the wall time of preprocessing + fit, seconds."""

    fold: int
    metrics: dict[str, float]
    fit_time_s: float


def aggregate(folds: Sequence[FoldScore]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and population std per metric key over folds (NaN values ignored).

    Example: folds with validation_auc 0.8 and 0.9 give mean 0.85, std 0.05.
    """
    keys = sorted({k for f in folds for k in f.metrics})
    mean, std = {}, {}
    for key in keys:
        values = np.array([f.metrics.get(key, math.nan) for f in folds], dtype=np.float64)
        finite = values[~np.isnan(values)]
        mean[key] = float(finite.mean()) if finite.size else math.nan
        std[key] = float(finite.std()) if finite.size else math.nan
    return mean, std


def make_folds(y: np.ndarray, spec: Spec) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train indices, validation indices) per fold, stratified for classification."""
    kf = spec.k_fold
    seed = kf.seed if kf.shuffle else None
    splitter = (StratifiedKFold if spec.stratified else KFold)(
        n_splits=kf.n_splits, shuffle=kf.shuffle, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y))


def run_fold(
    X: Any,
    y: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    algorithm_name: str,
    params: dict[str, Any],
    ctx: BuildContext,
    n_classes: int,
    train_metrics: list[metrics.BoundMetric],
    validation_metrics: list[metrics.BoundMetric],
    fold: int,
) -> FoldScore:
    """Fit one configuration on one fold and score it (runs inside a Ray task)."""
    from threadpoolctl import threadpool_limits

    recipe = algorithms.build(algorithm_name, ctx, params)
    X_train = X.iloc[train_idx] if hasattr(X, "iloc") else X[train_idx]
    X_val = X.iloc[val_idx] if hasattr(X, "iloc") else X[val_idx]
    with threadpool_limits(limits=ctx.n_threads):
        started = time.perf_counter()
        fitted = FittedRecipe(recipe, ctx.task, n_classes).fit(X_train, y[train_idx])
        fit_time_s = time.perf_counter() - started
        scores = _score(fitted, X_val, y[val_idx], validation_metrics, "validation")
        if train_metrics:
            scores |= _score(fitted, X_train, y[train_idx], train_metrics, "train")
    return FoldScore(fold=fold, metrics=scores, fit_time_s=fit_time_s)


def _score(fitted: FittedRecipe, X: Any, y: np.ndarray, bound: list[metrics.BoundMetric],
           split: str) -> dict[str, float]:
    y_pred, proba = fitted.predict(X)
    return {f"{split}_{k}": v for k, v in metrics.score_all(bound, y, y_pred, proba).items()}


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
