"""Compiled twins: every refit LightGBM and XGBoost candidate compiled to C, as one more
frontier point.

A twin (:func:`dripml.algorithms.compiled.compile_model`, algorithm ``<name>+tl2cgen``) has
its original's CV objective (it predicts the same), its own test metrics, and is measured,
placed, registered and served like any candidate. It is kept only when its predictions on
the test split equal the original's within :data:`TOLERANCE` (probabilities, or values
relative to their size beyond 1); a twin that differs, or whose compilation fails, is dropped
with a message and the original stands alone.

``refine.compiled_trees``: None (the default) compiles when Treelite/TL2cgen import and a C
compiler is on PATH, else says why in one line; false turns it off; true says why when it
cannot.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Sequence

import numpy as np

from dripml.algorithms import compiled
from dripml.core.data import Dataset
from dripml.core.progress import Reporter
from dripml.core.results import TrialResult
from dripml.core.spec import Spec
from dripml.refine.candidates import Refit, evaluate, test_predictions

log = logging.getLogger(__name__)

TOLERANCE = 1e-6
"""Largest difference allowed between a twin's test predictions and its original's."""

COMPILE_MIN_S = 5.0
"""Seconds a time budget must have left (beyond measuring and registering) to compile."""

SECONDS_PER_TREE = 0.07
"""Compile time per tree before one was timed: 300 LightGBM trees of 31 leaves took 17-21 s
on 2 busy cores (gcc -O1, see :mod:`dripml.algorithms.compiled`)."""


def difference(a: np.ndarray, b: np.ndarray, *, relative: bool) -> float:
    """Largest ``|a - b|`` (``relative``: divided by ``max(1, |a|)``); inf for other shapes."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    gap = np.abs(a - b)
    if relative:
        gap = gap / np.maximum(1.0, np.abs(a))
    return float(np.nan_to_num(gap, nan=math.inf).max())


def extend(dataset: Dataset, spec: Spec, trials: Sequence[TrialResult],
           refits: dict[int, Refit], *, first_number: int, reporter: Reporter | None = None,
           time_left_s: float = math.inf) -> tuple[list[TrialResult], list[str]]:
    """Compile the refit LightGBM and XGBoost ``trials``, check each twin's test predictions,
    add the kept twins' refits to ``refits`` (in place) numbered from ``first_number``, and
    return their trial records (algorithm ``<algorithm>+tl2cgen``) and what the time budget
    cut, one line each.

    ``time_left_s``: seconds left for compiling; each compile needs the time the previous
    took per tree (before the first, :data:`SECONDS_PER_TREE`; at least
    :data:`COMPILE_MIN_S`).
    """
    report = reporter or Reporter()
    if spec.refine.compiled_trees is False:
        return [], []
    todo = [t for t in trials if t.algorithm_name in compiled.COMPILABLE
            and compiled.compilable(refits[t.number].model)]
    if not todo:
        return [], []
    why = compiled.unavailable()
    if why is not None:
        report.message(why)
        return [], []
    started = time.monotonic()
    per_tree_s: float | None = None
    twins: list[TrialResult] = []
    cut: list[str] = []
    number = first_number
    for trial in todo:
        left = time_left_s - (time.monotonic() - started)
        trees = _trees(refits[trial.number])
        need = max(COMPILE_MIN_S, (per_tree_s or SECONDS_PER_TREE) * trees)
        if need > left:
            cut.append(f"trial {trial.number} ({trial.algorithm}) not compiled (~{need:.1f} s "
                       f"to compile, {left:.1f} s left)")
            continue
        with report.step(f"compiled trial {trial.number} ({trial.algorithm}) to C"):
            clock = time.monotonic()
            twin = _twin(dataset, spec, trial, refits[trial.number], report)
            per_tree_s = max(per_tree_s or 0.0, (time.monotonic() - clock) / max(1, trees))
        if twin is None:
            continue
        record = dataclasses.replace(trial, number=number, algorithm=twin.model.algorithm)
        refits[number] = twin
        twins.append(record)
        number += 1
    return twins, cut


def _trees(refit: Refit) -> int:
    """Trees in the booster: rounds, times the classes of a multiclass model."""
    estimator = refit.model.fitted.recipe.estimator
    rounds = next((v for name in ("n_estimators_", "n_estimators")
                   if isinstance(v := getattr(estimator, name, None), int) and v > 0), 100)
    classes = refit.model.fitted.n_classes
    return rounds * (classes if refit.model.task == "multiclass" else 1)


def _twin(dataset: Dataset, spec: Spec, trial: TrialResult, refit: Refit,
          report: Reporter) -> Refit | None:
    """The compiled twin's refit, or None (with a message) when it fails or differs."""
    clock = time.perf_counter()
    try:
        model = compiled.compile_model(refit.model)
    except (RuntimeError, ValueError) as error:
        report.message(f"  trial {trial.number} ({trial.algorithm}) not compiled: {error}")
        return None
    compile_s = time.perf_counter() - clock
    dataset = dataset.choice(trial.preprocess)  # the twin keeps its member's preprocessing
    y_pred, proba = test_predictions(model, dataset)
    if spec.task == "regression":
        gap = difference(refit.test_pred, y_pred, relative=True)
    elif proba is None or refit.test_proba is None:
        gap = difference(refit.test_pred, y_pred, relative=False)
    else:
        gap = difference(refit.test_proba, proba, relative=False)
    if not gap <= TOLERANCE:
        report.message(f"  trial {trial.number} ({trial.algorithm}): compiled twin dropped, "
                       f"its test predictions differ by up to {gap:.3g} (> {TOLERANCE:g})")
        return None
    log.info("trial %s compiled in %.2f s; test predictions within %.3g", trial.number,
             compile_s, gap)
    return Refit(model, evaluate(model, dataset, spec, (y_pred, proba)),
                 refit.fit_time_s + compile_s, y_pred, proba)


def twin_trials(algorithms_params: Iterable[tuple[int, str, dict, str | None]],
                trials: Sequence[TrialResult]) -> dict[int, TrialResult]:
    """Trial records of the twins among frontier candidates ``(trial, algorithm, params,
    preprocess)``: each its original's (same algorithm less ``+tl2cgen``, same params, same
    ``data.preprocess`` choice) renumbered."""
    out = {}
    for number, algorithm, params, preprocess in algorithms_params:
        if not algorithm.endswith(compiled.SUFFIX):
            continue
        base = algorithm.removesuffix(compiled.SUFFIX)
        original = next((t for t in trials if t.algorithm == base and t.params == params
                         and t.preprocess == preprocess), None)
        if original is not None:
            out[number] = dataclasses.replace(original, number=number, algorithm=algorithm)
    return out
