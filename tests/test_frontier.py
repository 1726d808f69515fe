"""The quality-cost frontier on hand-made points: dominance, ties, constraints, policies."""

from __future__ import annotations

import math

import pytest

from dripml.core.costs import ServingCost
from dripml.core.results import FoldScore
from dripml.core.spec import ConstraintsSpec, RefineSpec, SelectSpec, load_spec
from dripml.discover import probe_calibration, trials
from dripml.errors import ConstraintError, SearchError, SpecError
from dripml.refine import candidates, frontier
from dripml.refine.frontier import CandidateCost

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def cand(trial: int, objective: float, p99: float, *, mb: float = 1.0, memory: float = 10.0,
         algorithm: str = "lightgbm", rows_s: float = 1000.0,
         price: float | None = None) -> CandidateCost:
    cost = ServingCost(latency_p50_ms=p99 / 2, latency_p99_ms=p99, throughput_rows_s=rows_s,
                       model_mb=mb, memory_mb=memory, cost_per_million=price)
    return CandidateCost(trial=trial, algorithm=algorithm, objective=objective, cost=cost)


def build(candidates: list[CandidateCost], *, direction: str = "maximize",
          constraints: dict | None = None, select: dict | None = None) -> frontier.Frontier:
    return frontier.build(candidates, objective_key="validation_roc_auc", direction=direction,
                          constraints=ConstraintsSpec(**(constraints or {})),
                          select=SelectSpec(**(select or {})))


def trials_of(points: tuple[frontier.FrontierPoint, ...]) -> list[int]:
    return [p.candidate.trial for p in points]


# ------------------------------------------------------------------------------ pareto_front


def test_front_drops_dominated_points_cheapest_first() -> None:
    points = [cand(0, 0.90, 1.0), cand(1, 0.92, 3.0), cand(2, 0.91, 5.0), cand(3, 0.95, 9.0),
              cand(4, 0.89, 2.0)]
    # 2 costs more than 1 and scores less; 4 costs more than 0 and scores less.
    assert frontier.pareto_front(points, "latency_p99_ms", "maximize") == (0, 1, 3)


def test_front_ties() -> None:
    points = [cand(0, 0.90, 2.0), cand(1, 0.90, 1.0),   # same objective: the cheaper wins
              cand(2, 0.93, 4.0), cand(3, 0.95, 4.0),   # same cost: the better wins
              cand(4, 0.97, 6.0), cand(5, 0.97, 6.0)]   # exact tie: the first listed stays
    assert frontier.pareto_front(points, "latency_p99_ms", "maximize") == (1, 3, 4)


def test_front_minimize_and_unmeasured_costs() -> None:
    points = [cand(0, 0.30, 1.0), cand(1, 0.25, 2.0), cand(2, 0.28, 3.0),
              cand(3, 0.10, 5.0, memory=math.nan)]
    assert frontier.pareto_front(points, "latency_p99_ms", "minimize") == (0, 1, 3)
    assert frontier.pareto_front(points, "memory_mb", "minimize") == (1,)  # all 10 MB; 3 NaN
    assert frontier.pareto_front(points, "cost_per_million", "minimize") == ()
    assert frontier.pareto_front([], "model_mb", "maximize") == ()


def test_each_cost_has_its_own_front() -> None:
    points = [cand(0, 0.95, 9.0, mb=0.1), cand(1, 0.90, 1.0, mb=5.0), cand(2, 0.93, 2.0, mb=9.0)]
    placed = build(points)
    assert trials_of(placed.front("latency_p99_ms")) == [1, 2, 0]
    assert trials_of(placed.front("model_mb")) == [0]
    assert placed.costs == ("latency_p99_ms", "model_mb", "memory_mb")  # no price, no cost/1M
    assert {p.candidate.trial: p.frontiers for p in placed.points} == {
        0: ("latency_p99_ms", "model_mb", "memory_mb"), 1: ("latency_p99_ms",),
        2: ("latency_p99_ms",)}


# ------------------------------------------------------------------------------ policies


POINTS = [cand(0, 0.950, 8.0, mb=40), cand(1, 0.948, 2.0, mb=3), cand(2, 0.940, 0.5, mb=0.2),
          cand(3, 0.930, 0.4, mb=0.1), cand(4, 0.945, 3.0, mb=60)]


def chosen(placed: frontier.Frontier) -> int:
    return placed.chosen.candidate.trial


def test_default_policy_without_constraints_is_the_best_objective() -> None:
    placed = build(POINTS)
    assert chosen(placed) == 0 and placed.chosen.rank == 1
    assert sum(p.chosen for p in placed.points) == 1
    assert [p.rank for p in placed.points] == [1, 2, 3, 4, 5]
    assert trials_of(placed.points) == [0, 1, 4, 2, 3]  # best CV objective first


