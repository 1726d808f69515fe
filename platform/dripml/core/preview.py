"""The spec's data checked from its headers: columns, dtypes and a small head, no full read.

:func:`check` is what ``drip spec validate`` and :func:`dripml.api.train` (before Ray starts)
run, so a wrong label or a missing column fails in well under a second. What is read of
each source (:func:`preview`):

- Parquet (a local file, or ``dataset://NAME/SPLIT``, resolved and fetched as
  :mod:`dripml.core.data` does): the schema and the row count from the file's footer
  (``pyarrow.parquet.ParquetFile``), no rows.
- CSV and TSV (local, ``.gz`` too): the header and the first :data:`HEAD_ROWS` rows, parsed
  as :func:`dripml.core.data.read_table` parses them (``data.na_values``, blanks after
  separators skipped); dtypes are those of that head.
- ``s3://``: a Parquet file's footer (one ranged GET of its last 64 KiB, a second one when
  the footer is larger); a CSV's first :data:`HEAD_BYTES` (one ranged GET); a gzip CSV is
  downloaded whole.

Only what is certain from that much fails: a missing file or column, an unknown format, an
empty file, a column named twice in the header (read raw: pandas would rename the copy
``x.1``), a label empty in some of the rows read, infinite values in the rows read, a label
whose head already shows more than two classes for ``binary`` or a non-number for
``regression``. When the head is the whole file, the label is checked as training checks it,
a feature column empty in every row fails, a class with fewer rows than folds fails, and
(the train file whole) a column numeric in train but holding text in the test head, or a
test class never seen in train, fails. Each names the column and the file (see
:mod:`dripml.core.data_checks`); :func:`dripml.core.data.load` runs the same checks on
every row before the first trial. A binary label whose head shows one class is no error
(the other class may come later); :class:`DataSummary` says what the head showed.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd

from dripml.core import data as data_module
from dripml.core import data_checks
from dripml.core.problems import Problems, close_matches, shown_columns
from dripml.core.spec import DataSpec, Spec, Task
from dripml.errors import DataError

__all__ = ["HEAD_BYTES", "HEAD_ROWS", "DataSummary", "Preview", "check", "preview"]

HEAD_ROWS = 1000
"""Rows of a CSV source read by :func:`preview` (the head of the file)."""
HEAD_BYTES = 1 << 20
"""Bytes of an S3 CSV fetched by :func:`preview` (the rows they hold, up to HEAD_ROWS)."""
_PARQUET_TAIL = 64 * 1024
_PARQUET = (".parquet", ".pq")
_CSV = (".csv", ".csv.gz", ".tsv", ".txt")


@dataclass(frozen=True)
class Preview:
    """What :func:`preview` read of one source.

    Attributes:
        source: the source as the spec names it.
        columns: column names, in file order.
        dtypes: column -> dtype name (pandas' for CSV, Arrow's for Parquet).
        head: the rows read (CSV: up to HEAD_ROWS; Parquet: none, an empty frame).
        rows: the file's row count when known without reading (Parquet), else None.
        complete: whether ``head`` holds every row of the file.
    """

    source: str
    columns: tuple[str, ...]
    dtypes: dict[str, str]
    head: pd.DataFrame
    rows: int | None
    complete: bool

    @property
    def sampled(self) -> str:
        """How much was read, in words (``1,000 rows sampled``, ``all 60 rows``...)."""
        if self.rows is not None and len(self.head) == 0:
            return f"{self.rows:,} rows (Parquet footer, none read)"
        if self.complete:
            return f"all {len(self.head):,} rows"
        return f"first {len(self.head):,} rows sampled"


@dataclass(frozen=True)
class DataSummary:
    """The spec's data as :func:`check` saw it (what ``drip spec validate`` prints).

    Attributes:
        train, test: the previews of the sources (``test`` None without a test source).
        label: the label column; ``label_dtype`` its dtype in train.
        task: the spec's task.
        label_values: the distinct label values in the rows read, sorted, as text (at most
            10; empty for Parquet, whose rows are not read); ``label_distinct`` their count.
        notes: hints that are no error (a binary label whose head shows one class).
    """

    train: Preview
    test: Preview | None
    label: str
    label_dtype: str
    task: Task
    label_values: tuple[str, ...] = ()
    label_distinct: int = 0
    notes: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The summary as plain JSON-ready data (for ``--json`` output)."""
        def source(found: Preview) -> dict[str, object]:
            return {"source": found.source, "rows": found.rows, "rows_read": len(found.head),
                    "complete": found.complete, "columns": list(found.columns),
                    "dtypes": dict(found.dtypes)}

        return {"train": source(self.train),
                "test": source(self.test) if self.test is not None else None,
                "label": self.label, "label_dtype": self.label_dtype, "task": self.task,
                "label_values": list(self.label_values), "label_distinct": self.label_distinct,
                "notes": list(self.notes)}

    def line(self) -> str:
        """One line: source, rows read, columns, the label's dtype and values, the task."""
        values = ""
        if self.label_distinct:
            shown = ", ".join(self.label_values[:5]) + (
                ", ..." if self.label_distinct > 5 else "")
            values = f", {self.label_distinct} value(s) in the rows read: {shown}"
        test = f"; test {self.test.source!r}" if self.test is not None else ""
        return (f"data: {self.train.source!r} {self.train.sampled}, "
                f"{len(self.train.columns)} columns; label {self.label!r} "
                f"({self.label_dtype}{values}); task {self.task}{test}"
                + "".join(f"; note: {n}" for n in self.notes))


