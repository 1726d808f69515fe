"""dripml.frame's layouts against pandas: the same user functions on 1 to 10,000,000 rows.

Two user functions, written against the pandas API as a scientist would write them:

- ``adult_features``: numeric feature engineering on UCI Adult (logs, ratios, clipping,
  flags, ``isin``, ``fillna``, ``astype``), ``dataset://adult/train``;
- ``clean_tweets``: text cleaning on healthtweets (strip URLs, @handles and #tags with
  regular expressions, lowercase, lengths and word counts), ``dataset://healthtweets/train``.

Each data set is tiled up to the row count. Per size, the median of repeated calls of:

- 1 row, records in -> records out, the way the serving endpoint calls it: ``pandas`` is
  ``pd.DataFrame(records)`` + the function + ``to_dict("records")``; ``rows`` and ``auto``
  are ``dripml.frame.call_records(func, records, layout=...)``;
- 1,000 and 100,000 rows, DataFrame in -> DataFrame out: ``pandas`` is the function on a
  copy, ``rows``/``auto`` are ``dripml.frame.call(func, df, layout=...)``;
- 10,000,000 rows, Parquet in -> Parquet out: ``pandas`` reads, transforms and writes in one
  process; ``ray`` is :func:`dripml.orchestration.frame_ray.map_frame` on an embedded Ray
  cluster of ``--cpus`` CPUs, started and warmed up (one part file mapped) before the clock.
  The Parquet input (20 files) is written once to a temporary folder.

Ratios are pandas' time over each layout's (above 1: faster than pandas). The issue's goal:
at least 20x at 1 row and at least 1.8x at 10 million rows on 2 cores.

Usage::

    python benchmarks/frame_layouts.py                    # all sizes (10M rows: minutes, ~8 GB)
    python benchmarks/frame_layouts.py --max-rows 100000  # skip 10M (no Ray)
    python benchmarks/frame_layouts.py --functions clean_tweets --json out.json
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from dripml import frame  # noqa: E402
from dripml.core import datasets  # noqa: E402

SIZES = (1, 1_000, 100_000, 10_000_000)
BIG = 10_000_000
PARQUET_FILES = 20
MARRIED = ["Married-civ-spouse", "Married-AF-spouse", "Married-spouse-absent"]
URL = r"https?://\S+"
HANDLE_OR_TAG = r"[@#]\w+"


def adult_features(df: Any) -> Any:
    """Numeric feature engineering on Adult (the pandas API only)."""
    df["log_gain"] = np.log1p(df["capital_gain"])
    df["log_loss"] = np.log1p(df["capital_loss"])
    df["net_capital"] = df["capital_gain"] - df["capital_loss"]
    df["age_sq"] = df["age"] ** 2
    df["edu_per_age"] = df["education_num"] / df["age"]
    df["hours"] = df["hours_per_week"].clip(1, 80)
    df["overtime"] = (df["hours_per_week"] > 40).astype(int)
    df["senior"] = df["age"].between(60, 120)
    df["married"] = df["marital_status"].isin(MARRIED)
    df["male"] = (df["sex"] == "Male").astype(float)
    df["workclass"] = df["workclass"].fillna("unknown")
    df["gain_flag"] = np.where(df["capital_gain"] > 0, 1, 0)
    return df.drop(columns=["fnlwgt", "income"])


def clean_tweets(df: Any) -> Any:
    """Text cleaning on healthtweets (the pandas API only)."""
    text = df["text"]
    clean = text.str.replace(URL, " ", regex=True).str.replace(HANDLE_OR_TAG, " ", regex=True)
    clean = clean.str.lower().str.strip()
    df["clean"] = clean
    df["has_url"] = text.str.contains("http", regex=False)
    df["is_retweet"] = text.str.startswith("RT ")
    df["n_chars"] = clean.str.len()
    df["n_words"] = clean.str.count(r"\S+")  # not split().str.len(): 10M lists of words
    return df.drop(columns=["text", "source"])


FUNCTIONS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "adult_features": (adult_features, "dataset://adult/train"),
    "clean_tweets": (clean_tweets, "dataset://healthtweets/train"),
}


def tiled(base: pd.DataFrame, rows: int) -> pd.DataFrame:
    repeats = -(-rows // len(base))
    return pd.concat([base] * repeats, ignore_index=True).iloc[:rows].reset_index(drop=True)


def median_s(run: Callable[[], Any], budget_s: float, max_calls: int) -> float:
    """Median wall time of ``run`` over as many calls as fit ``budget_s`` (3 at least)."""
    run()  # warm-up (imports, caches, compiled patterns)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < max_calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process(func: Callable[[Any], Any], base: pd.DataFrame, rows: int, budget_s: float
               ) -> dict[str, float]:
    data = tiled(base, rows)
    if rows == 1:
        records = data.to_dict(orient="records")
        runs = {"pandas": lambda: func(pd.DataFrame(records)).to_dict(orient="records"),
                "rows": lambda: frame.call_records(func, records, layout="rows"),
                "auto": lambda: frame.call_records(func, records, layout="auto")}
    else:
        runs = {"pandas": lambda: func(data.copy()),
                "rows": lambda: frame.call(func, data, layout="rows"),
                "auto": lambda: frame.call(func, data, layout="auto")}
        check = frame.call(func, data, layout="rows")
        pd.testing.assert_frame_equal(check, func(data.copy()), check_dtype=False)
    max_calls = 20_000 if rows == 1 else 2_000
    return {name: median_s(run, budget_s, max_calls) for name, run in runs.items()}


def distributed(func: Callable[[Any], Any], base: pd.DataFrame, rows: int, cpus: int,
                folder: Path) -> dict[str, float]:
    from dripml.orchestration import frame_ray, ray_cluster

    source = folder / "input"
    source.mkdir()
    data = tiled(base, rows)
    for part, chunk in enumerate(np.array_split(np.arange(rows), PARQUET_FILES)):
        data.iloc[chunk].to_parquet(source / f"part-{part:03d}.parquet", index=False)
    del data
    start = time.perf_counter()
    func(pd.read_parquet(source)).to_parquet(folder / "pandas.parquet", index=False)
    pandas_s = time.perf_counter() - start
    with ray_cluster.connect(num_cpus=cpus):
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        # warm-up on one part file: workers started, the function shipped (a running
        # cluster's state; starting Ray itself is not timed either)
        frame_ray.map_frame(func, str(source / "part-000.parquet")).materialize()
        start = time.perf_counter()
        frame_ray.map_frame(func, str(source), output=str(folder / "ray"))
        ray_s = time.perf_counter() - start
    return {"pandas": pandas_s, "ray": ray_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-rows", type=int, default=BIG,
                        help="skip sizes above this (default: all, up to 10,000,000)")
    parser.add_argument("--functions", default=",".join(FUNCTIONS),
                        help=f"comma-separated, of {list(FUNCTIONS)}")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray cluster")
    parser.add_argument("--budget-s", type=float, default=3.0,
                        help="seconds of repeated calls per layout and size")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    names = [n.strip() for n in args.functions.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FUNCTIONS))
    if unknown:
        parser.error(f"unknown functions {unknown}; known: {list(FUNCTIONS)}")
    results: list[dict[str, Any]] = []
    print(f"{'function':<15} {'rows':>10} {'pandas':>11} {'rows':>11} {'auto/ray':>11} "
          f"{'x rows':>8} {'x auto/ray':>10}")
    for name in names:
        func, uri = FUNCTIONS[name]
        base = pd.read_parquet(datasets.resolve(uri))
        for rows in (r for r in SIZES if r <= args.max_rows):
            if rows >= BIG:
                with tempfile.TemporaryDirectory() as tmp:
                    times = distributed(func, base, rows, args.cpus, Path(tmp))
                fast = {"rows": float("nan"), "auto": times["ray"]}
            else:
                times = in_process(func, base, rows, args.budget_s)
                fast = times
            row = {"function": name, "rows": rows, **{f"{k}_s": v for k, v in times.items()}}
            results.append(row)
            ratio_rows = times["pandas"] / fast["rows"]
            ratio_auto = times["pandas"] / fast["auto"]
            print(f"{name:<15} {rows:>10,} {_ms(times['pandas']):>11} {_ms(fast['rows']):>11} "
                  f"{_ms(fast['auto']):>11} {ratio_rows:>7.1f}x {ratio_auto:>9.1f}x",
                  flush=True)
    print("times: median per call (1 row: records in and out); 10M rows: one run, Parquet in "
          "and out, auto/ray = Ray Data on --cpus CPUs")
    print(f"fallbacks to pandas: {frame.fallback_counts() or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def _ms(seconds: float) -> str:
    if seconds != seconds:
        return "-"
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


if __name__ == "__main__":
    main()
