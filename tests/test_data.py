"""Data: sources, checks that name the column, splits, and the encoder's two paths."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from conftest import free_port
from dripml.core import data
from dripml.core.spec import load_spec
from dripml.errors import DataError


def spec_for(train: Path | str, task: str = "binary", **data_fields: object):
    return load_spec({"name": "t", "task": task, "algorithms": ["lightgbm"] if task != "x" else [],
                      "data": {"train": str(train), "label": "y", **data_fields}, "k_fold": 2})


@pytest.fixture
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 60
    return pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "city": rng.choice(["paris", "lyon", None], n),
        "income": rng.normal(50, 10, n).round(1),
        "y": rng.choice(["no", "yes"], n),
    })


def test_csv_and_parquet_load_the_same(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    a = data.load(spec_for(tmp_path / "d.csv"))
    b = data.load(spec_for(tmp_path / "d.parquet"))
    assert a.classes == b.classes == ("no", "yes")
    assert len(a.y_train) + len(a.y_test) == 60 and len(a.y_test) == 12  # test_fraction 0.2
    assert [f.kind for f in a.encoder.features] == ["numeric", "categorical", "numeric"]
    np.testing.assert_array_equal(a.y_train, b.y_train)


def test_missing_label_column_lists_columns(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.drop(columns="y").to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"label column 'y' is not in .*columns found: \['age'"):
        data.load(spec_for(tmp_path / "d.csv"))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="holds no rows"):
        data.load(spec_for(tmp_path / "empty.csv"))
    (tmp_path / "header.csv").write_text("age,y\n")
    with pytest.raises(DataError, match="holds no rows"):
        data.load(spec_for(tmp_path / "header.csv"))


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load(spec_for(tmp_path / "nope.csv"))
    (tmp_path / "d.xlsx").write_text("x")
    with pytest.raises(DataError, match="unknown format"):
        data.load(spec_for(tmp_path / "d.xlsx"))


def test_label_must_fit_the_task(tmp_path: Path, frame: pd.DataFrame) -> None:
    three = frame.assign(y=np.resize(["a", "b", "c"], len(frame)))
    three.to_csv(tmp_path / "three.csv", index=False)
    with pytest.raises(DataError, match="exactly 2 classes .* found 3.*use task multiclass"):
        data.load(spec_for(tmp_path / "three.csv"))
    frame.to_csv(tmp_path / "two.csv", index=False)
    with pytest.raises(DataError, match="at least 3 classes.*use task binary"):
        data.load(spec_for(tmp_path / "two.csv", task="multiclass"))
    with pytest.raises(DataError, match="numeric label.*holds 'no'|numeric label.*holds 'yes'"):
        data.load(spec_for(tmp_path / "two.csv", task="regression"))
    continuous = frame.assign(y=np.linspace(0, 1, len(frame)))
    continuous.to_csv(tmp_path / "cont.csv", index=False)
    with pytest.raises(DataError, match="looks continuous; use task regression"):
        data.load(spec_for(tmp_path / "cont.csv", task="multiclass"))


def test_bad_numeric_column_is_named(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"column 'city' is numeric but holds \d+ non-numeric"):
        data.load(spec_for(tmp_path / "d.csv", column_types={"city": "numeric"}))


def test_feature_named_in_spec_must_exist(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError, match=r"columns \['height'\] named in the spec"):
        data.load(spec_for(tmp_path / "d.csv", features=["age", "height"]))


def test_too_few_rows_per_class_for_folds(tmp_path: Path, frame: pd.DataFrame) -> None:
    rare = frame.assign(y=["yes"] + ["no"] * (len(frame) - 1))
    rare.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DataError):
        data.load(spec_for(tmp_path / "d.csv"))


def test_encoder_frame_and_records_agree(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_csv(tmp_path / "d.csv", index=False)
    dataset = data.load(spec_for(tmp_path / "d.csv"))
    X = dataset.X_test.copy()
    X.loc[X.index[0], "city"] = "marseille"  # unseen category -> missing
    records = X.astype(object).where(X.notna(), None).to_dict("records")
    from_frame = dataset.encoder.transform(X)
    np.testing.assert_array_equal(from_frame, dataset.encoder.transform_records(records))
    assert math.isnan(from_frame[0, 1])


def test_adult_dataset_is_real_and_cleaned(adult_files: dict[str, Path]) -> None:
    train = pd.read_parquet(adult_files["train"])
    test = pd.read_parquet(adult_files["test"])
    assert (len(train), len(test)) == (32561, 16281)
    assert set(train["income"]) == set(test["income"]) == {"<=50K", ">50K"}
    assert train["workclass"].isna().sum() > 0  # '?' read as missing


def test_dataset_uri_errors() -> None:
    with pytest.raises(DataError, match="unknown data set 'mnist'"):
        data.read_table("dataset://mnist/train")
    with pytest.raises(DataError, match="has no split 'validation'"):
        data.read_table("dataset://adult/validation")


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch):
    """A real S3-compatible server (moto) on 127.0.0.1, stopped by PID afterwards."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"
                       }.items():
        monkeypatch.setenv(key, value)
    yield url
    server.terminate()
    server.wait(timeout=10)


def test_s3_source(s3_server: str, frame: pd.DataFrame, tmp_path: Path) -> None:
    import boto3

    client = boto3.client("s3")
    client.create_bucket(Bucket="drip")
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    client.upload_file(str(tmp_path / "d.parquet"), "drip", "sets/d.parquet")
    dataset = data.load(spec_for("s3://drip/sets/d.parquet"))
    assert len(dataset.y_train) == 48
    with pytest.raises(DataError, match="could not read 's3://drip/missing.csv' from S3"):
        data.read_table("s3://drip/missing.csv")
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1")
