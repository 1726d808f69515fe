"""An XGBoost classifier whose ``feature_types`` name the leading columns only.

A tree input (:func:`dripml.algorithms.preprocessing.tree_input`) puts numbers and native
categoricals first and target-encoded columns last; in a multiclass task those are one per
column and class, so the builder cannot count them, while XGBoost wants a type for every
column. This class reads the columns ``feature_types`` does not name as numbers ("q"),
completing the list when fitted. A fitted model pickles it by reference
(``dripml.algorithms.xgboost_estimators.XGBClassifier``). This module imports xgboost: only
the builder imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xgboost


def padded(feature_types: Sequence[str] | None, n_columns: int) -> list[str] | None:
    """``feature_types`` followed by "q" up to ``n_columns`` (None stays None)."""
    if feature_types is None:
        return None
    return [*feature_types, *["q"] * (n_columns - len(feature_types))]


class XGBClassifier(xgboost.XGBClassifier):
    """``xgboost.XGBClassifier`` whose ``feature_types`` may name the leading columns only."""

    def fit(self, X: Any, y: Any, **kwargs: Any) -> XGBClassifier:
        self.feature_types = padded(self.feature_types, X.shape[1])
        return super().fit(X, y, **kwargs)
