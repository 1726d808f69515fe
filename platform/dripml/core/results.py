"""Result types of a search: one fold's scores, one trial, the whole search.

Typed, immutable records that Discover produces and Refine, tracking and progress output
read; they live in the core so that none of those imports the search (Ray, Optuna).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


@dataclass(frozen=True)
class FoldScore:
    """One fold of one trial: ``metrics`` maps ``<split>_<metric>`` to its value;
    ``fit_time_s`` is the wall time of preprocessing + fit, seconds.

    With a cost probe (see :func:`run_fold`), ``probe_latency_p50_ms`` / ``_p99_ms`` are the
    single-row latency percentiles of this fold's model (milliseconds) and ``probe_model_mb``
    its pickled size (MB); None without a probe. ``predict_row_ms``: the median of a few
    single-row predictions of this fold's model (encoded rows, milliseconds), which fold 0
    times under a time budget when there is no probe (the budget's estimate of what
    measuring its latency will cost); None otherwise.

    ``started_ms``, ``ended_ms``: wall-clock start and end of the fold's task (Unix epoch,
    milliseconds, the worker's clock), scoring and probe included; None when not recorded.

    ``oof``: the fold model's predictions on its validation rows, in the fold's order
    (float32: probabilities (n_val, K), or values (n_val,) for regression), which Refine's
    ensembles (:mod:`dripml.refine.ensembles`) combine; kept in memory only, for trials
    that may become candidates (never logged); None otherwise.
    """

    fold: int
    metrics: dict[str, float]
    fit_time_s: float
    probe_latency_p50_ms: float | None = None
    probe_latency_p99_ms: float | None = None
    probe_model_mb: float | None = None
    predict_row_ms: float | None = None
    probe_reference_ms: float | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    oof: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def probe(self) -> dict[str, float]:
        """The probe's measurements by cost name (as :mod:`dripml.refine.frontier` names them)."""
        values = {"latency_p50_ms": self.probe_latency_p50_ms,
                  "latency_p99_ms": self.probe_latency_p99_ms,
                  "model_mb": self.probe_model_mb,
                  # the reference timed beside the model (dripml.discover.probe_calibration)
                  "reference_ms": self.probe_reference_ms}
        return {k: v for k, v in values.items() if v is not None}


def aggregate(folds: Sequence[FoldScore]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and population std per metric key over folds (NaN values ignored).

    Example: folds with validation_auc 0.8 and 0.9 give mean 0.85, std 0.05.
    """
    keys = sorted({k for f in folds for k in f.metrics})
    mean, std = {}, {}
    for key in keys:
        values = np.array([f.metrics.get(key, math.nan) for f in folds], dtype=np.float64)
        finite = values[~np.isnan(values)]
        mean[key] = float(finite.mean()) if finite.size else math.nan
        std[key] = float(finite.std()) if finite.size else math.nan
    return mean, std


TrialState = Literal["COMPLETE", "PRUNED", "FAILED", "INTERRUPTED"]


@dataclass(frozen=True)
class TrialResult:
    """One configuration's cross-validation.

    Attributes:
        number: Optuna trial number (0-based, in proposal order).
        algorithm: algorithm key (built-in name or custom class name).
        params: every hyperparameter (fixed and tuned).
        state: COMPLETE, PRUNED (early-stopped between folds), FAILED, or INTERRUPTED
            (in flight when Ctrl-C or SIGTERM stopped the run; never resumed as finished).
        folds: the folds that finished, in fold order.
        mean, std: per metric key, over the finished folds (population std, as scikit-learn's
            ``cv_results_``).
        objective: mean of the objective over the finished folds (None if none finished).
        fit_time_s: summed fit time of the finished folds, seconds.
        error: the failure's last lines when FAILED.
        reason: why it was PRUNED: the cost probe (the constraint broken), successive
            halving (the rung it stopped at), or ``"time budget"`` when it was cancelled in
            flight at Discover's deadline.
        rungs: successive halving's fits on samples of fold 0's rows, smallest first (their
            ``fold`` is the sample's index); not part of ``folds``, ``mean`` or
            ``fit_time_s``.
        encoding: how the algorithm encoded the columns, e.g. ``"native: carrier, dest"``
            (shown with the params in the leaderboard; "" when nothing to say).
        start_time_ms, end_time_ms: when the trial really ran (Unix epoch, milliseconds):
            from its first fit's start to its last fit's end (a COMPLETE trial) or to when
            the driver ended it (pruned, failed); None when not recorded.
        fold_retries: how many times a fit of this trial was submitted again because its
            Ray worker or node died or ran out of memory (``resources.max_fold_retries``).
        search_point: the sampler's own parameters of this trial (``algorithm``,
            ``<algorithm>.<param>``), and ``search_space`` their distributions as the
            sampler's JSON: what a resumed search tells its sampler (see
            :mod:`dripml.core.resume`); empty when not recorded.
        reports: the running objective reported to the pruner, by step (fold count, or a
            halving rung's step).
        preprocess: the ``data.preprocess`` reference this trial tried when the spec lists
            several (a search dimension); None otherwise.
    """

    number: int
    algorithm: str
    algorithm_name: str
    params: dict[str, Any]
    state: TrialState
    folds: tuple[FoldScore, ...]
    mean: dict[str, float]
    std: dict[str, float]
    objective: float | None
    fit_time_s: float
    error: str | None = None
    reason: str | None = None
    rungs: tuple[FoldScore, ...] = ()
    encoding: str = ""
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    fold_retries: int = 0
    search_point: dict[str, Any] = field(default_factory=dict)
    search_space: dict[str, str] = field(default_factory=dict)
    reports: dict[int, float] = field(default_factory=dict)
    preprocess: str | None = None

    @property
    def search_time_s(self) -> float:
        """Seconds of every fit of this trial, halving's samples included."""
        return self.fit_time_s + sum(f.fit_time_s for f in self.rungs)

    @property
    def probe(self) -> dict[str, float]:
        """The cost probe's measurements (first fold), cost name -> value; {} if none."""
        return next((f.probe for f in self.folds if f.probe), {})

    @property
    def predict_row_ms(self) -> float | None:
        """One single-row prediction as Discover timed it, milliseconds: the probe's median
        latency, else fold 0's ``predict_row_ms``; None when neither was measured."""
        probed = self.probe.get("latency_p50_ms")
        if probed is not None:
            return probed
        return next((f.predict_row_ms for f in self.folds if f.predict_row_ms is not None),
                    None)


@dataclass(frozen=True)
class SearchResult:
    """All trials of a search, the best complete one, and how it was judged.

    ``wall_time_s``: the search's wall time, seconds. ``skipped``: what the time budget cut
    (trials cancelled in flight, trials never started), one line each; empty without one.
    """

    trials: tuple[TrialResult, ...]
    best: TrialResult
    objective_key: str
    direction: str
    wall_time_s: float
    skipped: tuple[str, ...] = ()
