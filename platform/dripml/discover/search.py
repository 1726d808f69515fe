"""Search: turn the spec's algorithms and search spaces into Optuna samplers and pruners.

Optuna's ask/tell interface proposes configurations; :mod:`dripml.discover.trials` runs them on Ray.
Why not Ray Tune's ``Tuner``: it starts an actor per trial (6 to 8 s each on 2 cores, 1.7 s
with ``reuse_actors``), which on tabular data costs more than the trials themselves; plain
Ray tasks per (trial, fold) cost milliseconds. Optuna's samplers are the same ones Ray Tune's
``OptunaSearch`` wraps.

Parameter names are ``<algorithm>.<param>`` so that spaces of different algorithms never mix;
with several algorithms a categorical ``algorithm`` parameter picks one first. With several
``data.preprocess`` functions a categorical ``preprocess`` parameter (the reference) picks
the data the trial trains on, sampled like the algorithm.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna

from dripml.algorithms import registry as algorithms
from dripml.core.results import TrialResult
from dripml.core.spec import AlgorithmSpec, Choice, Dimension, IntRange, LogUniform, Spec, Uniform
from dripml.errors import SpecError

MAX_GRID = 10_000


@dataclass(frozen=True)
class Config:
    """One configuration: an algorithm and its full hyperparameters (fixed + tuned), and
    the ``data.preprocess`` reference it trains on when the spec lists several (else None)."""

    algorithm: AlgorithmSpec
    params: dict[str, Any]
    preprocess: str | None = None

    @property
    def tuned_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.params.items() if k not in self.algorithm.params}


MAX_BUDGET_TRIALS = 10_000
"""Trials a search with a time budget and no ``num_trials`` may start (the budget ends it)."""

SpaceOf = Callable[[AlgorithmSpec], Mapping[str, Dimension]]
"""The tuned dimensions of one algorithm of the spec."""


def spaces(spec: Spec, n_rows: int | None = None) -> dict[str, Mapping[str, Dimension]]:
    """Tuned dimensions per algorithm key, default sizes scaled to ``n_rows`` when given."""
    return {a.key: algorithms.search_space(a, spec.task, n_rows) for a in spec.algorithms}


def suggest(trial: optuna.trial.BaseTrial, spec: Spec, space_of: SpaceOf | None = None) -> Config:
    """Ask ``trial`` for one configuration (define-by-run, so spaces may differ per algorithm).

    ``space_of`` gives each algorithm's dimensions (default: its search space, unscaled);
    the cost-aware planner passes spaces whose cost dimensions it has capped.
    """
    by_key = {a.key: a for a in spec.algorithms}
    key = (trial.suggest_categorical("algorithm", list(by_key)) if len(by_key) > 1
           else next(iter(by_key)))
    algorithm = by_key[key]
    space = (space_of(algorithm) if space_of is not None
             else algorithms.search_space(algorithm, spec.task))
    tuned = {name: _suggest_one(trial, f"{key}.{name}", dim) for name, dim in space.items()}
    choices = preprocess_dimension(spec)
    preprocess = trial.suggest_categorical(PREPROCESS, choices) if choices else None
    return Config(algorithm, {**algorithm.params, **tuned}, preprocess)


PREPROCESS = "preprocess"
"""The trial parameter naming the ``data.preprocess`` reference a trial trains on."""


def preprocess_dimension(spec: Spec) -> list[str]:
    """The ``data.preprocess`` references the search samples from: [] unless the spec
    lists several (one function is not a dimension)."""
    choices = spec.data.preprocess_choices
    return choices if len(choices) > 1 else []


def _suggest_one(trial: optuna.trial.BaseTrial, name: str, dim: Dimension) -> Any:
    if isinstance(dim, Uniform):
        return trial.suggest_float(name, dim.low, dim.high)
    if isinstance(dim, LogUniform):
        return trial.suggest_float(name, dim.low, dim.high, log=True)
    if isinstance(dim, IntRange):
        return trial.suggest_int(name, dim.low, dim.high, log=dim.log)
    return trial.suggest_categorical(name, dim.values)


def grid(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of every algorithm's (finite) space, times the ``preprocess``
    choices when there are several, as Optuna parameter dicts.

    Raises:
        SpecError: a continuous dimension (give ``choice`` values), or more than 10,000 points.
    """
    points: list[dict[str, Any]] = []
    for algorithm in spec.algorithms:
        space = algorithms.search_space(algorithm, spec.task)
        axes = {f"{algorithm.key}.{n}": _grid_values(algorithm.key, n, d) for n, d in space.items()}
        for combination in itertools.product(*axes.values()):
            point = dict(zip(axes, combination, strict=True))
            if len(spec.algorithms) > 1:
                point["algorithm"] = algorithm.key
            points += [{**point, PREPROCESS: p} for p in preprocess_dimension(spec)] or [point]
            if len(points) > MAX_GRID:
                raise SpecError(f"the grid has more than {MAX_GRID} points; use search.algorithm "
                                "random or tpe, or fewer values")
    return points


