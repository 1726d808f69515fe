"""Feature schema and encoder: rows -> one numeric matrix, the same for training and serving.

The encoder is fitted once on the training frame. It turns either a pandas DataFrame
(training, vectorised) or a list of JSON records (serving, pure Python: building a one-row
DataFrame per request costs about 1 ms, twenty times a GBM's prediction) into the same
matrix, column for column:

- numeric feature -> float, NaN when missing;
- categorical feature -> its code (0..n-1, categories sorted by frequency then name), NaN when
  missing or unseen in training (an unseen value is reported, see below);
- text feature -> the string itself ("" when missing), cleaned by the column's
  :class:`~dripml.core.text.TextRules` (``data.text`` in the spec: strip URLs, @handles, #tags,
  lowercase); the matrix is then of dtype object. The rules live in the fitted encoder, so
  serving cleans records exactly as training cleaned rows;
- datetime feature (datetime64 columns, ISO-8601 strings such as ``2013-01-01T10:00:00Z`` or
  ``2013-01-01``) -> several numeric columns named ``<name>.<part>``: days since 1970-01-01
  (``epoch_days``, fractional), year, month, day, day of week (Monday = 0) and, when
  training holds times other than midnight, hour. Aware
  values are converted to UTC first, naive ones are read as they are; missing or
  unparseable values give NaN in every part. Strings are parsed with
  :meth:`datetime.datetime.fromisoformat` on both paths, so they agree to the bit.

Values that are given but read as missing (a category unseen in training, a datetime string
that does not read as one) are legal input, yet a caller should hear about them:
:meth:`TabularEncoder.encode` and :meth:`TabularEncoder.encode_records` return the matrix with
one :class:`InputIssue` per feature that had such values (``workclass: 1 unseen category
('Space-agency') read as missing``); :meth:`~TabularEncoder.transform` and
:meth:`~TabularEncoder.transform_records` return the matrix alone. Numeric values never become
missing silently: the frame path raises :class:`~dripml.errors.DataError` on non-numbers and
records are validated as numbers before they get here.

A datetime feature makes the matrix wider than the input: :attr:`TabularEncoder.names` are the
input columns (what a request must hold), :attr:`TabularEncoder.encoded_names` the matrix's.
What the fit decided that a user should know (levels merged, datetime columns found, and the
identifier columns :func:`identifier_note` had dropped before) is logged and kept in
:attr:`TabularEncoder.notes`.

Algorithms receive that matrix plus a :class:`ColumnLayout` telling which positions hold which
kind, and build their own preprocessing on top (one-hot, target encoding, scaling, TF-IDF).

Encoders pickled before a field or attribute existed load with its default (class-level
defaults), so old registered models keep serving.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd

from dripml.core.text import TextRules
from dripml.errors import DataError

logger = logging.getLogger(__name__)

Kind = Literal["numeric", "categorical", "text", "datetime"]

MAX_CATEGORIES = 10_000
"""Most frequent levels kept per categorical column; the rarer ones are merged into "unseen"
(NaN code), and the fit says so. Columns this large reach every algorithm target encoded
(see :mod:`dripml.algorithms.preprocessing`), so the bound is on memory, not on a model."""

DATE_PARTS = ("epoch_days", "year", "month", "day", "dayofweek")
"""Parts every datetime feature gets; ``hour`` follows when training holds non-midnight times."""

ISO_SAMPLE_ROWS = 1_000
"""Non-null values of a string column sampled to tell whether it holds ISO-8601 dates."""

ISO_MIN_SHARE = 0.95
"""Share of that sample that must parse for the column to be read as datetime."""

IDENTIFIER_MIN_ROWS = 1_000
"""Non-null rows a column needs before it can be called an identifier (fewer prove little)."""

IDENTIFIER_MIN_UNIQUE_SHARE = 0.99
"""Share of non-null rows holding a distinct value above which a column is an identifier."""

# Extended ISO-8601 calendar date at the start: keeps "20130101"-like codes out of inference.
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True)
class Feature:
    """One input column: its name, kind and, for categoricals, the known categories (most
    frequent first); for datetimes, the parts it is encoded as (``DATE_PARTS`` [+ hour])."""

    name: str
    kind: Kind
    categories: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Columns this feature takes in the encoded matrix."""
        return len(self.parts) if self.kind == "datetime" else 1

    @property
    def encoded_names(self) -> tuple[str, ...]:
        """Its column names in the encoded matrix: the name, or ``name.part`` per part."""
        if self.kind == "datetime":
            return tuple(f"{self.name}.{part}" for part in self.parts)
        return (self.name,)


