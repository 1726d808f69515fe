"""Custom pre- and postprocessing in the spec (``data.preprocess``, ``postprocess``; issue 18,
items 1 and 4): validation, loading, the model's two prediction paths, by-value pickling, the
model's requirements and, end to end, a served model answering raw records."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from conftest import free_port
from dripml import api
from dripml.core import data
from dripml.core.costs import json_records
from dripml.core.model import FittedRecipe, Recipe, TrainedModel, example_record
from dripml.core.preprocess import load_postprocess
from dripml.core.spec import load_spec
from dripml.errors import DataError, SpecError

PLATFORM = Path(__file__).resolve().parent.parent / "platform"


def _spec(small_adult: dict, **data_fields: Any) -> Any:
    top = {k: data_fields.pop(k) for k in ("postprocess",) if k in data_fields}
    return load_spec({"name": "pre", "task": "binary", "k_fold": 2,
                      "data": {**small_adult, **data_fields},
                      "algorithms": ["lightgbm"], **top})


def _model(dataset: data.Dataset, postprocess: str | None = None) -> TrainedModel:
    """A small real model on ``dataset`` (gradient boosting on the encoded matrix)."""
    fitted = FittedRecipe(Recipe(HistGradientBoostingClassifier(max_iter=15, random_state=0)),
                          "binary", len(dataset.classes))
    fitted.fit(dataset.encoder.transform(dataset.X_train), dataset.y_train)
    return TrainedModel(encoder=dataset.encoder, fitted=fitted, task="binary",
                        classes=dataset.classes, label=dataset.label, algorithm="hgb",
                        example=example_record(dataset.test_input),
                        preprocessor=dataset.preprocessor,
                        postprocessor=load_postprocess(postprocess))


# --------------------------------------------------------------------------- the spec


def test_a_list_of_one_is_one_function(small_adult: dict) -> None:
    # Several functions are a search dimension: tests/test_preprocess_search.py.
    one = _spec(small_adult, preprocess=["preprocess_components:adult_features"])
    assert one.data.preprocess == "preprocess_components:adult_features"
    assert one.data.preprocess_choices == ["preprocess_components:adult_features"]


def test_malformed_references_name_their_field(small_adult: dict) -> None:
    with pytest.raises(SpecError) as caught:
        _spec(small_adult, preprocess="preprocess_components.adult_features",
              postprocess="decide")
    assert "data.preprocess: 'preprocess_components.adult_features' must be written as " \
           "'package.module:name'" in str(caught.value)
    assert "postprocess: 'decide' must be written as 'package.module:function'" in str(
        caught.value)


@pytest.mark.parametrize(("preprocess", "postprocess", "expected"), [
    ("no_such_module_xyz:f", None,
     r"data\.preprocess: cannot import module 'no_such_module_xyz'"),
    ("preprocess_components:adult_featurez", None,
     r"data\.preprocess: module 'preprocess_components' has no 'adult_featurez'; it holds "
     r"CenterHours, FitOnly, adult_features, decide, drops_rows, not_a_frame"),
    ("preprocess_components:NOT_CALLABLE", None,
     r"data\.preprocess: 'preprocess_components:NOT_CALLABLE' is a int, not a function"),
    ("preprocess_components:FitOnly", None,
     r"data\.preprocess: class 'preprocess_components:FitOnly' lacks \['transform'\]"),
    ("preprocess_components:adult_features", "preprocess_components:CenterHours",
     r"postprocess: 'preprocess_components:CenterHours' is a type, not a function"),
])
def test_validate_names_the_field_and_what_the_module_holds(
        small_adult: dict, preprocess: str, postprocess: str | None, expected: str) -> None:
    spec = {"name": "pre", "task": "binary", "algorithms": ["lightgbm"],
            "data": {**small_adult, "preprocess": preprocess}}
    if postprocess:
        spec["postprocess"] = postprocess
    with pytest.raises(SpecError, match=expected):
        api.validate(spec, read_data=False)


def test_types_may_name_the_columns_preprocessing_returns(small_adult: dict) -> None:
    """column_types names an output column: validate (reading the headers) accepts it."""
    api.validate({"name": "pre", "task": "binary", "algorithms": ["lightgbm"],
                  "data": {**small_adult, "preprocess": "preprocess_components:adult_features",
                           "column_types": {"age_decade": "categorical"}}})


# --------------------------------------------------------------------------- loading


def test_load_applies_a_stateless_function_to_train_and_test(small_adult: dict) -> None:
    dataset = data.load(_spec(small_adult, preprocess="preprocess_components:adult_features",
                              column_types={"age_decade": "categorical"}))
    raw = dataset.X_test_raw
    assert raw is not None and "log_capital_gain" not in raw.columns
    np.testing.assert_allclose(dataset.X_test["log_capital_gain"],
                               np.log1p(raw["capital_gain"]))
    assert {"log_capital_gain", "age_decade", "hours_ratio"} <= set(dataset.encoder.names)
    kinds = {f.name: f.kind for f in dataset.encoder.features}
    assert kinds["age_decade"] == "categorical" and kinds["hours_ratio"] == "numeric"
    assert dataset.preprocessor is not None
    assert dataset.preprocessor.input_names == list(raw.columns)
    assert "income" not in dataset.preprocessor.input_names  # the label is never passed in


def test_a_stateful_class_is_fitted_on_the_training_rows_only(small_adult: dict) -> None:
    dataset = data.load(_spec(small_adult, preprocess="preprocess_components:CenterHours",
                              features=["age", "hours_per_week", "occupation"]))
    train_raw = pd.read_csv(small_adult["train"])
    train_mean = train_raw["hours_per_week"].mean()
    test_raw = dataset.test_input
    assert list(test_raw.columns) == ["age", "hours_per_week", "occupation"]
    assert abs(test_raw["hours_per_week"].mean() - train_mean) > 0.01  # the test says so
    np.testing.assert_allclose(dataset.X_test["hours_centered"],
                               test_raw["hours_per_week"] - train_mean)
    assert abs(dataset.X_train["hours_centered"].mean()) < 1e-9


@pytest.mark.parametrize(("name", "expected"), [
    ("not_a_frame", r"'preprocess_components:not_a_frame' failed on '.*train\.csv': "
                    r"TypeError: .*must return a DataFrame"),
    ("drops_rows", r"'preprocess_components:drops_rows' returned 1,?199 rows for the "
                   r"1,?200 of '.*train\.csv'"),
])
def test_a_bad_output_is_a_data_error_naming_the_function_and_file(
        small_adult: dict, name: str, expected: str) -> None:
    with pytest.raises(DataError, match=expected):
        data.load(_spec(small_adult, preprocess=f"preprocess_components:{name}"))


# --------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def stateful_model(small_adult: dict) -> tuple[TrainedModel, data.Dataset]:
    dataset = data.load(_spec(small_adult, preprocess="preprocess_components:CenterHours"))
    return _model(dataset, "preprocess_components:decide"), dataset


def test_frame_and_records_give_the_same_predictions(
        stateful_model: tuple[TrainedModel, data.Dataset]) -> None:
    model, dataset = stateful_model
    raw = dataset.test_input.head(50)
    by_frame = model.predict_frame(raw)
    by_records = model.predict_records(json_records(raw, 50))
    assert by_frame.labels == by_records.labels
    np.testing.assert_allclose(by_frame.probabilities, by_records.probabilities, atol=1e-12)
    assert by_frame.outputs == by_records.outputs
    expected = ["review" if p > 0.5 else "approve" for p in by_frame.probabilities[:, 1]]
    assert [o["decision"] for o in by_records.outputs or []] == expected
    # and the same as the encoder path on the preprocessed test rows
    y_pred, _ = model.fitted.predict(dataset.encoder.transform(dataset.X_test.head(50)))
    assert by_frame.labels == [model.classes[i] for i in y_pred]


def test_a_null_number_reaches_the_step_as_nan_in_both_paths(
        stateful_model: tuple[TrainedModel, data.Dataset]) -> None:
    model, dataset = stateful_model
    record = json_records(dataset.test_input, 1)[0] | {"hours_per_week": None}
    by_records = model.predict_records([record])
    by_frame = model.predict_frame(pd.DataFrame([record]))  # an object column holding None
    assert by_records.labels == by_frame.labels
    np.testing.assert_allclose(by_records.probabilities, by_frame.probabilities, atol=1e-12)
    assert model.preprocessor is not None
    assert model.preprocessor.transform_records([record])[0]["hours_centered"] is None


def test_the_request_schema_lists_the_raw_columns(
        stateful_model: tuple[TrainedModel, data.Dataset]) -> None:
    from dripml.productionize import fastpath, serving

    model, dataset = stateful_model
    record = serving.request_model(model)
    assert list(record.model_fields) == list(dataset.test_input.columns)
    assert "hours_centered" not in record.model_fields
    assert set(model.example) == set(dataset.test_input.columns)
    record.model_validate(model.example)
    checker = fastpath.RecordChecker(model.input_features, integer_categories=frozenset(),
                                     max_records=10)
    assert checker.records({"records": [dict(model.example)]}) is not None


def test_batch_scoring_reads_the_raw_columns(
        stateful_model: tuple[TrainedModel, data.Dataset]) -> None:
    import pyarrow as pa

    from dripml.productionize import batch

    model, dataset = stateful_model
    raw = dataset.test_input.head(30)
    table = pa.Table.from_pandas(raw.astype(str), preserve_index=False)  # a CSV's text
    batch.check_columns(model, table.column_names, "test.csv")
    with pytest.raises(DataError, match=r"lacks the feature columns \['hours_per_week'\]"):
        batch.check_columns(model, [c for c in raw.columns if c != "hours_per_week"], "x.csv")
    scored, bad = batch.score_table(model, table)
    assert bad == []
    assert scored.column("prediction").to_pylist() == model.predict_frame(raw).labels


def _write_module(folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(textwrap.dedent('''
        import numpy as np
        import tabulate  # imported, not used: the model's requirements must list it


        class Scale:
            def fit(self, df):
                self.top_ = float(df["capital_gain"].max())
                return self

            def transform(self, df):
                df["gain_share"] = df["capital_gain"] / self.top_
                return df


        def flag(predictions):
            predictions["flag"] = np.where(predictions["prediction"] == ">50K", 1, 0)
            return predictions[["flag"]]
    '''))


@pytest.mark.slow
def test_the_image_context_carries_the_user_code_by_value(
        small_adult: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module lives in a folder only this process imports from; the image's build
    context (bento, requirements.txt) is written, and a fresh process loads the bento's
    model without the module and predicts the same."""
    from dripml.productionize import images
    from dripml.productionize.tracking import pip_requirements

    name = f"user_steps_{tmp_path.name.replace('-', '_')}"
    _write_module(tmp_path / "code", name)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    dataset = data.load(_spec(small_adult, preprocess=f"{name}:Scale"))
    model = _model(dataset, f"{name}:flag")
    requirements = pip_requirements(model)  # what the model is logged with
    assert any(r.startswith("tabulate==") for r in requirements)
    plan = images.make_plan(name="adult-steps", version="1", registry="127.0.0.1:5000/x",
                            model_requirements=requirements)
    context = images.prepare_context(plan, model, tmp_path / "work")
    image = (context / "requirements.txt").read_text().splitlines()  # pip installs these
    assert any(r.startswith("tabulate==") for r in image)
    shutil.copy2(context / "bento" / "src" / "model" / "model.pkl", tmp_path / "model.pkl")
    records = json_records(dataset.test_input, 20)
    (tmp_path / "records.json").write_text(json.dumps(records))
    script = textwrap.dedent(f'''
        import importlib.util, json, pickle, sys
        assert importlib.util.find_spec({name!r}) is None, "the module must not import here"
        model = pickle.loads(open("model.pkl", "rb").read())
        got = model.predict_records(json.load(open("records.json")))
        print(json.dumps({{"labels": got.labels, "outputs": got.outputs,
                          "proba": got.probabilities.tolist()}}))
    ''')
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, env={"PYTHONPATH": str(PLATFORM), "PATH": "/usr/bin"},
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    there = json.loads(out.stdout.strip().splitlines()[-1])
    here = model.predict_records(records)
    assert there["labels"] == here.labels
    assert there["outputs"] == here.outputs and {"flag"} == set(here.outputs[0])
    np.testing.assert_allclose(there["proba"], here.probabilities, atol=1e-12)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_a_trained_model_serves_raw_records_with_its_postprocess(
        small_adult: dict, in_tmp_dir: Path) -> None:
    from dripml.productionize import serving

    uri = f"sqlite:///{in_tmp_dir}/mlflow.db"
    spec = {"name": "pre-e2e", "task": "binary", "k_fold": 2,
            "data": {**small_adult, "sample_rows": 400,
                     "preprocess": "preprocess_components:adult_features"},
            "postprocess": "preprocess_components:decide",
            "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}],
            "search": {"num_trials": 1},
            "refine": {"compiled_trees": False, "ensembles": []}}
    result = api.train(spec, tracking_uri=uri)
    model = api.load_model(result.model.alias_uri, tracking_uri=uri)
    assert model.preprocessor is not None and model.postprocessor is not None
    raw = pd.read_csv(small_adult["test"]).drop(columns=["income"]).head(8)
    records = json_records(raw, 8)
    expected = model.predict_frame(raw)
    with serving.serve(result.model.alias_uri, port=free_port(), tracking_uri=uri) as handle:
        response = httpx.post(f"{handle.url}/predict", json={"records": records}, timeout=30,
                              trust_env=False)
        schema = httpx.get(f"{handle.url}/docs.json", timeout=10, trust_env=False).json()
        metrics = httpx.get(f"{handle.url}/metrics", timeout=10, trust_env=False).text
    assert response.status_code == 200, response.text
    # decide's .loc fell back to pandas in the worker, counted by operation
    assert f'{serving.FRAME_FALLBACKS_METRIC}_total{{op="DataFrame.loc"}}' in metrics, [
        line for line in metrics.splitlines() if "dripml" in line]
    body = response.json()
    assert body["predictions"] == expected.labels
    got = np.array([[p[c] for c in body["classes"]] for p in body["probabilities"]])
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-6)
    assert body["outputs"] == expected.outputs
    assert {o["decision"] for o in body["outputs"]} <= {"review", "approve"}
    properties = schema["components"]["schemas"]["Record"]["properties"]
    assert list(properties) == list(raw.columns)  # the raw columns, not the derived ones


