"""The row layout's column: :class:`RowSeries` (one 1-D NumPy array) with the subset of
pandas' Series API listed in :mod:`dripml.frame`; :class:`~dripml.frame.rows.RowFrame` holds
them.

Built for a few rows: an operation is one NumPy call (or a Python loop for text), with none
of pandas' index alignment, block management or dtype machinery, which is what a one-row
pandas call pays for. Each operation returns what pandas returns for the same data (values,
missing values, dtype kind); where that would take more than a few lines, it raises
:class:`~dripml.frame.fallback.Unsupported` and the call runs on pandas.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from dripml.frame import columns
from dripml.frame.fallback import Unsupported

NUMERIC = frozenset({"int", "float"})
_NUMERIC_OR_BOOL = frozenset({"int", "float", "bool"})
_KINDS = {"f": "float", "i": "int", "u": "int", "b": "bool", "M": "datetime"}
NO_DEFAULT: Any = object()

_ARITHMETIC: dict[str, Callable[..., np.ndarray]] = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power}
_COMPARISON: dict[str, Callable[..., np.ndarray]] = {
    "eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
    "gt": np.greater, "ge": np.greater_equal}
_LOGICAL: dict[str, Callable[..., np.ndarray]] = {
    "and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}
_TEXT_COMPARISON: dict[str, Callable[[str, str], bool]] = {
    "eq": str.__eq__, "ne": str.__ne__, "lt": str.__lt__, "le": str.__le__,
    "gt": str.__gt__, "ge": str.__ge__}

ACCESSORS: dict[str, Callable[[RowSeries], Any]] = {}
"""``Series.str`` and ``Series.dt``: classes that :mod:`~dripml.frame.strings` and
:mod:`~dripml.frame.dates` add with :func:`accessor` (as pandas registers its accessors), so
those modules import this one and not the other way round."""


def accessor(name: str) -> Callable[[type[RowAccessor]], type[RowAccessor]]:
    """Class decorator: the class is ``Series.<name>`` of a :class:`RowSeries`."""
    def add(cls: type[RowAccessor]) -> type[RowAccessor]:
        cls.name = name
        ACCESSORS[name] = cls
        return cls
    return add


class RowAccessor:
    """Base of ``series.str`` and ``series.dt`` (:func:`accessor` names it): holds the
    series; any attribute a subclass does not define raises :class:`Unsupported`, so the call
    falls back to pandas."""

    __slots__ = ("_series",)
    name = ""

    def __init__(self, series: RowSeries) -> None:
        self._series = series

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise Unsupported(f"Series.{self.name}.{attribute}")


_ASTYPE_TARGETS: dict[Any, str] = {
    float: "float", "float": "float", "float64": "float", np.float64: "float",
    np.dtype("float64"): "float", int: "int", "int": "int", "int64": "int", np.int64: "int",
    np.dtype("int64"): "int", str: "str", "str": "str", bool: "bool", "bool": "bool",
    np.bool_: "bool", np.dtype("bool"): "bool"}


def scalar(value: Any) -> tuple[Any, str]:
    """A scalar operand and its kind; Unsupported for anything else (lists, arrays...)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value), "bool"
    if isinstance(value, numbers.Integral):
        return value, "int"
    if isinstance(value, (float, np.floating)):
        return float(value), "float"
    if isinstance(value, str):
        return value, "text"
    if isinstance(value, pd.Timestamp) and value.tz is None:
        return value.to_datetime64(), "datetime"
    if isinstance(value, np.datetime64):
        return value, "datetime"
    raise Unsupported(f"an operand of type {type(value).__name__}")


