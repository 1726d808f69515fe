"""Constraints: which serving-cost limits of a spec a set of measured costs breaks.

Shared by the Discover cost probe (:mod:`dripml.discover.trials`, with a margin) and the
Refine frontier (:mod:`dripml.refine.frontier`), so it lives in the core. Pure functions on
plain values; imports only the standard library and the spec.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from dripml.core.spec import ConstraintsSpec

LIMITS: dict[str, tuple[str, str]] = {
    "max_latency_p99_ms": ("latency_p99_ms", "max"),
    "max_latency_p50_ms": ("latency_p50_ms", "max"),
    "max_model_mb": ("model_mb", "max"),
    "max_memory_mb": ("memory_mb", "max"),
    "min_throughput_rows_s": ("throughput_rows_s", "min"),
}
"""Constraint field -> (measured cost it limits, whether it is an upper or a lower bound)."""

UNITS = {"latency_p99_ms": "ms", "latency_p50_ms": "ms", "model_mb": "MB", "memory_mb": "MB",
         "throughput_rows_s": "rows/s", "cost_per_million": "per 1M"}


@dataclass(frozen=True)
class Violation:
    """A constraint a candidate breaks: ``value`` (measured) against ``limit`` (times margin)."""

    constraint: str
    cost: str
    limit: float
    value: float

    def __str__(self) -> str:
        unit = UNITS.get(self.cost, "")
        if math.isnan(self.value):
            return f"{self.cost} not measured ({self.constraint} {self.limit:g})"
        sign = ">" if LIMITS[self.constraint][1] == "max" else "<"
        return f"{self.cost} {self.value:.4g} {unit} {sign} {self.constraint} {self.limit:g}"


def violations(values: Mapping[str, float | None], constraints: ConstraintsSpec,
               margin: float = 1.0) -> tuple[Violation, ...]:
    """The constraints ``values`` (cost name -> measured value) break. Costs absent from
    ``values`` are not judged (the Discover probe measures only some); a cost present but
    None or NaN (its measurement failed) breaks its constraint. ``margin`` loosens every
    limit (upper limits are multiplied by it, lower limits divided by it)."""
    broken = []
    for name, (cost, kind) in LIMITS.items():
        limit = getattr(constraints, name)
        if limit is None or cost not in values:
            continue
        value = values[cost]
        if value is None or math.isnan(value):
            broken.append(Violation(name, cost, limit, math.nan))
            continue
        if kind == "max" and value > limit * margin:
            broken.append(Violation(name, cost, limit, value))
        if kind == "min" and value < limit / margin:
            broken.append(Violation(name, cost, limit, value))
    return tuple(broken)