@dataclass(frozen=True)
class ColumnLayout:
    """Positions of each kind of column in the encoded matrix (shape (n_rows, n_columns)).

    Attributes:
        numeric: numeric positions, datetime parts included.
        categorical: category-code positions.
        text: text positions.
        cardinalities: known levels per categorical position, in ``categorical`` order.
        names: the column name of every position (``time_hour.year`` for a datetime part);
            () in layouts pickled before it existed.
        datetime_features: input columns encoded as datetime parts.
    """

    numeric: tuple[int, ...]
    categorical: tuple[int, ...]
    text: tuple[int, ...]
    cardinalities: tuple[int, ...] = field(default=())
    names: tuple[str, ...] = field(default=())
    datetime_features: tuple[str, ...] = field(default=())

    @property
    def tabular(self) -> tuple[int, ...]:
        return tuple(sorted(self.numeric + self.categorical))

    def name(self, position: int) -> str:
        """The column name at ``position`` (``column <position>`` in an old layout)."""
        return self.names[position] if position < len(self.names) else f"column {position}"

    def levels(self, position: int) -> int:
        """Known levels of the categorical column at ``position``.

        Raises:
            ValueError: ``position`` is not a categorical position.
        """
        return self.cardinalities[self.categorical.index(position)]


IssueReason = Literal["unseen category", "unreadable date"]

MAX_ISSUE_EXAMPLES = 3
"""Distinct values an :class:`InputIssue` message quotes."""

_NOUNS: dict[str, tuple[str, str]] = {
    "unseen category": ("unseen category", "unseen categories"),
    "unreadable date": ("unreadable date", "unreadable dates"),
}


@dataclass(frozen=True)
class InputIssue:
    """Values of one feature that were given but read as missing, in one encoding call.

    Attributes:
        feature: the input column.
        reason: ``"unseen category"`` (a categorical value not among the training levels) or
            ``"unreadable date"`` (a datetime value that does not read as ISO-8601).
        rows: positions of the affected rows in the call's input, ascending.
        values: the value each affected row gave, as text, parallel to ``rows``.
    """

    feature: str
    reason: IssueReason
    rows: tuple[int, ...]
    values: tuple[str, ...]

    @property
    def count(self) -> int:
        """Values read as missing (one per affected row)."""
        return len(self.rows)

    @property
    def examples(self) -> tuple[str, ...]:
        """The first :data:`MAX_ISSUE_EXAMPLES` distinct values, in row order."""
        return tuple(dict.fromkeys(self.values))[:MAX_ISSUE_EXAMPLES]

    def message(self) -> str:
        """One line: ``workclass: 1 unseen category ('Space-agency') read as missing``;
        ``... 5 unseen categories ('a', 'b', 'c', 2 more) ...`` past the examples."""
        noun = _NOUNS[self.reason][self.count != 1]
        shown = self.examples
        rest = len(set(self.values)) - len(shown)
        quoted = ", ".join(repr(v) for v in shown) + (f", {rest} more" if rest else "")
        return f"{self.feature}: {self.count} {noun} ({quoted}) read as missing"


def split_issues(issues: Sequence[InputIssue], n_rows: int) -> list[tuple[InputIssue, ...]]:
    """Per row of the call (``n_rows`` of them), that row's issues (``rows`` renumbered 0)."""
    per_row: list[list[InputIssue]] = [[] for _ in range(n_rows)]
    for issue in issues:
        for row, value in zip(issue.rows, issue.values, strict=True):
            per_row[row].append(InputIssue(issue.feature, issue.reason, (0,), (value,)))
    return [tuple(r) for r in per_row]


