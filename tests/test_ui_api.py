"""The web page's HTTP API (``dripml.ui``): every route, bad knobs, bad uploads, unknown
recipes and runs, authentication and CSRF, and one real run of the tabular recipe on an Adult
sample through ``POST /api/runs`` to a deployed endpoint."""

from __future__ import annotations

import io
import json
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from dripml.errors import SettingsError
from dripml.recipes import shipped_recipes_dir
from dripml.ui import create_app
from dripml.ui import settings as ui_settings
from dripml.ui.deployments import Deployments
from dripml.ui.frontier_plot import frontier_svg
from dripml.ui.security import CSRF_COOKIE
from dripml.ui.services import create_services

RECIPE = "tabular-classification"
ROUTES = {  # path -> methods: what the OpenAPI document must list
    "/api/recipes": {"get"}, "/api/recipes/{name}": {"get"}, "/api/uploads": {"post"},
    "/api/runs": {"get", "post"}, "/api/runs/{run_id}": {"get"},
    "/api/runs/{run_id}/cancel": {"post"}, "/api/runs/{run_id}/resume": {"post"},
    "/api/runs/{run_id}/deploy": {"post"}, "/api/runs/{run_id}/bundle": {"get"},
    "/api/runs/{run_id}/frontier.svg": {"get"}, "/api/runs/{run_id}/events": {"get"},
    "/healthz": {"get"}, "/login": {"get"},
}
CSV = b"age,education,income\n39,Bachelors,<=50K\n50,Masters,>50K\n28,HS-grad,<=50K\n"


def make_client(root: Path, **fields: Any) -> TestClient:
    """An app on ``root`` whose queue worker is not started (runs stay queued); the
    collaborators are the real ones."""
    settings = ui_settings.UiSettings(data_dir=root / "ui", recipe_dirs=[shipped_recipes_dir()],
                                      tracking_uri=f"sqlite:///{root}/mlflow.db", **fields)
    app = create_app(settings)
    app.state.services = create_services(settings)
    return TestClient(app)


def csrf(client: TestClient) -> dict[str, str]:
    if CSRF_COOKIE not in client.cookies:
        client.get("/healthz")
    return {"X-CSRF-Token": client.cookies[CSRF_COOKIE]}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return make_client(tmp_path)


def post_run(client: TestClient, params: dict[str, Any], *, content: bytes = CSV,
             filename: str = "train.csv", **form: str) -> Any:
    return client.post("/api/runs", headers=csrf(client),
                       data={"recipe": RECIPE, "params": json.dumps(params), **form},
                       files={"file": (filename, content, "text/csv")})


def test_health_docs_and_openapi_list_every_route(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    docs = client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    paths = client.get("/api/openapi.json").json()["paths"]
    for path, methods in ROUTES.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))


def test_recipes_are_listed_and_unknown_ones_are_404(client: TestClient) -> None:
    names = [r["name"] for r in client.get("/api/recipes").json()]
    assert {RECIPE, "regression", "text-classification"} <= set(names)
    recipe = client.get(f"/api/recipes/{RECIPE}").json()
    assert {p["key"] for p in recipe["params"]} >= {"label", "time_budget_s", "families"}
    assert recipe["pipelines"][0]["name"]
    missing = client.get("/api/recipes/nope")
    assert missing.status_code == 404 and "no recipe named 'nope'" in missing.json()["detail"]
    assert client.get("/api/recipes/..%2Fetc%2Fpasswd").status_code == 404  # a name, not a path
    assert post_run(client, {"label": "income"}, recipe="nope").status_code == 404


