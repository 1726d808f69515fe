"""Compiled trees (dripml.algorithms.compiled, dripml.refine.compiled_candidates): LightGBM and
XGBoost models compiled to C predict what the boosters do, pickle with their library, load
and predict in a fresh process with no compiler, Treelite or boosting library, and Refine
adds a twin per boosted candidate, dropping one that differs."""

from __future__ import annotations

import dataclasses
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dripml.algorithms import compiled
from dripml.core.data import Dataset
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.progress import Reporter
from dripml.core.results import TrialResult
from dripml.core.spec import load_spec
from dripml.refine import candidates as selection
from dripml.refine import compiled_candidates

pytestmark = pytest.mark.skipif(compiled.unavailable() is not None,
                                reason=str(compiled.unavailable()))
CLASSES = {"binary": ("no", "yes"), "multiclass": ("a", "b", "c"), "regression": ()}


def frames(rows: int = 400, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Numbers with missing values and a categorical column; labels for each task."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "z": rng.normal(size=rows),
                          "c": rng.choice(["a", "b", "c", "d"], size=rows)})
    frame.loc[::13, "x"] = np.nan
    frame.loc[::29, "c"] = None
    score = frame["x"].fillna(0) + frame["z"] * (frame["c"] == "a") + rng.normal(size=rows) / 3
    return frame, score.to_numpy(), np.digitize(score, [-0.4, 0.4])


def dataset(task: str) -> Dataset:
    frame, value, bins = frames()
    y = value if task == "regression" else (bins if task == "multiclass" else bins // 2)
    encoder = TabularEncoder().fit(frame[:300], infer_kinds(frame[:300], {}))
    return Dataset(X_train=frame[:300], y_train=y[:300], X_test=frame[300:], y_test=y[300:],
                   classes=CLASSES[task], encoder=encoder, task=task, label="y")


def spec(task: str, algorithm: str, **refine: object):
    return load_spec({"name": "t", "task": task, "algorithms": [algorithm], "k_fold": 2,
                      "data": {"train": "unused.csv", "label": "y"}, "refine": refine})


def trial(algorithm: str) -> TrialResult:
    return TrialResult(number=0, algorithm=algorithm, algorithm_name=algorithm,
                       params={"n_estimators": 20}, state="COMPLETE", folds=(),
                       mean={}, std={}, objective=0.9, fit_time_s=0.1)


class Messages(Reporter):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


CASES = [("binary", "lightgbm"), ("regression", "lightgbm"), ("multiclass", "xgboost")]


@pytest.fixture(scope="module")
def refits() -> dict[tuple[str, str], tuple[Dataset, selection.Refit, list, dict]]:
    """Per case: 20-tree models refit in process and what Refine's compiling made of them
    (its trial records and the refits, the twin's under number 7)."""
    out = {}
    for task, algorithm in CASES:
        data = dataset(task)
        refit = selection.refit(data, spec(task, algorithm), trial(algorithm))
        kept = {0: refit}
        twins, cut = compiled_candidates.extend(data, spec(task, algorithm),
                                                [trial(algorithm)], kept, first_number=7)
        assert cut == []
        out[task, algorithm] = data, refit, twins, kept
    return out


@pytest.mark.parametrize(("task", "algorithm"), CASES)
def test_refine_adds_a_twin_that_predicts_the_same(
        refits: dict, task: str, algorithm: str) -> None:
    data, refit, twins, kept = refits[task, algorithm]
    assert [t.number for t in twins] == [7] and sorted(kept) == [0, 7]
    assert twins[0].algorithm == f"{algorithm}+tl2cgen" and twins[0].objective == 0.9
    twin = kept[7]
    assert isinstance(twin.model.fitted.recipe.estimator, compiled.CompiledTrees)
    assert twin.test_metrics == pytest.approx(refit.test_metrics, abs=1e-6)
    # The whole row path (JSON records -> encoder -> library) matches the booster's.
    head = data.X_test.head(40)
    records = head.astype(object).where(head.notna(), None).to_dict("records")
    ours, theirs = twin.model.predict_records(records), refit.model.predict_records(records)
    if task == "regression":
        np.testing.assert_allclose(ours.labels, theirs.labels, rtol=1e-6, atol=1e-6)
    else:
        assert ours.labels == theirs.labels and ours.classes == theirs.classes
        np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-6)
        assert twin.model.predict_proba(data.X_test).shape == (100, len(CLASSES[task]))


def test_a_twin_that_differs_is_dropped_with_a_message(refits: dict) -> None:
    data, refit, _, _ = refits["binary", "lightgbm"]
    shifted = dataclasses.replace(refit, test_proba=refit.test_proba * 0.999 + 0.0005)
    messages = Messages()
    kept = {0: shifted}
    twins, _ = compiled_candidates.extend(data, spec("binary", "lightgbm"),
                                          [trial("lightgbm")], kept, first_number=1,
                                          reporter=messages)
    assert twins == [] and list(kept) == [0]
    assert any("compiled twin dropped" in line and "> 1e-06" in line for line in messages.lines)
    # Turned off, nothing is compiled; a spec can say so.
    off = spec("binary", "lightgbm", compiled_trees=False)
    assert compiled_candidates.extend(data, off, [trial("lightgbm")], {0: refit},
                                      first_number=1) == ([], [])


def test_without_a_compiler_refine_says_why_in_one_line(
        refits: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    assert "no C compiler 'no-such-cc' on PATH" in str(compiled.unavailable())
    data, refit, _, _ = refits["binary", "lightgbm"]
    messages = Messages()
    assert compiled_candidates.extend(data, spec("binary", "lightgbm"), [trial("lightgbm")],
                                      {0: refit}, first_number=1,
                                      reporter=messages) == ([], [])
    assert len(messages.lines) == 1 and "compiled trees skipped" in messages.lines[0]


def test_pickled_twin_predicts_in_a_fresh_process_without_compiler_or_boosters(
        refits: dict, tmp_path: Path) -> None:
    data, refit, _, kept = refits["multiclass", "xgboost"]
    model = kept[7].model
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model))
    data.X_test.to_parquet(tmp_path / "rows.parquet")
    script = (
        "import pickle, sys, numpy as np, pandas as pd\n"
        f"model = pickle.loads(open({str(path)!r}, 'rb').read())\n"
        f"proba = model.predict_proba(pd.read_parquet({str(tmp_path / 'rows.parquet')!r}))\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, proba.to_numpy())\n"
        "print(sorted(m for m in ('lightgbm', 'xgboost', 'treelite', 'tl2cgen')"
        " if m in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env["PATH"] = str(tmp_path)  # no gcc
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"  # served by ctypes alone
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"),
                               refit.model.predict_proba(data.X_test).to_numpy(), atol=1e-6)


def test_difference_is_relative_beyond_one_and_inf_for_other_shapes() -> None:
    a = np.array([1000.0, 0.5])
    assert compiled_candidates.difference(a, a + [1e-4, 0], relative=True) == pytest.approx(1e-7)
    assert compiled_candidates.difference(a, a + [1e-4, 0], relative=False) == pytest.approx(1e-4)
    assert compiled_candidates.difference(a, a[:1], relative=False) == float("inf")
    assert compiled_candidates.difference(a, np.array([np.nan, 0.5]), relative=False) == float(
        "inf")
