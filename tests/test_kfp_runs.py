"""Cluster mode of the web page: a run posted to the page becomes a Kubeflow pipeline run
(``drip pipeline submit --json --tag ...``) on the in-process KFP API emulator, its upload
copied to a real S3 server (moto on 127.0.0.1); its status follows the emulator's state, its
results are read from MLflow by the ``dripml.ui_run`` tag; cancel terminates it; a restarted
UI follows it again; no upload URI is a clear refusal."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import kfp_emulator
from conftest import Trained, free_port
from dripml.errors import SettingsError
from dripml.orchestration.kfp_runs import KfpRuns
from dripml.orchestration.run_queue import RunQueue
from dripml.orchestration.run_store import SCHEMA_VERSION, RunStore, RunView
from dripml.recipes import shipped_recipes_dir
from dripml.ui import create_app
from dripml.ui import settings as ui_settings
from dripml.ui.security import CSRF_COOKIE
from dripml.ui.services import create_services
from kfp_emulator import FakeKfpApi

RECIPE = "tabular-classification"
BUCKET = "drip-uploads"
CSV = b"age,education,income\n39,Bachelors,<=50K\n50,Masters,>50K\n28,HS-grad,<=50K\n" * 4


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3-compatible server (moto) on 127.0.0.1 with one bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"
                       }.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def csrf(client: TestClient) -> dict[str, str]:
    if CSRF_COOKIE not in client.cookies:
        client.get("/healthz")
    return {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}


def cluster_page(root: Path, host: str) -> TestClient:
    """The page in cluster mode; its queue's worker started, KFP polled every 0.1 s."""
    settings = ui_settings.UiSettings(
        data_dir=root / "ui", recipe_dirs=[shipped_recipes_dir()],
        tracking_uri=f"sqlite:///{root}/mlflow.db", kfp_host=host,
        upload_uri=f"s3://{BUCKET}/ui/uploads")
    app = create_app(settings)
    services = create_services(settings)
    assert isinstance(services.queue.submitter, KfpRuns)
    services.queue.submitter.poll_s = 0.1
    services.queue.poll_s = 0.1
    app.state.services = services
    services.queue.start()
    return TestClient(app)


def task_inputs(body: dict[str, Any], task: str) -> dict[str, Any]:
    """The constant inputs of pipeline task ``task`` in a created run's pipeline spec."""
    spec = body["pipeline_spec"]["pipeline_spec"]
    for component in spec["components"].values():
        found = component.get("dag", {}).get("tasks", {}).get(task)
        if found:
            return {name: value["runtimeValue"]["constant"]
                    for name, value in found["inputs"]["parameters"].items()
                    if "runtimeValue" in value}
    raise AssertionError(f"no task {task} in the pipeline")


