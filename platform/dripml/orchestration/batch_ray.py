"""Batch scoring on Ray Data: ``read_csv``/``read_parquet`` -> ``map_batches`` -> ``write_*``.

The same rows, checks and columns as :func:`dripml.productionize.batch.predict_file` (each
batch goes through :func:`~dripml.productionize.batch.score_table`), spread over a Ray
cluster: :class:`_Scorer`, a callable class holding the model, runs in an autoscaling pool of
actors (one CPU each, one thread per model), and every output block is written by the worker
that made it. So the output is a folder of part files (``<output>/*.parquet`` or ``*.csv``),
as Ray Data writes it, replaced if it exists; ``pandas.read_parquet(folder)`` reads it whole,
in input order (the dataset preserves order).

Bad rows are counted by a small actor the scorers report to. Their lines are not known inside
a batch (Ray Data gives a batch no offset in its file), so when there are any, the driver reads
the input once more, checking without predicting, to report each by line as the local path
does; if the driver cannot read the input (a path only the cluster sees), they are reported
without one.

With an address the cluster's workers read the input and write the output: use paths every
node sees (``s3://...``, a shared volume) and a cluster with dripml installed.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import ray
import ray.data

from dripml.core.model import TrainedModel
from dripml.errors import DataError
from dripml.orchestration import ray_cluster
from dripml.productionize import batch

log = logging.getLogger(__name__)


@ray.remote(num_cpus=0)
class _Tally:
    """Counts rows and keeps the first bad rows the scorers (and the CSV reader) report."""

    def __init__(self) -> None:
        self.rows = self.predicted = self.bad = 0
        self.kept: list[batch.BadRow] = []

    def add(self, rows: int, predicted: int, bad: list[batch.BadRow]) -> None:
        self.rows += rows
        self.predicted += predicted
        self.bad += len(bad)
        self.kept += bad[:max(batch.MAX_BAD_ROWS_KEPT - len(self.kept), 0)]

    def totals(self) -> tuple[int, int, int, list[batch.BadRow]]:
        return self.rows, self.predicted, self.bad, self.kept


class _Scorer:
    """The ``map_batches`` callable: loads nothing, scores a pyarrow batch, reports bad rows."""

    def __init__(self, model: TrainedModel, tally: Any) -> None:
        model.fitted.single_threaded()  # one CPU per actor: the pool scales out instead
        self.model = model
        self.tally = tally

    def __call__(self, table: pa.Table) -> pa.Table:
        scored, reasons = batch.score_table(self.model, table)
        bad = [batch.BadRow(None, None, reason) for _, reason in reasons]
        ray.get(self.tally.add.remote(table.num_rows, scored.num_rows, bad))
        return scored


class _SkipMalformed:
    """pyarrow's ``invalid_row_handler`` in the read tasks: skip the line, report it."""

    def __init__(self, tally: Any) -> None:
        self.tally = tally

    def __call__(self, row: Any) -> str:
        bad = batch.BadRow(None, row.number,
                           f"expected {row.expected_columns} fields, got {row.actual_columns}")
        ray.get(self.tally.add.remote(1, 0, [bad]))
        return "skip"


def predict_file(model: TrainedModel, input: str | Path, output: str | Path, *,
                 batch_size: int = batch.DEFAULT_BATCH_SIZE, ray_address: str | None = None,
                 progress: batch.Progress | None = None) -> batch.BatchReport:
    """Score ``input`` on Ray Data and write the folder ``output`` (see the module docstring).

    Args:
        model: a loaded model; shipped to every scoring actor.
        input: one ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file, local or a URI.
        output: a folder, named with the format's suffix (``preds.parquet``); replaced.
        batch_size: most rows per model call.
        ray_address: the cluster to join; None starts one on this machine for the call
            (or uses the one this process already started).
        progress: called once, at the end.

    Raises:
        DataError: an unusable input or output, before Ray starts.
        ResourceError: the cluster at ``ray_address`` cannot be joined.
    """
    input, output = str(input), str(output)
    if batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    source = batch.open_source(input)
    batch.check_columns(model, source.columns, input)
    batch.check_output(input, output)
    out_fs, out_path = batch.filesystem(output)
    fmt = batch.file_format(output, "output")
    started = time.perf_counter()
    with ray_cluster.connect(ray_address) as resources:
        tally = _Tally.remote()
        cpus = resources.get("CPU", 1.0)
        # A task or actor per CPU, one CPU left to reading and writing; on a one-CPU
        # cluster they take half each (a scorer holding the only CPU starves the reader).
        each = 1.0 if cpus >= 2 else cpus / 2
        ds = _read(source, tally, each)
        scored = ds.map_batches(
            _Scorer, batch_format="pyarrow", batch_size=batch_size, num_cpus=each,
            compute=ray.data.ActorPoolStrategy(min_size=1,
                                               max_size=max(math.floor(cpus) - 1, 1)),
            fn_constructor_kwargs={"model": model, "tally": tally})
        write = scored.write_parquet if fmt == "parquet" else scored.write_csv
        write(out_path, filesystem=out_fs, mode=ray.data.SaveMode.OVERWRITE,
              ray_remote_args={"num_cpus": each})
        rows, predicted, bad_count, kept = ray.get(tally.totals.remote())
    if bad_count:
        kept = _with_lines(model, input, kept)
    elapsed = time.perf_counter() - started
    if progress is not None:
        progress(rows, rows)
    if rows == 0:
        raise DataError(f"the input {input!r} has no data rows")
    return batch.BatchReport(input, output, rows, predicted, bad_count,
                             tuple(kept[:batch.MAX_BAD_ROWS_KEPT]), elapsed, "ray",
                             batch.output_columns(model))


def _read(source: batch.Source, tally: Any, cpus: float) -> ray.data.Dataset:
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the output in input order
    if source.format == "parquet":
        return ray.data.read_parquet(source.path, filesystem=source.fs, num_cpus=cpus)
    return ray.data.read_csv(
        source.path, filesystem=source.fs, num_cpus=cpus,
        convert_options=batch.csv_convert_options(source.columns),
        parse_options=pacsv.ParseOptions(invalid_row_handler=_SkipMalformed(tally)))


def _with_lines(model: TrainedModel, input: str, kept: list[batch.BadRow]
                ) -> list[batch.BadRow]:
    """The bad rows with their lines, from a check of the input on the driver; ``kept`` as
    they are when the driver cannot read it."""
    try:
        return batch.find_bad_rows(model, input)
    except (DataError, OSError, pa.ArrowException) as error:
        log.warning("bad rows reported without lines: the driver cannot read %s (%s)",
                    input, error)
        return sorted(kept, key=lambda b: b.line or math.inf)
