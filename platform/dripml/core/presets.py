"""Presets: named sets of spec values for :func:`dripml.fit`, as AutoGluon's ``presets=``.

A preset fills what the user did not say; any field given explicitly (``time_limit_s=``,
``algorithms=``, ``k_fold=``, a nested ``refine={...}``) wins over it, key by key. Every
preset runs under a time limit (``search.time_budget_s``, which bounds the whole run from its
start, see :mod:`dripml.core.budget`), so the cost-aware search and successive halving are on.

============================  =====  =====  ============================================
preset                        limit  folds  what else
============================  =====  =====  ============================================
``fast``                      60 s   3      LightGBM and a linear model; 2 candidates
                                            refit
``balanced`` (the default)    300 s  5      the data's portfolio; 3 candidates refit
``best_quality``              1800 s 5      the portfolio; 5 candidates refit, one per
                                            family
``cheapest_to_serve``         300 s  5      the portfolio; the cheapest model (p99
                                            latency) within 0.5 % of the best CV score
============================  =====  =====  ============================================
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dripml.errors import SpecError

DEFAULT = "balanced"


@dataclass(frozen=True)
class Preset:
    """One preset.

    Attributes:
        name: what ``presets=`` names it by.
        description: one line for listings.
        time_limit_s: the whole run's time limit, seconds (``search.time_budget_s``).
        fields: spec values (nested mappings, as in a YAML spec) it sets.
        families: the algorithm families it keeps from the data's portfolio (None: all).
    """

    name: str
    description: str
    time_limit_s: float
    fields: Mapping[str, Any] = field(default_factory=dict)
    families: tuple[str, ...] | None = None


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("fast", "a quick first model: 60 s, 3 folds, LightGBM and a linear model",
           60.0, {"k_fold": {"n_splits": 3}, "refine": {"top_k": 2}},
           families=("lightgbm", "logistic_regression", "ridge", "tfidf_linear")),
    Preset("balanced", "the default: 300 s, 5 folds, the data's portfolio",
           300.0, {"k_fold": {"n_splits": 5}, "refine": {"top_k": 3}}),
    Preset("best_quality", "the best CV score found in 30 minutes, 5 candidates refit",
           1800.0, {"k_fold": {"n_splits": 5}, "refine": {"top_k": 5, "per_algorithm": True}}),
    Preset("cheapest_to_serve",
           "the lowest p99 latency within 0.5 % of the best CV score: 300 s, 5 folds",
           300.0, {"k_fold": {"n_splits": 5}, "refine": {"top_k": 5, "per_algorithm": True},
                   "select": {"policy": "cheapest_within", "within_pct": 0.5,
                              "cost": "latency_p99_ms"}}),
)}
"""The presets by name."""


def get(name: str | None) -> Preset:
    """The preset ``name`` (None: ``balanced``).

    Raises:
        SpecError: unknown name; the message lists the presets and the closest one.
    """
    if name is None:
        return PRESETS[DEFAULT]
    if name in PRESETS:
        return PRESETS[name]
    close = difflib.get_close_matches(name, list(PRESETS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SpecError(f"presets: unknown preset {name!r}{hint} Presets: {', '.join(PRESETS)}")


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, nested mappings merged key by key (override wins)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out
