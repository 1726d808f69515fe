"""Preprocessing over the encoded matrix, shared by the algorithm families.

The encoder (:mod:`dripml.core.features`) gives numbers (datetime parts included) and category
codes as floats, and text as strings (the matrix is ``object`` when text is present). These
blocks turn positions of that matrix into what an estimator reads.

Categorical columns are encoded by family and by their number of levels
(:class:`CategoricalEncoding`):

- linear models, the MLP and the text models: one-hot up to ``ONE_HOT_MAX_LEVELS`` levels;
- random_forest: codes read as numbers, up to the same bound;
- lightgbm, xgboost, hist_gradient_boosting: native categoricals up to ``NATIVE_MAX_LEVELS``;
- every family, above its bound: target encoding.

With equal bounds every tree model reads the same input, which a search fits once per fold.

Target encoding is scikit-learn's :class:`~sklearn.preprocessing.TargetEncoder`, whose
``fit_transform`` cross-fits (each row is encoded by means learnt on the other folds), and
the preprocessor is part of the recipe, fitted on each fold's training rows: no label leaks
into the rows it encodes. It needs ``y``, so every caller fits a preprocessor with
``fit_transform(X, y)``.

A fitted model pickles :func:`as_float` and :func:`_text_only` by reference (inside
``FunctionTransformer``), so their module path and names are part of the model format:
``dripml.algorithms.preprocessing.as_float`` and ``dripml.algorithms.preprocessing._text_only``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    OneHotEncoder,
    StandardScaler,
    TargetEncoder,
)

from dripml.core.features import ColumnLayout
from dripml.core.spec import Task
from dripml.errors import SpecError

LINEAR_INPUT = ("linear",)
"""Key of the linear preprocessing (standardised numbers, one-hot and target-encoded
categories) shared by the linear models and the MLP; the same for every recipe of a search,
since the layout decides which columns are target encoded."""
TREE_INPUT = ("tree",)
"""Key of the tree models' input when no column is target encoded: the encoded tabular
columns as floats. A tree input that target encodes some columns has the key
``(*TREE_INPUT, "target", positions)``."""

ONE_HOT_MAX_LEVELS = 32
"""Most levels a categorical column is one-hot encoded with (linear) or given as codes
(random_forest); larger ones are target encoded."""

NATIVE_MAX_LEVELS = 32
"""Most levels LightGBM, XGBoost and HistGradientBoosting take as a native categorical;
larger columns are target encoded. All three accept thousands of levels (HistGradientBoosting
up to ``max_bins``), but they split them poorly: on flights (5-fold ROC AUC, 300 trees)
native tailnum (3,672 levels) and dest (102) gave 0.707 (LightGBM) and 0.674 (XGBoost),
native up to 254 levels 0.748 and 0.742, this bound 0.758 and 0.756 (HistGradientBoosting on
the test split: 0.757 up to 254, 0.767 up to 32); on adult (largest column 41 levels) the
bound changed nothing (within 0.0005). None would mean native for all."""

TARGET_ENCODING_FOLDS = 5
"""Folds of the target encoding's cross-fitting (scikit-learn's default)."""

TARGET_TYPES: Mapping[Task, str] = {
    "binary": "binary", "multiclass": "multiclass", "regression": "continuous"}
"""TargetEncoder's ``target_type`` per task, set so it never guesses from ``y``."""


@dataclass(frozen=True)
class CategoricalEncoding:
    """How a family encodes categorical columns, by their number of known levels.

    Attributes:
        small: the encoding of columns with at most ``max_small_levels`` levels:
            ``one-hot``, ``codes`` (category codes read as numbers) or ``native`` (codes the
            estimator treats as categories).
        max_small_levels: the bound; columns above it are target encoded. None: no bound.
    """

    small: Literal["one-hot", "codes", "native"]
    max_small_levels: int | None

    def target_positions(self, layout: ColumnLayout) -> tuple[int, ...]:
        """Categorical positions of ``layout`` this encoding target encodes."""
        if self.max_small_levels is None:
            return ()
        return tuple(p for p, n in zip(layout.categorical, layout.cardinalities, strict=True)
                     if n > self.max_small_levels)

    def describe(self, layout: ColumnLayout) -> str:
        """What happens to each categorical and datetime column, e.g. ``"one-hot: origin;
        target: tailnum; datetime parts: time_hour"``; "" when there are none."""
        target = set(self.target_positions(layout))
        groups = {
            self.small: [layout.name(p) for p in layout.categorical if p not in target],
            "target": [layout.name(p) for p in layout.categorical if p in target],
            "datetime parts": list(layout.datetime_features),
        }
        return "; ".join(f"{label}: {', '.join(names)}" for label, names in groups.items()
                         if names)