def tag_search_run(uri: str, ui_run: str) -> str:
    """Tag the search run in store ``uri`` as the one the pipeline ran for UI run
    ``ui_run`` (what its search step does with the tags compiled in); return its id."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("tiny").experiment_id],
                                "tags.`dripml.kind` = 'search'")
    client.set_tag(run.info.run_id, "dripml.ui_run", ui_run)
    return run.info.run_id


def test_a_page_run_is_a_kfp_run_with_its_data_on_s3_followed_to_its_results(
        s3: str, tiny_model: Trained, tmp_path: Path) -> None:
    import boto3

    # What a pipeline run leaves in MLflow: a copy of the tiny model's store (a real search
    # run, its leaderboard, frontier and registered versions).
    store = Path(tiny_model.tracking_uri.removeprefix("sqlite:///"))
    shutil.copy(store, tmp_path / "mlflow.db")
    with kfp_emulator.kfp_api() as host:
        client = cluster_page(tmp_path, host)
        services = client.app.state.services  # type: ignore[attr-defined]
        try:
            created = client.post("/api/runs", headers=csrf(client), data={
                "recipe": RECIPE, "params": json.dumps({"label": "income"})},
                files={"file": ("train.csv", CSV, "text/csv")})
            assert created.status_code == 200, created.text
            run_id = created.json()["id"]
            view: RunView = wait_for(lambda: services.store.get(run_id).kfp_run_id and
                                     services.store.get(run_id), "the KFP run id")
            assert view.status == "running" and view.kfp_run_id in FakeKfpApi.runs

            # The spec the pipeline runs reads the upload from S3, where it was copied.
            body = FakeKfpApi.runs[view.kfp_run_id]["body"]
            spec = yaml.safe_load(task_inputs(body, "validate-spec")["spec_yaml"])
            key = f"ui/uploads/{view.upload_id}.csv"
            assert spec["data"]["train"] == f"s3://{BUCKET}/{key}"
            stored = boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()
            assert stored == CSV
            # The search run will carry the page's run id and the recipe's tags.
            tags = task_inputs(body, "run-search")["tags"]
            recipe_tags = json.loads((services.queue.run_dir(run_id) / "tags.json").read_text())
            assert tags == {"dripml.ui_run": run_id, **recipe_tags}
            assert recipe_tags["dripml.recipe"] == RECIPE

            # The status follows the KFP run: the running task is the step.
            FakeKfpApi.runs[view.kfp_run_id].update(
                state="RUNNING", tasks={"validate spec": "SUCCEEDED",
                                        "search (Ray job)": "RUNNING"})
            wait_for(lambda: services.store.get(run_id).step == "search (Ray job)", "the step")
            assert client.get(f"/api/runs/{run_id}").json()["status"] == "running"

            search_run = tag_search_run(f"sqlite:///{tmp_path}/mlflow.db", run_id)
            FakeKfpApi.runs[view.kfp_run_id]["state"] = "SUCCEEDED"
            done = wait_for(lambda: services.store.get(run_id).terminal and
                            services.store.get(run_id), "the finished run")
            assert done.status == "finished", done.error
            assert done.mlflow_run_id == search_run and done.model_name == "tiny"
            assert done.model_version in {p["version"] for p in done.frontier}
            assert done.leaderboard and isinstance(done.leaderboard[0]["params"], dict)
            assert any(k.startswith("test_") for k in done.test_metrics)
            answer = client.get(f"/api/runs/{run_id}").json()
            assert answer["status"] == "finished"
            assert answer["model"] == {"name": "tiny", "version": done.model_version}
        finally:
            services.stop()


def test_cancel_terminates_the_kfp_run(tmp_path: Path) -> None:
    with kfp_emulator.kfp_api() as host:
        client = cluster_page(tmp_path, host)
        services = client.app.state.services  # type: ignore[attr-defined]
        try:
            view = services.store.create(recipe=RECIPE, recipe_version="1", pipeline="p",
                                         knobs={}, upload_id="c" * 32)
            services.store.update(view.id, status="running", kfp_run_id="run-9")
            FakeKfpApi.runs["run-9"] = {"state": "RUNNING", "display_name": "x",
                                        "experiment_id": "e"}
            answer = client.post(f"/api/runs/{view.id}/cancel", headers=csrf(client))
            assert answer.status_code == 200, answer.text
            done = wait_for(lambda: services.store.get(view.id).terminal and
                            services.store.get(view.id), "the cancelled run")
            assert done.status == "cancelled"
            assert ("POST", "/apis/v2beta1/runs/run-9:terminate", {}) in FakeKfpApi.received
        finally:
            services.stop()


def test_a_restarted_page_follows_its_kfp_runs_and_reports_failures(tmp_path: Path) -> None:
    """Rows a previous UI left: one with a KFP run (followed; the run failed, the row says
    why), one whose submission it never finished (queued again)."""
    store = RunStore(f"sqlite:///{tmp_path}/ui.db")
    followed = store.create(recipe=RECIPE, recipe_version="1", pipeline="p", knobs={},
                            upload_id="a" * 32)
    store.update(followed.id, status="running", kfp_run_id="run-7")
    unsent = store.create(recipe=RECIPE, recipe_version="1", pipeline="p", knobs={},
                          upload_id="b" * 32)
    store.update(unsent.id, status="running")
    with kfp_emulator.kfp_api() as host:
        FakeKfpApi.runs["run-7"] = {"state": "FAILED", "display_name": "x",
                                    "experiment_id": "e", "error": "pod OOMKilled"}
        queue = RunQueue(store, tmp_path)
        queue.submitter = KfpRuns(store, queue.run_dir, host=host, upload_uri="s3://b/p")
        queue.submitter.recover()
        requeued = store.get(unsent.id)
        assert requeued.status == "queued" and requeued.attempts == 2
        store.update(unsent.id, status="cancelled")  # not to be submitted here
        queue.submitter.tick()
        failed = store.get(followed.id)
        assert failed.status == "failed" and "run-7" in (failed.error or "")
        assert "pod OOMKilled" in (failed.error or "")
    store.close()


def test_a_version_1_store_gains_the_kfp_run_id_column(tmp_path: Path) -> None:
    """``create_all`` adds tables, not columns: opening a store of schema version 1 (before
    cluster mode) adds ``kfp_run_id`` and keeps its runs."""
    import sqlite3

    path = tmp_path / "ui.db"
    old = RunStore(f"sqlite:///{path}")
    kept = old.create(recipe=RECIPE, recipe_version="1", pipeline="p", knobs={"a": 1},
                      upload_id="e" * 32)
    old.close()
    with sqlite3.connect(path) as db:  # the version 1 layout
        db.execute("alter table ui_runs drop column kfp_run_id")
        db.execute("update ui_schema set version = 1")
    store = RunStore(f"sqlite:///{path}")
    assert store.get(kept.id).knobs == {"a": 1} and store.get(kept.id).kfp_run_id is None
    assert store.update(kept.id, kfp_run_id="run-1").kfp_run_id == "run-1"
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("select version from ui_schema").fetchall() == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 2
    RunStore(f"sqlite:///{path}").close()  # opening it again changes nothing


def test_cluster_mode_without_an_upload_uri_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"--upload-uri s3://BUCKET/PREFIX"):
        ui_settings.load(kfp_host="http://kfp.example:80", data_dir=tmp_path, environ={})
    with pytest.raises(SettingsError, match="DRIPML_UI_UPLOAD_URI"):
        create_services(ui_settings.UiSettings(data_dir=tmp_path, kfp_host="http://kfp:80",
                                               upload_uri="/data/uploads"))
    from dripml.cli import app

    result = CliRunner().invoke(app, ["ui", "--kfp-host", "http://kfp.example:80",
                                      "--data-dir", str(tmp_path)],
                                env={"DRIPML_UI_UPLOAD_URI": ""})
    assert result.exit_code != 0
    assert "--upload-uri s3://BUCKET/PREFIX" in result.output
    assert "Traceback" not in result.output
