"""Tests of dripml.productionize.serving: the request schema (fast) and a real `bentoml serve`
(slow)."""

from __future__ import annotations

import _thread
import asyncio
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import jsonschema
import numpy as np
import pandas as pd
import psutil
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from conftest import Trained, free_port
from dripml import api, cli
from dripml.core.features import Feature, TabularEncoder, join_issues, split_issues
from dripml.core.model import TrainedModel
from dripml.errors import ModelNotFoundError, ModelRefError
from dripml.productionize import fastpath, guard, serving, tracking

# --------------------------------------------------------------------------- request_model


@dataclass
class FakeModel:
    """Just what request_model reads from a TrainedModel: the features and an example."""

    features: tuple[Feature, ...]
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def encoder(self) -> SimpleNamespace:
        return SimpleNamespace(features=self.features)

    @property
    def input_features(self) -> tuple[Feature, ...]:  # no data.preprocess: the encoder's
        return self.features


FEATURES = (
    Feature("age", "numeric"),
    Feature("workclass", "categorical", ("Private", "Self-emp", "State-gov")),
    Feature("grade", "categorical", ("1", "2", "10")),
    Feature("note", "text"),
)
GOOD = {"age": 39, "workclass": "Private", "grade": "2", "note": "hello"}


@pytest.fixture(scope="module")
def record() -> type:
    return serving.request_model(FakeModel(FEATURES, example=GOOD))  # type: ignore[arg-type]


