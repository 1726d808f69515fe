"""Discover on a real local Ray: folds, aggregation, grid, pruning, failures, budgets, GPUs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import ray
from sklearn.metrics import roc_auc_score

from dripml import api
from dripml.core import data
from dripml.core.results import FoldScore, aggregate
from dripml.core.spec import load_spec
from dripml.discover import folds as folds_module
from dripml.discover import search, trials
from dripml.errors import ResourceError, SearchError, SpecError
from dripml.orchestration import ray_cluster as cluster


def test_aggregate_mean_and_population_std() -> None:
    folds = [FoldScore(0, {"validation_auc": 0.8, "train_auc": 1.0}, 1.0),
             FoldScore(1, {"validation_auc": 0.9, "train_auc": float("nan")}, 2.0)]
    mean, std = aggregate(folds)
    assert mean["validation_auc"] == pytest.approx(0.85)
    assert std["validation_auc"] == pytest.approx(0.05)
    assert mean["train_auc"] == 1.0 and std["train_auc"] == 0.0  # NaN folds ignored


def test_folds_are_stratified_and_cover_every_row() -> None:
    y = np.array([0] * 80 + [1] * 20)
    spec = load_spec({"name": "f", "task": "binary", "algorithms": ["lightgbm"],
                      "data": {"train": "x.csv", "label": "y"}, "k_fold": 5})
    folds = folds_module.make_folds(y, spec)
    assert len(folds) == 5
    validation = np.concatenate([v for _, v in folds])
    assert sorted(validation) == list(range(100))
    assert all(y[v].sum() == 4 for _, v in folds)


def test_grid_enumerates_every_algorithm() -> None:
    spec = load_spec({"name": "g", "task": "binary", "data": {"train": "x.csv", "label": "y"},
                      "search": {"algorithm": "grid"}, "algorithms": [
                          {"name": "logistic_regression", "search_space": {
                              "C": {"type": "choice", "values": [0.1, 1, 10]}}},
                          {"name": "lightgbm", "search_space": {
                              "num_leaves": {"type": "int", "low": 8, "high": 9},
                              "learning_rate": {"type": "choice", "values": [0.1, 0.2]}}}]})
    points = search.grid(spec)
    assert len(points) == 3 + 4 and search.trial_count(spec) == 7
    assert {"algorithm": "lightgbm", "lightgbm.num_leaves": 9,
            "lightgbm.learning_rate": 0.2} in points


def run_search(small_adult: dict, **changes):
    spec = api.validate({"name": "t", "task": "binary", "data": small_adult, "k_fold": 3,
                         **changes})
    dataset = data.load(spec)
    return trials.discover(dataset, spec, trials.resolve_objective(spec))


def test_grid_search_runs_every_config_and_fold(ray_cluster, small_adult) -> None:
    seen = []
    spec = api.validate({"name": "t", "task": "binary", "data": small_adult, "k_fold": 3,
                         "search": {"algorithm": "grid"}, "algorithms": [
                             {"name": "lightgbm", "params": {"n_estimators": 40},
                              "search_space": {"num_leaves": {"type": "choice",
                                                              "values": [4, 16]}}},
                             {"name": "logistic_regression", "search_space": {
                                 "C": {"type": "choice", "values": [0.01, 1.0]}}}],
                         "metrics": {"train": ["roc_auc"],
                                     "validation": ["accuracy", "coverage_at_precision@0.9"]}})
    dataset = data.load(spec)
    result = trials.discover(dataset, spec, trials.resolve_objective(spec),
                             on_trial=lambda r, best, done, total: seen.append((done, total)))
    assert [r.state for r in result.trials] == ["COMPLETE"] * 4
    assert seen[-1] == (4, 4)
    assert {(r.algorithm, tuple(sorted(r.params.items()))) for r in result.trials} == {
        ("lightgbm", (("n_estimators", 40), ("num_leaves", 4))),
        ("lightgbm", (("n_estimators", 40), ("num_leaves", 16))),
        ("logistic_regression", (("C", 0.01),)), ("logistic_regression", (("C", 1.0),))}
    for r in result.trials:
        assert [f.fold for f in r.folds] == [0, 1, 2]
        values = [f.metrics["validation_roc_auc"] for f in r.folds]
        assert r.objective == pytest.approx(np.mean(values))
        assert {"train_roc_auc", "validation_accuracy",
                "validation_coverage_at_precision_0.9"} <= set(r.folds[0].metrics)
    # Out-of-fold predictions kept for Refine's ensembles (top_k 5: every trial may be a
    # candidate), in each fold's validation order: they reproduce the fold's score.
    splits = folds_module.make_folds(dataset.y_train, spec)
    for r in result.trials:
        for fold, (_, validation) in zip(r.folds, splits, strict=True):
            assert fold.oof.shape == (len(validation), 2) and fold.oof.dtype == np.float32
            assert roc_auc_score(dataset.y_train[validation], fold.oof[:, 1]) == pytest.approx(
                fold.metrics["validation_roc_auc"], abs=1e-6)
    assert result.best.objective == max(r.objective for r in result.trials)
    assert 0.8 < result.best.objective < 1.0


def test_asha_prunes_bad_trials_between_folds(ray_cluster, small_adult) -> None:
    result = run_search(small_adult, k_fold=5, algorithms=[{
        "name": "logistic_regression",
        "search_space": {"C": {"type": "loguniform", "low": 1e-6, "high": 10}}}],
        search={"algorithm": "random", "num_trials": 12, "early_stopping": "asha",
                "max_concurrent": 1, "seed": 1})
    pruned = [r for r in result.trials if r.state == "PRUNED"]
    assert pruned, [r.state for r in result.trials]
    assert all(len(r.folds) < 5 for r in pruned)
    assert result.best.state == "COMPLETE" and len(result.best.folds) == 5


def test_failed_trials_are_recorded_and_all_failed_is_an_error(ray_cluster, small_adult) -> None:
    result = run_search(small_adult, algorithms=[
        {"name": "lightgbm", "params": {"n_estimators": 20}},
        {"name": "logistic_regression", "params": {"C": -1.0}}],  # invalid: fails in fit
        search={"algorithm": "random", "num_trials": 6, "seed": 0})
    failed = [r for r in result.trials if r.state == "FAILED"]
    assert failed and all("C" in (r.error or "") for r in failed)
    assert result.best.algorithm == "lightgbm"
    with pytest.raises(SearchError, match="none of 2 trials completed"):
        run_search(small_adult, algorithms=[{"name": "logistic_regression",
                                             "params": {"C": -1.0}}],
                   search={"num_trials": 2})


def test_custom_model_and_metric_run_in_ray_workers(ray_cluster, small_adult) -> None:
    result = run_search(small_adult, algorithms=[
        {"name": "custom_components:MajorityThenAge", "params": {"slope": 0.1}}],
        search={"num_trials": 1},
        metrics={"validation": ["custom_components:share_of_positive_predictions"]})
    fold = result.best.folds[0].metrics
    assert 0.0 <= fold["validation_share_of_positive_predictions"] <= 1.0
    assert 0.5 < fold["validation_roc_auc"] < 1.0


def test_time_budget_cancels_trials_in_flight(ray_cluster, small_adult) -> None:
    budget_s = 2.0
    result = run_search(small_adult, algorithms=[
        {"name": "lightgbm", "params": {"n_estimators": 200}}],
        search={"algorithm": "random", "num_trials": 500, "time_budget_s": budget_s})
    assert result.wall_time_s < budget_s + 1.0  # the folds in flight did not run on
    cancelled = [r for r in result.trials if r.reason == trials.TIME_BUDGET_REASON]
    assert cancelled and all(r.state == "PRUNED" for r in cancelled)
    assert result.best.state == "COMPLETE" and result.best.number not in {
        r.number for r in cancelled}
    assert any("cancelled in flight" in s for s in result.skipped)
    assert any(s.endswith("of 500 trial(s) not started") for s in result.skipped)
    # A budget no trial can complete in fails at twice it, clearly.
    with pytest.raises(SearchError, match="no trial completed within twice the time budget"):
        run_search(small_adult, algorithms=["logistic_regression"],
                   search={"num_trials": 50, "time_budget_s": 0.001})


def test_gpu_trials_fail_at_once_without_gpus(tmp_path: Path, small_adult) -> None:
    assert cluster.local_gpu_count() == 0, "this test expects a machine without GPUs"
    was_running = ray.is_initialized()
    with pytest.raises(ResourceError, match="gpus_per_trial is 1 but this machine has no GPU"):
        api.train({"name": "gpu", "task": "binary", "data": small_adult,
                   "algorithms": ["mlp"], "resources": {"gpus_per_trial": 1}},
                  tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert ray.is_initialized() == was_running  # nothing was started
    assert not (tmp_path / "m.db").exists()


def test_gpu_trials_fail_on_a_cluster_without_gpus(ray_cluster) -> None:
    spec = load_spec({"name": "g", "task": "binary", "data": {"train": "x", "label": "y"},
                      "algorithms": ["mlp"], "resources": {"gpus_per_trial": 1}})
    with pytest.raises(ResourceError, match="the Ray cluster has 0 GPUs"):
        cluster.check_cluster_resources(spec.resources)


def test_bad_spec_starts_nothing(tmp_path: Path) -> None:
    with pytest.raises(SpecError):
        api.train({"name": "x", "task": "binary", "data": {"train": "none.csv", "label": "y"},
                   "algorithms": ["nope"]}, tracking_uri=f"sqlite:///{tmp_path}/m.db")
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("algorithm", ["logistic_regression", "lightgbm", "mlp"])
def test_shared_preprocessing_scores_like_a_full_fit(small_adult, algorithm: str) -> None:
    from dripml.algorithms.registry import BuildContext
    from dripml.core import metrics

    spec = api.validate({"name": "t", "task": "binary", "data": small_adult, "k_fold": 3,
                         "algorithms": [algorithm]})
    dataset = data.load(spec)
    X = dataset.encoder.transform(dataset.X_train)
    splits = folds_module.make_folds(dataset.y_train, spec)
    ctx = BuildContext(task="binary", layout=dataset.encoder.layout)
    params = {"epochs": 3} if algorithm == "mlp" else {}
    bound = metrics.resolve_all(trials.validation_metric_specs(
        spec, trials.resolve_objective(spec)), "binary")
    args = (X, dataset.y_train, splits, 1, algorithm, params, ctx, 2, bound, bound)
    full = folds_module.run_fold(*args)
    shared = folds_module.run_fold(
        *args, folds_module.transform_fold(X, dataset.y_train, splits, 1, algorithm, params,
                                           ctx))
    assert shared.metrics.keys() == full.metrics.keys()
    for key, value in full.metrics.items():
        assert shared.metrics[key] == pytest.approx(value, abs=1e-9), key
