"""Several ``data.preprocess`` functions as a dimension of the search (issue 18, item 4):
the spec, one Dataset per choice, the ``preprocess`` trial parameter (sampled, and in a
grid), ensembles over one choice, a failing choice failing the run before any trial, and,
end to end, both choices tried and the registered model keeping its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest

from dripml import api
from dripml.core import data
from dripml.core.costs import json_records
from dripml.core.objective import resolve_objective
from dripml.core.results import TrialResult
from dripml.core.spec import load_spec
from dripml.discover import search, trials
from dripml.errors import DataError, SpecError
from dripml.refine import ensembles

FEATURES = "preprocess_components:adult_features"
CENTER = "preprocess_components:CenterHours"
BOTH = [FEATURES, CENTER]


def _spec(small_adult: dict, preprocess: Any, **top: Any) -> Any:
    return load_spec({"name": "pre-search", "task": "binary", "k_fold": 2,
                      "data": {**small_adult, "sample_rows": 300, "preprocess": preprocess},
                      "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 10}}],
                      **top})


# --------------------------------------------------------------------------- the spec


def test_several_functions_are_choices_and_one_is_not_a_dimension(small_adult: dict) -> None:
    several = _spec(small_adult, BOTH)
    assert several.data.preprocess_choices == BOTH
    assert search.preprocess_dimension(several) == BOTH
    for one in (FEATURES, [FEATURES]):
        spec = _spec(small_adult, one)
        assert spec.data.preprocess == FEATURES  # exactly as before: a plain reference
        assert search.preprocess_dimension(spec) == []
    assert search.preprocess_dimension(_spec(small_adult, None)) == []


@pytest.mark.parametrize(("preprocess", "expected"), [
    ([FEATURES, FEATURES], r"data\.preprocess: lists \['preprocess_components:adult_features'"
                           r"\] more than once"),
    ([], r"data\.preprocess: is an empty list"),
    ([FEATURES, "no_colon"], r"'no_colon' must be written as 'package\.module:name'"),
])
def test_bad_lists_are_refused_naming_the_field(small_adult: dict, preprocess: list[str],
                                                expected: str) -> None:
    with pytest.raises(SpecError, match=expected):
        _spec(small_adult, preprocess)


def test_validate_names_the_choice_that_does_not_import(small_adult: dict) -> None:
    with pytest.raises(SpecError, match=r"data\.preprocess\[1\]: module "
                                        r"'preprocess_components' has no 'nope'"):
        api.validate({"name": "x", "task": "binary", "k_fold": 2, "algorithms": ["lightgbm"],
                      "data": {**small_adult,
                               "preprocess": [FEATURES, "preprocess_components:nope"]}},
                     read_data=False)


# --------------------------------------------------------------------------- the search


def test_the_sampler_and_the_grid_try_each_choice(small_adult: dict) -> None:
    spec = _spec(small_adult, BOTH, search={"algorithm": "random", "seed": 0})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [search.suggest(study.ask(), spec) for _ in range(12)]
    assert {c.preprocess for c in configs} == set(BOTH)
    assert all(c.params == {"n_estimators": 10} for c in configs)  # not a hyperparameter
    assert search.grid(spec) == [{search.PREPROCESS: p} for p in BOTH]
    single = _spec(small_adult, FEATURES)
    assert search.suggest(study.ask(), single).preprocess is None
    assert search.grid(single) == [{}]


def test_the_cost_aware_planner_leaves_the_choice_to_the_sampler(small_adult: dict) -> None:
    spec = _spec(small_adult, BOTH, search={"cost_aware": True, "seed": 0})
    objective = resolve_objective(spec)
    planner = trials._planner(spec, objective, 150)
    assert planner is not None
    study, _ = search.create_study(spec, objective.direction)
    chosen = set()
    for _ in range(8):
        trials._enqueue_planned(study, spec, planner, 60.0)
        config = search.suggest(study.ask(), spec, lambda a: planner.space(a.key))
        chosen.add(config.preprocess)
    assert chosen == set(BOTH)


def _trial(number: int, preprocess: str | None) -> TrialResult:
    return TrialResult(number=number, algorithm="lightgbm", algorithm_name="lightgbm",
                       params={}, state="COMPLETE", folds=(), mean={}, std={}, objective=0.5,
                       fit_time_s=0.0, preprocess=preprocess)


def test_a_resumed_search_reads_each_trials_choice_back() -> None:
    from dripml.core import resume

    assert resume.from_record(resume.to_record(_trial(3, CENTER))).preprocess == CENTER
    assert resume.from_record(resume.to_record(_trial(3, None))).preprocess is None


def test_ensemble_members_share_the_best_members_choice() -> None:
    oof = np.zeros(3)
    members = [(_trial(4, CENTER), oof), (_trial(1, FEATURES), oof), (_trial(2, CENTER), oof)]
    kept, notes = ensembles._one_preprocess(members)
    assert [t.number for t, _ in kept] == [4, 2]
    assert notes == [f"left out of the ensembles: trial 1 ({FEATURES}); members share one "
                     f"data.preprocess ({CENTER})"]
    plain = [(_trial(0, None), oof), (_trial(1, None), oof)]
    assert ensembles._one_preprocess(plain) == (plain, [])


# --------------------------------------------------------------------------- loading


def test_load_fits_one_dataset_per_choice(small_adult: dict) -> None:
    dataset = data.load(_spec(small_adult, BOTH))
    assert list(dataset.choices) == BOTH
    features, center = dataset.choice(FEATURES), dataset.choice(CENTER)
    assert dataset.preprocessor is features.preprocessor  # the first choice's
    assert features.preprocessor is not None and features.preprocessor.path == FEATURES
    assert center.preprocessor is not None and center.preprocessor.path == CENTER
    assert "log_capital_gain" in features.encoder.names
    assert "hours_centered" in center.encoder.names
    assert "hours_centered" not in features.encoder.names
    # One split: same labels and raw test rows for every choice.
    np.testing.assert_array_equal(features.y_train, center.y_train)
    pd.testing.assert_frame_equal(features.test_input, center.test_input)
    assert dataset.choice(None) is dataset
    with pytest.raises(KeyError, match="is not one of the spec's data.preprocess choices"):
        dataset.choice("preprocess_components:other")


def test_a_failing_choice_fails_the_run_before_any_trial(
        small_adult: dict, in_tmp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri = f"sqlite:///{in_tmp_dir}/mlflow.db"
    monkeypatch.setattr(api, "DATA_HEAD_START_S", 60.0)  # the load ends first: no Ray start
    spec = _spec(small_adult, [FEATURES, "preprocess_components:drops_rows"])
    with pytest.raises(DataError, match=r"data\.preprocess 'preprocess_components:drops_rows'"
                                        r" returned \d+ rows"):
        api.train(spec, tracking_uri=uri)
    mlflow.set_tracking_uri(uri)
    assert mlflow.search_runs(search_all_experiments=True).empty  # no search run, no trial


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_both_choices_are_tried_and_the_model_keeps_its_own(small_adult: dict,
                                                            in_tmp_dir: Path) -> None:
    uri = f"sqlite:///{in_tmp_dir}/mlflow.db"
    spec = _spec(small_adult, BOTH, search={"algorithm": "grid"},  # each choice once
                 refine={"compiled_trees": False, "ensembles": []})
    result = api.train(spec, tracking_uri=uri)

    board = result.leaderboard
    assert len(board) == 2 and sorted(board["preprocess"]) == sorted(BOTH)
    assert (board["state"] == "COMPLETE").all()
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_ids=[result.experiment_id],
                              filter_string="tags.`dripml.kind` = 'trial'")
    assert sorted(runs["params.preprocess"]) == sorted(BOTH)
    frontier = result.frontier_table()
    assert frontier is not None and sorted(frontier["preprocess"]) == sorted(BOTH)

    chosen = result.chosen
    assert chosen.preprocess in BOTH
    model = api.load_model(result.model.alias_uri, tracking_uri=uri)
    assert model.preprocessor is not None and model.preprocessor.path == chosen.preprocess
    raw = pd.read_csv(small_adult["test"]).drop(columns=["income"]).head(20)
    expected = model.predict_frame(raw)
    got = model.predict_records(json_records(raw, 20))
    assert got.labels == expected.labels
    np.testing.assert_allclose(got.probabilities, expected.probabilities, atol=1e-9)
