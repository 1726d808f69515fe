"""The web pages as HTML (the real app in-process, its real SQLite run store): the recipes,
a recipe's form (one labelled, typed input per knob, help under each), a run in each state,
the runs list, and 404s. The browser drives them end to end in test_ui_browser.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from dripml.recipes import shipped_recipes_dir
from dripml.ui import create_app
from dripml.ui.settings import UiSettings

ALL_TYPES = {
    "name": "all-types", "version": "2.1", "title": "Every knob type",
    "description": "**Bold** <script>alert('x')</script> [bad](javascript:alert(1))",
    "contact": "mailto:scientist@example.org",
    "pipelines": {"only": {"title": "Only", "spec": {
        "task": "binary", "data": {"label": "label", "test_fraction": 0.2},
        "k_fold": 3, "algorithms": ["logistic_regression", "lightgbm"],
        "search": {"algorithm": "tpe", "num_trials": 10, "time_budget_s": 60, "seed": 0},
        "metrics": {"objective": "roc_auc"}}}},
    "params": [
        {"key": "label", "label": "Column to predict", "type": "column", "required": True,
         "help": "The answer column.", "paths": ["data.label"]},
        {"key": "trials", "label": "Trials", "type": "integer", "default": 10, "min": 2,
         "max": 50, "help": "How many.", "paths": ["search.num_trials"]},
        {"key": "minutes", "label": "Budget", "type": "duration", "unit": "min", "default": 1,
         "min": 0.5, "max": 10, "step": 0.5, "help": "Wall time.",
         "paths": ["search.time_budget_s"]},
        {"key": "latency", "label": "Max latency", "type": "latency", "unit": "ms",
         "min": 0.1, "help": "Optional.", "paths": ["constraints.max_latency_p99_ms"]},
        {"key": "metric", "label": "Metric", "type": "choice", "choices": ["roc_auc", "accuracy"],
         "default": "roc_auc", "help": "What to maximise.", "paths": ["metrics.objective"]},
        {"key": "families", "label": "Families", "type": "multichoice",
         "choices": ["logistic_regression", "lightgbm"], "default": ["lightgbm"],
         "help": "Which.", "paths": ["algorithms"]},
        {"key": "each", "label": "Every family on the frontier", "type": "boolean",
         "default": True, "help": "Refit each family's best.", "paths": ["refine.per_algorithm"]},
    ],
}


class Elements(HTMLParser):
    """Every element with an id (tag, attributes), the ``for`` of every label, and the
    options of each select."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, tuple[str, dict[str, str | None]]] = {}
        self.label_for: set[str] = set()
        self.options: dict[str, list[dict[str, str | None]]] = {}
        self._select: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.by_id[str(attributes["id"])] = (tag, attributes)
        if tag == "label" and attributes.get("for"):
            self.label_for.add(str(attributes["for"]))
        if tag == "select":
            self._select = attributes.get("id")
            self.options[str(self._select)] = []
        if tag == "option" and self._select:
            self.options[self._select].append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


def has(attributes: dict[str, str | None], expected: dict[str, str | None]) -> bool:
    """Whether ``attributes`` hold every item of ``expected`` (None: a bare attribute)."""
    return all(attributes.get(key, "<absent>") == value for key, value in expected.items())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "all-types.yaml").write_text(yaml.safe_dump(ALL_TYPES, sort_keys=False))
    settings = UiSettings(data_dir=tmp_path / "ui", recipe_dirs=[recipes, shipped_recipes_dir()])
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as test_client:
        yield test_client


def _store(client: TestClient) -> Any:
    return client.app.state.services.store  # type: ignore[attr-defined]


