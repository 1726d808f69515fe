"""Fitted models: what a fold fits, what is registered, and what is served.

:class:`Recipe` says what one configuration fits (an algorithm's builder makes it, see
:mod:`dripml.algorithms`); :class:`FittedRecipe` fits one on encoded rows and returns class
codes and probabilities. :class:`TrainedModel` adds the encoder and the class labels, so
it maps raw rows (a DataFrame or JSON records) to labels; it is what MLflow stores (through
:class:`dripml.productionize.pyfunc.PyfuncModel`) and what ``drip serve`` calls. This module
does not import MLflow: Ray workers import it for every fold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from dripml.core.features import Feature, InputIssue, TabularEncoder
from dripml.core.preprocess import Postprocessor, Preprocessor
from dripml.core.spec import Task
from dripml.errors import DataError


@dataclass
class Recipe:
    """What a trial fits: ``estimator.fit(preprocessor.fit_transform(X, y), y, **fit_params)``
    (``y`` for preprocessors that learn from the label, such as target encoding).

    ``input_kind`` is ``"encoded"`` (the encoder's matrix) or ``"frame"`` (custom models get
    the original feature DataFrame). Recipes with equal ``preprocessor_key`` preprocess
    identically, so a search fits that preprocessor once per fold and shares its output
    (as ``Pipeline(memory=...)`` would); None means never share.

    Defined here, not in :mod:`dripml.algorithms`, because core may not import algorithms and
    a fitted model pickles it by reference (``dripml.core.model.Recipe``).
    """

    estimator: Any
    preprocessor: Any | None = None
    fit_params: dict[str, Any] = field(default_factory=dict)
    input_kind: str = "encoded"
    preprocessor_key: tuple[Any, ...] | None = None
    row_path: Callable[[Any, Any], Callable[[Any], Any] | None] | None = None
    """``row_path(preprocessor, estimator)``, both fitted, compiles them into one fast
    function of a few encoded rows returning what the estimator's ``predict_proba``
    (``predict`` for regression) would (or None when it cannot); see
    :mod:`dripml.algorithms.row_path`. None: always scikit-learn's path."""


ROW_PATH_MAX_ROWS = 16
"""Most rows a :attr:`Recipe.row_path` transforms; larger batches share scikit-learn's costs."""


