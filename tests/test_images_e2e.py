"""`drip build` and `drip deploy --target local` for real: a small Adult model is trained and
registered, its serving image built with buildah on a debootstrap base, pushed to a registry
on 127.0.0.1, its digest checked with skopeo and recorded on the model version, the image run
with podman (read-only root, loopback only, UID 10001) and called: the same predictions as the
model in process. Then the same digest reaches the Kubernetes values. Tools: tests/imaging.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import free_port
from dripml import api
from dripml.cli import app
from dripml.productionize import deploy, images, serving
from imaging import ImageEnv, image_env, run  # noqa: F401  (image_env is a fixture)

pytestmark = pytest.mark.slow

SPEC = {
    "name": "adult", "task": "binary",
    "data": {"train": "dataset://adult/train", "test": "dataset://adult/test",
             "label": "income", "sample_rows": 3000},
    "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 60}}],
    "search": {"num_trials": 1}, "k_fold": 2,
}
IN_CLUSTER = "http://dripml-mlflow.dripml.svc.cluster.local:5000"
SECRET = "dripml-e2e-secret-value-3b9f"
MAX_CPU_IMAGE_MB = 700


def records(path: Path, model: object, n: int = 40) -> list[dict[str, object]]:
    frame = pd.read_parquet(path)[model.feature_names].sample(n, random_state=3)  # type: ignore
    return [{k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v)
             for k, v in row.items()} for row in frame.to_dict("records")]


def test_build_push_run_and_deploy(image_env: ImageEnv, adult_files: dict[str, Path],  # noqa: F811
                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    trained = api.train(SPEC, tracking_uri=uri)
    model = api.load_model("adult@champion", tracking_uri=uri)
    version = trained.model.version

    # drip build, as a user types it; the build folder is a temporary one, removed after.
    repository = f"{image_env.registry}/dripml/adult"
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # gettempdir() caches
    started = time.perf_counter()
    cli = CliRunner().invoke(app, [
        "build", "adult@champion", "--registry", repository, "--base-image",
        image_env.base_image, "--build-image", image_env.build_image, "--tracking-uri", uri])
    total_s = time.perf_counter() - started
    assert cli.exit_code == 0, cli.output
    printed = [line for line in cli.output.splitlines() if line.startswith(repository + "@")]
    assert len(printed) == 1, cli.output
    said = " ".join(cli.output.split())  # rich wraps its lines
    timing = re.search(r"\((\d+) MB, base \S+\) in (\d+) s, pushed in (\d+) s", said)
    assert timing, cli.output
    size_mb, build_s, push_s = (float(x) for x in timing.groups())
    image = deploy.parse_image(printed[0])
    assert SECRET not in cli.output
    assert not list((tmp_path / "tmp").glob("dripml-build-*")), "the build folder is left"

    # The registry serves the pushed manifest under that digest, by tag and by digest.
    for reference in (f"{repository}:adult-{version}", image.reference):
        inspected = json.loads(run(["skopeo", "inspect", "--tls-verify=false",
                                    f"docker://{reference}"]))
        assert inspected["Digest"] == image.digest, reference
    assert inspected["Labels"]["io.dripml.model-uri"] == f"models:/adult/{version}"
    assert inspected["Env"] and not any(SECRET in e for e in inspected["Env"])

    # Recorded on the model version: what `drip deploy` reads.
    tags = MlflowClient().get_model_version("adult", version).tags
    assert tags[images.IMAGE_TAG] == image.reference
    size_mb = float(tags[images.SIZE_TAG])
    assert tags[images.BASE_TAG] == image_env.base_image
    assert 100 < size_mb < MAX_CPU_IMAGE_MB, f"image is {size_mb:.0f} MB"

    # Kubernetes gets the same digest.
    values = deploy.plan("adult@champion", target="kubernetes", tracking_uri=uri,
                         cluster_tracking_uri=IN_CLUSTER).values
    assert values["image"] == {"repository": repository, "digest": image.digest}
    dry = CliRunner().invoke(app, ["deploy", "adult", "--target", "local", "--port", "3999",
                                   "--dry-run", "--tracking-uri", uri])
    assert dry.exit_code == 0 and dry.output.strip().endswith(image.reference), dry.output

    # --target local: podman pulls it by digest and serves on 127.0.0.1 only.
    local = deploy.plan_local("adult@champion", port=free_port(), tracking_uri=uri)
    assert local.image == image
    started = time.perf_counter()
    handle = deploy.run_local(local, tracking_uri=uri, log_path=tmp_path / "local.log")
    ready_s = time.perf_counter() - started
    try:
        rows = records(adult_files["test"], model)
        response = httpx.post(f"{handle.url}/predict", json={"records": rows}, timeout=30,
                              trust_env=False)
        assert response.status_code == 200, response.text
        body = response.json()
        expected = model.predict_records(rows)
        assert body["predictions"] == expected.labels
        assert body["model"] == f"adult/{version}"
        got = np.array([[p[c] for c in body["classes"]] for p in body["probabilities"]])
        np.testing.assert_allclose(got, expected.probabilities, atol=1e-6)
        bad = httpx.post(f"{handle.url}/predict", json={"records": [dict(rows[0], age="x")]},
                         timeout=30, trust_env=False)
        assert bad.status_code == 400 and "records.0.age" in bad.text

        listening = {c.laddr.ip for c in psutil.net_connections("tcp")
                     if c.status == "LISTEN" and c.laddr.port == local.port}
        assert listening == {"127.0.0.1"}
        check_hygiene(local.name, image_env)
        run_as_the_chart_does(image.reference)
    finally:
        handle.stop()
    names = run(["podman", "ps", "--all", "--format", "{{.Names}}"]).split()
    assert local.name not in names
    assert handle.process.poll() is not None

    print(f"\n[images] base image {image_env.timings['base_image_s']:.1f} s, build stage "
          f"image {image_env.timings['build_stage_image_s']:.1f} s; model image "
          f"{size_mb:.1f} MB: build {build_s:.0f} s (bundle, bento, wheel, image), push "
          f"{push_s:.0f} s, drip build total {total_s:.1f} s; container ready {ready_s:.1f} s; "
          f"{image.reference}")


def check_hygiene(container: str, env: ImageEnv) -> None:
    """Non-root, no compiler, no test certificate, no secret in the running image."""
    def sh(script: str) -> str:
        return run(["podman", "exec", container, "sh", "-c", script])

    assert sh("id -u; id -g").split() == ["10001", "10001"]
    assert sh("for c in gcc cc c++ g++ clang make ld; do command -v $c; done; true") == ""
    assert sh("ls /usr/local/share/ca-certificates 2>/dev/null; true").strip() == ""
    bundle = sh("cat /etc/ssl/certs/ca-certificates.crt 2>/dev/null; true")
    for path in env.ca_files:
        body = "".join(line for line in path.read_text().splitlines()
                       if line and not line.startswith("-----"))
        assert body[:200] not in bundle.replace("\n", ""), f"{path.name} is in the image"
    assert sh(f"grep -rl {SECRET} /opt/dripml /etc 2>/dev/null; true") == ""
    assert "SSL_CERT_FILE" not in sh("env") and "PIP_CERT" not in sh("env")
    assert sh("touch /opt/dripml/x 2>&1 || echo read-only").strip().endswith("read-only")


def run_as_the_chart_does(image: str) -> None:
    """charts/dripml-endpoint: UID 10001, read-only root, emptyDirs at /tmp and BENTOML_HOME,
    all capabilities dropped, no privilege escalation."""
    port = free_port()
    name = f"dripml-chart-{port}"
    argv = ["podman", "run", "--rm", "--detach", "--name", name, "--network", "host",
            "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/var/lib/bentoml",
            "--user", "10001:10001", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
            *[f"--ulimit={k}={v}:{v}" for k, v in deploy.container_ulimits().items()],
            "-e", "BENTOML_HOME=/var/lib/bentoml", "-e", "BENTOML_HOST=127.0.0.1",
            "-e", f"BENTOML_PORT={port}", "-e", "HOME=/tmp", "-e", "DRIPML_MODEL_URI=models:/x/1",
            "-e", "MLFLOW_TRACKING_URI=http://mlflow.invalid:5000", image]
    run(argv)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2,
                             trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, run(["podman", "logs", name])[-3000:]
            time.sleep(0.5)
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "5", name], capture_output=True,
                       check=False)


def test_bundle_round_trip(tmp_path: Path) -> None:
    """The exported bundle loads without MLflow and predicts like the model (no image)."""
    from test_images import tiny_model

    model = tiny_model()
    serving.write_bundle(model, tmp_path / "m", model_uri="models:/t/1", version_label="t/1")
    loaded, info = serving.read_bundle(tmp_path / "m")
    rows = [{"x": 0.3, "c": "b"}, {"x": None, "c": None}]
    assert loaded.predict_records(rows).labels == model.predict_records(rows).labels
    assert info.version_label == "t/1"
    probe = ("import os, sys; os.environ['DRIPML_MODEL_PATH'] = sys.argv[1]; "
             "import dripml.productionize.service as s; "
             "heavy = {'mlflow', 'ray', 'optuna', 'torch', 'kfp', 'transformers'} "
             "& {m.split('.')[0] for m in sys.modules}; "
             "print(s.VERSION_LABEL, sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "m")],
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["t/1", "[]"]