def test_recipes_page_lists_recipes_and_escapes_their_markdown(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    page = Elements(html)
    for name in ("all-types", "tabular-classification", "text-classification", "regression"):
        assert page.by_id[f"recipe-{name}"][1]["href"] == f"/recipes/{name}"
    assert "<strong>Bold</strong>" in html
    assert "&lt;script&gt;" in html and "<script>alert" not in html
    assert 'href="javascript:' not in html
    # the CSRF token the page embeds is the one in the cookie the response sets
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert meta and response.cookies.get("dripml_csrf") == meta.group(1)
    assert re.search(r'<nav aria-label="Main">.*Recipes.*Runs', html, re.S)


def test_recipe_form_has_a_labelled_typed_input_with_help_per_knob(client: TestClient) -> None:
    page = Elements(client.get("/recipes/all-types").text)
    assert page.by_id["run-form"][1]["data-recipe"] == "all-types"
    assert page.by_id["file"][1]["accept"] == ".csv,.parquet" and "file" in page.label_for
    label_tag, label = page.by_id["knob-label"]
    assert label_tag == "select" and "disabled" in label  # filled from the upload's header
    assert has(page.by_id["knob-trials"][1], {"type": "number", "min": "2", "max": "50",
                                                 "step": "1", "value": "10"})
    assert has(page.by_id["knob-minutes"][1], {"type": "number", "min": "0.5", "step": "0.5",
                                                  "value": "1"})
    assert "value" not in page.by_id["knob-latency"][1]  # optional: empty means no limit
    assert [o["value"] for o in page.options["knob-metric"]] == ["roc_auc", "accuracy"]
    assert page.by_id["knob-families"][0] == "fieldset"
    assert "checked" in page.by_id["knob-families-lightgbm"][1]
    assert "checked" not in page.by_id["knob-families-logistic_regression"][1]
    assert has(page.by_id["knob-each"][1], {"type": "checkbox", "checked": None})
    for key in ("label", "trials", "minutes", "latency", "metric", "each"):
        assert f"knob-{key}" in page.label_for, key
    for key in ("label", "trials", "minutes", "latency", "metric", "families", "each"):
        assert f"help-{key}" in page.by_id and f"error-{key}" in page.by_id, key
    assert "pipeline" not in page.by_id  # one pipeline: nothing to choose
    assert page.by_id["submit-run"][0] == "button"
    html = client.get("/recipes/all-types").text
    assert "(minutes)" in html and "(milliseconds)" in html  # units shown


def test_shipped_tabular_recipe_form_offers_its_two_pipelines(client: TestClient) -> None:
    page = Elements(client.get("/recipes/tabular-classification").text)
    assert [o["value"] for o in page.options["pipeline"]] == ["best", "cheapest"]
    assert page.by_id["knob-time_budget_s"][1]["value"] == "60"
    assert {"knob-label", "knob-max_latency_p99_ms", "knob-families"} <= set(page.by_id)


def test_unknown_recipe_and_run_are_404_pages_with_a_way_back(client: TestClient) -> None:
    for path, words in (("/recipes/nope", "There is no recipe named"),
                        ("/runs/0123456789abcdef0123456789abcdef", "There is no run")):
        response = client.get(path)
        assert response.status_code == 404 and words in response.text
        assert 'href="/runs"' in response.text and 'href="/"' in response.text


def _finished_run(client: TestClient) -> Any:
    store = _store(client)
    run = store.create(recipe="all-types", recipe_version="2.1", pipeline="only",
                       knobs={"label": "income"}, upload_id="f" * 32)
    board = [{"rank": i + 1, "trial": i, "algorithm": "lightgbm", "state": "COMPLETE",
              "roc_auc_mean": 0.9 - i / 100, "roc_auc_std": 0.01, "folds": 3,
              "fit_time_s": 1.5, "reason": "", "params": {"n_estimators": 10}}
             for i in range(12)]
    frontier = [{"rank": 1, "trial": 0, "algorithm": "lightgbm", "validation_roc_auc": 0.9,
                 "roc_auc": 0.89, "latency_p50_ms": 2.0, "latency_p99_ms": 4.0,
                 "chosen": True, "version": 1, "params": "{}"},
                {"rank": 2, "trial": 3, "algorithm": "logistic_regression",
                 "validation_roc_auc": 0.85, "roc_auc": 0.84, "latency_p50_ms": 0.5,
                 "latency_p99_ms": 1.0, "chosen": False, "version": 2, "params": "{}"}]
    return store.update(run.id, status="finished", step="register", done=12, total=12,
                        best_value=0.9, objective="roc_auc", leaderboard=board,
                        frontier=frontier, test_metrics={"roc_auc": 0.89, "accuracy": 0.85},
                        model_name="all-types", model_version=1)


def test_finished_run_page_shows_results_frontier_deploy_and_ask(client: TestClient) -> None:
    run = _finished_run(client)
    html = client.get(f"/runs/{run.id}").text
    page = Elements(html)
    assert "finished" in html and "run-status" in page.by_id
    assert html.count("<tr", html.index('id="leaderboard"'),
                      html.index("</table>", html.index('id="leaderboard"'))) == 11  # 10 + head
    assert "accuracy" in html and "0.89" in html
    svg = html[html.index('id="frontier"'):]
    assert "<svg" in svg and '"?version=2"' in svg and "<?xml" not in html
    assert has(page.options["deploy-version"][0], {"value": "1", "selected": None})  # chosen
    assert "deploy-button" in page.by_id and "hidden" in page.by_id["deployed"][1]
    assert page.by_id["bundle-link"][1]["href"] == f"/api/runs/{run.id}/bundle"
    assert page.by_id["contact-link"][1]["href"] == "mailto:scientist@example.org"
    assert f"cancel-{run.id}" not in page.by_id and f"resume-{run.id}" not in page.by_id

    picked = Elements(client.get(f"/runs/{run.id}?version=2").text)
    assert has(picked.options["deploy-version"][1], {"value": "2", "selected": None})
    html = client.get(f"/runs/{run.id}?version=2").text
    table = html[html.index('id="frontier-table"'):]
    assert table.count('class="picked"') == 1 and "logistic_regression" in table.split(
        'class="picked"')[1].split("</tr>")[0]


def test_running_and_failed_runs_offer_cancel_and_resume(client: TestClient) -> None:
    store = _store(client)
    running = store.create(recipe="all-types", recipe_version="2.1", pipeline="only",
                           knobs={}, upload_id="a" * 32)
    running = store.update(running.id, status="running", step="loaded data (/srv/x/u.csv)",
                           done=3, total=20,
                           best_value=0.871234, objective="roc_auc")
    failed = store.create(recipe="gone", recipe_version="1", pipeline="p", knobs={},
                          upload_id="b" * 32)
    failed = store.update(failed.id, status="failed", error="SpecError: <b>label</b> missing")

    html = client.get(f"/runs/{running.id}").text
    page = Elements(html)
    assert f"cancel-{running.id}" in page.by_id and "leaderboard" not in page.by_id
    assert has(page.by_id["progress-bar"][1], {"max": "20", "value": "3"})
    assert ">loaded data<" in html and "/srv/x" not in html and "0.8712" in html

    html = client.get(f"/runs/{failed.id}").text
    assert f'id="resume-{failed.id}"' in html
    assert "&lt;b&gt;label&lt;/b&gt; missing" in html  # the error tail, escaped
    assert 'id="bundle-link"' in html

    runs = Elements(client.get("/runs").text)
    assert {f"run-{running.id}", f"run-{failed.id}", f"cancel-{running.id}",
            f"resume-{failed.id}"} <= set(runs.by_id)


def test_while_trials_run_the_step_is_the_search(client: TestClient) -> None:
    """The queue's event tailing: after ``loaded data`` the ``search`` event makes the step
    the search, and the trial events keep it (the page no longer says "loaded data")."""
    from dripml.orchestration.run_queue import _Child

    services = client.app.state.services  # type: ignore[attr-defined]
    run = services.store.create(recipe="all-types", recipe_version="2.1", pipeline="only",
                                knobs={}, upload_id="d" * 32)
    services.store.update(run.id, status="running")
    events = [{"event": "step", "name": "loaded data (/srv/x/u.csv)", "state": "started"},
              {"event": "step", "name": "loaded data (/srv/x/u.csv)", "state": "finished"},
              {"event": "search", "total": 20}]
    trials = [{"event": "trial", "done": n, "total": 20, "trial": n - 1, "state": "COMPLETE",
               "algorithm": "lightgbm", "value": 0.8, "best_value": 0.8, "best_trial": 0,
               "objective": "validation_roc_auc"} for n in (1, 2, 3)]
    folder = services.queue.run_dir(run.id)
    folder.mkdir(parents=True)
    child = _Child(run.id, process=None)  # type: ignore[arg-type] # only the file is tailed
    with open(folder / "events.jsonl", "w") as out:
        for batch in (events, trials):  # two reads: the trials' lines come after the search's
            out.write("".join(json.dumps(e) + "\n" for e in batch))
            out.flush()
            services.queue._tail(child)
    view = services.store.get(run.id)
    assert (view.step, view.done, view.total) == ("search", 3, 20)
    html = client.get(f"/runs/{run.id}").text
    assert ">search<" in html and ">loaded data<" not in html


def test_a_malformed_recipe_file_is_a_page_naming_it_not_a_traceback(tmp_path: Path) -> None:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "broken.yaml").write_text("name: broken\nversion: 1\ntitle: [unclosed\n")
    settings = UiSettings(data_dir=tmp_path / "ui", recipe_dirs=[recipes])
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        for path in ("/", "/recipes/broken"):
            response = client.get(path)
            assert response.status_code == 500
            assert "broken.yaml" in response.text and "drip recipe validate" in response.text
            assert "Traceback" not in response.text
