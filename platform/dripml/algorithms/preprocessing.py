"""Preprocessing over the encoded matrix, shared by the algorithm families.

The encoder (:mod:`dripml.core.features`) gives one column per feature: numbers and category
codes as floats, text as strings (the matrix is ``object`` when text is present). These
blocks turn positions of that matrix into what an estimator reads.

A fitted model pickles :func:`as_float` and :func:`_text_only` by reference (inside
``FunctionTransformer``), so their module path and names are part of the model format:
``dripml.algorithms.preprocessing.as_float`` and ``dripml.algorithms.preprocessing._text_only``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from dripml.core.features import ColumnLayout
from dripml.errors import SpecError

LINEAR_INPUT = ("linear",)
"""Key of the one-hot + standardise preprocessing shared by the linear models and the MLP."""
TREE_INPUT = ("tree",)
"""Key of the tree models' input: the encoded tabular columns as floats."""


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


def one_hot_block(layout: ColumnLayout) -> Any:
    """Category codes one-hot encoded; NaN (missing or unseen) maps to all zeros."""
    # Categories fixed up front so every fold sees the same columns.
    categories = [np.arange(n, dtype=np.float64) for n in layout.cardinalities]
    return make_pipeline(FunctionTransformer(as_float),
                         OneHotEncoder(categories=categories, handle_unknown="ignore"))


def linear_preprocessor(layout: ColumnLayout, text: dict[str, Any] | None = None) -> Any:
    """Standardised numbers + one-hot categories (+ TF-IDF of each text column with the
    ``TfidfVectorizer`` arguments ``text``); sparse when mostly zeros.

    Raises:
        SpecError: no feature column is left for the algorithm.
    """
    blocks: list[tuple[str, Any, Any]] = []
    if layout.numeric:
        blocks.append(("numeric", numeric_block(), list(layout.numeric)))
    if layout.categorical:
        blocks.append(("categorical", one_hot_block(layout), list(layout.categorical)))
    for position in layout.text if text is not None else ():
        blocks.append((f"text_{position}", TfidfVectorizer(**text), position))
    if not blocks:
        raise SpecError("no feature columns are left for this algorithm")
    return ColumnTransformer(blocks, sparse_threshold=0.3)


def tree_input(layout: ColumnLayout) -> tuple[Any, list[int]]:
    """Preprocessor dropping text columns, and the categorical positions after it.

    Raises:
        SpecError: only text columns are left.
    """
    if not layout.text:
        return FunctionTransformer(as_float), list(layout.categorical)
    tabular = list(layout.tabular)
    if not tabular:
        raise SpecError("tree algorithms need numeric or categorical features, not only text")
    selector = ColumnTransformer([("tabular", FunctionTransformer(as_float), tabular)])
    return selector, [tabular.index(p) for p in layout.categorical]


def text_columns(layout: ColumnLayout) -> Any | None:
    """Keeps only the text columns (None when there are no others to drop)."""
    if not layout.tabular:
        return None
    return ColumnTransformer([("text", FunctionTransformer(_text_only), list(layout.text))])
