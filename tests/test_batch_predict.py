"""``drip predict`` / :func:`dripml.predict_batch`: a registered model over a CSV or Parquet
file, in process and on Ray Data, with bad rows reported by line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import Trained
from dripml import api
from dripml.cli import app
from dripml.errors import DataError
from dripml.productionize import batch


def _records(frame: pd.DataFrame, names: list[str]) -> list[dict[str, Any]]:
    """Rows as the endpoint gets them: JSON values, None for missing."""
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in frame[names].to_dict("records")]


def _with_bad_rows(source: Path, target: Path) -> None:
    """``source`` with a non-numeric age on data row 3 (line 4) and a malformed last line."""
    frame = pd.read_csv(source, dtype=str)
    frame.loc[2, "age"] = "abc"
    frame.to_csv(target, index=False)
    with target.open("a") as handle:
        handle.write("39,State-gov,77516\n")  # 3 fields of 15


def test_csv_to_parquet_equals_predict_records(
        tiny_model: Trained, adult_small_csv: dict[str, Path], tmp_path: Path) -> None:
    model = tiny_model.model
    output = tmp_path / "scored.parquet"
    report = batch.predict_file(model, adult_small_csv["test"], output, batch_size=150)

    frame = pd.read_csv(adult_small_csv["test"])
    expected = model.predict_records(_records(frame, model.feature_names))
    got = pd.read_parquet(output)
    assert (report.rows_read, report.rows_predicted, report.bad_row_count) == (400, 400, 0)
    assert list(got.columns) == [*frame.columns, "prediction", "probability_<=50K",
                                 "probability_>50K"]
    assert got["prediction"].tolist() == expected.labels
    np.testing.assert_allclose(got[["probability_<=50K", "probability_>50K"]].to_numpy(),
                               expected.probabilities, rtol=0, atol=1e-12)
    assert got["education"].tolist() == frame["education"].tolist()  # input kept, in order


def test_bad_rows_are_reported_by_line_and_the_rest_predicted(
        tiny_model: Trained, adult_small_csv: dict[str, Path], tmp_path: Path) -> None:
    model = tiny_model.model
    source = tmp_path / "bad.csv"
    _with_bad_rows(adult_small_csv["test"], source)
    report = batch.predict_file(model, source, tmp_path / "scored.csv", batch_size=64)

    assert (report.rows_read, report.rows_predicted, report.bad_row_count) == (401, 399, 2)
    assert [(b.row, b.line, b.where) for b in report.bad_rows] == [
        (3, 4, "line 4"), (401, 402, "line 402")]
    assert report.bad_rows[0].reason == "column 'age': 'abc' is not a number"
    assert report.bad_rows[1].reason == "expected 15 fields, got 3"
    got = pd.read_csv(tmp_path / "scored.csv")
    frame = pd.read_csv(adult_small_csv["test"]).drop(index=2)
    assert got["prediction"].tolist() == model.predict_records(
        _records(frame, model.feature_names)).labels

    # Parquet: no lines, rows; a numeric column stored as text is parsed like CSV's.
    parquet = tmp_path / "bad.parquet"
    pd.read_csv(source, dtype=str, nrows=10).assign(age=lambda f: f["age"].where(
        f.index != 5, "inf")).to_parquet(parquet)
    report = batch.predict_file(model, parquet, tmp_path / "scored.pq")
    assert [(b.row, b.line, b.reason) for b in report.bad_rows] == [
        (3, None, "column 'age': 'abc' is not a number"),
        (6, None, "column 'age': 'inf' is not a finite number")]
    assert report.rows_predicted == 8


def test_unusable_input_fails_before_anything_is_written(
        tiny_model: Trained, adult_small_csv: dict[str, Path], tmp_path: Path) -> None:
    model = tiny_model.model
    source = tmp_path / "no_age.csv"
    pd.read_csv(adult_small_csv["test"]).drop(columns="age").to_csv(source, index=False)
    output = tmp_path / "scored.parquet"
    with pytest.raises(DataError, match=r"lacks the feature columns \['age'\]"):
        batch.predict_file(model, source, output)
    with pytest.raises(DataError, match=r"no known suffix; expected one of \.csv"):
        batch.predict_file(model, adult_small_csv["test"], tmp_path / "scored.xlsx")
    with pytest.raises(DataError, match="is not a file"):
        batch.predict_file(model, tmp_path / "absent.csv", output)
    clash = tmp_path / "clash.csv"
    pd.read_csv(adult_small_csv["test"]).assign(prediction=1).to_csv(clash, index=False)
    with pytest.raises(DataError, match=r"already has the columns \['prediction'\]"):
        batch.predict_file(model, clash, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clash.csv", "no_age.csv"]


def test_engine_choice() -> None:
    assert batch.choose_engine("auto", None, 10) == "local"
    assert batch.choose_engine("auto", None, None) == "local"
    assert batch.choose_engine("auto", None, batch.RAY_MIN_ROWS) == "ray"
    assert batch.choose_engine("auto", "ray://head:10001", 10) == "ray"
    assert batch.choose_engine("ray", None, 10) == "ray"
    with pytest.raises(DataError, match="engine must be auto, local or ray, got 'spark'"):
        batch.choose_engine("spark", None, 10)
    with pytest.raises(DataError, match="drop the Ray address"):
        batch.choose_engine("local", "auto", 10)


def test_cli_predict_end_to_end(tiny_model: Trained, adult_small_csv: dict[str, Path],
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("DRIPML_RAY_ADDRESS", "RAY_ADDRESS"):  # else it would run on Ray
        monkeypatch.delenv(variable, raising=False)
    source = tmp_path / "bad.csv"
    _with_bad_rows(adult_small_csv["test"], source)
    runner = CliRunner()
    base = ["predict", tiny_model.ref, "--tracking-uri", tiny_model.tracking_uri]

    result = runner.invoke(app, [*base, "-i", str(source), "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 0, result.output
    assert "predicted 399 of 401 rows" in result.output
    assert "line 4: column 'age': 'abc' is not a number" in result.output
    assert "line 402: expected 15 fields, got 3" in result.output
    assert len(pd.read_csv(tmp_path / "out.csv")) == 399

    every_bad = tmp_path / "every_bad.csv"
    pd.read_csv(adult_small_csv["test"], nrows=3).assign(age="old").to_csv(every_bad,
                                                                           index=False)
    result = runner.invoke(app, [*base, "-i", str(every_bad), "-o", str(tmp_path / "x.pq")])
    assert result.exit_code == 1
    assert "no row could be predicted" in result.output

    no_age = tmp_path / "no_age.csv"
    pd.read_csv(adult_small_csv["test"], nrows=3).drop(columns="age").to_csv(no_age,
                                                                             index=False)
    result = runner.invoke(app, [*base, "-i", str(no_age), "-o", str(tmp_path / "y.pq")])
    assert result.exit_code == 1
    assert "DataError" in result.output and "['age']" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "y.pq").exists()


@pytest.mark.slow
def test_ray_data_path_predicts_like_the_local_path(
        tiny_model: Trained, adult_small_csv: dict[str, Path], tmp_path: Path) -> None:
    import ray

    source = tmp_path / "bad.csv"
    _with_bad_rows(adult_small_csv["test"], source)
    local = batch.predict_file(tiny_model.model, source, tmp_path / "local.parquet")
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        report = api.predict_batch(tiny_model.ref, input=source,
                                   output=tmp_path / "ray.parquet", engine="ray",
                                   batch_size=100, tracking_uri=tiny_model.tracking_uri)
    finally:
        ray.shutdown()
    assert report.engine == "ray"
    assert (report.rows_read, report.rows_predicted, report.bad_row_count) == (401, 399, 2)
    assert report.bad_rows == local.bad_rows  # lines found by the driver's check
    assert (tmp_path / "ray.parquet").is_dir()  # Ray Data writes part files
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "ray.parquet"),
                                  pd.read_parquet(tmp_path / "local.parquet"))