def test_upload_is_stored_by_id_and_checked(client: TestClient, tmp_path: Path) -> None:
    good = client.post("/api/uploads", headers=csrf(client),
                       files={"file": ("../../evil.csv", CSV, "text/csv")})
    assert good.status_code == 200, good.text
    body = good.json()
    assert body["columns"] == ["age", "education", "income"] and len(body["rows"]) == 3
    stored = list((tmp_path / "ui" / "uploads").glob("*.csv"))
    assert [p.name for p in stored] == [f"{body['id']}.csv"]
    parquet = io.BytesIO()
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}).to_parquet(parquet)
    cases = {  # filename, bytes -> status, words in the detail
        ("data.txt", CSV): (415, "not a CSV or Parquet"),
        ("empty.csv", b""): (400, "empty"),
        ("garbage.csv", bytes(range(256)) * 40): (400, "file:"),
        ("garbage.parquet", b"PAR1 not really parquet"): (400, "cannot be read"),
        ("noheader.csv", b"1,2,3\n4,5,6\n"): (400, "header"),
        ("onlyheader.csv", b"a,b,c\n"): (400, "no data rows"),
    }
    for (name, content), (status, words) in cases.items():
        answer = client.post("/api/uploads", headers=csrf(client),
                             files={"file": (name, content, "application/octet-stream")})
        assert answer.status_code == status, (name, answer.text)
        assert words in answer.json()["detail"], (name, answer.json())
    ok = client.post("/api/uploads", headers=csrf(client),
                     files={"file": ("t.parquet", parquet.getvalue(), "application/x-parquet")})
    assert ok.json()["columns"] == ["x", "y"]
    assert len(list((tmp_path / "ui" / "uploads").glob("*.*[!n]"))) == 2  # nothing bad kept


def test_upload_limit_is_413_without_buffering_past_it(tmp_path: Path) -> None:
    client = make_client(tmp_path, max_upload_mib=1)
    big = b"a,b\n" + b"1,2\n" * (300 * 1024)  # 1.2 MiB
    declared = client.post("/api/uploads", headers=csrf(client),
                           files={"file": ("big.csv", big, "text/csv")})
    assert declared.status_code == 413 and "1 MiB" in declared.json()["detail"]
    just_over = b"a,b\n" + b"1,2\n" * (262144 + 100)  # past 1 MiB, within the framing slack
    answer = client.post("/api/uploads", headers=csrf(client),
                         files={"file": ("over.csv", just_over, "text/csv")})
    assert answer.status_code == 413 and "upload limit" in answer.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b"--XX\r\nContent-Disposition: form-data; name=\"file\"; filename=\"s.csv\"\r\n\r\n"
        for _ in range(40):
            yield b"1,2\n" * 16384  # 64 KiB each, 2.5 MiB in all
    streamed = client.post("/api/uploads", content=chunks(), headers={
        **csrf(client), "Content-Type": "multipart/form-data; boundary=XX"})
    assert streamed.status_code == 413, streamed.text
    assert not list((tmp_path / "ui" / "uploads").glob("*.csv"))


@pytest.mark.parametrize(("params", "form", "knob", "words"), [
    ({"label": "income", "bogus": 1}, {}, "bogus", "no such knob"),
    ({"label": "income", "time_budget_s": "soon"}, {}, "time_budget_s", "number"),
    ({"label": "income", "time_budget_s": 5}, {}, "time_budget_s", "10"),
    ({"label": "income", "time_budget_s": 12}, {}, "time_budget_s", "grid"),
    ({"label": "income", "families": ["nope"]}, {}, "families", "nope"),
    ({"label": "salary"}, {}, "label", "salary"),
    ({}, {}, "label", "required"),
    ({"label": "income"}, {"pipeline": "nope"}, "pipeline", "nope"),
])
def test_bad_knobs_are_4xx_naming_the_knob(client: TestClient, params: dict[str, Any],
                                           form: dict[str, str], knob: str, words: str) -> None:
    answer = post_run(client, params, **form)
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert f"knob '{knob}'" in detail, detail
    assert words in detail, detail