def preview(source: str, na_values: list[str] | None = None) -> Preview:
    """Read the columns, dtypes and a head of one source (see the module docstring for how
    much of each kind).

    Raises:
        DataError: the file does not exist or cannot be read, its format is unknown, it
            holds no rows, or (``dataset://``) the data set or split is unknown.
    """
    location, name = data_module.locate(source, read_s3=_s3_part)
    lowered = name.lower()
    try:
        if lowered.endswith(_PARQUET):
            found = _parquet(source, location)
        elif lowered.endswith(_CSV):
            found = _csv(source, location, lowered, na_values or [])
        else:
            raise DataError(f"unknown format of {source!r}: use .csv, .csv.gz, .tsv, "
                            ".parquet or .pq")
    except (ValueError, OSError) as error:
        raise DataError(f"could not read {source!r}: {error}") from None
    if found.rows == 0 or (found.complete and found.head.empty):
        raise DataError(f"data source {source!r} holds no rows")
    return found


def _parquet(source: str, location: Path | io.BytesIO) -> Preview:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(location)
    schema = parquet.schema_arrow
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", [])
             if isinstance(c, str)}
    columns = tuple(n for n in schema.names if n not in index)
    duplicates = data_checks.duplicate_headers(columns, source)
    if duplicates:
        raise DataError(duplicates[0])
    dtypes = {n: str(schema.field(n).type) for n in columns}
    rows = parquet.metadata.num_rows
    return Preview(source, columns, dtypes, pd.DataFrame(columns=list(columns)), rows,
                   complete=rows == 0)


def _csv(source: str, location: Path | io.BytesIO, lowered: str,
         na_values: list[str]) -> Preview:
    sep = "\t" if lowered.endswith(".tsv") else ","
    header = data_checks.header_names(location, name=lowered)
    duplicates = data_checks.duplicate_headers(header or [], source)
    if duplicates:
        raise DataError("; ".join(duplicates))
    try:
        head = pd.read_csv(location, na_values=na_values, sep=sep, skipinitialspace=True,
                           nrows=HEAD_ROWS)
    except pd.errors.EmptyDataError:
        return Preview(source, (), {}, pd.DataFrame(), None, complete=True)
    truncated = isinstance(location, _Partial) and location.truncated
    complete = len(head) < HEAD_ROWS and not truncated
    columns = tuple(str(c) for c in head.columns)
    return Preview(source, columns, {c: str(head[c].dtype) for c in columns}, head,
                   len(head) if complete else None, complete)


class _Partial(io.BytesIO):
    """Bytes from the start of an object, and whether the object goes on past them."""

    def __init__(self, payload: bytes, truncated: bool) -> None:
        super().__init__(payload)
        self.truncated = truncated


