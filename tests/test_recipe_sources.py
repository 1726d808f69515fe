"""A recipe's named data sets (``sources``): checked when the recipe loads, shown by name only,
run from the API, the form and ``drip recipe run/render --source`` (no training here)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dripml.cli import app
from dripml.core.datasets import ADULT_COLUMNS
from dripml.errors import KnobError, RecipeError, SpecError
from dripml.recipes import get_recipe, load_recipe, recipe_data, shipped_recipes_dir
from dripml.ui import create_app
from dripml.ui.services import create_services
from dripml.ui.settings import UiSettings
from test_ui_api import csrf, make_client

TABULAR = "tabular-classification"
SMALL: dict[str, Any] = {
    "name": "small", "version": "1", "title": "Small",
    "pipelines": {"only": {"title": "Only", "spec": {
        "task": "binary", "data": {"label": "label"}, "algorithms": ["lightgbm"]}}},
    "params": [{"key": "label", "label": "Label", "type": "column", "required": True,
                "paths": ["data.label"]}],
}


def client_on(root: Path, recipe_dirs: list[Path]) -> TestClient:
    """As test_ui_api's make_client (worker not started), with these recipe folders."""
    settings = UiSettings(data_dir=root / "ui", recipe_dirs=recipe_dirs)
    app_ = create_app(settings)
    app_.state.services = create_services(settings)
    return TestClient(app_)


def small_recipe(folder: Path, sources: dict[str, Any]) -> Path:
    path = folder / "small.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "sources": sources}, sort_keys=False))
    return path


@pytest.mark.parametrize(("source", "fragment"), [
    ({"title": "T", "train": "data/train.csv"},
     "sources.x.train (line 23): 'data/train.csv' is a relative path"),
    ({"title": "T", "train": "https://example.org/a.csv"}, "scheme 'https' is not read"),
    ({"title": "T", "train": "dataset://adlt/train"},
     "unknown data set 'adlt'; known: ['adult', 'diamonds'"),
    ({"title": "T", "train": "dataset://diamonds/train", "test": "dataset://diamonds/test"},
     "sources.x.test (line 24): 'dataset://diamonds/test': data set 'diamonds' has no split"),
    ({"title": "T", "train": "s3://bucket-only"}, "names no bucket and key"),
    ({"title": "T", "train": "/srv/data/rows.xlsx"}, "unknown format; use dataset://"),
    ({"train": "/srv/data/rows.csv"}, "sources.x.title (line 21): Field required"),
    ({"title": "T", "train": "/srv/a.csv", "path": "/etc"}, "sources.x.path"),
])
def test_a_bad_source_fails_the_recipe_load_naming_the_field(
        tmp_path: Path, source: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(small_recipe(tmp_path, {"x": source}))
    assert fragment in str(caught.value)


def test_good_sources_load_unread_and_public_shows_names_never_uris(tmp_path: Path) -> None:
    recipe = load_recipe(small_recipe(tmp_path, {  # nothing is read: these files do not exist
        "local": {"title": "Local", "description": "On the server.", "train": "/no/such.csv"},
        "bucket": {"title": "Bucket", "train": "s3://b/k/train.parquet",
                   "test": "s3://b/k/test.csv.gz"}}))
    assert list(recipe.sources) == ["local", "bucket"]
    public = recipe.public()
    assert public["sources"] == [
        {"name": "local", "title": "Local", "description": "On the server."},
        {"name": "bucket", "title": "Bucket", "description": ""}]
    text = json.dumps(public)
    assert "/no/such" not in text and "s3://" not in text
    with pytest.raises(RecipeError, match="source names are"):
        load_recipe(small_recipe(tmp_path, {"Bad Name": {"title": "T", "train": "/a.csv"}}))
    shipped = {name: get_recipe(name, [shipped_recipes_dir()]).public()["sources"]
               for name in (TABULAR, "text-classification")}
    assert shipped[TABULAR][0]["name"] == "adult"
    assert shipped[TABULAR][0]["title"] == "UCI Adult census (sample data)"
    assert shipped["text-classification"][0]["name"] == "healthtweets"
    assert "dataset://" not in json.dumps(shipped)


def test_recipe_data_takes_an_upload_or_a_source_never_both(tmp_path: Path) -> None:
    recipe = get_recipe(TABULAR, [shipped_recipes_dir()])
    assert recipe_data(recipe, source="adult") == ("dataset://adult/train",
                                                   "dataset://adult/test")
    assert recipe_data(recipe, data={"train": "a.csv"}) == (str(Path("a.csv").resolve()), None)
    with pytest.raises(SpecError, match="not both"):
        recipe_data(recipe, data={"train": "a.csv"}, source="adult")
    with pytest.raises(SpecError, match=r"or name a source \(--source\): one of \['adult'\]"):
        recipe_data(recipe)
    with pytest.raises(KnobError, match="no data set 'adlt'; its data sets are \\['adult'\\]"):
        recipe_data(recipe, source="adlt")


# -- the API and the page ---------------------------------------------------------------------


def post_source_run(client: TestClient, params: dict[str, Any], *,
                    files: dict[str, Any] | None = None, **form: str) -> Any:
    return client.post("/api/runs", headers=csrf(client), files=files,
                       data={"recipe": TABULAR, "params": json.dumps(params), **form})


def test_a_run_on_a_source_is_queued_with_its_uris_and_shows_the_source(
        tmp_path: Path, adult_files: dict[str, Path]) -> None:
    client = make_client(tmp_path)  # the queue's worker is not started: runs stay queued
    answer = post_source_run(client, {"label": "income"}, source="adult")
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["id"]
    run_dir = client.app.state.services.run_dir(run_id)  # type: ignore[attr-defined]
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    assert spec["data"]["train"] == "dataset://adult/train"
    assert spec["data"]["test"] == "dataset://adult/test"
    assert "test_fraction" not in spec["data"] and spec["data"]["label"] == "income"
    tags = json.loads((run_dir / "tags.json").read_text())
    assert tags["dripml.recipe_source"] == "adult" and tags["dripml.recipe"] == TABULAR
    run = client.get(f"/api/runs/{run_id}").json()
    assert (run["status"], run["source"], run["upload_id"]) == ("queued", "adult",
                                                                 "source:adult")
    assert not list((tmp_path / "ui" / "uploads").glob("*"))  # nothing was stored
    readme = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{run_id}/bundle").content)
                             ).read("README.md").decode()
    assert f"drip recipe run {TABULAR} --source adult" in readme
    page = client.get(f"/runs/{run_id}").text
    assert 'id="run-data"' in page and "UCI Adult census (sample data)" in page


