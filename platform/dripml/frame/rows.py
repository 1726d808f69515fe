"""The row layout: :class:`RowFrame`, columns by name (each a
:class:`~dripml.frame.series.RowSeries`), with the subset of pandas' DataFrame API listed in
:mod:`dripml.frame`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dripml.frame import columns
from dripml.frame.fallback import Unsupported
from dripml.frame.series import NUMERIC, RowSeries, scalar


class RowFrame:
    """A frame of ``n`` rows: columns by name, in order, each a :class:`RowSeries`, or the
    pandas column it comes from until the function first reads it (a column passed through
    untouched is never converted, whatever its dtype)."""

    __slots__ = ("_columns", "_n")

    def __init__(self, data: Mapping[str, RowSeries | pd.Series], n: int) -> None:
        self._columns = dict(data)
        self._n = n

    @classmethod
    def from_pandas(cls, frame: pd.DataFrame) -> RowFrame:
        """Raises Unsupported for duplicate or non-string column names (and, when the
        function reads it, for a column of a dtype the row layout does not hold)."""
        if not frame.columns.is_unique or not all(isinstance(c, str) for c in frame.columns):
            raise Unsupported("non-string or duplicate column names")
        return cls({name: frame[name] for name in frame.columns}, len(frame))

    def _column(self, name: str) -> RowSeries:
        column = self._columns[name]
        if isinstance(column, pd.Series):
            column = RowSeries(*columns.from_pandas(column), origin=column)
            self._columns[name] = column
        return column

    def _all_columns(self) -> list[RowSeries]:
        return [self._column(name) for name in list(self._columns)]

    @classmethod
    def from_records(cls, records: Sequence[Mapping[str, Any]]) -> RowFrame:
        data = {name: RowSeries(values, is_text)
                for name, (values, is_text) in columns.from_records(records).items()}
        return cls(data, len(records))

    def to_pandas(self, index: pd.Index) -> pd.DataFrame:
        return pd.DataFrame({name: _as_pandas(s, index) for name, s in self._columns.items()},
                            index=index)

    def to_records(self) -> list[dict[str, Any]]:
        names = list(self._columns)
        values = [columns.to_plain(s.values) for s in self._all_columns()]
        return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]

    # -- the pandas API ------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    @property
    def columns(self) -> pd.Index:
        return pd.Index(list(self._columns))

    @property
    def shape(self) -> tuple[int, int]:
        return self._n, len(self._columns)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_columns", "_n"):
            raise AttributeError(name)
        if name in self._columns:
            return self._column(name)
        raise Unsupported(f"DataFrame.{name}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._column(key)
        if isinstance(key, list) and all(isinstance(k, str) for k in key):
            missing = [k for k in key if k not in self._columns]
            if missing:
                raise KeyError(f"None of {missing} are in the columns")
            return RowFrame({k: self._columns[k] for k in key}, self._n)
        raise Unsupported(f"DataFrame[{type(key).__name__}]")

    def get(self, key: str, default: Any = None) -> Any:
        return self._column(key) if key in self._columns else default

    def __setitem__(self, key: Any, value: Any) -> None:
        if not isinstance(key, str):
            raise Unsupported(f"DataFrame[{type(key).__name__}] = ...")
        self._columns[key] = self._column_from(value)

    def __delitem__(self, key: str) -> None:
        del self._columns[key]

    def _column_from(self, value: Any) -> RowSeries:
        if isinstance(value, RowSeries):
            if len(value) != self._n:
                raise ValueError(f"Length of values ({len(value)}) does not match length "
                                 f"of index ({self._n})")
            return value
        value, kind = scalar(value)
        if kind == "text":
            return RowSeries(np.full(self._n, value, dtype=object), is_text=True)
        return RowSeries(np.full(self._n, value))

    def copy(self, deep: bool = True) -> RowFrame:
        return RowFrame(self._columns, self._n)  # arrays are never written in place

    def assign(self, **kwargs: Any) -> RowFrame:
        out = self.copy()
        for name, value in kwargs.items():
            out[name] = value(out) if callable(value) else value
        return out

    def pipe(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return func(self, *args, **kwargs)

    def drop(self, labels: Any = None, *, axis: Any = 0, columns: Any = None,
             errors: str = "raise") -> RowFrame:
        if columns is None and axis in (1, "columns"):
            columns = labels
        elif labels is not None or columns is None:
            raise Unsupported("DataFrame.drop of rows")
        names = [columns] if isinstance(columns, str) else list(columns)
        missing = [n for n in names if n not in self._columns]
        if missing and errors == "raise":
            raise KeyError(f"{missing} not found in axis")
        dropped = set(names)
        return RowFrame({k: v for k, v in self._columns.items() if k not in dropped}, self._n)

    def rename(self, columns: Any = None, **kwargs: Any) -> RowFrame:
        if kwargs or columns is None:
            raise Unsupported(f"DataFrame.rename with {sorted(kwargs) or 'no columns'}")
        rename = columns if callable(columns) else (lambda c: columns.get(c, c))
        return RowFrame({rename(k): v for k, v in self._columns.items()}, self._n)

    def apply(self, func: Callable[..., Any], axis: Any = 0, args: tuple[Any, ...] = (),
              **kwargs: Any) -> RowSeries:
        if axis not in (1, "columns") or self._n == 0 or {"raw", "result_type"} & set(kwargs):
            raise Unsupported("DataFrame.apply other than over rows (axis=1)")
        rows = self._row_dicts()
        return RowSeries(*columns.infer([func(row, *args, **kwargs) for row in rows]))

    def _row_dicts(self) -> list[dict[str, Any]]:
        """Rows as pandas hands them to ``apply(axis=1)``: one common dtype when every
        column is numeric (ints become floats beside a float column), else Python objects
        (NaN for missing text)."""
        all_columns = self._all_columns()
        kinds = {s.kind for s in all_columns}
        if kinds & {"datetime", "object"}:
            raise Unsupported("DataFrame.apply over datetime or list columns")
        names = list(self._columns)
        if kinds <= NUMERIC or kinds == {"bool"}:
            dtype = np.float64 if "float" in kinds else None
            arrays = [s.values if dtype is None else s.values.astype(dtype)
                      for s in all_columns]
            return [dict(zip(names, row, strict=True)) for row in zip(*arrays, strict=True)]
        lists = [s._text_values() for s in all_columns]
        return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


def _as_pandas(column: RowSeries | pd.Series, index: pd.Index) -> pd.Series:
    if isinstance(column, pd.Series):
        return column
    if column.origin is not None:
        return column.origin  # unchanged since read: pandas' own column (copy-on-write)
    return columns.to_pandas(column.values, column.is_text, index)
