"""``Series.str`` in the row layout: Python string methods and ``re``, as pandas 3 gives them.

pandas 3 keeps text in PyArrow (its ``str`` dtype) and runs most methods as PyArrow compute
kernels; the row layout uses Python's own methods, which agree with those kernels on ASCII
text. Where they may not:

- ``lower``/``upper``/``strip()`` on non-ASCII text run the same PyArrow kernels pandas runs
  (Unicode case mapping and whitespace differ between Python and utf8proc);
- regular expressions always run on Python's ``re``: pandas itself routes every pattern whose
  RE2 result could differ from Python's to ``re``, so the two agree; ``str.replace`` with a
  pattern that can match the empty string, or a replacement with backslashes, is left to
  pandas (RE2 and ``re`` substitute such matches differently).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from dripml.frame.fallback import Unsupported
from dripml.frame.series import NO_DEFAULT, RowAccessor, RowSeries, accessor

_ARROW_WHITESPACE = " \t\n\x0b\x0c\r"
"""What PyArrow's ``utf8_trim_whitespace`` strips from ASCII text (Python's ``str.strip()``
also strips ``\\x1c``-``\\x1f``)."""


@accessor("str")
class StringMethods(RowAccessor):
    """``series.str`` of a text (or, for ``len``/``get``, a list) :class:`RowSeries`."""

    __slots__ = ()

    # -- helpers -------------------------------------------------------------------------
    def _text(self) -> np.ndarray:
        if not self._series.is_text:
            raise Unsupported("Series.str on lists")
        return self._series.values

    def _map(self, func: Callable[[str], Any]) -> list[Any]:
        return [None if v is None else func(v) for v in self._text()]

    def _to_text(self, func: Callable[[str], Any]) -> RowSeries:
        return RowSeries(np.array(self._map(func), dtype=object), is_text=True)

    def _to_bool(self, func: Callable[[str], bool]) -> RowSeries:
        # pandas 3's str dtype: a missing value is False in a boolean result
        return RowSeries(np.array([False if v is None else func(v) for v in self._text()],
                                  dtype=bool))

    def _ascii(self) -> bool:
        return all(v is None or v.isascii() for v in self._text())

    def _arrow(self, kernel: str, python: Callable[[str], str]) -> RowSeries:
        """PyArrow's ``kernel`` (``utf8_lower``...), as pandas' pyarrow-backed ``str`` runs
        it; without pyarrow (the serving image installs none), pandas' ``str`` dtype is
        backed by Python strings and runs ``python``, and so does this."""
        try:
            import pyarrow as pa  # imported here: the serving path must not need it
            import pyarrow.compute as pc
        except ImportError:
            return self._to_text(python)
        array = pa.array(self._text().tolist(), type=pa.large_string())
        return RowSeries(np.array(getattr(pc, kernel)(array).to_pylist(), dtype=object),
                         is_text=True)

    # -- case and whitespace -------------------------------------------------------------
    def lower(self) -> RowSeries:
        return self._to_text(str.lower) if self._ascii() else self._arrow("utf8_lower", str.lower)

    def upper(self) -> RowSeries:
        return self._to_text(str.upper) if self._ascii() else self._arrow("utf8_upper", str.upper)

    def strip(self, to_strip: str | None = None) -> RowSeries:
        if to_strip is not None:
            return self._to_text(lambda v: v.strip(to_strip))
        if self._ascii():
            return self._to_text(lambda v: v.strip(_ARROW_WHITESPACE))
        return self._arrow("utf8_trim_whitespace", str.strip)

    def lstrip(self, to_strip: str | None = None) -> RowSeries:
        if to_strip is not None:
            return self._to_text(lambda v: v.lstrip(to_strip))
        if self._ascii():
            return self._to_text(lambda v: v.lstrip(_ARROW_WHITESPACE))
        return self._arrow("utf8_ltrim_whitespace", str.lstrip)

    def rstrip(self, to_strip: str | None = None) -> RowSeries:
        if to_strip is not None:
            return self._to_text(lambda v: v.rstrip(to_strip))
        if self._ascii():
            return self._to_text(lambda v: v.rstrip(_ARROW_WHITESPACE))
        return self._arrow("utf8_rtrim_whitespace", str.rstrip)

    # -- lengths and pieces --------------------------------------------------------------
    def len(self) -> RowSeries:
        lengths = [None if v is None else len(v) for v in self._series.values]
        if any(n is None for n in lengths):
            return RowSeries(np.array([np.nan if n is None else n for n in lengths],
                                      dtype=np.float64))
        return RowSeries(np.array(lengths, dtype=np.int64))

    def count(self, pat: str | re.Pattern[str], flags: int = 0) -> RowSeries:
        compiled = _compile(pat, True, flags)
        if compiled.search("") is not None:
            raise Unsupported("Series.str.count with an empty-matching pattern")
        counts = self._map(lambda v: len(compiled.findall(v)))
        if any(c is None for c in counts):
            return RowSeries(np.array([np.nan if c is None else c for c in counts],
                                      dtype=np.float64))
        return RowSeries(np.array(counts, dtype=np.int64))

    def slice(self, start: int | None = None, stop: int | None = None,
              step: int | None = None) -> RowSeries:
        if start is None:
            start = -1 if step is not None and step < 0 else 0
        return self._to_text(lambda v: v[start:stop:step])

    def get(self, i: int) -> RowSeries:
        if not isinstance(i, int):
            raise Unsupported("Series.str.get with a non-integer key")
        out = [v[i] if v is not None and -len(v) <= i < len(v) else None
               for v in self._series.values]
        if not all(x is None or isinstance(x, str) for x in out):
            raise Unsupported("Series.str.get of non-text items")
        # items of lists make an object column in pandas, not a str one: it stays "object"
        return RowSeries(np.array(out, dtype=object), is_text=self._series.is_text)

    def split(self, pat: str | None = None, *, n: int = -1, expand: bool = False,
              regex: bool | None = None) -> RowSeries:
        if expand or regex or (pat is not None and (not isinstance(pat, str) or len(pat) != 1)):
            raise Unsupported("Series.str.split with expand, a regex or a long separator")
        if all(v is None for v in self._text()):
            raise Unsupported("Series.str.split of missing values only")  # pandas: float
        maxsplit = -1 if n is None or n <= 0 else n
        out = np.empty(len(self._series), dtype=object)
        out[:] = self._map(lambda v: v.split(pat, maxsplit))
        return RowSeries(out)

    # -- matching ------------------------------------------------------------------------
    def startswith(self, pat: str | tuple[str, ...], na: Any = NO_DEFAULT) -> RowSeries:
        if na is not NO_DEFAULT or not isinstance(pat, (str, tuple)):
            raise Unsupported("Series.str.startswith with na or a non-string pattern")
        return self._to_bool(lambda v: v.startswith(pat))

    def endswith(self, pat: str | tuple[str, ...], na: Any = NO_DEFAULT) -> RowSeries:
        if na is not NO_DEFAULT or not isinstance(pat, (str, tuple)):
            raise Unsupported("Series.str.endswith with na or a non-string pattern")
        return self._to_bool(lambda v: v.endswith(pat))

    def contains(self, pat: str | re.Pattern[str], case: bool = True, flags: int = 0,
                 na: Any = NO_DEFAULT, regex: bool = True) -> RowSeries:
        if na is not NO_DEFAULT:
            raise Unsupported("Series.str.contains with na")
        if regex:
            compiled = _compile(pat, case, flags)
            return self._to_bool(lambda v: compiled.search(v) is not None)
        if not isinstance(pat, str) or flags or (not case and not self._ascii()):
            raise Unsupported("Series.str.contains(regex=False) with these options")
        if case:
            return self._to_bool(lambda v: pat in v)
        folded = pat.lower()
        return self._to_bool(lambda v: folded in v.lower())

    def replace(self, pat: str | re.Pattern[str], repl: str | Callable[..., str],
                n: int = -1, case: bool | None = None, flags: int = 0, regex: bool = False
                ) -> RowSeries:
        if regex or isinstance(pat, re.Pattern):
            compiled = _compile(pat, case is not False, flags)
            if compiled.search("") is not None or (isinstance(repl, str) and "\\" in repl):
                raise Unsupported("Series.str.replace with an empty-matching pattern or "
                                  "backslashes in the replacement")
            count = max(n, 0)
            return self._to_text(lambda v: compiled.sub(repl, v, count=count))
        if not isinstance(pat, str) or not isinstance(repl, str) or not pat or (
                case is False) or flags:
            raise Unsupported("Series.str.replace(regex=False) with these options")
        return self._to_text(lambda v: v.replace(pat, repl, n))


def _compile(pat: str | re.Pattern[str], case: bool, flags: int) -> re.Pattern[str]:
    if isinstance(pat, re.Pattern):
        if flags or not case:
            raise Unsupported("a compiled pattern with flags or case")
        return pat
    if not isinstance(pat, str):
        raise Unsupported(f"a pattern of type {type(pat).__name__}")
    return re.compile(pat, flags | (0 if case else re.IGNORECASE))
