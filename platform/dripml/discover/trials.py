"""Discover: K-fold x hyperparameter trials as parallel Ray tasks (the driver's side).

The driver asks Optuna for configurations (see :mod:`dripml.discover.search`), submits one Ray task
per (trial, fold) with the spec's resources, and tells Optuna each trial's mean objective.
The encoded training matrix goes into Ray's object store once and every task reads it from
there. With ``early_stopping`` a trial reports its running mean after each fold and the
remaining folds of a pruned trial are cancelled.

Cost-aware search: when the spec's ``constraints`` limit latency or model size, fold 0 of
every trial also probes its model (``search.cost_probe_calls`` single-row predictions and
its pickled size, see :func:`dripml.discover.folds.run_fold`). A trial is PRUNED at once when the
probe's median latency exceeds ``max_latency_p50_ms`` or ``max_latency_p99_ms`` times
``search.cost_probe_margin``, or its size exceeds ``max_model_mb`` times the margin
(``reason`` says which; see :func:`probe_judged` for why the median); its other folds are
cancelled, and Optuna is told it was pruned; TPE ranks pruned trials after
every complete one, so it steers away from that region: the budget goes where the
constraints can be met. Trials are dropped, never penalised: a penalised objective would mix
quality and cost on one scale the user never chose.

Time budget (``search.time_budget_s``, see :mod:`dripml.core.budget`): the search ends
:func:`~dripml.core.budget.refine_reserve_s` before the run's deadline, a reserve re-estimated
after every trial. Then no trial starts, the folds of trials in flight are cancelled
(``ray.cancel(force=True)``) and those trials recorded PRUNED with reason ``"time budget"``,
and the best complete trial so far wins. With none complete yet the search waits for the
first (no new trial starts while one runs) until twice the budget has elapsed, then fails.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import ray

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.core import budget, constraints, costs, metrics
from dripml.core.budget import Deadline
from dripml.core.data import Dataset
from dripml.core.objective import Objective, resolve_objective
from dripml.core.results import FoldScore, SearchResult, TrialResult, TrialState, aggregate
from dripml.core.spec import MetricSpec, Spec
from dripml.discover import halving, oof, probe_calibration, retries, search
from dripml.discover.folds import (
    make_folds,
    run_fold,
    transform_fold,
    warm_up,
)
from dripml.discover.halving import Fit, Ladder
from dripml.discover.planner import Planner
from dripml.errors import ConstraintError, SearchError

__all__ = ["Objective", "SearchResult", "TrialResult", "discover", "resolve_objective"]

_run_fold_remote = ray.remote(run_fold)
_transform_fold_remote = ray.remote(transform_fold)

MAX_SHARED_FOLDS = 64
"""Most (preprocessor, fold) outputs a search keeps in Ray's object store to share."""
TIME_BUDGET_REASON = "time budget"
"""``TrialResult.reason`` of a trial cancelled in flight at Discover's deadline."""

log = logging.getLogger(__name__)


@dataclass
class _Running:
    trial: optuna.trial.Trial
    config: search.Config
    pending: dict[ray.ObjectRef, Fit] = field(default_factory=dict)
    folds: list[FoldScore] = field(default_factory=list)
    rungs: list[FoldScore] = field(default_factory=list)
    rung: int = 0
    submitted_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    reports: dict[int, float] = field(default_factory=dict)
    retries: dict[Fit, int] = field(default_factory=dict)


_ADVANCE = "advance"
"""What :func:`_collect` returns when a trial climbs to its next successive-halving rung."""


@dataclass(frozen=True)
class _Retry:
    """What :func:`_collect` returns when a fit's worker died: submit ``fit`` again."""

    fit: Fit

ProgressCallback = Callable[[TrialResult, "TrialResult | None", int, "int | None"], None]


