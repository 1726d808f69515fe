"""Custom pre- and postprocessing referenced from specs in tests/test_preprocess.py
(``preprocess_components:NAME``), written with the pandas API :mod:`dripml.frame` runs."""

from __future__ import annotations

import numpy as np
import pandas as pd


def adult_features(df: pd.DataFrame) -> pd.DataFrame:
    """Stateless: log capital gain, age decade, hours as a share of a 40-hour week."""
    df["log_capital_gain"] = np.log1p(df["capital_gain"])
    df["age_decade"] = np.floor(df["age"] / 10) * 10
    df["hours_ratio"] = df["hours_per_week"] / 40.0
    return df


class CenterHours:
    """Stateful: hours per week minus the TRAINING rows' mean (learnt in fit)."""

    def fit(self, df: pd.DataFrame) -> CenterHours:
        self.mean_ = float(df["hours_per_week"].mean())
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df["hours_centered"] = df["hours_per_week"] - self.mean_
        return df


def decide(predictions: pd.DataFrame) -> pd.DataFrame:
    """Postprocess: a business decision from the probability of the positive class. Its
    ``.loc`` is outside dripml.frame's row layout: every call falls back to pandas (the
    endpoint test reads the fallback counter in /metrics)."""
    out = predictions.loc[:, ["probability_>50K"]]
    out["decision"] = np.where(out["probability_>50K"] > 0.5, "review", "approve")
    return out[["decision"]]


def not_a_frame(df: pd.DataFrame) -> int:
    """Returns no DataFrame: a DataError at load."""
    return len(df)


def drops_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Returns fewer rows than it got: a DataError at load."""
    return df.iloc[1:]


NOT_CALLABLE = 3


class FitOnly:
    """A class without transform: a SpecError at spec check."""

    def fit(self, df: pd.DataFrame) -> FitOnly:
        return self