def test_bad_source_requests_name_the_fields(tmp_path: Path,
                                             adult_files: dict[str, Path]) -> None:
    client = make_client(tmp_path)
    unknown = post_source_run(client, {"label": "income"}, source="adlt")
    assert unknown.status_code == 422 and "'adlt'" in unknown.json()["detail"]
    csv = {"file": ("t.csv", b"a,income\n1,x\n", "text/csv")}
    both = post_source_run(client, {"label": "income"}, files=csv, source="adult")
    assert both.status_code == 400
    assert both.json()["detail"].startswith("file, upload_id, source: give exactly one")
    assert "got file and source" in both.json()["detail"]
    with_id = post_source_run(client, {"label": "income"}, source="adult", upload_id="0" * 32)
    assert with_id.status_code == 400 and "upload_id and source" in with_id.json()["detail"]
    with_test = post_source_run(client, {"label": "income"}, source="adult",
                                test_upload_id="0" * 32)
    assert with_test.status_code == 400 and "test_upload_id" in with_test.json()["detail"]
    column = post_source_run(client, {"label": "incme"}, source="adult")
    assert column.status_code == 422 and "knob 'label'" in column.json()["detail"]
    assert "did you mean 'income'" in column.json()["detail"]
    nothing = post_source_run(client, {"label": "income"})
    assert nothing.status_code == 400 and "source" in nothing.json()["detail"]
    assert client.get("/api/runs").json() == []  # nothing was queued


def test_the_columns_route_reads_a_source_header(tmp_path: Path,
                                                 adult_files: dict[str, Path]) -> None:
    mine = tmp_path / "recipes"
    mine.mkdir()
    small_recipe(mine, {"gone": {"title": "Gone", "train": str(tmp_path / "gone.csv")}})
    client = client_on(tmp_path, [mine, shipped_recipes_dir()])
    answer = client.get(f"/api/recipes/{TABULAR}/sources/adult/columns")
    assert answer.status_code == 200
    assert answer.json() == {"source": "adult", "columns": ADULT_COLUMNS}
    recipe = client.get(f"/api/recipes/{TABULAR}").json()
    assert recipe["sources"][0]["name"] == "adult" and "dataset" not in json.dumps(recipe)
    unknown = client.get(f"/api/recipes/{TABULAR}/sources/adlt/columns")
    assert unknown.status_code == 404 and "no data set 'adlt'" in unknown.json()["detail"]
    assert client.get("/api/recipes/nope/sources/adult/columns").status_code == 404
    gone = client.get("/api/recipes/small/sources/gone/columns")
    assert gone.status_code == 502 and "gone.csv" in gone.json()["detail"]
    paths = client.get("/api/openapi.json").json()["paths"]
    assert "get" in paths["/api/recipes/{name}/sources/{source}/columns"]


def test_the_form_offers_the_recipe_data_sets_beside_the_upload(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    page = client.get(f"/recipes/{TABULAR}").text
    assert 'id="source-upload" name="data_source" value="" checked' in page
    assert 'id="source-adult" name="data_source" value="adult"' in page
    assert '<label class="inline" for="source-adult">' in page
    assert "UCI Adult census (sample data)" in page and 'id="upload-field"' in page
    assert "dataset://" not in page
    mine = tmp_path / "recipes"
    mine.mkdir()
    small_recipe(mine, {})
    bare = client_on(tmp_path / "bare", [mine]).get("/recipes/small").text
    assert 'id="file"' in bare and "data_source" not in bare


def test_drip_recipe_render_takes_a_source_exclusive_with_data(
        tmp_path: Path, adult_files: dict[str, Path]) -> None:
    runner = CliRunner()
    spec = tmp_path / "spec.yaml"
    done = runner.invoke(app, ["recipe", "render", TABULAR, "--source", "adult",
                               "--set", "label=income", "-o", str(spec)])
    assert done.exit_code == 0, done.output
    assert yaml.safe_load(spec.read_text())["data"]["train"] == "dataset://adult/train"
    both = runner.invoke(app, ["recipe", "run", TABULAR, "--source", "adult",
                               "--data", "train=x.csv", "--set", "label=income"])
    assert both.exit_code == 2 and "not both" in both.output
    unknown = runner.invoke(app, ["recipe", "run", TABULAR, "--source", "adlt"])
    assert unknown.exit_code == 2 and "no data set 'adlt'" in unknown.output