def join_issues(parts: Sequence[Sequence[InputIssue]], sizes: Sequence[int]
                ) -> tuple[InputIssue, ...]:
    """Issues of consecutive calls (``sizes[k]`` rows each) as the issues of one call over all
    their rows: one issue per (feature, reason), in order of first appearance."""
    grouped: dict[tuple[str, IssueReason], tuple[list[int], list[str]]] = {}
    offset = 0
    for issues, size in zip(parts, sizes, strict=True):
        for issue in issues:
            rows, values = grouped.setdefault((issue.feature, issue.reason), ([], []))
            rows.extend(offset + r for r in issue.rows)
            values.extend(issue.values)
        offset += size
    return tuple(InputIssue(feature, reason, tuple(rows), tuple(values))
                 for (feature, reason), (rows, values) in grouped.items())


@dataclass(frozen=True)
class Encoded:
    """An encoded matrix and what the encoding read as missing.

    Attributes:
        matrix: shape (n_rows, len(encoded_names)); float64, object when there is text.
        issues: one per (feature, reason) that had values read as missing, in feature order;
            () when none.
    """

    matrix: np.ndarray
    issues: tuple[InputIssue, ...] = ()


def infer_kinds(frame: pd.DataFrame, overrides: Mapping[str, Kind]) -> dict[str, Kind]:
    """Kind per column: overrides first, numbers (not bool) numeric, datetime64 columns and
    strings that read as ISO-8601 dates (see :func:`looks_like_datetime`) datetime,
    everything else categorical."""
    kinds: dict[str, Kind] = {}
    for name in frame.columns:
        column = frame[name]
        if name in overrides:
            kinds[name] = overrides[name]
        elif _is_number(column):
            kinds[name] = "numeric"
        elif looks_like_datetime(column):
            kinds[name] = "datetime"
        else:
            kinds[name] = "categorical"
    return kinds


