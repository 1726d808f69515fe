"""Batch scoring: a registered model over a CSV or Parquet file (``drip predict``).

:func:`predict_file` reads the input in batches (pyarrow: CSV streamed block by block,
Parquet by row groups; local paths and ``s3://`` through :mod:`pyarrow.fs`, which reads
``AWS_*`` credentials and ``AWS_ENDPOINT_URL`` itself), checks every row the way the endpoint
checks a record, predicts the good rows with the model's own encoder
(:meth:`~dripml.core.model.TrainedModel.predict_frame`, the same mapping ``POST /predict``
uses) and writes them to CSV or Parquet, chosen by the output's suffix.

What is written: every column of the input, as read, then ``prediction`` (the label, or the
value for regression) and, for classifiers, ``probability_<class>`` per class (float64, in the
model's class order), the shape ``mlflow models predict`` and Ray Data batch inference users
get, with the input kept so the rows can be joined back. CSV input columns are read as text
(so the output's types do not depend on which rows a batch held); Parquet columns keep their
types.

Bad input, in the order it is checked:

- an unusable file or model (unknown suffix, no such file, a feature column missing entirely,
  an input column named like an output column): :class:`~dripml.errors.DataError` before
  anything is written;
- a bad row (a numeric feature holding text such as ``"abc"`` or a non-finite number, a CSV
  line with too many or too few fields): the row is left out of the output and reported in
  :attr:`BatchReport.bad_rows` by its 1-based data row and, for CSV, its line (the header is
  line 1; blank lines are not counted, as pyarrow counts); the other rows are predicted.
  A missing value (empty cell, ``NA``, ``null``) is not bad: the model sees it as missing,
  as the endpoint sees ``null``; so are unseen categories and unparseable dates.

The output appears whole or not at all (a local file is written beside it and renamed at the
end). This module imports neither Ray nor MLflow; the Ray Data path is
:mod:`dripml.orchestration.batch_ray`, which reuses :func:`score_table`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dripml.core.model import TrainedModel
from dripml.errors import DataError

Format = Literal["csv", "parquet"]

SUFFIXES: dict[str, Format] = {".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet",
                               ".pq": "parquet"}
"""File suffixes read and written, and their format (``.csv.gz`` is gzip-compressed)."""

DEFAULT_BATCH_SIZE = 10_000
"""Most rows one model call gets."""

RAY_MIN_ROWS = 2_000_000
"""With ``engine="auto"``, inputs of at least this many rows run on Ray Data (an embedded
cluster on this machine's cores unless an address is given); below it, in this process.
Parquet row counts come from the file's metadata; CSV counts are estimated from the size of
the file and of its first 64 KiB. Starting Ray costs 6 to 12 s; the local path scored a
30-tree LightGBM at 108,000 rows/s from CSV and 173,000 from Parquet (2 cores, Adult), so
Ray pays off from a few million rows (or with a model slower per row)."""

MAX_BAD_ROWS_KEPT = 1_000
"""Bad rows listed in a :class:`BatchReport` (the count covers them all)."""

PREDICTION_COLUMN = "prediction"
PROBABILITY_PREFIX = "probability_"

_ESTIMATE_BYTES = 1 << 16

Progress = Callable[[int, int | None], None]
"""Called after each batch with (rows read so far, total rows or an estimate, None if
unknown)."""


@dataclass(frozen=True)
class BadRow:
    """One input row left out of the output.

    Attributes:
        row: 1-based data row (the first row after the header is 1); None when unknown (a
            Ray Data batch whose position in the file was not recovered).
        line: for CSV, the 1-based line in the file (header = 1); None for Parquet.
        reason: what is wrong, naming the column, e.g. ``column 'age': 'abc' is not a number``.
    """

    row: int | None
    line: int | None
    reason: str

    @property
    def where(self) -> str:
        """``line 7`` (CSV), ``row 6`` (Parquet), or ``row ?``."""
        if self.line is not None:
            return f"line {self.line}"
        return f"row {self.row if self.row is not None else '?'}"


@dataclass(frozen=True)
class BatchReport:
    """What a batch prediction did.

    Attributes:
        input, output: the paths or URIs read and written (with Ray, ``output`` is a folder
            of part files).
        rows_read: data rows in the input (bad ones included).
        rows_predicted: rows written to the output.
        bad_row_count: rows left out (``rows_read - rows_predicted``).
        bad_rows: the first :data:`MAX_BAD_ROWS_KEPT` of them, in input order.
        seconds: wall time, model loading excluded.
        engine: ``local`` (this process) or ``ray`` (Ray Data ``map_batches``).
    """

    input: str
    output: str
    rows_read: int
    rows_predicted: int
    bad_row_count: int
    bad_rows: tuple[BadRow, ...]
    seconds: float
    engine: str = "local"
    columns: tuple[str, ...] = field(default=())
    """The prediction columns added to the input's."""

    @property
    def rows_per_s(self) -> float:
        """Rows read per second of :attr:`seconds`."""
        return self.rows_read / self.seconds if self.seconds > 0 else math.inf


# --------------------------------------------------------------------------- files


def file_format(path: str, role: str = "input") -> Format:
    """The format of ``path`` by its suffix.

    Raises:
        DataError: a suffix other than those of :data:`SUFFIXES` (the message lists them).
    """
    name = path.rstrip("/").lower()
    for suffix, fmt in sorted(SUFFIXES.items(), key=lambda item: -len(item[0])):
        if name.endswith(suffix):
            return fmt
    raise DataError(f"the {role} {path!r} has no known suffix; expected one of "
                    f"{', '.join(SUFFIXES)} (CSV or Parquet)")


def filesystem(path: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem of ``path`` (local, ``s3://``, ``gs://``...) and the path in it.

    Raises:
        DataError: pyarrow cannot open that kind of URI.
    """
    try:
        if "://" not in path:
            return pafs.LocalFileSystem(), str(Path(path).expanduser().resolve())
        return pafs.FileSystem.from_uri(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as error:
        raise DataError(f"cannot open {path!r}: {error}") from None


@dataclass(frozen=True)
class Source:
    """An input file, opened enough to know its columns and (about) its rows."""

    uri: str
    format: Format
    fs: pafs.FileSystem
    path: str
    columns: tuple[str, ...]
    rows: int | None
    """Exact for Parquet, estimated for CSV, None when unknown (compressed CSV)."""


def open_source(uri: str) -> Source:
    """Check the input exists and read its header or schema.

    Raises:
        DataError: unknown suffix, no such file, an empty or unreadable file.
    """
    fmt = file_format(uri)
    fs, path = filesystem(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise DataError(f"the input {uri!r} is not a file (it does not exist, or is a folder)")
    try:
        if fmt == "parquet":
            with fs.open_input_file(path) as handle:
                meta = pq.ParquetFile(handle)
                return Source(uri, fmt, fs, path, tuple(meta.schema_arrow.names),
                              meta.metadata.num_rows)
        with fs.open_input_stream(path) as stream:
            reader = pacsv.open_csv(
                stream, read_options=pacsv.ReadOptions(use_threads=False,
                                                       block_size=_ESTIMATE_BYTES),
                parse_options=pacsv.ParseOptions(invalid_row_handler=_skip))
            columns = tuple(reader.schema.names)
        return Source(uri, fmt, fs, path, columns, _estimate_csv_rows(fs, path, info.size))
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"cannot read the input {uri!r} as {fmt.upper()}: {error}") from None


def _skip(row: Any) -> str:
    return "skip"  # reading the header: malformed lines are found (and reported) later


def _estimate_csv_rows(fs: pafs.FileSystem, path: str, size: int | None) -> int | None:
    if path.endswith(".gz") or not size:
        return None
    with fs.open_input_stream(path) as stream:
        head = stream.read(_ESTIMATE_BYTES)
    lines = max(head.count(b"\n") - 1, 1)  # less the header
    return max(round(size / len(head) * lines), lines) if len(head) < size else lines


def check_columns(model: TrainedModel, columns: Sequence[str], source: str) -> None:
    """Fail before anything is written if the input cannot be scored.

    Raises:
        DataError: a feature column is missing (names them and lists the features), or an
            input column has the name of an output column.
    """
    missing = [name for name in model.input_names if name not in columns]
    if missing:
        raise DataError(f"the input {source!r} lacks the feature columns {missing}; the model "
                        f"needs every one of {model.input_names} (extra columns are kept "
                        "and passed through)")
    clashes = [name for name in output_columns(model) if name in columns]
    if clashes:
        raise DataError(f"the input {source!r} already has the columns {clashes}, which the "
                        "predictions are written to; rename or drop them first")


def output_columns(model: TrainedModel) -> tuple[str, ...]:
    """The columns predictions add: ``prediction`` and one ``probability_<class>`` a class."""
    return (PREDICTION_COLUMN, *(f"{PROBABILITY_PREFIX}{c}" for c in model.classes))


def csv_convert_options(columns: Sequence[str]) -> pacsv.ConvertOptions:
    """How both paths convert CSV: every column as text (empty, ``NA``, ``null``... as
    missing)."""
    return pacsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                strings_can_be_null=True)


# --------------------------------------------------------------------------- scoring


def score_table(model: TrainedModel, table: pa.Table | pa.RecordBatch
                ) -> tuple[pa.Table, list[tuple[int, str]]]:
    """Predict the good rows of one batch.

    Returns:
        The good rows with every input column plus :func:`output_columns`, and the bad rows
        as (0-based position in ``table``, reason), in order.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    frame, reasons = _model_frame(model, table)
    good = np.ones(table.num_rows, dtype=bool)
    good[[i for i, _ in reasons]] = False
    kept = table.filter(pa.array(good)) if reasons else table
    frame = frame[good].reset_index(drop=True) if reasons else frame
    arrays = _prediction_arrays(model, frame)
    for name, array in zip(output_columns(model), arrays, strict=True):
        kept = kept.append_column(name, array)
    return kept, reasons


def _model_frame(model: TrainedModel, table: pa.Table
                 ) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """The feature columns as the encoder reads them, and each bad row's reasons."""
    columns: dict[str, pd.Series] = {}
    problems: dict[int, list[str]] = {}
    for feature in model.input_features:  # raw columns when data.preprocess reads them
        array = table.column(feature.name)
        text = pa.types.is_string(array.type) or pa.types.is_large_string(array.type)
        values = array.to_pandas()
        if feature.kind == "numeric":
            values = _numbers(values, feature.name, text, problems)
        elif text:
            values = values.str.lstrip()  # as training reads CSV (skipinitialspace)
        columns[feature.name] = values
    reasons = [(i, "; ".join(problems[i])) for i in sorted(problems)]
    return pd.DataFrame(columns), reasons


def _numbers(values: pd.Series, name: str, text: bool, problems: dict[int, list[str]]
             ) -> pd.Series:
    """``values`` as float64; a value that is not a finite number is a problem of its row."""
    given = values.notna()
    if text:
        values = values.str.strip()
        given &= values != ""
    numbers = pd.to_numeric(values, errors="coerce").astype(np.float64)
    bad_text = given & numbers.isna()
    infinite = np.isinf(numbers.to_numpy())
    for i in np.flatnonzero(bad_text.to_numpy() | infinite):
        what = "is not a number" if bad_text.iloc[i] else "is not a finite number"
        problems.setdefault(int(i), []).append(f"column {name!r}: {values.iloc[i]!r} {what}")
    return numbers.where(~(bad_text.to_numpy() | infinite))


def _prediction_arrays(model: TrainedModel, frame: pd.DataFrame) -> list[pa.Array]:
    label_type = pa.float64() if model.task == "regression" else pa.string()
    if not len(frame):
        return [pa.array([], label_type)] + [pa.array([], pa.float64()) for _ in model.classes]
    prediction = model.predict_frame(frame)
    arrays = [pa.array(prediction.labels, label_type)]
    if model.classes:
        probabilities = (prediction.probabilities if prediction.probabilities is not None
                         else np.full((len(frame), len(model.classes)), np.nan))
        arrays += [pa.array(probabilities[:, j], pa.float64())
                   for j in range(len(model.classes))]
    return arrays


# --------------------------------------------------------------------------- reading


@dataclass
class _Lines:
    """CSV lines pyarrow skipped as malformed: their numbers map data rows to lines."""

    skipped: list[int] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)

    def handler(self, row: Any) -> str:
        expected, actual = row.expected_columns, row.actual_columns
        self.skipped.append(row.number)
        if len(self.bad) < MAX_BAD_ROWS_KEPT:
            self.bad.append(BadRow(row.number - 1, row.number,
                                   f"expected {expected} fields, got {actual}"))
        return "skip"

    def line_of(self, parsed: int) -> int:
        """The line of the ``parsed``-th (1-based) row pyarrow returned (header = line 1)."""
        line = parsed + 1
        for skipped in self.skipped:
            if skipped <= line:
                line += 1
            else:
                break
        return line


def _batches(source: Source, batch_size: int, lines: _Lines) -> Iterator[pa.Table]:
    if source.format == "parquet":
        with source.fs.open_input_file(source.path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_size):
                yield pa.Table.from_batches([batch])
        return
    convert = csv_convert_options(source.columns)
    parse = pacsv.ParseOptions(invalid_row_handler=lines.handler)
    with source.fs.open_input_stream(source.path) as stream:
        reader = pacsv.open_csv(stream, read_options=pacsv.ReadOptions(use_threads=False),
                                parse_options=parse, convert_options=convert)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            for start in range(0, table.num_rows, batch_size):
                yield table.slice(start, batch_size)


# --------------------------------------------------------------------------- writing


class _Writer:
    """Writes tables to CSV or Parquet; a local file appears only when :meth:`close` runs."""

    def __init__(self, uri: str, schema: pa.Schema) -> None:
        self.format = file_format(uri, "output")
        self.fs, self.path = filesystem(uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.target = self.path
        if self.local:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            name = Path(self.path).name
            self.path = str(Path(self.path).with_name(f".{name}.{os.getpid()}.partial"))
            if name.endswith(".gz"):  # pyarrow picks compression by the suffix
                self.path += ".gz"
        self.stream = self.fs.open_output_stream(self.path)
        self.writer: Any
        if self.format == "parquet":
            self.writer = pq.ParquetWriter(self.stream, schema)
        else:
            self.writer = pacsv.CSVWriter(self.stream, schema, write_options=pacsv.WriteOptions(
                quoting_style="needed"))

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table) if self.format == "parquet" else self.writer.write(table)

    def close(self) -> None:
        self.writer.close()
        self.stream.close()
        if self.local:
            os.replace(self.path, self.target)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
            self.stream.close()
        with contextlib.suppress(OSError):
            self.fs.delete_file(self.path)


def check_output(input: str, output: str) -> None:
    """Raises DataError: the output has an unknown suffix or is the input itself."""
    file_format(output, "output")
    if filesystem(input) == filesystem(output):
        raise DataError(f"the output {output!r} is the input; write the predictions elsewhere")


# --------------------------------------------------------------------------- the verb


def predict_file(model: TrainedModel, input: str | Path, output: str | Path, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, progress: Progress | None = None
                 ) -> BatchReport:
    """Score every row of ``input`` in this process and write ``output`` (see the module
    docstring for the columns and the handling of bad rows).

    Args:
        model: a loaded model (:func:`dripml.load_model`).
        input: a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file, local or a URI pyarrow
            opens (``s3://bucket/key.parquet``).
        output: where to write; its suffix picks CSV or Parquet. Overwritten if it exists.
        batch_size: most rows per model call (at least 1).
        progress: called after each batch, see :data:`Progress`.

    Raises:
        DataError: an unusable input or output (before anything is written), see above.
    """
    input, output = str(input), str(output)
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    source = open_source(input)
    check_columns(model, source.columns, input)
    check_output(input, output)
    started = time.perf_counter()
    lines = _Lines()
    rows = predicted = 0
    value_bad: list[BadRow] = []
    value_bad_count = 0
    writer: _Writer | None = None
    try:
        for table in _batches(source, batch_size, lines):
            scored, reasons = score_table(model, table)
            value_bad_count += len(reasons)
            value_bad += _located(source, lines, rows, reasons[:MAX_BAD_ROWS_KEPT
                                                               - len(value_bad)])
            if writer is None:
                writer = _Writer(output, scored.schema)
            writer.write(scored)
            rows += table.num_rows
            predicted += scored.num_rows
            if progress is not None:
                progress(rows, max(source.rows or 0, rows) if source.rows else None)
        if writer is None:  # no data row at all
            raise DataError(f"the input {input!r} has no data rows")
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    bad = sorted([*value_bad, *lines.bad[:MAX_BAD_ROWS_KEPT]], key=lambda b: b.row or 0)
    count = value_bad_count + len(lines.skipped)
    return BatchReport(input, output, rows + len(lines.skipped), predicted, count,
                       tuple(bad[:MAX_BAD_ROWS_KEPT]), time.perf_counter() - started, "local",
                       output_columns(model))


def find_bad_rows(model: TrainedModel, input: str | Path, *,
                  batch_size: int = DEFAULT_BATCH_SIZE) -> list[BadRow]:
    """The first :data:`MAX_BAD_ROWS_KEPT` bad rows of ``input``, in order, found as
    :func:`predict_file` finds them but without predicting (what the Ray path uses to report
    lines).

    Raises:
        DataError: an unusable input.
    """
    source = open_source(str(input))
    check_columns(model, source.columns, str(input))
    lines = _Lines()
    rows = 0
    bad: list[BadRow] = []
    for table in _batches(source, batch_size, lines):
        _, reasons = _model_frame(model, table)
        bad += _located(source, lines, rows, reasons[:MAX_BAD_ROWS_KEPT - len(bad)])
        rows += table.num_rows
    return sorted([*bad, *lines.bad], key=lambda b: b.row or 0)[:MAX_BAD_ROWS_KEPT]


def _located(source: Source, lines: _Lines, before: int, reasons: list[tuple[int, str]]
             ) -> list[BadRow]:
    """Bad rows of a batch that follows ``before`` parsed rows, with their rows and lines."""
    located = []
    for i, reason in reasons:
        parsed = before + i + 1
        if source.format == "csv":  # a data row per line after the header
            line = lines.line_of(parsed)
            located.append(BadRow(line - 1, line, reason))
        else:
            located.append(BadRow(parsed, None, reason))
    return located


def choose_engine(engine: str, ray_address: str | None, rows: int | None) -> str:
    """``local`` or ``ray`` for :func:`dripml.predict_batch`.

    ``auto``: Ray when ``ray_address`` is given or ``rows`` (see :data:`RAY_MIN_ROWS`) is at
    least that many; ``local`` and ``ray`` force one.

    Raises:
        DataError: an engine other than auto, local or ray; local with an address.
    """
    if engine not in ("auto", "local", "ray"):
        raise DataError(f"engine must be auto, local or ray, got {engine!r}")
    if engine == "local" and ray_address:
        raise DataError(f"engine 'local' runs in this process; drop the Ray address "
                        f"{ray_address!r} (or unset RAY_ADDRESS), or use engine 'ray'")
    if engine != "auto":
        return engine
    return "ray" if ray_address or (rows or 0) >= RAY_MIN_ROWS else "local"
