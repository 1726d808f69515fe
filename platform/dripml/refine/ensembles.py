"""Ensembles at the top of the curve: the refit candidates combined, as extra frontier points.

Two kinds (``refine.ensembles``; default ``[greedy]`` when two or more candidates have
out-of-fold predictions, ``[]`` turns them off):

- ``greedy``: ensemble selection (Caruana et al., 2004, "Ensemble selection from libraries
  of models"): a sorted initialization (the mean of the best N members, N in 1..3, whichever
  scores best), then forward selection with replacement, each round adding the member that
  most improves the objective on the out-of-fold predictions, for :data:`GREEDY_ROUNDS`
  rounds; the best round is kept. Weights are how often each member was picked, over the
  picks (they sum to 1). Its CV score is that best round's: the same rows chose it, so it is
  optimistic by a little.
- ``stacked``: a meta-model (logistic regression on the members' log-odds or
  log-probabilities; ridge regression on their values) fitted on the out-of-fold
  predictions; its CV score comes from cross-validating the meta-model over Discover's folds.

Scores are means over Discover's folds of the objective (what every trial's CV objective
is). The out-of-fold predictions are those Discover kept for each trial
(:attr:`dripml.core.results.FoldScore.oof`); the ensemble predicts with the refit members
(:class:`dripml.core.ensemble_model.EnsembleEstimator`), so it is a model like any other,
its test metrics from the test split and its costs measured like the others'. Its frontier
point has a trial number past the search's (the first free one) and algorithm
``ensemble(greedy)`` or ``ensemble(stacked)``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dripml.algorithms import registry as algorithms
from dripml.core import metrics
from dripml.core.data import Dataset
from dripml.core.ensemble_model import EnsembleEstimator, EnsembleKind, meta_features
from dripml.core.model import FittedRecipe, Recipe, TrainedModel
from dripml.core.objective import Objective, sort_key
from dripml.core.progress import Reporter
from dripml.core.results import TrialResult
from dripml.core.spec import Spec
from dripml.discover.folds import make_folds
from dripml.refine import candidates as selection
from dripml.refine.candidates import Refit

log = logging.getLogger(__name__)

GREEDY_ROUNDS = 50
"""Forward-selection rounds of greedy ensemble selection (auto-sklearn's default size)."""
MAX_INIT = 3
"""Most members of the sorted initialization."""
ALGORITHM = "ensemble({kind})"
"""The frontier's algorithm name of an ensemble."""


@dataclass(frozen=True)
class Selection:
    """What greedy selection chose: ``weights`` (one per member, summing to 1), ``score``
    (the objective of the weighted mean), ``picks`` (member indices in the order picked,
    with repeats) and ``history`` (the score after each pick, initialization included)."""

    weights: np.ndarray
    score: float
    picks: tuple[int, ...]
    history: tuple[float, ...]


def greedy_select(predictions: Sequence[np.ndarray], score: Callable[[np.ndarray], float],
                  direction: str, *, rounds: int = GREEDY_ROUNDS,
                  max_init: int = MAX_INIT) -> Selection:
    """Greedy ensemble selection with replacement (Caruana et al., 2004).

    Args:
        predictions: one array per member, all the same shape: probabilities (n, K) or
            values (n,).
        score: the objective of a combined prediction (the same shape).
        direction: ``maximize`` or ``minimize``.
        rounds: picks after the initialization.
        max_init: the sorted initialization averages the best N members, N <= ``max_init``.

    Returns:
        The best set of picks over the rounds (never worse than the best single member on
        ``score``: N = 1 is one of the initializations, and a round is kept only if it
        improves).

    Raises:
        ValueError: no predictions.
    """
    if not predictions:
        raise ValueError("greedy selection needs at least one member's predictions")
    def key(value: float) -> float:  # smaller is better; NaN worst
        return sort_key(value, direction)

    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in predictions])
    singles = [score(p) for p in stacked]
    order = sorted(range(len(stacked)), key=lambda i: (key(singles[i]), i))
    best_init, best_init_score = [order[0]], singles[order[0]]
    for n in range(2, min(max_init, len(order)) + 1):
        value = score(stacked[order[:n]].mean(axis=0))
        if key(value) < key(best_init_score):
            best_init, best_init_score = order[:n], value
    picks = list(best_init)
    total = stacked[picks].sum(axis=0)
    history = [best_init_score]
    best_len, best_score = len(picks), best_init_score
    for _ in range(rounds):
        values = [score((total + member) / (len(picks) + 1)) for member in stacked]
        chosen = min(range(len(values)), key=lambda i: (key(values[i]), i))
        picks.append(chosen)
        total = total + stacked[chosen]
        history.append(values[chosen])
        if key(values[chosen]) < key(best_score):
            best_len, best_score = len(picks), values[chosen]
    kept = picks[:best_len]
    weights = np.bincount(kept, minlength=len(stacked)).astype(np.float64) / len(kept)
    return Selection(weights, float(best_score), tuple(kept), tuple(history))