def test_best_under_constraints() -> None:
    placed = build(POINTS, constraints={"max_latency_p99_ms": 2.5})
    assert chosen(placed) == 1
    assert not placed.points[0].feasible and placed.points[0].frontiers == ()
    assert str(placed.points[0].violations[0]) == (
        "latency_p99_ms 8 ms > max_latency_p99_ms 2.5")
    placed = build(POINTS, constraints={"max_latency_p99_ms": 2.5, "max_model_mb": 1})
    assert chosen(placed) == 2
    assert placed.chosen.candidate.cost.latency_p99_ms <= 2.5
    placed = build(POINTS, constraints={"min_throughput_rows_s": 500, "max_memory_mb": 10})
    assert chosen(placed) == 0


def test_cheapest_within() -> None:
    # Within 0.5 % of 0.950 (>= 0.94525): trials 0, 1; the cheaper by p99 is 1.
    assert chosen(build(POINTS, select={"policy": "cheapest_within", "within_pct": 0.5})) == 1
    # Within 1.2 % (>= 0.9386): trials 0, 1, 4, 2; cheapest p99 is 2; by size also 2.
    assert chosen(build(POINTS, select={"policy": "cheapest_within", "within_pct": 1.2})) == 2
    assert chosen(build(POINTS, select={"policy": "cheapest_within", "within_pct": 1.2,
                                        "cost": "model_mb"})) == 2
    assert chosen(build(POINTS, select={"policy": "cheapest_within", "within_pct": 5})) == 3
    # The reference is the best feasible point, not the best overall.
    assert chosen(build(POINTS, constraints={"max_model_mb": 10},
                        select={"policy": "cheapest_within", "within_pct": 0.5})) == 1


def test_cheapest_within_minimize_and_cost_ties() -> None:
    points = [cand(0, 100.0, 5.0), cand(1, 101.0, 1.0), cand(2, 100.5, 1.0), cand(3, 104.0, 0.1)]
    placed = build(points, direction="minimize",
                   select={"policy": "cheapest_within", "within_pct": 2})
    assert chosen(placed) == 2  # 1 and 2 cost the same; 2 has the lower (better) rmse
    assert "latency_p99_ms" in placed.chosen.frontiers


def test_best_overall_breaks_objective_ties_on_cost() -> None:
    points = [cand(0, 0.9, 3.0), cand(1, 0.9, 1.0), cand(2, 0.8, 0.1)]
    assert chosen(build(points, select={"policy": "best_overall"})) == 1


def test_cost_per_million_is_a_cost_when_priced() -> None:
    points = [cand(0, 0.95, 1.0, price=4.0), cand(1, 0.94, 1.0, price=0.5)]
    placed = build(points, select={"policy": "cheapest_within", "within_pct": 2,
                                   "cost": "cost_per_million"})
    assert chosen(placed) == 1 and "cost_per_million" in placed.costs


# ------------------------------------------------------------------------------ no candidate


def test_no_candidate_meets_the_constraints() -> None:
    with pytest.raises(ConstraintError) as info:
        build(POINTS, constraints={"max_latency_p99_ms": 0.0001, "max_model_mb": 50})
    message = str(info.value)
    assert "max_latency_p99_ms 0.0001 ms: the best measured latency_p99_ms is 0.4 ms" in message
    assert "trial 3" in message and "max_model_mb 50 MB" in message
    assert isinstance(info.value, SearchError)
    # The frontier can still be placed (and logged) without choosing.
    placed = frontier.build(POINTS, objective_key="o", direction="maximize",
                            constraints=ConstraintsSpec(max_latency_p99_ms=0.0001),
                            select=SelectSpec(), choose_point=False)
    assert not any(p.chosen or p.feasible or p.frontiers for p in placed.points)


def test_unmeasured_cost_breaks_its_constraint_only() -> None:
    points = [cand(0, 0.9, 1.0, memory=math.nan), cand(1, 0.8, 1.0)]
    assert chosen(build(points)) == 0
    placed = build(points, constraints={"max_memory_mb": 100})
    assert chosen(placed) == 1
    assert str(placed.points[0].violations[0]) == "memory_mb not measured (max_memory_mb 100)"


def test_violations_margin() -> None:
    limits = ConstraintsSpec(max_latency_p99_ms=2, min_throughput_rows_s=1000)
    assert frontier.violations({"latency_p99_ms": 2.9, "throughput_rows_s": 700}, limits,
                               margin=1.5) == ()
    broken = frontier.violations({"latency_p99_ms": 3.1, "throughput_rows_s": 600}, limits,
                                 margin=1.5)
    assert [v.constraint for v in broken] == ["max_latency_p99_ms", "min_throughput_rows_s"]
    assert frontier.violations({}, limits) == ()  # the probe measures only some costs


