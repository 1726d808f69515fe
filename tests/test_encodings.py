"""Encodings that fit the data: datetime parts, identifiers dropped and said, no silent cuts
of categories, target encoding of large categoricals fitted inside each fold, and the summary
of each algorithm's encoding. Fast: no Ray, no MLflow."""

from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.preprocessing import TargetEncoder

from dripml.algorithms import preprocessing
from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BUILTINS, BuildContext
from dripml.core import data, features
from dripml.core.features import ColumnLayout, TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe, TrainedModel
from dripml.core.spec import load_spec
from dripml.discover.folds import transform_fold
from dripml.errors import DataError, SpecError

STAMPS = ["2013-01-01T10:00:00Z", "2013-06-30T23:30:00-02:00", "2013-03-04", None,
          "not a date", "2013-12-31T05:00:00+05:30"]


def dense(matrix: object) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)


def nan_equal(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float))


# --------------------------------------------------------------------------- datetime parts


def test_iso_strings_become_datetime_parts_equal_on_both_paths() -> None:
    frame = pd.DataFrame({"when": STAMPS * 40, "x": np.arange(240.0)})
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {"when": "datetime"}))
    assert [f.kind for f in encoder.features] == ["datetime", "numeric"]
    assert encoder.names == ["when", "x"]  # what a request must hold
    assert encoder.encoded_names == ["when.epoch_days", "when.year", "when.month", "when.day",
                                     "when.dayofweek", "when.hour", "x"]
    assert encoder.layout.numeric == (0, 1, 2, 3, 4, 5, 6)
    assert encoder.layout.datetime_features == ("when",)
    matrix = encoder.transform(frame)
    assert matrix.shape == (240, 7)
    # 2013-01-01 is day 15,706 after 1970-01-01; 10:00 UTC adds 10/24 of a day.
    assert matrix[0, 0] == pytest.approx(15_706 + 10 / 24)
    # -02:00 at 23:30 is 01:30 UTC the next day, a Monday; +05:30 at 05:00 is 23:30 UTC.
    nan_equal(matrix[:6, 1:6], [[2013, 1, 1, 1, 10], [2013, 7, 1, 0, 1], [2013, 3, 4, 0, 0],
                               [math.nan] * 5, [math.nan] * 5, [2013, 12, 30, 0, 23]])
    records = [{"when": w, "x": float(i)} for i, w in enumerate(STAMPS)]
    nan_equal(encoder.transform_records(records), matrix[:6])
    assert encoder.notes == ("column 'when' holds dates; encoded as epoch_days, year, "
                             "month, day, dayofweek, hour (UTC); values that do not read as "
                             "dates (1 distinct) count as missing",)


@pytest.mark.parametrize(("bad", "kind"), [(50, "datetime"), (51, "categorical")])
def test_strings_are_dates_when_95_percent_of_a_sample_read_as_iso(bad: int, kind: str) -> None:
    # The first 1,000 non-null values are sampled: rows past them do not count.
    values = [None] * 10 + ["x"] * bad + ["2013-01-01T10:00:00Z"] * (1000 - bad) + ["y"] * 500
    assert infer_kinds(pd.DataFrame({"t": values}), {}) == {"t": kind}


def test_datetime64_column_and_its_iso_strings_encode_alike() -> None:
    stamps = pd.Series(pd.to_datetime(["2013-01-01 22:00", "2013-05-05 03:00", None]),
                       name="t").dt.tz_localize("America/New_York")
    frame = pd.DataFrame({"t": stamps})
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    records = [{"t": None if pd.isna(v) else v.isoformat()} for v in stamps]
    nan_equal(encoder.transform_records(records), encoder.transform(frame))
    nan_equal(encoder.transform(frame)[0, 1:], [2013, 1, 2, 2, 3])  # 22:00 EST = 03:00 UTC