class FittedRecipe:
    """A recipe fitted on one training set.

    ``predict`` returns ``(y_pred, y_proba)``: class codes (int64, shape (n,)) and
    probabilities (float64, shape (n, K)) for classification, or floats and None for
    regression.
    """

    def __init__(self, recipe: Recipe, task: Task, n_classes: int) -> None:
        self.recipe = recipe
        self.task = task
        self.n_classes = n_classes

    def fit(self, X: Any, y: np.ndarray) -> FittedRecipe:
        if self.recipe.preprocessor is not None:
            X = self.recipe.preprocessor.fit_transform(X, y)
        return self.fit_transformed(X, y)

    def fit_transformed(self, X: Any, y: np.ndarray) -> FittedRecipe:
        """Fit the estimator alone on rows an identical, already fitted preprocessor made."""
        self.recipe.estimator.fit(X, y, **self.recipe.fit_params)
        return self

    def predict(self, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        rows = self._row_predict(X)
        if rows is not None:
            return self._outputs(rows(X))
        if self.recipe.preprocessor is not None:
            X = self.recipe.preprocessor.transform(X)
        return self.predict_transformed(X)

    def _row_predict(self, X: Any) -> Callable[[Any], Any] | None:
        """The recipe's compiled row path for ``X`` (an encoded matrix of at most
        :data:`ROW_PATH_MAX_ROWS` rows), compiled once per fitted preprocessor and estimator;
        else None."""
        compile_rows = getattr(self.recipe, "row_path", None)  # None in older pickles
        if (compile_rows is None or self.recipe.preprocessor is None or hasattr(X, "iloc")
                or getattr(X, "shape", (ROW_PATH_MAX_ROWS + 1,))[0] > ROW_PATH_MAX_ROWS):
            return None
        key = (self.recipe.preprocessor, self.recipe.estimator)
        cached = self.__dict__.get("_rows")
        if cached is None or cached[0] != key:
            cached = (key, compile_rows(*key))
            self._rows = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_rows", None)  # compiled again on first use
        return state

    def predict_transformed(self, X: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Predict from preprocessed rows (see :meth:`fit_transformed`)."""
        estimator = self.recipe.estimator
        if self.task == "regression":
            return self._outputs(estimator.predict(X))
        if not hasattr(estimator, "predict_proba"):
            return np.asarray(estimator.predict(X), dtype=np.int64), None
        return self._outputs(estimator.predict_proba(X))

    def _outputs(self, raw: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(y_pred, y_proba) from the estimator's ``predict`` (regression) or
        ``predict_proba`` output."""
        if self.task == "regression":
            return np.asarray(raw, dtype=np.float64).ravel(), None
        raw = np.asarray(raw)
        proba = raw.astype(np.float64)
        if raw.dtype != np.float64:
            # float32 rows (a model on embeddings) sum to one only within 1e-7; metrics
            # such as log loss check at float64 precision.
            proba /= proba.sum(axis=1, keepdims=True)
        proba = self._full_proba(proba)
        return proba.argmax(axis=1).astype(np.int64), proba

    def single_threaded(self) -> FittedRecipe:
        """Make the estimator predict on one thread (``n_jobs`` / ``num_threads`` = 1), as a
        server does: thread pools cost more than they save on one-row requests
        (RandomForest with n_jobs=2 takes ~25 ms a row instead of ~3 ms); replicas scale
        out instead."""
        estimator = self.recipe.estimator
        for name in ("n_jobs", "num_threads"):
            if name in getattr(estimator, "get_params", dict)():
                estimator.set_params(**{name: 1})
        return self

    def _full_proba(self, proba: np.ndarray) -> np.ndarray:
        # A fold may miss a rare class: put the estimator's columns where their codes say.
        seen = getattr(self.recipe.estimator, "classes_", None)
        if seen is None or len(seen) == self.n_classes:
            return proba
        full = np.zeros((proba.shape[0], self.n_classes))
        full[:, np.asarray(seen, dtype=np.int64)] = proba
        return full


@dataclass(frozen=True)
class Prediction:
    """Labels (shape (n,)) and, for classification, probabilities (n, K) in ``classes`` order.

    ``issues``: the input values the encoder read as missing (categories unseen in training,
    unreadable dates), one :class:`~dripml.core.features.InputIssue` per feature; () when none
    (and always for custom models, which get the raw frame).
    """

    labels: list[Any]
    probabilities: np.ndarray | None
    classes: tuple[str, ...]
    issues: tuple[InputIssue, ...] = ()
    outputs: list[dict[str, Any]] | None = None
    """Per row, the columns the model's ``postprocess`` returned (``{"decision": ...}``);
    None for a model without one."""


@dataclass
class TrainedModel:
    """An encoder plus a fitted recipe plus the label's classes: raw rows in, labels out."""

    encoder: TabularEncoder
    fitted: FittedRecipe
    task: Task
    classes: tuple[str, ...]
    label: str
    algorithm: str
    params: dict[str, Any] = field(default_factory=dict)
    example: dict[str, Any] = field(default_factory=dict)
    """One real input record (JSON types), for docs and the printed ``curl`` line."""
    preprocessor: Preprocessor | None = None
    """``data.preprocess`` fitted on the training rows: raw records in, the encoder's input
    out (see :mod:`dripml.core.preprocess`); None without one."""
    postprocessor: Postprocessor | None = None
    """``postprocess``: the predictions in, extra output columns out; None without one."""

    @property
    def feature_names(self) -> list[str]:
        """The encoder's input columns (what ``data.preprocess`` returns, when set)."""
        return self.encoder.names

    @property
    def input_features(self) -> tuple[Feature, ...]:
        """The columns a request gives: the raw ones ``data.preprocess`` reads, else the
        encoder's features (names, kinds, categories)."""
        preprocessor = getattr(self, "preprocessor", None)  # None in older pickles
        if preprocessor is not None:
            return preprocessor.input_features
        return tuple(self.encoder.features)

    @property
    def input_names(self) -> list[str]:
        """The names of :attr:`input_features`, in order."""
        return [f.name for f in self.input_features]

    def _model_input(self, frame: pd.DataFrame) -> pd.DataFrame:
        preprocessor = getattr(self, "preprocessor", None)
        return frame if preprocessor is None else preprocessor.transform_frame(frame)

    def predict_frame(self, frame: pd.DataFrame) -> Prediction:
        """Predict for a DataFrame holding the input columns (:attr:`input_names`)."""
        frame = self._model_input(frame)
        if self.fitted.recipe.input_kind == "frame":
            prediction = self._decode(*self.fitted.predict(frame[self.feature_names]))
        else:
            encoded = self.encoder.encode(frame)
            prediction = self._decode(*self.fitted.predict(encoded.matrix), encoded.issues)
        postprocessor = getattr(self, "postprocessor", None)
        if postprocessor is None:
            return prediction
        added = postprocessor.apply_frame(prediction_frame(prediction))
        outputs = frame_records(added)
        return dataclasses.replace(prediction, outputs=outputs)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predicted labels for a DataFrame holding the feature columns: shape (n,), the
        training label's classes (strings) or, for regression, floats."""
        return np.asarray(self.predict_frame(frame).labels)

    def predict_proba(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities for a DataFrame: shape (n, K), one column per class, rows in
        ``frame``'s order and index.

        Raises:
            ValueError: a regression model (it predicts numbers, not classes).
        """
        prediction = self.predict_frame(frame)
        if prediction.probabilities is None:
            raise ValueError("predict_proba needs a classification model; this one predicts "
                             f"{self.label!r} as a number (use predict)")
        return pd.DataFrame(prediction.probabilities, columns=list(self.classes),
                            index=frame.index)

    def score(self, frame: pd.DataFrame, bound: Sequence[Any]) -> dict[str, float]:
        """Metrics ``bound`` (:func:`dripml.core.metrics.resolve_all`) on ``frame``, which
        holds the feature columns and the label; keys ``test_<metric>``.

        Raises:
            DataError: no label column, or a class never seen in training.
        """
        from dripml.core import metrics

        if self.label not in frame.columns:
            raise DataError(f"column {self.label!r} (the label) is missing; evaluate needs "
                            "it to score the predictions")
        features = self._model_input(frame)
        X = (features[self.feature_names] if self.fitted.recipe.input_kind == "frame"
             else self.encoder.transform(features))
        y_pred, proba = self.fitted.predict(X)
        y = frame[self.label]
        if self.task == "regression":
            y_true = pd.to_numeric(y, errors="raise").to_numpy(dtype=np.float64)
        else:
            codes = {c: i for i, c in enumerate(self.classes)}
            text = y.astype(str)
            unseen = sorted(set(text) - set(codes))
            if unseen:
                raise DataError(f"label {self.label!r} holds classes never seen in training: "
                                f"{unseen[:10]}")
            y_true = text.map(codes).to_numpy(dtype=np.int64)
        scores = metrics.score_all(list(bound), y_true, y_pred, proba)
        return {f"test_{k}": v for k, v in scores.items()}

    def predict_records(self, records: Sequence[Mapping[str, Any]] | pd.DataFrame
                        ) -> Prediction:
        """Predict for JSON-like records (or a DataFrame, then as :meth:`predict_frame`); no
        pandas unless the model is custom code (``data.preprocess`` and ``postprocess`` run
        through :func:`dripml.frame.call_records`, which picks the layout). ``issues`` of
        the result say which given values were read as missing (see :class:`Prediction`);
        ``outputs`` what ``postprocess`` added."""
        if isinstance(records, pd.DataFrame):
            return self.predict_frame(records)
        preprocessor = getattr(self, "preprocessor", None)
        if preprocessor is not None:
            records = preprocessor.transform_records(records)
        if self.fitted.recipe.input_kind == "frame":
            prediction = self._decode(*self.fitted.predict(
                pd.DataFrame(list(records), columns=self.feature_names)))
        else:
            encoded = self.encoder.encode_records(records)
            prediction = self._decode(*self.fitted.predict(encoded.matrix), encoded.issues)
        postprocessor = getattr(self, "postprocessor", None)
        if postprocessor is None:
            return prediction
        outputs = postprocessor.apply_records(prediction_records(prediction))
        return dataclasses.replace(prediction, outputs=outputs)

    def _decode(self, y_pred: np.ndarray, proba: np.ndarray | None,
                issues: tuple[InputIssue, ...] = ()) -> Prediction:
        if self.task == "regression":
            return Prediction(y_pred.tolist(), None, (), issues)
        labels = [self.classes[i] for i in y_pred.tolist()]
        return Prediction(labels, proba, self.classes, issues)


def example_record(frame: pd.DataFrame) -> dict[str, Any]:
    """The first row without missing values (else the first row) as JSON-ready values."""
    complete = frame.dropna()
    row = (complete if len(complete) else frame).iloc[0]
    return {name: _json_value(value) for name, value in row.items()}


def _json_value(value: Any) -> Any:
    if pd.isna(value):
        return None
    if isinstance(value, datetime | date):  # a datetime column of a Parquet file
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def prediction_frame(prediction: Prediction, *, outputs: bool = False) -> pd.DataFrame:
    """``prediction`` and ``probability_<class>`` columns (one row per prediction) and, with
    ``outputs``, the columns ``postprocess`` added."""
    out = pd.DataFrame({"prediction": prediction.labels})
    if prediction.probabilities is not None:
        for j, name in enumerate(prediction.classes):
            out[f"probability_{name}"] = prediction.probabilities[:, j]
    if outputs and prediction.outputs:
        added = pd.DataFrame(prediction.outputs)
        out = pd.concat([out, added.drop(columns=[c for c in added.columns if c in out])],
                        axis=1)
    return out


def prediction_records(prediction: Prediction) -> list[dict[str, Any]]:
    """The rows of :func:`prediction_frame` as dicts of plain Python values, without
    pandas (what ``postprocess`` gets on the request path)."""
    names = [f"probability_{c}" for c in prediction.classes]
    if prediction.probabilities is None:
        return [{"prediction": label} for label in prediction.labels]
    rows = prediction.probabilities.tolist()
    return [{"prediction": label, **dict(zip(names, row, strict=True))}
            for label, row in zip(prediction.labels, rows, strict=True)]


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame's rows as dicts of JSON-ready values (None for missing)."""
    return [{str(k): _json_value(v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]