@dataclass
class InFlight:
    """The trials a search has in flight, for its caller to stop when the search is
    interrupted (Ctrl-C, SIGTERM): pass one to :func:`discover` and call :meth:`stop` in the
    ``except KeyboardInterrupt`` around it."""

    running: dict[int, _Running] = field(default_factory=dict)

    def stop(self, reason: str) -> list[TrialResult]:
        """Cancel every fit still pending (``force``: its worker is killed) and return each
        trial that was in flight as INTERRUPTED with ``reason`` and the folds that had
        finished (those done but not yet collected included), by trial number."""
        stopped = []
        for number in sorted(self.running):
            state = self.running.pop(number)
            refs = list(state.pending)
            done = set(ray.wait(refs, num_returns=len(refs), timeout=0)[0]) if refs else set()
            for ref, fit in state.pending.items():
                if ref not in done:
                    ray.cancel(ref, force=True)
                    continue
                try:
                    score = ray.get(ref, timeout=1)
                except ray.exceptions.RayError:
                    continue
                (state.rungs if fit.sample is not None else state.folds).append(score)
            folds = tuple(sorted(state.folds, key=lambda f: f.fold))
            mean, std = aggregate(folds)
            start_ms, end_ms = _wall_clock(state, "INTERRUPTED")
            stopped.append(TrialResult(
                number=number, algorithm=state.config.algorithm.key,
                algorithm_name=state.config.algorithm.name, params=dict(state.config.params),
                state="INTERRUPTED", folds=folds, mean=mean, std=std, objective=None,
                fit_time_s=sum(f.fit_time_s for f in folds), reason=reason,
                rungs=tuple(state.rungs), start_time_ms=start_ms, end_time_ms=end_ms,
                preprocess=state.config.preprocess))
        return stopped


@dataclass(frozen=True)
class _TrialInput:
    """What the trials of one ``data.preprocess`` choice read: the build context of its
    encoder's layout, its encoded training matrix and (for custom algorithms) its training
    frame, both in Ray's object store."""

    ctx: BuildContext
    encoded: ray.ObjectRef
    frame: ray.ObjectRef | None


def _trial_inputs(dataset: Dataset, spec: Spec,
                  choices: Sequence[str]) -> dict[str | None, _TrialInput]:
    """One :class:`_TrialInput` per ``preprocess`` choice (key: the reference), or the
    dataset's own under None when the search has no such dimension."""
    custom = any(a.is_custom for a in spec.algorithms)

    def put(data: Dataset) -> _TrialInput:
        return _TrialInput(BuildContext.for_spec(spec, data.encoder.layout),
                           ray.put(data.encoder.transform(data.X_train)),
                           ray.put(data.X_train) if custom else None)

    if not choices:
        return {None: put(dataset)}
    return {choice: put(dataset.choice(choice)) for choice in choices}


def is_distributed(spec: Spec, algorithm_name: str | None) -> bool:
    """Whether ``algorithm_name`` trains with Ray Train's TorchTrainer under this spec
    (its declaration says ``distributed`` and ``resources.workers_per_trial > 1``)."""
    return spec.resources.workers_per_trial > 1 and algorithms.distributed(algorithm_name)


def fit_task_options(spec: Spec, algorithm_name: str | None) -> dict[str, Any]:
    """Ray task options of one fit (a fold, or a refit) of ``algorithm_name``.

    The trial's ``num_cpus`` and ``num_gpus`` from ``resources``, no retries. A fit that
    trains with TorchTrainer only coordinates: its workers hold the trial's CPUs and GPUs,
    so the task itself asks for 0.01 CPU and no GPU.
    """
    options = {"num_cpus": spec.resources.cpus_per_trial,
               "num_gpus": spec.resources.gpus_per_trial, "max_retries": 0}
    if is_distributed(spec, algorithm_name):
        options.update(num_cpus=0.01, num_gpus=0)
    return options


