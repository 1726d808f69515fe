"""Refine by cost: refit the candidates, measure what each costs to serve, place them on the
quality-cost frontier, choose one by the spec's ``select`` policy, register the frontier.

The step after Discover, in the active (parent) MLflow run:

1. the candidates (:func:`dripml.refine.candidates.candidates`: the best trial of every algorithm,
   then the next best up to ``refine.top_k``, preferring trials whose Discover cost probe met
   the constraints) are refit on all training rows and tested;
2. each is measured on the serving path (:func:`dripml.core.costs.measure`: single-row latency
   p50/p99 over ``refine.latency_calls`` calls, batch throughput, pickled size, peak memory
   in a fresh process, and a cost per million predictions with ``instance_price_per_hour``);
   with ``refine.serving_path`` (the default) each is then served as ``drip serve`` runs it
   and loaded for ``refine.serving_seconds`` (:mod:`dripml.refine.serving_cost`): the
   endpoint's p50/p99 become ``latency_p50_ms``/``latency_p99_ms`` (what constraints and
   ``select`` judge), the in-process ones stay as ``inproc_latency_p50_ms``/``_p99_ms``;
3. :func:`dripml.refine.frontier.build` computes the frontier of the CV objective against each cost
   among the candidates that meet ``constraints`` and picks the ``select`` policy's point
   (a :class:`~dripml.errors.ConstraintError` if none meets them, after the table and plot
   are logged so ``drip frontier RUN`` shows why);
4. the chosen point is registered first and gets the alias (``champion``), then every other
   frontier point is registered as a version; each version carries its costs as tags
   (``latency_p99_ms``, ``model_mb``...) and ``dripml.frontier=true``;
5. ``frontier.csv`` (the table) and ``frontier.png`` (the plot) are logged to the run;
6. the chosen model's evaluation plots and reports (confusion matrix, ROC, PR and
   calibration curves, classification report or residual plots, feature importance) are
   logged under ``evaluation/`` (:mod:`dripml.productionize.evaluation`), from the test
   predictions of its refit. Every version's description is its model card
   (:mod:`dripml.productionize.model_card`) and its tags hold its own test metrics.

Under a time budget (a bounded :class:`~dripml.core.budget.Deadline`) each step fits what
is left: a candidate is refit only when its estimate (mean fold fit time x k / (k - 1),
scaled by how the refits so far compared with their estimates) plus the least measurement
and registration after it fit, the first always; the measurement is cut as
:func:`dripml.core.budget.plan_measurement` says (fewer latency calls down to 200, no peak
memory unless a constraint or ``select.cost`` needs it, fewer candidates); frontier points
other than the chosen one are registered while a registration (timed on the chosen one)
fits. :attr:`Refined.skipped` says what was cut.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd

import dripml
from dripml.algorithms import registry as algorithms
from dripml.core import budget, costs
from dripml.core.budget import Deadline
from dripml.core.data import Dataset
from dripml.core.objective import Objective
from dripml.core.progress import Reporter
from dripml.core.results import SearchResult, TrialResult
from dripml.core.spec import Spec
from dripml.errors import ConstraintError, TrackingError
from dripml.productionize import evaluation, model_card, tracking
from dripml.refine import candidates as selection
from dripml.refine import compiled_candidates, ensembles, frontier, serving_cost
from dripml.refine.candidates import Refit

log = logging.getLogger(__name__)
TABLE_ARTIFACT = "frontier.csv"
PLOT_ARTIFACT = "frontier.png"


@dataclass(frozen=True)
class Refined:
    """What Refine produced.

    Attributes:
        frontier: every candidate placed, the chosen one marked, registered versions filled.
        chosen: the trial the ``select`` policy chose.
        refit: the chosen trial refit on all training rows, with its test metrics.
        registered: the chosen model's registry entry (it holds the alias).
        versions: trial number -> registered version, for every registered frontier point.
        skipped: what the time budget cut (candidates not refit or not measured, latency
            calls reduced, peak memory not measured, frontier points not registered).
    """

    frontier: frontier.Frontier
    chosen: TrialResult
    refit: Refit
    registered: tracking.RegisteredModel
    versions: dict[int, str]
    skipped: tuple[str, ...] = ()


def run(dataset: Dataset, spec: Spec, result: SearchResult, objective: Objective,
        reporter: Reporter | None = None, *, set_alias: bool = True,
        deadline: Deadline | None = None) -> Refined:
    """Refit, measure, choose, register and log (see the module docstring). Without
    ``set_alias`` the versions are registered but the alias stays where it is; with a
    bounded ``deadline`` (the run's) the work is fitted to the time left.

    Raises:
        ConstraintError: no candidate meets the spec's constraints.
    """
    report = reporter or Reporter()
    deadline = deadline or Deadline(None)
    chosen_trials = selection.candidates(result, spec.refine, spec.constraints)
    measured, refits, skipped = measure_candidates(
        dataset, spec, chosen_trials, report, deadline=deadline, ensemble_objective=objective,
        first_free_trial=max(t.number for t in result.trials) + 1)
    options = {"objective_key": objective.key, "direction": objective.direction,
               "constraints": spec.constraints, "select": spec.select}
    try:
        placed = frontier.build(measured, **options)
    except ConstraintError:
        log_frontier(frontier.build(measured, **options, choose_point=False))
        raise
    by_number = {t.number: t for t in chosen_trials}
    by_number |= compiled_candidates.twin_trials(  # the compiled twins
        ((c.trial, c.algorithm, dict(c.params), c.preprocess) for c in measured),
        chosen_trials)
    by_number |= {c.trial: ensembles.as_trial(c.trial, c.algorithm, dict(c.params), c.objective,
                                              objective.key, preprocess=c.preprocess)
                  for c in measured if c.trial not in by_number}  # the ensembles
    chosen = by_number[placed.chosen.candidate.trial]
    refit = refits[chosen.number]
    mlflow.log_metrics({**refit.test_metrics, "refit_time_s": refit.fit_time_s,
                        **{f"chosen_{k}": v for k, v in frontier.measured(
                            placed.chosen.candidate.cost).items() if v is not None}})
    mlflow.log_params({"best_trial": result.best.number, "best_algorithm": result.best.algorithm,
                       "chosen_trial": chosen.number, "chosen_algorithm": chosen.algorithm,
                       **({"chosen_preprocess": chosen.preprocess}
                          if chosen.preprocess is not None else {})})
    with report.step(f"registered {len(placed.frontier_points)} frontier point(s) of "
                     f"{spec.model_name!r}; {spec.registry.alias}: trial {chosen.number} "
                     f"({chosen.algorithm})"):
        registered, versions = register(placed, refits, dataset, spec, set_alias=set_alias,
                                        deadline=deadline)
    if registered.alias_conflict:  # another run moved the alias meanwhile: left there
        report.message(registered.alias_conflict)
    skipped += [f"frontier point trial {p.candidate.trial} ({p.candidate.algorithm}) not "
                "registered" for p in placed.frontier_points if p.candidate.trial not in versions]
    placed = placed.with_versions(versions)
    log_frontier(placed)
    skipped += log_evaluation(refit, dataset.choice(chosen.preprocess), deadline)
    return Refined(placed, chosen, refit, registered, versions, tuple(skipped))


def log_evaluation(refit: Refit, dataset: Dataset, deadline: Deadline) -> list[str]:
    """Log the chosen model's evaluation plots and reports (:mod:`dripml.productionize.
    evaluation`) from its test predictions to the active run, unless the time budget has
    less than their allowance and what must follow left; returns what was skipped."""
    if refit.test_pred is None:
        return ["evaluation plots not made: the refit kept no test predictions"]
    needed = evaluation.EVALUATION_S + budget.FINISH_S
    if deadline.left_s() < needed:
        return [f"evaluation plots not made ({deadline.left_s():.1f} s left of the time "
                f"budget, {needed:.1f} s needed)"]
    limit = min(1.0, max(0.1, deadline.left_s() - needed))
    try:
        evaluation.log(refit.model, dataset.X_test, dataset.y_test, refit.test_pred,
                       refit.test_proba, time_limit_s=limit)
    except Exception as error:  # the versions are registered: a plot must not undo the run
        log.warning("evaluation plots failed: %s", error, exc_info=True)
        return [f"evaluation plots failed: {type(error).__name__}: {str(error)[:300]}"]
    return []


def needs_memory(spec: Spec) -> bool:
    """Whether the spec judges peak memory (a ``max_memory_mb`` constraint, or
    ``select.cost`` memory_mb): then a time budget never skips measuring it."""
    return spec.constraints.max_memory_mb is not None or spec.select.cost == "memory_mb"


def measure_candidates(dataset: Dataset, spec: Spec, candidates: list[TrialResult],
                       reporter: Reporter | None = None, *, deadline: Deadline | None = None,
                       ensemble_objective: Objective | None = None,
                       first_free_trial: int | None = None
                       ) -> tuple[list[frontier.CandidateCost], dict[int, Refit], list[str]]:
    """Refit the candidates, then measure their serving costs together on up to 1,000 test
    records (latencies interleaved, see :func:`dripml.core.costs.measure_latencies`).

    With a bounded ``deadline``, refit and measure what fits (see the module docstring);
    the first candidate is always refit and measured.

    With ``ensemble_objective``, the spec's ensembles of the refits
    (:mod:`dripml.refine.ensembles`) join them after the refits, numbered from
    ``first_free_trial`` (default: past the candidates), and are measured last. Then the
    compiled twins of the LightGBM and XGBoost refits (``refine.compiled_trees``,
    :mod:`dripml.refine.compiled_candidates`), numbered past those.

    Returns:
        The measured candidates, the refits by trial number (every refit one, measured or
        not), and what the deadline cut, one line each.
    """
    report = reporter or Reporter()
    deadline = deadline or Deadline(None)
    records = costs.json_records(dataset.test_input, costs.BATCH_ROWS)
    modules = sorted({m for t in candidates
                      if (m := algorithms.dependency_module(t.algorithm_name)) is not None})
    refits: dict[int, Refit] = {}
    skipped: list[str] = []
    floor = min(budget.LATENCY_FLOOR_CALLS, spec.refine.latency_calls)
    k = spec.k_fold.n_splits
    estimated = spent = 0.0  # refit seconds: estimated from the folds, and taken

    def least_after(trials: list[TrialResult]) -> float:  # measure at the floor, register
        return sum(budget.measurement_s(
            budget.call_s(t.predict_row_ms), floor, memory=False, models=len(trials),
            warmup=budget.REDUCED_WARMUP_CALLS) for t in trials
        ) + budget.REGISTER_S + budget.FINISH_S

    serving_slots = len(serving_cost.cpu_slots(spec.refine.serving_cpus))
    per_server_s = budget.serving_path_s(spec.refine.serving_seconds,
                                         enabled=costs.serving_path_enabled(spec.refine))

    def serving_after(trials: list[TrialResult]) -> float:
        # The serving path's costs are what constraints and select judge: measuring the
        # refit candidates there comes before extra points (ensembles, compiled twins).
        return -(-len(trials) // serving_slots) * per_server_s

    with ExitStack() as stack:
        # Its imports overlap the refits; under a budget it starts only when memory is measured.
        meter = (None if deadline.bounded
                 else stack.enter_context(costs.MemoryMeter(records, modules)))
        for trial in candidates:
            estimate = budget.refit_s(
                budget.TrialCost(trial.fit_time_s / max(1, len(trial.folds))), k / (k - 1))
            scaled = estimate * (spent / estimated if estimated > 0 else 1.0)
            done = [t for t in candidates if t.number in refits]
            after = least_after([*done, trial])
            if refits and scaled + after > deadline.left_s():
                skipped.append(f"trial {trial.number} ({trial.algorithm}) not refit "
                               f"(~{scaled:.1f} s to refit, then ~{after:.1f} s to measure "
                               f"and register all refits; {deadline.left_s():.1f} s left)")
                continue
            with report.step(f"refit trial {trial.number} ({trial.algorithm}) on "
                             f"{len(dataset.y_train)} rows"):
                started = time.monotonic()
                refits[trial.number] = selection.refit(dataset, spec, trial)
            estimated += estimate
            spent += time.monotonic() - started
        refit_trials = [t for t in candidates if t.number in refits]
        if ensemble_objective is not None:  # extra points, numbered past the search's trials
            extra, cut = ensembles.extend(
                dataset, spec, refit_trials, refits, ensemble_objective,
                first_number=first_free_trial or max(t.number for t in candidates) + 1,
                reporter=report, time_left_s=deadline.left_s() - least_after(refit_trials)
                - serving_after(refit_trials))
            refit_trials += extra
            skipped += cut
        twins, cut = compiled_candidates.extend(  # numbered past the search and ensembles
            dataset, spec, refit_trials, refits,
            first_number=max(first_free_trial or 0, max(refits, default=-1) + 1),
            reporter=report, time_left_s=deadline.left_s() - least_after(refit_trials)
            - serving_after(refit_trials))
        refit_trials += twins
        skipped += cut
        plan = budget.MeasurePlan(len(refit_trials), spec.refine.latency_calls, True, 0.0)
        if deadline.bounded:
            timings = [budget.ModelTiming(*costs.time_calls(refits[t.number].model, records))
                       for t in refit_trials]
            plan = budget.plan_measurement(
                deadline.left_s() - budget.REGISTER_S - budget.FINISH_S
                - serving_after(refit_trials[:1]), timings,  # the best on the serving path
                calls=spec.refine.latency_calls, floor=floor,
                can_skip_memory=not needs_memory(spec), memory_start_s=budget.MEMORY_START_S)
            skipped += [f"trial {t.number} ({t.algorithm}) refit but not measured"
                        for t in refit_trials[plan.models:]]
            if plan.calls < spec.refine.latency_calls:
                skipped.append(f"latency measured with {plan.calls} single-row calls per "
                               f"candidate, not {spec.refine.latency_calls}")
            if not plan.memory:
                skipped.append("peak memory not measured")
        if plan.memory and meter is None:
            meter = stack.enter_context(costs.MemoryMeter(records, modules))
        to_measure = refit_trials[:plan.models]
        with report.step(f"measured {len(to_measure)} candidate(s) on the serving path "
                         f"({plan.calls} single-row calls each)"):
            measured = costs.measure_all(
                [refits[t.number].model for t in to_measure], records, calls=plan.calls,
                instance_price_per_hour=spec.refine.instance_price_per_hour,
                memory=meter if plan.memory else None,
                min_calls=min(costs.MIN_LATENCY_CALLS, plan.calls),
                memory_skipped="skipped: time budget", warmup=plan.warmup)
    if to_measure and costs.serving_path_enabled(spec.refine):
        with report.step(f"measured {len(to_measure)} candidate(s) through the /predict "
                         f"server ({spec.refine.serving_seconds:g} s of load each)"):
            measured, cut = serving_cost.measure_all(
                [refits[t.number].model for t in to_measure], measured, records, spec.refine,
                left_s=lambda: deadline.left_s() - budget.REGISTER_S - budget.FINISH_S,
                tracking_uri=mlflow.get_tracking_uri(),
                labels=[f"trial {t.number} ({t.algorithm})" for t in to_measure])
        skipped += cut
    out = []
    for trial, cost in zip(to_measure, measured, strict=True):
        choice = "" if trial.preprocess is None else f", preprocess {trial.preprocess}"
        report.message(f"  trial {trial.number} ({trial.algorithm}{choice}): {describe(cost)}")
        out.append(frontier.CandidateCost(
            trial=trial.number, algorithm=trial.algorithm,
            objective=float(trial.objective if trial.objective is not None else "nan"),
            cost=cost, params=dict(trial.params),
            test_metrics=dict(refits[trial.number].test_metrics),
            preprocess=trial.preprocess))
    return out, refits, skipped


def describe(cost: costs.ServingCost) -> str:
    """One line: latency p50/p99 (the endpoint's and in process, when served), throughput,
    size, memory (and price per million)."""
    text = (f"latency p50 {cost.latency_p50_ms:.3f} ms, p99 {cost.latency_p99_ms:.3f} ms; "
            f"{cost.throughput_rows_s:,.0f} rows/s; {cost.model_mb:.3f} MB; "
            f"peak memory {cost.memory_mb:.1f} MB")
    if cost.serving_requests is not None:
        text = (f"endpoint {text} {cost.requests_per_s or 0:,.0f} req/s at c>1 (p99 "
                f"{cost.latency_p99_concurrent_ms:.3f} ms); in process p50 "
                f"{cost.inproc_latency_p50_ms:.3f} ms, p99 {cost.inproc_latency_p99_ms:.3f} ms")
    if cost.serving_error:
        text += f"; serving path: {cost.serving_error}"
    if cost.cost_per_million is not None:
        text += f"; {cost.cost_per_million:.4g} per 1M predictions"
    return text


def version_tags(point: frontier.FrontierPoint, objective_key: str) -> dict[str, str]:
    """Model-version tags of a frontier point: trial, objective and every measured cost."""
    c = point.candidate
    tags = {"algorithm": c.algorithm, "trial": str(c.trial), "objective": objective_key,
            "cv_objective_mean": f"{c.objective:.6g}", "dripml.frontier": "true",
            "dripml.frontier_costs": ",".join(point.frontiers),
            "dripml.chosen": str(point.chosen).lower(),
            "latency_calls": str(c.cost.latency_calls)}
    if c.cost.serving_requests is not None:  # latencies are the endpoint's
        tags["serving_requests"] = str(c.cost.serving_requests)
    tags |= {k: f"{v:.6g}" for k, v in frontier.measured(c.cost).items() if v is not None}
    # Its own test metrics, so that `drip models` reads each version's (not the run's).
    tags |= {k: f"{v:.10g}" for k, v in c.test_metrics.items() if math.isfinite(v)}
    return tags


def card(point: frontier.FrontierPoint, refit: Refit, dataset: Dataset, spec: Spec,
         objective_key: str) -> str:
    """The model card (:mod:`dripml.productionize.model_card`) of a frontier point's
    version: its data, folds, params, CV score, test metrics, costs, versions and spec."""
    c = point.candidate
    facts = model_card.CardFacts(
        algorithm=c.algorithm, trial=c.trial, params=c.params, cv_metric=objective_key,
        cv_score=c.objective, test_metrics=dict(refit.test_metrics),
        costs=frontier.measured(c.cost), train_rows=len(dataset.y_train),
        test_rows=len(dataset.y_test), chosen=point.chosen,
        requirements=tracking.pip_requirements(refit.model))
    return model_card.render(spec, facts, dripml_version=dripml.__version__,
                             mlflow_version=mlflow.__version__)


def register(placed: frontier.Frontier, refits: dict[int, Refit], dataset: Dataset,
             spec: Spec, *, set_alias: bool = True, deadline: Deadline | None = None
             ) -> tuple[tracking.RegisteredModel, dict[int, str]]:
    """Register the chosen point (moving the alias to it with ``set_alias``), then every
    other frontier point; with a bounded ``deadline``, each other point only while one more
    registration (timed on the chosen one) and :data:`dripml.core.budget.FINISH_S` fit in
    the time left. Returns the chosen entry and trial -> version of the registered points."""
    deadline = deadline or Deadline(None)
    chosen = placed.chosen
    started = time.monotonic()
    registered = tracking.log_and_register(
        refits[chosen.candidate.trial].model, dataset.test_input, spec,
        tags=version_tags(chosen, placed.objective_key), set_alias=set_alias,
        description=card(chosen, refits[chosen.candidate.trial], dataset, spec,
                         placed.objective_key))
    per_version = time.monotonic() - started
    versions = {chosen.candidate.trial: registered.version}
    for point in placed.frontier_points:
        trial = point.candidate.trial
        if trial in versions:
            continue
        if per_version + budget.FINISH_S > deadline.left_s():
            continue
        versions[trial] = tracking.log_version(
            refits[trial].model, dataset.test_input, spec,
            tags=version_tags(point, placed.objective_key), name=f"trial-{trial:03d}",
            description=card(point, refits[trial], dataset, spec, placed.objective_key))
    return registered, versions


def log_frontier(placed: frontier.Frontier) -> None:
    """Log the frontier table (CSV) and plot (PNG) to the active run."""
    mlflow.log_text(frontier.table(placed).to_csv(index=False), TABLE_ARTIFACT)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / PLOT_ARTIFACT
        path.write_bytes(frontier.plot_png(placed))
        mlflow.log_artifact(str(path))


def load_table(run_id: str) -> pd.DataFrame:
    """The frontier table logged in run ``run_id`` of the configured tracking store.

    Raises:
        TrackingError: no such run, or it has no ``frontier.csv``.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        client.get_run(run_id)
    except MlflowException:
        raise TrackingError(f"run {run_id!r} is not in the tracking store at "
                            f"{mlflow.get_tracking_uri()}; `drip run` prints its run id") from None
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, TABLE_ARTIFACT, folder)
        except (MlflowException, OSError):
            raise TrackingError(f"run {run_id!r} logged no {TABLE_ARTIFACT}: it is not a "
                                "search run, predates Refine by cost, or failed before it"
                                ) from None
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
