"""The default portfolio: which algorithms a spec with none tries, chosen from the columns.

Tabular columns (numbers, categories, dates): the gradient-boosted trees (LightGBM, XGBoost,
scikit-learn's HistGradientBoosting), a random forest and a linear model (logistic regression,
or ridge for regression); the families AutoGluon's and FLAML's defaults share. Text columns:
TF-IDF with a linear model (the sentence-embedding and fine-tuned models need a pretrained
model and minutes per trial, so a spec names them). Only algorithms that support the task
are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from dripml.algorithms.base import get
from dripml.core.spec import Task

TABULAR = ("lightgbm", "xgboost", "hist_gradient_boosting", "random_forest",
           "logistic_regression", "ridge")
"""The tabular portfolio, in the order a search starts them (cheapest families first)."""
TEXT = ("tfidf_linear",)
"""The text portfolio."""


def default_algorithms(task: Task, *, tabular: bool, text: bool,
                       keep: Sequence[str] | None = None) -> list[str]:
    """The algorithm names a spec without ``algorithms`` tries.

    Args:
        task: the spec's task (an algorithm that does not support it is left out).
        tabular: the data has numeric, categorical or date feature columns.
        text: the data has text columns.
        keep: only these names (a preset's families), when given and any of them apply.
    """
    names = [*(TABULAR if tabular else ()), *(TEXT if text else ())]
    names = [n for n in names if task in get(n).tasks]
    if keep is not None:
        names = [n for n in names if n in keep] or names
    return names
