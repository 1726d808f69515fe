"""The objective: the metric a search optimises, its direction, and how results compare.

One place for what "better" means: the search (best trial), the leaderboard, the refit
candidates and the frontier all order values through :class:`Objective` or, where only the
direction travels (a :class:`~dripml.core.results.SearchResult`, a frontier), through the
functions below that take it: :func:`sort_key`, :func:`better`, :func:`best_of`,
:func:`within`. The rule: a value compares by :func:`sort_key`, smaller is better; a missing
value (None or NaN: a failed or undefined fold) is worse than any number.

Example::

    objective = resolve_objective(spec)            # roc_auc, maximize
    objective.better(0.91, 0.90)                   # True
    objective.best_of([0.90, None, 0.93])          # 0.93
    sorted(values, key=objective.sort_key)         # best first, missing last
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from dripml.core import metrics
from dripml.core.metrics import Direction
from dripml.core.spec import MetricSpec, Spec

__all__ = ["DIRECTIONS", "Direction", "Objective", "best_of", "better", "resolve_objective",
           "sort_key", "within"]

DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize")


def _sign(direction: str) -> float:
    """-1 for maximize (so that smaller keys are better), +1 for minimize.

    Raises:
        ValueError: any other direction (a programming error: specs are checked earlier).
    """
    if direction == "maximize":
        return -1.0
    if direction == "minimize":
        return 1.0
    raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")


def sort_key(value: float | None, direction: str) -> float:
    """A key that sorts values best first: smaller is better; None and NaN give ``inf``.

    Args:
        value: an objective value (metric units), or None when there is none.
        direction: ``maximize`` or ``minimize``.

    Raises:
        ValueError: an unknown direction.
    """
    sign = _sign(direction)
    if value is None or math.isnan(value):
        return math.inf
    return sign * float(value)


def better(a: float | None, b: float | None, direction: str) -> bool:
    """Whether ``a`` is strictly better than ``b``. A number beats a missing value (None or
    NaN); a missing value beats nothing; ties are not better."""
    return sort_key(a, direction) < sort_key(b, direction)


def best_of(values: Iterable[float | None], direction: str) -> float | None:
    """The best value of ``values`` (the first of equals), None when none is a number."""
    best: float | None = None
    for value in values:
        if sort_key(value, direction) < sort_key(best, direction):
            best = value
    return best


def within(value: float | None, best: float, pct: float, direction: str) -> bool:
    """Whether ``value`` is no worse than ``best`` by more than ``pct`` percent of ``|best|``
    (``cheapest_within``: 0.90 is within 2 % of 0.91 when maximizing). Missing: never."""
    slack = abs(best) * pct / 100.0
    return sort_key(value, direction) <= sort_key(best, direction) + slack


@dataclass(frozen=True)
class Objective:
    """The metric a search optimises, computed on validation folds, and its direction.

    Attributes:
        metric: the metric's spec.
        direction: ``maximize`` or ``minimize`` (the metric's own unless the spec overrides).

    Raises:
        ValueError: (on construction) an unknown direction.
    """

    metric: MetricSpec
    direction: Direction

    def __post_init__(self) -> None:
        _sign(self.direction)

    @property
    def key(self) -> str:
        """The name its mean over the folds is kept under: ``validation_<metric key>``."""
        return f"validation_{self.metric.key}"

    def sort_key(self, value: float | None) -> float:
        """See :func:`sort_key`: smaller is better, None and NaN last."""
        return sort_key(value, self.direction)

    def better(self, a: float | None, b: float | None) -> bool:
        """See :func:`better`: ``a`` strictly better than ``b``."""
        return better(a, b, self.direction)

    def best_of(self, values: Iterable[float | None]) -> float | None:
        """See :func:`best_of`: the best value, None when none is a number."""
        return best_of(values, self.direction)

    def within(self, value: float | None, best: float, pct: float) -> bool:
        """See :func:`within`: no worse than ``best`` by more than ``pct`` % of it."""
        return within(value, best, pct, self.direction)


def resolve_objective(spec: Spec) -> Objective:
    """The spec's objective: ``metrics.objective`` (its ``direction`` overrides the metric's
    own), else the task's default (:func:`dripml.core.metrics.default_objective`). The one
    objective resolver: every stage calls it.

    Raises:
        SpecError: unknown metric or one the task does not support.
    """
    chosen = spec.metrics.objective
    metric = chosen.metric if chosen else metrics.default_objective(spec.task)
    bound = metrics.resolve(metric, spec.task)
    direction = (chosen.direction if chosen and chosen.direction else bound.direction)
    return Objective(metric, direction)
