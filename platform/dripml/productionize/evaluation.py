"""Evaluation artifacts of a registered model: plots and reports from its test predictions.

Refine already predicts the test split to compute the test metrics (see
:class:`dripml.refine.candidates.Refit`); this module turns those predictions into the files
an MLflow user expects on the model's run, under ``evaluation/``:

- classification: ``confusion_matrix.png``, ``roc_curve.png``, ``precision_recall_curve.png``
  (one-vs-rest per class for multiclass), ``calibration_curve.png`` (the positive class; for
  multiclass, the predicted class's probability against being right),
  ``classification_report.txt`` and ``.json`` (scikit-learn's, per class);
- regression: ``residuals.png`` (residual against predicted), ``predicted_vs_actual.png``;
- both: ``feature_importance.png`` and ``.csv``: the model's own (``feature_importances_``
  or ``|coef_|``) when it maps onto the encoded columns, else permutation importance of each
  input column on at most :data:`PERMUTATION_ROWS` test rows (one shuffle per column, the
  drop in ROC AUC, accuracy or R^2), within a time limit.

Plots draw on matplotlib's Agg canvas (no display, no pyplot figures) with scikit-learn's
``*Display`` helpers; on Adult's 16,281 test rows everything takes about a second. MLflow is
imported only to log.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dripml.core.model import TrainedModel

ARTIFACT_DIR = "evaluation"
"""Where the files go in the run's artifacts."""
PERMUTATION_ROWS = 2_000
"""Most test rows permutation importance predicts on."""
EVALUATION_S = 2.0
"""Allowance for making and logging the files, seconds (a time budget skips them when less
than this, plus what must follow, is left)."""
MAX_CLASSES_PLOTTED = 30
"""Above this many classes the confusion matrix and per-class curves are left out."""
TOP_FEATURES = 20
"""Bars in the feature importance plot (the CSV holds every feature)."""


def write(model: TrainedModel, X_test: pd.DataFrame, y_test: np.ndarray,
          y_pred: np.ndarray, proba: np.ndarray | None, folder: Path, *,
          time_limit_s: float = 1.0, seed: int = 0) -> list[str]:
    """Write the evaluation files of ``model`` into ``folder``.

    Args:
        model: the fitted model.
        X_test: the test features (original columns), shape (n, features).
        y_test: the truth: class codes 0..K-1 (int64) or values (float64), shape (n,).
        y_pred, proba: the model's predictions on ``X_test`` (class codes and
            probabilities (n, K), or values and None).
        time_limit_s: most seconds permutation importance may take (columns not reached in
            time are left out of it and named in the CSV's ``note``).
        seed: of the row sample and the shuffles.

    Returns:
        The names of the files written.
    """
    written: list[str] = []
    if model.task == "regression":
        written += _regression(y_test, y_pred, folder)
    else:
        written += _classification(model.classes, y_test, y_pred, proba, folder)
    written += _importance(model, X_test, y_test, folder, time_limit_s, seed)
    return written


def log(model: TrainedModel, X_test: pd.DataFrame, y_test: np.ndarray, y_pred: np.ndarray,
        proba: np.ndarray | None, *, time_limit_s: float = 1.0) -> list[str]:
    """:func:`write` the files and log them to the active MLflow run under ``evaluation/``.
    Returns the artifact paths logged."""
    import mlflow

    with tempfile.TemporaryDirectory() as folder:
        names = write(model, X_test, y_test, y_pred, proba, Path(folder),
                      time_limit_s=time_limit_s)
        mlflow.log_artifacts(folder, ARTIFACT_DIR)
    return [f"{ARTIFACT_DIR}/{name}" for name in names]


# ------------------------------------------------------------------------- classification


