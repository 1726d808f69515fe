"""`search.time_budget_s` bounds the whole of `dripml.train`: the deadline and reserve
arithmetic (no Ray), and one real budgeted run on Adult rows that must end within 10 % of
its budget with a registered model, cancelled trials and `budget.json` recorded."""

from __future__ import annotations

import collections
import json
import math
import time
from pathlib import Path

import pytest
import ray
from mlflow.tracking import MlflowClient

import dripml
from dripml.core import budget, costs
from dripml.core.budget import Deadline, ModelTiming, TrialCost


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_deadline_counts_from_its_start_and_splits() -> None:
    clock = FakeClock()
    deadline = Deadline(60.0, started=clock(), clock=clock)
    clock.now = 115.0
    assert deadline.elapsed_s() == 15.0 and deadline.left_s() == 45.0
    assert not deadline.expired() and not deadline.overrun()
    first = deadline.split(20.0)
    assert first.budget_s == 40.0 and first.left_s() == 25.0
    clock.now = 141.0
    assert first.expired() and not deadline.expired() and first.left_s() == 0.0
    clock.now = 221.0
    assert deadline.overrun() and deadline.left_until_overrun_s() == 0.0
    assert deadline.split(90.0).budget_s == 0.0  # never negative
    with pytest.raises(ValueError, match="non-negative"):
        deadline.split(-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        Deadline(-5.0)


def test_no_budget_never_expires() -> None:
    deadline = Deadline(None)
    assert deadline.left_s() == math.inf and not deadline.expired()
    assert not deadline.overrun() and deadline.split(10.0) is deadline


def test_reserve_follows_the_documented_formula() -> None:
    two = [TrialCost(2.0), TrialCost(2.0)]
    # need = 2 * 1.25 + (50 + 1000) * 0.002 + 0.5 + 0.5 + 2 = 7.6 s per trial.
    need = 2.0 * 1.25 + 1050 * budget.CALL_S + budget.THROUGHPUT_S + budget.MEMORY_S \
        + budget.REGISTER_S
    assert need == pytest.approx(7.6)
    # least = 2 * 1.25 + (10 + 200) * 0.002 + 0.5 + 2 = 5.42 s: the best at the floor.
    least = 2.0 * 1.25 + 210 * budget.CALL_S + budget.THROUGHPUT_S + budget.REGISTER_S
    kwargs = {"row_scale": 1.25, "latency_calls": 1000}
    assert 2 * need + budget.FINISH_S == pytest.approx(19.2)
    assert budget.refine_reserve_s(two, budget_s=100.0, **kwargs) == pytest.approx(
        19.2)  # full, under 25 % of the budget
    assert budget.refine_reserve_s(two, budget_s=60.0, **kwargs) == pytest.approx(15.0)
    assert least + budget.FINISH_S == pytest.approx(9.42)
    assert budget.refine_reserve_s(two, budget_s=20.0, **kwargs) == pytest.approx(
        9.42)  # the least Refine, above 25 %
    slow_call = [TrialCost(2.0, call_s=budget.call_s(predict_row_ms=30.0))]  # a big forest
    assert budget.refine_reserve_s(slow_call, budget_s=1000.0, **kwargs) == pytest.approx(
        need + 1050 * 0.030 + budget.FINISH_S)
    assert budget.refine_reserve_s(slow_call, budget_s=20.0, **kwargs) == pytest.approx(
        least + 210 * 0.030 + budget.FINISH_S)
    assert budget.refine_reserve_s([], budget_s=100.0, **kwargs) == pytest.approx(
        budget.REGISTER_S + budget.FINISH_S)
    # The serving path (a loopback /predict server per model) adds to both: 7 s each here.
    serving = budget.serving_path_s(3.0, enabled=True)
    assert serving == pytest.approx(budget.SERVING_START_S + 3.0)
    assert budget.serving_path_s(3.0, enabled=False) == 0.0
    assert budget.refine_reserve_s(two, budget_s=1000.0, serving_s=serving, **kwargs) \
        == pytest.approx(2 * (need + serving) + budget.FINISH_S)
    assert budget.refine_reserve_s(two, budget_s=20.0, serving_s=serving, **kwargs) \
        == pytest.approx(least + serving + budget.FINISH_S)


def test_measurement_plan_cuts_calls_then_memory_then_models() -> None:
    fast, slow = ModelTiming(0.001, 0.05), ModelTiming(0.01, 0.3)

    def cost(timings: list[ModelTiming], calls: int, memory: bool) -> float:
        return sum(budget.measurement_s(t.call_s, calls, batch_s=t.batch_s, memory=memory,
                                        models=len(timings),
                                        warmup=budget.REDUCED_WARMUP_CALLS) for t in timings)

    plenty = budget.plan_measurement(1000.0, [fast, slow], calls=1000)
    assert (plenty.models, plenty.calls, plenty.memory) == (2, 1000, True)
    assert plenty.warmup == costs.WARMUP_CALLS  # nothing cut: measured as without a budget
    reduced = budget.plan_measurement(cost([fast, slow], 600, True), [fast, slow], calls=1000)
    assert (reduced.models, reduced.memory) == (2, True) and 595 <= reduced.calls <= 600
    assert reduced.estimate_s <= cost([fast, slow], 600, True)
    no_memory = budget.plan_measurement(cost([fast, slow], 200, False), [fast, slow],
                                        calls=1000)
    assert (no_memory.models, no_memory.calls, no_memory.memory) == (2, 200, False)
    kept = budget.plan_measurement(cost([fast, slow], 200, False), [fast, slow], calls=1000,
                                   can_skip_memory=False)
    assert (kept.models, kept.memory) == (1, True)  # memory is needed: a model goes instead
    least = budget.plan_measurement(0.0, [fast, slow], calls=1000)
    assert (least.models, least.calls, least.memory) == (1, 200, False)
    assert least.warmup == budget.REDUCED_WARMUP_CALLS
    starting = budget.plan_measurement(cost([fast], 1000, True) + 1.0, [fast], calls=1000,
                                       memory_start_s=budget.MEMORY_START_S)
    assert starting.memory is False  # starting the memory process would not fit
    with pytest.raises(ValueError, match="at least one model"):
        budget.plan_measurement(10.0, [], calls=1000)


class ConstantModel:
    def predict_records(self, records: list) -> list:
        return [0] * len(records)


def test_only_a_budget_goes_below_1000_latency_calls() -> None:
    records = [{"x": 1.0}]
    with pytest.raises(ValueError, match="at least 1000 calls"):
        costs.measure_latency(ConstantModel(), records, calls=200)
    latency = costs.measure_latency(ConstantModel(), records, calls=200,
                                    min_calls=costs.LATENCY_FLOOR_CALLS)
    assert latency.calls == 200
    with pytest.raises(ValueError, match="at least 200 calls even under a time budget"):
        costs.measure_latency(ConstantModel(), records, calls=100, min_calls=100)
    call_s, batch_s = costs.time_calls(ConstantModel(), records)
    assert 0 < call_s < 0.01 and 0 < batch_s < 0.1


BUDGET_S = 30.0
# Before Discover: Ray's start (~4-5 s) and, since the store is checked first, migrating the
# fresh SQLite store (~2.8 s); 30 s leaves Discover the ~10 s its halving rungs need.


@pytest.mark.slow
def test_train_ends_within_its_budget_with_a_registered_model(
        adult_small_csv: dict[str, Path], in_tmp_dir: Path) -> None:
    """An expensive search (300-tree forests and boosters, 200 trials) that alone would run
    for minutes; train starts its own Ray, and all of it must fit in BUDGET_S + 10 %."""
    ray_was_running = ray.is_initialized()  # normally not: train starts (and counts) Ray
    started = time.monotonic()
    result = dripml.train({
        "name": "budgeted", "task": "binary", "k_fold": 3,
        "data": {"train": str(adult_small_csv["train"]), "test": str(adult_small_csv["test"]),
                 "label": "income"},
        "algorithms": [{"name": "random_forest", "search_space": {
                           "n_estimators": {"type": "int", "low": 300, "high": 400},
                           "max_depth": {"type": "int", "low": 4, "high": 24}}},
                       {"name": "lightgbm", "params": {"n_estimators": 300}}],
        # Four trials in flight on two CPUs: some are always queued when the deadline falls.
        # Halving and the cost-aware planner are on by default under a budget; samples of
        # 266 rows (a third of a fold) let trials climb one sample rung first.
        "search": {"algorithm": "random", "num_trials": 200, "time_budget_s": BUDGET_S,
                   "max_concurrent": 4, "halving_min_rows": 200},
        "refine": {"top_k": 3}})
    wall_s = time.monotonic() - started

    client = MlflowClient()
    report = json.loads(Path(client.download_artifacts(
        result.run_id, "budget.json", str(in_tmp_dir))).read_text())
    print(f"\nbudget {BUDGET_S:g} s: wall {wall_s:.1f} s (budget.json {report['wall_s']:.1f} s),"
          f" discover {report['discover_s']:.1f} s, refine {report['refine_s']:.1f} s; "
          f"skipped: {report['skipped']}")
    assert wall_s <= 1.1 * BUDGET_S
    assert report["budget_s"] == BUDGET_S and report["skipped"] == list(result.skipped)
    assert report["wall_s"] <= result.wall_time_s <= wall_s

    assert any("cancelled in flight" in s for s in result.skipped)
    assert any("not started" in s for s in result.skipped)
    pruned = client.search_runs([result.experiment_id], "tags.`dripml.trial_state` = 'PRUNED'")
    reasons = collections.Counter(
        r.data.tags["dripml.pruned_reason"].split(":")[0] for r in pruned)
    assert reasons["time budget"] >= 1 and reasons["successive halving"] >= 1, reasons
    assert set(reasons) <= {"time budget", "successive halving"}
    # each family's first trial started from its low-cost point (32 trees, 8 deep), clipped
    # to the spec's own space
    trials = sorted(client.search_runs([result.experiment_id], "tags.`dripml.kind` = 'trial'"),
                    key=lambda t: t.info.run_name)  # trial-000-..., in trial order
    first_forest = next(t for t in trials if t.data.tags["dripml.algorithm"] == "random_forest")
    assert first_forest.data.params["max_depth"] == "8"
    assert first_forest.data.params["n_estimators"] == "300"
    # Adult's native_country has 41 levels: target encoded; the others stay codes
    encoding = first_forest.data.params["encoding"]
    assert encoding.startswith("codes: ") and "target: native_country" in encoding, encoding

    champion = client.get_model_version_by_alias("budgeted", "champion")
    assert str(champion.version) == result.model.version
    assert int(champion.tags["latency_calls"]) >= costs.LATENCY_FLOOR_CALLS
    assert client.get_run(result.run_id).info.status == "FINISHED"
    # train stopped the Ray it started (no task left running) or left the caller's alone
    assert ray.is_initialized() == ray_was_running