def _grid_values(key: str, name: str, dim: Dimension) -> list[Any]:
    if isinstance(dim, Choice):
        return list(dim.values)
    if isinstance(dim, IntRange) and dim.high - dim.low < 100:
        return list(range(dim.low, dim.high + 1))
    raise SpecError(f"grid search needs finite spaces, but algorithms.{key}.search_space.{name} "
                    f"is {dim.type}; give it as {{type: choice, values: [...]}}")


def sampler(spec: Spec, resumed_at: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler, seeded with ``search.seed``; a search resumed after trial
    ``resumed_at - 1`` draws from another seed (``seed + RESEED * resumed_at``), so that it
    does not propose again what the first trials of the interrupted search proposed."""
    seed = spec.search.seed + RESEED * resumed_at
    if spec.search.algorithm == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, _startup(spec)))
    # Grid points are enqueued on the study; the random sampler only fills what they leave.
    return optuna.samplers.RandomSampler(seed=seed)


def _startup(spec: Spec) -> int:
    return max(3, (spec.num_trials or 20) // 4)


def pruner(spec: Spec) -> optuna.pruners.BasePruner:
    """Successive halving over rungs of rows and folds (a rung ``r`` reports at step
    ``eta ** r``, see :mod:`dripml.discover.halving`), else fold-level early stopping (a
    trial's step is the number of folds done so far)."""
    if spec.search.uses_halving:
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=1, reduction_factor=spec.search.halving_eta,
            min_early_stopping_rate=0)
    if spec.search.early_stopping == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=_startup(spec), n_warmup_steps=0)
    if spec.search.early_stopping == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def trial_count(spec: Spec) -> int:
    """Trials the search will run: ``num_trials``, or the grid's size (capped by it)."""
    if spec.search.algorithm != "grid":
        if spec.search.num_trials is None and spec.search.time_budget_s is not None:
            return MAX_BUDGET_TRIALS
        return spec.num_trials or 20
    size = len(grid(spec))
    return size if spec.num_trials is None else min(spec.num_trials, size)


def shown_trial_count(spec: Spec) -> int | None:
    """:func:`trial_count` for progress output: None when the time budget alone ends it."""
    total = trial_count(spec)
    return None if total >= MAX_BUDGET_TRIALS else total


RESEED = 7919
"""Step between the seeds of a search and of its resumptions (see :func:`sampler`)."""


def create_study(spec: Spec, direction: str, kept: Sequence[TrialResult] = ()
                 ) -> tuple[optuna.Study, int]:
    """An in-memory study and the number of trials to run in all.

    ``kept``: the finished trials of an interrupted search (see
    :mod:`dripml.core.resume`), told to the study first under their own numbers (numbers
    no kept trial has, those of trials lost in flight, become FAIL trials without
    parameters, so that new trials are numbered after every kept one); a grid enqueues
    only the points no kept trial ran.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    after = max((t.number for t in kept), default=-1) + 1
    study = optuna.create_study(direction=direction, sampler=sampler(spec, after),
                                pruner=pruner(spec))
    by_number = {t.number: t for t in kept}
    for number in range(after):
        study.add_trial(_frozen(by_number.get(number)))
    total = trial_count(spec)
    if spec.search.algorithm == "grid":
        points = grid(spec)
        # Shuffled, so that a grid cut short by num_trials still covers every algorithm.
        random.Random(spec.search.seed).shuffle(points)
        done = [t.search_point for t in kept]
        for point in points[:total]:
            if point not in done:
                study.enqueue_trial(point, skip_if_exists=False)
    return study, total


def _frozen(trial: TrialResult | None) -> optuna.trial.FrozenTrial:
    """A kept trial as Optuna's record (COMPLETE with its objective, PRUNED with its
    reports); a lost one (None), or one without its sampler's parameters, as FAIL."""
    states = {"COMPLETE": optuna.trial.TrialState.COMPLETE,
              "PRUNED": optuna.trial.TrialState.PRUNED, "FAILED": optuna.trial.TrialState.FAIL}
    if trial is None or (trial.search_space.keys() != trial.search_point.keys()):
        return optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL)
    complete = trial.state == "COMPLETE" and trial.objective is not None
    return optuna.trial.create_trial(
        state=states["FAILED" if trial.state == "COMPLETE" and not complete else trial.state],
        value=trial.objective if complete else None,
        params=dict(trial.search_point),
        distributions={k: optuna.distributions.json_to_distribution(v)
                       for k, v in trial.search_space.items()},
        intermediate_values=dict(trial.reports))