def _classification(classes: tuple[str, ...], y: np.ndarray, y_pred: np.ndarray,
                    proba: np.ndarray | None, folder: Path) -> list[str]:
    from sklearn.metrics import classification_report

    labels = list(range(len(classes)))
    names = [str(c) for c in classes]
    written = []
    report = classification_report(y, y_pred, labels=labels, target_names=names,
                                   zero_division=0, output_dict=True)
    (folder / "classification_report.json").write_text(json.dumps(report, indent=2))
    (folder / "classification_report.txt").write_text(classification_report(
        y, y_pred, labels=labels, target_names=names, zero_division=0, digits=4))
    written += ["classification_report.json", "classification_report.txt"]
    if len(classes) > MAX_CLASSES_PLOTTED:
        return written
    written.append(_confusion_matrix(y, y_pred, labels, names, folder))
    if proba is None:
        return written
    written += _curves(y, proba, names, folder)
    written.append(_calibration(y, y_pred, proba, names, folder))
    return written


def _confusion_matrix(y: np.ndarray, y_pred: np.ndarray, labels: list[int], names: list[str],
                      folder: Path) -> str:
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.5 * len(labels) + 2)
    return _save(folder, "confusion_matrix.png", lambda ax: ConfusionMatrixDisplay.from_predictions(
        y, y_pred, labels=labels, display_labels=names, ax=ax, colorbar=False,
        xticks_rotation="vertical" if len(labels) > 6 else "horizontal"),
        title=f"Confusion matrix (test, {len(y):,} rows)", size=(size, size))


def _curves(y: np.ndarray, proba: np.ndarray, names: list[str], folder: Path) -> list[str]:
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    # Binary: the second class is the positive one (as the metrics take it); multiclass: one
    # curve per class against the rest.
    shown = [1] if len(names) == 2 else list(range(len(names)))
    shown = [k for k in shown if (y == k).any()]  # a curve needs a positive row
    if not shown:
        return []

    def draw(display: Any) -> Callable[[Any], None]:
        def plot(ax: Any) -> None:
            for k in shown:
                display.from_predictions((y == k).astype(int), proba[:, k], ax=ax,
                                         name=names[k], plot_chance_level=k == shown[-1])
        return plot

    return [_save(folder, "roc_curve.png", draw(RocCurveDisplay), title="ROC curve (test)"),
            _save(folder, "precision_recall_curve.png", draw(PrecisionRecallDisplay),
                  title="Precision-recall curve (test)")]


def _calibration(y: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, names: list[str],
                 folder: Path) -> str:
    from sklearn.calibration import CalibrationDisplay

    if len(names) == 2:
        truth, probability, name = (y == 1).astype(int), proba[:, 1], names[1]
    else:  # how often the predicted class is right, against its probability
        truth, probability, name = ((y_pred == y).astype(int), proba.max(axis=1),
                                    "predicted class")
    return _save(folder, "calibration_curve.png", lambda ax: CalibrationDisplay.from_predictions(
        truth, probability, n_bins=10, strategy="quantile", ax=ax, name=name),
        title="Calibration (test, 10 quantile bins)")


# ------------------------------------------------------------------------------ regression


def _regression(y: np.ndarray, y_pred: np.ndarray, folder: Path) -> list[str]:
    from sklearn.metrics import PredictionErrorDisplay

    def plot(kind: str) -> Callable[[Any], None]:
        return lambda ax: PredictionErrorDisplay.from_predictions(
            y, y_pred, kind=kind, subsample=2_000, random_state=0, ax=ax)

    return [_save(folder, "residuals.png", plot("residual_vs_predicted"),
                  title="Residuals against predicted (test)"),
            _save(folder, "predicted_vs_actual.png", plot("actual_vs_predicted"),
                  title="Actual against predicted (test)")]


# ---------------------------------------------------------------------- feature importance


def _importance(model: TrainedModel, X: pd.DataFrame, y: np.ndarray, folder: Path,
                time_limit_s: float, seed: int) -> list[str]:
    own = own_importance(model)
    if own is not None:
        table, how = own, "the model's own"
    else:
        table, how = permutation_importance(model, X, y, time_limit_s=time_limit_s, seed=seed)
    if table.empty:
        return []
    table.to_csv(folder / "feature_importance.csv", index=False)
    top = table.head(TOP_FEATURES).iloc[::-1]

    def plot(ax: Any) -> None:
        ax.barh(top["feature"].astype(str), top["importance"])
        ax.set_xlabel(how)

    height = max(3.0, 0.3 * len(top) + 1.5)
    return ["feature_importance.csv",
            _save(folder, "feature_importance.png", plot,
                  title=f"Feature importance ({how})", size=(7.0, height))]


