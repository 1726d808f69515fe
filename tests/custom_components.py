"""Custom code referenced from specs by import path in the tests (custom_components:NAME)."""

from __future__ import annotations

import numpy as np
import pandas as pd


class MajorityThenAge:
    """A deliberately simple custom classifier: P(class 1) rises with the `age` column."""

    def __init__(self, *, slope: float = 0.05) -> None:
        self.slope = slope

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> MajorityThenAge:
        self.center_ = float(pd.to_numeric(X["age"], errors="coerce").median())
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        age = pd.to_numeric(X["age"], errors="coerce").fillna(self.center_).to_numpy()
        p1 = 1 / (1 + np.exp(-self.slope * (age - self.center_)))
        return np.column_stack([1 - p1, p1])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


def share_of_positive_predictions(y_true, y_pred, y_proba) -> float:
    """A custom metric: how often the model says class 1."""
    return float(np.mean(np.asarray(y_pred) == 1))


share_of_positive_predictions.greater_is_better = False
