"""The malformed-input corpus (issue 15, item 5): every bad spec and bad data file fails with
an error that names the field or the column, before anything is started.

``tests/corpus/specs/*.yaml`` are malformed specs, ``tests/corpus/data/*.yaml`` small specs
over the bad files in ``tests/corpus/data/files/``. The first line of each says what the
error must name::

    # expect: FIELD | TEXT | TEXT ...

FIELD is the spec path a problem line starts with (``search.num_trials``); ``<spec>`` is a
rule across sections, ``<file>`` an unreadable spec file (no problem lines then). Every TEXT
must be on that same line (the column, the file, the advice). Relative ``data.train`` and
``data.test`` paths are read from the spec's folder.

What only the full load shows (a problem past the rows the preview reads) is checked on
1,100-row files made here: :func:`dripml.validate` passes, :func:`dripml.core.data.load`
fails naming the column, and one :func:`dripml.train` shows it fails before the first trial
with no Ray process left (the load has a head start on Ray, so on an idle machine Ray does
not even start; on a busy one it starts and is stopped) and no MLflow run.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
import yaml

import dripml
from dripml.core import data, preview
from dripml.core.spec import load_spec
from dripml.errors import DataError, SpecError

CORPUS = Path(__file__).parent / "corpus"
SPECS = sorted((CORPUS / "specs").glob("*.yaml"))
DATA = sorted((CORPUS / "data").glob("*.yaml"))
RAY_PROCESSES = ("raylet", "gcs_server", "plasma_store")


def expectation(path: Path) -> tuple[str, list[str]]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name}: first line must be '# expect: ...'"
    field, *needles = [part.strip() for part in first.removeprefix("# expect: ").split("|")]
    return field, needles


def source_of(path: Path) -> dict[str, Any] | Path:
    """The spec as a mapping with its data paths made absolute (a file that is not a YAML
    mapping is passed as its path, for the loader to refuse)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return path
    if not isinstance(raw, dict):
        return path
    found = raw.get("data")
    if isinstance(found, dict):
        for key in ("train", "test"):
            value = found.get(key)
            if isinstance(value, str) and (path.parent / value).exists():
                found[key] = str((path.parent / value).resolve())
    return raw


def assert_names(path: Path, message: str) -> None:
    field, needles = expectation(path)
    lines = [line.strip() for line in message.splitlines()]
    if field == "<file>":
        assert all(n in message for n in needles), f"{path.name}: {needles} not in\n{message}"
        return
    matching = [line for line in lines if line.startswith(f"{field}:")]
    assert matching, f"{path.name}: no problem line starts with {field!r}:\n{message}"
    assert any(all(n in line for n in needles) for line in matching), (
        f"{path.name}: no {field!r} line holds all of {needles}:\n{message}")
    assert "Traceback" not in message


def ray_children() -> list[str]:
    names = []
    for child in psutil.Process().children(recursive=True):
        try:
            name = child.name()
        except psutil.Error:
            continue
        if any(ray_name in name for ray_name in RAY_PROCESSES):
            names.append(name)
    return names


def assert_nothing_started(folder: Path) -> None:
    import ray

    assert not ray.is_initialized()
    assert ray_children() == []
    assert list(folder.rglob("*.db")) == [], "an MLflow store was created"


def test_the_corpus_is_large_enough() -> None:
    assert len(SPECS) >= 60 and len(DATA) >= 25
    files = {p.name for p in (CORPUS / "data" / "files").iterdir()}
    used = {Path(str(v)).name for p in DATA
            for k, v in (yaml.safe_load(p.read_text())["data"]).items() if k in ("train", "test")}
    assert used - files == {"nope.csv"}, "a data case names a file that is not in files/"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_malformed_spec_names_its_field(path: Path, in_tmp_dir: Path) -> None:
    with pytest.raises(SpecError) as caught:
        dripml.validate(source_of(path))
    assert_names(path, str(caught.value))
    assert_nothing_started(in_tmp_dir)