def looks_like_datetime(column: pd.Series) -> bool:
    """Whether a column holds datetimes: a datetime64 dtype, or strings of which at least
    ``ISO_MIN_SHARE`` of the first ``ISO_SAMPLE_ROWS`` non-null values are ISO-8601 dates or
    timestamps (``2013-01-01``, ``2013-01-01T10:00:00Z``). Never a numeric column."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if _is_number(column) or pd.api.types.is_bool_dtype(column):
        return False
    sample = column.dropna().head(ISO_SAMPLE_ROWS)
    if sample.empty:
        return False
    parsed = sum(_instant(v) is not None and (not isinstance(v, str)
                                              or _ISO_DATE.match(v.strip()) is not None)
                 for v in sample)
    return parsed >= ISO_MIN_SHARE * len(sample)


def identifier_note(column: pd.Series, name: str) -> str | None:
    """Why ``column`` looks like a row identifier, or None when it does not.

    An identifier holds integers (an integer dtype, or floats that are all whole numbers) or
    strings, has at least ``IDENTIFIER_MIN_ROWS`` non-null rows and a distinct value in at
    least ``IDENTIFIER_MIN_UNIQUE_SHARE`` of them: it tells rows apart without generalising.
    """
    values = column.dropna()
    if len(values) < IDENTIFIER_MIN_ROWS:
        return None
    if pd.api.types.is_bool_dtype(values):
        return None
    if pd.api.types.is_integer_dtype(values):
        what = "integers"
    elif pd.api.types.is_float_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(numbers) & (numbers == np.floor(numbers))):
            return None
        what = "integers"
    elif pd.api.types.is_string_dtype(values):
        what = "strings"
    else:
        return None
    unique = values.nunique()
    if unique < IDENTIFIER_MIN_UNIQUE_SHARE * len(values):
        return None
    # Free text is unique per row too: name the type that keeps it.
    hint = " (text, if it holds free text)" if what == "strings" else ""
    return (f"column {name!r} looks like an identifier ({unique:,} unique {what} in "
            f"{len(values):,} rows); dropped from the features. Declare its type in "
            f"data.column_types to keep it{hint}.")


class TabularEncoder:
    """Fitted mapping from rows to the encoded matrix; see the module docstring.

    Attributes (after :meth:`fit`):
        features: the input columns in order, with kinds, categories and datetime parts.
        layout: where each kind sits in the encoded matrix.
        notes: what the fit (and the caller, through ``fit(notes=...)``) decided that a user
            should know: identifiers dropped, levels merged, datetime columns found.
    """

    # Class-level default: encoders pickled before notes existed read it from here.
    notes: tuple[str, ...] = ()

    def __init__(self, text_rules: Mapping[str, TextRules] | None = None) -> None:
        """``text_rules``: cleaning per text column name (columns not named: none)."""
        self.features: tuple[Feature, ...] = ()
        self.layout = ColumnLayout((), (), ())
        self._codes: list[dict[str, float] | None] = []
        self.text_rules: dict[str, TextRules] = dict(text_rules or {})
        self.notes = ()

    def _rules(self, name: str) -> TextRules:
        # getattr: encoders pickled before text rules existed have no attribute.
        return getattr(self, "text_rules", {}).get(name, _NO_RULES)

    def fit(self, frame: pd.DataFrame, kinds: Mapping[str, Kind], *,
            notes: Sequence[str] = ()) -> TabularEncoder:
        """Learn categories and datetime parts from ``frame`` (training rows only).

        Args:
            frame: the feature columns, shape (n_rows, n_features).
            kinds: the kind of every column of ``frame``.
            notes: what the caller decided before (e.g. identifier columns it dropped), kept
                in front of the fit's own notes.

        Raises:
            DataError: a column declared numeric holds values that are not numbers, or one
                declared datetime holds no value that reads as a date.
        """
        own: list[str] = []
        features = [self._fit_feature(frame[name], name, kinds[name], own)
                    for name in frame.columns]
        self.features = tuple(features)
        self.notes = (*notes, *own)
        self._codes = [
            {c: float(i) for i, c in enumerate(f.categories)} if f.kind == "categorical" else None
            for f in self.features
        ]
        self.layout = _layout(self.features)
        return self

    @staticmethod
    def _fit_feature(column: pd.Series, name: str, kind: Kind, notes: list[str]) -> Feature:
        if kind == "numeric":
            _check_numeric(column, name)
            return Feature(name, "numeric")
        if kind == "categorical":
            return Feature(name, "categorical", _categories(column, name, notes))
        if kind == "datetime":
            return Feature(name, "datetime", parts=_datetime_parts(column, name, notes))
        return Feature(name, "text")

    @property
    def names(self) -> list[str]:
        """The input columns, in order: what a frame or a record must hold."""
        return [f.name for f in self.features]

    @property
    def encoded_names(self) -> list[str]:
        """The encoded matrix's column names (``time_hour.year`` for a datetime part)."""
        return [n for f in self.features for n in f.encoded_names]

    @property
    def dtype(self) -> type:
        return object if self.layout.text else np.float64

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """Encode a DataFrame holding (at least) the feature columns: :meth:`encode`'s
        matrix, shape (n_rows, len(encoded_names)); float64, object when there is text.

        Raises:
            DataError: a feature column is missing, or a numeric one holds non-numbers.
        """
        return self.encode(frame).matrix

    def encode(self, frame: pd.DataFrame) -> Encoded:
        """Encode a DataFrame holding (at least) the feature columns, and say which given
        values were read as missing (vectorised checks, one per categorical or datetime
        column).

        Raises:
            DataError: a feature column is missing, or a numeric one holds non-numbers.
        """
        missing = [n for n in self.names if n not in frame.columns]
        if missing:
            raise DataError(f"columns {missing} are missing; expected features: {self.names}")
        out = np.empty((len(frame), len(self.encoded_names)), dtype=self.dtype)
        issues: list[InputIssue] = []
        j = 0
        for feature, codes in zip(self.features, self._codes, strict=True):
            column = frame[feature.name]
            if feature.kind == "numeric":
                _check_numeric(column, feature.name)
                out[:, j] = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64)
            elif feature.kind == "categorical":
                given = column.notna().to_numpy()
                as_text = column.astype(object).where(given, None)
                encoded = np.array([codes.get(str(v), math.nan) if v is not None else math.nan
                                    for v in as_text], dtype=np.float64)
                out[:, j] = encoded
                unseen = np.flatnonzero(np.isnan(encoded) & given)
                if len(unseen):
                    issues.append(InputIssue(
                        feature.name, "unseen category", tuple(unseen.tolist()),
                        tuple(str(v) for v in as_text.iloc[unseen])))
            elif feature.kind == "datetime":
                parts, unreadable = _parts_of_column(column, feature.parts)
                out[:, j:j + feature.width] = parts
                if len(unreadable):
                    issues.append(InputIssue(
                        feature.name, "unreadable date", tuple(unreadable.tolist()),
                        tuple(str(v) for v in column.iloc[unreadable])))
            else:
                rules = self._rules(feature.name)
                values = column.fillna("").astype(str).to_numpy(dtype=object)
                out[:, j] = [rules.apply(v) for v in values] if rules.active else values
            j += feature.width
        return Encoded(out, tuple(issues))

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode JSON-like records (already validated) without pandas: :meth:`encode_records`'
        matrix, the same as :meth:`transform`'s, shape (n_records, len(encoded_names))."""
        return self.encode_records(records).matrix

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> Encoded:
        """Encode JSON-like records (already validated) without pandas, and say which given
        values were read as missing; the same matrix and issues as :meth:`encode`.

        Missing keys and None are missing values (not issues). The check costs one
        comparison per categorical value (the code lookup already happens).
        """
        rows = []
        misses: list[tuple[str, IssueReason, int, str]] = []
        for i, record in enumerate(records):
            row: list[Any] = []
            for feature, codes in zip(self.features, self._codes, strict=True):
                value = record.get(feature.name)
                if feature.kind == "numeric":
                    row.append(math.nan if value is None else float(value))
                elif feature.kind == "categorical":
                    if value is None:
                        row.append(math.nan)
                        continue
                    code = codes.get(str(value))
                    if code is None:
                        misses.append((feature.name, "unseen category", i, str(value)))
                        code = math.nan
                    row.append(code)
                elif feature.kind == "datetime":
                    instant = _instant(value)
                    if instant is None and value is not None:
                        misses.append((feature.name, "unreadable date", i, str(value)))
                    row.extend(_parts(instant, feature.parts))
                else:
                    row.append(self._rules(feature.name).apply(
                        "" if value is None else str(value)))
            rows.append(row)
        matrix = np.array(rows, dtype=self.dtype).reshape(len(rows), len(self.encoded_names))
        return Encoded(matrix, self._issues(misses) if misses else ())

    def _issues(self, misses: Sequence[tuple[str, IssueReason, int, str]]
                ) -> tuple[InputIssue, ...]:
        """(feature, reason, row, value) per value read as missing -> issues in feature order."""
        grouped: dict[tuple[str, IssueReason], tuple[list[int], list[str]]] = {}
        for name, reason, row, value in misses:
            rows, values = grouped.setdefault((name, reason), ([], []))
            rows.append(row)
            values.append(value)
        order = {name: k for k, name in enumerate(self.names)}
        return tuple(InputIssue(name, reason, tuple(rows), tuple(values))
                     for (name, reason), (rows, values)
                     in sorted(grouped.items(), key=lambda item: order[item[0][0]]))


