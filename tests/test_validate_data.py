"""A validate that reads the data: headers and dtypes only, every problem at once, and
"did you mean" for algorithm, metric and column names (issue 14, item 6)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

import dripml
from dripml import api
from dripml.cli import app
from dripml.core import preview
from dripml.errors import SpecError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A 3,000-row train CSV and Parquet (binary label 'income'), a test CSV without 'city'."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.integers(18, 90, 3000),
                          "city": rng.choice(["lyon", "oslo", "rome"], 3000),
                          "income": rng.choice(["<=50K", ">50K"], 3000)})
    paths = {"train": tmp_path / "train.csv", "parquet": tmp_path / "train.parquet",
             "test": tmp_path / "test.csv"}
    frame.to_csv(paths["train"], index=False)
    frame.to_parquet(paths["parquet"], index=False)
    frame.drop(columns="city").head(100).to_csv(paths["test"], index=False)
    return paths


def spec(train: Path | str, **data: object) -> dict:
    return {"name": "v", "task": "binary", "algorithms": ["logistic_regression"],
            "data": {"train": str(train), "label": "income", **data}}


def problems_of(source: dict) -> list[str]:
    with pytest.raises(SpecError) as caught:
        api.validate(source)
    return [line.strip() for line in str(caught.value).splitlines()[1:]
            if line.startswith("  ")]


def test_wrong_label_names_data_label_and_close_columns(files: dict[str, Path]) -> None:
    [line] = problems_of(spec(files["train"], label="incme"))
    assert line.startswith("data.label: column 'incme' is not in train"), line
    assert "did you mean 'income'?" in line and "['age', 'city', 'income']" in line


def test_three_problems_in_one_error_with_did_you_mean(files: dict[str, Path]) -> None:
    bad = {**spec(files["train"], label="incme"),
           "algorithms": ["logistic_regression", "xgboostt"],
           "metrics": {"objective": "roc-auc"}}
    with pytest.raises(SpecError) as caught:
        api.validate(bad)
    message = str(caught.value)
    assert message.startswith("the spec has 3 problems:\n"), message
    algorithm, metric, label = problems_of(bad)
    assert algorithm.startswith("algorithms[1].name: unknown algorithm 'xgboostt'")
    assert "did you mean 'xgboost'?" in algorithm and "'lightgbm'" in algorithm  # the choices
    assert metric.startswith("metrics.objective: unknown metric 'roc-auc'")
    assert "did you mean 'roc_auc'?" in metric and "log_loss" in metric
    assert label.startswith("data.label:") and "did you mean 'income'?" in label


def test_field_errors_and_the_other_checks_in_one_error(files: dict[str, Path]) -> None:
    lines = problems_of({**spec(files["train"], label="incme"), "k_fold": 1,
                         "algorithms": ["xgboostt"]})
    assert [line.split(":")[0] for line in lines] == [
        "k_fold.n_splits", "algorithms[0].name", "data.label"], lines


def test_every_column_the_spec_names_is_checked(files: dict[str, Path]) -> None:
    lines = problems_of(spec(files["train"], test=str(files["test"]), features=["age", "cty"],
                             column_types={"ages": "numeric"}, text_columns=["notes"]))
    by_field = {line.split(": ", 1)[0]: line for line in lines}
    # test.csv lacks only 'city', which is no feature here: no data.test problem
    assert set(by_field) == {"data.features", "data.text_columns", "data.column_types.ages"
                             }, lines
    assert "'cty' (did you mean 'city'?)" in by_field["data.features"]
    assert "'ages' (did you mean 'age'?)" in by_field["data.column_types.ages"]
    [missing] = problems_of(spec(files["train"], test=str(files["train"].parent / "no.csv")))
    assert missing == f"data.test: data file {str(files['train'].parent / 'no.csv')!r} " \
                      "does not exist"
    [lacks] = problems_of(spec(files["train"], test=str(files["test"])))
    assert lacks.startswith(f"data.test: test {str(files['test'])!r} lacks feature column(s) "
                            "of train: 'city'"), lacks


def test_the_label_is_checked_on_the_head_only_where_certain(tmp_path: Path) -> None:
    head = ["a", "b"] * 500  # the first 1,000 rows show two classes
    late = pd.DataFrame({"x": range(1200), "income": head + ["c"] * 200})
    late.to_csv(tmp_path / "late.csv", index=False)
    seen: list[preview.DataSummary] = []
    api.validate(spec(tmp_path / "late.csv"), on_data=seen.append)  # a third class later
    assert seen[0].train.sampled == "first 1,000 rows sampled"
    assert seen[0].label_values == ("a", "b")
    three = late.assign(income=np.resize(["a", "b", "c"], 1200))
    three.to_csv(tmp_path / "three.csv", index=False)
    [line] = problems_of(spec(tmp_path / "three.csv"))
    assert "task binary needs exactly 2 classes" in line and "use task multiclass" in line
    one = late.assign(income="a")  # one class in the head: a hint, not an error
    one.to_csv(tmp_path / "one.csv", index=False)
    api.validate(spec(tmp_path / "one.csv"), on_data=seen.append)
    assert "one class of 'income'" in seen[-1].line()
    one.head(50).to_csv(tmp_path / "small.csv", index=False)  # the whole file: certain
    [line] = problems_of(spec(tmp_path / "small.csv"))
    assert line.startswith("data.label: task binary needs exactly 2 classes"), line
    [line] = problems_of({**spec(tmp_path / "late.csv"), "task": "regression",
                          "algorithms": ["ridge"]})
    assert "task regression needs a numeric label" in line and "'a'" in line


def test_parquet_header_is_read_without_its_rows(files: dict[str, Path]) -> None:
    path = files["parquet"]
    raw = bytearray(path.read_bytes())
    raw[4:len(raw) // 2] = b"\x00" * (len(raw) // 2 - 4)  # the rows' pages are garbage now
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error for a broken page
        pd.read_parquet(path)
    seen: list[preview.DataSummary] = []
    api.validate(spec(path), on_data=seen.append)
    summary = seen[0]
    assert summary.train.rows == 3000 and summary.train.head.empty
    assert json.loads(json.dumps(summary.as_dict()))["train"]["rows_read"] == 0
    assert summary.train.columns == ("age", "city", "income")
    assert summary.label_dtype in ("string", "large_string")
    assert summary.line().startswith(f"data: {str(path)!r} 3,000 rows (Parquet footer, none")
    [line] = problems_of(spec(path, label="Income"))
    assert "did you mean 'income'?" in line


def test_cli_validate_prints_the_data_summary(files: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: v\ntask: binary\ndata: {{train: {files['train']}, label: income}}\n"
                    "algorithms: [logistic_regression]\n")
    result = CliRunner().invoke(app, ["spec", "validate", str(path)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert ("3 columns; label 'income' (str, 2 value(s) in the rows read: <=50K, >50K); "
            "task binary") in result.output
    assert "first 1,000 rows sampled" in result.output


def test_train_with_a_wrong_label_fails_before_anything_starts(
        files: dict[str, Path], in_tmp_dir: Path) -> None:
    ray_imported = "ray" in sys.modules
    ray_running = ray_imported and sys.modules["ray"].is_initialized()
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    started = time.monotonic()
    with pytest.raises(SpecError, match=r"data\.label: column 'incme' is not in train"):
        dripml.train(spec(files["train"], label="incme"),
                     tracking_uri=f"sqlite:///{in_tmp_dir}/m.db")
    assert time.monotonic() - started < 5
    if ray_imported:
        assert sys.modules["ray"].is_initialized() == ray_running
    else:
        assert "ray" not in sys.modules  # not even imported
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children
    assert not (in_tmp_dir / "m.db").exists() and not (in_tmp_dir / ".dripml").exists()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An S3 client on moto's in-process server, on loopback; bucket 'drip'."""
    import boto3
    from moto.server import ThreadedMotoServer

    from conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="drip")
    yield client
    server.stop()


