"""Cost-aware search: successive halving's ladder, the planner's family draw, cost model and
expansion, the data-scaled default spaces, and the spec fields that turn them on."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from dripml.algorithms import registry as algorithms
from dripml.core.spec import AlgorithmSpec, IntRange, Spec
from dripml.discover import halving
from dripml.discover.planner import EXPANSION, Planner
from dripml.errors import SpecError

SPACES = {
    "cheap": {"n_estimators": IntRange(type="int", low=16, high=2000, log=True)},
    "dear": {"n_estimators": IntRange(type="int", low=16, high=2000, log=True)},
}
LOW_COST = {"cheap": {"n_estimators": 32}, "dear": {"n_estimators": 32}}


def _folds(n: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rows = np.arange(n)
    return [(np.setdiff1d(rows, part), part) for part in np.array_split(rows, k)]


def test_ladder_climbs_samples_then_fold_zero_then_the_other_folds() -> None:
    ladder = halving.ladder(_folds(60_000, 5), eta=3, min_rows=2000, seed=0)
    sizes = [fits[0].rows for fits in ladder.rungs[:-1]]
    assert sizes == [48_000 // 9, 48_000 // 3, 48_000]
    assert [f.fold for f in ladder.rungs[-1]] == [1, 2, 3, 4]
    assert [ladder.step(r) for r in range(len(ladder.rungs))] == [1, 3, 9, 27]
    train, validation = ladder.samples[0]
    assert len(train) == 48_000 // 9 and set(train) <= set(_folds(60_000, 5)[0][0])
    assert np.array_equal(validation, _folds(60_000, 5)[0][1])
    # the same rows for every trial of a search (scores at a rung compare like with like)
    again = halving.ladder(_folds(60_000, 5), eta=3, min_rows=2000, seed=0)
    assert np.array_equal(again.samples[0][0], train)
    assert ladder.describe(0) == "fold 0 on 5,333 rows" and ladder.describe(3) == "folds 1-4"


def test_small_data_starts_on_all_of_fold_zero() -> None:
    ladder = halving.ladder(_folds(1200, 3), eta=3, min_rows=2000)
    assert ladder.samples == () and len(ladder.rungs) == 2
    assert ladder.rungs[0][0].rows == 800 and ladder.rungs[0][0].sample is None


def test_planner_tries_each_family_from_its_low_cost_point_first() -> None:
    planner = Planner(SPACES, LOW_COST, "maximize")
    first = planner.next_family()
    assert first == "cheap" and planner.first_point(first) == {"n_estimators": 32}
    assert planner.next_family() == "dear" and planner.first_point("dear") is not None
    assert planner.first_point("dear") is None  # only once
    # the cost dimension's bound starts at EXPANSION x the low-cost value
    assert planner.space("cheap")["n_estimators"].high == int(EXPANSION * 32)


def _drawn(planner: Planner, n: int = 4000) -> collections.Counter[str]:
    return collections.Counter(planner.next_family() for _ in range(n))


def test_a_family_50x_dearer_is_drawn_about_50x_less_often() -> None:
    planner = Planner(SPACES, LOW_COST, "maximize", seed=1)
    for key in ("cheap", "dear"):
        planner.first_point(key)
    planner.observe_trial("cheap", {"n_estimators": 32}, 1.0, 0.90, failed=False)
    assert planner.eci("dear") == pytest.approx(1.0)  # none ended: the others' average cost
    planner.observe_trial("dear", {"n_estimators": 32}, 50.0, 0.90, failed=False)
    drawn = _drawn(planner)
    assert 25 < drawn["cheap"] / max(1, drawn["dear"]) < 100


def test_a_family_far_behind_is_drawn_less_than_its_cost_alone_says() -> None:
    planner = Planner(SPACES, LOW_COST, "minimize", seed=2)  # e.g. RMSE: lower is better
    for key in ("cheap", "dear"):
        planner.first_point(key)
    for value in (11.0, 10.5, 10.0):  # improving with every trial
        planner.observe_trial("cheap", {"n_estimators": 32}, 1.0, value, failed=False)
    for value in (12.0, 12.5, 13.0):
        planner.observe_trial("dear", {"n_estimators": 32}, 1.0, value, failed=False)
    assert planner.eci("dear") > 5 * planner.eci("cheap")
    drawn = _drawn(planner)
    assert drawn["cheap"] > 5 * drawn["dear"]
    # a leader that stalls (FLAML's time since improvement) gives the others turns
    for _ in range(12):
        planner.observe_trial("cheap", {"n_estimators": 32}, 1.0, 10.2, failed=False)
    assert planner.eci("cheap") == pytest.approx(12.0)  # 12 trial-seconds without one


def test_a_family_halving_always_stops_is_judged_at_its_deepest_rung() -> None:
    planner = Planner(SPACES, LOW_COST, "maximize", seed=3)
    for key in ("cheap", "dear"):
        planner.first_point(key)
    for value in (0.80, 0.85, 0.86):  # "cheap" climbs and completes
        planner.observe_rung("cheap", 0, value)
    planner.observe_trial("cheap", {"n_estimators": 32}, 1.0, 0.86, failed=False)
    for value in (0.60, 0.62, 0.61):  # "dear" is as cheap but always stopped at rung 0
        # its first EXPLORE_TRIALS are drawn on cost alone
        assert planner.eci("dear") == pytest.approx(1.0)
        planner.observe_rung("dear", 0, value)
        planner.observe_trial("dear", {"n_estimators": 32}, 1.0, None, failed=False)
    assert planner.eci("dear") > 20 * planner.eci("cheap")


def test_caps_grow_only_where_the_best_trial_presses_on_them_and_time_allows() -> None:
    planner = Planner(SPACES, LOW_COST, "maximize")
    cap = planner.space("cheap")["n_estimators"].high
    planner.observe_trial("cheap", {"n_estimators": cap // 4}, 1.0, 0.80, failed=False)
    assert planner.space("cheap")["n_estimators"].high == cap  # 40 is not near 128
    planner.observe_trial("cheap", {"n_estimators": cap - 8}, 1.0, 0.85, failed=False)
    assert planner.space("cheap")["n_estimators"].high == 2 * cap
    # no growth when a fit at the grown bound would not fit in the time left
    planner.observe_fit("cheap", {"n_estimators": 2 * cap - 8}, 10_000, 20.0)
    planner.observe_trial("cheap", {"n_estimators": 2 * cap - 8}, 20.0, 0.86, failed=False,
                          time_left_s=30.0, rows=10_000)
    assert planner.space("cheap")["n_estimators"].high == 2 * cap


def test_cost_model_learns_seconds_per_row_and_per_tree() -> None:
    planner = Planner(SPACES, LOW_COST, "maximize")
    rng = np.random.default_rng(0)
    for _ in range(12):
        rows, trees = int(rng.integers(1000, 50_000)), int(rng.integers(16, 1000))
        planner.observe_fit("cheap", {"n_estimators": trees}, rows, 2e-7 * rows * trees ** 0.8)
    predicted = planner.predict_s("cheap", {"n_estimators": 500}, 40_000)
    assert predicted == pytest.approx(2e-7 * 40_000 * 500 ** 0.8, rel=0.05)


def test_default_spaces_scale_with_rows_and_say_how() -> None:
    lightgbm = AlgorithmSpec(name="lightgbm")
    small = algorithms.search_space(lightgbm, "binary", 1_000)
    large = algorithms.search_space(lightgbm, "binary", 1_000_000)
    assert small["num_leaves"].high == 32 and large["num_leaves"].high == 512
    assert small["n_estimators"].high == 200 and large["n_estimators"].high == 2000
    assert "num_leaves" in algorithms.get("lightgbm").space_notes
    # a spec's own space is never rescaled
    fixed = AlgorithmSpec(name="lightgbm", search_space={
        "num_leaves": {"type": "int", "low": 4, "high": 8}})
    assert algorithms.search_space(fixed, "binary", 1_000_000)["num_leaves"].high == 8
    assert algorithms.low_cost(AlgorithmSpec(name="random_forest", params={"max_depth": 5})
                               ) == {"n_estimators": 32, "max_features": "sqrt"}


def _spec(**search: object) -> Spec:
    return Spec.model_validate({"name": "s", "task": "binary",
                                "data": {"train": "x.csv", "label": "y"},
                                "algorithms": ["lightgbm"], "search": search})


def test_halving_and_cost_aware_are_on_by_default_for_budgets_only() -> None:
    assert not _spec().search.uses_halving and not _spec().search.uses_cost_aware
    budgeted = _spec(time_budget_s=60).search
    assert budgeted.uses_halving and budgeted.uses_cost_aware
    assert not _spec(time_budget_s=60, early_stopping="median").search.uses_halving
    assert not _spec(time_budget_s=60, algorithm="grid").search.uses_cost_aware


@pytest.mark.parametrize(("search", "field"), [
    ({"halving": True, "early_stopping": "asha"}, "early_stopping"),
    ({"cost_aware": True, "algorithm": "grid"}, "cost_aware"),
    ({"halving_eta": 1}, "halving_eta"),
])
def test_conflicting_search_strategies_fail_naming_the_field(
        search: dict[str, object], field: str) -> None:
    with pytest.raises((SpecError, ValueError), match=field):
        _spec(**search)


def test_drip_algorithms_prints_bounds_scaling_and_low_cost_starts() -> None:
    from typer.testing import CliRunner

    from dripml.cli import app

    plain = CliRunner().invoke(app, ["algorithms"], env={"COLUMNS": "300"})
    assert plain.exit_code == 0, plain.output
    assert "num_leaves: int 4..256 log" in plain.output
    assert "clamp(n/100, 32, 512)" in plain.output
    assert "low-cost start: n_estimators=32, num_leaves=16" in plain.output
    scaled = CliRunner().invoke(app, ["algorithms", "--rows", "48000"],
                                env={"COLUMNS": "300"})
    assert "num_leaves: int 4..480 log" in scaled.output
