"""The spec: good specs load with defaults, bad ones fail naming the field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dripml import api
from dripml.core.spec import Choice, IntRange, LogUniform, load_spec
from dripml.errors import SpecError

MINIMAL = {
    "name": "adult",
    "task": "binary",
    "data": {"train": "train.csv", "label": "income"},
    "algorithms": ["lightgbm"],
}

EXAMPLE = Path(__file__).parent.parent / "examples" / "adult.yaml"


def with_(**changes: object) -> dict:
    return {**MINIMAL, **changes}


def test_minimal_spec_gets_defaults() -> None:
    spec = load_spec(MINIMAL)
    assert spec.k_fold.n_splits == 5 and spec.k_fold.shuffle
    assert spec.stratified is True  # classification default
    assert spec.search.algorithm == "tpe" and spec.num_trials == 20
    assert spec.resources.cpus_per_trial == 1 and spec.resources.gpus_per_trial == 0
    assert spec.model_name == "adult" and spec.registry.alias == "champion"
    assert spec.data.effective_test_fraction == 0.2
    assert spec.algorithms[0].name == "lightgbm" and spec.algorithms[0].params == {}


def test_example_spec_is_valid() -> None:
    spec = api.validate(EXAMPLE)
    assert [a.key for a in spec.algorithms] == ["logistic_regression", "lightgbm", "xgboost"]
    assert spec.metrics.objective.metric.name == "roc_auc"
    keys = [m.key for m in spec.metrics.test]
    assert "coverage_at_precision_0.85" in keys and "coverage_at_precision_0.95" in keys


def test_k_fold_as_int_or_mapping() -> None:
    assert load_spec(with_(k_fold=3)).k_fold.n_splits == 3
    spec = load_spec(with_(k_fold={"n_splits": 4, "stratified": False, "seed": 7}))
    assert (spec.k_fold.n_splits, spec.stratified, spec.k_fold.seed) == (4, False, 7)


def test_algorithm_forms() -> None:
    spec = load_spec(with_(algorithms=[
        "logistic_regression",
        {"name": "xgboost", "params": {"max_depth": 4}},
        {"name": "lightgbm", "search_space": {
            "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.3},
            "num_leaves": {"type": "int", "low": 8, "high": 64},
            "boosting_type": {"type": "choice", "values": ["gbdt", "dart"]}}},
        {"name": "custom_components:MajorityThenAge", "params": {"slope": 0.1}},
    ]))
    lgbm = spec.algorithms[2].search_space
    assert isinstance(lgbm["learning_rate"], LogUniform)
    assert isinstance(lgbm["num_leaves"], IntRange) and isinstance(lgbm["boosting_type"], Choice)
    assert spec.algorithms[3].is_custom and spec.algorithms[3].key == "MajorityThenAge"


def test_keyword_arguments_like_litmus() -> None:
    spec = api.validate(data={"train": "t.csv", "label": "y"}, name="kw", task="regression",
                        algorithm=["ridge", "lightgbm"], resources={"cpus_per_trial": 2},
                        read_data=False)  # t.csv does not exist: check the fields alone
    assert [a.name for a in spec.algorithms] == ["ridge", "lightgbm"]
    assert spec.resources.cpus_per_trial == 2
    assert spec.stratified is False


def test_metric_shorthands_and_objective_forms() -> None:
    spec = load_spec(with_(metrics={"objective": "coverage_at_precision@0.9",
                                    "validation": ["roc_auc", {"name": "f1_macro"}]}))
    assert spec.metrics.objective.metric.precision == 0.9
    assert spec.metrics.objective.metric.key == "coverage_at_precision_0.9"
    spec = load_spec(with_(metrics={"objective": {"name": "log_loss", "direction": "minimize"}}))
    assert spec.metrics.objective.direction == "minimize"


@pytest.mark.parametrize(("changes", "field", "fragment"), [
    ({"task": "ranking"}, "task", "'binary', 'multiclass' or 'regression'"),
    ({"k_fold": 1}, "k_fold.n_splits", "greater than or equal to 2"),
    ({"name": "has space"}, "name", "pattern"),
    ({"algorithms": []}, "algorithms", "at least 1"),
    ({"search": {"num_trials": 0}}, "search.num_trials", "greater than or equal to 1"),
    ({"search": {"algorithm": "bayes"}}, "search.algorithm", "'random', 'tpe' or 'grid'"),
    ({"search": {"early_stoping": "asha"}}, "search.early_stoping", "Extra inputs"),
    ({"resources": {"gpus_per_trial": -1}}, "resources.gpus_per_trial", "greater than"),
    ({"data": {"train": "a.csv"}}, "data.label", "Field required"),
    ({"data": {"train": "a.csv", "label": "y", "test": "b.csv", "test_fraction": 0.2}},
     "data", "either data.test or data.test_fraction"),
    ({"algorithms": [{"name": "lightgbm", "search_space": {
        "learning_rate": {"type": "loguniform", "low": 0, "high": 1}}}]},
     "algorithms.0.search_space.learning_rate", "log-transformed"),
    ({"algorithms": [{"name": "lightgbm", "search_space": {
        "num_leaves": {"type": "gaussian", "low": 0, "high": 1}}}]},
     "algorithms.0.search_space.num_leaves", "does not match any of the expected tags"),
    ({"algorithms": ["lightgbm", "lightgbm"]}, "algorithms", "listed twice"),
    ({"task": "regression", "k_fold": {"stratified": True}}, "<spec>", "k_fold.stratified"),
])
def test_bad_spec_names_the_field(changes: dict, field: str, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(with_(**changes))
    message = str(caught.value)
    assert f"  {field}:" in message, message
    assert fragment in message, message


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"algorithms": ["lightgbn"]}, "unknown algorithm 'lightgbn'; built-ins: ["),
    ({"algorithms": ["ridge"]}, "does not support task 'binary'"),
    ({"algorithms": ["nowhere.module:Model"]}, "cannot import module"),
    ({"metrics": {"objective": "rmse"}}, "rmse"),
    ({"metrics": {"validation": ["coverage_at_precision"]}}, "precision"),
    ({"search": {"algorithm": "grid"}, "algorithms": [{"name": "lightgbm", "search_space": {
        "learning_rate": {"type": "uniform", "low": 0.01, "high": 0.3}}}]},
     "algorithms.lightgbm.search_space.learning_rate is uniform"),
])
def test_validate_checks_beyond_fields(changes: dict, fragment: str) -> None:
    with pytest.raises(SpecError, match=None) as caught:
        api.validate(with_(**changes))
    assert fragment in str(caught.value)


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="must hold a mapping"):
        load_spec(listy)


def test_cli_schema_and_validate(tmp_path: Path) -> None:
    drip = [sys.executable, "-m", "dripml.cli"]
    schema = subprocess.run([*drip, "spec", "schema"], capture_output=True, text=True,
                            check=True)
    parsed = json.loads(schema.stdout)
    assert {"name", "data", "task", "k_fold", "algorithms", "search", "metrics",
            "resources"} <= set(parsed["properties"])
    assert parsed["additionalProperties"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntask: binary\ndata: {train: a.csv, label: y}\n"
                   "algorithms: [lightgbm]\nsearch: {num_trials: -3}\n")
    result = subprocess.run([*drip, "spec", "validate", str(bad)], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert "search.num_trials" in result.stderr and "Traceback" not in result.stderr
