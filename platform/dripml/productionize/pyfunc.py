"""The MLflow pyfunc wrapper every registered dripml model is logged as.

Registered models pickle :class:`PyfuncModel` by its import path, so every
``mlflow.pyfunc.load_model`` of a dripml model (and every ``drip serve`` worker) imports this
module: it imports MLflow's pyfunc base class, pandas and the core model only, never Ray,
Optuna or torch. Models registered before version 0.2 name it ``dripml.tracking.PyfuncModel``;
:mod:`dripml._legacy` maps that path here.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from dripml.core.model import TrainedModel, prediction_frame


class PyfuncModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc wrapper: a DataFrame of features in, a DataFrame out.

    Output columns: ``prediction`` (label, or value for regression) and, for
    classification, ``probability_<class>`` per class (one row per input row), then the
    columns the model's ``postprocess`` adds, if any.
    """

    def __init__(self, model: TrainedModel) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        return prediction_frame(self.model.predict_frame(model_input), outputs=True)
