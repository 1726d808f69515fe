"""Refine: rank the trials, pick the candidates, refit them on all training rows, test them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import ray
from threadpoolctl import threadpool_limits

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.core import metrics
from dripml.core import objective as objectives
from dripml.core.data import Dataset
from dripml.core.model import FittedRecipe, TrainedModel, example_record
from dripml.core.preprocess import load_postprocess
from dripml.core.results import SearchResult, TrialResult
from dripml.core.spec import ConstraintsSpec, RefineSpec, Spec
from dripml.discover.trials import fit_task_options, is_distributed
from dripml.refine import frontier


def leaderboard(result: SearchResult) -> pd.DataFrame:
    """One row per trial, best first: rank, trial, algorithm, state, CV mean and std of the
    objective, fit time (seconds, summed over folds), why a PRUNED trial stopped (the cost
    probe, successive halving or the time budget) and how many of its fits were submitted
    again after their worker died (``fold retries: N``), and params (JSON, with the
    encoding). With several ``data.preprocess`` choices, a ``preprocess`` column after
    the algorithm names each trial's.

    Pruned and failed trials come last, unranked.
    """
    key = result.objective_key
    choices = any(t.preprocess is not None for t in result.trials)
    rows = [{
        "trial": t.number,
        "algorithm": t.algorithm,
        **({"preprocess": t.preprocess} if choices else {}),
        "state": t.state,
        f"{key}_mean": t.mean.get(key),
        f"{key}_std": t.std.get(key),
        "folds": len(t.folds),
        "fit_time_s": round(t.fit_time_s, 3),
        "reason": _reason(t),
        "params": json.dumps({**t.params, **({"encoding": t.encoding} if t.encoding else {})},
                             sort_keys=True, default=str),
    } for t in result.trials]
    frame = pd.DataFrame(rows)
    complete = frame["state"] == "COMPLETE"
    ranked = frame[complete].sort_values(
        f"{key}_mean", kind="stable",
        key=lambda means: means.map(lambda v: objectives.sort_key(v, result.direction)))
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    rest = frame[~complete].sort_values("trial")
    rest.insert(0, "rank", pd.NA)
    return pd.concat([ranked, rest], ignore_index=True)


def _reason(trial: TrialResult) -> str:
    retried = f"fold retries: {trial.fold_retries}" if trial.fold_retries else ""
    return "; ".join(part for part in (trial.reason or "", retried) if part)


def candidates(result: SearchResult, refine: RefineSpec,
               constraints: ConstraintsSpec | None = None) -> list[TrialResult]:
    """The trials Refine refits and measures, best CV objective first.

    With ``per_algorithm`` the best COMPLETE trial of every algorithm comes first (so each
    family is on the trade-off curve, even past ``top_k``); the next best trials then fill
    up to ``top_k``. Example: top_k 3 over lightgbm (0.93, 0.92, 0.91) and logistic
    regression (0.90) -> lightgbm 0.93, lightgbm 0.92, logistic regression 0.90. With
    several ``data.preprocess`` choices, "every algorithm" is every (algorithm, choice) pair
    tried: each preprocessing is measured on the serving path too.

    With ``constraints``, trials whose Discover cost probe already met them (its own p50,
    p99 and size, no margin) are preferred, at both steps, to better-scoring trials whose
    probe did not: the refits go where the constraints can be met. Without a probe every
    trial counts as meeting them.
    """
    def rank(trial: TrialResult) -> tuple[float, int]:  # best objective first, then number
        return objectives.sort_key(trial.objective, result.direction), trial.number

    complete = sorted((t for t in result.trials
                       if t.state == "COMPLETE" and t.objective is not None), key=rank)
    if constraints is not None:
        likely = {t.number for t in complete if not frontier.violations(t.probe, constraints)}
        complete = sorted(complete, key=lambda t: t.number not in likely)  # stable
    chosen: list[TrialResult] = []
    if refine.per_algorithm:
        seen: set[tuple[str, str | None]] = set()
        for trial in complete:
            if (trial.algorithm, trial.preprocess) not in seen:
                seen.add((trial.algorithm, trial.preprocess))
                chosen.append(trial)
    numbers = {t.number for t in chosen}
    for trial in complete:
        if len(chosen) >= refine.top_k:
            break
        if trial.number not in numbers:
            chosen.append(trial)
    return sorted(chosen, key=rank)


@dataclass(frozen=True)
class Refit:
    """The refit model, its test metrics (``test_<metric>``) and refit time in seconds.

    ``test_pred``, ``test_proba``: its predictions on the test split, what the metrics
    were computed from: class codes (int64, shape (n_test,)) and probabilities (float64,
    (n_test, K)) for classification, or values and None for regression.
    """

    model: TrainedModel
    test_metrics: dict[str, float]
    fit_time_s: float
    test_pred: np.ndarray | None = None
    test_proba: np.ndarray | None = None


def refit(dataset: Dataset, spec: Spec, trial: TrialResult) -> Refit:
    """Fit ``trial``'s configuration on every training row and score it on the test split.

    Test metrics: ``metrics.test`` of the spec, or the task's defaults plus the objective.
    The refit runs in this process, unless it needs the cluster's resources: with
    ``gpus_per_trial > 0``, or a fine-tune trained with TorchTrainer
    (``workers_per_trial > 1``), it runs in a Ray task with the trial's resources
    (:func:`dripml.discover.trials.fit_task_options`), as the folds did, because the driver (a
    RayJob's entrypoint on the head pod) has no GPU.

    Raises:
        ResourceError: GPUs asked for where the cluster has none visible to the task.

    With several ``data.preprocess`` choices it is fitted on the trial's own choice's rows
    (:meth:`~dripml.core.data.Dataset.choice`) and the model keeps that preprocessor.
    """
    dataset = dataset.choice(trial.preprocess)
    if spec.resources.gpus_per_trial > 0 or is_distributed(spec, trial.algorithm_name):
        options = fit_task_options(spec, trial.algorithm_name)
        return ray.get(_refit_task.options(**options).remote(dataset, spec, trial))
    return _refit_here(dataset, spec, trial)


@ray.remote
def _refit_task(dataset: Dataset, spec: Spec, trial: TrialResult) -> Refit:
    return _refit_here(dataset, spec, trial)


def _refit_here(dataset: Dataset, spec: Spec, trial: TrialResult) -> Refit:
    ctx = BuildContext.for_spec(spec, dataset.encoder.layout)
    recipe = algorithms.build(trial.algorithm_name, ctx, trial.params)
    X = dataset.X_train if recipe.input_kind == "frame" else dataset.encoder.transform(
        dataset.X_train)
    started = time.perf_counter()
    with threadpool_limits(limits=ctx.n_threads):
        fitted = FittedRecipe(recipe, spec.task, len(dataset.classes)).fit(X, dataset.y_train)
    fit_time_s = time.perf_counter() - started
    fitted.single_threaded()  # one-row requests: replicas scale out, not thread pools
    model = TrainedModel(encoder=dataset.encoder, fitted=fitted, task=spec.task,
                         classes=dataset.classes, label=dataset.label,
                         algorithm=trial.algorithm, params=dict(trial.params),
                         example=example_record(dataset.test_input),
                         preprocessor=dataset.preprocessor,
                         postprocessor=load_postprocess(spec.postprocess))
    y_pred, proba = test_predictions(model, dataset)
    return Refit(model, evaluate(model, dataset, spec, (y_pred, proba)), fit_time_s,
                 y_pred, proba)


def test_metric_specs(spec: Spec) -> list:
    if spec.metrics.test is not None:
        return list(spec.metrics.test)
    chosen = list(spec.metrics.validation or metrics.default_metrics(spec.task))
    objective = spec.metrics.objective.metric if spec.metrics.objective else None
    if objective is not None and objective.key not in {m.key for m in chosen}:
        chosen.insert(0, objective)
    return chosen


def test_predictions(model: TrainedModel, dataset: Dataset
                     ) -> tuple[np.ndarray, np.ndarray | None]:
    """``model``'s predictions on the test split: class codes and probabilities, or values
    and None (see :class:`Refit`)."""
    X = (dataset.X_test if model.fitted.recipe.input_kind == "frame"
         else dataset.encoder.transform(dataset.X_test))
    return model.fitted.predict(X)


def evaluate(model: TrainedModel, dataset: Dataset, spec: Spec,
             predictions: tuple[np.ndarray, np.ndarray | None] | None = None
             ) -> dict[str, float]:
    """Every test metric of the spec on the test split, keyed ``test_<metric>``, from
    ``predictions`` (:func:`test_predictions`) when given."""
    bound = metrics.resolve_all(test_metric_specs(spec), spec.task)
    y_pred, proba = predictions if predictions is not None else test_predictions(model, dataset)
    return {f"test_{k}": v for k, v in metrics.score_all(bound, dataset.y_test, y_pred,
                                                          proba).items()}
