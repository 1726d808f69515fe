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
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import ray

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.core import constraints, metrics
from dripml.core.data import Dataset
from dripml.core.objective import Objective, resolve_objective
from dripml.core.results import FoldScore, SearchResult, TrialResult, TrialState, aggregate
from dripml.core.spec import MetricSpec, Spec
from dripml.discover import search
from dripml.discover.folds import (
    make_folds,
    run_fold,
    transform_fold,
    warm_up,
)
from dripml.errors import ConstraintError, SearchError

__all__ = ["Objective", "SearchResult", "TrialResult", "discover", "resolve_objective"]

_run_fold_remote = ray.remote(run_fold)
_transform_fold_remote = ray.remote(transform_fold)

MAX_SHARED_FOLDS = 64
"""Most (preprocessor, fold) outputs a search keeps in Ray's object store to share."""


@dataclass
class _Running:
    trial: optuna.trial.Trial
    config: search.Config
    pending: dict[ray.ObjectRef, int]
    folds: list[FoldScore] = field(default_factory=list)


ProgressCallback = Callable[[TrialResult, "TrialResult | None", int, int], None]


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
) -> SearchResult:
    """Run the search on the connected Ray cluster (call
    :func:`dripml.orchestration.ray_cluster.connect` first).

    Args:
        dataset: checked data; only its training split is used.
        spec: the validated spec.
        objective: metric and direction to optimise.
        on_trial: called after each trial ends with (result, best so far, done, total).

    Returns:
        Every trial, and the best COMPLETE one by mean objective.

    Raises:
        SearchError: no trial completed (the message quotes the first failure).
    """
    started = time.monotonic()
    study, total = search.create_study(spec, objective.direction)
    n_classes = len(dataset.classes)
    ctx = BuildContext.for_spec(spec, dataset.encoder.layout)
    train_bound = metrics.resolve_all(spec.metrics.train, spec.task)
    validation_bound = metrics.resolve_all(validation_metric_specs(spec, objective), spec.task)
    folds = make_folds(dataset.y_train, spec)
    encoded_ref = ray.put(dataset.encoder.transform(dataset.X_train))
    frame_ref = (ray.put(dataset.X_train)
                 if any(a.is_custom for a in spec.algorithms) else None)
    y_ref = ray.put(dataset.y_train)
    splits_ref = ray.put(folds)
    task_options = fit_task_options(spec, None)
    limit = spec.search.max_concurrent or _default_concurrency(spec, len(folds))
    probe_calls = spec.search.cost_probe_calls if spec.constraints.probed else 0

    shared: dict[tuple[Any, ...], ray.ObjectRef] = {}

    def transformed(config: search.Config, fold: int) -> ray.ObjectRef | None:
        # Fit each distinct preprocessor once per fold; trials share its output.
        if config.algorithm.is_custom:
            return None
        key = algorithms.build(config.algorithm.name, ctx, config.params).preprocessor_key
        if key is None:
            return None
        if (key, fold) not in shared:
            if len(shared) >= MAX_SHARED_FOLDS:
                return None
            shared[(key, fold)] = _transform_fold_remote.options(**task_options).remote(
                encoded_ref, splits_ref, fold, config.algorithm.name, config.params, ctx)
        return shared[(key, fold)]

    running: dict[int, _Running] = {}
    results: list[TrialResult] = []
    best: TrialResult | None = None
    asked = 0

    def submit() -> None:
        nonlocal asked
        trial = study.ask()
        asked += 1
        config = search.suggest(trial, spec)
        X_ref = frame_ref if config.algorithm.is_custom else encoded_ref
        pending = {
            _run_fold_remote.options(**fit_task_options(spec, config.algorithm.name)).remote(
                X_ref, y_ref, splits_ref, i, config.algorithm.name, config.params, ctx,
                n_classes, train_bound, validation_bound, transformed(config, i),
                probe_calls if i == 0 else 0): i
            for i in range(len(folds))
        }
        running[trial.number] = _Running(trial, config, pending)

    def budget_left() -> bool:
        budget = spec.search.time_budget_s
        return budget is None or time.monotonic() - started < budget

    while True:
        while len(running) < limit and asked < total and (asked == 0 or budget_left()):
            submit()
        if not running:
            break
        refs = [ref for r in running.values() for ref in r.pending]
        ready, _ = ray.wait(refs, num_returns=1)
        for ref in ready:
            number = next(n for n, r in running.items() if ref in r.pending)
            result = _collect(running, number, ref, study, objective, spec)
            if result is None:
                continue
            results.append(result)
            if result.state == "COMPLETE" and objective.better(
                    result.objective, best.objective if best else None):
                best = result
            if on_trial is not None:
                on_trial(result, best, len(results), total)

    if best is None:
        _raise_if_probe_pruned_all(results, spec)
        failures = [r.error for r in results if r.error]
        detail = f" First failure:\n{failures[0]}" if failures else ""
        raise SearchError(f"none of {len(results)} trials completed.{detail}")
    results.sort(key=lambda r: r.number)
    return SearchResult(tuple(results), best, objective.key, objective.direction,
                        time.monotonic() - started)


