"""One pandas API, several data layouts (issue 18, after LitSDF).

User feature code is written against the pandas API (``df["x"] = np.log1p(df["a"])``...).
:func:`call` runs it on the layout that suits the call: pandas for batches, a row layout
(a dict of one-dimensional NumPy arrays, one per column: :mod:`dripml.frame.rows`,
:mod:`~dripml.frame.series`, :mod:`~dripml.frame.strings`, :mod:`~dripml.frame.dates`) for a
few rows, with the same results. This module is the contract the rest of dripml uses; the layouts
live beside it.

Layouts (the ``layout`` argument): ``auto`` picks per call by row count (at most
:data:`~dripml.frame.dispatch.ROWS_MAX_ROWS` rows: the row layout) or, after
:func:`~dripml.frame.dispatch.use_measured_auto`, by measured time; ``measured`` by measured
time (an epsilon-greedy bandit per function and size bucket); ``pandas`` and ``rows`` force
one.

The pandas subset the row layout runs (the same values, missing values and dtype kinds as
pandas 3; column dtypes ``float64``, ``int64``, ``bool``, ``str`` and naive ``datetime64``):

- frame: ``df["a"]``, ``df.a``, ``df[["a", "b"]]``, ``df["new"] = series | scalar``,
  ``del df["a"]``, ``df.assign(...)`` (values or callables), ``df.drop(columns=...)``,
  ``df.rename(columns=dict | callable)``, ``df.copy()``, ``df.get``, ``df.pipe``,
  ``df.columns``, ``df.shape``, ``len(df)``, ``"a" in df``, ``df.apply(fn, axis=1)`` (``fn``
  gets a dict per row, valued as pandas' row Series would be, and returns a scalar);
- series operators: ``+ - * / // % **`` (numbers; ``+`` also joins text), unary ``-``,
  ``abs``, comparisons (numbers, text, datetimes), ``& | ^ ~`` on booleans;
- series methods: ``where``, ``mask``, ``fillna`` (a scalar), ``isna``/``notna``,
  ``astype`` (``float``, ``int``, ``bool``, ``str``), ``map`` (a dict or a callable),
  ``apply(fn)``, ``replace`` (values, lists, a dict), ``clip``, ``round``, ``between``,
  ``isin``;
- ``.str``: ``lower``, ``upper``, ``strip``/``lstrip``/``rstrip``, ``len``, ``contains``,
  ``count``, ``startswith``, ``endswith``, ``replace`` (literal or regex), ``slice``,
  ``split`` (one-character or whitespace separator, ``expand=False``), ``get``;
- ``.dt``: ``year``, ``month``, ``day``, ``dayofweek``/``weekday``, ``hour``, ``minute``;
- NumPy: ufuncs on series (``np.log1p``, ``np.sqrt``, ``np.exp``, ``np.maximum``...) and
  ``np.where(cond, a, b)``.

What falls back to pandas, for that call (logged once per function and operation, counted
in :func:`fallback_counts`): any other method or attribute (``df.loc``, ``groupby``,
``rolling``, reductions such as ``sum``/``mean``), filtering rows (``df[mask]``), ``pd.*``
functions on a column (``pd.to_datetime``, ``pd.cut``), assigning a NumPy array or a list,
``astype("category")`` and other dtypes, integer ``//``/``%`` by zero, ``where`` mixing
kinds (booleans with NaN), text methods with ``na=``/``expand=True``/regex separators,
``str.replace`` with a pattern that can match the empty string, reading a column of another
dtype (categorical, nullable ``Int64``, ``object``, time zones; passing it through untouched
is fine), records holding booleans with missing values, mixed types or nested values, and,
on a field that is None in every record (an ``object`` column of None in pandas), anything
but ``fillna`` with text, comparisons, ``isin`` and ``isna``/``notna``; methods of what
``np.where`` returns (a NumPy array in pandas, so only its operators are run). Any other
error in the row layout (except ``KeyError``, a missing column) also reruns the call on
pandas, so a function gets pandas' result or pandas' exception. A function that falls back
runs twice for that call (partly on the row layout, then on pandas): keep it free of side
effects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from dripml.frame import dates, dispatch, fallback, strings  # noqa: F401 (registers .str, .dt)
from dripml.frame.columns import is_missing
from dripml.frame.fallback import Unsupported, add_listener, fallback_counts, record
from dripml.frame.rows import RowFrame

__all__ = ["Layout", "Records", "add_listener", "call", "call_records", "fallback_counts"]

Layout = Literal["auto", "measured", "pandas", "rows"]
"""``auto``: picked per call by row count (and measured time, when enabled); ``measured``:
by measured time; ``pandas``: a ``pandas.DataFrame``; ``rows``: dripml's row layout."""