LINEAR_ENCODING = CategoricalEncoding("one-hot", ONE_HOT_MAX_LEVELS)
FOREST_ENCODING = CategoricalEncoding("codes", ONE_HOT_MAX_LEVELS)
BOOSTING_ENCODING = CategoricalEncoding("native", NATIVE_MAX_LEVELS)

BUILTIN_ENCODINGS: Mapping[str, CategoricalEncoding | None] = {
    "logistic_regression": LINEAR_ENCODING,
    "ridge": LINEAR_ENCODING,
    "mlp": LINEAR_ENCODING,
    "tfidf_linear": LINEAR_ENCODING,
    "embeddings_linear": LINEAR_ENCODING,
    "embeddings_gbm": LINEAR_ENCODING,
    "random_forest": FOREST_ENCODING,
    "hist_gradient_boosting": BOOSTING_ENCODING,
    "lightgbm": BOOSTING_ENCODING,
    "xgboost": BOOSTING_ENCODING,
    "transformer": None,  # reads the text columns only
}
"""The categorical encoding of each built-in (what its builder uses; a test keeps the two in
step), for :func:`dripml.algorithms.registry.encoding_summary`."""


def as_float(X: Any) -> np.ndarray:
    """Cast a column block of the encoded matrix to float (it is object when text is present).

    Args:
        X: shape (n_rows, n_columns), numbers or NaN.

    Returns:
        float64 array of the same shape.
    """
    return np.asarray(X, dtype=np.float64)


def _text_only(X: Any) -> Any:
    """Identity: the transformer's input is the text columns as they are (a named function,
    not a lambda, so a fitted model pickles it by reference)."""
    return X


def numeric_block() -> Any:
    """Numbers: float, median-imputed, standardised."""
    return make_pipeline(FunctionTransformer(as_float), SimpleImputer(strategy="median"),
                         StandardScaler())


def one_hot_block(cardinalities: Sequence[int]) -> Any:
    """Category codes one-hot encoded, one column per known level; NaN (missing or unseen)
    maps to all zeros.

    Args:
        cardinalities: known levels of each column of the block.
    """
    # Categories fixed up front so every fold sees the same columns.
    categories = [np.arange(n, dtype=np.float64) for n in cardinalities]
    return make_pipeline(FunctionTransformer(as_float),
                         OneHotEncoder(categories=categories, handle_unknown="ignore"))


def target_block(task: Task | None, seed: int, *, scale: bool = False) -> Any:
    """Category codes target encoded: one column per column (binary, regression) or per
    column and class (multiclass); cross-fitted in ``fit_transform``, so it needs ``y``.
    Missing is a level of its own; levels unseen in the fit get the target's mean.

    Args:
        task: sets ``target_type``; None (a plugin that does not say) lets scikit-learn
            infer it from ``y``.
        seed: of the cross-fitting's shuffled folds (stratified for classification, as
            TargetEncoder's own default).
        scale: standardise the encoded columns (for linear models).
    """
    if task is None:
        encoder = TargetEncoder()
    else:
        splitter = KFold if task == "regression" else StratifiedKFold
        encoder = TargetEncoder(target_type=TARGET_TYPES[task], cv=splitter(
            TARGET_ENCODING_FOLDS, shuffle=True, random_state=seed))
    steps = [FunctionTransformer(as_float), encoder, *([StandardScaler()] if scale else [])]
    return make_pipeline(*steps)