def _collect(running: dict[int, _Running], number: int, ref: ray.ObjectRef,
             study: optuna.Study, objective: Objective, spec: Spec) -> TrialResult | None:
    """Take one finished fold; return the trial's result once the trial has ended."""
    state = running[number]
    state.pending.pop(ref)
    try:
        fold = ray.get(ref)
    except (ray.exceptions.RayTaskError, ray.exceptions.WorkerCrashedError) as error:
        return _finish(running, number, study, objective, "FAILED", _short_error(error))
    state.folds.append(fold)
    over = probe_violations(fold.probe, spec)
    if over:
        reason = "cost probe: " + "; ".join(_probe_text(v, spec) for v in over)
        return _finish(running, number, study, objective, "PRUNED", reason=reason)
    if not state.pending:
        return _finish(running, number, study, objective, "COMPLETE")
    running_mean = _mean_objective(state.folds, objective)
    if running_mean is not None and not math.isnan(running_mean):
        state.trial.report(running_mean, step=len(state.folds))
        if state.trial.should_prune():
            return _finish(running, number, study, objective, "PRUNED")
    return None


def probe_judged(probe: dict[str, float]) -> dict[str, float]:
    """What the probe rule compares with the limits: the probe's median latency stands for
    both latency percentiles (a median over a p99 limit proves the limit cannot be met, and
    unlike a 200-call p99 inside a busy worker it is stable), its size for the model size."""
    judged = {k: v for k, v in probe.items() if k == "model_mb"}
    if "latency_p50_ms" in probe:
        judged |= {"latency_p50_ms": probe["latency_p50_ms"],
                   "latency_p99_ms": probe["latency_p50_ms"]}
    return judged


def probe_violations(probe: dict[str, float], spec: Spec) -> tuple[constraints.Violation, ...]:
    """The constraints a fold's probe breaks by more than ``cost_probe_margin`` (judged as
    :func:`probe_judged` says)."""
    if not probe:
        return ()
    return constraints.violations(probe_judged(probe), spec.constraints,
                               spec.search.cost_probe_margin)


def _probe_text(violation: constraints.Violation, spec: Spec) -> str:
    what = ("median single-row latency" if violation.cost.startswith("latency")
            else "pickled size")
    unit = constraints.UNITS[violation.cost]
    return (f"{what} {violation.value:.4g} {unit} > {violation.constraint} "
            f"{violation.limit:g} x margin {spec.search.cost_probe_margin:g}")


def _raise_if_probe_pruned_all(results: list[TrialResult], spec: Spec) -> None:
    probed = [r for r in results if r.reason]
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
            reason: str | None = None) -> TrialResult:
    state = running.pop(number)
    for ref in state.pending:
        ray.cancel(ref, force=False)
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
    return TrialResult(
        number=number, algorithm=state.config.algorithm.key,
        algorithm_name=state.config.algorithm.name, params=dict(state.config.params),
        state=outcome, folds=folds, mean=mean, std=std, objective=objective_value,
        fit_time_s=sum(f.fit_time_s for f in folds), error=error, reason=reason)


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
