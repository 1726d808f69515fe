"""A user's pandas function over a data set on Ray Data, for inputs too big for one process
(issue 18: the distributed layout of :mod:`dripml.frame`).

- :func:`map_frame`: ``read_parquet -> map_batches -> [write_parquet]`` over files;
- :func:`transform_rows`: a fitted ``data.preprocess`` over a training or test split held by
  the driver (``data.engine: ray``): ``from_arrow`` in blocks -> ``map_batches`` ->
  back to the driver, in order, for the encoder and the folds.

Each batch becomes the pandas DataFrame ``pd.read_parquet`` would give (default dtypes:
``str``, ``int64``..., not Ray's ArrowDtype columns) before the user's code sees it, on as
many CPUs as the cluster has, in input order. Run them inside
:func:`dripml.orchestration.ray_cluster.connect`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import ray
import ray.data

from dripml import frame
from dripml.core import datasets
from dripml.core.preprocess import Preprocessor
from dripml.errors import DataError

BLOCK_ROWS = 50_000
"""Rows per block :func:`transform_rows` hands Ray Data (at least one block per CPU)."""


def map_frame(func: Callable[[Any], Any], source: str, *, output: str | None = None,
              batch_size: int | None = 100_000) -> ray.data.Dataset:
    """Run ``func`` (DataFrame -> DataFrame, pandas API) over the Parquet ``source``.

    Args:
        func: the user function; it must be picklable (Ray ships it to the workers).
        source: a Parquet file or folder of Parquet files (local or a URI every node reads,
            ``s3://...``), or ``dataset://NAME/SPLIT``.
        output: a folder to write the result to as Parquet part files (replaced if it
            exists); ``None`` leaves the result as a lazy dataset.
        batch_size: rows per call of ``func`` (``None``: one call per block).

    Returns:
        The transformed dataset: lazy when ``output`` is None, else reading ``output``.

    Raises:
        DataError: a local ``source`` that does not exist, or ``batch_size`` < 1.
    """
    if datasets.is_dataset_uri(source):
        source = str(datasets.resolve(source))
    elif "://" not in source and not Path(source).exists():
        raise DataError(f"the Parquet source {source!r} does not exist; give a Parquet file, "
                        "a folder of them, or dataset://NAME/SPLIT")
    if batch_size is not None and batch_size < 1:
        raise DataError(f"batch_size must be at least 1, got {batch_size}")
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # the output in input order

    def on_batch(batch: pa.Table) -> pa.Table:
        # Arrow -> pandas here, not by Ray: Ray's pandas batches hold ArrowDtype columns
        # (pd.NA, other .str rules); pyarrow's to_pandas gives what pd.read_parquet gives.
        result = frame.call(func, batch.to_pandas(), layout="pandas")
        return pa.Table.from_pandas(result, preserve_index=False)

    mapped = ray.data.read_parquet(source).map_batches(
        on_batch, batch_format="pyarrow", batch_size=batch_size)
    if output is None:
        return mapped
    mapped.write_parquet(output, mode=ray.data.SaveMode.OVERWRITE)
    return ray.data.read_parquet(output)


def transform_rows(step: Preprocessor, rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """``step.transform_frame`` over ``rows`` on Ray Data, one block per map task: the
    :data:`~dripml.core.preprocess.RowsTransform` of ``data.engine: ray``.

    Args:
        step: the fitted preprocessing (pickled to the workers with its user code).
        rows: the raw feature columns of a split, shape (n, columns).
        source: the rows' origin, as errors name it.

    Returns:
        What ``step`` returned, shape (n, its columns), rows in order, a 0..n-1 index.

    Raises:
        DataError: as :meth:`~dripml.core.preprocess.Preprocessor.transform_frame` (raised in
            a worker, re-raised here with its message).
    """
    if rows.empty:
        return step.transform_frame(rows, source=source)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    per_block = max(1, min(BLOCK_ROWS, -(-len(rows) // cpus)))
    blocks = [pa.Table.from_pandas(rows.iloc[i:i + per_block], preserve_index=False)
              for i in range(0, len(rows), per_block)]
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True

    def on_batch(batch: pa.Table) -> pa.Table:
        out = step.transform_frame(batch.to_pandas(), source=source)
        return pa.Table.from_pandas(out, preserve_index=False)

    try:
        mapped = ray.data.from_arrow(blocks).map_batches(
            on_batch, batch_format="pyarrow", batch_size=None)
        # Arrow blocks -> pandas by pyarrow (as pd.read_parquet), not Ray's to_pandas, which
        # gives ArrowDtype columns (int64[pyarrow]) the encoder would read differently.
        tables = ray.get(mapped.to_arrow_refs())
        return pa.concat_tables(tables, promote_options="default").to_pandas()
    except Exception as error:
        message = _data_error_message(error)
        if message is not None:  # the step's own error, as the pandas engine raises it
            raise DataError(message) from None
        raise


_DATA_ERROR_LINE = re.compile(r"^dripml\.errors\.DataError: (.+)$", re.MULTILINE)


def _data_error_message(error: BaseException) -> str | None:
    """The message of a :class:`DataError` raised in a map task, or None. Ray Data wraps a
    task's exception in ``UserCodeException`` and ships the worker's traceback as text, not
    the exception object, so the message is read from that text."""
    found = _DATA_ERROR_LINE.search(str(error))
    return found.group(1) if found else None
