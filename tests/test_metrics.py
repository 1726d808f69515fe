"""Tests of dripml.core.metrics: coverage_at_precision, the built-ins, custom metrics, errors."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from dripml.core.metrics import (
    BUILTIN_METRICS,
    Metric,
    builtin_names,
    coverage_at_precision,
    default_metrics,
    default_objective,
    load_custom_metric,
    resolve,
    resolve_all,
    score_all,
)
from dripml.core.objective import Objective, resolve_objective
from dripml.core.spec import MetricSpec, MetricsSpec, load_spec
from dripml.errors import SpecError

REPO_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------
# Custom metrics referenced by import path (tests.test_metrics:NAME)
# ---------------------------------------------------------------------------------------


def count_errors(y_true: Any, y_pred: Any, y_proba: Any) -> float:
    """Number of wrong predictions."""
    return float(np.sum(np.asarray(y_true) != np.asarray(y_pred)))


count_errors.greater_is_better = False  # type: ignore[attr-defined]


def mean_true_proba(y_true: Any, y_pred: Any, y_proba: Any) -> float:
    """Mean probability of the true class; -1 when there are no probabilities."""
    if y_proba is None:
        return -1.0
    return float(np.mean(y_proba[np.arange(len(y_true)), y_true]))


def not_a_number(y_true: Any, y_pred: Any, y_proba: Any) -> Any:
    return "high"


NOT_CALLABLE = 3


@pytest.fixture
def importable_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``tests.test_metrics`` importable whatever pytest's import mode."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))


# ---------------------------------------------------------------------------------------
# Fixed data
# ---------------------------------------------------------------------------------------

BIN_TRUE = np.array([0, 1, 1, 0, 1, 0, 1, 1, 0, 0])
BIN_P1 = np.array([0.2, 0.9, 0.6, 0.4, 0.3, 0.1, 0.8, 0.55, 0.7, 0.35])
BIN_PROBA = np.column_stack([1 - BIN_P1, BIN_P1])
BIN_PRED = BIN_PROBA.argmax(axis=1)

MC_TRUE = np.array([0, 1, 2, 2, 1, 0, 2, 1, 0, 2, 1, 0])
MC_PROBA = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.2, 0.5, 0.3],
        [0.1, 0.3, 0.6],
        [0.3, 0.4, 0.3],
        [0.5, 0.4, 0.1],
        [0.6, 0.3, 0.1],
        [0.2, 0.2, 0.6],
        [0.1, 0.8, 0.1],
        [0.3, 0.3, 0.4],
        [0.1, 0.1, 0.8],
        [0.25, 0.5, 0.25],
        [0.4, 0.35, 0.25],
    ]
)
MC_PRED = MC_PROBA.argmax(axis=1)

REG_TRUE = np.array([3.0, -0.5, 2.0, 7.0, 4.2, 1.1])
REG_PRED = np.array([2.5, 0.0, 2.0, 8.0, 3.9, 1.5])


def _score(name: str, task: str, y_true: Any, y_pred: Any, y_proba: Any, **kw: Any) -> float:
    return resolve(MetricSpec(name=name, **kw), task).score(y_true, y_pred, y_proba)


# ---------------------------------------------------------------------------------------
# coverage_at_precision
# ---------------------------------------------------------------------------------------


def _proba_binary(p1: list[float]) -> np.ndarray:
    p = np.asarray(p1)
    return np.column_stack([1 - p, p])


def test_coverage_docstring_example() -> None:
    # confidence .9 .8 .7 .6; predicted 1 1 0 1; correct yes yes no no
    proba = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    y_true = np.array([1, 1, 1, 0])
    assert coverage_at_precision(y_true, proba, 0.75) == 0.5  # 1/1, 2/2, 2/3, 2/4
    assert coverage_at_precision(y_true, proba, 0.5) == 1.0  # 2/4 reaches 0.5
    assert coverage_at_precision(y_true, proba, 0.6) == 0.75  # 2/3 >= 0.6 > 2/4


def test_coverage_order_of_rows_does_not_matter() -> None:
    proba = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9], [0.2, 0.8]])
    y_true = np.array([1, 0, 1, 1])  # same rows as the docstring example, shuffled
    assert coverage_at_precision(y_true, proba, 0.75) == 0.5


def test_coverage_ties_cannot_be_split() -> None:
    # confidence .9 .8 .8 .6; correct yes yes no yes.
    # Without the tie rule the top 2 (2/2) would qualify; but the two .8 rows go together:
    # cuts at k=1 (1/1), k=3 (2/3), k=4 (3/4).
    proba = _proba_binary([0.9, 0.8, 0.8, 0.6])
    y_true = np.array([1, 1, 0, 1])
    assert coverage_at_precision(y_true, proba, 0.9) == 0.25
    assert coverage_at_precision(y_true, proba, 0.7) == 1.0  # 3/4 = .75
    assert coverage_at_precision(y_true, proba, 0.66) == 1.0
    # the wrong row first within the tie changes nothing
    assert coverage_at_precision(np.array([1, 0, 1, 1]), proba, 0.9) == 0.25


def test_coverage_ties_with_low_class_probability() -> None:
    # .2 for class 1 means confidence .8 for class 0: it ties with .8 for class 1.
    proba = _proba_binary([0.8, 0.2, 0.95])
    y_true = np.array([1, 1, 1])  # row 2 predicts 0: wrong
    # confidence .95 (right), then .8, .8 (one right, one wrong): cuts k=1 and k=3
    assert coverage_at_precision(y_true, proba, 0.7) == pytest.approx(1 / 3)
    assert coverage_at_precision(y_true, proba, 0.6) == 1.0


def test_coverage_all_tied_is_all_or_nothing() -> None:
    proba = np.full((4, 2), 0.5)  # argmax is class 0 everywhere
    assert coverage_at_precision(np.array([0, 0, 0, 1]), proba, 0.75) == 1.0
    assert coverage_at_precision(np.array([0, 0, 0, 1]), proba, 0.8) == 0.0


def test_coverage_no_cut_reaches_precision() -> None:
    proba = _proba_binary([0.9, 0.8, 0.7, 0.6])
    y_true = np.array([0, 1, 0, 1])  # wrong, right, wrong, right: 0, 1/2, 1/3, 2/4
    assert coverage_at_precision(y_true, proba, 0.6) == 0.0
    assert coverage_at_precision(y_true, proba, 0.5) == 1.0
    assert coverage_at_precision(np.array([0, 0, 0, 0]), proba, 0.01) == 0.0


def test_coverage_all_rows_qualify() -> None:
    proba = _proba_binary([0.9, 0.1, 0.7, 0.3, 0.6])
    y_true = np.array([1, 0, 1, 0, 1])
    assert coverage_at_precision(y_true, proba, 1.0) == 1.0
    assert coverage_at_precision(y_true, proba, 0.5) == 1.0


def test_coverage_multiclass() -> None:
    proba = np.array(
        [
            [0.7, 0.2, 0.1],  # predicts 0, true 0: right, confidence .7
            [0.1, 0.8, 0.1],  # predicts 1, true 1: right, .8
            [0.2, 0.2, 0.6],  # predicts 2, true 1: wrong, .6
            [0.05, 0.05, 0.9],  # predicts 2, true 2: right, .9
            [0.5, 0.4, 0.1],  # predicts 0, true 1: wrong, .5
        ]
    )
    y_true = np.array([0, 1, 1, 2, 1])
    # sorted: .9 R, .8 R, .7 R, .6 W, .5 W -> 1, 1, 1, 3/4, 3/5
    assert coverage_at_precision(y_true, proba, 1.0) == 0.6
    assert coverage_at_precision(y_true, proba, 0.8) == 0.6
    assert coverage_at_precision(y_true, proba, 0.75) == 0.8
    assert coverage_at_precision(y_true, proba, 0.6) == 1.0


def test_coverage_exact_decimal_boundary() -> None:
    # 17 right then 3 wrong: 17/20 is exactly the target 0.85.
    p1 = np.linspace(0.99, 0.6, 20)
    y_true = np.array([1] * 17 + [0] * 3)
    assert coverage_at_precision(y_true, _proba_binary(list(p1)), 0.85) == 1.0
    assert coverage_at_precision(y_true, _proba_binary(list(p1)), 0.86) == 0.95  # 17/19
    assert coverage_at_precision(y_true, _proba_binary(list(p1)), 0.9) == 0.9  # 17/18


def _coverage_brute_force(y_true: np.ndarray, proba: np.ndarray, precision: float) -> float:
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_true
    n = len(y_true)
    best = 0
    for k in range(1, n + 1):
        threshold = np.sort(confidence)[::-1][k - 1]
        if k < n and np.sort(confidence)[::-1][k] == threshold:
            continue  # would split a tie
        chosen = confidence >= threshold
        if correct[chosen].mean() >= precision:
            best = k
    return best / n


@pytest.mark.parametrize("seed", range(8))
def test_coverage_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 60, 3
    raw = rng.integers(1, 6, size=(n, k)).astype(float)  # few distinct values: many ties
    proba = raw / raw.sum(axis=1, keepdims=True)
    y_true = rng.integers(0, k, size=n)
    for precision in (0.3, 0.5, 0.6, 0.8, 1.0):
        assert coverage_at_precision(y_true, proba, precision) == pytest.approx(
            _coverage_brute_force(y_true, proba, precision)
        )


def test_coverage_empty_and_bad_input() -> None:
    assert coverage_at_precision(np.array([], dtype=int), np.zeros((0, 2)), 0.9) == 0.0
    with pytest.raises(ValueError, match=r"precision must be in \(0, 1\]"):
        coverage_at_precision(np.array([0]), np.array([[0.6, 0.4]]), 0.0)
    with pytest.raises(ValueError, match="precision must be"):
        coverage_at_precision(np.array([0]), np.array([[0.6, 0.4]]), 1.5)
    with pytest.raises(ValueError, match="shape"):
        coverage_at_precision(np.array([0]), np.array([0.6, 0.4]), 0.5)
    with pytest.raises(ValueError, match="rows"):
        coverage_at_precision(np.array([0, 1]), np.array([[0.6, 0.4]]), 0.5)


def test_coverage_as_bound_metric() -> None:
    spec = MetricsSpec(validation=["coverage_at_precision@0.75"]).validation
    assert spec is not None
    (bound,) = resolve_all(spec, "binary")
    assert bound.key == "coverage_at_precision_0.75"
    assert bound.kwargs == {"precision": 0.75}
    assert bound.direction == "maximize"
    proba = np.array([[0.1, 0.9], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    y_true = np.array([1, 1, 1, 0])
    assert bound.score(y_true, proba.argmax(axis=1), proba) == 0.5


# ---------------------------------------------------------------------------------------
# Built-ins against scikit-learn
# ---------------------------------------------------------------------------------------

BINARY_EXPECTED = {
    "accuracy": lambda: skm.accuracy_score(BIN_TRUE, BIN_PRED),
    "balanced_accuracy": lambda: skm.balanced_accuracy_score(BIN_TRUE, BIN_PRED),
    "f1": lambda: skm.f1_score(BIN_TRUE, BIN_PRED),
    "f1_macro": lambda: skm.f1_score(BIN_TRUE, BIN_PRED, average="macro"),
    "f1_weighted": lambda: skm.f1_score(BIN_TRUE, BIN_PRED, average="weighted"),
    "precision": lambda: skm.precision_score(BIN_TRUE, BIN_PRED),
    "recall": lambda: skm.recall_score(BIN_TRUE, BIN_PRED),
    "roc_auc": lambda: skm.roc_auc_score(BIN_TRUE, BIN_P1),
    "log_loss": lambda: skm.log_loss(BIN_TRUE, BIN_PROBA),
    "average_precision": lambda: skm.average_precision_score(BIN_TRUE, BIN_P1),
}

MULTICLASS_EXPECTED = {
    "accuracy": lambda: skm.accuracy_score(MC_TRUE, MC_PRED),
    "balanced_accuracy": lambda: skm.balanced_accuracy_score(MC_TRUE, MC_PRED),
    "f1": lambda: skm.f1_score(MC_TRUE, MC_PRED, average="macro"),
    "f1_macro": lambda: skm.f1_score(MC_TRUE, MC_PRED, average="macro"),
    "f1_weighted": lambda: skm.f1_score(MC_TRUE, MC_PRED, average="weighted"),
    "precision": lambda: skm.precision_score(MC_TRUE, MC_PRED, average="macro"),
    "recall": lambda: skm.recall_score(MC_TRUE, MC_PRED, average="macro"),
    "roc_auc": lambda: skm.roc_auc_score(MC_TRUE, MC_PROBA, multi_class="ovr"),
    "log_loss": lambda: skm.log_loss(MC_TRUE, MC_PROBA),
    "average_precision": lambda: skm.average_precision_score(
        label_binarize(MC_TRUE, classes=[0, 1, 2]), MC_PROBA, average="macro"
    ),
}

REGRESSION_EXPECTED = {
    "r2": lambda: skm.r2_score(REG_TRUE, REG_PRED),
    "rmse": lambda: np.sqrt(skm.mean_squared_error(REG_TRUE, REG_PRED)),
    "mae": lambda: skm.mean_absolute_error(REG_TRUE, REG_PRED),
}


@pytest.mark.parametrize("name", sorted(BINARY_EXPECTED))
def test_binary_builtin_matches_sklearn(name: str) -> None:
    got = _score(name, "binary", BIN_TRUE, BIN_PRED, BIN_PROBA)
    assert type(got) is float
    assert got == pytest.approx(float(BINARY_EXPECTED[name]()))


@pytest.mark.parametrize("name", sorted(MULTICLASS_EXPECTED))
def test_multiclass_builtin_matches_sklearn(name: str) -> None:
    got = _score(name, "multiclass", MC_TRUE, MC_PRED, MC_PROBA)
    assert type(got) is float
    assert got == pytest.approx(float(MULTICLASS_EXPECTED[name]()))


@pytest.mark.parametrize("name", sorted(REGRESSION_EXPECTED))
def test_regression_builtin_matches_sklearn(name: str) -> None:
    got = _score(name, "regression", REG_TRUE, REG_PRED, None)
    assert type(got) is float
    assert got == pytest.approx(float(REGRESSION_EXPECTED[name]()))


def test_every_builtin_is_tested() -> None:
    tested = set(BINARY_EXPECTED) | set(REGRESSION_EXPECTED) | {"coverage_at_precision"}
    assert tested == set(BUILTIN_METRICS)
    assert set(MULTICLASS_EXPECTED) == set(BINARY_EXPECTED)


def test_builtin_directions_and_flags() -> None:
    minimize = {n for n, m in BUILTIN_METRICS.items() if m.direction == "minimize"}
    assert minimize == {"log_loss", "rmse", "mae"}
    proba = {n for n, m in BUILTIN_METRICS.items() if m.needs_proba}
    assert proba == {"roc_auc", "log_loss", "average_precision", "coverage_at_precision"}
    assert builtin_names() == sorted(BUILTIN_METRICS)
    assert all(isinstance(m, Metric) for m in BUILTIN_METRICS.values())


def test_binary_precision_recall_use_positive_class() -> None:
    y_true = np.array([0, 0, 0, 1])
    y_pred = np.array([0, 0, 1, 1])
    assert _score("precision", "binary", y_true, y_pred, None) == 0.5
    assert _score("recall", "binary", y_true, y_pred, None) == 1.0
    # zero_division=0: no positive predictions at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _score("precision", "binary", y_true, np.zeros(4, dtype=int), None) == 0.0


def test_roc_auc_fold_missing_a_class_is_nan() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn warning either
        got = _score("roc_auc", "binary", np.array([1, 1, 1]), np.array([1, 1, 0]), BIN_PROBA[:3])
        assert math.isnan(got)
        mc = _score("roc_auc", "multiclass", MC_TRUE[:2], MC_PRED[:2], MC_PROBA[:2])
        assert math.isnan(mc)  # class 2 missing


def test_multiclass_roc_auc_and_log_loss_use_all_labels() -> None:
    # Class 2 is never predicted with the highest probability, but every class is present.
    proba = np.array([[0.6, 0.3, 0.1], [0.3, 0.6, 0.1], [0.4, 0.4, 0.2], [0.2, 0.5, 0.3]])
    y_true = np.array([0, 1, 2, 2])
    expected = skm.roc_auc_score(y_true, proba, multi_class="ovr", labels=[0, 1, 2])
    assert _score("roc_auc", "multiclass", y_true, proba.argmax(1), proba) == pytest.approx(
        expected
    )
    # log_loss on a fold without class 2 still works: labels come from y_proba's width.
    fold = slice(0, 2)
    got = _score("log_loss", "multiclass", y_true[fold], proba.argmax(1)[fold], proba[fold])
    assert got == pytest.approx(skm.log_loss(y_true[fold], proba[fold], labels=[0, 1, 2]))


# ---------------------------------------------------------------------------------------
# Custom metrics
# ---------------------------------------------------------------------------------------


@pytest.mark.usefixtures("importable_tests")
def test_custom_metric_by_import_path() -> None:
    bound = resolve(MetricSpec(name="tests.test_metrics:count_errors"), "binary")
    assert bound.key == "count_errors"
    assert bound.direction == "minimize"  # greater_is_better = False
    assert bound.metric.needs_proba is False
    assert bound.score(BIN_TRUE, BIN_PRED, BIN_PROBA) == float(np.sum(BIN_TRUE != BIN_PRED))


@pytest.mark.usefixtures("importable_tests")
def test_custom_metric_default_direction_and_proba() -> None:
    bound = resolve(MetricSpec(name="tests.test_metrics:mean_true_proba"), "multiclass")
    assert bound.direction == "maximize"
    expected = float(np.mean(MC_PROBA[np.arange(len(MC_TRUE)), MC_TRUE]))
    assert bound.score(MC_TRUE, MC_PRED, MC_PROBA) == pytest.approx(expected)
    assert bound.score(MC_TRUE, MC_PRED, None) == -1.0
    # custom metrics are allowed for every task
    reg = resolve(MetricSpec(name="tests.test_metrics:count_errors"), "regression")
    assert reg.score(REG_TRUE, REG_PRED, None) == 5.0


@pytest.mark.usefixtures("importable_tests")
def test_custom_metric_in_score_all() -> None:
    specs = [
        MetricSpec(name="accuracy"),
        MetricSpec(name="tests.test_metrics:count_errors"),
        MetricSpec(name="coverage_at_precision", precision=0.85),
    ]
    result = score_all(resolve_all(specs, "binary"), BIN_TRUE, BIN_PRED, BIN_PROBA)
    assert list(result) == ["accuracy", "count_errors", "coverage_at_precision_0.85"]
    assert all(type(v) is float for v in result.values())
    assert result["accuracy"] == pytest.approx(skm.accuracy_score(BIN_TRUE, BIN_PRED))
    assert result["coverage_at_precision_0.85"] == coverage_at_precision(BIN_TRUE, BIN_PROBA, 0.85)


@pytest.mark.usefixtures("importable_tests")
@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        (
            "tests.no_such_module_xyz:f",
            ["tests.no_such_module_xyz:f", "cannot import", "ModuleNotFoundError"],
        ),
        ("tests.test_metrics:missing_fn", ["tests.test_metrics:missing_fn", "has no",
                                           "it holds"]),
        ("tests.test_metrics:NOT_CALLABLE", ["tests.test_metrics:NOT_CALLABLE", "not a function"]),
        ("tests.test_metrics:", ["package.module:name"]),
        (":count_errors", ["package.module:name"]),
    ],
)
def test_custom_metric_import_errors(path: str, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        resolve(MetricSpec(name=path), "binary")
    for fragment in fragments:
        assert fragment in str(info.value)
    with pytest.raises(SpecError):
        load_custom_metric(path)


@pytest.mark.usefixtures("importable_tests")
def test_custom_metric_returning_non_number() -> None:
    bound = resolve(MetricSpec(name="tests.test_metrics:not_a_number"), "binary")
    with pytest.raises(SpecError, match="returned 'high'.*must return a number"):
        bound.score(BIN_TRUE, BIN_PRED, BIN_PROBA)


# ---------------------------------------------------------------------------------------
# resolve errors
# ---------------------------------------------------------------------------------------


def test_unknown_metric_lists_builtins() -> None:
    with pytest.raises(SpecError) as info:
        resolve(MetricSpec(name="acuracy"), "binary")
    message = str(info.value)
    assert "unknown metric 'acuracy'" in message
    assert "did you mean 'accuracy'" in message
    for name in BUILTIN_METRICS:
        assert name in message


def test_metric_not_for_task_says_which_tasks() -> None:
    with pytest.raises(SpecError) as info:
        resolve(MetricSpec(name="rmse"), "binary")
    assert "'rmse'" in str(info.value) and "'binary'" in str(info.value)
    assert "supports regression" in str(info.value)
    with pytest.raises(SpecError, match="supports binary, multiclass"):
        resolve(MetricSpec(name="roc_auc"), "regression")
    with pytest.raises(SpecError, match="supports binary, multiclass"):
        resolve(MetricSpec(name="coverage_at_precision", precision=0.9), "regression")


def test_coverage_without_precision() -> None:
    with pytest.raises(SpecError) as info:
        resolve(MetricSpec(name="coverage_at_precision"), "binary")
    assert "needs a target precision" in str(info.value)
    assert "coverage_at_precision@0.9" in str(info.value)


@pytest.mark.usefixtures("importable_tests")
@pytest.mark.parametrize("name", ["accuracy", "tests.test_metrics:count_errors"])
def test_precision_given_to_metric_without_it(name: str) -> None:
    with pytest.raises(SpecError) as info:
        resolve(MetricSpec(name=name, precision=0.8), "binary")
    assert "takes no precision argument" in str(info.value)
    assert "precision=0.8" in str(info.value)
    assert name in str(info.value)


def test_unknown_task() -> None:
    with pytest.raises(SpecError, match="task must be one of"):
        resolve(MetricSpec(name="accuracy"), "ranking")
    with pytest.raises(SpecError, match="task must be one of"):
        default_metrics("ranking")


def test_needs_proba_without_proba() -> None:
    bound = resolve(MetricSpec(name="log_loss"), "binary")
    with pytest.raises(SpecError, match="needs class probabilities"):
        bound.score(BIN_TRUE, BIN_PRED, None)


def test_duplicate_keys() -> None:
    specs = [MetricSpec(name="accuracy"), MetricSpec(name="accuracy")]
    with pytest.raises(SpecError, match="listed twice"):
        resolve_all(specs, "binary")


# ---------------------------------------------------------------------------------------
# Defaults and objective
# ---------------------------------------------------------------------------------------


def test_default_metrics() -> None:
    names = {task: [m.name for m in default_metrics(task)] for task in ("binary", "multiclass")}
    assert names["binary"] == ["roc_auc", "accuracy", "f1", "log_loss", "average_precision"]
    assert names["multiclass"] == ["accuracy", "f1_macro", "balanced_accuracy", "log_loss"]
    assert [m.name for m in default_metrics("regression")] == ["rmse", "mae", "r2"]
    for task in ("binary", "multiclass", "regression"):
        assert len(resolve_all(default_metrics(task), task)) == len(default_metrics(task))


def test_default_objective() -> None:
    assert default_objective("binary") == MetricSpec(name="roc_auc")
    assert default_objective("multiclass") == MetricSpec(name="f1_macro")
    assert default_objective("regression") == MetricSpec(name="rmse")


def test_default_metrics_score_every_task() -> None:
    cases = {
        "binary": (BIN_TRUE, BIN_PRED, BIN_PROBA),
        "multiclass": (MC_TRUE, MC_PRED, MC_PROBA),
        "regression": (REG_TRUE, REG_PRED, None),
    }
    for task, (y_true, y_pred, y_proba) in cases.items():
        result = score_all(resolve_all(default_metrics(task), task), y_true, y_pred, y_proba)
        assert list(result) == [m.key for m in default_metrics(task)]
        assert all(type(v) is float and math.isfinite(v) for v in result.values())


def objective_of(task: str, objective: object = None) -> Objective:
    """The objective :func:`dripml.core.objective.resolve_objective` (the one resolver)
    gives a minimal spec of ``task`` with ``metrics.objective = objective``."""
    spec = {"name": "t", "task": task, "data": {"train": "t.csv", "label": "y"},
            "algorithms": ["lightgbm"]}
    if objective is not None:
        spec["metrics"] = {"objective": objective}
    return resolve_objective(load_spec(spec))


def test_resolve_objective() -> None:
    default = objective_of("regression")
    assert default.metric == MetricSpec(name="rmse") and default.direction == "minimize"
    assert default.key == "validation_rmse"
    assert objective_of("binary", "accuracy").direction == "maximize"
    flipped = objective_of("binary", {"name": "accuracy", "direction": "minimize"})
    assert flipped.direction == "minimize"
    assert BUILTIN_METRICS["accuracy"].direction == "maximize"  # the metric keeps its own
    chosen = objective_of("multiclass", "coverage_at_precision@0.9")
    assert chosen.key == "validation_coverage_at_precision_0.9"
    assert resolve(chosen.metric, "multiclass").kwargs == {"precision": 0.9}
    assert objective_of("regression", {"name": "mae"}).key == "validation_mae"
    with pytest.raises(SpecError, match="does not apply to task"):
        objective_of("regression", "accuracy")