# ------------------------------------------------------------------------------ table, plot


def test_table_and_png() -> None:
    placed = build(POINTS, constraints={"max_latency_p99_ms": 2.5}).with_versions({1: "7"})
    table = frontier.table(placed)
    assert list(table["trial"]) == [0, 1, 4, 2, 3]
    assert list(table["chosen"]) == [False, True, False, False, False]
    assert list(table["feasible"]) == [False, True, False, True, True]
    assert table.loc[1, "version"] == "7" and table.loc[0, "version"] == ""
    assert {"validation_roc_auc", "latency_p50_ms", "latency_p99_ms", "throughput_rows_s",
            "model_mb", "memory_mb", "cost_per_million", "frontier"} <= set(table.columns)
    png = frontier.plot_png(placed)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 5000


# ------------------------------------------------------------------------------ candidates


def trial(number: int, algorithm: str, objective: float | None,
          state: str = "COMPLETE") -> trials.TrialResult:
    return trials.TrialResult(number, algorithm, algorithm, {}, state, (), {}, {},  # type: ignore[arg-type]
                              objective, 0.0)


def search_result(direction: str = "maximize") -> trials.SearchResult:
    results = (trial(0, "lightgbm", 0.93), trial(1, "lightgbm", 0.92), trial(2, "lightgbm", 0.91),
               trial(3, "logistic_regression", 0.90), trial(4, "xgboost", 0.95, "PRUNED"),
               trial(5, "random_forest", None, "FAILED"), trial(6, "xgboost", 0.89))
    return trials.SearchResult(results, results[0], "validation_roc_auc", direction, 1.0)


def test_candidates_cover_each_algorithm_then_fill_top_k() -> None:
    numbers = lambda refine: [t.number for t in candidates.candidates(search_result(), refine)]  # noqa: E731
    assert numbers(RefineSpec(top_k=3)) == [0, 3, 6]
    assert numbers(RefineSpec(top_k=4)) == [0, 1, 3, 6]
    assert numbers(RefineSpec(top_k=2)) == [0, 3, 6]  # every family, past top_k
    assert numbers(RefineSpec(top_k=3, per_algorithm=False)) == [0, 1, 2]
    assert numbers(RefineSpec(top_k=50)) == [0, 1, 2, 3, 6]  # complete trials only


def test_candidates_prefer_trials_whose_probe_met_the_constraints() -> None:
    def probed(number: int, algorithm: str, objective: float, p99: float) -> trials.TrialResult:
        fold = FoldScore(0, {}, 1.0, probe_latency_p50_ms=p99 / 2, probe_latency_p99_ms=p99,
                         probe_model_mb=0.1)
        return trials.TrialResult(number, algorithm, algorithm, {}, "COMPLETE", (fold,), {}, {},
                                  objective, 0.0)

    results = (probed(0, "lightgbm", 0.93, 0.9), probed(1, "lightgbm", 0.92, 0.8),
               probed(2, "lightgbm", 0.91, 0.3), probed(3, "xgboost", 0.915, 0.7),
               probed(4, "xgboost", 0.90, 0.2), probed(5, "lightgbm", 0.89, 0.4))
    result = trials.SearchResult(results, results[0], "validation_roc_auc", "maximize", 1.0)
    budget = ConstraintsSpec(max_latency_p99_ms=0.5)

    def numbers(refine: RefineSpec, constraints: ConstraintsSpec | None = None) -> list[int]:
        return [t.number for t in candidates.candidates(result, refine, constraints)]

    assert numbers(RefineSpec(top_k=3)) == [0, 1, 3]
    assert numbers(RefineSpec(top_k=3), budget) == [2, 4, 5]  # best objective first
    assert numbers(RefineSpec(top_k=4), budget) == [0, 2, 4, 5]
    assert numbers(RefineSpec(top_k=3), ConstraintsSpec()) == [0, 1, 3]


# ------------------------------------------------------------------------------ probe rule


def test_probe_judges_latency_limits_on_its_median() -> None:
    spec = load_spec({"name": "p", "task": "binary", "algorithms": ["lightgbm"],
                      "data": {"train": "x.csv", "label": "y"},
                      "constraints": {"max_latency_p99_ms": 2.0, "max_model_mb": 1.0}})
    fold = FoldScore(0, {}, 1.0, probe_latency_p50_ms=2.5, probe_latency_p99_ms=9.0,
                     probe_model_mb=0.1)
    assert trials.probe_violations(fold.probe, spec) == ()  # median 2.5 <= 2.0 x 1.5
    fold = FoldScore(0, {}, 1.0, probe_latency_p50_ms=3.5, probe_latency_p99_ms=4.0,
                     probe_model_mb=2.0)
    broken = trials.probe_violations(fold.probe, spec)
    assert [v.constraint for v in broken] == ["max_latency_p99_ms", "max_model_mb"]
    assert trials.probe_violations(FoldScore(1, {}, 1.0).probe, spec) == ()
    assert spec.constraints.probed
    assert not load_spec({**spec.model_dump(exclude_unset=True),
                          "constraints": {"max_memory_mb": 5}}).constraints.probed