def categorical_blocks(layout: ColumnLayout, *, task: Task | None,
                       seed: int) -> list[tuple[str, Any, list[int]]]:
    """The linear family's categorical blocks (see :data:`LINEAR_ENCODING`): one-hot up to
    ``ONE_HOT_MAX_LEVELS`` levels, target encoded and standardised above; [] when none."""
    target = set(LINEAR_ENCODING.target_positions(layout))
    small = [(p, n) for p, n in zip(layout.categorical, layout.cardinalities, strict=True)
             if p not in target]
    blocks: list[tuple[str, Any, list[int]]] = []
    if small:
        blocks.append(("categorical", one_hot_block([n for _, n in small]),
                       [p for p, _ in small]))
    if target:
        blocks.append(("target", target_block(task, seed, scale=True), sorted(target)))
    return blocks


def linear_preprocessor(layout: ColumnLayout, text: dict[str, Any] | None = None, *,
                        task: Task | None = None, seed: int = 0) -> Any:
    """Standardised numbers + categories (one-hot, or target encoded above
    ``ONE_HOT_MAX_LEVELS`` levels; see :func:`categorical_blocks`) (+ TF-IDF of each text
    column with the ``TfidfVectorizer`` arguments ``text``); sparse when mostly zeros.

    Args:
        task, seed: of the target encoding (see :func:`target_block`).

    Raises:
        SpecError: no feature column is left for the algorithm.
    """
    blocks: list[tuple[str, Any, Any]] = []
    if layout.numeric:
        blocks.append(("numeric", numeric_block(), list(layout.numeric)))
    blocks.extend(categorical_blocks(layout, task=task, seed=seed))
    for position in layout.text if text is not None else ():
        blocks.append((f"text_{position}", TfidfVectorizer(**text), position))
    if not blocks:
        raise SpecError("no feature columns are left for this algorithm")
    return ColumnTransformer(blocks, sparse_threshold=0.3)


@dataclass(frozen=True)
class TreeInput:
    """A tree model's preprocessor and what its output holds.

    Attributes:
        preprocessor: encoded matrix -> floats.
        categorical: positions of the output holding native categoricals.
        key: its ``preprocessor_key``.
        leading: output columns before the target-encoded ones (numbers and codes).
        target: encoded-matrix positions target encoded after them: one output column each,
            or one per class in a multiclass task (a count known only once fitted).
    """

    preprocessor: Any
    categorical: list[int]
    key: tuple[Any, ...]
    leading: int
    target: tuple[int, ...] = ()


def tree_input(layout: ColumnLayout, encoding: CategoricalEncoding, *,
               task: Task | None = None, seed: int = 0) -> TreeInput:
    """Preprocessor dropping text columns and target encoding the categorical columns
    ``encoding`` says to (placed after the others, which keep their order).

    Args:
        task, seed: of the target encoding (see :func:`target_block`).

    Raises:
        SpecError: only text columns are left.
    """
    target = encoding.target_positions(layout)
    if not layout.text and not target:
        return TreeInput(FunctionTransformer(as_float), list(layout.categorical), TREE_INPUT,
                         leading=len(layout.tabular))
    kept = [p for p in layout.tabular if p not in target]
    if not kept and not target:
        raise SpecError("tree algorithms need numeric or categorical features, not only text")
    blocks: list[tuple[str, Any, list[int]]] = []
    if kept:
        blocks.append(("tabular", FunctionTransformer(as_float), kept))
    if target:
        blocks.append(("target", target_block(task, seed), list(target)))
    key = (*TREE_INPUT, "target", target) if target else TREE_INPUT
    categorical = [kept.index(p) for p in layout.categorical if p not in target]
    return TreeInput(ColumnTransformer(blocks), categorical, key, leading=len(kept),
                     target=target)


def text_columns(layout: ColumnLayout) -> Any | None:
    """Keeps only the text columns (None when there are no others to drop)."""
    if not layout.tabular:
        return None
    return ColumnTransformer([("text", FunctionTransformer(_text_only), list(layout.text))])