def test_bad_requests_name_the_field(client: TestClient) -> None:
    bad_json = client.post("/api/runs", headers=csrf(client),
                           data={"recipe": RECIPE, "params": "{not json"},
                           files={"file": ("train.csv", CSV, "text/csv")})
    assert bad_json.status_code == 400 and "params" in bad_json.json()["detail"]
    no_file = client.post("/api/runs", headers=csrf(client),
                          data={"recipe": RECIPE, "params": '{"label": "income"}'})
    assert no_file.status_code == 400 and "file" in no_file.json()["detail"]
    for upload_id, status in (("../../etc/passwd", 400), ("0" * 32, 404)):
        answer = client.post("/api/runs", headers=csrf(client), data={
            "recipe": RECIPE, "params": '{"label": "income"}', "upload_id": upload_id})
        assert answer.status_code == status and "upload_id" in answer.json()["detail"]


def test_run_lifecycle_without_a_worker(client: TestClient) -> None:
    created = post_run(client, {"label": "income", "time_budget_s": 15})
    assert created.status_code == 200, created.text
    run_id = created.json()["id"]
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["status"] == "queued" and run["knobs"]["time_budget_s"] == 15
    assert run["progress"]["done"] == 0 and run["model"] is None
    assert [r["id"] for r in client.get("/api/runs").json()] == [run_id]
    early = client.post(f"/api/runs/{run_id}/deploy", headers=csrf(client), json={"version": 1})
    assert early.status_code == 409 and "finished" in early.json()["detail"]
    assert client.post(f"/api/runs/{run_id}/resume", headers=csrf(client)).status_code == 409
    cancelled = client.post(f"/api/runs/{run_id}/cancel", headers=csrf(client))
    assert cancelled.json()["status"] == "cancelled"
    again = client.post(f"/api/runs/{run_id}/cancel", headers=csrf(client))
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]
    events = client.get(f"/api/runs/{run_id}/events").text
    assert "event: progress" in events and "event: status" in events and "cancelled" in events
    bundle = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{run_id}/bundle").content))
    assert set(bundle.namelist()) >= {"spec.yaml", "knobs.json", "metrics.json",
                                      "leaderboard.csv", "frontier.csv", "README.md"}
    assert "label: income" in bundle.read("spec.yaml").decode()
    svg = client.get(f"/api/runs/{run_id}/frontier.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and "<svg" in svg.text
    resumed = client.post(f"/api/runs/{run_id}/resume", headers=csrf(client)).json()
    assert resumed["status"] == "queued" and resumed["attempts"] == 2
    for method, path in (("get", ""), ("post", "/cancel"), ("post", "/resume"),
                         ("get", "/bundle"), ("get", "/frontier.svg"), ("get", "/events")):
        answer = client.request(method, f"/api/runs/{'f' * 32}{path}", headers=csrf(client))
        assert answer.status_code == 404 and "no run" in answer.json()["detail"], path
    missing = client.post(f"/api/runs/{'f' * 32}/deploy", headers=csrf(client),
                          json={"version": 1})
    assert missing.status_code == 404


def test_csrf_is_required_on_posts(client: TestClient) -> None:
    client.get("/healthz")
    bare = client.post("/api/uploads", files={"file": ("t.csv", CSV, "text/csv")})
    assert bare.status_code == 403 and "X-CSRF-Token" in bare.json()["detail"]
    wrong = client.post("/api/uploads", headers={"X-CSRF-Token": "forged"},
                        files={"file": ("t.csv", CSV, "text/csv")})
    assert wrong.status_code == 403
    form = client.post("/api/runs", data={"recipe": "nope", "csrf_token":
                                          client.cookies[CSRF_COOKIE]})
    assert form.status_code == 404  # the form field passed the check; the recipe did not


def test_token_guards_everything_but_health(tmp_path: Path) -> None:
    client = make_client(tmp_path, token="s3cret-token")
    assert client.get("/healthz").status_code == 200
    denied = client.get("/api/recipes")
    assert denied.status_code == 401 and "DRIPML_UI_TOKEN" in denied.json()["detail"]
    assert client.get("/api/recipes", headers={"Authorization": "Bearer nope"}
                      ).status_code == 401
    bearer = {"Authorization": "Bearer s3cret-token"}
    assert client.get("/api/recipes", headers=bearer).status_code == 200
    # a bearer-authenticated API call is exempt from CSRF (a browser never sends that header)
    assert client.post("/api/uploads", headers=bearer,
                       files={"file": ("t.csv", CSV, "text/csv")}).status_code == 200
    assert client.get("/login?token=wrong", follow_redirects=False).status_code == 401
    login = client.get("/login?token=s3cret-token", follow_redirects=False)
    assert login.status_code == 303 and login.headers["location"] == "/"
    assert "s3cret-token" not in login.headers["set-cookie"]
    assert client.get("/api/recipes").status_code == 200  # the cookie now
    assert client.post("/api/uploads", files={"file": ("t.csv", CSV, "text/csv")}
                       ).status_code == 403  # a cookie session needs the CSRF token
    assert client.post("/api/uploads", headers=csrf(client),
                       files={"file": ("t.csv", CSV, "text/csv")}).status_code == 200


def test_trusted_user_header(tmp_path: Path) -> None:
    client = make_client(tmp_path, trusted_user_header="X-Forwarded-User")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"X-Forwarded-User": "ana"}).status_code == 200