def test_dates_without_times_get_no_hour_and_numbers_are_never_dates() -> None:
    frame = pd.DataFrame({"day": ["2013-01-01", "2013-02-01"] * 5,
                          "code": [20130101, 20130102] * 5,
                          "compact": ["20130101", "20130102"] * 5})
    kinds = infer_kinds(frame, {})
    assert kinds == {"day": "datetime", "code": "numeric", "compact": "categorical"}
    encoder = TabularEncoder().fit(frame, kinds)
    assert encoder.features[0].parts == ("epoch_days", "year", "month", "day", "dayofweek")


def test_declared_datetime_that_holds_no_date_fails_naming_the_column() -> None:
    frame = pd.DataFrame({"t": [1357016400, 1357020000]})
    with pytest.raises(DataError, match="column 't' is datetime but none of its values"):
        TabularEncoder().fit(frame, {"t": "datetime"})


def test_spec_accepts_datetime_column_type() -> None:
    spec = load_spec({"name": "t", "task": "binary", "algorithms": ["lightgbm"],
                      "data": {"train": "x.csv", "label": "y",
                               "column_types": {"time_hour": "datetime"}}})
    assert spec.data.type_overrides() == {"time_hour": "datetime"}
    with pytest.raises(SpecError, match="datetime"):  # the valid choices are listed
        load_spec({"name": "t", "task": "binary", "algorithms": ["lightgbm"],
                   "data": {"train": "x.csv", "label": "y", "column_types": {"t": "date"}}})


# --------------------------------------------------------------------------- identifiers


def write_rows(tmp_path: Path, n: int = 1500) -> Path:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "id": rng.permutation(n) + 10_000,
        "order": [f"ord-{i:05d}" for i in rng.permutation(n)],
        "weight": rng.integers(0, 2000, n),  # like Adult's fnlwgt: many values, far from all
        "color": rng.choice(["red", "blue"], n),
        "y": rng.choice(["no", "yes"], n),
    })
    frame.to_csv(tmp_path / "rows.csv", index=False)
    return tmp_path / "rows.csv"


def spec_for(path: Path, **data_fields: object):
    return load_spec({"name": "t", "task": "binary", "algorithms": ["lightgbm"], "k_fold": 2,
                      "data": {"train": str(path), "label": "y", **data_fields}})


