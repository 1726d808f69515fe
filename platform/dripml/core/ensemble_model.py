"""The estimator of an ensemble model: refit members combined by learned weights or a
meta-model.

An ensemble is a plain :class:`~dripml.core.model.TrainedModel` whose recipe's estimator is
an :class:`EnsembleEstimator`: the encoder encodes a request once and every member (a
:class:`~dripml.core.model.FittedRecipe`, its own preprocessor included) predicts from the
encoded rows, so serving, pickling, MLflow and ``drip serve`` treat it like any other model.
It lives in the core because serving unpickles it (:mod:`dripml.refine.ensembles` builds it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from dripml.core.model import FittedRecipe
from dripml.core.spec import Task

EnsembleKind = Literal["greedy", "stacked"]
PROBA_CLIP = 1e-6
"""Probabilities are clipped to [PROBA_CLIP, 1 - PROBA_CLIP] before a stacked meta-model
takes their logarithm."""


def meta_features(outputs: Sequence[np.ndarray], task: Task) -> np.ndarray:
    """What a stacked meta-model reads: the members' outputs side by side, shape (n, m).

    ``outputs``: one array per member, probabilities (n, K) for classification (then the
    log-odds of class 1 for binary, the log-probabilities of every class for multiclass) or
    values (n,) for regression (as they are).
    """
    if task == "regression":
        return np.column_stack([np.asarray(o, dtype=np.float64).ravel() for o in outputs])
    columns = []
    for proba in outputs:
        p = np.clip(np.asarray(proba, dtype=np.float64), PROBA_CLIP, 1 - PROBA_CLIP)
        if task == "binary":
            columns.append(np.log(p[:, 1] / p[:, 0])[:, None])
        else:
            columns.append(np.log(p))
    return np.hstack(columns)


class EnsembleEstimator:
    """Members' predictions combined: a weighted mean (``greedy``) or a meta-model on them
    (``stacked``). It takes the encoder's matrix, as a built-in estimator does.

    Args:
        members: the members' fitted recipes (each on the encoder's matrix).
        weights: one per member (greedy: they sum to 1; stacked: 1/m each, informative
            only).
        task: ``binary``, ``multiclass`` or ``regression``.
        n_classes: K (0 for regression).
        kind: ``greedy`` or ``stacked``.
        meta: the stacked meta-model (``predict_proba`` on :func:`meta_features`, or
            ``predict`` for regression); None for greedy.
        algorithms: the members' algorithm keys, in ``members`` order (model cards, tags).
        requirements: pip distributions the members need besides the scikit-learn stack
            (:func:`dripml.productionize.tracking.pip_requirements` reads them).
    """

    tasks = ("binary", "multiclass", "regression")

    def __init__(self, members: Sequence[FittedRecipe], weights: Sequence[float], task: Task,
                 n_classes: int, kind: EnsembleKind = "greedy", meta: Any = None,
                 algorithms: Sequence[str] = (), requirements: Sequence[str] = ()) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError(f"an ensemble needs one weight per member, got {len(members)} "
                             f"member(s) and {len(weights)} weight(s)")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.task = task
        self.n_classes = n_classes
        self.kind = kind
        self.meta = meta
        self.algorithms = tuple(algorithms)
        self.requirements = tuple(requirements)

    def fit(self, X: Any, y: Any) -> EnsembleEstimator:
        """Members are refit one by one before they join: refitting an ensemble is not
        supported (raises TypeError)."""
        raise TypeError("an ensemble is built from refit members "
                        "(dripml.refine.ensembles.build), not fitted")

    def member_outputs(self, X: Any) -> list[np.ndarray]:
        """Each member's probabilities (n, K), or values (n,) for regression."""
        outputs = []
        for member in self.members:
            y_pred, proba = member.predict(X)
            outputs.append(y_pred if self.task == "regression" else proba)
        return outputs

    def combine(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """The ensemble's probabilities (n, K) or values (n,) from :meth:`member_outputs`."""
        if self.meta is None:
            return np.tensordot(self.weights, np.stack(outputs), axes=1)
        features = meta_features(outputs, self.task)
        if self.task == "regression":
            return np.asarray(self.meta.predict(features), dtype=np.float64).ravel()
        proba = np.asarray(self.meta.predict_proba(features), dtype=np.float64)
        full = np.zeros((proba.shape[0], self.n_classes))
        full[:, np.asarray(self.meta.classes_, dtype=np.int64)] = proba
        return full

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, K), rows summing to 1."""
        return self.combine(self.member_outputs(X))

    def predict(self, X: Any) -> np.ndarray:
        """Values (n,) for regression, else class codes (n,)."""
        combined = self.combine(self.member_outputs(X))
        return combined if self.task == "regression" else combined.argmax(axis=1)