def _error(record: type, data: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        record.model_validate_json(json.dumps(data))
    return info.value.errors(include_url=False)


def test_good_record_validates(record: type) -> None:
    parsed = record.model_validate_json(json.dumps(GOOD)).model_dump(by_alias=True)
    assert parsed == {**GOOD, "age": 39.0}
    assert record.model_validate({**GOOD, "age": 39.5}).age == 39.5


def test_wrong_type_names_the_field(record: type) -> None:
    for bad in ("39", True, "NaN"):
        errors = _error(record, {**GOOD, "age": bad})
        assert [(e["loc"], e["msg"]) for e in errors] == [
            (("age",), "Input should be a valid number")]
    errors = _error(record, {**GOOD, "workclass": 3})
    assert errors[0]["loc"] == ("workclass",)
    assert errors[0]["msg"] == "Input should be a valid string"


def test_non_finite_numbers_rejected(record: type) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        record.model_validate_json(json.dumps(GOOD).replace("39", "Infinity"))


def test_unknown_field_rejected(record: type) -> None:
    errors = _error(record, {**GOOD, "colour": "red"})
    assert [(e["loc"], e["type"]) for e in errors] == [(("colour",), "extra_forbidden")]


def test_null_accepted_for_every_kind(record: type) -> None:
    parsed = record.model_validate_json(json.dumps(dict.fromkeys(GOOD)))
    assert parsed.model_dump(by_alias=True) == dict.fromkeys(GOOD)


def test_missing_key_rejected(record: type) -> None:
    errors = _error(record, {k: v for k, v in GOOD.items() if k != "note"})
    assert [(e["loc"], e["type"]) for e in errors] == [(("note",), "missing")]


def test_integer_categories_accept_json_integers(record: type) -> None:
    assert record.model_validate({**GOOD, "grade": 10}).grade == 10
    # Non-integer categories do not: an int there is a client mistake.
    assert _error(record, {**GOOD, "workclass": 1})[0]["loc"] == ("workclass",)


def test_schema_has_descriptions_and_example(record: type) -> None:
    schema = record.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["age", "workclass", "grade", "note"]
    assert schema["example"] == GOOD
    props = schema["properties"]
    assert props["age"]["description"].startswith("numeric")
    assert "'Private'" in props["workclass"]["description"]
    assert props["note"]["description"].startswith("text")


def test_awkward_feature_names_become_aliases() -> None:
    features = (Feature("my col", "numeric"), Feature("_id", "text"),
                Feature("model_type", "categorical", ("a",)), Feature("copy", "text"))
    record = serving.request_model(FakeModel(features))  # type: ignore[arg-type]
    data = {"my col": 1.5, "_id": "x", "model_type": "a", "copy": None}
    assert record.model_validate(data).model_dump(by_alias=True) == data
    with pytest.raises(ValidationError, match="my col"):
        record.model_validate({**data, "my col": "oops"})


FAST_VARIANTS = [  # (change to GOOD, whether the documented schema accepts the record)
    ({}, True), ({"age": 39.5}, True), ({"age": None}, True), ({"grade": 10}, True),
    ({"grade": None, "note": None, "workclass": None}, True), ({"workclass": "Unseen"}, True),
    ({"age": "39"}, False), ({"age": True}, False), ({"age": float("nan")}, False),
    ({"age": float("inf")}, False), ({"workclass": 3}, False), ({"grade": True}, False),
    ({"grade": 1.5}, False), ({"note": 5}, False), ({"note": ["a"]}, False),
    ({"colour": "red"}, False)]


def test_fast_path_accepts_only_what_the_schema_accepts(record: type) -> None:
    checker = fastpath.RecordChecker(FEATURES, integer_categories=frozenset({"grade"}),
                                     max_records=3)
    for change, valid in FAST_VARIANTS:
        raw = json.dumps({"records": [{**GOOD, **change}]})
        accepted = checker.records(json.loads(raw))
        assert (accepted is not None) == valid, change
        if valid:
            expected = record.model_validate_json(raw[len('{"records": ['):-2])
            assert accepted == [expected.model_dump(by_alias=True)], change
        else:
            with pytest.raises(ValidationError):
                record.model_validate_json(raw[len('{"records": ['):-2])
    missing = {k: v for k, v in GOOD.items() if k != "note"}
    for data in ({"records": [missing]}, {"records": []}, {"records": [GOOD] * 4},
                 {"records": [GOOD], "mode": "fast"}, {"rows": [GOOD]}, [GOOD],
                 {"records": GOOD}, {"records": ["x"]}, None):
        assert checker.records(json.loads(json.dumps(data))) is None, data


def test_fast_path_hands_what_it_declines_to_bentoml() -> None:
    checker = fastpath.RecordChecker(FEATURES, integer_categories=frozenset(), max_records=3)
    inner_got: list[bytes] = []

    async def inner(scope: dict, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message["body"], message.get("more_body", False)
        inner_got.append(body)
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"inner"})

    app = fastpath.PredictFastPath(inner, checker=checker,
                                   predict=lambda rows: {"n": len(rows), "age": rows[0]["age"]})

    def call(body: bytes, content_type: bytes = b"application/json",
             method: str = "POST") -> tuple[int, bytes]:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body[:5], "more_body": True},
                    {"type": "http.request", "body": body[5:], "more_body": False}]

        async def receive() -> dict:
            return messages.pop(0)

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "path": "/predict", "method": method,
                 "headers": [(b"content-type", content_type)]}
        asyncio.run(app(scope, receive, send))
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    good = json.dumps({"records": [{**GOOD, "age": 39}]}).encode()
    assert call(good) == (200, b'{"n":1,"age":39.0}') and not inner_got
    for body, content_type in ((b'{"records": [', b"application/json"),
                               (good.replace(b'"note"', b'"nope"'), b"application/json"),
                               (good, b"text/plain")):
        assert call(body, content_type) == (400, b"inner")
        assert inner_got.pop() == body  # the whole body, as it came


def test_readable_error_formats_bentoml_bodies() -> None:
    body = json.dumps({"error": "2 validation errors for PredictRequest", "detail": [
        {"type": "float_type", "loc": ["records", 2, "age"], "msg": "Input should be a valid "
         "number"},
        {"type": "json_invalid", "loc": [], "msg": "Invalid JSON"}]}).encode()
    out = serving.readable_error(400, body)
    assert out["error"] == ("invalid request: records.2.age: Input should be a valid number; "
                            "body: Invalid JSON")
    assert len(out["detail"]) == 2 and out["error_count"] == 2
    # BentoML's own 4xx exceptions come as a one-element list; every body gets one shape.
    assert serving.readable_error(415, b'[{"error": "no pickle"}]') == {
        "error": "no pickle", "error_count": 1,
        "detail": [{"loc": [], "msg": "no pickle", "type": "http_415"}]}
    assert serving.readable_error(404, b"Not Found")["detail"][0]["type"] == "http_404"
    for status, raw in ((400, body), (415, b'[{"error": "x"}]'), (404, b""), (400, b"[1, 2]")):
        guard.ClientError.model_validate(serving.readable_error(status, raw))
    done = guard.client_error("too big", kind="body_too_large")
    assert serving.readable_error(413, json.dumps(done).encode()) == done  # kept as it is


