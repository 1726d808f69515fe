"""Columns of the row layout: one-dimensional NumPy arrays, typed as pandas would type them.

The kinds (and how each holds a missing value, as pandas 3 does):

- ``float``: ``float64``, NaN;
- ``int`` / ``bool``: ``int64`` / ``bool``, never missing (pandas makes a column with a
  missing integer ``float64``, and one with a missing boolean ``object``: the row layout
  leaves the latter to pandas);
- ``text``: an ``object`` array of ``str``, ``None`` for missing (pandas' ``str`` dtype,
  whose missing value is NaN);
- ``datetime``: naive ``datetime64`` (any unit), NaT;
- ``object``: an ``object`` array of lists (what ``str.split`` makes), ``None`` for missing.

Anything else (categoricals, nullable extension dtypes, time zones, mixed objects) raises
:class:`~dripml.frame.fallback.Unsupported`, so the call runs on pandas.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dripml.frame.fallback import Unsupported

TEXT_DTYPE = pd.StringDtype(na_value=np.nan)
"""pandas 3's default string dtype (``str``): what a column of Python strings becomes."""


def is_missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA: what pandas counts as missing in a scalar."""
    if value is None:
        return True
    if isinstance(value, float):
        return value != value
    return value is pd.NaT or value is pd.NA or (isinstance(value, np.datetime64)
                                                  and np.isnat(value))


def infer(values: Sequence[Any]) -> tuple[np.ndarray, bool]:
    """The array pandas would make of a list of Python scalars (``pd.Series(values)``).

    Returns:
        ``(array, is_text)``: ``bool``/``int64``/``float64`` for numbers (``float64`` with NaN
        when any is missing), an ``object`` array of ``str`` with ``None`` for missing text.

        ``float64`` when missing values include a NaN, an ``object`` array when all are None.

    Raises:
        Unsupported: mixed kinds, booleans with missing values, other objects.
    """
    n_bool = n_int = n_float = n_text = n_missing = n_nan = 0
    for value in values:
        if value is None:
            n_missing += 1
        elif isinstance(value, (bool, np.bool_)):
            n_bool += 1
        elif isinstance(value, numbers.Integral):
            n_int += 1
        elif isinstance(value, float):
            if value != value:
                n_missing += 1
                n_nan += 1
            else:
                n_float += 1
        elif isinstance(value, str):
            n_text += 1
        else:
            raise Unsupported(f"values of type {type(value).__name__}")
    total = len(values)
    if n_text and n_text + n_missing == total:
        return np.array([None if is_missing(v) else v for v in values], dtype=object), True
    if n_bool == total:
        return np.array(values, dtype=bool), False
    if n_int == total:
        return np.array(values, dtype=np.int64), False
    if (n_int or n_float or n_nan) and n_int + n_float + n_missing == total:
        return np.array([math.nan if v is None else v for v in values], dtype=np.float64), False
    if n_missing == total:  # None only: pandas makes an object column of None
        return np.full(total, None, dtype=object), False
    raise Unsupported("values of mixed types")


def from_pandas(column: pd.Series) -> tuple[np.ndarray, bool]:
    """A pandas column as ``(array, is_text)``; raises Unsupported for other dtypes."""
    dtype = column.dtype
    if dtype == TEXT_DTYPE:
        return column.to_numpy(dtype=object, na_value=None), True
    if isinstance(dtype, np.dtype) and (dtype in (np.float64, np.int64, np.bool_)
                                        or dtype.kind == "M"):
        return column.to_numpy(), False
    raise Unsupported(f"a column of dtype {dtype}")


def from_records(records: Sequence[Mapping[str, Any]]) -> dict[str, tuple[np.ndarray, bool]]:
    """Records (one dict per row) as columns, keys in order of first appearance; a key a
    record lacks is NaN there (as in ``pd.DataFrame(records)``)."""
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record))
    return {name: infer([record.get(name, math.nan) for record in records]) for name in names}


def to_pandas(values: np.ndarray, is_text: bool, index: pd.Index) -> pd.Series:
    """A column back as the pandas Series pandas itself would have made."""
    if is_text:
        return pd.Series(values, index=index, dtype=TEXT_DTYPE, copy=False)
    if values.dtype == object:  # lists, or items of lists: pandas keeps them as objects
        return pd.Series(values, index=index, dtype=object, copy=False)
    return pd.Series(values, index=index, copy=False)


def to_plain(values: np.ndarray) -> list[Any]:
    """A column as plain Python scalars, None for missing (the records' form)."""
    kind = values.dtype.kind
    if kind == "f":
        return [None if v != v else v for v in values.tolist()]
    if kind == "M":
        return [None if np.isnat(v) else pd.Timestamp(v) for v in values]
    return values.tolist()
