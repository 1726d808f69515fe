"""Costs: what a model costs to serve, measured on the serving path itself.

Every number comes from :meth:`dripml.core.model.TrainedModel.predict_records` called with JSON-like
record dicts, exactly what the BentoML endpoint's ``POST /predict`` calls, and under one thread
per BLAS/OpenMP pool, as :func:`dripml.productionize.serving.serve` runs the server:

- **single-row latency** ``latency_p50_ms`` / ``latency_p99_ms``: ``calls`` (at least 1,000;
  a time budget may reduce them to :data:`LATENCY_FLOOR_CALLS`, see
  :mod:`dripml.core.budget`) sequential one-record calls after 50 untimed ones, each timed with
  ``time.perf_counter_ns``; the records cycle through real test rows. Candidates are timed
  together, in blocks of 100 calls round-robin, each block opened by 5 untimed calls
  (:func:`measure_latencies`), so that other load on the machine does not favour one of
  them. Python's garbage
  collector stays on (a server has it on), but objects alive before the loop are frozen out of
  it (``gc.freeze``), so a search's large heap does not add pauses a fresh server would not
  have.
- **batch throughput** ``throughput_rows_s``: rows per second of one ``predict_records`` call on
  1,000 records (median of 3 timed calls after one untimed).
- **model size** ``model_mb``: ``len(cloudpickle.dumps(model))``, the pickled
  :class:`~dripml.core.model.TrainedModel` (encoder, fitted recipe, labels, one example record). The
  artifact MLflow logs (``python_model.pkl``) pickles the same object inside a thin wrapper, so
  it is the same size within a few hundred bytes.
- **peak memory** ``memory_mb``: the peak resident set (RSS) increase while unpickling the model
  and predicting one batch of 1,000 records, measured in a fresh process (see
  :class:`MemoryMeter`): the libraries are imported first and the model is loaded and run
  once there (lazy imports, library code pages, thread pools: one-time costs of any server
  process, ~5 MB on this stack), then loaded again in a forked child whose peak RSS
  (``VmHWM``) starts at its RSS at the fork, so neither the search, earlier models nor the
  one-time costs pollute it: what is left is what this model adds to a serving process.
- **cost per million predictions** ``cost_per_million`` (when the spec gives
  ``refine.instance_price_per_hour``)::

      cost_per_million = instance_price_per_hour / (3600 * throughput_rows_s) * 1e6

  that is, the instance-hours one million rows take at the measured batch throughput on one
  core, times the hourly price: a lower bound for batch scoring (single-row requests cost
  about ``latency_p50_ms`` each instead).

MB means 10^6 bytes throughout. This module imports only the standard library and NumPy at
the top, because Ray workers import it for the Discover latency probe (see
:func:`probe_latency_ms`).
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dripml import settings
from dripml.core.imports import driver_import_path
from dripml.core.spec import RefineSpec

SINGLE_THREAD_ENV = {
    name: "1" for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                           "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
}
"""Thread-pool sizes for the server: one-row predictions lose more to thread start-up and
synchronisation than they gain from parallelism (scale with ``workers`` instead)."""

MIN_LATENCY_CALLS = 1000
"""Fewest timed single-row calls behind a reported p50/p99 (p99 of 1,000 is the 10th worst):
the default, and the least ``refine.latency_calls`` may ask for."""
LATENCY_FLOOR_CALLS = 200
"""Fewest calls a time budget may reduce the measurement to (``search.time_budget_s``, see
:mod:`dripml.core.budget`): p99 of 200 is the 2nd worst call. The count is reported
(``ServingCost.latency_calls``, each version's ``latency_calls`` tag); below
:data:`MIN_LATENCY_CALLS` the functions here refuse unless passed ``min_calls``."""
WARMUP_CALLS = 50
LATENCY_BLOCK = 100
"""Consecutive timed calls of one model before the next model's turn (measure_latencies)."""
REWARM_CALLS = 5
"""Untimed calls that open each block, so no timed call pays for the previous model having
evicted this one from the CPU caches (a server holds one model)."""
BATCH_ROWS = 1000
BATCH_REPEATS = 3
MB = 1e6

Record = Mapping[str, Any]


@dataclass(frozen=True)
class Latency:
    """Percentiles of ``calls`` timed single-row calls, milliseconds."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    calls: int


@dataclass(frozen=True)
class ServingCost:
    """What one model costs to serve (see the module docstring for how each is measured).

    Attributes:
        latency_p50_ms, latency_p99_ms: single-row latency percentiles, milliseconds.
        throughput_rows_s: rows per second predicting a batch of 1,000 records.
        model_mb: pickled model size, MB (10^6 bytes).
        memory_mb: peak RSS increase loading the model and predicting one batch, MB; NaN when
            it could not be measured (the message is in ``memory_error``).
        cost_per_million: price of one million predictions at ``throughput_rows_s``, in the
            currency of ``instance_price_per_hour``; None without a price.
        latency_calls: timed single-row calls behind the in-process percentiles.
        inproc_latency_p50_ms, inproc_latency_p99_ms: the in-process percentiles, always;
            the latencies above equal them unless the candidate was served
            (``refine.serving_path``, see :mod:`dripml.refine.serving_cost`: then they are
            the endpoint's and ``serving_requests`` is set); None in costs made before.
        requests_per_s, latency_p99_concurrent_ms: the endpoint's throughput and p99 at
            ``refine.concurrency`` (``cost_per_million`` is then per million requests at it).
        serving_requests: single-record requests behind the endpoint's p50/p99.
        serving_rss_mb: the server's peak resident set while loaded, MB.
        serving_error: why the endpoint's figures are infinite (failed start, memory watch).
    """

    latency_p50_ms: float
    latency_p99_ms: float
    throughput_rows_s: float
    model_mb: float
    memory_mb: float
    cost_per_million: float | None = None
    latency_calls: int = MIN_LATENCY_CALLS
    memory_error: str | None = None
    inproc_latency_p50_ms: float | None = None
    inproc_latency_p99_ms: float | None = None
    requests_per_s: float | None = None
    latency_p99_concurrent_ms: float | None = None
    serving_requests: int | None = None
    serving_rss_mb: float | None = None
    serving_error: str | None = None

    def value(self, name: str) -> float | None:
        """A cost by name (``latency_p99_ms``, ``model_mb``...); None if not measured."""
        value = getattr(self, name)
        if value is None or math.isnan(value):
            return None
        return float(value)


def cost_per_million(instance_price_per_hour: float, throughput_rows_s: float) -> float:
    """Price of one million predictions: ``price / (3600 * throughput_rows_s) * 1e6``.

    Example: an instance at 0.10 per hour scoring 50,000 rows/s costs
    0.10 / (3600 * 50,000) * 1e6 = 0.000556 per million rows.
    """
    if throughput_rows_s <= 0:
        return math.inf
    return instance_price_per_hour / (3600.0 * throughput_rows_s) * 1e6


def _timed_calls(call: Callable[[int], Any], calls: int, warmup: int) -> np.ndarray:
    """Nanoseconds of ``calls`` sequential ``call(i)`` after ``warmup`` untimed ones."""
    for i in range(warmup):
        call(i)
    out = np.empty(calls, dtype=np.int64)
    gc.collect()
    gc.freeze()
    try:
        clock = time.perf_counter_ns
        for i in range(calls):
            started = clock()
            call(i)
            out[i] = clock() - started
    finally:
        gc.unfreeze()
    return out


def _latency(nanoseconds: np.ndarray) -> Latency:
    p50, p99 = np.percentile(nanoseconds, [50, 99]) / 1e6
    return Latency(float(p50), float(p99), float(nanoseconds.mean() / 1e6), len(nanoseconds))


def _single_thread() -> Any:
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def measure_latency(model: Any, records: Sequence[Record], *, calls: int = MIN_LATENCY_CALLS,
                    warmup: int = WARMUP_CALLS, min_calls: int = MIN_LATENCY_CALLS) -> Latency:
    """Single-row latency of ``model.predict_records([record])``, cycling through ``records``.

    Raises:
        ValueError: ``calls`` below ``min_calls`` (1,000 unless a time budget lowers it, to
            :data:`LATENCY_FLOOR_CALLS` at the least) or no records.
    """
    return measure_latencies([model], records, calls=calls, warmup=warmup,
                             min_calls=min_calls)[0]


def _check_calls(calls: int, min_calls: int) -> None:
    if min_calls < LATENCY_FLOOR_CALLS:
        raise ValueError(f"latency needs at least {LATENCY_FLOOR_CALLS} calls even under a "
                         f"time budget, got min_calls={min_calls}")
    if calls < min_calls:
        raise ValueError(f"latency needs at least {min_calls} calls, got {calls}")


def measure_latencies(models: Sequence[Any], records: Sequence[Record], *,
                      calls: int = MIN_LATENCY_CALLS, warmup: int = WARMUP_CALLS,
                      block: int = LATENCY_BLOCK,
                      min_calls: int = MIN_LATENCY_CALLS) -> list[Latency]:
    """Single-row latency of each model, ``calls`` timed calls each, interleaved: blocks of
    ``block`` calls go round-robin across the models, so that a burst of other load on the
    machine falls on every model alike instead of on whichever was being timed (the
    frontier compares them). Each block opens with a few untimed calls
    (:data:`REWARM_CALLS`, with more than one model) and then runs one model alone, its
    caches warm, as in a server that holds one model.

    Raises:
        ValueError: ``calls`` below ``min_calls`` (see :func:`measure_latency`) or no records.
    """
    _check_calls(calls, min_calls)
    if not records:
        raise ValueError("latency needs at least one record")
    rows = [[r] for r in records]
    n = len(rows)
    times = [np.empty(calls, dtype=np.int64) for _ in models]
    rewarm = REWARM_CALLS if len(models) > 1 else 0
    clock = time.perf_counter_ns
    with _single_thread():
        for model in models:
            for i in range(warmup):
                model.predict_records(rows[i % n])
        gc.collect()
        gc.freeze()
        try:
            for start in range(0, calls, block):
                stop = min(start + block, calls)
                for model, out in zip(models, times, strict=True):
                    predict = model.predict_records
                    for i in range(start, start + rewarm):
                        predict(rows[i % n])
                    for i in range(start, stop):
                        started = clock()
                        predict(rows[i % n])
                        out[i] = clock() - started
        finally:
            gc.unfreeze()
    return [_latency(t) for t in times]


def measure_throughput(model: Any, records: Sequence[Record], *, rows: int = BATCH_ROWS,
                       repeats: int = BATCH_REPEATS) -> float:
    """Rows per second of one ``predict_records`` call on ``rows`` records (median of
    ``repeats`` timed calls after one untimed); records are repeated to fill the batch."""
    if not records:
        raise ValueError("throughput needs at least one record")
    batch = [records[i % len(records)] for i in range(rows)]
    with _single_thread():
        model.predict_records(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter_ns()
            model.predict_records(batch)
            times.append(time.perf_counter_ns() - started)
    return rows / (float(np.median(times)) / 1e9)


def time_calls(model: Any, records: Sequence[Record], *, calls: int = 10,
               rows: int = BATCH_ROWS) -> tuple[float, float]:
    """How fast ``model`` serves, timed briefly so that a time budget can plan the real
    measurement (:func:`dripml.core.budget.plan_measurement`): the median of ``calls``
    single-row calls and one batch call of ``rows`` records, seconds each, on one thread.

    Raises:
        ValueError: no records.
    """
    if not records:
        raise ValueError("timing needs at least one record")
    batch = [records[i % len(records)] for i in range(rows)]
    with _single_thread():
        model.predict_records([records[0]])  # first-call costs are not per call
        single = []
        for i in range(max(1, calls)):
            started = time.perf_counter()
            model.predict_records([records[i % len(records)]])
            single.append(time.perf_counter() - started)
        started = time.perf_counter()
        model.predict_records(batch)
        batch_s = time.perf_counter() - started
    return float(np.median(single)), batch_s


def model_bytes(model: Any) -> bytes:
    """The model as cloudpickle writes it (what :func:`model_size_mb` counts)."""
    import cloudpickle

    return cloudpickle.dumps(model)


def model_size_mb(model: Any) -> float:
    return len(model_bytes(model)) / MB


def probe_latency_ms(predict_one: Callable[[int], Any], *, rows: int, passes: int = 2,
                     warmup: int = 20) -> Latency:
    """The Discover probe: ``passes`` sweeps over ``rows`` rows (``predict_one(i)`` predicts
    row ``i``) after ``warmup`` untimed calls, on one thread; the percentiles are over each
    row's fastest call.

    A probe runs inside a Ray worker beside other folds, where a neighbour's burst can slow
    any single call several times over; a row's minimum over two sweeps filters that out and
    keeps what the model itself costs per row. The probe therefore reads low rather than
    high, which is what pruning needs: it drops only trials clearly over a limit, and the
    Refine step measures the survivors properly.
    """
    rows = max(1, rows)
    passes = max(1, passes)
    with _single_thread():
        times = _timed_calls(lambda i: predict_one(i % rows), rows * passes, warmup)
    fastest = times.reshape(passes, rows).min(axis=0)
    latency = _latency(fastest)
    return Latency(latency.p50_ms, latency.p99_ms, latency.mean_ms, rows * passes)


def measure(model: Any, records: Sequence[Record], *, calls: int = MIN_LATENCY_CALLS,
            instance_price_per_hour: float | None = None,
            memory: MemoryMeter | None = None) -> ServingCost:
    """Every cost of ``model`` on ``records`` (see the module docstring)."""
    return measure_all([model], records, calls=calls,
                       instance_price_per_hour=instance_price_per_hour, memory=memory)[0]


def measure_all(models: Sequence[Any], records: Sequence[Record], *,
                calls: int = MIN_LATENCY_CALLS, instance_price_per_hour: float | None = None,
                memory: MemoryMeter | None = None, min_calls: int = MIN_LATENCY_CALLS,
                memory_skipped: str | None = None,
                warmup: int = WARMUP_CALLS) -> list[ServingCost]:
    """Every cost of each model on ``records``; latencies interleaved across the models (see
    :func:`measure_latencies`; ``min_calls`` and ``warmup`` as there).

    Peak memory comes from ``memory`` (a running :class:`MemoryMeter`, asked first so that
    its process is idle while latency is timed); without one, or when it fails, it is NaN
    and ``memory_error`` says why (``memory_skipped``, when given, is that reason).
    """
    _check_calls(calls, min_calls)
    blobs = [model_bytes(m) for m in models]
    memories: list[tuple[float, str | None]] = []
    for blob in blobs:
        if memory is None:
            memories.append((math.nan, memory_skipped or "not measured"))
            continue
        try:
            memories.append((memory.measure(blob), None))
        except RuntimeError as error:
            memories.append((math.nan, str(error)))
    latencies = measure_latencies(models, records, calls=calls, min_calls=min_calls,
                                  warmup=warmup)
    out = []
    for model, blob, (memory_mb, memory_error), latency in zip(
            models, blobs, memories, latencies, strict=True):
        throughput = measure_throughput(model, records)
        price = (None if instance_price_per_hour is None
                 else cost_per_million(instance_price_per_hour, throughput))
        out.append(ServingCost(
            latency_p50_ms=latency.p50_ms, latency_p99_ms=latency.p99_ms,
            throughput_rows_s=throughput, model_mb=len(blob) / MB, memory_mb=memory_mb,
            cost_per_million=price, latency_calls=latency.calls, memory_error=memory_error,
            inproc_latency_p50_ms=latency.p50_ms, inproc_latency_p99_ms=latency.p99_ms))
    return out


def json_records(frame: Any, rows: int = BATCH_ROWS) -> list[dict[str, Any]]:
    """Up to ``rows`` rows of a feature DataFrame as JSON-like dicts (None for missing), the
    shape ``POST /predict`` hands to ``predict_records``."""
    head = frame.head(rows)
    records = head.astype(object).where(head.notna(), None).to_dict("records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in records]


# ---------------------------------------------------------------------------------------
# Peak memory, in a fresh process
# ---------------------------------------------------------------------------------------


class MemoryMeter:
    """A fresh Python process that measures the peak RSS increase of loading a pickled model
    and predicting one batch of records.

    It starts at once (importing NumPy, pandas, scikit-learn, dripml's model code and the
    ``modules`` given, one thread per BLAS/OpenMP pool as in the server) so that its imports
    overlap the caller's refits. :meth:`measure` loads the model and predicts once in that
    process (warm-up), then forks one child per model, which loads the pickle again and
    predicts and reports its peak RSS increase. ``VmHWM`` from ``/proc`` on Linux; elsewhere
    the child's ``ru_maxrss``. Use as a context manager.
    """

    def __init__(self, records: Sequence[Record], modules: Sequence[str] = (),
                 timeout_s: float = 120) -> None:

        self._folder = tempfile.TemporaryDirectory(prefix="dripml-memory-")
        folder = Path(self._folder.name)
        self._records = folder / "records.json"
        self._records.write_text(json.dumps(list(records), default=str))
        self._timeout_s = timeout_s
        self._log = folder / "stderr.log"
        # This package and the caller's import path: custom models unpickle as in the caller.
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([package_root, driver_import_path()])}
        with self._log.open("wb") as log:  # a file, not a pipe: warnings never block it
            self._process = subprocess.Popen(
                [sys.executable, "-m", "dripml.core.costs", *modules], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        self._count = 0

    def measure(self, model: Any | bytes) -> float:
        """Peak RSS increase, MB, of unpickling ``model`` (or its cloudpickle bytes) and
        predicting the records in one call.

        Raises:
            RuntimeError: the process died or did not answer within ``timeout_s``.
        """
        blob = model if isinstance(model, bytes) else model_bytes(model)
        path = Path(self._folder.name) / f"model-{self._count}.pkl"
        self._count += 1
        path.write_bytes(blob)
        answer = self._ask({"model": str(path), "records": str(self._records)})
        path.unlink(missing_ok=True)
        if "error" in answer:
            raise RuntimeError(f"measuring peak memory failed: {answer['error']}")
        return float(answer["peak_mb"])

    def _ask(self, request: dict[str, str]) -> dict[str, Any]:
        process = self._process
        if process.poll() is not None or process.stdin is None or process.stdout is None:
            raise RuntimeError(f"the memory process exited: {self._stderr()}")
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        line = _readline(process, self._timeout_s)
        if not line:
            raise RuntimeError(f"the memory process exited: {self._stderr()}")
        return json.loads(line)

    def _stderr(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-1000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self._process.poll() is None:
            if self._process.stdin is not None:
                self._process.stdin.close()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._folder.cleanup()

    def __enter__(self) -> MemoryMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _readline(process: subprocess.Popen, timeout_s: float) -> str:
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            process.kill()
            raise RuntimeError(f"the memory process did not answer within {timeout_s:.0f} s")
    return process.stdout.readline()


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB  # the kernel writes kB (KiB)
    except OSError:
        return None
    return None


def _load_and_predict(model_path: str, records: list[dict[str, Any]]) -> None:
    import pickle

    with open(model_path, "rb") as handle:
        model = pickle.load(handle)
    model.predict_records(records)


def _peak_in_child(model_path: str, records: list[dict[str, Any]]) -> float:
    """Runs in the forked child: peak RSS increase of load + one batch prediction, MB."""
    import resource

    start = _status_mb("VmRSS")
    start_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _load_and_predict(model_path, records)
    peak = _status_mb("VmHWM")
    if start is not None and peak is not None:
        return max(0.0, peak - start)
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return max(0.0, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start_max) * scale
               / MB)


def _serve_memory_requests(modules: Sequence[str]) -> None:  # pragma: no cover - subprocess
    import importlib

    import pandas  # noqa: F401
    import sklearn  # noqa: F401

    import dripml.core.model  # noqa: F401

    for name in modules:
        importlib.import_module(name)
    records_cache: dict[str, list[dict[str, Any]]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["records"] not in records_cache:
            records_cache[request["records"]] = json.loads(Path(request["records"]).read_text())
        records = records_cache[request["records"]]
        try:  # warm up: lazy imports, library code pages, thread pools
            _load_and_predict(request["model"], records)
        except BaseException as error:
            sys.stdout.write(json.dumps({"error": f"{type(error).__name__}: {error}"[-1000:]})
                             + "\n")
            sys.stdout.flush()
            continue
        gc.collect()
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            try:
                answer = {"peak_mb": _peak_in_child(request["model"], records)}
            except BaseException as error:  # report, never raise past the fork
                answer = {"error": f"{type(error).__name__}: {error}"[-1000:]}
            os.write(write, json.dumps(answer).encode())
            os.close(write)
            os._exit(0)
        os.close(write)
        chunks = []
        while chunk := os.read(read, 65536):
            chunks.append(chunk)
        os.close(read)
        os.waitpid(pid, 0)
        reply = b"".join(chunks).decode() or json.dumps({"error": "the child died"})
        sys.stdout.write(reply + "\n")
        sys.stdout.flush()


if __name__ == "__main__":  # pragma: no cover - the MemoryMeter process
    _serve_memory_requests(sys.argv[1:])


def serving_path_enabled(refine: RefineSpec) -> bool:
    """Whether Refine measures candidates on the serving path: ``refine.serving_path``,
    unless ``DRIPML_REFINE_SERVING_PATH`` turns it off
    (:func:`dripml.settings.refine_serving_path`). Discover's reserve for Refine and Refine
    itself read the same rule."""
    return bool(refine.serving_path) and settings.refine_serving_path()