def test_beyond_loopback_needs_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ui_settings.TOKEN_VARIABLE, raising=False)
    with pytest.raises(SettingsError, match="DRIPML_UI_TOKEN"):
        ui_settings.load(host="0.0.0.0")
    assert ui_settings.load(host="::1").host == "::1"
    assert ui_settings.load(host="10.1.2.3", trusted_user_header="X-Forwarded-User")
    monkeypatch.setenv(ui_settings.TOKEN_VARIABLE, "from-env")
    monkeypatch.setenv(ui_settings.DATABASE_VARIABLE, "postgresql+psycopg2://u:pw@db/ui")
    loaded = ui_settings.load(host="0.0.0.0")
    assert loaded.token_value == "from-env" and "pw" not in repr(loaded)
    assert loaded.resolved_store_url() == "postgresql+psycopg2://u:pw@db/ui"
    monkeypatch.delenv(ui_settings.TOKEN_VARIABLE)
    from dripml.cli import app

    result = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 1 and "DRIPML_UI_TOKEN" in result.output


def test_frontier_svg_links_each_version() -> None:
    points = [{"version": 1, "trial": 0, "algorithm": "lightgbm", "validation_roc_auc": 0.91,
               "latency_p99_ms": 1.5, "chosen": True},
              {"version": 2, "trial": 3, "algorithm": "logistic_regression",
               "validation_roc_auc": 0.88, "latency_p99_ms": 0.2, "chosen": False},
              {"version": None, "trial": 4, "algorithm": "xgboost",
               "validation_roc_auc": 0.9, "latency_p99_ms": 2.0, "chosen": False}]
    svg = frontier_svg(points, picked=2)
    assert 'data-version="1" href="?version=1"' in svg and 'href="?version=2"' in svg
    assert "?version=None" not in svg and 'target="_blank"' not in svg
    assert svg.count('data-version="2"') == 2  # the picked point is ringed, a link too


def test_kubernetes_deploy_is_planned_as_drip_deploy(tmp_path: Path) -> None:
    settings = ui_settings.UiSettings(data_dir=tmp_path, deploy_target="kubernetes",
                                      tracking_uri="http://mlflow.dripml.svc:5000",
                                      namespace="team-a")
    image = "registry.example.com/dripml/adult@sha256:" + "a" * 64
    plan = Deployments(settings).plan("adult", 3, image=image)
    assert "helm upgrade --install adult" in plan.script and "--namespace team-a" in plan.script
    assert plan.plan.values["model"]["uri"] == "models:/adult/3"
    assert plan.plan.values["image"]["digest"] == "sha256:" + "a" * 64