def test_the_example_spec_and_steps_run_on_adult(
        small_adult: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    examples = PLATFORM.parent / "examples"
    monkeypatch.syspath_prepend(str(examples))
    shipped = api.validate(examples / "adult_preprocess.yaml", read_data=False)
    spec = shipped.model_copy(update={"data": shipped.data.model_copy(update={
        "train": small_adult["train"], "test": small_adult["test"], "sample_rows": None})})
    dataset = data.load(spec)
    assert {"log_capital_gain", "hours_vs_mean"} <= set(dataset.encoder.names)
    model = _model(dataset, spec.postprocess)
    records = json_records(dataset.test_input, 5)
    assert [set(o) for o in model.predict_records(records).outputs or []] == [{"decision"}] * 5


@pytest.mark.slow
def test_the_ray_engine_preprocesses_on_ray_data_as_pandas_does(
        small_adult: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """data.engine: ray runs the fitted step over both splits on Ray Data (same rows, in
    order, as in the driver); a step's DataError in a worker keeps its message; batch
    scoring on Ray Data runs the model's preprocessing."""
    from dripml.orchestration import batch_ray, frame_ray, ray_cluster
    from dripml.productionize import batch

    step = "preprocess_components:CenterHours"
    with pytest.raises(SpecError, match="data.engine"):
        _spec(small_adult, engine="ray")  # nothing to run on Ray without a preprocess
    local = data.load(_spec(small_adult, preprocess=step))
    with ray_cluster.connect(None, num_cpus=2):
        monkeypatch.setattr(frame_ray, "BLOCK_ROWS", 100)  # several blocks: order checked
        on_ray = data.load(_spec(small_adult, preprocess=step, engine="ray"),
                           transform=frame_ray.transform_rows)
        with pytest.raises(DataError, match="drops_rows"):
            data.load(_spec(small_adult, preprocess="preprocess_components:drops_rows",
                            engine="ray"), transform=frame_ray.transform_rows)
        model = _model(on_ray)
        report = batch_ray.predict_file(model, small_adult["test"], tmp_path / "ray.parquet")
    pd.testing.assert_frame_equal(on_ray.X_train, local.X_train)
    pd.testing.assert_frame_equal(on_ray.X_test, local.X_test)
    assert on_ray.preprocessor.output_columns == local.preprocessor.output_columns
    expected = batch.predict_file(model, small_adult["test"], tmp_path / "local.parquet")
    assert report.rows_predicted == expected.rows_predicted > 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray.parquet"),
                                  pd.read_parquet(tmp_path / "local.parquet"))