@pytest.mark.parametrize("path", DATA, ids=[p.stem for p in DATA])
def test_bad_data_names_its_column_before_anything_starts(path: Path, in_tmp_dir: Path) -> None:
    with pytest.raises(SpecError) as caught:
        dripml.train(source_of(path))  # validates first: nothing may start
    assert_names(path, str(caught.value))
    assert_nothing_started(in_tmp_dir)


# ---------------------------------------------------------------------------------------
# Past the preview's head: the full load finds it, before the first trial
# ---------------------------------------------------------------------------------------

ROWS = preview.HEAD_ROWS + 100
LATE = preview.HEAD_ROWS + 50  # a row the preview does not read


def long_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"age": rng.integers(18, 80, ROWS),
                         "city": rng.choice(["lyon", "oslo", "rome"], ROWS),
                         "hours": rng.uniform(10, 60, ROWS).round(1),
                         "y": np.resize(["no", "yes"], ROWS)})


def late_problem(kind: str, folder: Path) -> tuple[dict[str, Any], list[str]]:
    """A spec over 1,100-row files whose one problem sits at row LATE, and what the error
    must say."""
    train, test = long_frame(), long_frame().head(ROWS)
    spec: dict[str, Any] = {"name": "late", "task": "binary",
                            "algorithms": ["logistic_regression"], "k_fold": 2,
                            "data": {"train": str(folder / "train.csv"), "label": "y"}}
    expect = {"inf": ["'hours'", "infinite", f"row {LATE + 1}"],
              "label_null": ["'y'", "empty in 1 of", f"row {LATE + 1}"],
              "all_null": ["'hours'", f"empty in all {ROWS:,} rows"],
              "drift": ["'age'", "'forty'", "test.csv", f"row {LATE + 1}"]}[kind]
    if kind == "inf":
        train.loc[LATE, "hours"] = np.inf
    elif kind == "label_null":
        train.loc[LATE, "y"] = None
    elif kind == "all_null":
        train["hours"] = np.nan
    else:
        test = test.astype({"age": object})
        test.loc[LATE, "age"] = "forty"
        test.to_csv(folder / "test.csv", index=False)
        spec["data"]["test"] = str(folder / "test.csv")
    train.to_csv(folder / "train.csv", index=False)
    return spec, expect


@pytest.mark.parametrize("kind", ["inf", "label_null", "all_null", "drift"])
def test_problem_past_the_head_is_found_by_the_full_load(kind: str, tmp_path: Path) -> None:
    spec, expect = late_problem(kind, tmp_path)
    dripml.validate(spec)  # the head (first 1,000 rows) shows nothing certain
    with pytest.raises(DataError) as caught:
        data.load(load_spec(spec))
    message = str(caught.value)
    assert all(text in message for text in expect), message


def test_duplicate_header_is_refused_by_the_full_load(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b,a,y\n1,2,3,no\n4,5,6,yes\n")
    with pytest.raises(DataError, match=r"column 'a' appears 2 times .*columns 1, 3"):
        data.read_table(str(tmp_path / "d.csv"))


@pytest.mark.slow
def test_full_load_error_stops_ray_before_any_trial(in_tmp_dir: Path) -> None:
    spec, expect = late_problem("inf", in_tmp_dir)
    # A file store: the check of the store before Ray starts (issue 15, item 4) takes ~1 s
    # on it, against ~10 s migrating a new SQLite store on a busy 2-core runner.
    uri = (in_tmp_dir / "mlruns").as_uri()
    with pytest.raises(DataError) as caught:
        dripml.train(spec, tracking_uri=uri)
    assert all(text in str(caught.value) for text in expect), str(caught.value)
    import ray

    assert not ray.is_initialized()
    deadline = time.monotonic() + 10
    while ray_children() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray_children() == []
    runs = [p for p in (in_tmp_dir / "mlruns").glob("*/*")  # EXPERIMENT/RUN_ID folders
            if p.is_dir() and re.fullmatch(r"[0-9a-f]{32}", p.name)]
    assert runs == [], "a run was started"