def test_s3_sources_are_read_by_ranges(s3: Any, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=60_000), "income": rng.choice(["a", "b"], 60_000)})
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    frame.to_csv(tmp_path / "d.csv", index=False)
    assert (tmp_path / "d.csv").stat().st_size > preview.HEAD_BYTES  # the CSV is cut
    s3.upload_file(str(tmp_path / "d.parquet"), "drip", "d.parquet")
    s3.upload_file(str(tmp_path / "d.csv"), "drip", "d.csv")
    import boto3

    ranges: list[str | None] = []  # what each GetObject asked for (botocore's own event)
    session = boto3.Session()
    session.events.register("provide-client-params.s3.GetObject",
                            lambda params, **_: ranges.append(params.get("Range")))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    parquet = preview.preview("s3://drip/d.parquet")
    assert (parquet.rows, parquet.columns) == (60_000, ("x", "income"))
    csv = preview.preview("s3://drip/d.csv")
    assert len(csv.head) == preview.HEAD_ROWS and not csv.complete
    assert csv.head.equals(frame.head(preview.HEAD_ROWS))
    assert ranges == ["bytes=-65536", f"bytes=0-{preview.HEAD_BYTES - 1}"]  # never whole
    [line] = problems_of(spec("s3://drip/nothing.csv"))
    assert line.startswith("data.train: could not read 's3://drip/nothing.csv' from S3")
