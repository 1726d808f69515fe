"""Out-of-fold predictions: which trials keep them while a search runs.

Refine's ensembles (:mod:`dripml.refine.ensembles`) combine the candidates' out-of-fold
predictions (:attr:`dripml.core.results.FoldScore.oof`). Folds return them when ensembles
are on (:func:`wanted`); the driver keeps them only for trials that may still become
candidates (:func:`prune`), so memory holds at most ``refine.top_k`` trials' per algorithm,
and nothing is logged.
"""

from __future__ import annotations

from dataclasses import replace

from dripml.core import objective as objectives
from dripml.core.constraints import violations
from dripml.core.results import TrialResult
from dripml.core.spec import Spec


def wanted(spec: Spec) -> bool:
    """Whether folds return their validation predictions: unless ``refine.ensembles`` is
    ``[]``."""
    return spec.refine.ensembles is None or bool(spec.refine.ensembles)


def prune(results: list[TrialResult], spec: Spec, direction: str) -> None:
    """Drop (in place) the predictions of trials that can no longer be Refine candidates.

    A candidate (:func:`dripml.refine.candidates.candidates`) is among the first
    ``refine.top_k`` trials of its algorithm, ordered as candidates are (trials whose cost
    probe met the constraints first, then by objective), so every other trial's predictions
    go; a trial pushed out never comes back, since later trials only push it further.
    """
    def order(trial: TrialResult) -> tuple[bool, float, int]:
        likely = not violations(trial.probe, spec.constraints)
        return not likely, objectives.sort_key(trial.objective, direction), trial.number

    seen: dict[str, int] = {}
    keep: set[int] = set()
    complete = [r for r in results if r.state == "COMPLETE" and r.objective is not None]
    for trial in sorted(complete, key=order):
        seen[trial.algorithm] = seen.get(trial.algorithm, 0) + 1
        if seen[trial.algorithm] <= spec.refine.top_k:
            keep.add(trial.number)
    for i, trial in enumerate(results):
        if trial.number not in keep and any(f.oof is not None for f in trial.folds):
            results[i] = replace(trial, folds=tuple(replace(f, oof=None) for f in trial.folds))