def _s3_part(uri: str) -> io.BytesIO:
    """What :func:`preview` needs of an S3 object: a Parquet footer, a CSV's first bytes,
    or (gzip, other) the whole object."""
    import boto3  # imported here: only S3 users pay for it
    from botocore.exceptions import BotoCoreError, ClientError

    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    client = boto3.client("s3")

    def get(byte_range: str) -> tuple[bytes, int]:
        reply = client.get_object(Bucket=bucket, Key=key, Range=byte_range)
        total = str(reply.get("ContentRange", "")).rpartition("/")[2]
        payload = reply["Body"].read()
        return payload, int(total) if total.isdigit() else len(payload)

    try:
        lowered = key.lower()
        if lowered.endswith(_PARQUET):
            tail, size = get(f"bytes=-{_PARQUET_TAIL}")
            if len(tail) < 8 or tail[-4:] != b"PAR1":
                raise DataError(f"could not read {uri!r}: not a Parquet file")
            footer = struct.unpack("<I", tail[-8:-4])[0] + 8
            if footer > len(tail) and footer <= size:
                tail, _ = get(f"bytes=-{footer}")
            # pyarrow reads the footer from the end: the leading magic makes it a file.
            return io.BytesIO(b"PAR1" + tail[-footer:])
        if lowered.endswith(_CSV) and not lowered.endswith(".gz"):
            head, size = get(f"bytes=0-{HEAD_BYTES - 1}")
            truncated = size > len(head)
            if truncated:  # the last line may be cut: keep whole lines only
                head = head[: head.rfind(b"\n") + 1]
            return _Partial(head, truncated)
    except (BotoCoreError, ClientError) as error:
        raise DataError(f"could not read {uri!r} from S3: {error}") from None
    return data_module._read_s3(uri)


# ---------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------


def check(spec: Spec, problems: Problems) -> DataSummary | None:
    """Check the spec's data from its previews; add each problem to ``problems`` under its
    field (``data.train``, ``data.label``, ``data.features``, ``data.column_types.NAME``,
    ``data.text_columns``, ``data.test``).

    Returns:
        What was seen, or None when the train source could not be read.
    """
    data = spec.data
    train = _read(data.train, data, "data.train", problems)
    test = _read(data.test, data, "data.test", problems) if data.test is not None else None
    if train is None:
        return None
    label_ok = _check_label_column(train, data, problems, "train")
    _check_named_columns(train, data, problems)
    _check_content(train, test, data, problems)
    if test is not None:
        _check_label_column(test, data, problems, "test")
        _check_test_columns(train, test, data, problems)
    if not label_ok:
        return None
    values = _label_values(train, data.label)
    before = len(problems)
    with problems.catch("data.label"):
        _check_label_fits_task(train, values, spec)
    if train.complete and spec.task != "regression" and len(problems) == before:
        _check_classes(train, test, values, spec, problems)
    shown = tuple(sorted(map(str, values.unique()))) if len(values) else ()
    notes = ()
    if spec.task == "binary" and len(shown) == 1:
        notes = (f"the rows read show one class of {data.label!r}; binary needs the other "
                 "further down the file",)
    return DataSummary(train=train, test=test, label=data.label,
                       label_dtype=train.dtypes[data.label], task=spec.task,
                       label_values=shown[:10], label_distinct=len(shown), notes=notes)


def _check_classes(train: Preview, test: Preview | None, values: pd.Series, spec: Spec,
                   problems: Problems) -> None:
    """With every train row read: a class with fewer rows than folds, and test classes
    never seen in train (what :func:`dripml.core.data.load` would find later)."""
    label, n_splits = spec.data.label, spec.k_fold.n_splits
    counts = values.astype(str).value_counts()
    if spec.stratified and len(counts) and counts.min() < n_splits:
        rare = counts.idxmin()
        problems.add("k_fold.n_splits", f"class {rare!r} of label {label!r} has "
                     f"{counts.min()} row(s) in {train.source!r}, fewer than "
                     f"k_fold.n_splits={n_splits}; lower n_splits or add rows of that class")
    if test is None or label not in test.head.columns:
        return
    unseen = sorted(set(test.head[label].dropna().astype(str)) - set(counts.index))
    if unseen:
        problems.add("data.test", f"label {label!r} of test {test.source!r} holds classes "
                     f"never seen in train {train.source!r}: {unseen[:10]}; a model cannot "
                     "predict them")


def _read(source: str | None, data: DataSpec, where: str,
          problems: Problems) -> Preview | None:
    if source is None:
        return None
    with problems.catch(where):
        return preview(source, data.na_values)
    return None