# ------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def finished_run(adult_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[tuple[TestClient, str, float]]:
    """The tabular recipe run to the end on 3,000 Adult rows through the API, with the
    queue's worker running (the module's one real run)."""
    root = tmp_path_factory.mktemp("ui_e2e")
    sample = pd.read_parquet(adult_files["train"]).sample(n=3000, random_state=1)
    data = root / "adult.csv"
    sample.to_csv(data, index=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("DRIPML_TRACKING_URI", raising=False)
        settings = ui_settings.UiSettings(data_dir=root / "ui",
                                          recipe_dirs=[shipped_recipes_dir()],
                                          tracking_uri=f"sqlite:///{root}/mlflow.db")
        with TestClient(create_app(settings)) as client:
            started = time.monotonic()
            created = client.post("/api/runs", headers=csrf(client), data={
                "recipe": RECIPE, "params": json.dumps({
                    "label": "income", "time_budget_s": 15,
                    "families": ["logistic_regression", "lightgbm"]})},
                files={"file": ("adult.csv", data.read_bytes(), "text/csv")})
            assert created.status_code == 200, created.text
            run_id = created.json()["id"]
            deadline = time.monotonic() + 240
            status = "queued"
            while time.monotonic() < deadline:
                status = client.get(f"/api/runs/{run_id}").json()["status"]
                if status in ("finished", "failed", "cancelled"):
                    break
                time.sleep(0.5)
            run = client.get(f"/api/runs/{run_id}").json()
            assert status == "finished", run.get("error")
            yield client, run_id, time.monotonic() - started
            store = client.app.state.services.store  # type: ignore[attr-defined]
        endpoint = store.get(run_id).endpoint_url
        if endpoint:  # the app's shutdown stopped the endpoint it deployed
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{endpoint}/readyz", timeout=5)


@pytest.mark.slow
def test_recipe_runs_to_a_deployed_endpoint(finished_run: tuple[TestClient, str, float]
                                            ) -> None:
    client, run_id, run_s = finished_run
    run = client.get(f"/api/runs/{run_id}").json()
    assert run["leaderboard"] and run["frontier"] and run["test_metrics"]
    assert run["model"]["name"] and run["model"]["version"] >= 1
    assert run["progress"]["done"] >= 1
    versions = [p["version"] for p in run["frontier"] if p.get("version")]
    svg = client.get(f"/api/runs/{run_id}/frontier.svg?version={versions[0]}").text
    assert f'href="?version={versions[0]}"' in svg
    bundle = zipfile.ZipFile(io.BytesIO(client.get(f"/api/runs/{run_id}/bundle").content))
    leaderboard = bundle.read("leaderboard.csv").decode()
    assert len(leaderboard.splitlines()) == len(run["leaderboard"]) + 1
    assert json.loads(bundle.read("metrics.json"))["test_metrics"] == run["test_metrics"]
    outside = client.post(f"/api/runs/{run_id}/deploy", headers=csrf(client),
                          json={"version": max(versions) + 100})
    assert outside.status_code == 400 and "frontier versions" in outside.json()["detail"]
    started = time.monotonic()
    deployed = client.post(f"/api/runs/{run_id}/deploy", headers=csrf(client),
                           json={"version": versions[0]})
    deploy_s = time.monotonic() - started
    assert deployed.status_code == 200, deployed.text
    url, curl = deployed.json()["url"], deployed.json()["curl"]
    assert url.startswith("http://127.0.0.1:") and f"curl -s -X POST {url}/predict" in curl
    payload = curl.split(" -d ", 1)[1].strip("'")
    assert "income" not in json.loads(payload)["records"][0]
    request = urllib.request.Request(f"{url}/predict", data=payload.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200 and json.loads(answer.read())
    assert client.get(f"/api/runs/{run_id}").json()["endpoint_url"] == url
    print(f"\nupload to finished run {run_s:.1f} s; deploy {deploy_s:.1f} s")
