"""Custom code referenced from specs by import path in the tests (custom_components:NAME)."""

from __future__ import annotations

import os

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



class CrashOnce(MajorityThenAge):
    """Kills its own process (``os._exit(1)``, as the OOM killer or a segfault would) on the
    first fit that creates ``marker``; every later fit, in any process, trains as
    :class:`MajorityThenAge` (tests/test_resume.py)."""

    def __init__(self, *, marker: str, slope: float = 0.05) -> None:
        super().__init__(slope=slope)
        self.marker = marker

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> CrashOnce:
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os._exit(1)
        super().fit(X, y)
        return self

def share_of_positive_predictions(y_true, y_pred, y_proba) -> float:
    """A custom metric: how often the model says class 1."""
    return float(np.mean(np.asarray(y_pred) == 1))


share_of_positive_predictions.greater_is_better = False