def _layout(features: Sequence[Feature]) -> ColumnLayout:
    """Where each feature's columns sit in the encoded matrix."""
    positions: dict[str, list[int]] = {"numeric": [], "categorical": [], "text": []}
    cardinalities = []
    j = 0
    for feature in features:
        # Datetime parts are numbers to every algorithm.
        kind = "numeric" if feature.kind == "datetime" else feature.kind
        positions[kind].extend(range(j, j + feature.width))
        if feature.kind == "categorical":
            cardinalities.append(len(feature.categories))
        j += feature.width
    return ColumnLayout(
        numeric=tuple(positions["numeric"]),
        categorical=tuple(positions["categorical"]),
        text=tuple(positions["text"]),
        cardinalities=tuple(cardinalities),
        names=tuple(n for f in features for n in f.encoded_names),
        datetime_features=tuple(f.name for f in features if f.kind == "datetime"),
    )


def _categories(column: pd.Series, name: str, notes: list[str]) -> tuple[str, ...]:
    """The ``MAX_CATEGORIES`` most frequent levels (ties by name); a note (also logged as a
    warning) when more exist."""
    counts = column.dropna().astype(str).value_counts()
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if len(ordered) > MAX_CATEGORIES:
        merged = ordered[MAX_CATEGORIES:]
        share = sum(n for _, n in merged) / len(column)
        notes.append(f"column {name!r} has {len(ordered):,} levels: the {len(merged):,} "
                     f"rarest, {share:.1%} of training rows, are merged into 'unseen' (only "
                     f"the {MAX_CATEGORIES:,} most frequent are kept)")
        logger.warning(notes[-1])
    return tuple(c for c, _ in ordered[:MAX_CATEGORIES])