Records = Sequence[Mapping[str, Any]]
_LAYOUTS = ("auto", "measured", "pandas", "rows")


def call(func: Callable[[Any], Any], data: pd.DataFrame, *, layout: Layout = "auto"
         ) -> pd.DataFrame:
    """Run ``func`` (DataFrame -> DataFrame, pandas API) on ``data``; a DataFrame back, rows
    in ``data``'s order and index.

    Raises:
        ValueError: an unknown ``layout``.
        TypeError: ``func`` returned something other than a DataFrame.
        whatever ``func`` raises on pandas.
    """
    def on_rows() -> Any:
        return func(RowFrame.from_pandas(data))

    def on_pandas() -> pd.DataFrame:
        return _as_frame(func(data.copy()))

    return _run(func, len(data), layout, on_rows, lambda out: out.to_pandas(data.index),
                on_pandas)


def call_records(func: Callable[[Any], Any], records: Records, *, layout: Layout = "auto"
                 ) -> list[dict[str, Any]]:
    """Run ``func`` on JSON-like records (one dict per row); one dict per row back, values as
    plain Python scalars (None for missing).

    Raises: as :func:`call`.
    """
    rows = records if isinstance(records, list) else list(records)

    def on_rows() -> Any:
        return func(RowFrame.from_records(rows))

    def on_pandas() -> list[dict[str, Any]]:
        out = _as_frame(func(pd.DataFrame(rows)))
        return [{k: _plain(v) for k, v in row.items()} for row in out.to_dict(orient="records")]

    return _run(func, len(rows), layout, on_rows, RowFrame.to_records, on_pandas)


def _run(func: Callable[[Any], Any], n_rows: int, layout: str, on_rows: Callable[[], Any],
         from_rows: Callable[[RowFrame], Any], on_pandas: Callable[[], Any]) -> Any:
    """``on_rows`` runs ``func`` on the row layout, ``from_rows`` converts its RowFrame,
    ``on_pandas`` runs it on pandas (the fallback)."""
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {list(_LAYOUTS)}; got {layout!r}")
    measured = layout == "measured" or (layout == "auto" and dispatch.measured_auto())
    if measured:
        key, bucket = dispatch.function_key(func), dispatch.size_bucket(n_rows)
        chosen = dispatch.BANDIT.choose(key, bucket) if n_rows else "pandas"
    else:
        chosen = layout if layout in ("pandas", "rows") else dispatch.by_rows(n_rows)
    start = time.perf_counter()
    if chosen == "rows":
        try:
            result = on_rows()
            if isinstance(result, pd.DataFrame):
                raise Unsupported("returning a pandas DataFrame built inside the function")
        except KeyError:  # a missing column: pandas would fail alike, no second run
            raise
        except Unsupported as unsupported:
            record(_name(func), unsupported.op)
            chosen, result = "pandas", on_pandas()
        except Exception as error:  # a path the row layout gets wrong: pandas decides
            record(_name(func), f"{type(error).__name__} in the row layout")
            fallback.log.debug("row layout error in %s", _name(func), exc_info=True)
            chosen, result = "pandas", on_pandas()
        else:
            result = from_rows(_as_frame(result))
    else:
        result = on_pandas()
    if measured:
        dispatch.BANDIT.record(key, bucket, chosen, time.perf_counter() - start)
    return result


def _as_frame(result: Any) -> Any:
    if not isinstance(result, (pd.DataFrame, RowFrame)):
        raise TypeError(f"a preprocessing function must return a DataFrame; got "
                        f"{type(result).__name__}")
    return result


def _plain(value: Any) -> Any:
    """A pandas cell as a plain Python value: None for missing, NumPy scalars unwrapped."""
    if isinstance(value, (list, tuple, dict)):
        return value
    if is_missing(value):
        return None
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, pd.Timestamp) else value


def _name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
