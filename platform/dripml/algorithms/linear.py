"""Linear models: ``logistic_regression`` (classification) and ``ridge`` (regression), on
standardised numbers and one-hot categories (target encoded above
``ONE_HOT_MAX_LEVELS`` levels, see :mod:`dripml.algorithms.preprocessing`). The text
family reuses :func:`linear_model` on top of TF-IDF or sentence embeddings."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression, Ridge

from dripml.algorithms.base import (
    CLASSIFICATION,
    Algorithm,
    BuildContext,
    estimator_params,
    register,
)
from dripml.algorithms.preprocessing import LINEAR_INPUT, linear_preprocessor
from dripml.algorithms.row_path import compile_rows
from dripml.core.model import Recipe
from dripml.core.spec import Task

_SEEDED = frozenset({"random_state"})


def linear_params(task: Task) -> frozenset[str]:
    """Hyperparameters of :func:`linear_model` for ``task`` (LogisticRegression or Ridge)."""
    return estimator_params(Ridge if task == "regression" else LogisticRegression, _SEEDED)


def linear_input(ctx: BuildContext, text: dict[str, Any] | None = None) -> Any:
    """:func:`~dripml.algorithms.preprocessing.linear_preprocessor` for ``ctx``'s layout,
    target encoding for its task and seed."""
    return linear_preprocessor(ctx.layout, text, task=ctx.task, seed=ctx.seed)


def linear_model(ctx: BuildContext, params: dict[str, Any], max_iter: int = 1000) -> Any:
    """Ridge for regression, else LogisticRegression (``max_iter`` unless params set it)."""
    if ctx.task == "regression":
        return Ridge(**params, random_state=ctx.seed)
    return LogisticRegression(**{"max_iter": max_iter, **params}, random_state=ctx.seed)


def _logistic_regression(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    estimator = LogisticRegression(**{"max_iter": 1000, **params}, random_state=ctx.seed)
    return Recipe(estimator, linear_input(ctx), preprocessor_key=LINEAR_INPUT,
                  row_path=compile_rows)


def _ridge(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    return Recipe(Ridge(**params, random_state=ctx.seed), linear_input(ctx),
                  preprocessor_key=LINEAR_INPUT, row_path=compile_rows)


LOGISTIC_REGRESSION = register(Algorithm(
    name="logistic_regression", builder=_logistic_regression, tasks=CLASSIFICATION,
    description="scikit-learn LogisticRegression on standardised, one-hot and target-"
                "encoded features",
    default_space={"C": {"type": "loguniform", "low": 1e-4, "high": 1e3}},
    hyperparameters=linear_params))

RIDGE = register(Algorithm(
    name="ridge", builder=_ridge, tasks=frozenset({"regression"}),
    description="scikit-learn Ridge on standardised, one-hot and target-encoded features",
    default_space={"alpha": {"type": "loguniform", "low": 1e-4, "high": 1e4}},
    hyperparameters=linear_params))
