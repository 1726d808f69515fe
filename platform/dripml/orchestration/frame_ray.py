"""A user's pandas function over a Parquet data set on Ray Data, for inputs too big for one
process (issue 18: the distributed layout of :mod:`dripml.frame`).

``read_parquet -> map_batches -> [write_parquet]``: each batch becomes the pandas DataFrame
``pd.read_parquet`` would give (default dtypes: ``str``, ``int64``..., not Ray's ArrowDtype
columns), which :func:`dripml.frame.call` hands to ``func``, on as many CPUs as the cluster
has, in input order. Run it inside :func:`dripml.orchestration.ray_cluster.connect`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray.data

from dripml import frame
from dripml.core import datasets
from dripml.errors import DataError


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
