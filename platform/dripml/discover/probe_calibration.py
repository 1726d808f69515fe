"""A Discover cost probe that can be trusted: calibrated against a reference timed beside it.

The probe (:func:`dripml.discover.folds.probe`) times a fold's model inside a Ray worker while
other trials' folds run on the same cores. There every call can run several times slower
than alone, and the slowdown comes and goes with the neighbours: on a 2-core machine a
40-column model that serves in 1.4 ms (p99, on the serving path, alone) read over 3 ms there,
and a 2 ms budget pruned every trial. Taking each row's fastest of two sweeps filters out
preemptions, not the steady slowdown of shared caches, memory bandwidth and clock.

So the probe also times a **reference**, a trivial model (a scikit-learn logistic regression
on 8 numbers, one row at a time: mostly the per-call Python and NumPy overhead every model
pays), interleaved call by call with the fold's model in the same worker at the same moment,
and the driver times the same reference alone before any trial starts. Their ratio is the
worker's slowdown at that moment, and the model's calibrated estimate is::

    calibrated_ms = probe_p50_ms * min(1, reference_alone_ms / reference_in_worker_ms)

(never scaled up: a reference that happened to run faster in the worker says nothing about
the model). A trial is pruned only when this estimate is over a limit times
``search.cost_probe_margin`` (1.5 by default): the estimate still leaves out the serving
stack a served request adds, so it reads low, and the margin covers what the reference does
not capture (a model whose cost scales differently under contention). Pruning wrongly loses
a trial for good; not pruning costs the rest of its folds, and Refine measures the survivors
on the serving path anyway.
"""

from __future__ import annotations

import functools
import gc
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dripml.core.costs import Latency

REFERENCE_FEATURES = 8
REFERENCE_CALLS = 200
REFERENCE_BURSTS = 5


@functools.cache
def _reference_model() -> tuple[Any, list[np.ndarray]]:
    """A logistic regression on fixed random data and 16 one-row inputs (built once per
    process: about 5 ms)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, REFERENCE_FEATURES))
    y = (X[:, 0] + rng.normal(scale=0.5, size=64) > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    return model, [X[i:i + 1] for i in range(16)]


def reference_call() -> Callable[[int], Any]:
    """``call(i)``: one single-row prediction of the reference model."""
    model, rows = _reference_model()
    return lambda i: model.predict_proba(rows[i % len(rows)])


def _p50_fastest(times: np.ndarray, passes: int) -> np.ndarray:
    return times.reshape(passes, -1).min(axis=0)


def probe_with_reference(predict_one: Callable[[int], Any], *, rows: int, passes: int = 2,
                         warmup: int = 20) -> tuple[Latency, float]:
    """The probe of :func:`dripml.core.costs.probe_latency_ms` (each row's fastest of
    ``passes`` sweeps over ``rows`` rows, on the caller's thread settings), with every model
    call followed by one reference call: (the model's latency, the reference's p50 ms)."""
    rows, passes = max(1, rows), max(1, passes)
    reference = reference_call()
    for i in range(warmup):
        predict_one(i % rows)
        reference(i)
    model_ns = np.empty(rows * passes, dtype=np.int64)
    reference_ns = np.empty(rows * passes, dtype=np.int64)
    clock = time.perf_counter_ns
    gc.collect()
    gc.freeze()
    try:
        for i in range(rows * passes):
            started = clock()
            predict_one(i % rows)
            middle = clock()
            reference(i)
            model_ns[i] = middle - started
            reference_ns[i] = clock() - middle
    finally:
        gc.unfreeze()
    fastest = _p50_fastest(model_ns, passes) / 1e6
    p50, p99 = np.percentile(fastest, [50, 99])
    ref = float(np.median(_p50_fastest(reference_ns, passes))) / 1e6
    return Latency(float(p50), float(p99), float(fastest.mean()), rows * passes), ref


@functools.cache
def reference_alone_ms() -> float:
    """The reference's p50 ms in this process, measured once (the driver calls it before
    any trial starts, so the machine is as quiet as a run gets): the lowest median of
    :data:`REFERENCE_BURSTS` bursts 20 ms apart, each timed like the probe, so a burst that
    met Ray's start-up does not count (a high "alone" figure would make the calibration
    prune more, never less)."""
    from threadpoolctl import threadpool_limits

    reference = reference_call()
    calls = REFERENCE_CALLS // REFERENCE_BURSTS
    medians = []
    with threadpool_limits(limits=1):
        for i in range(20):
            reference(i)
        for _ in range(REFERENCE_BURSTS):
            times = np.empty(calls, dtype=np.int64)
            for i in range(calls):
                started = time.perf_counter_ns()
                reference(i)
                times[i] = time.perf_counter_ns() - started
            medians.append(float(np.median(_p50_fastest(times, 2))) / 1e6)
            time.sleep(0.02)
    return min(medians)


def slowdown(reference_ms: float | None, alone_ms: float | None) -> float:
    """How much slower the worker ran than the quiet driver: ``reference_ms / alone_ms``,
    at least 1 (1 when either is unknown)."""
    if not reference_ms or not alone_ms or reference_ms <= 0 or alone_ms <= 0:
        return 1.0
    return max(1.0, reference_ms / alone_ms)


def calibrated_ms(probe_ms: float, reference_ms: float | None, alone_ms: float | None) -> float:
    """The probe's estimate of the model alone: ``probe_ms / slowdown`` (see the module
    docstring). Example: 3.6 ms in a worker whose reference ran 3x slower than alone ->
    1.2 ms."""
    return probe_ms / slowdown(reference_ms, alone_ms)
