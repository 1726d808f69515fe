"""dripml.core.objective: the one place that says which objective value is better."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import pytest

from dripml.core import objective as objectives
from dripml.core.objective import Objective
from dripml.core.spec import MetricSpec

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "dripml"
NAN = math.nan

AUC = Objective(MetricSpec(name="roc_auc"), "maximize")
RMSE = Objective(MetricSpec(name="rmse"), "minimize")


def test_key() -> None:
    assert AUC.key == "validation_roc_auc"
    assert Objective(MetricSpec(name="coverage_at_precision", precision=0.9), "maximize").key \
        == "validation_coverage_at_precision_0.9"


def test_sort_key_smaller_is_better_missing_last() -> None:
    assert AUC.sort_key(0.9) == -0.9 and RMSE.sort_key(2.5) == 2.5
    assert AUC.sort_key(None) == AUC.sort_key(NAN) == RMSE.sort_key(None) == math.inf
    values = [0.8, None, 0.95, NAN, 0.9]
    assert sorted(values, key=AUC.sort_key)[:3] == [0.95, 0.9, 0.8]
    assert sorted(values, key=RMSE.sort_key)[:3] == [0.8, 0.9, 0.95]


def test_better() -> None:
    assert AUC.better(0.91, 0.90) and not AUC.better(0.90, 0.91)
    assert RMSE.better(1.0, 2.0) and not RMSE.better(2.0, 1.0)
    assert not AUC.better(0.9, 0.9)               # a tie is not better
    assert AUC.better(0.1, None) and AUC.better(0.1, NAN)  # anything beats nothing
    assert not AUC.better(None, 0.1) and not AUC.better(NAN, None)


def test_best_of() -> None:
    assert AUC.best_of([0.9, None, 0.93, NAN, 0.91]) == 0.93
    assert RMSE.best_of([3.0, 1.5, NAN, 2.0]) == 1.5
    assert AUC.best_of([None, NAN]) is None and AUC.best_of([]) is None


def test_within() -> None:
    # cheapest_within: 2 % of 0.90 is 0.018
    assert AUC.within(0.885, 0.90, 2.0) and not AUC.within(0.88, 0.90, 2.0)
    assert RMSE.within(1.015, 1.0, 2.0) and not RMSE.within(1.03, 1.0, 2.0)
    assert AUC.within(0.95, 0.90, 0.0)  # better is always within
    assert not AUC.within(None, 0.90, 50.0)


def test_unknown_direction_fails() -> None:
    with pytest.raises(ValueError, match=r"direction must be one of \['maximize', 'minimize'\]"):
        Objective(MetricSpec(name="roc_auc"), "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 'up'"):
        objectives.sort_key(1.0, "up")


def test_no_other_module_compares_directions() -> None:
    # `direction == "maximize"` anywhere but core/objective.py is a second definition of
    # "better"; call sort_key/better/best_of/within instead.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "core" / "objective.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in ("maximize", "minimize")
                    for c in [node.left, *node.comparators]):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found