def _missing(names: list[str], columns: tuple[str, ...]) -> str:
    """``'heigth' (did you mean 'height'?), 'x'``."""
    parts = []
    for name in names:
        close = close_matches(name, columns, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return ", ".join(parts)


def _check_label_column(found: Preview, data: DataSpec, problems: Problems,
                        split: str) -> bool:
    if data.label in found.columns:
        return True
    close = close_matches(data.label, found.columns)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    problems.add("data.label", f"column {data.label!r} is not in {split} {found.source!r}"
                 f"{hint or '.'} Columns found: {shown_columns(found.columns)}"
                 + data_checks.delimiter_hint(found.columns, found.source))
    return False


def _check_content(train: Preview, test: Preview | None, data: DataSpec,
                   problems: Problems) -> None:
    """Empty labels, empty columns, infinite values and train/test type drift in the rows
    read (see :mod:`dripml.core.data_checks`): what those rows make certain."""
    features = data.features or [c for c in train.columns if c != data.label]
    for line in data_checks.frame_problems(train.head, source=train.source, label=data.label,
                                           features=features, complete=train.complete):
        problems.add("data.train", line)
    if test is None:
        return
    for line in data_checks.frame_problems(test.head, source=test.source, label=data.label,
                                           features=features, complete=test.complete,
                                           is_train=False):
        problems.add("data.test", line)
    if train.complete:  # every train row read: its numeric columns are numeric for certain
        for line in data_checks.drift_problems(
                train.head, test.head, train_source=train.source, test_source=test.source,
                features=features, declared=data.type_overrides()):
            problems.add("data.test", line)


def _check_named_columns(train: Preview, data: DataSpec, problems: Problems) -> None:
    columns = train.columns
    named: Mapping[str, list[str]] = {
        "data.features": [c for c in data.features or [] if c not in columns],
        "data.text_columns": [c for c in data.text_columns if c not in columns],
    }
    if data.preprocess is not None:  # types name what it returns: checked when data loads
        named = {"data.features": named["data.features"]}
    for where, missing in named.items():
        if missing:
            problems.add(where, f"{_missing(missing, columns)} not in train "
                         f"{train.source!r}; columns found: {shown_columns(columns)}")
    for name in data.column_types if data.preprocess is None else ():
        if name not in columns:
            problems.add(f"data.column_types.{name}",
                         f"{_missing([name], columns)} is not a column of train "
                         f"{train.source!r}; columns found: {shown_columns(columns)}")


def _check_test_columns(train: Preview, test: Preview, data: DataSpec,
                        problems: Problems) -> None:
    features = data.features or [c for c in train.columns if c != data.label]
    wanted = [*features, *(c for c in data.type_overrides() if c not in features)]
    missing = [c for c in wanted if c in train.columns and c not in test.columns]
    if missing:
        problems.add("data.test", f"test {test.source!r} lacks feature column(s) of train: "
                     f"{_missing(missing, test.columns)}; columns found: "
                     f"{shown_columns(test.columns)}")


def _label_values(found: Preview, label: str) -> pd.Series:
    return found.head[label].dropna() if label in found.head.columns else pd.Series([])


def _check_label_fits_task(train: Preview, values: pd.Series, spec: Spec) -> None:
    """Raise DataError for what the rows read make certain (see the module docstring)."""
    label = spec.data.label
    if train.rows is not None and len(train.head) == 0:
        return  # Parquet: no rows read, nothing certain about the values
    if train.complete:
        if values.empty:
            raise DataError(f"column {label!r} of {train.source!r} holds no values")
        data_module._check_label_fits_task(values, spec)
        return
    read = f"the first {len(train.head):,} rows of {train.source!r}"
    if spec.task == "regression":
        numbers = pd.to_numeric(values, errors="coerce")
        if numbers.isna().any():
            bad = values[numbers.isna()].iloc[0]
            raise DataError(f"task regression needs a numeric label, but {read} hold "
                            f"{bad!r} in column {label!r}; use task binary or multiclass")
    elif spec.task == "binary":
        classes = sorted(values.astype(str).unique())
        if len(classes) > 2:
            raise DataError(f"task binary needs exactly 2 classes, but {read} already hold "
                            f"{len(classes)} in column {label!r}: {classes[:10]}; use task "
                            "multiclass or regression")