def test_calibrated_probe_does_not_prune_what_the_serving_path_would_accept() -> None:
    spec = load_spec({"name": "p", "task": "binary", "algorithms": ["lightgbm"],
                      "data": {"train": "x.csv", "label": "y"},
                      "constraints": {"max_latency_p99_ms": 2.0}})
    # The case: 3.6 ms read in a busy worker whose reference ran 3x slower there than
    # alone; alone the model takes ~1.2 ms, within the 2 ms the serving path would accept.
    busy = FoldScore(0, {}, 1.0, probe_latency_p50_ms=3.6, probe_latency_p99_ms=9.0,
                     probe_reference_ms=0.3)
    assert trials.probe_judged(busy.probe, 0.1)["latency_p99_ms"] == pytest.approx(1.2)
    assert trials.probe_violations(busy.probe, spec, alone_ms=0.1) == ()
    uncalibrated = FoldScore(0, {}, 1.0, probe_latency_p50_ms=3.6, probe_latency_p99_ms=9.0)
    assert trials.probe_violations(uncalibrated.probe, spec, alone_ms=0.1)  # 3.6 > 2 x 1.5
    # Over the limit x margin even calibrated (12 / 3 = 4 ms > 3 ms): pruned, and says so.
    slow = FoldScore(0, {}, 1.0, probe_latency_p50_ms=12.0, probe_reference_ms=0.3)
    (broken,) = trials.probe_violations(slow.probe, spec, alone_ms=0.1)
    assert broken.value == pytest.approx(4.0)
    # A reference that ran faster in the worker never scales the probe up.
    quick = FoldScore(0, {}, 1.0, probe_latency_p50_ms=2.9, probe_reference_ms=0.05)
    assert trials.probe_judged(quick.probe, 0.1)["latency_p50_ms"] == 2.9
    assert probe_calibration.calibrated_ms(2.9, None, 0.1) == 2.9
    # Real timing: the reference probed beside itself calibrates to the same scale.
    call = probe_calibration.reference_call()
    latency, reference_ms = probe_calibration.probe_with_reference(call, rows=20)
    assert latency.p50_ms > 0 and reference_ms > 0 and probe_calibration.reference_alone_ms() > 0


# ------------------------------------------------------------------------------ spec


MINIMAL = {"name": "s", "task": "binary", "data": {"train": "x.csv", "label": "y"},
           "algorithms": ["lightgbm"]}


def test_spec_defaults_keep_todays_behaviour() -> None:
    spec = load_spec(MINIMAL)
    assert spec.refine == RefineSpec(top_k=5, per_algorithm=True, latency_calls=1000,
                                     instance_price_per_hour=None)
    assert spec.constraints.active == {} and not spec.constraints.probed
    assert spec.select.policy == "best_under_constraints"
    assert spec.select.cost == "latency_p99_ms"
    assert spec.search.cost_probe_calls == 200 and spec.search.cost_probe_margin == 1.5


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"select": {"policy": "cheapest_within"}}, "needs within_pct"),
    ({"select": {"within_pct": 1}}, "within_pct applies to policy cheapest_within only"),
    ({"select": {"policy": "best_overall"}, "constraints": {"max_model_mb": 5}},
     "best_overall ignores constraints"),
    ({"select": {"cost": "cost_per_million"}}, "needs refine.instance_price_per_hour"),
    ({"select": {"cost": "accuracy"}}, "select.cost"),
    ({"refine": {"latency_calls": 999}}, "refine.latency_calls"),
    ({"constraints": {"max_latency_ms": 2}}, "constraints.max_latency_ms"),
    ({"constraints": {"max_latency_p99_ms": 0}}, "constraints.max_latency_p99_ms"),
])
def test_bad_refine_specs_name_the_field(changes: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=fragment):
        load_spec({**MINIMAL, **changes})


def test_budget_example_spec_is_valid() -> None:
    from pathlib import Path

    from dripml import api

    spec = api.validate(Path(__file__).parent.parent / "examples" / "adult_budget.yaml")
    assert spec.constraints.active == {"max_latency_p99_ms": 0.5, "max_model_mb": 5}
    assert spec.constraints.probed and spec.refine.instance_price_per_hour == 0.10