@pytest.mark.parametrize(("host", "warned"), [
    ("127.0.0.1", False), ("localhost", False), ("::1", False), ("127.0.0.2", False),
    ("0.0.0.0", True), ("::", True), ("", True), ("10.1.2.3", True), ("my-host", True)])
def test_binding_beyond_loopback_is_warned(host: str, warned: bool) -> None:
    open_line = guard.exposure_warning(host, 3000, token_required=False)
    assert (open_line is not None) == warned
    if warned:
        assert open_line is not None and "anyone who can reach it can call the model" in open_line
        assert "no token is required" in open_line and "DRIPML_SERVE_TOKEN" in open_line
        shown = host if host not in ("", "0.0.0.0", "::") else ""
        assert f"{shown}:3000" in open_line or "every interface" in open_line
        closed = guard.exposure_warning(host, 3000, token_required=True)
        assert closed is not None and "holds the token" in closed
        assert "no token" not in closed


def test_local_model_needs_the_flag(tiny_model: Trained, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "bundle"
    serving.write_bundle(tiny_model.model, folder, model_uri="models:/tiny/1",
                         version_label="tiny/1")
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    for ref in (folder.as_uri(), str(folder), "./bundle"):
        with pytest.raises(ModelRefError, match=r"unpickles it.*--allow-local-model"):
            serving.serve(ref, port=free_port(), tracking_uri=tiny_model.tracking_uri)
        with pytest.raises(ModelRefError, match="allow_local=True"):
            api.load_model(ref)
    result = CliRunner().invoke(cli.app, ["serve", folder.as_uri()])
    assert result.exit_code != 0 and "--allow-local-model" in result.output
    assert "Traceback" not in result.output
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
    assert not (tmp_path / ".dripml").exists()  # nothing started, no store made
    loaded = api.load_model(str(folder), allow_local=True)
    assert loaded.predict_records([tiny_model.model.example]).labels == (
        tiny_model.model.predict_records([tiny_model.model.example]).labels)
    with pytest.raises(ModelNotFoundError, match="holds no model"):
        api.load_model(str(tmp_path), allow_local=True)


# --------------------------------------------------------------------------- process handling


def _fake_handle(tmp_path: Path, command: list[str]) -> serving.ServerHandle:
    process = subprocess.Popen(command, start_new_session=True)
    log = tmp_path / "server.log"
    log.write_text("line 1\nboom: the last line\n")
    return serving.ServerHandle(url="http://127.0.0.1:9", model_uri="models:/x/1",
                                version_label="x/1", log_path=log, process=process)


def test_wait_forever_reports_a_server_that_exits(tmp_path: Path) -> None:
    handle = _fake_handle(tmp_path, [sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(serving.ServeError, match=r"(?s)code 3.*boom: the last line"):
        serving.wait_forever(handle, poll_s=0.05)


def test_wait_forever_stops_the_server_on_ctrl_c(tmp_path: Path) -> None:
    handle = _fake_handle(tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"])
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        serving.wait_forever(handle, poll_s=0.05)
    finally:
        timer.cancel()
    assert handle.process.returncode == -15  # SIGTERM
    assert not handle.running()


def test_curl_example_is_shell_safe(tmp_path: Path) -> None:
    handle = _fake_handle(tmp_path, [sys.executable, "-c", "pass"])
    handle.example = {"name": "O'Brien", "x": 1.5, "y": None}
    line = handle.curl_example()
    handle.stop()
    assert line.startswith("curl -s -X POST http://127.0.0.1:9/predict -H "
                           "'Content-Type: application/json' -d ")
    quoted = line.rsplit(" -d ", 1)[1]
    echoed = subprocess.run(["sh", "-c", f"printf %s {quoted}"], capture_output=True,
                            text=True, check=True).stdout
    assert json.loads(echoed) == {"records": [handle.example]}


def test_absolute_tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert tracking.absolute_tracking_uri("sqlite:///a/b.db") == f"sqlite:///{tmp_path}/a/b.db"
    assert tracking.absolute_tracking_uri("sqlite:////abs.db") == "sqlite:////abs.db"
    assert tracking.absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert tracking.absolute_tracking_uri("mlruns") == str(tmp_path / "mlruns")


# --------------------------------------------------------------------------- real server

@pytest.fixture(scope="module")
def server(tiny_model: Trained) -> Iterator[serving.ServerHandle]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tiny_model.root)
        handle = serving.serve(tiny_model.ref, port=free_port(),
                               tracking_uri=tiny_model.tracking_uri)
    with handle:
        yield handle


def _adult_rows(path: Path, model: TrainedModel, n: int = 5) -> list[dict[str, Any]]:
    """``n`` real test rows as JSON records, the last one with a missing value."""
    frame = pd.read_parquet(path)[model.feature_names]
    rows = pd.concat([frame.dropna().head(n - 1), frame[frame.isna().any(axis=1)].head(1)])
    assert len(rows) == n
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in rows.to_dict("records")]


@pytest.mark.slow
def test_server_predicts_like_the_model_in_process(
        server: serving.ServerHandle, tiny_model: Trained, adult_files: dict[str, Path]) -> None:
    records = _adult_rows(adult_files["test"], tiny_model.model)
    assert any(v is None for v in records[-1].values())
    response = httpx.post(f"{server.url}/predict", json={"records": records}, timeout=30,
                          trust_env=False)
    assert response.status_code == 200, response.text
    body = response.json()
    expected = tiny_model.model.predict_records(records)
    assert body["predictions"] == expected.labels
    assert body["classes"] == list(expected.classes) == ["<=50K", ">50K"]
    assert body["model"] == server.version_label == "tiny/1"
    got = np.array([[p[c] for c in body["classes"]] for p in body["probabilities"]])
    np.testing.assert_allclose(got, expected.probabilities, atol=1e-6)
    assert body["warnings"] == []  # known categories and a missing value are no issue


def _unseen_total(metrics: str, feature: str) -> float | None:
    """The value of ``dripml_unseen_categories_total{feature=...}`` in a /metrics page."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if (sample.name == "dripml_unseen_categories_total"
                    and sample.labels.get("feature") == feature):
                return sample.value
    return None


@pytest.mark.slow
def test_unseen_category_is_a_warning_and_a_metric(
        server: serving.ServerHandle, tiny_model: Trained) -> None:
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        before = client.get("/metrics").text
        assert _unseen_total(before, "race") == 0  # every categorical feature is listed
        records = [server.example, {**server.example, "workclass": "Space-agency"}]
        response = client.post("/predict", json={"records": records})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["warnings"] == ["workclass: 1 unseen category ('Space-agency') read as "
                                    "missing"]
        # Read as missing: the prediction is the model's for a null workclass.
        missing = {**server.example, "workclass": None}
        expected = tiny_model.model.predict_records([server.example, missing])
        assert body["predictions"] == expected.labels
        after = client.get("/metrics").text
    assert _unseen_total(after, "workclass") == (_unseen_total(before, "workclass") or 0) + 1
    assert _unseen_total(after, "race") == 0


def test_encoder_reports_values_read_as_missing() -> None:
    frame = pd.DataFrame({"c": ["a", "b", "a", None], "n": [1.0, 2.0, 3.0, 4.0],
                          "d": ["2013-01-01", "2013-01-02", None, "2013-01-03"]})
    encoder = TabularEncoder().fit(frame, {"c": "categorical", "n": "numeric",
                                           "d": "datetime"})
    records = [{"c": "z", "n": 1.0, "d": "soon"}, {"c": None, "n": None, "d": None},
               {"c": "y", "n": 2.0, "d": "2013-01-01"}, {"c": "z", "n": 3.0, "d": "later"},
               {"c": "w", "n": 3.0, "d": "2013-01-01"}, {"c": "v", "n": 3.0, "d": None}]
    encoded = encoder.encode_records(records)
    assert [i.message() for i in encoded.issues] == [
        "c: 5 unseen categories ('z', 'y', 'w', 1 more) read as missing",
        "d: 2 unreadable dates ('soon', 'later') read as missing"]
    assert encoded.issues[0].rows == (0, 2, 3, 4, 5)
    from_frame = encoder.encode(pd.DataFrame(records))
    assert from_frame.issues == encoded.issues
    np.testing.assert_array_equal(from_frame.matrix, encoded.matrix)
    assert encoder.encode_records(records[1:2]).issues == ()
    # Batching splits a call's issues per record and joins a request's records back.
    per_record = split_issues(encoded.issues, len(records))
    assert per_record[1] == () and len(per_record[0]) == 2
    assert join_issues(per_record, [1] * len(records)) == encoded.issues


@pytest.mark.slow
def test_server_probes_and_docs(server: serving.ServerHandle) -> None:
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
        for probe in ("/healthz", "/livez", "/readyz"):
            assert client.get(probe).status_code == 200, probe
        spec = client.get("/docs.json")
        assert spec.status_code == 200
        spec_json = spec.json()
        assert "/predict" in spec_json["paths"]
        assert spec_json["components"]["schemas"]["Record"]["example"] == server.example
        info = spec_json["info"]
        assert info["title"] == "tiny v1" and info["version"] == "1"
        # the champion is LightGBM or its compiled twin, whichever measured faster
        assert re.search(r"lightgbm(\+tl2cgen)? \(binary\)", info["description"])
        assert "Test metrics: accuracy 0." in info["description"]  # the version's, from MLflow
        assert "warnings" in spec_json["components"]["schemas"]["PredictResponse"]["properties"]
        docs = client.get("/docs", follow_redirects=True)
        assert docs.status_code == 200 and "<html" in docs.text.lower()
        assert client.get("/metrics").status_code == 200


@pytest.mark.slow
def test_fast_path_answers_as_bentoml_route_does(
        server: serving.ServerHandle, tiny_model: Trained, adult_files: dict[str, Path]) -> None:
    records = _adult_rows(adult_files["test"], tiny_model.model)
    records[1] = {**records[1], "workclass": "Space-agency"}
    body = json.dumps({"records": records}).encode()
    with httpx.Client(base_url=server.url, timeout=30, trust_env=False) as client:
        fast = client.post("/predict", content=body,
                           headers={"Content-Type": "application/json"})
        # Another Content-Type takes BentoML's route, which reads JSON whatever it says.
        route = client.post("/predict", content=body, headers={"Content-Type": "text/plain"})
    assert fast.status_code == route.status_code == 200, (fast.text, route.text)
    assert fast.json() == route.json()
    assert fast.json()["warnings"] == route.json()["warnings"] != []
    assert fast.headers["content-type"] == route.headers["content-type"] == "application/json"
    assert "server" not in fast.headers  # BentoML's route names itself; the fast path does not
    assert route.headers["server"].startswith("BentoML")
    worker_maps = [Path(f"/proc/{pid}/maps").read_text() for pid in server.pids()[1:]]
    assert worker_maps and not any("_raylet" in m for m in worker_maps)  # no Ray in serving


@pytest.mark.slow
def test_curl_example_works(server: serving.ServerHandle, tiny_model: Trained) -> None:
    assert server.example == tiny_model.model.example
    result = subprocess.run(["sh", "-c", server.curl_example()], capture_output=True,
                            text=True, timeout=30, check=True)
    body = json.loads(result.stdout)
    assert body["predictions"] == tiny_model.model.predict_records([server.example]).labels


def test_batching_is_on_for_text_models_by_default(tiny_model: Trained) -> None:
    text = SimpleNamespace(algorithm="transformer")
    assert serving.batching_enabled(text) and serving.batching_enabled(text, "auto")
    assert not serving.batching_enabled(text, "off")
    assert not serving.batching_enabled(tiny_model.model)
    assert serving.batching_enabled(tiny_model.model, "on")
    with pytest.raises(serving.ServeError, match="batching must be auto, on or off"):
        serving.batching_enabled(tiny_model.model, "sometimes")


@pytest.mark.slow
def test_adaptive_batching_answers_each_request_with_its_own_records(
        tiny_model: Trained, adult_files: dict[str, Path]) -> None:
    rows = _adult_rows(adult_files["test"], tiny_model.model, n=5) * 30  # 150 records
    # Sizes around MAX_BATCH_SIZE: BentoML merges small requests and splits the big one.
    sizes = [1, 2, 3, 5, 1, 70, 4, 1, 63]
    starts = np.cumsum([0, *sizes[:-1]])
    # Unseen categories in the big request (across its split) and one small one.
    for row, value in ((starts[5] + 1, "Guild"), (starts[5] + 68, "Guild"), (starts[7], "Elf")):
        rows[row] = {**rows[row], "race": value}
    warned = {5: ["race: 2 unseen categories ('Guild') read as missing"],
              7: ["race: 1 unseen category ('Elf') read as missing"]}
    expected = tiny_model.model.predict_records(rows)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tiny_model.root)
        handle = serving.serve(tiny_model.ref, port=free_port(),
                               tracking_uri=tiny_model.tracking_uri, batching="on")
    with handle, httpx.Client(base_url=handle.url, timeout=60, trust_env=False) as client:
        def call(i: int) -> httpx.Response:
            return client.post("/predict", json={"records": rows[starts[i]:starts[i] + sizes[i]]})

        for _ in range(3):
            with ThreadPoolExecutor(max_workers=len(sizes)) as pool:
                responses = list(pool.map(call, range(len(sizes))))
            for i, (size, response) in enumerate(zip(sizes, responses, strict=True)):
                assert response.status_code == 200, response.text
                body = response.json()
                want = slice(starts[i], starts[i] + size)
                assert body["predictions"] == expected.labels[want]
                assert body["classes"] == ["<=50K", ">50K"] and body["model"] == "tiny/1"
                got = np.array([[p[c] for c in body["classes"]] for p in body["probabilities"]])
                np.testing.assert_allclose(got, expected.probabilities[want], atol=1e-6)
                assert body["warnings"] == warned.get(i, []), i
        bad = client.post("/predict", json={"records": [{**rows[0], "age": "old"}]})
        assert bad.status_code == 400 and "records.0.age" in bad.json()["error"]
        schemas = client.get("/docs.json").json()["components"]["schemas"]
        assert "predictions" in schemas["PredictResponse"]["properties"]
        metrics = client.get("/metrics").text
        assert "adaptive_batch_size_count" in metrics  # BentoML's dispatcher ran the calls


BAD_REQUESTS = [
    # (name, body builder, expected fragment of "error")
    ("string in a numeric field", lambda ex: {"records": [ex, ex, {**ex, "age": "old"}]},
     "records.2.age: Input should be a valid number"),
    ("unknown field", lambda ex: {"records": [{**ex, "colour": "red"}]},
     "records.0.colour: Extra inputs are not permitted"),
    ("missing field", lambda ex: {"records": [{k: v for k, v in ex.items() if k != "sex"}]},
     "records.0.sex: Field required"),
    ("empty list", lambda ex: {"records": []}, "records: List should have at least 1 item"),
    ("too many records", lambda ex: {"records": [ex] * (serving.MAX_RECORDS + 1)},
     "records: List should have at most 10000 items"),
    ("records not a list", lambda ex: {"records": ex}, "records: Input should be a valid array"),
    ("no records key", lambda ex: {"rows": [ex]}, "records: Field required"),
    ("unknown top-level key", lambda ex: {"records": [ex], "mode": "fast"},
     "mode: Extra inputs are not permitted"),
    ("malformed JSON", lambda ex: b'{"records": [', "body: Invalid JSON"),
    ("body not an object", lambda ex: [ex], "body: Input should be an object"),
    ("empty body", lambda ex: b"", "records: Field required"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "build", "fragment"), BAD_REQUESTS,
                         ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_are_4xx_naming_the_problem(
        server: serving.ServerHandle, name: str, build: Any, fragment: str) -> None:
    payload = build(server.example)
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    response = httpx.post(f"{server.url}/predict", content=content, timeout=30, trust_env=False,
                          headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
    assert fragment in response.json()["error"], response.text


@pytest.mark.slow
@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "text/plain",
    "application/vnd.bentoml+pickle"])
def test_other_content_types_never_500(server: serving.ServerHandle, content_type: str) -> None:
    # BentoML alone answers malformed multipart/form bodies with a 500.
    response = httpx.post(f"{server.url}/predict", content=b"not json", timeout=30, trust_env=False,
                          headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]


@pytest.mark.slow
def test_unknown_model_fails_fast_without_starting_anything(
        tiny_model: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    port = free_port()
    for ref in ("nope", "tiny@staging", "tiny/7"):
        with pytest.raises(ModelNotFoundError, match="registered models"):
            serving.serve(ref, port=port, tracking_uri=tiny_model.tracking_uri)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before
    assert not (tmp_path / ".dripml").exists()


@pytest.mark.slow
def test_port_in_use_is_a_serve_error(server: serving.ServerHandle, tiny_model: Trained) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(serving.ServeError, match="pick another port"):
        serving.serve(tiny_model.ref, port=port, tracking_uri=tiny_model.tracking_uri)


@pytest.mark.slow
def test_server_that_dies_reports_its_log(tiny_model: Trained,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_model.root)
    monkeypatch.setattr(serving, "SERVICE_NAME", "NoSuchService")
    with pytest.raises(serving.ServeError, match=r"(?s)exited with code.*NoSuchService"):
        serving.serve(tiny_model.ref, port=free_port(), tracking_uri=tiny_model.tracking_uri,
                      timeout_s=60)


@pytest.mark.slow
def test_stop_ends_every_server_process(tiny_model: Trained,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_model.root)
    model_uri = tracking.parse_model_ref(tiny_model.ref)
    with serving.serve(model_uri, port=free_port(), tracking_uri=tiny_model.tracking_uri,
                       workers=2) as handle:
        pids = handle.pids()
        assert len(pids) >= 3  # the server and two workers
        with httpx.Client(base_url=handle.url, timeout=10, trust_env=False) as client:
            assert client.post("/predict", json={"records": [handle.example]}).status_code == 200
    assert handle.process.returncode is not None
    assert not [p for p in pids if psutil.pid_exists(p)
                and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


# --------------------------------------------------------------------------- endpoint limits

TOKEN = "test-token-not-a-secret"
SMALL_LIMIT_MIB = 0.05  # 52,428 bytes: about 200 Adult records


@pytest.fixture(scope="module")
def guarded(tiny_model: Trained, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[serving.ServerHandle]:
    """A server with a token and a small body limit, serving a local bundle (allowed)."""
    folder = tmp_path_factory.mktemp("guarded") / "bundle"
    serving.write_bundle(tiny_model.model, folder, model_uri="models:/tiny/1",
                         version_label="tiny/1")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tiny_model.root)
        handle = serving.serve(folder.as_uri(), port=free_port(), allow_local=True,
                               tracking_uri=tiny_model.tracking_uri, token=TOKEN,
                               max_body_mib=SMALL_LIMIT_MIB)
    with handle:
        yield handle


def _raw(url: str, request: bytes, timeout_s: float = 10.0) -> tuple[float, int, dict[str, Any]]:
    """Send ``request`` on a fresh socket and read until the server closes it (the guard's
    answers close the connection); (seconds to the answer, status, JSON body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    start = time.monotonic()
    data = b""
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            data += chunk
    elapsed = time.monotonic() - start
    head, _, body = data.partition(b"\r\n\r\n")
    return elapsed, int(head.split()[1]), json.loads(body)


def _head(length: int | None, token: str = TOKEN) -> bytes:
    size = (f"Content-Length: {length}" if length is not None
            else "Transfer-Encoding: chunked")
    return (f"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\n{size}\r\n\r\n").encode()


@pytest.mark.slow
def test_endpoint_limits(guarded: serving.ServerHandle) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    records = {"records": [guarded.example]}
    errors: dict[str, tuple[int, dict[str, Any]]] = {}
    with httpx.Client(base_url=guarded.url, timeout=10, trust_env=False) as client:
        # The token: required on /predict only, compared whole.
        for name, headers in (("no token", {}), ("wrong token", {"Authorization": "Bearer x"}),
                              ("other scheme", {"Authorization": f"Basic {TOKEN}"})):
            response = client.post("/predict", json=records, headers=headers)
            assert response.status_code == 401, (name, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
            assert TOKEN not in response.text
            errors[name] = (401, response.json())
        ok = client.post("/predict", json=records, headers=auth)
        assert ok.status_code == 200, ok.text
        assert ok.json()["model"] == "tiny/1"
        for route in ("/readyz", "/healthz", "/metrics", "/docs.json"):
            assert client.get(route).status_code == 200, route
        bad = client.post("/predict", json={"records": [{**guarded.example, "age": "x"}]},
                          headers=auth)
        assert bad.status_code == 400 and "records.0.age" in bad.json()["error"]
        errors["bad record"] = (400, bad.json())
        for name, content in (("bad JSON", b'{"records": [{"age": '), ("missing column", json.dumps(
                {"records": [{k: v for k, v in guarded.example.items() if k != "sex"}]}))):
            response = client.post("/predict", content=content, headers={
                **auth, "Content-Type": "application/json"})
            assert response.status_code == 400, (name, response.text)
            errors[name] = (400, response.json())
        assert "records.0.sex: Field required" in errors["missing column"][1]["error"]
        assert "body: Invalid JSON" in errors["bad JSON"][1]["error"]
        spec = client.get("/docs.json").json()
    assert guarded.token_required and "$DRIPML_SERVE_TOKEN" in guarded.curl_example()
    # Over the limit by Content-Length: a 413 before a byte of the body is sent.
    elapsed, status, body = _raw(guarded.url, _head(100 * 1024 * 1024))
    assert status == 413 and elapsed < 2, body
    assert "over the server's limit of 52428 bytes" in body["error"]
    errors["too large"] = (413, body)
    # Over the limit, chunked: a 413 as soon as the limit is passed.
    chunk = b"1000\r\n" + b" " * 4096 + b"\r\n"
    _, status, body = _raw(guarded.url, _head(None) + chunk * 20)
    assert status == 413 and body["detail"][0]["type"] == "body_too_large", body
    # Shorter than its Content-Length: a 400 within 2 s that says how much came, not a 504.
    elapsed, status, body = _raw(guarded.url, _head(1000) + b'{"records": ')
    assert status == 400 and elapsed < 2, (elapsed, body)
    assert "ended before Content-Length (12 of 1000 bytes" in body["error"]
    errors["truncated"] = (400, body)
    # The unauthenticated oversize body gets the 401 (the body is never read).
    _, status, _ = _raw(guarded.url, _head(100 * 1024 * 1024, token="nope"))
    assert status == 401
    # Every 4xx body matches what the OpenAPI document declares for /predict.
    responses = spec["paths"]["/predict"]["post"]["responses"]
    for name, (status, body) in errors.items():
        declared = responses[str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(body, {**declared, "components": spec["components"]})
        assert body["error_count"] >= 1 and body["detail"], name
    assert spec["paths"]["/predict"]["post"]["security"] == [{"bearer": []}]
    # The server is still up and serving.
    with httpx.Client(base_url=guarded.url, timeout=10, trust_env=False) as client:
        assert client.post("/predict", json=records, headers=auth).status_code == 200
    assert guarded.running()
