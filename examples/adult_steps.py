"""Custom pre- and postprocessing for examples/adult_preprocess.yaml.

Run it with ``PYTHONPATH=examples drip run examples/adult_preprocess.yaml``: the spec names
these as ``adult_steps:NAME``. Written with the pandas API (see ``dripml.frame``): the same
code runs on the training frame and on each request's records.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


class AdultFeatures:
    """Log capital gain and loss, the age decade, hours as a share of a 40-hour week, and
    hours against the training rows' mean (state learnt in ``fit`` on the training rows
    only, then used unchanged on the test rows, the folds and every request)."""

    def fit(self, df: pd.DataFrame) -> AdultFeatures:
        self.mean_hours_ = float(df["hours_per_week"].mean())
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df["log_capital_gain"] = np.log1p(df["capital_gain"])
        df["log_capital_loss"] = np.log1p(df["capital_loss"])
        df["age_decade"] = np.floor(df["age"] / 10) * 10
        df["hours_ratio"] = df["hours_per_week"] / 40.0
        df["hours_vs_mean"] = df["hours_per_week"] - self.mean_hours_
        return df


def decide(predictions: pd.DataFrame) -> pd.DataFrame:
    """A business decision per record: send likely high earners to a person for review."""
    predictions["decision"] = np.where(predictions["probability_>50K"] >= 0.7, "review",
                                       "auto")
    return predictions[["decision"]]