def test_identifier_columns_are_dropped_and_said(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    path = write_rows(tmp_path)
    with caplog.at_level(logging.WARNING, logger="dripml.core.data"):
        dataset = data.load(spec_for(path))
    assert dataset.encoder.names == ["weight", "color"]
    assert list(dataset.X_test.columns) == ["weight", "color"]
    expected = ("column 'id' looks like an identifier (1,200 unique integers in 1,200 rows); "
                "dropped from the features. Declare its type in data.column_types to keep it.")
    assert dataset.encoder.notes[0] == expected
    assert dataset.encoder.notes[1].startswith(
        "column 'order' looks like an identifier (1,200 unique strings in 1,200 rows)")
    assert dataset.encoder.notes[1].endswith("(text, if it holds free text).")
    assert expected in caplog.text


def test_declared_identifier_is_kept(tmp_path: Path) -> None:
    path = write_rows(tmp_path)
    dataset = data.load(spec_for(path, column_types={"id": "numeric"}))
    assert dataset.encoder.names == ["id", "weight", "color"]


def test_real_data_keeps_its_many_valued_integers() -> None:
    adult = pd.read_parquet(features_path("adult"))
    flights = pd.read_parquet(features_path("flights"))
    assert features.identifier_note(adult["fnlwgt"], "fnlwgt") is None
    assert features.identifier_note(flights["flight"], "flight") is None
    assert features.identifier_note(adult["fnlwgt"].sample(1000, random_state=0),
                                    "fnlwgt") is None
    float_ids = pd.Series(np.arange(1000, dtype=float))
    assert features.identifier_note(float_ids, "f") is not None
    assert features.identifier_note(float_ids + 0.5, "f") is None  # not whole numbers
    assert features.identifier_note(float_ids[:999], "f") is None  # too few rows to say


def features_path(name: str) -> Path:
    from dripml.core import datasets

    return datasets.fetch(name)["train"]


# --------------------------------------------------------------------------- no silent cuts


def test_levels_beyond_the_maximum_are_merged_and_said(
        caplog: pytest.LogCaptureFixture) -> None:
    kept, extra = features.MAX_CATEGORIES, 50
    # Each kept level twice, the extra ones once: they are the rarest.
    values = [f"k{i}" for i in range(kept)] * 2 + [f"rare{i}" for i in range(extra)]
    frame = pd.DataFrame({"c": values})
    with caplog.at_level(logging.WARNING, logger="dripml.core.features"):
        encoder = TabularEncoder().fit(frame, {"c": "categorical"})
    assert len(encoder.features[0].categories) == kept == 10_000
    assert encoder.layout.cardinalities == (kept,)
    share = extra / len(values)
    assert encoder.notes == (
        f"column 'c' has 10,050 levels: the 50 rarest, {share:.1%} of training rows, are "
        "merged into 'unseen' (only the 10,000 most frequent are kept)",)
    assert encoder.notes[0] in caplog.text
    codes = encoder.transform(pd.DataFrame({"c": ["k0", "rare3"]}))[:, 0]
    assert codes[0] == 0 and math.isnan(codes[1])


# --------------------------------------------------------------------------- encodings


def shop_frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """``shop``: 40 levels that carry the label; ``color``: 3; ``tiny``: 100 levels of noise."""
    rng = np.random.default_rng(seed)
    shop = rng.integers(0, 40, n)
    frame = pd.DataFrame({"x": rng.normal(size=n), "shop": [f"s{s}" for s in shop],
                          "color": rng.choice(["r", "g", "b"], n),
                          "tiny": [f"t{v}" for v in rng.integers(0, 100, n)]})
    y = ((shop % 2 == 0) ^ (rng.random(n) < 0.1)).astype(np.int64)
    return frame, y


def transformers(preprocessor: ColumnTransformer) -> dict[str, tuple[object, list[int]]]:
    return {name: (step, columns) for name, step, columns in preprocessor.transformers}


def target_encoder(pipeline: object) -> TargetEncoder:
    return next(s for s in pipeline.named_steps.values() if isinstance(s, TargetEncoder))


@pytest.mark.parametrize("name", ["logistic_regression", "random_forest"])
def test_large_categoricals_are_target_encoded(name: str) -> None:
    frame, y = shop_frame()
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext(task="binary", layout=encoder.layout)
    recipe = algorithms.build(name, ctx, {})
    steps = transformers(recipe.preprocessor)
    pipeline, columns = steps["target"]
    assert columns == [1, 3]  # shop (40 levels) and tiny (100); color (3) is not
    assert target_encoder(pipeline).target_type == "binary"
    assert 2 not in columns and any(2 in c for _, c in steps.values())
    fitted = FittedRecipe(recipe, "binary", 2).fit(encoder.transform(frame), y)
    assert (fitted.predict(encoder.transform(frame))[0] == y).mean() > 0.8


def test_target_encoding_is_fitted_on_the_fold_only_and_cross_fitted() -> None:
    frame, y = shop_frame()
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext(task="binary", layout=encoder.layout)
    X = encoder.transform(frame)
    splits = [(np.arange(0, 300), np.arange(300, 600)), (np.arange(300, 600), np.arange(300))]
    folds = [transform_fold(X, y, splits, k, "logistic_regression", {}, ctx) for k in (0, 1)]
    encoders = [target_encoder(fold.preprocessor.named_transformers_["target"])
                for fold in folds]
    assert encoders[0] is not encoders[1]  # a preprocessor per fit
    for (train_idx, _), fitted in zip(splits, encoders, strict=True):
        # Only the fold's training labels reached it.
        assert fitted.target_mean_ == pytest.approx(y[train_idx].mean())
    # `tiny` is noise with ~3 rows a level: encoded in-sample it would predict its own rows'
    # labels; cross-fitted (what fit_transform gives the training rows) it cannot.
    train = dense(folds[0].train)
    leaked = dense(folds[0].preprocessor.transform(X[splits[0][0]]))
    tiny = train.shape[1] - 1  # the target block comes last: shop, tiny
    y_train = y[splits[0][0]]
    assert abs(np.corrcoef(train[:, tiny], y_train)[0, 1]) < 0.2
    assert np.corrcoef(leaked[:, tiny], y_train)[0, 1] > 0.4


def test_target_type_follows_the_task() -> None:
    frame, y = shop_frame()
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    for task, target_type in (("multiclass", "multiclass"), ("regression", "continuous")):
        ctx = BuildContext(task=task, layout=encoder.layout)
        recipe = algorithms.build("random_forest", ctx, {})
        assert target_encoder(transformers(recipe.preprocessor)["target"][0]
                              ).target_type == target_type


@pytest.mark.parametrize(("task", "n_classes"), [("binary", 2), ("multiclass", 3)])
def test_xgboost_types_the_target_encoded_columns(task: str, n_classes: int) -> None:
    frame, y = shop_frame()
    if task == "multiclass":
        y = (y + (frame["x"] > 1).to_numpy()).astype(np.int64)
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext(task=task, layout=encoder.layout)
    recipe = algorithms.build("xgboost", ctx, {"n_estimators": 5})
    fitted = FittedRecipe(recipe, task, n_classes).fit(encoder.transform(frame), y)
    # x, color (native), then shop and tiny: a column each, or one per class each
    per_column = 1 if task == "binary" else n_classes
    assert fitted.recipe.estimator.feature_types == ["q", "c"] + ["q"] * 2 * per_column
    restored = cloudpickle.loads(cloudpickle.dumps(fitted))
    assert restored.predict(encoder.transform(frame))[1].shape == (len(frame), n_classes)


def test_preprocessor_keys_share_only_identical_preprocessing() -> None:
    frame, _ = shop_frame()
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext(task="binary", layout=encoder.layout)

    def key(name: str, **params: object) -> tuple:
        return algorithms.build(name, ctx, params).preprocessor_key

    tree = ("tree", "target", (1, 3))
    assert key("random_forest") == key("lightgbm") == key("xgboost") == tree
    assert key("hist_gradient_boosting") == tree
    assert key("logistic_regression") == key("ridge") == preprocessing.LINEAR_INPUT
    small = frame[["x", "color"]]
    plain = BuildContext(task="binary", layout=TabularEncoder().fit(
        small, infer_kinds(small, {})).layout)
    for name in ("random_forest", "hist_gradient_boosting", "lightgbm"):
        assert algorithms.build(name, plain, {}).preprocessor_key == preprocessing.TREE_INPUT


def test_hist_gradient_boosting_bins_bound_its_native_levels() -> None:
    frame, _ = shop_frame()
    frame["mid"] = [f"m{i % 25}" for i in range(len(frame))]  # 25 levels
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext(task="binary", layout=encoder.layout)
    recipe = algorithms.build("hist_gradient_boosting", ctx, {"max_bins": 20})
    assert recipe.preprocessor_key == ("tree", "target", (1, 3, 4))
    assert algorithms.build("hist_gradient_boosting", ctx, {}).preprocessor_key == (
        "tree", "target", (1, 3))


# --------------------------------------------------------------------------- summaries


def flights_like() -> BuildContext:
    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame({
        "carrier": rng.choice(["AA", "UA", "DL"], n),
        "tailnum": [f"N{v}" for v in rng.integers(0, 300, n)],
        "origin": rng.choice(["JFK", "LGA", "EWR"], n),
        "dest": [f"D{v}" for v in rng.integers(0, 60, n)],
        "time_hour": [f"2013-0{1 + i % 9}-1{i % 10}T{10 + i % 12}:00:00Z" for i in range(n)],
        "distance": rng.integers(100, 3000, n),
    })
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    return BuildContext(task="binary", layout=encoder.layout)


def test_encoding_summary_says_each_choice() -> None:
    ctx = flights_like()
    native = "native: carrier, origin; target: tailnum, dest; datetime parts: time_hour"
    assert algorithms.encoding_summary("logistic_regression", ctx) == (
        "one-hot: carrier, origin; target: tailnum, dest; datetime parts: time_hour")
    assert algorithms.encoding_summary("random_forest", ctx) == (
        "codes: carrier, origin; target: tailnum, dest; datetime parts: time_hour")
    for name in ("lightgbm", "xgboost", "hist_gradient_boosting"):
        assert algorithms.encoding_summary(name, ctx) == native
    assert algorithms.encoding_summary("transformer", ctx) == ""
    assert algorithms.encoding_summary("custom_components:MajorityThenAge", ctx) == ""
    numbers = BuildContext(task="binary", layout=ColumnLayout((0, 1), (), ()))
    assert algorithms.encoding_summary("lightgbm", numbers) == ""


def test_every_builtin_declares_the_encoding_its_builder_uses() -> None:
    assert set(preprocessing.BUILTIN_ENCODINGS) == set(BUILTINS)
    ctx = flights_like()
    # mlp and the embeddings import torch to build; they call the same linear blocks.
    for name in ("logistic_regression", "random_forest", "hist_gradient_boosting",
                 "lightgbm", "xgboost"):
        encoding = preprocessing.BUILTIN_ENCODINGS[name]
        steps = transformers(algorithms.build(name, ctx, {}).preprocessor)
        assert tuple(steps["target"][1]) == encoding.target_positions(ctx.layout), name


# --------------------------------------------------------------------------- old pickles


def test_encoder_pickled_before_the_new_attributes_still_encodes() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0] * 10, "c": ["a", "b", "a"] * 10})
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    del encoder.__dict__["notes"]
    for name in ("names", "datetime_features"):
        object.__delattr__(encoder.layout, name)
    for feature in encoder.features:
        object.__delattr__(feature, "parts")
    old = pickle.loads(pickle.dumps(encoder))
    assert old.notes == () and old.layout.names == () and old.features[1].parts == ()
    nan_equal(old.transform(frame)[:3], [[1, 0], [2, 1], [3, 0]])
    nan_equal(old.transform_records([{"x": 1.0, "c": "b"}]), [[1, 1]])
    ctx = BuildContext(task="binary", layout=old.layout)
    assert algorithms.encoding_summary("logistic_regression", ctx) == "one-hot: column 1"
    recipe = algorithms.build("lightgbm", ctx, {"n_estimators": 2, "min_child_samples": 2})
    fitted = FittedRecipe(recipe, "binary", 2).fit(old.transform(frame), np.tile([0, 1, 0], 10))
    model = TrainedModel(old, fitted, "binary", ("n", "y"), "y", "lightgbm")
    assert model.predict_records([{"x": 2.0, "c": "b"}]).labels[0] in ("n", "y")


def test_served_record_takes_a_datetime_as_an_iso_string() -> None:
    from pydantic import ValidationError

    from dripml.productionize import serving

    frame = pd.DataFrame({"when": ["2013-01-01T10:00:00Z", "2013-01-02T11:00:00Z"]})
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    model = TrainedModel(encoder, None, "binary", ("n", "y"), "y", "lightgbm")  # type: ignore[arg-type]
    record = serving.request_model(model)
    assert record.model_validate({"when": "2013-01-01T10:00:00Z"}).model_dump() == {
        "when": "2013-01-01T10:00:00Z"}
    assert "ISO-8601" in record.model_json_schema()["properties"]["when"]["description"]
    with pytest.raises(ValidationError):
        record.model_validate({"when": 1357034400})
