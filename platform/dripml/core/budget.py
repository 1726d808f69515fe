"""Time budget: one deadline for a whole :func:`dripml.train`, and the arithmetic that shares it.

``search.time_budget_s`` bounds the whole run: Ray's start, loading the data, Discover, the
refit of the candidates, their cost measurements, registration and the MLflow bookkeeping.
:func:`dripml.api.train` creates one :class:`Deadline` when it starts and passes it down
explicitly:

- Discover ends ``refine_reserve_s`` seconds before the deadline (:func:`refine_reserve_s`,
  re-estimated after every trial from what the search has measured); trials in flight then
  are cancelled.
- Refine plans its work in what is left: it refits candidates in rank order while each
  refit's estimate fits (the first is always refit), reduces the single-row latency calls
  down to :data:`LATENCY_FLOOR_CALLS`, then skips the peak-memory measurement, then measures
  fewer candidates (:func:`plan_measurement`), and registers the other frontier points while
  a registration fits; the chosen point is always registered. The refit candidates' time on
  the serving path (:func:`serving_path_s` each) is kept before extra points (ensembles,
  compiled twins) get any, and the best's before the in-process measurement plan.

Every skip is recorded (``TrainResult.skipped``, ``budget.json`` in the MLflow run). Times are
seconds of :func:`time.monotonic` throughout. Pure arithmetic (standard library and
:mod:`dripml.core.costs`' constants), so it is tested without Ray.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dripml.core import costs
from dripml.core.costs import LATENCY_FLOOR_CALLS

__all__ = ["CALL_S", "FINISH_S", "LATENCY_FLOOR_CALLS", "MEMORY_S", "MEMORY_START_S",
           "OVERRUN_FACTOR", "REDUCED_WARMUP_CALLS", "REFINE_SHARE", "REGISTER_S",
           "ROW_TIMING_CALLS", "SERVING_START_S", "THROUGHPUT_S", "Deadline", "MeasurePlan",
           "ModelTiming", "TrialCost", "call_s", "measurement_s", "plan_measurement",
           "refine_reserve_s", "refit_s", "serving_path_s"]

REGISTER_S = 2.0
"""Allowance for logging and registering one model version in MLflow, seconds (measured
about 1.1 s with the embedded SQLite store: pyfunc pickling, signature, requirements)."""
FINISH_S = 4.0
"""Allowance for what follows the last registration, seconds: the frontier table and plot,
``budget.json``, ending the MLflow run and stopping an embedded Ray (measured 3.4 s, 1.2 s of
it Ray's shutdown)."""
CALL_S = 0.002
"""A single-row ``predict_records`` call when Discover timed none, seconds; added to a timed
one for what the serving path adds around the model (records to a frame, encoding)."""
ROW_TIMING_CALLS = 5
"""Single-row predictions fold 0 of every trial times under a time budget
(``FoldScore.predict_row_ms``): a 300-tree forest answers one row in ~30 ms, so 1,000
latency calls take 30 s, which the reserve must know before the search uses the time."""
THROUGHPUT_S = 0.5
"""The throughput measurement of one model (4 calls of 1,000 rows) before it is timed,
seconds."""
MEMORY_S = 0.5
"""One peak-memory measurement (fork, unpickle, predict one batch), seconds, plus twice the
model's batch time in :func:`measurement_s`."""
MEMORY_START_S = 3.0
"""Starting the peak-memory process (:class:`~dripml.core.costs.MemoryMeter`: NumPy, pandas,
scikit-learn and the model's library imported), seconds. Under a time budget Refine starts
it only when the plan measures memory, so that it takes no CPU from the refits."""
REDUCED_WARMUP_CALLS = 10
"""Untimed single-row calls before the timed ones when the budget cuts the measurement (50
otherwise): the brief timing before the plan (:func:`dripml.core.costs.time_calls`) has
already called the model a dozen times."""
REFINE_SHARE = 0.25
"""Most of the budget Discover reserves for Refine beyond what refitting and measuring the
best trial alone needs."""
OVERRUN_FACTOR = 2.0
"""When no trial has completed, Discover waits for the first one until the elapsed time is
this many times the budget, then fails."""


SERVING_START_S = 4.0
"""Allowance for starting and stopping one loopback ``/predict`` server of Refine's
serving-path measurement (:mod:`dripml.refine.serving_cost`), seconds, before one was timed;
the measurement itself then adapts to the start-up it sees."""


def serving_path_s(serving_seconds: float, *, enabled: bool) -> float:
    """Seconds to measure one model on the serving path: :data:`SERVING_START_S` plus
    ``refine.serving_seconds`` of load; 0 when the serving path is off."""
    return SERVING_START_S + serving_seconds if enabled else 0.0


def call_s(predict_row_ms: float | None) -> float:
    """Estimated single-row serving call, seconds: a timed single-row prediction (ms, see
    ``TrialResult.predict_row_ms``) plus :data:`CALL_S`, or :data:`CALL_S` alone."""
    return CALL_S if predict_row_ms is None else predict_row_ms / 1000 + CALL_S


@dataclass(frozen=True)
class Deadline:
    """A point in time ``budget_s`` seconds after ``started`` (``time.monotonic``).

    ``budget_s`` None is no deadline: :meth:`left_s` is infinite and nothing expires.
    ``clock`` is the time source (tests pass a fake one).

    Example: ``Deadline(60.0)`` made at t=100 has ``left_s() == 45.0`` at t=115, and
    ``split(20.0)`` gives the deadline at t=140 (the first part of the run ends 20 s before
    the whole).
    """

    budget_s: float | None
    started: float = field(default_factory=time.monotonic)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.budget_s is not None and (math.isnan(self.budget_s) or self.budget_s < 0):
            raise ValueError(f"a time budget is a non-negative number of seconds, "
                             f"got {self.budget_s}")

    @property
    def bounded(self) -> bool:
        return self.budget_s is not None

    def elapsed_s(self) -> float:
        """Seconds since ``started``."""
        return self.clock() - self.started

    def left_s(self) -> float:
        """Seconds until the deadline, 0 once past it; ``math.inf`` without a budget."""
        if self.budget_s is None:
            return math.inf
        return max(0.0, self.budget_s - self.elapsed_s())

    def expired(self) -> bool:
        """Whether the deadline has passed (never without a budget)."""
        return self.budget_s is not None and self.elapsed_s() >= self.budget_s

    def overrun(self, factor: float = OVERRUN_FACTOR) -> bool:
        """Whether ``factor`` times the budget has elapsed (never without a budget)."""
        return self.budget_s is not None and self.elapsed_s() >= factor * self.budget_s

    def left_until_overrun_s(self, factor: float = OVERRUN_FACTOR) -> float:
        """Seconds until :meth:`overrun` holds, 0 once it does; ``math.inf`` without a
        budget."""
        if self.budget_s is None:
            return math.inf
        return max(0.0, factor * self.budget_s - self.elapsed_s())

    def split(self, reserve_s: float) -> Deadline:
        """The deadline ``reserve_s`` seconds before this one, same start (what the first
        part of the run gets when the rest needs ``reserve_s``); without a budget, itself.

        Raises:
            ValueError: ``reserve_s`` negative.
        """
        if reserve_s < 0:
            raise ValueError(f"a reserve is a non-negative number of seconds, got {reserve_s}")
        if self.budget_s is None:
            return self
        return Deadline(max(0.0, self.budget_s - reserve_s), self.started, self.clock)


# ---------------------------------------------------------------------------------------
# Discover: the reserve for Refine
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrialCost:
    """What Discover measured of one complete trial: the mean fit time of its folds and the
    estimated single-row serving call (:func:`call_s`), seconds."""

    fold_fit_s: float
    call_s: float = CALL_S


def refit_s(trial: TrialCost, row_scale: float) -> float:
    """Estimated refit on all training rows: the mean fold fit time times ``row_scale``
    (training rows / rows a fold trains on, k / (k - 1) for k folds), seconds."""
    return trial.fold_fit_s * row_scale


def measurement_s(call_s: float, calls: int, *, batch_s: float | None = None,
                  memory: bool = True, models: int = 1,
                  warmup: int = costs.WARMUP_CALLS) -> float:
    """Estimated serving-cost measurement of one model among ``models`` measured together,
    seconds: ``(warmup + calls + rewarm) * call_s`` for latency (``rewarm``: 5 calls per
    block of 100 with more than one model), ``(1 + BATCH_REPEATS) * batch_s`` for throughput
    (:data:`THROUGHPUT_S` when ``batch_s`` is unknown) and, with ``memory``,
    ``MEMORY_S + 2 * batch_s`` for peak memory."""
    rewarm = (costs.REWARM_CALLS * math.ceil(calls / costs.LATENCY_BLOCK)
              if models > 1 else 0)
    latency = (warmup + calls + rewarm) * call_s
    batches = (1 + costs.BATCH_REPEATS) * batch_s if batch_s is not None else THROUGHPUT_S
    memory_cost = MEMORY_S + 2 * (batch_s or 0.0) if memory else 0.0
    return latency + batches + memory_cost


def refine_reserve_s(trials: Sequence[TrialCost], *, row_scale: float, latency_calls: int,
                     budget_s: float | None, register_s: float = REGISTER_S,
                     finish_s: float = FINISH_S, serving_s: float = 0.0) -> float:
    """Seconds Discover leaves for Refine and registration, from what it has measured.

    ``trials``: the complete trials Refine would refit, best first (Discover passes the
    ``refine.top_k`` best), each with ``call_s``, its estimated single-row serving call
    (:func:`call_s` of its timed prediction). ``serving_s``: measuring one model on the
    serving path (:func:`serving_path_s`; 0 when ``refine.serving_path`` is off). Refine in
    full measures each with ``latency_calls`` calls, peak memory and the serving path; at the
    least, the best alone at the floor and on the serving path::

        full_need(t) = fold_fit_s * row_scale + (50 + latency_calls) * call_s
                       + THROUGHPUT_S + MEMORY_S + serving_s + register_s
        least_need(t) = fold_fit_s * row_scale + (10 + LATENCY_FLOOR_CALLS) * call_s
                        + THROUGHPUT_S + serving_s + register_s

        minimum = least_need(best) + finish_s
        full    = sum(full_need(t) for t in trials) + finish_s
        reserve = min(full, max(minimum, REFINE_SHARE * budget_s))

    so Discover keeps at least 75 % of the budget unless the least Refine needs more, and
    never reserves more than the full Refine needs. With no complete trial yet,
    ``register_s + finish_s``.

    Example: budget 100 s, two trials with 2 s folds (k=5, row_scale 1.25), 1,000 calls at
    2 ms: full_need = 2.5 + 1,050 * 0.002 + 0.5 + 0.5 + 2 = 7.6 s each, full 19.2 s;
    least_need = 2.5 + 210 * 0.002 + 0.5 + 2 = 5.42 s, minimum 9.42 s; reserve 19.2 s
    (under 25 s). With a 20 s budget: 9.42 s.
    """
    if not trials:
        return register_s + finish_s
    best = trials[0]
    least = (refit_s(best, row_scale) + register_s + serving_s + measurement_s(
        best.call_s, min(LATENCY_FLOOR_CALLS, latency_calls), memory=False,
        warmup=REDUCED_WARMUP_CALLS))
    full = sum(refit_s(t, row_scale) + measurement_s(t.call_s, latency_calls) + serving_s
               + register_s for t in trials)
    share = REFINE_SHARE * budget_s if budget_s is not None else math.inf
    return min(full + finish_s, max(least + finish_s, share))


# ---------------------------------------------------------------------------------------
# Refine: how much to measure in the time left
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelTiming:
    """A refit model's serving speed, timed just before its measurement: one single-row
    call and one batch of 1,000 rows, seconds."""

    call_s: float
    batch_s: float


@dataclass(frozen=True)
class MeasurePlan:
    """What Refine measures: the first ``models`` candidates (rank order), ``calls`` timed
    single-row calls each after ``warmup`` untimed ones, peak memory or not, and the
    estimated time, seconds."""

    models: int
    calls: int
    memory: bool
    estimate_s: float
    warmup: int = costs.WARMUP_CALLS


def plan_measurement(left_s: float, timings: Sequence[ModelTiming], *, calls: int,
                     floor: int = LATENCY_FLOOR_CALLS, memory: bool = True,
                     can_skip_memory: bool = True, memory_start_s: float = 0.0
                     ) -> MeasurePlan:
    """The most measurement that fits in ``left_s`` seconds. Everything (every model,
    ``calls`` calls after 50 warm-up calls, ``memory``, which costs ``memory_start_s`` more
    when the memory process has still to start) when it fits; otherwise, with
    :data:`REDUCED_WARMUP_CALLS` warm-up calls, cutting in this order:

    1. fewer single-row calls per model, down to ``floor``;
    2. no peak-memory measurement (when ``can_skip_memory``: not when a constraint or the
       ``select`` cost needs it);
    3. fewer models, from the end of the rank order; the first is always measured.

    With nothing fitting, the first model at ``floor`` calls (without memory if allowed):
    the least a registered model is measured with.

    Raises:
        ValueError: no timings, or ``floor`` above ``calls`` or below 1.
    """
    if not timings:
        raise ValueError("plan_measurement needs at least one model")
    if floor < 1 or floor > calls:
        raise ValueError(f"floor {floor} must be between 1 and calls {calls}")

    def total(chosen: Sequence[ModelTiming], c: int, with_memory: bool, warmup: int) -> float:
        return sum(measurement_s(t.call_s, c, batch_s=t.batch_s, memory=with_memory,
                                 models=len(chosen), warmup=warmup) for t in chosen
                   ) + (memory_start_s if with_memory else 0.0)

    everything = total(timings, calls, memory, costs.WARMUP_CALLS)
    if everything <= left_s:
        return MeasurePlan(len(timings), calls, memory, everything)
    warmup = REDUCED_WARMUP_CALLS
    options = [memory] + ([False] if memory and can_skip_memory else [])
    for n in range(len(timings), 0, -1):
        for with_memory in options:
            def cost(c: int, chosen: Sequence[ModelTiming] = timings[:n],
                     with_memory: bool = with_memory) -> float:
                return total(chosen, c, with_memory, warmup)

            fitted = _most_calls(cost, left_s, floor, calls)
            if fitted is not None:
                return MeasurePlan(n, fitted, with_memory, cost(fitted), warmup)
    last = options[-1]
    return MeasurePlan(1, floor, last, total(timings[:1], floor, last, warmup), warmup)


def _most_calls(total: Callable[[int], float], left_s: float, floor: int,
                most: int) -> int | None:
    """The largest call count in [floor, most] whose ``total`` fits ``left_s`` (``total``
    grows with the count), or None when even ``floor`` does not fit."""
    if total(floor) > left_s:
        return None
    if total(most) <= left_s:
        return most
    low, high = floor, most  # total(low) fits, total(high) does not
    while high - low > 1:
        middle = (low + high) // 2
        if total(middle) <= left_s:
            low = middle
        else:
            high = middle
    return low