class RowSeries:
    """One column: ``values`` (a 1-D array), ``is_text`` for an object array of strings,
    ``origin`` the pandas column it was read from (given back as is when unchanged)."""

    __slots__ = ("values", "is_text", "origin")

    def __init__(self, values: np.ndarray, is_text: bool = False,
                 origin: pd.Series | None = None) -> None:
        self.values = values
        self.is_text = is_text
        self.origin = origin

    # -- what it holds -------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """``float``, ``int``, ``bool``, ``datetime``, ``text``, ``object`` (lists) or
        ``none`` (an object column of None only: a record field missing in every record)."""
        if self.is_text:
            return "text"
        kind = _KINDS.get(self.values.dtype.kind)
        if kind is not None:
            return kind
        return "none" if all(v is None for v in self.values) else "object"

    def __len__(self) -> int:
        return len(self.values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise Unsupported(f"Series.{name}")

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise Unsupported("a Series converted to a NumPy array")

    def __bool__(self) -> bool:
        raise ValueError("The truth value of a Series is ambiguous.")

    def __getitem__(self, key: Any) -> Any:
        raise Unsupported("Series[...]")

    def copy(self, deep: bool = True) -> RowSeries:
        return RowSeries(self.values, self.is_text, self.origin)

    def _operand(self, other: Any) -> tuple[Any, str]:
        if isinstance(other, RowSeries):
            if len(other) != len(self):
                raise Unsupported("Series of different lengths")
            return other.values, other.kind
        return scalar(other)

    def _text_values(self) -> list[Any]:
        """Elements as a user function sees them in pandas (NaN for missing text)."""
        items = self.values.tolist()
        if self.is_text:
            return [math.nan if v is None else v for v in items]
        return items

    # -- operators -----------------------------------------------------------------------
    def _arithmetic(self, other: Any, name: str, reflected: bool = False) -> RowSeries:
        right, right_kind = self._operand(other)
        left, left_kind = self.values, self.kind
        if reflected:
            left, right, left_kind, right_kind = right, left, right_kind, left_kind
        if name == "add" and left_kind == right_kind == "text":
            return _concat(left, right, len(self))
        if left_kind not in NUMERIC or right_kind not in NUMERIC:
            raise Unsupported(f"Series.__{name}__ on {left_kind} and {right_kind}")
        if (name in ("floordiv", "mod") and left_kind == right_kind == "int"
                and np.any(np.asarray(right) == 0)):
            raise Unsupported("integer // or % by zero")  # pandas gives inf/NaN, NumPy 0
        with np.errstate(all="ignore"):
            return RowSeries(_ARITHMETIC[name](left, right))

    def __add__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "add")

    def __radd__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "add", reflected=True)

    def __sub__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "sub")

    def __rsub__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "sub", reflected=True)

    def __mul__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "mul")

    def __rmul__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "mul", reflected=True)

    def __truediv__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "truediv")

    def __rtruediv__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "truediv", reflected=True)

    def __floordiv__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "floordiv")

    def __rfloordiv__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "floordiv", reflected=True)

    def __mod__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "mod")

    def __rmod__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "mod", reflected=True)

    def __pow__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "pow")

    def __rpow__(self, other: Any) -> RowSeries:
        return self._arithmetic(other, "pow", reflected=True)

    def __neg__(self) -> RowSeries:
        if self.kind not in NUMERIC:
            raise Unsupported(f"-Series of {self.kind}")
        return RowSeries(np.negative(self.values))

    def __abs__(self) -> RowSeries:
        if self.kind not in NUMERIC:
            raise Unsupported(f"abs(Series of {self.kind})")
        return RowSeries(np.abs(self.values))

    def abs(self) -> RowSeries:
        return self.__abs__()

    def __invert__(self) -> RowSeries:
        if self.kind == "bool":
            return RowSeries(np.logical_not(self.values))
        if self.kind == "int":
            return RowSeries(np.invert(self.values))
        raise Unsupported(f"~Series of {self.kind}")

    def _compare(self, other: Any, name: str) -> RowSeries:
        right, right_kind = self._operand(other)
        kind = self.kind
        if kind in _NUMERIC_OR_BOOL and right_kind in _NUMERIC_OR_BOOL or (
                kind == right_kind == "datetime"):
            return RowSeries(_COMPARISON[name](self.values, right))
        if kind == right_kind == "text":
            return RowSeries(_compare_text(self.values, right, name))
        if kind == "none":  # None is != everything, == and < nothing (pandas' objects)
            return RowSeries(np.full(len(self), name == "ne"))
        raise Unsupported(f"comparing {kind} with {right_kind}")

    def __eq__(self, other: Any) -> RowSeries:  # type: ignore[override]
        return self._compare(other, "eq")

    def __ne__(self, other: Any) -> RowSeries:  # type: ignore[override]
        return self._compare(other, "ne")

    def __lt__(self, other: Any) -> RowSeries:
        return self._compare(other, "lt")

    def __le__(self, other: Any) -> RowSeries:
        return self._compare(other, "le")

    def __gt__(self, other: Any) -> RowSeries:
        return self._compare(other, "gt")

    def __ge__(self, other: Any) -> RowSeries:
        return self._compare(other, "ge")

    __hash__ = None  # type: ignore[assignment]

    def _logical(self, other: Any, name: str) -> RowSeries:
        right, right_kind = self._operand(other)
        if self.kind != "bool" or right_kind != "bool":
            raise Unsupported(f"Series.__{name}__ on {self.kind} and {right_kind}")
        return RowSeries(_LOGICAL[name](self.values, right))

    def __and__(self, other: Any) -> RowSeries:
        return self._logical(other, "and")

    __rand__ = __and__

    def __or__(self, other: Any) -> RowSeries:
        return self._logical(other, "or")

    __ror__ = __or__

    def __xor__(self, other: Any) -> RowSeries:
        return self._logical(other, "xor")

    __rxor__ = __xor__

    # -- NumPy ---------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any
                        ) -> RowSeries:
        if method != "__call__" or kwargs or ufunc.nout != 1:
            raise Unsupported(f"np.{ufunc.__name__}.{method} with {sorted(kwargs)}")
        arrays = [self._ufunc_input(x) for x in inputs]
        with np.errstate(all="ignore"):
            out = ufunc(*arrays)
        if out.dtype.kind not in "fiub":
            raise Unsupported(f"np.{ufunc.__name__} giving {out.dtype}")
        return RowSeries(out)

    def _ufunc_input(self, value: Any) -> Any:
        if isinstance(value, RowSeries):
            if value.kind not in _NUMERIC_OR_BOOL or len(value) != len(self):
                raise Unsupported(f"a NumPy function on a Series of {value.kind}")
            return value.values
        number, kind = scalar(value)
        if kind not in _NUMERIC_OR_BOOL:
            raise Unsupported(f"a NumPy function on a {kind} scalar")
        return number

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        if func is np.where and len(args) == 3 and not kwargs:
            return _np_where(*args)
        raise Unsupported(f"np.{func.__name__}")

    # -- methods -------------------------------------------------------------------------
    def isna(self) -> RowSeries:
        kind = self.kind
        if kind == "float":
            return RowSeries(np.isnan(self.values))
        if kind == "datetime":
            return RowSeries(np.isnat(self.values))
        if kind in ("text", "object", "none"):
            return RowSeries(np.array([v is None for v in self.values], dtype=bool))
        return RowSeries(np.zeros(len(self), dtype=bool))

    isnull = isna

    def notna(self) -> RowSeries:
        return RowSeries(np.logical_not(self.isna().values))

    notnull = notna

    def fillna(self, value: Any = None, **kwargs: Any) -> RowSeries:
        if kwargs or value is None:
            raise Unsupported(f"Series.fillna with {sorted(kwargs) or 'no value'}")
        fill, fill_kind = scalar(value)
        kind = self.kind
        if kind in ("int", "bool"):
            return self.copy()
        if kind == "float" and fill_kind in NUMERIC:
            return RowSeries(np.where(np.isnan(self.values), float(fill), self.values))
        if kind in ("text", "none") and fill_kind == "text":  # none: pandas' object of str
            return RowSeries(np.array([fill if v is None else v for v in self.values],
                                      dtype=object), is_text=True)
        raise Unsupported(f"Series.fillna of {kind} with {fill_kind}")

    def where(self, cond: Any, other: Any = math.nan, **kwargs: Any) -> RowSeries:
        if kwargs:
            raise Unsupported(f"Series.where with {sorted(kwargs)}")
        mask = self._condition(cond)
        if mask.all():
            return self.copy()
        if callable(other):
            other = other(self)
        return _where(self, mask, other)

    def mask(self, cond: Any, other: Any = math.nan, **kwargs: Any) -> RowSeries:
        if kwargs:
            raise Unsupported(f"Series.mask with {sorted(kwargs)}")
        keep = np.logical_not(self._condition(cond))
        if keep.all():
            return self.copy()
        if callable(other):
            other = other(self)
        return _where(self, keep, other)

    def _condition(self, cond: Any) -> np.ndarray:
        if callable(cond):
            cond = cond(self)
        if not isinstance(cond, RowSeries) or cond.kind != "bool" or len(cond) != len(self):
            raise Unsupported("Series.where/mask with a condition other than a bool Series")
        return cond.values

    def astype(self, dtype: Any, **kwargs: Any) -> RowSeries:
        try:
            target = _ASTYPE_TARGETS.get(dtype)
        except TypeError:  # unhashable (a dict of dtypes)
            target = None
        kind = self.kind
        if kwargs or target is None or kind in ("datetime", "object", "none"):
            raise Unsupported(f"Series.astype({dtype!r}) of {kind}")
        if target == "str":
            return _to_text(self)
        if kind == "text":
            raise Unsupported(f"Series.astype({dtype!r}) of text")
        if target == "int":
            if kind == "float" and not np.isfinite(self.values).all():
                raise ValueError("Cannot convert non-finite values (NA or inf) to integer")
            return RowSeries(self.values.astype(np.int64))
        return RowSeries(self.values.astype(np.float64 if target == "float" else bool))

    def map(self, arg: Any, na_action: str | None = None) -> RowSeries:
        if self.kind in ("datetime", "object", "none"):
            raise Unsupported(f"Series.map on {self.kind}")
        if type(arg) is dict:
            return _map_dict(self.values.tolist(), arg)
        if callable(arg) and not isinstance(arg, (Mapping, pd.Series)):
            out = [v if na_action == "ignore" and columns.is_missing(v) else arg(v)
                   for v in self._text_values()]
        else:
            raise Unsupported(f"Series.map with a {type(arg).__name__}")
        return RowSeries(*columns.infer(out))


    def apply(self, func: Callable[..., Any], convert_dtype: Any = NO_DEFAULT,
              args: tuple[Any, ...] = (), **kwargs: Any) -> RowSeries:
        if not callable(func) or convert_dtype is not NO_DEFAULT:
            raise Unsupported("Series.apply with a non-callable or convert_dtype")
        return self.map(lambda v: func(v, *args, **kwargs))

    def replace(self, to_replace: Any = None, value: Any = NO_DEFAULT, *, regex: bool = False
                ) -> RowSeries:
        if regex:
            raise Unsupported("Series.replace(regex=True)")
        mapping = _replacements(to_replace, value)
        kind = self.kind
        items = self.values.tolist()
        hits = [v in mapping for v in items] if kind != "float" else [
            v == v and v in mapping for v in items]
        if not any(hits):
            return self.copy()
        new = [mapping[v] for v, hit in zip(items, hits, strict=True) if hit]
        out = [mapping[v] if hit else v for v, hit in zip(items, hits, strict=True)]
        if kind == "text" and all(isinstance(x, str) or x is None for x in new):
            return RowSeries(np.array(out, dtype=object), is_text=True)
        if kind == "float" and all(_kind_of(x) in NUMERIC for x in new):
            return RowSeries(np.array(out, dtype=np.float64))
        if kind == "int" and all(_kind_of(x) in NUMERIC for x in new):
            lossless = all(float(x).is_integer() for x in new)
            return RowSeries(np.array(out, dtype=np.int64 if lossless else np.float64))
        raise Unsupported(f"Series.replace on {kind} with these values")

    def clip(self, lower: Any = None, upper: Any = None, **kwargs: Any) -> RowSeries:
        kind = self.kind
        if kwargs or kind not in NUMERIC:
            raise Unsupported(f"Series.clip of {kind} with {sorted(kwargs)}")
        bounds = [self._clip_bound(b) for b in (lower, upper)]
        low = -np.inf if bounds[0] is None else bounds[0]
        high = np.inf if bounds[1] is None else bounds[1]
        if kind == "int":
            if bounds[0] is None or bounds[1] is None:
                raise Unsupported("Series.clip of int with one bound")
            return RowSeries(np.clip(self.values, int(low), int(high)))
        return RowSeries(np.clip(self.values, low, high))

    def _clip_bound(self, bound: Any) -> Any:
        if bound is None:
            return None
        value, kind = scalar(bound)
        if kind not in NUMERIC or value != value or (
                self.kind == "int" and not float(value).is_integer()):
            raise Unsupported(f"Series.clip with a bound {bound!r}")
        return value

    def round(self, decimals: int = 0) -> RowSeries:
        if self.kind not in NUMERIC:
            raise Unsupported(f"Series.round of {self.kind}")
        return RowSeries(np.round(self.values, decimals))

    def between(self, left: Any, right: Any, inclusive: str = "both") -> RowSeries:
        if self.kind not in NUMERIC or inclusive not in ("both", "neither", "left", "right"):
            raise Unsupported(f"Series.between on {self.kind}, inclusive={inclusive!r}")
        lower = (self >= left) if inclusive in ("both", "left") else (self > left)
        upper = (self <= right) if inclusive in ("both", "right") else (self < right)
        return lower & upper

    def isin(self, values: Iterable[Any]) -> RowSeries:
        if isinstance(values, str) or not isinstance(values, (list, tuple, set, frozenset)):
            raise TypeError("only list-like objects are allowed to be passed to isin()")
        wanted = list(values)
        kind = self.kind
        if kind == "none" and not any(columns.is_missing(w) for w in wanted):
            return RowSeries(np.zeros(len(self), dtype=bool))
        if kind == "text" and all(isinstance(w, str) for w in wanted):
            chosen = set(wanted)
            return RowSeries(np.array([v in chosen for v in self.values], dtype=bool))
        if kind in NUMERIC and all(_kind_of(w) in NUMERIC for w in wanted):
            numbers_ = [w for w in wanted if w == w]
            found = np.isin(self.values, numbers_) if numbers_ else np.zeros(len(self), bool)
            if kind == "float" and len(numbers_) < len(wanted):
                found = found | np.isnan(self.values)
            return RowSeries(found)
        raise Unsupported(f"Series.isin on {kind} with these values")

    @property
    def str(self) -> Any:
        if self.kind not in ("text", "object"):
            raise AttributeError("Can only use .str accessor with string values!")
        return ACCESSORS["str"](self)

    @property
    def dt(self) -> Any:
        if self.kind != "datetime":
            raise AttributeError("Can only use .dt accessor with datetimelike values")
        return ACCESSORS["dt"](self)


def _map_dict(items: list[Any], mapping: dict[Any, Any]) -> RowSeries:
    """``Series.map(dict)`` as pandas: the dtype is the dict values' (as a Series), made
    ``float64`` (numbers) when an item is not found."""
    if not mapping:
        return RowSeries(np.full(len(items), np.nan))
    if any(columns.is_missing(k) for k in mapping):
        raise Unsupported("Series.map with a missing value as a key")
    values, is_text = columns.infer(list(mapping.values()))
    out = [None if columns.is_missing(v) else mapping.get(v) for v in items]
    if is_text:
        return RowSeries(np.array(out, dtype=object), is_text=True)
    missing = any(o is None for o in out)
    if values.dtype.kind == "b":
        if missing:
            raise Unsupported("Series.map to booleans with items not found")  # object
        return RowSeries(np.array(out, dtype=bool))
    if values.dtype.kind == "i" and not missing:
        return RowSeries(np.array(out, dtype=np.int64))
    return RowSeries(np.array([np.nan if o is None else o for o in out], dtype=np.float64))


def _kind_of(value: Any) -> str:
    try:
        return scalar(value)[1]
    except Unsupported:
        return "other"


def _concat(left: Any, right: Any, n: int) -> RowSeries:
    lefts = left if isinstance(left, np.ndarray) else [left] * n
    rights = right if isinstance(right, np.ndarray) else [right] * n
    out = [None if a is None or b is None else a + b for a, b in zip(lefts, rights, strict=True)]
    return RowSeries(np.array(out, dtype=object), is_text=True)


def _compare_text(values: np.ndarray, right: Any, name: str) -> np.ndarray:
    op = _TEXT_COMPARISON[name]
    missing = name == "ne"  # pandas: a missing value is != everything, == and < nothing
    rights = right if isinstance(right, np.ndarray) else [right] * len(values)
    return np.array([missing if a is None or b is None else op(a, b)
                     for a, b in zip(values, rights, strict=True)], dtype=bool)


def _where(series: RowSeries, keep: np.ndarray, other: Any) -> RowSeries:
    kind = series.kind
    if isinstance(other, RowSeries):
        if len(other) != len(series):
            raise Unsupported("Series.where with another length")
        other_values, other_kind = other.values, other.kind
    elif columns.is_missing(other):
        other_values, other_kind = None, "missing"
    else:
        other_values, other_kind = scalar(other)
    if kind == "text" and other_kind in ("text", "missing"):
        others = other_values if other_kind == "text" and isinstance(
            other_values, np.ndarray) else [other_values] * len(series)
        out = [v if k else o for v, k, o in zip(series.values, keep, others, strict=True)]
        return RowSeries(np.array(out, dtype=object), is_text=True)
    if other_kind == "missing" and kind in NUMERIC:
        return RowSeries(np.where(keep, series.values.astype(np.float64), np.nan))
    if kind == "float" and other_kind in NUMERIC:
        return RowSeries(np.where(keep, series.values, other_values).astype(np.float64))
    if kind == "int" and (other_kind == "int" or (
            other_kind == "float" and not isinstance(other_values, np.ndarray)
            and float(other_values).is_integer())):
        return RowSeries(np.where(keep, series.values, other_values).astype(np.int64))
    if kind == other_kind == "bool":
        return RowSeries(np.where(keep, series.values, other_values))
    raise Unsupported(f"Series.where of {kind} with {other_kind}")


class NumpyResult(RowSeries):
    """What ``np.where`` gives: in pandas a NumPy array, not a Series, so only operators and
    assignment to a column behave alike; its methods are left to pandas."""

    __slots__ = ()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("_") or name in ("values", "is_text", "kind", "origin"):
            return super().__getattribute__(name)
        raise Unsupported(f"ndarray.{name} (on the result of np.where)")

    def _as_array(self, result: RowSeries, other: Any = None) -> RowSeries:
        # an array with an array or a scalar gives an array; with a Series, a Series
        if isinstance(other, RowSeries) and not isinstance(other, NumpyResult):
            return result
        return NumpyResult(result.values, result.is_text)

    def _arithmetic(self, other: Any, name: str, reflected: bool = False) -> RowSeries:
        return self._as_array(super()._arithmetic(other, name, reflected), other)

    def _compare(self, other: Any, name: str) -> RowSeries:
        return self._as_array(super()._compare(other, name), other)

    def _logical(self, other: Any, name: str) -> RowSeries:
        return self._as_array(super()._logical(other, name), other)

    def __neg__(self) -> RowSeries:
        return self._as_array(super().__neg__())

    def __abs__(self) -> RowSeries:
        return self._as_array(super().__abs__())

    def __invert__(self) -> RowSeries:
        return self._as_array(super().__invert__())

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any
                        ) -> RowSeries:
        result = super().__array_ufunc__(ufunc, method, *inputs, **kwargs)
        series = [x for x in inputs if isinstance(x, RowSeries)
                  and not isinstance(x, NumpyResult)]
        return result if series else self._as_array(result)


def _np_where(cond: Any, x: Any, y: Any) -> RowSeries:
    if not isinstance(cond, RowSeries) or cond.kind != "bool":
        raise Unsupported("np.where with a condition other than a bool Series")
    n = len(cond)
    parts = []
    for value in (x, y):
        if isinstance(value, RowSeries):
            if len(value) != n or value.kind in ("datetime", "object", "none"):
                raise Unsupported("np.where over these Series")
            parts.append((value.values, value.kind))
        else:
            parts.append(scalar(value))
    if any(kind == "text" for _, kind in parts):
        if not all(kind == "text" for _, kind in parts):
            raise Unsupported("np.where mixing text and numbers")
        picks = [v if isinstance(v, np.ndarray) else [v] * n for v, _ in parts]
        out = [a if c else b for c, a, b in zip(cond.values, *picks, strict=True)]
        return NumpyResult(np.array(out, dtype=object), is_text=True)
    return NumpyResult(np.where(cond.values, parts[0][0], parts[1][0]))


def _to_text(series: RowSeries) -> RowSeries:
    kind = series.kind
    if kind == "text":
        return series.copy()
    items = series.values.tolist()
    if kind == "float":
        out = [None if v != v else str(v) for v in items]
    else:
        out = [str(v) for v in items]
    return RowSeries(np.array(out, dtype=object), is_text=True)


def _replacements(to_replace: Any, value: Any) -> dict[Any, Any]:
    if isinstance(to_replace, dict) and value is NO_DEFAULT:
        mapping = dict(to_replace)
    elif value is NO_DEFAULT or isinstance(value, (dict, set)):
        raise Unsupported("Series.replace without a value")
    elif isinstance(to_replace, (list, tuple)):
        values = list(value) if isinstance(value, (list, tuple)) else [value] * len(to_replace)
        if len(values) != len(to_replace):
            raise ValueError("Replacement lists must match in length.")
        mapping = dict(zip(to_replace, values, strict=True))
    else:
        mapping = {to_replace: value}
    if any(columns.is_missing(k) or isinstance(k, dict) for k in mapping):
        raise Unsupported("Series.replace of a missing value")
    return mapping
