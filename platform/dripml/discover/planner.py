"""Cost-aware planning of a search: which family next, from which point, how large it may grow.

FLAML's cost-frugal optimisation is the reference (Wang et al., "FLAML: A Fast and
Lightweight AutoML Library", MLSys 2021): every family starts from a cheap configuration,
families are drawn by their *estimated cost for improvement* (ECI), and the sizes that drive a
family's cost grow only where its quality pays for them. Within a family Optuna's sampler
still proposes the configuration; the planner only chooses the family and the upper bounds of
its cost dimensions. It imports neither Ray nor Optuna: the driver loop in
:mod:`dripml.discover.trials` feeds it what each fit cost.

- **Low-cost initial points**: a family's first trial uses its declared ``low_cost`` values
  (:class:`~dripml.algorithms.base.Algorithm`), e.g. LightGBM with 32 trees of 16 leaves.
- **Cost model, per family and configuration**: every fit is observed as (configuration,
  training rows, seconds); ``log(seconds)`` is fitted by ridge least squares on ``log(rows)``
  and the log of each cost dimension (trees, leaves, depth). Below ``MIN_OBSERVATIONS`` fits
  it assumes seconds proportional to rows and to each cost dimension.
- **Family choice**: each family not yet tried goes first (spec order). Then a family is
  drawn with probability proportional to ``1 / ECI``, where
  ``ECI = max(waiting, cost x exp(gap / spread))``: ``waiting`` is FLAML's time to the next
  improvement (the longer of the family's trial seconds since its last improvement and
  between its last two), so a leader that stalls gives the others turns;
  ``cost`` is the mean seconds its recent trials took (all their fits), ``gap`` how far its
  best CV objective is behind the best of all, ``spread`` the standard deviation of the
  other families' complete objectives. A family whose trials cost 50x another's is drawn
  50x less often at equal quality; one that is one spread behind, e^1 = 2.7x less often.
- **Expansion**: a cost dimension's upper bound starts at ``EXPANSION`` x its low-cost value
  and doubles (up to the space's own bound) when the family's best complete trial uses more
  than half of it and a trial at the doubled bound is predicted to fit in the time left.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dripml.core.objective import sort_key
from dripml.core.spec import Dimension, IntRange, LogUniform, Uniform

EXPANSION = 8.0
"""Initial upper bound of a cost dimension, in multiples of its low-cost value."""
MIN_OBSERVATIONS = 6
"""Fits of a family before its cost model is fitted rather than assumed."""
RECENT_TRIALS = 5
EXPLORE_TRIALS = 3
"""Trials of a family drawn on cost alone before its quality counts (its first, low-cost
trial is weak by design, and halving stops weak trials at the first rung)."""
"""Trials of a family whose cost its ECI averages."""
_RIDGE = 1e-3


@dataclass
class _Family:
    """What the planner knows of one family (an algorithm key of the spec)."""

    low_cost: dict[str, Any]
    caps: dict[str, float]
    started: bool = False
    best: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    failed_only: bool = True
    trial_costs: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_TRIALS))
    rung_best: dict[int, float] = field(default_factory=dict)
    spent_s: float = 0.0
    """K0 in FLAML's terms: seconds of all this family's trials so far."""
    improved_at_s: float = 0.0
    """K1: ``spent_s`` when its best so far was found."""
    previously_improved_at_s: float = 0.0
    """K2: ``spent_s`` when the best before that was found."""
    fits: list[tuple[dict[str, Any], int, float]] = field(default_factory=list)


class Planner:
    """Chooses the family of each next trial and bounds its cost dimensions.

    Args:
        spaces: tuned dimensions per algorithm key (already scaled to the data's rows).
        low_cost: the low-cost point per key (only dimensions in its space are used).
        direction: ``maximize`` or ``minimize`` (the objective's).
        seed: seeds the family draw.
    """

    def __init__(self, spaces: Mapping[str, Mapping[str, Dimension]],
                 low_cost: Mapping[str, Mapping[str, Any]], direction: str, seed: int = 0) -> None:
        self.spaces = {key: dict(space) for key, space in spaces.items()}
        # +1 when larger is better: values are kept signed so that "better" is ">" here.
        self.sign = -sort_key(1.0, direction)
        self.rng = random.Random(seed)
        self.families: dict[str, _Family] = {}
        self.objectives: list[tuple[str, float]] = []
        self.rung_values: dict[int, list[tuple[str, float]]] = {}
        for key, space in self.spaces.items():
            point = {name: _clip(space[name], value)
                     for name, value in (low_cost.get(key) or {}).items() if name in space}
            caps = {name: min(_high(space[name]), max(_low(space[name]), EXPANSION * value))
                    for name, value in point.items() if _numeric(space[name])}
            self.families[key] = _Family(point, caps)

    # -- proposing -----------------------------------------------------------------------

    def next_family(self, time_left_s: float = math.inf) -> str:
        """The family of the next trial: an untried one first, else one drawn by 1/ECI among
        those whose recent trials fit in ``time_left_s`` (all of them if none does)."""
        for key, family in self.families.items():
            if not family.started:
                return key
        keys = list(self.families)
        affordable = [k for k in keys if self._cost(k) <= time_left_s] or keys
        weights = [1.0 / self.eci(k) for k in affordable]
        return self.rng.choices(affordable, weights=weights)[0]

    def first_point(self, key: str) -> dict[str, Any] | None:
        """The low-cost point for ``key``'s first trial (then None); marks it started."""
        family = self.families[key]
        if family.started:
            return None
        family.started = True
        return dict(family.low_cost)

    def space(self, key: str) -> dict[str, Dimension]:
        """``key``'s search space with its cost dimensions' upper bounds at the current caps."""
        space = dict(self.spaces[key])
        for name, cap in self.families[key].caps.items():
            space[name] = _with_high(space[name], cap)
        return space

    def eci(self, key: str) -> float:
        """Estimated cost for improvement of ``key``, seconds (see the module docstring)."""
        family = self.families[key]
        cost = max(self._cost(key), 1e-3)
        if len(family.trial_costs) < EXPLORE_TRIALS and not (family.failed_only
                                                              and family.trial_costs):
            return cost
        # FLAML's first term: the time its next improvement may take, judged by how long
        # the last ones took and how long it has gone without one.
        waiting = max(family.spent_s - family.improved_at_s,
                      family.improved_at_s - family.previously_improved_at_s)
        if family.best is not None:
            behind = _behind(key, family.best, self.objectives)
        elif family.rung_best:
            # Never complete (halving stopped every trial): judged where it got furthest,
            # against every trial at that rung, and one spread more for not completing.
            rung = max(family.rung_best)
            behind = 1.0 + _behind(key, family.rung_best[rung], self.rung_values[rung])
        else:
            behind = 5.0 if family.failed_only and family.trial_costs else 2.0
        return max(waiting, cost * math.exp(behind))

    def _cost(self, key: str) -> float:
        # A family with no trial ended yet costs what an average trial of the others did.
        costs = self.families[key].trial_costs or [
            c for f in self.families.values() for c in f.trial_costs]
        return float(np.mean(costs)) if costs else 1.0

    # -- learning ------------------------------------------------------------------------

    def observe_fit(self, key: str, params: Mapping[str, Any], rows: int, seconds: float) -> None:
        """One fit of ``key`` (a fold or a sample of one) on ``rows`` training rows."""
        self.families[key].fits.append((dict(params), max(1, rows), max(seconds, 1e-4)))

    def observe_rung(self, key: str, rung: int, value: float) -> None:
        """A trial of ``key`` reported ``value`` (the objective) at successive halving's
        rung ``rung``."""
        if math.isnan(value):
            return
        signed = self.sign * value
        self.rung_values.setdefault(rung, []).append((key, signed))
        family = self.families[key]
        if family.best is None and rung >= max(family.rung_best, default=rung) and (
                signed > family.rung_best.get(rung, -math.inf)):
            self._improved(family)
        family.rung_best[rung] = max(family.rung_best.get(rung, -math.inf), signed)

    def observe_trial(self, key: str, params: Mapping[str, Any], seconds: float,
                      objective: float | None, failed: bool,
                      time_left_s: float = math.inf, rows: int = 0) -> None:
        """A trial of ``key`` ended after ``seconds`` of fits, with CV ``objective`` when
        COMPLETE; expands the family's caps where its best trial presses on them."""
        family = self.families[key]
        family.trial_costs.append(seconds)
        family.spent_s += seconds
        family.failed_only = family.failed_only and failed
        if objective is None or math.isnan(objective):
            return
        value = self.sign * objective
        self.objectives.append((key, value))
        if family.best is None or value > family.best:
            family.best, family.best_params = value, dict(params)
            self._improved(family)
        self._expand(key, time_left_s, rows)

    @staticmethod
    def _improved(family: _Family) -> None:
        family.previously_improved_at_s = family.improved_at_s
        family.improved_at_s = family.spent_s

    def _expand(self, key: str, time_left_s: float, rows: int) -> None:
        family = self.families[key]
        for name, cap in list(family.caps.items()):
            used = family.best_params.get(name)
            high = _high(self.spaces[key][name])
            if not isinstance(used, (int, float)) or used < cap / 2 or cap >= high:
                continue
            grown = min(high, cap * 2)
            probe = {**family.best_params, name: grown}
            if rows and self.predict_s(key, probe, rows) > time_left_s / 2:
                continue
            family.caps[name] = grown

    def predict_s(self, key: str, params: Mapping[str, Any], rows: int) -> float:
        """Predicted seconds of one fit of ``key`` with ``params`` on ``rows`` rows
        (0 when nothing of the family has been observed)."""
        fits = self.families[key].fits
        if not fits:
            return 0.0
        names = sorted(self.families[key].low_cost)
        names = [n for n in names if _numeric(self.spaces[key][n])]
        x = _features(params, rows, names, self.families[key].low_cost)
        if len(fits) < MIN_OBSERVATIONS:
            # Assumed: seconds proportional to rows and to every cost dimension.
            ratios = [s / math.exp(_features(p, r, names, self.families[key].low_cost)[1:].sum())
                      for p, r, s in fits]
            return float(np.median(ratios) * math.exp(x[1:].sum()))
        X = np.array([_features(p, r, names, self.families[key].low_cost) for p, r, _ in fits])
        y = np.log([s for _, _, s in fits])
        coef = np.linalg.solve(X.T @ X + _RIDGE * np.eye(X.shape[1]), X.T @ y)
        return float(math.exp(x @ coef))


def _behind(key: str, value: float, values: Sequence[tuple[str, float]]) -> float:
    """How far ``value`` (family ``key``'s best) trails the best of ``values`` (family,
    value), in standard deviations of the other families' values (so that many poor trials
    of one family do not widen the yardstick it is measured with); 0 to 10."""
    everyone = [v for _, v in values]
    others = [v for k, v in values if k != key]
    yardstick = others if len(others) > 1 else everyone
    if len(yardstick) < 2:
        return 0.0
    spread = float(np.std(yardstick))
    gap = max(0.0, max(everyone) - value)
    return min(10.0, gap / spread) if spread > 0 else 0.0


def _features(params: Mapping[str, Any], rows: int, names: Sequence[str],
              defaults: Mapping[str, Any]) -> np.ndarray:
    values = [float(params.get(n, defaults[n])) for n in names]
    return np.array([1.0, math.log(max(1, rows)), *(math.log(max(v, 1e-6)) for v in values)])


def _numeric(dim: Dimension) -> bool:
    return isinstance(dim, (IntRange, Uniform, LogUniform))


def _low(dim: Dimension) -> float:
    return float(dim.low) if _numeric(dim) else -math.inf  # type: ignore[union-attr]


def _high(dim: Dimension) -> float:
    return float(dim.high) if _numeric(dim) else math.inf  # type: ignore[union-attr]


def _clip(dim: Dimension, value: Any) -> Any:
    if not _numeric(dim):
        return value if value in getattr(dim, "values", ()) else dim.values[0]  # type: ignore[union-attr]
    clipped = min(max(value, dim.low), dim.high)  # type: ignore[union-attr]
    return int(round(clipped)) if isinstance(dim, IntRange) else float(clipped)


def _with_high(dim: Dimension, high: float) -> Dimension:
    if isinstance(dim, IntRange):
        return dim.model_copy(update={"high": max(dim.low, int(high))})
    return dim.model_copy(update={"high": max(dim.low, float(high))})  # type: ignore[union-attr]