def own_importance(model: TrainedModel) -> pd.DataFrame | None:
    """The estimator's ``feature_importances_`` (or ``|coef_|`` summed over classes) by
    encoded column, most important first; None when it has neither or they do not map one
    to one onto the encoded columns (a preprocessor that adds columns, a custom model)."""
    recipe = model.fitted.recipe
    if recipe.input_kind != "encoded" or recipe.preprocessor is not None:
        return None
    estimator = recipe.estimator
    values = getattr(estimator, "feature_importances_", None)
    if values is None and getattr(estimator, "coef_", None) is not None:
        values = np.abs(np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))).sum(axis=0)
    encoder = model.encoder
    names = list(getattr(encoder, "encoded_names", encoder.names))
    if values is None or len(values) != len(names):
        return None
    table = pd.DataFrame({"feature": names,
                          "importance": np.asarray(values, dtype=np.float64).ravel()})
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)


def permutation_importance(model: TrainedModel, X: pd.DataFrame, y: np.ndarray, *,
                           time_limit_s: float = 1.0, rows: int = PERMUTATION_ROWS,
                           seed: int = 0) -> tuple[pd.DataFrame, str]:
    """The drop in score when one input column's values are shuffled, per column, on a
    sample of at most ``rows`` rows, one shuffle each; columns not reached within
    ``time_limit_s`` seconds are left out (the table's ``note`` says so).

    Score: ROC AUC (binary), accuracy (multiclass) or R^2 (regression).

    Returns:
        (table with ``feature``, ``importance``, ``note``, most important first; the
        description of the score, for the plot's axis).
    """
    from sklearn.metrics import accuracy_score, r2_score, roc_auc_score

    started = time.monotonic()
    rng = np.random.default_rng(seed)
    if len(X) > rows:
        index = np.sort(rng.choice(len(X), size=rows, replace=False))
        X, y = X.iloc[index].reset_index(drop=True), y[index]
    else:
        X = X.reset_index(drop=True)
    if model.task == "regression":
        name = "drop in R^2 when shuffled"

        def score(frame: pd.DataFrame) -> float:
            return float(r2_score(y, _predict(model, frame)[0]))
    elif model.task == "binary" and len(np.unique(y)) == 2:
        name = "drop in ROC AUC when shuffled"

        def score(frame: pd.DataFrame) -> float:
            proba = _predict(model, frame)[1]
            return float(roc_auc_score(y, proba[:, 1])) if proba is not None else math.nan
    else:
        name = "drop in accuracy when shuffled"

        def score(frame: pd.DataFrame) -> float:
            return float(accuracy_score(y, _predict(model, frame)[0]))

    base = score(X)
    rows_out = []
    for feature in model.feature_names:
        if time.monotonic() - started > time_limit_s:
            rows_out.append({"feature": feature, "importance": math.nan,
                             "note": f"not computed: {time_limit_s:g} s limit"})
            continue
        shuffled = X.copy()
        shuffled[feature] = X[feature].to_numpy()[rng.permutation(len(X))]
        rows_out.append({"feature": feature, "importance": base - score(shuffled), "note": ""})
    table = pd.DataFrame(rows_out, columns=["feature", "importance", "note"])
    table = table.sort_values("importance", ascending=False, na_position="last", kind="stable")
    return table.reset_index(drop=True), name


def _predict(model: TrainedModel, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    if model.fitted.recipe.input_kind == "frame":
        return model.fitted.predict(frame[model.feature_names])
    return model.fitted.predict(model.encoder.transform(frame))


def _save(folder: Path, name: str, draw: Callable[[Any], Any], *, title: str,
          size: tuple[float, float] = (6.0, 4.5)) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg canvas: no display, no pyplot state
    ax = figure.add_subplot()
    draw(ax)
    ax.set_title(title)
    figure.savefig(folder / name, dpi=100)
    return name