def kinds(spec: Spec, n_members: int) -> list[EnsembleKind]:
    """The ensembles to build: ``refine.ensembles`` (None: ``[greedy]``), none with fewer
    than two members."""
    if n_members < 2:
        return []
    chosen = spec.refine.ensembles
    return ["greedy"] if chosen is None else list(chosen)


def oof_matrix(trial: TrialResult, folds: Sequence[tuple[np.ndarray, np.ndarray]],
               n_rows: int) -> np.ndarray | None:
    """The trial's out-of-fold predictions on every training row: (n_rows, K) probabilities
    or (n_rows,) values, float64; None unless every fold kept its predictions (Discover
    keeps them only for trials that may become candidates; a resumed run has none)."""
    by_fold = {f.fold: f.oof for f in trial.folds}
    if len(by_fold) != len(folds) or any(by_fold.get(i) is None for i in range(len(folds))):
        return None
    first = np.asarray(by_fold[0])
    out = np.zeros((n_rows, *first.shape[1:]))
    for i, (_, validation) in enumerate(folds):
        values = np.asarray(by_fold[i], dtype=np.float64)
        if values.shape[0] != len(validation):
            return None  # folds other than the search's: not these rows
        out[validation] = values
    return out


def fold_scorer(objective: Objective, spec: Spec, y: np.ndarray,
                folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> Callable[[np.ndarray], float]:
    """The objective of a combined out-of-fold prediction: its mean over the folds, as a
    trial's CV objective is."""
    bound = metrics.resolve(objective.metric, spec.task)
    regression = spec.task == "regression"

    def score(combined: np.ndarray) -> float:
        values = []
        for _, validation in folds:
            part = combined[validation]
            y_pred = part if regression else part.argmax(axis=1)
            values.append(bound.score(y[validation], y_pred, None if regression else part))
        finite = [v for v in values if not math.isnan(v)]
        return float(np.mean(finite)) if finite else math.nan
    return score


def _meta_model(task: str, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression, RidgeCV

    if task == "regression":
        return RidgeCV(alphas=np.logspace(-3, 3, 13))
    return LogisticRegression(C=1.0, max_iter=1000, random_state=seed)


def stacked_cv(features: np.ndarray, y: np.ndarray, task: str,
               folds: Sequence[tuple[np.ndarray, np.ndarray]], seed: int) -> np.ndarray:
    """The meta-model's cross-validated predictions over ``folds``: (n, K) probabilities or
    (n,) values (a fold missing a class gets zeros there)."""
    from sklearn.base import clone

    template = _meta_model(task, seed)
    n_classes = int(y.max()) + 1 if task != "regression" else 0
    out = np.zeros((len(y), n_classes) if n_classes else len(y))
    for train, validation in folds:
        model = clone(template).fit(features[train], y[train])
        if task == "regression":
            out[validation] = model.predict(features[validation])
        else:
            out[np.ix_(validation, model.classes_.astype(np.int64))] = model.predict_proba(
                features[validation])
    return out


@dataclass(frozen=True)
class Built:
    """One ensemble: its trial record (number past the search's, CV objective, members and
    weights in ``params``) and its refit (the model, test metrics and predictions)."""

    trial: TrialResult
    refit: Refit


def build(dataset: Dataset, spec: Spec, trials: Sequence[TrialResult],
          refits: dict[int, Refit], objective: Objective, *, first_number: int
          ) -> tuple[list[Built], list[str], list[str]]:
    """The spec's ensembles (:func:`kinds`) over the refit ``trials`` that kept out-of-fold
    predictions and predict from the encoder's matrix (custom models, which read the raw
    frame, stay out). With several ``data.preprocess`` choices, members share one: that of
    the first eligible trial (the best candidate); trials of other choices are left out
    (an ensemble model holds one preprocessor).

    Returns:
        The ensembles built, numbered from ``first_number``; what could not be built and
        why; and the ensembles left out because they gain less than
        ``refine.ensemble_min_gain`` over their best member (one line each).
    """
    folds = make_folds(dataset.y_train, spec)
    n_rows = len(dataset.y_train)
    regression = spec.task == "regression"
    members: list[tuple[TrialResult, np.ndarray]] = []
    for trial in trials:
        refit = refits.get(trial.number)
        if refit is None or refit.model.fitted.recipe.input_kind != "encoded":
            continue
        if not regression and (refit.test_proba is None):
            continue
        oof = oof_matrix(trial, folds, n_rows)
        if oof is not None:
            members.append((trial, oof))
    members, other_choices = _one_preprocess(members)
    wanted = kinds(spec, len(members))
    if not wanted:
        if spec.refine.ensembles:
            return [], [f"no ensemble built: {len(members)} candidate(s) kept out-of-fold "
                        "predictions, two are needed"], []
        return [], [], []
    score = fold_scorer(objective, spec, dataset.y_train, folds)
    built: list[Built] = []
    left_out: list[str] = []
    for kind in wanted:
        if kind == "greedy":
            chosen = greedy_select([oof for _, oof in members], score, objective.direction)
            used = [i for i, w in enumerate(chosen.weights) if w > 0]
            weights = chosen.weights[used]
            meta, cv = None, chosen.score
        else:
            used = list(range(len(members)))
            weights = np.full(len(used), 1.0 / len(used))
            features = meta_features([oof for _, oof in members], spec.task)
            seed = spec.k_fold.seed if spec.k_fold.seed is not None else 0
            cv = score(stacked_cv(features, dataset.y_train, spec.task, folds, seed))
            meta = _meta_model(spec.task, seed).fit(features, dataset.y_train)
        short = _short_of_min_gain(kind, cv, [members[i][0] for i in used], spec, objective)
        if short:
            left_out.append(short)
            continue
        built.append(_assemble(dataset, spec, [members[i][0] for i in used], weights, refits,
                               kind, meta, cv, first_number + len(built), objective))
    return built, [], [*other_choices, *left_out]


def _one_preprocess(members: list[tuple[TrialResult, np.ndarray]]
                    ) -> tuple[list[tuple[TrialResult, np.ndarray]], list[str]]:
    """The members sharing the first one's ``preprocess`` choice, and a line naming the
    trials left out for another choice (none when the search had no such dimension)."""
    if not members:
        return members, []
    choice = members[0][0].preprocess
    kept = [m for m in members if m[0].preprocess == choice]
    others = [t for t, _ in members if t.preprocess != choice]
    if not others:
        return kept, []
    names = ", ".join(f"trial {t.number} ({t.preprocess})" for t in others)
    return kept, [f"left out of the ensembles: {names}; members share one data.preprocess "
                  f"({choice})"]


def _short_of_min_gain(kind: str, cv: float, members: Sequence[TrialResult], spec: Spec,
                       objective: Objective) -> str | None:
    """Why an ensemble scoring ``cv`` is not worth its cost, or None when it beats its best
    member by at least ``refine.ensemble_min_gain`` (direction-aware)."""
    best = min(members, key=lambda t: objective.sort_key(t.objective))
    gain = objective.sort_key(best.objective) - objective.sort_key(cv)  # > 0: cv is better
    if gain >= spec.refine.ensemble_min_gain:
        return None
    return (f"{ALGORITHM.format(kind=kind)} not added: CV {cv:.5f} gains {gain:+.5f} over its "
            f"best member (trial {best.number}, {best.algorithm}: {best.objective:.5f}), under "
            f"refine.ensemble_min_gain {spec.refine.ensemble_min_gain:g}")


def _assemble(dataset: Dataset, spec: Spec, trials: list[TrialResult], weights: np.ndarray,
              refits: dict[int, Refit], kind: EnsembleKind, meta: Any, cv: float,
              number: int, objective: Objective) -> Built:
    models = [refits[t.number].model for t in trials]
    requirements: list[str] = []
    for model in models:
        declaration = algorithms.for_model(model)
        for package in declaration.requirements if declaration is not None else ():
            if package not in requirements:
                requirements.append(package)
    estimator = EnsembleEstimator(
        [m.fitted for m in models], weights.tolist(), spec.task, len(dataset.classes),
        kind=kind, meta=meta, algorithms=[t.algorithm for t in trials],
        requirements=requirements)
    first = models[0]
    fitted = FittedRecipe(Recipe(estimator=estimator), spec.task, len(dataset.classes))
    name = ALGORITHM.format(kind=kind)
    params = {"members": [f"trial {t.number} ({t.algorithm})" for t in trials],
              "weights": [round(float(w), 6) for w in weights]}
    model = TrainedModel(encoder=first.encoder, fitted=fitted, task=spec.task,
                         classes=first.classes, label=first.label, algorithm=name,
                         params=params, example=dict(first.example),
                         preprocessor=first.preprocessor, postprocessor=first.postprocessor)
    test = [refits[t.number] for t in trials]
    outputs = [r.test_pred if spec.task == "regression" else r.test_proba for r in test]
    combined = estimator.combine([np.asarray(o) for o in outputs])
    if spec.task == "regression":
        y_pred, proba = np.asarray(combined, dtype=np.float64), None
    else:
        y_pred, proba = combined.argmax(axis=1).astype(np.int64), combined
    refit = Refit(model, selection.evaluate(model, dataset, spec, (y_pred, proba)),
                  sum(r.fit_time_s for r in test), y_pred, proba)
    trial = TrialResult(
        number=number, algorithm=name, algorithm_name="ensemble", params=params,
        state="COMPLETE", folds=(), mean={objective.key: cv}, std={}, objective=cv,
        fit_time_s=refit.fit_time_s, preprocess=trials[0].preprocess)
    return Built(trial, refit)


def as_trial(trial: int, algorithm: str, params: dict[str, Any], objective: float,
             objective_key: str, *, preprocess: str | None = None) -> TrialResult:
    """A frontier point's ensemble as a trial record (what Refine reports as chosen when
    the ensemble is); ``preprocess``: its members' ``data.preprocess`` choice."""
    return TrialResult(number=trial, algorithm=algorithm, algorithm_name="ensemble",
                       params=dict(params), state="COMPLETE", folds=(),
                       mean={objective_key: objective}, std={}, objective=objective,
                       fit_time_s=0.0, preprocess=preprocess)


ENSEMBLE_MIN_S = 10.0
"""Seconds a time budget must have left (beyond measuring and registering) to build them."""


def extend(dataset: Dataset, spec: Spec, trials: Sequence[TrialResult],
           refits: dict[int, Refit], objective: Objective, *, first_number: int,
           reporter: Reporter | None = None, time_left_s: float = math.inf
           ) -> tuple[list[TrialResult], list[str]]:
    """Build the spec's ensembles over the refit ``trials`` (:func:`build`), add their refits
    to ``refits`` (in place) and return their trial records and what was skipped; nothing
    when ``time_left_s`` is under :data:`ENSEMBLE_MIN_S` or an ensemble fails (a warning:
    the candidates stand without it)."""
    report = reporter or Reporter()
    if not kinds(spec, len(trials)):
        return [], []
    if time_left_s < ENSEMBLE_MIN_S:
        return [], [f"ensembles not built ({time_left_s:.1f} s left of the time budget, "
                    f"{ENSEMBLE_MIN_S:g} s needed)"]
    try:
        with report.step("built ensemble(s) of the refit candidates"):
            built, skipped, left_out = build(dataset, spec, trials, refits, objective,
                                             first_number=first_number)
    except Exception as error:  # an ensemble is an extra point: the candidates stand
        log.warning("ensembles failed: %s", error, exc_info=True)
        return [], [f"ensembles failed: {type(error).__name__}: {str(error)[:300]}"]
    for line in left_out:
        report.message(f"  {line}")
    for b in built:
        refits[b.trial.number] = b.refit
        report.message(f"  trial {b.trial.number} ({b.trial.algorithm}): CV "
                       f"{objective.key} {b.trial.objective:.6g} from "
                       f"{', '.join(b.trial.params['members'])}, weights "
                       f"{b.trial.params['weights']}")
    return [b.trial for b in built], skipped
