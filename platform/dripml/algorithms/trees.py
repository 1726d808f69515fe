"""scikit-learn tree ensembles: ``random_forest`` and ``hist_gradient_boosting``, on the
encoded tabular columns as floats (missing values handled natively). Categorical columns:
random_forest reads codes as numbers up to ``ONE_HOT_MAX_LEVELS`` levels,
hist_gradient_boosting takes them as native categoricals up to ``NATIVE_MAX_LEVELS``; larger
ones are target encoded (see :mod:`dripml.algorithms.preprocessing`)."""

from __future__ import annotations

from typing import Any

from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)

from dripml.algorithms.base import (
    ALL_TASKS,
    Algorithm,
    BuildContext,
    clamp,
    estimator_params,
    register,
)
from dripml.algorithms.preprocessing import (
    BOOSTING_ENCODING,
    FOREST_ENCODING,
    CategoricalEncoding,
    tree_input,
)
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
    tree = tree_input(ctx.layout, FOREST_ENCODING, task=ctx.task, seed=ctx.seed)
    estimator = cls(**{"n_estimators": 200, **params}, n_jobs=ctx.n_threads,
                    random_state=ctx.seed)
    return Recipe(estimator, tree.preprocessor, preprocessor_key=tree.key)


def _hist_gradient_boosting(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    cls = (HistGradientBoostingRegressor if ctx.task == "regression"
           else HistGradientBoostingClassifier)
    # Its bins bound the levels of a native categorical: a max_bins below the usual bound
    # lowers it (and changes the preprocessor key with it).
    bound = BOOSTING_ENCODING.max_small_levels or 0
    encoding = CategoricalEncoding("native", min(bound, int(params.get("max_bins", 255))))
    tree = tree_input(ctx.layout, encoding, task=ctx.task, seed=ctx.seed)
    estimator = cls(**params, categorical_features=tree.categorical or None,
                    random_state=ctx.seed)
    return Recipe(estimator, tree.preprocessor, preprocessor_key=tree.key)


def _random_forest_scaled(n_rows: int) -> dict[str, Any]:
    import math

    return {"n_estimators": {"type": "int", "low": 16, "high": clamp(n_rows / 100, 100, 500),
                             "log": True},
            "max_depth": {"type": "int", "low": 4,
                          "high": clamp(math.log2(max(2, n_rows)) + 4, 12, 32)}}


def _hist_gradient_boosting_scaled(n_rows: int) -> dict[str, Any]:
    return {"max_iter": {"type": "int", "low": 16, "high": clamp(n_rows / 50, 100, 1000),
                         "log": True},
            "max_leaf_nodes": {"type": "int", "low": 4, "high": clamp(n_rows / 200, 32, 256),
                               "log": True}}


RANDOM_FOREST = register(Algorithm(
    name="random_forest", builder=_random_forest, tasks=ALL_TASKS,
    description="scikit-learn RandomForest (missing values native)",
    default_space={"n_estimators": {"type": "int", "low": 16, "high": 500, "log": True},
                   "max_depth": {"type": "int", "low": 4, "high": 32},
                   "min_samples_leaf": {"type": "int", "low": 1, "high": 32, "log": True},
                   "max_features": {"type": "choice", "values": ["sqrt", 0.3, 0.6, 1.0]}},
    low_cost={"n_estimators": 32, "max_depth": 8, "max_features": "sqrt"},
    scaled_space=_random_forest_scaled,
    space_notes="scaled to the training rows n: n_estimators 16..clamp(n/100, 100, 500); "
                "max_depth 4..clamp(log2(n) + 4, 12, 32)",
    hyperparameters=_random_forest_params))

HIST_GRADIENT_BOOSTING = register(Algorithm(
    name="hist_gradient_boosting", builder=_hist_gradient_boosting, tasks=ALL_TASKS,
    description="scikit-learn HistGradientBoosting with native categoricals",
    default_space={"max_iter": {"type": "int", "low": 16, "high": 1000, "log": True},
                   "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.5},
                   "max_leaf_nodes": {"type": "int", "low": 4, "high": 256, "log": True},
                   "min_samples_leaf": {"type": "int", "low": 2, "high": 200, "log": True},
                   "l2_regularization": {"type": "loguniform", "low": 1e-6, "high": 10.0}},
    low_cost={"max_iter": 32, "max_leaf_nodes": 16},
    scaled_space=_hist_gradient_boosting_scaled,
    space_notes="scaled to the training rows n: max_iter 16..clamp(n/50, 100, 1000); "
                "max_leaf_nodes 4..clamp(n/200, 32, 256)",
    hyperparameters=_hist_gradient_boosting_params))
