"""The objective: the metric a search optimises, its direction, and how results compare.

One place for what "better" means: the search, the leaderboard, the refit candidates and the
frontier all order results through :class:`Objective`.
"""

from __future__ import annotations

from dataclasses import dataclass

from dripml.core import metrics
from dripml.core.spec import MetricSpec, Spec


@dataclass(frozen=True)
class Objective:
    """The metric a search optimises, computed on validation folds."""

    metric: MetricSpec
    direction: str

    @property
    def key(self) -> str:
        return f"validation_{self.metric.key}"


def resolve_objective(spec: Spec) -> Objective:
    """The objective metric and its direction (the metric's own unless the spec overrides).

    Raises:
        SpecError: unknown metric or one the task does not support.
    """
    chosen = spec.metrics.objective
    metric = chosen.metric if chosen else metrics.default_objective(spec.task)
    bound = metrics.resolve(metric, spec.task)
    direction = (chosen.direction if chosen and chosen.direction else bound.direction)
    return Objective(metric, direction)
