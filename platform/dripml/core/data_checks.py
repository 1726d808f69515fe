"""Checks of the data's content that name the column and the file: what
:mod:`dripml.core.preview` runs on the rows it read (before Ray starts) and
:mod:`dripml.core.data` on every row (before the first trial).

- :func:`duplicate_headers`: a CSV header that names a column twice (pandas would rename the
  second ``x.1`` without a word), read from the raw header line; a Parquet schema likewise.
- :func:`frame_problems`: a label empty in some rows (how many, and the first rows), a
  feature column empty in every row, infinite values in a numeric column.
- :func:`drift_problems`: a feature that is numeric in train but holds text in test.

Each returns one sentence per problem (empty when there is none); the caller decides whether
it becomes a :class:`~dripml.errors.SpecError` line (preview) or a
:class:`~dripml.errors.DataError` (full load, :func:`raise_problems`).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from dripml.errors import DataError

__all__ = ["delimiter_hint", "drift_problems", "duplicate_headers", "frame_problems",
           "header_names", "raise_problems"]

_SHOWN_ROWS = 5
_HEADER_BYTES = 1 << 20


def header_names(location: Path | io.BytesIO, *, name: str) -> list[str] | None:
    """The column names of a CSV/TSV header line as written (no renaming), or None when
    the source is not a CSV or its first line cannot be read."""
    lowered = name.lower()
    if not lowered.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
        return None
    try:
        if isinstance(location, io.BytesIO):
            raw = location.getvalue()[:_HEADER_BYTES]
            if lowered.endswith(".gz"):
                raw = gzip.decompress(raw)
        elif lowered.endswith(".gz"):
            with gzip.open(location, "rb") as handle:
                raw = handle.read(_HEADER_BYTES)
        else:
            with open(location, "rb") as handle:
                raw = handle.read(_HEADER_BYTES)
    except (OSError, EOFError):
        return None
    text = raw.decode("utf-8", errors="replace")
    first = next(iter(text.splitlines()), "")
    if not first.strip():
        return None
    delimiter = "\t" if lowered.endswith(".tsv") else ","
    row = next(csv.reader([first], delimiter=delimiter, skipinitialspace=True), [])
    return [cell.strip() for cell in row]


def duplicate_headers(names: Sequence[str], source: str) -> list[str]:
    """One sentence per column name that ``names`` (a header, in file order) holds twice."""
    counts = Counter(names)
    problems = []
    for name, count in counts.items():
        if count > 1:
            places = [i + 1 for i, n in enumerate(names) if n == name]
            problems.append(
                f"column {name!r} appears {count} times in the header of {source!r} "
                f"(columns {', '.join(map(str, places))}); give each column its own name "
                f"(pandas would silently rename the copy {name + '.1'!r})")
    return problems


def frame_problems(frame: pd.DataFrame, *, source: str, label: str,
                   features: Iterable[str], complete: bool,
                   is_train: bool = True) -> list[str]:
    """The content problems of ``frame`` (rows of ``source``), one sentence each.

    Args:
        frame: the rows read (all of them when ``complete``).
        label: the label column (checked when present).
        features: the feature columns (those absent from ``frame`` are skipped).
        complete: ``frame`` holds every row of the source; an empty column is only a
            problem then (later rows may hold values).
        is_train: empty feature columns are a problem of the training data only.
    """
    problems = []
    read = f"{len(frame):,} rows" if complete else f"the first {len(frame):,} rows"
    if label in frame.columns:
        empty = frame[label].isna().to_numpy()
        count = int(empty.sum())
        if count and not (complete and count == len(frame)):  # all empty: said elsewhere
            problems.append(f"label column {label!r} is empty in {count:,} of {read} of "
                            f"{source!r} ({_rows(empty)}, counting from 1 after the header); "
                            "fill them in or remove those rows")
    names = [c for c in features if c in frame.columns and c != label]
    if is_train and complete:
        for name in names:
            if frame[name].isna().all():
                problems.append(f"column {name!r} of {source!r} is empty in all {read}; "
                                "remove it, or list data.features without it")
    for name in [*names, label]:
        if name not in frame.columns:
            continue
        column = frame[name]
        if not pd.api.types.is_float_dtype(column):
            continue
        infinite = np.isinf(column.to_numpy(dtype=np.float64, na_value=np.nan))
        if infinite.any():
            problems.append(f"column {name!r} of {source!r} holds infinite values in "
                            f"{int(infinite.sum()):,} of {read} ({_rows(infinite)}); "
                            "replace them with numbers, or leave the cells empty (missing)")
    return problems


def drift_problems(train: pd.DataFrame, test: pd.DataFrame, *, train_source: str,
                   test_source: str, features: Iterable[str],
                   declared: Mapping[str, str]) -> list[str]:
    """Feature columns numeric in ``train`` (every row given) but holding text in
    ``test``; columns whose type ``declared`` (``data.column_types``) fixes are skipped."""
    problems = []
    for name in features:
        if name in declared or name not in train.columns or name not in test.columns:
            continue
        trained, tested = train[name], test[name]
        if not _is_number(trained) or _is_number(tested) or tested.isna().all():
            continue
        parsed = pd.to_numeric(tested, errors="coerce")
        text = tested.notna().to_numpy() & parsed.isna().to_numpy()
        if not text.any():
            continue
        first = tested[text].iloc[0]
        problems.append(
            f"column {name!r} is numeric in train {train_source!r} but test {test_source!r} "
            f"holds text in {int(text.sum()):,} of {len(tested):,} rows (first {first!r}, "
            f"{_rows(text)}); "
            f"make them numbers, or declare data.column_types.{name}: categorical")
    return problems


def delimiter_hint(columns: Sequence[str], source: str) -> str:
    """A hint when ``columns`` is one name holding ``;``, ``|`` or a tab: the file is
    separated by that character, not by the one its suffix says (``''`` otherwise)."""
    if len(columns) != 1:
        return ""
    for mark, shown in ((";", "';'"), ("|", "'|'"), ("\t", "tabs")):
        if mark in columns[0]:
            return (f" The header of {source!r} reads as one column {columns[0]!r}: the file "
                    f"looks separated by {shown}; dripml reads ',' from .csv and tabs from "
                    ".tsv files, so convert it or rename it.")
    return ""


def raise_problems(problems: Sequence[str]) -> None:
    """Raise one DataError holding ``problems`` (nothing when empty)."""
    if not problems:
        return
    if len(problems) == 1:
        raise DataError(problems[0])
    body = "\n".join(f"  {p}" for p in problems)
    raise DataError(f"the data has {len(problems)} problems:\n{body}")


def _is_number(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _rows(mask: np.ndarray) -> str:
    """``row 4``, ``rows 4, 9, 12`` or ``rows 4, 9, 12, 15, 20, ...``: the first 1-based
    rows where ``mask``."""
    where = np.flatnonzero(mask)
    shown = ", ".join(str(i + 1) for i in where[:_SHOWN_ROWS])
    return ("row " if len(where) == 1 else "rows ") + shown + (
        ", ..." if len(where) > _SHOWN_ROWS else "")
