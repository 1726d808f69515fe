"""scikit-learn tree ensembles: ``random_forest`` and ``hist_gradient_boosting``, on the
encoded tabular columns as floats (missing values handled natively)."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from dripml.algorithms.base import ALL_TASKS, Algorithm, BuildContext, estimator_params, register
from dripml.algorithms.preprocessing import TREE_INPUT, tree_input
from dripml.core.model import Recipe
from dripml.core.spec import Task


def _random_forest_params(task: Task) -> frozenset[str]:
    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    return estimator_params(cls, frozenset({"n_jobs", "random_state"}))


def _hist_gradient_boosting_params(task: Task) -> frozenset[str]:
    cls = (HistGradientBoostingRegressor if task == "regression"
           else HistGradientBoostingClassifier)
    return estimator_params(cls, frozenset({"categorical_features", "random_state"}))


def _random_forest(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    cls = RandomForestRegressor if ctx.task == "regression" else RandomForestClassifier
    preprocessor, _ = tree_input(ctx.layout)
    estimator = cls(**{"n_estimators": 200, **params}, n_jobs=ctx.n_threads,
                    random_state=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=TREE_INPUT)


def _hist_gradient_boosting(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    cls = (HistGradientBoostingRegressor if ctx.task == "regression"
           else HistGradientBoostingClassifier)
    preprocessor, categorical = tree_input(ctx.layout)
    estimator = cls(**params, categorical_features=categorical or None, random_state=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=TREE_INPUT)


RANDOM_FOREST = register(Algorithm(
    name="random_forest", builder=_random_forest, tasks=ALL_TASKS,
    description="scikit-learn RandomForest (missing values native)",
    default_space={"max_depth": {"type": "int", "low": 4, "high": 24},
                   "min_samples_leaf": {"type": "int", "low": 1, "high": 20, "log": True},
                   "max_features": {"type": "choice", "values": ["sqrt", 0.5, 1.0]}},
    hyperparameters=_random_forest_params))

HIST_GRADIENT_BOOSTING = register(Algorithm(
    name="hist_gradient_boosting", builder=_hist_gradient_boosting, tasks=ALL_TASKS,
    description="scikit-learn HistGradientBoosting with native categoricals",
    default_space={"learning_rate": {"type": "loguniform", "low": 0.02, "high": 0.3},
                   "max_leaf_nodes": {"type": "int", "low": 8, "high": 128, "log": True},
                   "min_samples_leaf": {"type": "int", "low": 5, "high": 100, "log": True},
                   "l2_regularization": {"type": "loguniform", "low": 1e-6, "high": 10.0}},
    hyperparameters=_hist_gradient_boosting_params))
