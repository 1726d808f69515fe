"""A row path for the linear family: few-row predictions at what the model costs.

Why a row of a linear model over a wide one-hot was slow (13.5 ms on a 40-column data set,
15x a GBM): scikit-learn's ``ColumnTransformer.transform`` runs each block's pipeline, and
``OneHotEncoder.transform`` validates and encodes **each column on its own**
(``check_array`` and ``_check_unknown`` per column, each with its input-type detection), so
one row pays about 0.3 ms per categorical column before the model's dot product, which takes
microseconds; then the blocks are stacked into a sparse matrix. In a 1,000-row batch those
costs are shared by the rows; one request carries them all.

:func:`compile_rows` reads the fitted preprocessor once and returns a function doing the same
arithmetic in NumPy on dense rows: median imputation and standardisation as
``SimpleImputer``/``StandardScaler`` compute them, one-hot as a scatter of ones (codes outside
the known levels, and missing, to all zeros as ``handle_unknown="ignore"`` does); a step it
does not know runs as fitted; the target encoding of high-cardinality columns is a lookup
of each code's encoding (the target mean for unseen codes). The
estimator's output (LogisticRegression's ``predict_proba``, Ridge's ``predict``) is computed
as scikit-learn computes it, without its per-call input validation (~0.1 ms a call).
Results equal the batch path's up to float summation order (dense instead of sparse dot
products, ~1e-15). :class:`~dripml.core.model.FittedRecipe` takes this path for at most
:data:`dripml.core.model.ROW_PATH_MAX_ROWS` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import sparse
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    StandardScaler,
    TargetEncoder,
)

from dripml.algorithms.preprocessing import as_float

Step = Callable[[np.ndarray], np.ndarray]


def _dense(X: Any) -> np.ndarray:
    return np.asarray(X.toarray() if sparse.issparse(X) else X, dtype=np.float64)


def _imputer(step: SimpleImputer) -> Step | None:
    stats = np.asarray(step.statistics_, dtype=np.float64)
    if (step.add_indicator or not np.all(np.isfinite(stats))
            or not (isinstance(step.missing_values, float) and np.isnan(step.missing_values))):
        return None  # an indicator, a dropped all-missing column, another missing marker

    def impute(X: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(X), stats, X)

    return impute


def _scaler(step: StandardScaler) -> Step:
    mean, scale = step.mean_, step.scale_

    def standardise(X: np.ndarray) -> np.ndarray:
        X = X.copy()
        if mean is not None:
            X -= mean
        if scale is not None:
            X /= scale
        return X

    return standardise


def _one_hot(step: OneHotEncoder) -> Step | None:
    categories = step.categories_
    ordinal = all(np.array_equal(c, np.arange(len(c), dtype=c.dtype)) for c in categories)
    if (step.drop_idx_ is not None or step.handle_unknown != "ignore" or not ordinal
            or getattr(step, "_infrequent_enabled", False)):
        return None
    sizes = np.array([len(c) for c in categories])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    width = int(sizes.sum())

    def encode(X: np.ndarray) -> np.ndarray:
        out = np.zeros((X.shape[0], width))
        codes = np.nan_to_num(X, nan=-1.0)
        known = (codes >= 0) & (codes < sizes) & (codes == np.floor(codes))
        rows, cols = np.nonzero(known)
        out[rows, offsets[cols] + codes[rows, cols].astype(np.int64)] = 1.0
        return out

    return encode


def _target(step: TargetEncoder) -> Step | None:
    """``TargetEncoder.transform`` (not its cross-fitted ``fit_transform``): each code's
    encoding, missing as the level it was in the fit (if it was), unseen -> the target mean;
    multiclass: one column per (feature, class), feature-major."""
    categories = step.categories_
    if not all(np.issubdtype(np.asarray(c).dtype, np.floating) for c in categories):
        return None
    encodings = step.encodings_
    per_feature = len(encodings) // len(categories)
    means = np.broadcast_to(np.atleast_1d(step.target_mean_), (per_feature,))
    lookups = []
    for c in categories:
        c = np.asarray(c, dtype=np.float64)
        missing = np.flatnonzero(np.isnan(c))
        lookups.append((c[~np.isnan(c)], int(missing[0]) if len(missing) else -1))

    def encode(X: np.ndarray) -> np.ndarray:
        out = np.empty((X.shape[0], len(encodings)))
        for j, (known, missing) in enumerate(lookups):
            x = X[:, j]
            index = np.minimum(np.searchsorted(known, x), max(len(known) - 1, 0))
            found = (known[index] == x) if len(known) else np.zeros(len(x), dtype=bool)
            nan = np.isnan(x)
            if missing >= 0:
                index = np.where(nan, missing, index)
                found |= nan
            for k in range(per_feature):
                e = j * per_feature + k
                out[:, e] = np.where(found, encodings[e][index], means[k])
        return out

    return encode


def _step(step: Any) -> Step:
    if isinstance(step, FunctionTransformer) and step.func is as_float:
        return as_float
    fast = (_imputer(step) if isinstance(step, SimpleImputer)
            else _scaler(step) if isinstance(step, StandardScaler)
            else _one_hot(step) if isinstance(step, OneHotEncoder)
            else _target(step) if isinstance(step, TargetEncoder) else None)
    if fast is not None:
        return fast
    return lambda X: _dense(step.transform(X))  # as fitted (target encoding...)


def _block(transformer: Any) -> Step:
    steps = ([_step(s) for _, s in transformer.steps] if isinstance(transformer, Pipeline)
             else [_step(transformer)])

    def run(X: np.ndarray) -> np.ndarray:
        for step in steps:
            X = step(X)
        return X

    return run


def _linear(estimator: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """What a fitted LogisticRegression's ``predict_proba`` or a Ridge's ``predict`` returns,
    computed as they compute it (decision = X @ coef.T + intercept; expit for two classes,
    softmax for more) without their per-call input validation; None for other estimators."""
    from scipy.special import expit
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.utils.extmath import softmax

    kind = type(estimator)
    if kind not in (LogisticRegression, Ridge) or not hasattr(estimator, "coef_"):
        return None
    coef, intercept = np.asarray(estimator.coef_).T, estimator.intercept_

    def decision(X: np.ndarray) -> np.ndarray:
        scores = X @ coef + intercept
        return scores.reshape(-1) if scores.ndim == 2 and scores.shape[1] == 1 else scores

    if kind is Ridge:
        return decision
    if len(estimator.classes_) <= 2:
        return lambda X: (lambda p: np.stack([1 - p, p], axis=1))(expit(decision(X)))
    return lambda X: softmax(decision(X), copy=False)


def compile_rows(preprocessor: Any, estimator: Any) -> Callable[[Any], np.ndarray] | None:
    """One function of a few encoded rows (shape (n, n_columns), float) returning what
    ``estimator.predict_proba(preprocessor.transform(X))`` (``predict`` for Ridge) returns,
    in NumPy on dense rows; None when the fitted linear-family ``ColumnTransformer`` or the
    estimator is not one it reproduces (text blocks, a remainder kept, another class): the
    caller then keeps scikit-learn's path."""
    model = _linear(estimator)
    if model is None:
        return None
    if not isinstance(preprocessor, ColumnTransformer) or not hasattr(preprocessor,
                                                                      "transformers_"):
        return None
    blocks: list[tuple[Step, Any]] = []
    for name, transformer, columns in preprocessor.transformers_:
        if name == "remainder":
            if transformer != "drop" and len(columns):
                return None
            continue
        if transformer == "drop":
            continue
        if not isinstance(columns, list | tuple | np.ndarray) or not isinstance(
                transformer, Pipeline | StandardScaler | OneHotEncoder | SimpleImputer):
            return None  # a text column (a scalar position) or an unknown transformer
        blocks.append((_block(transformer), list(columns)))

    def predict(X: Any) -> np.ndarray:
        rows = np.asarray(X, dtype=np.float64)
        return model(np.hstack([block(rows[:, columns]) for block, columns in blocks]))

    return predict