def _datetime_parts(column: pd.Series, name: str, notes: list[str]) -> tuple[str, ...]:
    """``DATE_PARTS``, plus hour when a training value is not at midnight; notes (and logs
    at INFO) the column.

    Raises:
        DataError: the column has values but none reads as a date.
    """
    instants = [_instant(v) for v in pd.unique(column.dropna().astype(object))]
    parsed = [i for i in instants if i is not None]
    if instants and not parsed:
        raise DataError(f"column {name!r} is datetime but none of its values reads as an "
                        f"ISO-8601 date (first: {column.dropna().iloc[0]!r}); give values such "
                        "as 2013-01-01 or 2013-01-01T10:00:00Z, or declare another type in "
                        "data.column_types")
    timed = any(i.time() != datetime.min.time() for i in parsed)
    parts = (*DATE_PARTS, "hour") if timed else DATE_PARTS
    unreadable = len(instants) - len(parsed)
    notes.append(f"column {name!r} holds dates; encoded as {', '.join(parts)} (UTC)"
                 + (f"; values that do not read as dates ({unreadable:,} distinct) count "
                    "as missing" if unreadable else ""))
    logger.info(notes[-1])
    return parts


def _instant(value: Any) -> datetime | None:
    """``value`` as a naive UTC datetime: a datetime (aware ones converted to UTC), a date
    (Parquet date columns read as such) or an ISO-8601 string
    (:meth:`datetime.fromisoformat`); None for anything else or missing."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    # pd.NaT is a datetime too.
    if not isinstance(value, datetime) or value is pd.NaT:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


_EPOCH = datetime(1970, 1, 1)


def _parts(instant: datetime | None, parts: Sequence[str]) -> list[float]:
    """The named parts of ``instant`` as floats; NaN for each when it is None."""
    if instant is None:
        return [math.nan] * len(parts)
    # epoch_days keeps the instant itself (days since 1970-01-01, fractional): a tree can
    # then split on a stretch of time (a storm, an outage), which the calendar parts alone
    # spread over month x day x hour. AutoGluon keeps datetimes as numbers for the same reason.
    epoch_days = (instant - _EPOCH).total_seconds() / 86_400
    values = {"epoch_days": epoch_days, "year": instant.year, "month": instant.month,
              "day": instant.day, "dayofweek": instant.weekday(), "hour": instant.hour}
    return [float(values[p]) for p in parts]


def _parts_of_column(column: pd.Series, parts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_parts` of every value, shape (n_rows, len(parts)), and the positions of the
    rows whose (non-missing) value does not read as a date; each distinct value is parsed
    once."""
    codes, uniques = pd.factorize(column.astype(object))
    instants = [_instant(v) for v in uniques]
    # One NaN row last: the code of a missing value (-1) picks it.
    table = np.array([*(_parts(i, parts) for i in instants),
                      [math.nan] * len(parts)], dtype=np.float64)
    unreadable = [k for k, i in enumerate(instants) if i is None]
    rows = np.flatnonzero(np.isin(codes, unreadable)) if unreadable else np.empty(0, np.int64)
    return table[codes], rows


def _is_number(column: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(column)
            and not pd.api.types.is_bool_dtype(column))


_NO_RULES = TextRules()


def _check_numeric(column: pd.Series, name: str) -> None:
    if _is_number(column):
        return
    converted = pd.to_numeric(column, errors="coerce")
    bad = column[converted.isna() & column.notna()]
    if len(bad):
        raise DataError(
            f"column {name!r} is numeric but holds {len(bad)} non-numeric values "
            f"(first: {bad.iloc[0]!r}); declare it categorical in data.column_types or fix it"
        )
