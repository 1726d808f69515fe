"""Frontier: the trade-off between a model's quality and what it costs to serve.

Pure functions on typed, immutable records:

- :class:`CandidateCost`: one refit candidate, its cross-validated objective and its measured
  :class:`~dripml.core.costs.ServingCost`.
- :func:`~dripml.core.constraints.violations` (re-exported here): which ``constraints`` a set
  of measured costs breaks (also used by the Discover latency probe, with a margin).
- :func:`pareto_front`: the candidates no other candidate beats on both the objective and one
  cost (cheapest first).
- :func:`build`: every candidate as a :class:`FrontierPoint` (feasible or not, on which cost
  frontiers), and the one a ``select`` policy chooses; :class:`ConstraintError` when no
  candidate meets the constraints.

Dominance: candidate *a* dominates *b* on a cost when *a* costs no more, scores no worse, and
is strictly better on one of the two. Exact ties (same objective and same cost) keep the
candidate listed first (the better-ranked trial), so each frontier holds distinct points.
Frontiers are computed among the candidates that meet every constraint, so a chosen point is
always on the frontier of its ``select.cost``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from dripml.core import objective as objectives
from dripml.core.constraints import LIMITS, UNITS, Violation, violations
from dripml.core.costs import ServingCost
from dripml.core.spec import ConstraintsSpec, SelectSpec

__all__ = ["COSTS", "LIMITS", "UNITS", "CandidateCost", "Frontier", "FrontierPoint", "Violation",
           "build", "choose", "pareto_front", "table", "violations"]
from dripml.errors import ConstraintError

COSTS = ("latency_p99_ms", "model_mb", "memory_mb", "cost_per_million")
"""Costs a frontier is computed against (cost_per_million only with an instance price)."""

SERVING_COLUMNS = ("inproc_latency_p50_ms", "inproc_latency_p99_ms", "requests_per_s",
                   "latency_p99_concurrent_ms", "serving_rss_mb")
"""In-process latencies and serving-path figures (:mod:`dripml.refine.serving_cost`) beside
the costs; the serving ones are None unless the candidate was served (then
``latency_p50_ms``/``latency_p99_ms`` are the endpoint's, else equal to the in-process ones)."""



@dataclass(frozen=True)
class CandidateCost:
    """One refit candidate: trial number, algorithm, CV objective (mean over the folds) and
    what it costs to serve; ``test_metrics`` of the refit model, ``test_<metric>`` -> value;
    ``preprocess``: its ``data.preprocess`` choice when the search had several, else None."""

    trial: int
    algorithm: str
    objective: float
    cost: ServingCost
    params: Mapping[str, Any] = field(default_factory=dict)
    test_metrics: Mapping[str, float] = field(default_factory=dict)
    preprocess: str | None = None

    def value(self, cost: str) -> float | None:
        return self.cost.value(cost)


@dataclass(frozen=True)
class FrontierPoint:
    """A candidate placed on the trade-off.

    Attributes:
        candidate: the candidate and its costs.
        rank: 1 = best CV objective among the candidates.
        violations: the constraints it breaks (empty: feasible).
        frontiers: the costs (of :data:`COSTS`) on whose frontier it lies.
        chosen: the ``select`` policy chose it.
        version: its registered model version, once registered.
    """

    candidate: CandidateCost
    rank: int
    violations: tuple[Violation, ...] = ()
    frontiers: tuple[str, ...] = ()
    chosen: bool = False
    version: str | None = None

    @property
    def feasible(self) -> bool:
        return not self.violations

    @property
    def on_frontier(self) -> bool:
        return bool(self.frontiers)


@dataclass(frozen=True)
class Frontier:
    """Every measured candidate as a point (best CV objective first), and the chosen one."""

    points: tuple[FrontierPoint, ...]
    objective_key: str
    direction: str
    costs: tuple[str, ...]
    select: SelectSpec
    constraints: ConstraintsSpec

    @property
    def chosen(self) -> FrontierPoint:
        return next(p for p in self.points if p.chosen)

    def front(self, cost: str) -> tuple[FrontierPoint, ...]:
        """The points on ``cost``'s frontier, cheapest first."""
        on = [p for p in self.points if cost in p.frontiers]
        return tuple(sorted(on, key=lambda p: (p.candidate.value(cost), p.rank)))

    @property
    def frontier_points(self) -> tuple[FrontierPoint, ...]:
        """Points on at least one cost's frontier, and the chosen one, best CV objective
        first: the points Refine registers."""
        return tuple(p for p in self.points if p.frontiers or p.chosen)

    def with_versions(self, versions: Mapping[int, str]) -> Frontier:
        """The same frontier with registered versions (trial number -> version) filled in."""
        points = tuple(dataclasses.replace(p, version=versions.get(p.candidate.trial, p.version))
                       for p in self.points)
        return dataclasses.replace(self, points=points)


def measured(cost: ServingCost) -> dict[str, float | None]:
    """Every measured cost of ``cost`` by name (None where not measured)."""
    names = ("latency_p50_ms", "latency_p99_ms", "throughput_rows_s", "model_mb",
             "memory_mb", "cost_per_million", *SERVING_COLUMNS)
    return {name: cost.value(name) for name in names}


def pareto_front(candidates: Sequence[CandidateCost], cost: str,
                 direction: str) -> tuple[int, ...]:
    """Indices of the non-dominated candidates on (objective, ``cost``), cheapest first.

    Candidates whose ``cost`` was not measured are left out. Of exact ties (same objective,
    same cost) only the first listed is kept.

    Example: (objective 0.90, 1 ms), (0.92, 3 ms), (0.91, 5 ms), maximize -> indices (0, 1):
    the third costs more than the second and scores lower.
    """
    order = sorted(
        (i for i, c in enumerate(candidates) if c.value(cost) is not None),
        key=lambda i: (candidates[i].value(cost),
                       objectives.sort_key(candidates[i].objective, direction), i))
    front: list[int] = []
    best: float | None = None
    for i in order:
        key = objectives.sort_key(candidates[i].objective, direction)
        if best is None or key < best:
            front.append(i)
            best = key
    return tuple(front)


def choose(candidates: Sequence[CandidateCost], select: SelectSpec, direction: str) -> int:
    """Index of the candidate the ``select`` policy picks among ``candidates`` (all feasible).

    - ``best_under_constraints`` / ``best_overall``: the best objective; ties go to the lower
      ``select.cost``, then to the first listed.
    - ``cheapest_within``: of the candidates whose objective is within ``within_pct`` percent
      of the best one (relative to its absolute value), the lowest ``select.cost``; ties go to
      the better objective, then to the first listed.

    Raises:
        ValueError: no candidates.
    """
    if not candidates:
        raise ValueError("choose needs at least one candidate")

    def cost_of(i: int) -> float:
        value = candidates[i].value(select.cost)
        if value is None and select.cost == "inproc_latency_p99_ms":  # not served: in process
            value = candidates[i].value("latency_p99_ms")
        return math.inf if value is None else value

    indices = range(len(candidates))
    best = min(indices, key=lambda i: (objectives.sort_key(candidates[i].objective, direction),
                                       cost_of(i), i))
    if select.policy != "cheapest_within":
        return best
    top = candidates[best].objective
    within = [i for i in indices if objectives.within(
        candidates[i].objective, top, select.within_pct or 0.0, direction)]
    return min(within, key=lambda i: (cost_of(i),
                                      objectives.sort_key(candidates[i].objective, direction), i))


def build(candidates: Sequence[CandidateCost], *, objective_key: str, direction: str,
          constraints: ConstraintsSpec, select: SelectSpec,
          costs: Sequence[str] = COSTS, choose_point: bool = True) -> Frontier:
    """Place every candidate, compute each cost's frontier among the feasible ones, and mark
    the point ``select`` chooses.

    Args:
        candidates: measured candidates, in any order.
        objective_key: the CV objective's name (``validation_roc_auc``), for the table.
        direction: ``maximize`` or ``minimize``.
        costs: costs to compute a frontier for; those no candidate measured are skipped.
        choose_point: False leaves every point unchosen (to log a frontier before raising).

    Raises:
        ConstraintError: no candidate meets the constraints (naming each constraint and the
            best value measured for it); only when ``choose_point``.
    """
    ordered = sorted(candidates,
                     key=lambda c: (objectives.sort_key(c.objective, direction), c.trial))
    broken = [violations(measured(c.cost), constraints) for c in ordered]
    feasible = [i for i, v in enumerate(broken) if not v]
    used = tuple(c for c in costs if any(x.value(c) is not None for x in ordered))
    on: dict[int, list[str]] = {i: [] for i in range(len(ordered))}
    for cost in used:
        for j in pareto_front([ordered[i] for i in feasible], cost, direction):
            on[feasible[j]].append(cost)
    chosen: int | None = None
    if choose_point:
        if not feasible:
            raise ConstraintError(no_candidate_message(ordered, constraints))
        chosen = feasible[choose([ordered[i] for i in feasible], select, direction)]
    points = tuple(
        FrontierPoint(candidate=c, rank=i + 1, violations=broken[i], frontiers=tuple(on[i]),
                      chosen=i == chosen)
        for i, c in enumerate(ordered))
    return Frontier(points, objective_key, direction, used, select, constraints)


def best_measured(measurements: Sequence[tuple[Mapping[str, float | None], str]],
                  constraints: ConstraintsSpec) -> list[str]:
    """Per constraint set, the best value measured for its cost and by whom, e.g.
    ``max_latency_p99_ms 2 ms: the best measured latency_p99_ms is 3.1 ms (trial 4, xgboost)``.

    Args:
        measurements: (cost name -> value, who measured it) pairs.
    """
    parts = []
    for name, (cost, kind) in LIMITS.items():
        limit = getattr(constraints, name)
        values = [(float(m[cost]), who) for m, who in measurements if m.get(cost) is not None]
        if limit is None or not values:
            continue
        value, who = (min if kind == "max" else max)(values, key=lambda item: item[0])
        unit = UNITS.get(cost, "")
        parts.append(f"{name} {limit:g} {unit}: the best measured {cost} is {value:.4g} {unit} "
                     f"({who})")
    return parts


def no_candidate_message(candidates: Sequence[CandidateCost],
                         constraints: ConstraintsSpec) -> str:
    """Why no candidate is feasible: each constraint with the best value measured for it."""
    best = best_measured([(measured(c.cost), f"trial {c.trial}, {c.algorithm}")
                          for c in candidates], constraints)
    return (f"no candidate meets the constraints; {len(candidates)} candidate(s) refit and "
            "measured; " + "; ".join(best)
            + ". Relax the spec's `constraints`, or add cheaper algorithms or search spaces "
            "(for example fewer or shallower trees).")


# ---------------------------------------------------------------------------------------
# Table and plot
# ---------------------------------------------------------------------------------------


def table(frontier: Frontier) -> pd.DataFrame:
    """One row per candidate, best CV objective first: rank, trial, algorithm (then its
    ``preprocess`` choice when the search tried several), objective, test metrics, the
    measured costs, feasibility, frontiers, chosen and version."""
    rows = []
    choices = any(p.candidate.preprocess is not None for p in frontier.points)
    for p in frontier.points:
        c = p.candidate
        rows.append({
            "rank": p.rank, "trial": c.trial, "algorithm": c.algorithm,
            **({"preprocess": c.preprocess} if choices else {}),
            frontier.objective_key: c.objective,
            **dict(c.test_metrics),
            "latency_p50_ms": c.cost.latency_p50_ms, "latency_p99_ms": c.cost.latency_p99_ms,
            "throughput_rows_s": c.cost.throughput_rows_s, "model_mb": c.cost.model_mb,
            "memory_mb": c.cost.memory_mb, "cost_per_million": c.cost.cost_per_million,
            **{name: getattr(c.cost, name) for name in SERVING_COLUMNS},
            "feasible": p.feasible, "violations": "; ".join(str(v) for v in p.violations),
            "frontier": ",".join(p.frontiers), "chosen": p.chosen,
            "version": p.version or "",
            "params": json.dumps(dict(c.params), sort_keys=True, default=str),
        })
    return pd.DataFrame(rows)


def plot_png(frontier: Frontier, *, title: str = "") -> bytes:
    """The trade-off as a PNG: one panel per cost, the objective against it; every candidate
    (crosses: breaks a constraint), the frontier as a line, the chosen point as a star and
    each constraint as a dashed line. Drawn with matplotlib's Agg canvas (no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    costs = list(frontier.costs)
    limits = {LIMITS[n][0]: getattr(frontier.constraints, n) for n in LIMITS}
    figure = Figure(figsize=(4.6 * max(1, len(costs)), 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, max(1, len(costs)), squeeze=False)[0]
    for ax, cost in zip(axes, costs, strict=False):
        _panel(ax, frontier, cost, limits.get(cost))
    figure.suptitle(title or f"{frontier.objective_key} against serving cost "
                    f"(policy {frontier.select.policy}, cost {frontier.select.cost})")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _panel(ax: Any, frontier: Frontier, cost: str, limit: float | None) -> None:
    points = [p for p in frontier.points if p.candidate.value(cost) is not None]
    for feasible, marker, color in ((True, "o", "tab:blue"), (False, "x", "tab:red")):
        chosen = [p for p in points if p.feasible == feasible]
        if chosen:
            ax.scatter([p.candidate.value(cost) for p in chosen],
                       [p.candidate.objective for p in chosen], marker=marker, color=color,
                       label="meets constraints" if feasible else "breaks a constraint",
                       zorder=3)
    front = frontier.front(cost)
    if front:
        ax.step([p.candidate.value(cost) for p in front],
                [p.candidate.objective for p in front], where="post", color="tab:green",
                label="frontier", zorder=2)
    for p in points:
        ax.annotate(f"{p.candidate.trial}:{p.candidate.algorithm[:8]}",
                    (p.candidate.value(cost), p.candidate.objective), fontsize=7,
                    textcoords="offset points", xytext=(4, 3))
        if p.chosen:
            ax.scatter([p.candidate.value(cost)], [p.candidate.objective], marker="*", s=220,
                       color="gold", edgecolor="black", label="chosen", zorder=4)
    if limit is not None:
        ax.axvline(limit, linestyle="--", color="grey", label=f"limit {limit:g}")
    values = [p.candidate.value(cost) for p in points]
    positive = [v for v in values if v is not None and v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(f"{cost} ({UNITS.get(cost, '')})")
    ax.set_ylabel(frontier.objective_key)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