def warm_up_workers(spec: Spec) -> list[ray.ObjectRef]:
    """Start one warm-up task per CPU slot (returns at once): the workers import the
    algorithms' libraries while the driver is still loading data."""
    cpus = ray.cluster_resources().get("CPU", 1.0)
    slots = max(1, int(cpus // spec.resources.cpus_per_trial))
    names = [a.name for a in spec.algorithms]
    task = ray.remote(warm_up).options(num_cpus=spec.resources.cpus_per_trial, max_retries=0)
    return [task.remote(names) for _ in range(slots)]


def discover(
    dataset: Dataset,
    spec: Spec,
    objective: Objective,
    *,
    on_trial: ProgressCallback | None = None,
    deadline: Deadline | None = None,
    kept: Sequence[TrialResult] = (),
    in_flight: InFlight | None = None,
) -> SearchResult:
    """Run the search on the connected Ray cluster (call
    :func:`dripml.orchestration.ray_cluster.connect` first).

    Args:
        dataset: checked data; only its training split is used.
        spec: the validated spec.
        objective: metric and direction to optimise.
        on_trial: called after each trial ends with (result, best so far, done, total).
        deadline: the whole run's deadline (:func:`dripml.api.train` makes it from
            ``search.time_budget_s``); the search ends
            :func:`~dripml.core.budget.refine_reserve_s` before it (see the module
            docstring). Without one, a deadline ``search.time_budget_s`` seconds from now,
            all of it the search's.
        kept: the finished trials of an interrupted search of this spec (see
            :mod:`dripml.core.resume`): told to the sampler, counted towards ``num_trials``,
            part of the result, never run again (``on_trial`` is not called for them).
        in_flight: filled with the trials while they run; after an interrupt,
            :meth:`InFlight.stop` cancels them and returns them (see
            :func:`dripml.api.train`).

    Fold retries: a fit whose Ray worker or node died, or ran out of memory (see
    :func:`dripml.discover.retries.is_lost_worker`), is submitted again, at most
    ``resources.max_fold_retries`` times per fit (without the shared preprocessing, which
    may have been lost with the worker); an error raised by the model code fails the trial
    at once. ``TrialResult.fold_retries`` counts them.

    Returns:
        Every trial, and the best COMPLETE one by mean objective; ``skipped`` lists what the
        time budget cut.

    Raises:
        SearchError: no trial completed (the message quotes the first failure), or none
            completed within twice the time budget.
    """
    started = time.monotonic()
    reserve = deadline is not None
    whole = deadline if deadline is not None else Deadline(spec.search.time_budget_s)
    study, total = search.create_study(spec, objective.direction, kept)
    n_classes = len(dataset.classes)
    train_bound = metrics.resolve_all(spec.metrics.train, spec.task)
    validation_bound = metrics.resolve_all(validation_metric_specs(spec, objective), spec.task)
    folds = make_folds(dataset.y_train, spec)
    fold_rows = int(np.mean([len(t) for t, _ in folds]))
    planner = _planner(spec, objective, fold_rows)
    ladder = (halving.ladder(folds, eta=spec.search.halving_eta,
                             min_rows=spec.search.halving_min_rows, seed=spec.search.seed)
              if spec.search.uses_halving else None)
    # One encoded matrix (and build context) per data.preprocess choice, put once.
    inputs = _trial_inputs(dataset, spec, search.preprocess_dimension(spec))
    y_ref = ray.put(dataset.y_train)
    splits_ref = ray.put(folds)
    samples_ref = ray.put(list(ladder.samples)) if ladder is not None and ladder.samples else None
    task_options = fit_task_options(spec, None)
    # Halving runs one fit per trial until the last rung: more trials in flight fill the CPUs.
    limit = spec.search.max_concurrent or _default_concurrency(
        spec, 1 if ladder is not None else len(folds))
    probe_calls = spec.search.cost_probe_calls if spec.constraints.probed else 0
    if probe_calls:  # the probe's calibration reference, timed alone before any trial runs
        probe_calibration.reference_alone_ms()
    keep_oof = oof.wanted(spec)
    # Under a run's time budget, fold 0 times a few single-row predictions (no probe needed)
    # so that the reserve for Refine knows what measuring each model's latency will cost.
    row_calls = (budget.ROW_TIMING_CALLS
                 if reserve and whole.bounded and probe_calls == 0 else 0)

    shared: dict[tuple[Any, ...], ray.ObjectRef] = {}

    def transformed(config: search.Config, fold: int) -> ray.ObjectRef | None:
        # Fit each distinct preprocessor once per fold; trials share its output.
        if config.algorithm.is_custom:
            return None
        data = inputs[config.preprocess]
        key = algorithms.build(config.algorithm.name, data.ctx, config.params).preprocessor_key
        if key is None:
            return None
        key = (config.preprocess, *key)  # another choice's rows are other data
        if (key, fold) not in shared:
            if len(shared) >= MAX_SHARED_FOLDS:
                return None
            shared[(key, fold)] = _transform_fold_remote.options(**task_options).remote(
                data.encoded, y_ref, splits_ref, fold, config.algorithm.name, config.params,
                data.ctx)
        return shared[(key, fold)]

    running: dict[int, _Running] = in_flight.running if in_flight is not None else {}
    results: list[TrialResult] = []
    best: TrialResult | None = None
    asked = 0

    by_key = {a.key: a for a in spec.algorithms}
    encodings: dict[tuple[str, str | None], str] = {}

    def encoding(key: str, preprocess: str | None) -> str:
        # How the algorithm encodes the columns, said once per key and choice with every trial.
        if (key, preprocess) not in encodings:
            algorithm = by_key[key]
            encodings[(key, preprocess)] = (
                "" if algorithm.is_custom
                else algorithms.encoding_summary(algorithm.name, inputs[preprocess].ctx))
        return encodings[(key, preprocess)]

    def space_of(algorithm: Any) -> Any:
        if planner is not None:
            return planner.space(algorithm.key)
        return algorithms.search_space(algorithm, spec.task, fold_rows)

    def submit() -> None:
        nonlocal asked
        if planner is not None:
            _enqueue_planned(study, spec, planner, search_deadline().left_s())
        trial = study.ask()
        asked += 1
        config = search.suggest(trial, spec, space_of)
        running[trial.number] = _Running(trial, config)
        first = (ladder.rungs[0] if ladder is not None
                 else tuple(Fit(i, len(t)) for i, (t, _) in enumerate(folds)))
        submit_fits(trial.number, first)

    def submit_fits(number: int, fits: tuple[Fit, ...], retry: bool = False) -> None:
        state = running[number]
        name, params = state.config.algorithm.name, state.config.params
        data = inputs[state.config.preprocess]
        X_ref = data.frame if state.config.algorithm.is_custom else data.encoded
        ctx = data.ctx
        options = fit_task_options(spec, name)
        for fit in fits:
            if fit.sample is not None:
                ref = _run_fold_remote.options(**options).remote(
                    X_ref, y_ref, samples_ref, fit.sample, name, params, ctx, n_classes,
                    train_bound, validation_bound)
            else:
                i = fit.fold
                ref = _run_fold_remote.options(**options).remote(
                    X_ref, y_ref, splits_ref, i, name, params, ctx, n_classes, train_bound,
                    validation_bound, None if retry else transformed(state.config, i),
                    probe_calls if i == 0 else 0, row_calls if i == 0 else 0,
                    keep_predictions=keep_oof)
            state.pending[ref] = fit

    row_scale = len(dataset.y_train) / float(np.mean([len(t) for t, _ in folds]))

    serving_s = budget.serving_path_s(  # Refine's measurement through a real /predict
        spec.refine.serving_seconds, enabled=costs.serving_path_enabled(spec.refine))

    def search_deadline() -> Deadline:
        # The run's deadline less what Refine and registration need, from the trials so far.
        if not reserve or not whole.bounded:
            return whole
        complete = sorted((r for r in results if r.state == "COMPLETE" and r.folds),
                          key=lambda r: objective.sort_key(r.objective))
        measured = [budget.TrialCost(r.fit_time_s / len(r.folds), budget.call_s(r.predict_row_ms))
                    for r in complete[:spec.refine.top_k]]
        return whole.split(budget.refine_reserve_s(
            measured, row_scale=row_scale, latency_calls=spec.refine.latency_calls,
            budget_s=whole.budget_s, serving_s=serving_s))

    slots = max(1, int(ray.cluster_resources().get("CPU", 1.0) // spec.resources.cpus_per_trial))

    def note(result: TrialResult) -> None:
        nonlocal best
        results.append(result)
        if keep_oof:  # Refine's ensembles read the candidates' out-of-fold predictions
            oof.prune(results, spec, objective.direction)
        if planner is not None:
            # What one fit may cost and still leave time to finish a trial of all folds.
            per_fit = search_deadline().left_s() * slots / len(folds)
            planner.observe_trial(result.algorithm, result.params, result.search_time_s,
                                  result.objective if result.state == "COMPLETE" else None,
                                  result.state == "FAILED", per_fit, fold_rows)
        if result.state == "COMPLETE" and objective.better(
                result.objective, best.objective if best else None):
            best = result

    def record(result: TrialResult) -> None:
        result = replace(result, encoding=encoding(result.algorithm, result.preprocess))
        note(result)
        if on_trial is not None:
            on_trial(result, best, len(results), total)

    def collect(refs: list[ray.ObjectRef]) -> None:
        for ref in refs:
            number = next((n for n, r in running.items() if ref in r.pending), None)
            if number is None:  # its trial ended on an earlier fold of this batch
                continue
            result = _collect(running, number, ref, study, objective, spec, ladder, planner)
            if isinstance(result, _Retry):
                submit_fits(number, (result.fit,), retry=True)
            elif result == _ADVANCE:
                state = running[number]
                submit_fits(number, ladder.rungs[state.rung])  # type: ignore[union-attr]
            elif result is not None:
                record(result)

    def cancel_running() -> list[int]:
        # Take what has finished, then cancel the rest: their workers are killed at once.
        refs = [ref for r in running.values() for ref in r.pending]
        if refs:
            collect(ray.wait(refs, num_returns=len(refs), timeout=0)[0])
        numbers = sorted(running)
        for number in numbers:
            record(_finish(running, number, study, objective, "PRUNED",
                           reason=TIME_BUDGET_REASON, force=True))
        transforms = list(shared.values())
        if transforms:
            for ref in ray.wait(transforms, num_returns=len(transforms), timeout=0)[1]:
                ray.cancel(ref, force=True)
        return numbers

    for result in sorted(kept, key=lambda r: r.number):
        note(result)
    asked = len(kept)
    cancelled: list[int] = []
    waited_since: float | None = None
    while True:
        own = search_deadline()
        stopping = own.expired()
        if stopping and best is None and whole.overrun():
            cancelled += cancel_running()
            raise SearchError(_budget_error(whole, results, cancelled))
        # Past the deadline with nothing complete and nothing running, start trials again:
        # a search ends with a complete trial or the error above.
        refill = not stopping or (best is None and not running)
        while refill and len(running) < limit and asked < total:
            submit()
        if not running:
            break
        if stopping and best is not None:
            cancelled += cancel_running()
            break
        if stopping and waited_since is None:
            waited_since = time.monotonic()
            log.warning("time budget: no trial completed by Discover's deadline; waiting for "
                        "the first one (at most until %.0f s, twice search.time_budget_s)",
                        budget.OVERRUN_FACTOR * (whole.budget_s or 0.0))
        timeout = whole.left_until_overrun_s() if stopping else own.left_s()
        refs = [ref for r in running.values() for ref in r.pending]
        ready, _ = ray.wait(refs, num_returns=1,
                            timeout=None if math.isinf(timeout) else timeout)
        collect(ready)

    if best is None:
        _raise_if_probe_pruned_all(results, spec)
        raise SearchError(f"none of {len(results)} trials completed.{_first_failure(results)}")
    results.sort(key=lambda r: r.number)
    skipped = []
    if cancelled:
        skipped.append(f"{len(cancelled)} trial(s) cancelled in flight at Discover's deadline "
                       f"(trials {', '.join(map(str, cancelled))})")
    if whole.bounded and asked < total and spec.search.num_trials is not None:
        skipped.append(f"{total - asked} of {total} trial(s) not started")
    if waited_since is not None:
        skipped.append(f"Discover ran {time.monotonic() - waited_since:.1f} s past its deadline "
                       "waiting for the first complete trial")
    return SearchResult(tuple(results), best, objective.key, objective.direction,
                        time.monotonic() - started, tuple(skipped))


def _first_failure(results: list[TrialResult]) -> str:
    """`` First failure:`` and the first failed trial's error, or nothing if none failed."""
    error = next((r.error for r in results if r.error), None)
    return f" First failure:\n{error}" if error else ""


def _budget_error(deadline: Deadline, results: list[TrialResult], cancelled: list[int]) -> str:
    detail = _first_failure(results)
    return (f"no trial completed within twice the time budget (search.time_budget_s "
            f"{deadline.budget_s:g} s; {deadline.elapsed_s():.1f} s elapsed since the run "
            f"started, {len(results)} trial(s) ended, {len(cancelled)} cancelled in flight). "
            "Raise search.time_budget_s, or make trials cheaper (fewer folds, smaller models, "
            f"a sample of the rows).{detail}")


def _collect(running: dict[int, _Running], number: int, ref: ray.ObjectRef,
             study: optuna.Study, objective: Objective, spec: Spec,
             ladder: Ladder | None = None,
             planner: Planner | None = None) -> TrialResult | str | _Retry | None:
    """Take one finished fit; return the trial's result once the trial has ended,
    ``_ADVANCE`` when it climbs to its next halving rung (the caller submits that rung), or
    a :class:`_Retry` when the fit's worker died and it may be submitted again."""
    state = running[number]
    fit = state.pending.pop(ref)
    try:
        score = ray.get(ref)
    except retries.CAUGHT as error:
        if (retries.is_lost_worker(error)
                and state.retries.get(fit, 0) < spec.resources.max_fold_retries):
            state.retries[fit] = state.retries.get(fit, 0) + 1
            log.warning("trial %d: %s; submitting fold %d again (retry %d of %d)", number,
                        _short_error(error).splitlines()[-1], fit.fold, state.retries[fit],
                        spec.resources.max_fold_retries)
            return _Retry(fit)
        return _finish(running, number, study, objective, "FAILED",
                       retries.describe(error, state.retries.get(fit, 0),
                                        _short_error(error)))
    if planner is not None:
        planner.observe_fit(state.config.algorithm.key, state.config.params, fit.rows,
                            score.fit_time_s)
    (state.rungs if fit.sample is not None else state.folds).append(score)
    over = probe_violations(score.probe, spec)
    if over:
        reason = "cost probe: " + "; ".join(_probe_text(v, spec) for v in over)
        return _finish(running, number, study, objective, "PRUNED", reason=reason)
    if ladder is not None:
        return (None if state.pending
                else _climb(running, number, study, objective, ladder, planner))
    if not state.pending:
        return _finish(running, number, study, objective, "COMPLETE")
    running_mean = _mean_objective(state.folds, objective)
    if running_mean is not None and not math.isnan(running_mean):
        state.trial.report(running_mean, step=len(state.folds))
        state.reports[len(state.folds)] = running_mean
        if state.trial.should_prune():
            return _finish(running, number, study, objective, "PRUNED")
    return None


def _climb(running: dict[int, _Running], number: int, study: optuna.Study,
           objective: Objective, ladder: Ladder,
           planner: Planner | None = None) -> TrialResult | str:
    """A trial finished rung ``state.rung``: complete it at the last rung, else report the
    rung's score to the SuccessiveHalvingPruner and prune it or climb."""
    state = running[number]
    if state.rung == ladder.last:
        return _finish(running, number, study, objective, "COMPLETE")
    fits = ladder.rungs[state.rung]
    scores = state.rungs[-1:] if fits[0].sample is not None else state.folds
    value = _mean_objective(list(scores), objective)
    where = f"rung {state.rung} ({ladder.describe(state.rung)})"
    if value is None or math.isnan(value):
        return _finish(running, number, study, objective, "PRUNED",
                       reason=f"successive halving: {objective.key} is NaN at {where}")
    if planner is not None:
        planner.observe_rung(state.config.algorithm.key, state.rung, value)
    state.trial.report(value, step=ladder.step(state.rung))
    state.reports[ladder.step(state.rung)] = value
    if state.trial.should_prune():
        return _finish(running, number, study, objective, "PRUNED",
                       reason=f"successive halving: {objective.key} {value:.4g} at {where} "
                              f"is not in the top 1/{ladder.eta} of the trials there")
    state.rung += 1
    return _ADVANCE


def _planner(spec: Spec, objective: Objective, fold_rows: int) -> Planner | None:
    """The cost-aware planner when the spec uses one (built-ins' low-cost points; custom
    algorithms start anywhere)."""
    if not spec.search.uses_cost_aware or spec.search.algorithm == "grid":
        return None
    spaces = search.spaces(spec, fold_rows)
    low_cost = {a.key: ({} if a.is_custom else algorithms.low_cost(a)) for a in spec.algorithms}
    return Planner(spaces, low_cost, objective.direction, seed=spec.search.seed)


def _enqueue_planned(study: optuna.Study, spec: Spec, planner: Planner,
                     time_left_s: float) -> None:
    """Fix the next trial's family (and, for its first trial, its low-cost point) by
    enqueueing them as partial parameters; Optuna's sampler fills in the rest."""
    key = planner.next_family(time_left_s)
    fixed: dict[str, Any] = {"algorithm": key} if len(spec.algorithms) > 1 else {}
    point = planner.first_point(key) or {}
    fixed |= {f"{key}.{name}": value for name, value in point.items()}
    if fixed:
        study.enqueue_trial(fixed, skip_if_exists=False)


def probe_judged(probe: dict[str, float], alone_ms: float | None = None) -> dict[str, float]:
    """What the probe rule compares with the limits: the probe's median latency stands for
    both latency percentiles (a median over a p99 limit proves the limit cannot be met, and
    unlike a 200-call p99 inside a busy worker it is stable), its size for the model size.

    The median is first calibrated (:func:`dripml.discover.probe_calibration.calibrated_ms`)
    with the reference timed beside it in the worker and the same reference timed alone
    (``alone_ms``; by default the driver's, measured before the trials started): the worker's
    neighbours slow every call there, and a busy worker must not prune a model that is fast
    alone."""
    judged = {k: v for k, v in probe.items() if k == "model_mb"}
    if "latency_p50_ms" in probe:
        if alone_ms is None and probe.get("reference_ms"):
            alone_ms = probe_calibration.reference_alone_ms()
        p50 = probe_calibration.calibrated_ms(probe["latency_p50_ms"],
                                              probe.get("reference_ms"), alone_ms)
        judged |= {"latency_p50_ms": p50, "latency_p99_ms": p50}
    return judged


def probe_violations(probe: dict[str, float], spec: Spec, *,
                     alone_ms: float | None = None) -> tuple[constraints.Violation, ...]:
    """The constraints a fold's probe breaks by more than ``cost_probe_margin`` (judged as
    :func:`probe_judged` says, calibrated with ``alone_ms`` as there)."""
    if not probe:
        return ()
    return constraints.violations(probe_judged(probe, alone_ms), spec.constraints,
                               spec.search.cost_probe_margin)


def _probe_text(violation: constraints.Violation, spec: Spec) -> str:
    what = ("calibrated median single-row latency" if violation.cost.startswith("latency")
            else "pickled size")
    unit = constraints.UNITS[violation.cost]
    return (f"{what} {violation.value:.4g} {unit} > {violation.constraint} "
            f"{violation.limit:g} x margin {spec.search.cost_probe_margin:g}")


def _raise_if_probe_pruned_all(results: list[TrialResult], spec: Spec) -> None:
    probed = [r for r in results if r.reason and r.reason.startswith("cost probe")]
    if not probed:
        return
    parts = []
    for name, (cost, _) in constraints.LIMITS.items():
        limit = getattr(spec.constraints, name)
        values = [(probe_judged(r.probe)[cost], r) for r in probed
                  if cost in probe_judged(r.probe)]
        if limit is None or not values:
            continue
        value, best = min(values, key=lambda item: item[0])
        what = "median single-row latency" if cost.startswith("latency") else "pickled size"
        unit = constraints.UNITS[cost]
        parts.append(f"{name} {limit:g} {unit}: the lowest probe {what} is {value:.4g} {unit} "
                     f"(trial {best.number}, {best.algorithm})")
    raise ConstraintError(
        f"no trial can meet the constraints: the cost probe pruned {len(probed)} of "
        f"{len(results)} trials and none completed; " + "; ".join(parts)
        + f". Relax the spec's `constraints` (the probe prunes a trial beyond "
        f"x{spec.search.cost_probe_margin:g} a limit), or add cheaper algorithms or "
        "search spaces.")


def _finish(running: dict[int, _Running], number: int, study: optuna.Study,
            objective: Objective, outcome: TrialState, error: str | None = None,
            reason: str | None = None, force: bool = False) -> TrialResult:
    state = running.pop(number)
    for ref in state.pending:
        ray.cancel(ref, force=force)
    folds = tuple(sorted(state.folds, key=lambda f: f.fold))
    mean, std = aggregate(folds)
    objective_value = mean.get(objective.key)
    if objective_value is not None and math.isnan(objective_value):
        objective_value = None
    if outcome == "COMPLETE" and objective_value is None:
        outcome, error = "FAILED", "the objective is NaN on every fold"
    optuna_state = {"COMPLETE": optuna.trial.TrialState.COMPLETE,
                    "PRUNED": optuna.trial.TrialState.PRUNED,
                    "FAILED": optuna.trial.TrialState.FAIL}[outcome]
    study.tell(state.trial, objective_value if outcome == "COMPLETE" else None,
               state=optuna_state)
    start_ms, end_ms = _wall_clock(state, outcome)
    return TrialResult(
        number=number, algorithm=state.config.algorithm.key,
        algorithm_name=state.config.algorithm.name, params=dict(state.config.params),
        state=outcome, folds=folds, mean=mean, std=std, objective=objective_value,
        fit_time_s=sum(f.fit_time_s for f in folds), error=error, reason=reason,
        rungs=tuple(state.rungs), start_time_ms=start_ms, end_time_ms=end_ms,
        fold_retries=sum(state.retries.values()), search_point=dict(state.trial.params),
        search_space={k: optuna.distributions.distribution_to_json(d)
                      for k, d in state.trial.distributions.items()},
        reports=dict(state.reports), preprocess=state.config.preprocess)


def _wall_clock(state: _Running, outcome: TrialState) -> tuple[int, int]:
    """When a trial really ran (Unix epoch ms): from its first fit's start (else its
    submission) to its last fit's end if COMPLETE, else to now (when the driver ended it)."""
    now = int(time.time() * 1000)
    fits = [*state.folds, *state.rungs]
    starts = [f.started_ms for f in fits if f.started_ms is not None]
    ends = [f.ended_ms for f in fits if f.ended_ms is not None]
    start = min(starts) if starts else state.submitted_ms
    end = max(ends) if outcome == "COMPLETE" and ends else now
    return start, max(start, end)


def _mean_objective(folds: list[FoldScore], objective: Objective) -> float | None:
    values = [f.metrics[objective.key] for f in folds if objective.key in f.metrics]
    return float(np.nanmean(values)) if values else None


def _short_error(error: BaseException) -> str:
    cause = getattr(error, "cause", None) or error
    lines = traceback.format_exception_only(type(cause), cause)
    return "".join(lines).strip()[-2000:]


def _default_concurrency(spec: Spec, n_folds: int) -> int:
    # Enough trials in flight that every CPU has a fold to run, and one trial more so the
    # cluster never idles while the driver asks for the next; TPE learns best from few.
    cpus = ray.cluster_resources().get("CPU", 1.0)
    slots = max(1, int(cpus // spec.resources.cpus_per_trial))
    return max(2, math.ceil(slots / n_folds) + 1)


def validation_metric_specs(spec: Spec, objective: Objective) -> list[MetricSpec]:
    """The spec's validation metrics (or the task's defaults), objective first."""
    chosen = list(spec.metrics.validation or metrics.default_metrics(spec.task))
    others = [m for m in chosen if m.key != objective.metric.key]
    return [objective.metric, *others]
