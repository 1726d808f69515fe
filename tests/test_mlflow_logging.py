"""MLflow as its users expect: real trial times, dataset inputs, evaluation artifacts, model
cards, signatures that accept the original frame, and each version's own metrics in
``drip models`` (one search with two registered versions, trained once for the module)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from dripml import api
from dripml.core import data
from dripml.core.results import TrialResult
from dripml.core.spec import load_spec
from dripml.productionize import evaluation, tracking
from dripml.refine import candidates

LABEL = "income"


@dataclass(frozen=True)
class Run:
    result: api.TrainResult
    uri: str
    client: MlflowClient
    test_csv: Path


@pytest.fixture(scope="module")
def run(adult_small_csv: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Run:
    """LightGBM and logistic regression, 2 folds, both refit and registered (top_k 2), and
    their greedy and stacked ensembles."""
    root = tmp_path_factory.mktemp("mlflow_logging")
    uri = f"sqlite:///{root}/mlflow.db"
    spec = {
        "name": "logged", "task": "binary", "k_fold": 2,
        "data": {"train": str(adult_small_csv["train"]), "test": str(adult_small_csv["test"]),
                 "label": LABEL},
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}},
                       {"name": "logistic_regression"}],
        "search": {"algorithm": "random", "num_trials": 2, "seed": 0},
        "refine": {"top_k": 2, "ensembles": ["greedy", "stacked"], "ensemble_min_gain": 0},
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        result = api.train(spec, tracking_uri=uri)
    return Run(result, uri, MlflowClient(tracking_uri=uri, registry_uri=uri),
               adult_small_csv["test"])


@pytest.mark.slow
def test_trial_runs_span_their_real_fits(run: Run) -> None:
    best = run.result.best
    assert best.start_time_ms is not None and best.end_time_ms is not None
    children = {c.info.run_name.split("-", 2)[2]: c for c in run.client.search_runs(
        [run.result.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{run.result.run_id}'")}
    assert set(children) == {"lightgbm", "logistic_regression"}
    chosen = children[best.algorithm]
    assert (chosen.info.start_time, chosen.info.end_time) == (best.start_time_ms,
                                                              best.end_time_ms)
    # LightGBM preprocesses inside its folds: its 2 folds ran side by side, so the run spans
    # at least half its summed fit time, at most all of it plus scoring. (Logistic
    # regression's one-hot encoding is a shared task, counted in fit_time_s but not its span.)
    gbm = children["lightgbm"]
    span_ms = gbm.info.end_time - gbm.info.start_time
    fit_ms = gbm.data.metrics["fit_time_s"] * 1000
    assert fit_ms / 2 - 1 <= span_ms <= fit_ms + 5000
    parent = run.client.get_run(run.result.run_id)
    for child in children.values():
        assert parent.info.start_time <= child.info.start_time <= child.info.end_time


@pytest.mark.slow
def test_parent_run_has_training_and_testing_datasets(run: Run) -> None:
    inputs = run.client.get_run(run.result.run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i
                  for i in inputs}
    assert set(by_context) == {"training", "testing"}
    train, test = by_context["training"], by_context["testing"]
    assert train.dataset.digest and test.dataset.digest
    assert train.dataset.digest != test.dataset.digest
    assert json.loads(test.dataset.source)["uri"].endswith("test.csv")
    schema = {c["name"]: c["type"] for c in json.loads(train.dataset.schema)["mlflow_colspec"]}
    assert schema["age"] == "long" and schema[LABEL] == "string"
    rows = {i.dataset.name: next(t.value for t in i.tags if t.key == "rows") for i in inputs}
    assert rows == {"logged-train": "1200", "logged-test": "400"}


@pytest.mark.slow
def test_chosen_run_has_evaluation_artifacts(run: Run, tmp_path: Path) -> None:
    listed = {Path(a.path).name for a in run.client.list_artifacts(run.result.run_id,
                                                                   "evaluation")}
    assert {"confusion_matrix.png", "roc_curve.png", "precision_recall_curve.png",
            "calibration_curve.png", "feature_importance.png", "feature_importance.csv",
            "classification_report.txt", "classification_report.json"} <= listed
    folder = Path(run.client.download_artifacts(run.result.run_id, "evaluation",
                                                str(tmp_path)))
    assert (folder / "roc_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((folder / "classification_report.json").read_text())
    # The report is computed from the same test predictions as the logged test metrics.
    assert report["accuracy"] == pytest.approx(run.result.test_metrics["test_accuracy"])
    assert report[">50K"]["support"] + report["<=50K"]["support"] == 400
    importance = pd.read_csv(folder / "feature_importance.csv")
    assert len(importance) >= 10 and importance["importance"].notna().any()


@pytest.mark.slow
def test_version_descriptions_are_model_cards(run: Run) -> None:
    model = run.result.model
    card = run.client.get_model_version(model.name, model.version).description
    assert f"roc_auc {run.result.test_metrics['test_roc_auc']:.4f}" in card
    assert "2-fold cross-validation" in card and "1,200 rows" in card
    assert "latency p99" in card and "## Spec" in card and "name: logged" in card
    assert len(card) <= tracking.MAX_DESCRIPTION_LENGTH


@pytest.mark.slow
def test_models_lists_each_versions_own_metrics(run: Run) -> None:
    searched = {p.candidate.algorithm: p.candidate.trial for p in run.result.frontier.points
                if p.candidate.algorithm in ("lightgbm", "logistic_regression")}
    assert set(searched.values()) == {0, 1}, "both candidates should be measured"
    assert len(run.result.versions) >= 2  # and their ensembles and compiled twins
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        rows = api.models(run.uri)
    by_version = {r.version: r for r in rows}
    assert set(by_version) == set(run.result.versions.values())
    points = {p.candidate.trial: p.candidate for p in run.result.frontier.points}
    for trial, version in run.result.versions.items():
        row, candidate = by_version[version], points[trial]
        assert row.test_metrics == pytest.approx(dict(candidate.test_metrics))
        assert row.cv_metric == "validation_roc_auc"
        assert row.cv_score == pytest.approx(candidate.objective, rel=1e-5)
        assert row.costs["latency_p99_ms"] == pytest.approx(candidate.cost.latency_p99_ms,
                                                            rel=1e-5)
        assert row.algorithm == candidate.algorithm and row.description
    other = next(v for v in run.result.versions.values() if v != run.result.model.version)
    assert by_version[other].aliases == ()
    assert by_version[run.result.model.version].aliases == ("champion",)
    # Not the parent run's (the champion's) metrics: its own.
    assert by_version[other].test_metrics != pytest.approx(run.result.test_metrics)


@pytest.mark.slow
def test_plain_pyfunc_predicts_the_original_frame(run: Run) -> None:
    frame = pd.read_csv(run.test_csv).drop(columns=LABEL)
    assert frame["age"].dtype == np.int64
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_registry_uri(run.uri)
        loaded = mlflow.pyfunc.load_model(
            f"models:/{run.result.model.name}/{run.result.model.version}")
    columns = {c.name: c.type.name for c in loaded.metadata.get_input_schema().inputs}
    assert columns["age"] == "long" and columns["workclass"] == "string"
    predicted = loaded.predict(frame)
    assert len(predicted) == len(frame)
    assert set(predicted["prediction"]) <= {"<=50K", ">50K"}


def test_regression_evaluation_files(adult_small_csv: dict[str, Path], tmp_path: Path) -> None:
    # Refit in this process (no Ray): age from the other columns, with a linear model,
    # whose |coef_| over one-hot columns does not map onto the inputs: permutation importance.
    spec = load_spec({"name": "ages", "task": "regression",
                      "data": {"train": str(adult_small_csv["train"]),
                               "test": str(adult_small_csv["test"]), "label": "age"},
                      "algorithms": [{"name": "ridge"}], "k_fold": 2})
    dataset = data.load(spec)
    trial = TrialResult(0, "ridge", "ridge", {}, "COMPLETE", (), {}, {}, 0.0, 0.0)
    refit = candidates.refit(dataset, spec, trial)
    assert refit.test_proba is None and refit.test_pred.shape == (400,)
    names = evaluation.write(refit.model, dataset.X_test, dataset.y_test, refit.test_pred,
                             None, tmp_path, time_limit_s=2.0)
    assert set(names) == {"residuals.png", "predicted_vs_actual.png", "feature_importance.png",
                          "feature_importance.csv"}
    importance = pd.read_csv(tmp_path / "feature_importance.csv")
    assert set(importance["feature"]) == set(dataset.X_test.columns)
    assert importance["importance"].iloc[0] > 0  # shuffling the strongest input hurts R^2


def test_input_example_keeps_integers_as_integers() -> None:
    from dripml.productionize.tracking import _example_dtype

    with_missing = pd.Series([1.0, np.nan, 3.0])
    assert _example_dtype(pd.Series([1, 2, 3]), "numeric") == "int64"
    assert _example_dtype(with_missing, "numeric") == "float64"
    assert _example_dtype(pd.Series([1, None], dtype="Int64"), "numeric") == "float64"
    assert _example_dtype(pd.Series(["a", "b"]), "categorical") is object


@pytest.mark.slow
def test_ensembles_are_registered_frontier_points_that_load_and_predict(run: Run) -> None:
    points = {p.candidate.algorithm: p.candidate for p in run.result.frontier.points}
    assert {"ensemble(greedy)", "ensemble(stacked)"} <= set(points)
    greedy = points["ensemble(greedy)"]
    singles = [points["lightgbm"], points["logistic_regression"]]
    assert greedy.objective >= max(c.objective for c in singles)  # never below its best member
    assert greedy.trial not in set(run.result.leaderboard["trial"])  # numbered past the search
    assert greedy.cost.latency_p50_ms > 0 and greedy.cost.model_mb > 0
    # It scores best and costs most, so it is on the frontier, hence registered.
    version = run.result.versions[greedy.trial]
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mlflow.set_registry_uri(run.uri)
        mlflow.set_tracking_uri(run.uri)
        model = tracking.load_trained_model(f"models:/{run.result.model.name}/{version}")
    assert model.algorithm == "ensemble(greedy)"
    assert "lightgbm" in " ".join(tracking.pip_requirements(model))  # its members' needs
    test = pd.read_csv(run.test_csv)
    proba = model.predict_proba(test.drop(columns=LABEL))[">50K"].to_numpy()
    auc = roc_auc_score(test[LABEL] == ">50K", proba)
    assert auc == pytest.approx(greedy.test_metrics["test_roc_auc"], rel=1e-9)
    labels = model.predict_records([model.example]).labels
    assert labels[0] in {"<=50K", ">50K"}
