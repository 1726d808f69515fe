"""Feature schema and encoder: rows -> one numeric matrix, the same for training and serving.

The encoder is fitted once on the training frame. It turns either a pandas DataFrame
(training, vectorised) or a list of JSON records (serving, pure Python: building a one-row
DataFrame per request costs about 1 ms, twenty times a GBM's prediction) into the same
matrix, column for column:

- numeric feature -> float, NaN when missing;
- categorical feature -> its code (0..n-1, categories sorted by frequency then name), NaN when
  missing or unseen in training;
- text feature -> the string itself ("" when missing), cleaned by the column's
  :class:`~dripml.core.text.TextRules` (``data.text`` in the spec: strip URLs, @handles, #tags,
  lowercase); the matrix is then of dtype object. The rules live in the fitted encoder, so
  serving cleans records exactly as training cleaned rows.

Algorithms receive that matrix plus a :class:`ColumnLayout` telling which positions hold which
kind, and build their own preprocessing on top (one-hot, scaling, TF-IDF).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from dripml.core.text import TextRules
from dripml.errors import DataError

Kind = Literal["numeric", "categorical", "text"]

MAX_CATEGORIES = 254
"""Most frequent categories kept per column (HistGradientBoosting allows 255 bins with NaN)."""


@dataclass(frozen=True)
class Feature:
    """One input column: its name, kind and, for categoricals, the known categories."""

    name: str
    kind: Kind
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class ColumnLayout:
    """Positions of each kind of column in the encoded matrix (shape (n_rows, n_features))."""

    numeric: tuple[int, ...]
    categorical: tuple[int, ...]
    text: tuple[int, ...]
    cardinalities: tuple[int, ...] = field(default=())  # one per categorical position

    @property
    def tabular(self) -> tuple[int, ...]:
        return tuple(sorted(self.numeric + self.categorical))


def infer_kinds(frame: pd.DataFrame, overrides: Mapping[str, Kind]) -> dict[str, Kind]:
    """Kind per column: overrides first, numbers (not bool) numeric, everything else categorical."""
    kinds: dict[str, Kind] = {}
    for name in frame.columns:
        if name in overrides:
            kinds[name] = overrides[name]
        elif pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(
            frame[name]
        ):
            kinds[name] = "numeric"
        else:
            kinds[name] = "categorical"
    return kinds


class TabularEncoder:
    """Fitted mapping from rows to the encoded matrix; see the module docstring.

    Attributes (after :meth:`fit`):
        features: the input columns in order, with kinds and categories.
        layout: where each kind sits in the encoded matrix.
    """

    def __init__(self, text_rules: Mapping[str, TextRules] | None = None) -> None:
        """``text_rules``: cleaning per text column name (columns not named: none)."""
        self.features: tuple[Feature, ...] = ()
        self.layout = ColumnLayout((), (), ())
        self._codes: list[dict[str, float] | None] = []
        self.text_rules: dict[str, TextRules] = dict(text_rules or {})

    def _rules(self, name: str) -> TextRules:
        # getattr: encoders pickled before text rules existed have no attribute.
        return getattr(self, "text_rules", {}).get(name, _NO_RULES)

    def fit(self, frame: pd.DataFrame, kinds: Mapping[str, Kind]) -> TabularEncoder:
        """Learn categories from ``frame`` (training rows only).

        Raises:
            DataError: a column declared numeric holds values that are not numbers.
        """
        features = []
        for name in frame.columns:
            kind = kinds[name]
            column = frame[name]
            if kind == "numeric":
                _check_numeric(column, name)
                features.append(Feature(name, "numeric"))
            elif kind == "categorical":
                counts = column.dropna().astype(str).value_counts()
                ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
                categories = tuple(c for c, _ in ordered[:MAX_CATEGORIES])
                features.append(Feature(name, "categorical", categories))
            else:
                features.append(Feature(name, "text"))
        self.features = tuple(features)
        self._codes = [
            {c: float(i) for i, c in enumerate(f.categories)} if f.kind == "categorical" else None
            for f in self.features
        ]
        positions = {k: tuple(i for i, f in enumerate(features) if f.kind == k) for k in
                     ("numeric", "categorical", "text")}
        self.layout = ColumnLayout(
            numeric=positions["numeric"],
            categorical=positions["categorical"],
            text=positions["text"],
            cardinalities=tuple(len(features[i].categories) for i in positions["categorical"]),
        )
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def dtype(self) -> type:
        return object if self.layout.text else np.float64

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a DataFrame holding (at least) the feature columns; shape (n, n_features)."""
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise DataError(f"columns {missing} are missing; expected features: {self.names}")
        out = np.empty((len(frame), len(self.features)), dtype=self.dtype)
        for j, (feature, codes) in enumerate(zip(self.features, self._codes, strict=True)):
            column = frame[feature.name]
            if feature.kind == "numeric":
                _check_numeric(column, feature.name)
                out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            elif feature.kind == "categorical":
                as_text = column.astype(object).where(column.notna(), None)
                out[:, j] = [codes.get(str(v), math.nan) if v is not None else math.nan
                             for v in as_text]
            else:
                rules = self._rules(feature.name)
                values = column.fillna("").astype(str).to_numpy(dtype=object)
                out[:, j] = [rules.apply(v) for v in values] if rules.active else values
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode JSON-like records (already validated) without pandas; same output as transform.

        Missing keys and None are missing values.
        """
        rows = []
        for record in records:
            row: list[Any] = []
            for feature, codes in zip(self.features, self._codes, strict=True):
                value = record.get(feature.name)
                if feature.kind == "numeric":
                    row.append(math.nan if value is None else float(value))
                elif feature.kind == "categorical":
                    row.append(math.nan if value is None else codes.get(str(value), math.nan))
                else:
                    row.append(self._rules(feature.name).apply(
                        "" if value is None else str(value)))
            rows.append(row)
        return np.array(rows, dtype=self.dtype).reshape(len(rows), len(self.features))


_NO_RULES = TextRules()


def _check_numeric(column: pd.Series, name: str) -> None:
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return
    converted = pd.to_numeric(column, errors="coerce")
    bad = column[converted.isna() & column.notna()]
    if len(bad):
        raise DataError(
            f"column {name!r} is numeric but holds {len(bad)} non-numeric values "
            f"(first: {bad.iloc[0]!r}); declare it categorical in data.column_types or fix it"
        )
