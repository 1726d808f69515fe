"""Metrics: the built-in registry, custom metrics by import path, and scoring.

Every metric is scored from three arrays, whatever the task:

* classification (``task`` ``"binary"`` or ``"multiclass"``): ``y_true`` and ``y_pred`` are
  integer class codes ``0..K-1`` of shape ``(n,)``; ``y_proba`` is a float array of shape
  ``(n, K)`` whose column ``j`` is the probability of class ``j`` (binary: ``K == 2`` and the
  positive class is code ``1``), or None when the model gives no probabilities;
* regression (``task`` ``"regression"``): ``y_true`` and ``y_pred`` are floats of shape
  ``(n,)`` in the label's units; ``y_proba`` is None.

A :class:`~dripml.core.spec.MetricSpec` names a metric: a built-in (see :data:`BUILTIN_METRICS`,
computed with scikit-learn) or custom code as ``package.module:function``. :func:`resolve`
checks it against the task once, before anything runs, and returns a :class:`BoundMetric`
whose :meth:`BoundMetric.score` computes the value; :func:`resolve_all` and :func:`score_all`
do the same for a list. :func:`default_metrics` and :func:`default_objective` give what a
spec that names no metrics gets. The objective and its direction are resolved in one place,
:func:`dripml.core.objective.resolve_objective`.

Example::

    bound = resolve_all([MetricSpec(name="accuracy"), MetricSpec(name="log_loss")], "binary")
    score_all(bound, y_true, y_pred, y_proba)  # {"accuracy": 0.9, "log_loss": 0.27}
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn import metrics as skm

from dripml.core import imports
from dripml.core.spec import MetricSpec
from dripml.errors import SpecError

__all__ = [
    "BUILTIN_METRICS",
    "CLASSIFICATION",
    "TASKS",
    "BoundMetric",
    "Direction",
    "Metric",
    "MetricFn",
    "builtin_names",
    "coverage_at_precision",
    "default_metrics",
    "default_objective",
    "load_custom_metric",
    "resolve",
    "resolve_all",
    "score_all",
]

Direction = Literal["maximize", "minimize"]

TASKS: frozenset[str] = frozenset({"binary", "multiclass", "regression"})
CLASSIFICATION: frozenset[str] = frozenset({"binary", "multiclass"})
REGRESSION: frozenset[str] = frozenset({"regression"})


class MetricFn(Protocol):
    """How :class:`Metric` computes: ``fn(y_true, y_pred, y_proba, task, **kwargs) -> float``.

    ``kwargs`` are the metric's arguments from the spec (only ``precision`` today).
    """

    def __call__(
        self,
        y_true: NDArray[Any],
        y_pred: NDArray[Any],
        y_proba: NDArray[np.floating[Any]] | None,
        task: str,
        /,
        **kwargs: Any,
    ) -> float: ...


@dataclass(frozen=True)
class Metric:
    """One metric: how it is computed and which way is better.

    Attributes:
        name: the built-in name, or ``package.module:function`` for a custom metric.
        direction: ``"maximize"`` when larger values are better, else ``"minimize"``.
        tasks: the tasks it is defined for (subset of ``binary``, ``multiclass``,
            ``regression``).
        needs_proba: True when it reads ``y_proba`` (class probabilities).
        fn: computes the value, see :class:`MetricFn`.
        params: the :class:`~dripml.core.spec.MetricSpec` arguments it requires (for example
            ``("precision",)``); it accepts no others.
        description: one line for listings and docs.
    """

    name: str
    direction: Direction
    tasks: frozenset[str]
    needs_proba: bool
    fn: MetricFn
    params: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class BoundMetric:
    """A metric resolved for one task with its arguments, ready to score.

    Attributes:
        key: the name the value is logged under (:attr:`MetricSpec.key`), e.g. ``accuracy``
            or ``coverage_at_precision_0.85``.
        metric: the :class:`Metric`.
        kwargs: the metric's arguments (``{"precision": 0.85}`` or empty).
        direction: which way is better (the metric's own unless an objective overrides it).
        task: ``binary``, ``multiclass`` or ``regression``.
    """

    key: str
    metric: Metric
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    direction: Direction = "maximize"
    task: str = "binary"

    def score(self, y_true: ArrayLike, y_pred: ArrayLike, y_proba: ArrayLike | None) -> float:
        """The metric's value as a plain Python float.

        Args:
            y_true: true labels, shape ``(n,)`` (class codes, or floats for regression).
            y_pred: predictions, shape ``(n,)``, same encoding as ``y_true``.
            y_proba: class probabilities, shape ``(n, K)``; None for regression or a model
                without probabilities.

        Returns:
            The value; ``nan`` where the metric is undefined on these rows (for example
            ``roc_auc`` on a fold that lacks a class).

        Raises:
            SpecError: the metric needs probabilities and ``y_proba`` is None, or a custom
                metric returned something that is not a number.
            ValueError: the arrays do not fit each other (raised by scikit-learn).
        """
        if self.metric.needs_proba and y_proba is None:
            raise SpecError(
                f"metric {self.key!r} needs class probabilities but got none (y_proba is None); "
                "use an algorithm with predict_proba or drop the metric"
            )
        proba = None if y_proba is None else np.asarray(y_proba, dtype=float)
        value = self.metric.fn(
            np.asarray(y_true), np.asarray(y_pred), proba, self.task, **self.kwargs
        )
        try:
            return float(value)
        except (TypeError, ValueError):
            raise SpecError(
                f"metric {self.metric.name!r} returned {value!r} "
                f"({type(value).__name__}); a metric must return a number"
            ) from None


# ---------------------------------------------------------------------------------------
# coverage_at_precision
# ---------------------------------------------------------------------------------------


def coverage_at_precision(y_true: ArrayLike, y_proba: ArrayLike, precision: float) -> float:
    """The share of rows the model can decide while keeping ``precision``.

    Rows are ranked by the model's confidence, the largest class probability of the row;
    the predicted label is that class (the argmax). The coverage is the largest share ``k/n``
    of rows, taken from the most confident down, whose predictions are correct at a rate
    ``>= precision``. Rows with equal confidence cannot be split: a cut lies only between
    two distinct confidence values (or after the last row).

    Worked example (binary, ``precision=0.75``)::

        y_proba  = [[.1, .9], [.2, .8], [.7, .3], [.4, .6]]   # confidence .9 .8 .7 .6
        y_true   = [1,        1,        1,        0]          # predicted  1  1  0  1
        correct  = [yes,      yes,      no,       no]
        top k=1: 1/1  k=2: 2/2  k=3: 2/3 < .75  k=4: 2/4 < .75  ->  coverage 2/4 = 0.5

    Args:
        y_true: true class codes ``0..K-1``, shape ``(n,)``.
        y_proba: class probabilities, shape ``(n, K)``.
        precision: the target rate of correct predictions, in ``(0, 1]``.

    Returns:
        A share of rows in ``[0, 1]``; 0.0 when no cut reaches ``precision`` (or ``n == 0``).

    Raises:
        ValueError: ``precision`` outside ``(0, 1]``, ``y_proba`` not 2-D, or the lengths of
            ``y_true`` and ``y_proba`` differ.
    """
    if not (isinstance(precision, int | float) and 0 < precision <= 1):
        raise ValueError(f"precision must be in (0, 1], got {precision!r}")
    labels = np.asarray(y_true).reshape(-1)
    proba = np.asarray(y_proba, dtype=float)
    if proba.ndim != 2:
        raise ValueError(f"y_proba must have shape (n, K), got shape {proba.shape}")
    if proba.shape[0] != labels.shape[0]:
        raise ValueError(f"y_true has {labels.shape[0]} rows but y_proba has {proba.shape[0]}")
    n = labels.shape[0]
    if n == 0:
        return 0.0
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == labels
    order = np.argsort(-confidence, kind="stable")
    confidence, correct = confidence[order], correct[order]
    taken = np.arange(1, n + 1)
    rate = np.cumsum(correct) / taken
    # A cut after row k (1-based) is allowed when row k+1 is less confident, or k == n.
    cut_allowed = np.append(confidence[:-1] != confidence[1:], True)
    ok = np.flatnonzero(cut_allowed & (rate >= precision))
    return float(taken[ok[-1]] / n) if ok.size else 0.0


# ---------------------------------------------------------------------------------------
# Built-ins (all but coverage_at_precision are scikit-learn's functions)
# ---------------------------------------------------------------------------------------


def _average(task: str) -> str:
    return "binary" if task == "binary" else "macro"


def _accuracy(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.accuracy_score(y_true, y_pred))


def _balanced_accuracy(
    y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str
) -> float:
    return float(skm.balanced_accuracy_score(y_true, y_pred))


def _f1(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.f1_score(y_true, y_pred, average=_average(task), zero_division=0))


def _f1_macro(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))


def _f1_weighted(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.f1_score(y_true, y_pred, average="weighted", zero_division=0))


def _precision(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.precision_score(y_true, y_pred, average=_average(task), zero_division=0))


def _recall(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.recall_score(y_true, y_pred, average=_average(task), zero_division=0))


def _roc_auc(
    y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: NDArray[np.floating[Any]], task: str
) -> float:
    n_classes = y_proba.shape[1]
    if not np.isin(np.arange(n_classes), y_true).all():
        return math.nan  # a class is missing from these rows: ROC AUC is undefined
    if task == "binary":
        return float(skm.roc_auc_score(y_true, y_proba[:, 1]))
    return float(
        skm.roc_auc_score(
            y_true, y_proba, multi_class="ovr", average="macro", labels=list(range(n_classes))
        )
    )


def _log_loss(
    y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: NDArray[np.floating[Any]], task: str
) -> float:
    return float(skm.log_loss(y_true, y_proba, labels=list(range(y_proba.shape[1]))))


def _average_precision(
    y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: NDArray[np.floating[Any]], task: str
) -> float:
    # A class absent from y_true has no positives: scikit-learn warns and scores it 0.
    if task == "binary":
        return float(skm.average_precision_score(y_true, y_proba[:, 1]))
    n_classes = y_proba.shape[1]
    indicator = (y_true.reshape(-1, 1) == np.arange(n_classes)).astype(int)
    return float(skm.average_precision_score(indicator, y_proba, average="macro"))


def _coverage_at_precision(
    y_true: NDArray[Any],
    y_pred: NDArray[Any],
    y_proba: NDArray[np.floating[Any]],
    task: str,
    *,
    precision: float,
) -> float:
    return coverage_at_precision(y_true, y_proba, precision)


def _r2(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.r2_score(y_true, y_pred))


def _rmse(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.root_mean_squared_error(y_true, y_pred))


def _mae(y_true: NDArray[Any], y_pred: NDArray[Any], y_proba: Any, task: str) -> float:
    return float(skm.mean_absolute_error(y_true, y_pred))


def _builtin(
    name: str,
    direction: Direction,
    tasks: frozenset[str],
    needs_proba: bool,
    fn: Callable[..., float],
    description: str,
    params: tuple[str, ...] = (),
) -> Metric:
    return Metric(name, direction, tasks, needs_proba, fn, params, description)


_BUILTINS: tuple[Metric, ...] = (
    _builtin("accuracy", "maximize", CLASSIFICATION, False, _accuracy, "Share of rows right."),
    _builtin(
        "balanced_accuracy",
        "maximize",
        CLASSIFICATION,
        False,
        _balanced_accuracy,
        "Mean recall over classes.",
    ),
    _builtin(
        "f1", "maximize", CLASSIFICATION, False, _f1, "F1; binary: class 1, multiclass: macro."
    ),
    _builtin("f1_macro", "maximize", CLASSIFICATION, False, _f1_macro, "Unweighted mean F1."),
    _builtin(
        "f1_weighted", "maximize", CLASSIFICATION, False, _f1_weighted, "Support-weighted F1."
    ),
    _builtin(
        "precision",
        "maximize",
        CLASSIFICATION,
        False,
        _precision,
        "Precision; binary: class 1, multiclass: macro; 0 where undefined.",
    ),
    _builtin(
        "recall",
        "maximize",
        CLASSIFICATION,
        False,
        _recall,
        "Recall; binary: class 1, multiclass: macro; 0 where undefined.",
    ),
    _builtin(
        "roc_auc",
        "maximize",
        CLASSIFICATION,
        True,
        _roc_auc,
        "ROC AUC; multiclass: one-vs-rest macro; nan when a class is missing.",
    ),
    _builtin("log_loss", "minimize", CLASSIFICATION, True, _log_loss, "Cross-entropy, in nats."),
    _builtin(
        "average_precision",
        "maximize",
        CLASSIFICATION,
        True,
        _average_precision,
        "Area under precision-recall; multiclass: macro over one-hot.",
    ),
    _builtin(
        "coverage_at_precision",
        "maximize",
        CLASSIFICATION,
        True,
        _coverage_at_precision,
        "Share of most confident rows decided at the target precision.",
        params=("precision",),
    ),
    _builtin("r2", "maximize", REGRESSION, False, _r2, "Coefficient of determination."),
    _builtin("rmse", "minimize", REGRESSION, False, _rmse, "Root mean squared error."),
    _builtin("mae", "minimize", REGRESSION, False, _mae, "Mean absolute error."),
)

BUILTIN_METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in _BUILTINS})
"""Every built-in metric by name (read-only)."""


def builtin_names() -> list[str]:
    """The built-in metric names, sorted."""
    return sorted(BUILTIN_METRICS)


# ---------------------------------------------------------------------------------------
# Custom metrics
# ---------------------------------------------------------------------------------------


def load_custom_metric(path: str) -> Metric:
    """Import a custom metric given as ``package.module:function``.

    The function is called as ``function(y_true, y_pred, y_proba)`` (arrays as described in
    the module docstring) and must return a number. Its direction is ``maximize`` unless it
    has an attribute ``greater_is_better = False``. It is allowed for every task; it gets
    ``y_proba`` when the model has probabilities and None otherwise.

    Raises:
        SpecError: ``path`` is not ``module:function``, the module cannot be imported, it has
            no such attribute, or the attribute is not callable; the message names ``path``.
    """
    obj = imports.import_object(path, field=f"custom metric {path!r}")
    if not callable(obj):
        raise SpecError(
            f"custom metric {path!r} is a {type(obj).__name__}, not a function"
        )
    greater_is_better = getattr(obj, "greater_is_better", True)
    return Metric(
        name=path,
        direction="maximize" if greater_is_better else "minimize",
        tasks=TASKS,
        needs_proba=False,
        fn=_CustomCall(obj),
        description=(getattr(obj, "__doc__", None) or "").strip().split("\n")[0],
    )


@dataclass(frozen=True)
class _CustomCall:
    """Adapts ``function(y_true, y_pred, y_proba)`` to :class:`MetricFn`."""

    function: Callable[..., Any]

    def __call__(
        self,
        y_true: NDArray[Any],
        y_pred: NDArray[Any],
        y_proba: NDArray[np.floating[Any]] | None,
        task: str,
        /,
        **kwargs: Any,
    ) -> float:
        return self.function(y_true, y_pred, y_proba)


# ---------------------------------------------------------------------------------------
# Resolving specs
# ---------------------------------------------------------------------------------------


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise SpecError(f"task must be one of {sorted(TASKS)}, got {task!r}")


def resolve(metric: MetricSpec, task: str) -> BoundMetric:
    """Check a metric against the task and bind its arguments.

    Args:
        metric: the metric's spec (built-in name or ``package.module:function``).
        task: ``binary``, ``multiclass`` or ``regression``.

    Returns:
        A :class:`BoundMetric` keyed by ``metric.key`` with the metric's own direction.

    Raises:
        SpecError: unknown task; unknown built-in name (the message lists the valid names);
            a custom metric that cannot be imported; a metric not defined for ``task`` (the
            message says which tasks it supports); ``coverage_at_precision`` without
            ``precision``; ``precision`` given to a metric that does not take it.
    """
    _check_task(task)
    if ":" in metric.name:
        found = load_custom_metric(metric.name)
    else:
        found_or_none = BUILTIN_METRICS.get(metric.name)
        if found_or_none is None:
            close = difflib.get_close_matches(metric.name, list(BUILTIN_METRICS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(
                f"unknown metric {metric.name!r}{hint}. Built-in metrics: "
                f"{', '.join(builtin_names())}; or give custom code as "
                "'package.module:function'"
            )
        found = found_or_none
    if task not in found.tasks:
        raise SpecError(
            f"metric {metric.name!r} does not apply to task {task!r}; it supports "
            f"{', '.join(sorted(found.tasks))}"
        )
    kwargs: dict[str, Any] = {}
    if "precision" in found.params:
        if metric.precision is None:
            raise SpecError(
                f"metric {metric.name!r} needs a target precision, for example "
                f"{{name: {metric.name}, precision: 0.9}} or '{metric.name}@0.9'"
            )
        kwargs["precision"] = metric.precision
    elif metric.precision is not None:
        raise SpecError(
            f"metric {metric.name!r} takes no precision argument (got precision="
            f"{metric.precision:g}); only coverage_at_precision does"
        )
    return BoundMetric(
        key=metric.key, metric=found, kwargs=kwargs, direction=found.direction, task=task
    )


def resolve_all(metrics: Sequence[MetricSpec], task: str) -> list[BoundMetric]:
    """:func:`resolve` each metric, in order.

    Raises:
        SpecError: as :func:`resolve`, for the first bad metric; or two metrics share a key.
    """
    bound = [resolve(m, task) for m in metrics]
    keys = [b.key for b in bound]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise SpecError(f"metrics {duplicates} are listed twice")
    return bound


def score_all(
    bound: Sequence[BoundMetric],
    y_true: ArrayLike,
    y_pred: ArrayLike,
    y_proba: ArrayLike | None,
) -> dict[str, float]:
    """Score every metric on the same rows.

    Args:
        bound: metrics from :func:`resolve_all`.
        y_true, y_pred, y_proba: as :meth:`BoundMetric.score`.

    Returns:
        ``{key: value}`` in the order of ``bound``, values plain Python floats (maybe nan).

    Raises:
        SpecError, ValueError: as :meth:`BoundMetric.score`.
    """
    return {b.key: b.score(y_true, y_pred, y_proba) for b in bound}


_DEFAULT_METRICS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "binary": ("roc_auc", "accuracy", "f1", "log_loss", "average_precision"),
        "multiclass": ("accuracy", "f1_macro", "balanced_accuracy", "log_loss"),
        "regression": ("rmse", "mae", "r2"),
    }
)
_DEFAULT_OBJECTIVE: Mapping[str, str] = MappingProxyType(
    {"binary": "roc_auc", "multiclass": "f1_macro", "regression": "rmse"}
)


def default_metrics(task: str) -> list[MetricSpec]:
    """The metrics logged when the spec names none.

    binary: roc_auc, accuracy, f1, log_loss, average_precision; multiclass: accuracy,
    f1_macro, balanced_accuracy, log_loss; regression: rmse, mae, r2.

    Raises:
        SpecError: unknown task.
    """
    _check_task(task)
    return [MetricSpec(name=name) for name in _DEFAULT_METRICS[task]]


def default_objective(task: str) -> MetricSpec:
    """The objective when the spec names none: binary roc_auc, multiclass f1_macro,
    regression rmse.

    Raises:
        SpecError: unknown task.
    """
    _check_task(task)
    return MetricSpec(name=_DEFAULT_OBJECTIVE[task])
