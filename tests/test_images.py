"""`drip build`'s decisions, without building: registry and digest parsing, the plan (base
image, Containerfile, pinned requirements, system packages), the builder commands, errors that
say what to do, and a build context that carries no credential. The real build, push and run
are in test_images_e2e.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.cli import app
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe, TrainedModel
from dripml.errors import DripmlError, ModelNotFoundError
from dripml.productionize import deploy, images

ROOT = Path(__file__).resolve().parents[1]
DIGEST = "sha256:" + "0123abcd" * 8
LOGGED = ["mlflow==3.17.2", "scikit-learn==1.9.1", "numpy==2.4.6", "pandas==3.1.1",
          "scipy==1.17.1", "cloudpickle==3.1.2", "threadpoolctl==3.8.0", "lightgbm==4.7.0"]


def plan(**overrides: Any) -> images.BuildPlan:
    arguments: dict[str, Any] = {"name": "adult", "version": "3",
                                 "registry": "127.0.0.1:5000/dripml/adult",
                                 "model_requirements": LOGGED, **overrides}
    return images.make_plan(**arguments)


# --------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "host", "repository"), [
    ("127.0.0.1:5000/dripml/adult", "127.0.0.1:5000", "dripml/adult"),
    ("registry.example.com/ml/adult-serving", "registry.example.com", "ml/adult-serving"),
    ("localhost/adult", "localhost", "adult"),
    ("ghcr.io/acme/models", "ghcr.io", "acme/models"),
])
def test_registry_strings(text: str, host: str, repository: str) -> None:
    registry = images.parse_registry(text)
    assert (registry.host, registry.repository, registry.name) == (host, repository, text)


@pytest.mark.parametrize(("text", "why"), [
    ("adult", "no repository"),
    ("dripml/adult", "not a registry host"),
    ("127.0.0.1:5000/dripml/adult:v1", "tag or digest"),
    (f"127.0.0.1:5000/adult@{DIGEST}", "tag or digest"),
    ("127.0.0.1:5000/Adult", "lowercase"),
    ("127.0.0.1:5000/", "no repository"),
])
def test_bad_registry_string_is_named(text: str, why: str) -> None:
    with pytest.raises(DripmlError, match=why) as caught:
        images.parse_registry(text)
    assert repr(text) in str(caught.value) and "HOST[:PORT]/REPO" in str(caught.value)


def test_loopback_registries_are_plain_http() -> None:
    assert images.parse_registry("127.0.0.1:5000/a").insecure
    assert images.parse_registry("localhost:5000/a").insecure
    assert not images.parse_registry("registry.example.com/a").insecure


@pytest.mark.parametrize("text", [
    f"{DIGEST}\n",                                                     # buildah --digestfile
    f"The push refers to repository [r/a]\nadult-3: digest: {DIGEST} size: 2417\n",  # docker
    f"Copying config {DIGEST}\nWriting manifest\n{DIGEST}",            # the same one twice
])
def test_digest_parsing(text: str) -> None:
    assert images.parse_digest(text) == DIGEST


@pytest.mark.parametrize(("text", "found"), [
    ("Writing manifest to image destination", "found no"),
    (f"{DIGEST} sha256:{'f' * 64}", "found 2 different"),
    ("sha256:abc", "found no"),
])
def test_digest_parsing_errors(text: str, found: str) -> None:
    with pytest.raises(DripmlError, match=found):
        images.parse_digest(text)


def test_image_tags() -> None:
    assert images.image_tag("adult", "3") == "adult-3"
    assert images.image_tag("adult", "3", gpu=True) == "adult-3-gpu"
    assert images.image_tag("Churn Model", "12") == "churn-model-12"
    assert len(images.image_tag("x" * 300, "1", gpu=True)) == 128


# --------------------------------------------------------------------------------- planning


def test_cpu_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.BASE_IMAGE_ENV, raising=False)
    built = plan()
    assert built.base_image == "python:3.11-slim" == built.build_image
    assert built.containerfile == ROOT / "containers" / "serving" / "Containerfile"
    assert built.reference == "127.0.0.1:5000/dripml/adult:adult-3"
    assert built.model_uri == "models:/adult/3" and built.version_label == "adult/3"
    assert built.system_packages == ("libgomp1",)
    assert built.build_args == {"BASE_IMAGE": "python:3.11-slim",
                                "BUILD_IMAGE": "python:3.11-slim",
                                "MODEL_URI": "models:/adult/3", "SYSTEM_PACKAGES": "libgomp1"}


def test_gpu_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.GPU_BASE_IMAGE_ENV, raising=False)
    built = plan(gpu=True)
    assert built.base_image == "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
    assert built.containerfile.name == "Containerfile.gpu" and built.containerfile.is_file()
    assert built.tag == "adult-3-gpu"


def test_base_image_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(images.BASE_IMAGE_ENV, "registry.example.com/base/python:3.11")
    monkeypatch.setenv(images.GPU_BASE_IMAGE_ENV, "registry.example.com/base/cuda:12")
    assert plan().base_image == "registry.example.com/base/python:3.11"
    assert plan(gpu=True).base_image == "registry.example.com/base/cuda:12"
    chosen = plan(base_image="mine:1", build_image="mine-build:1")
    assert (chosen.base_image, chosen.build_image) == ("mine:1", "mine-build:1")


def test_requirements_are_the_models_runtime_pinned() -> None:
    lines = plan().requirements
    names = {line.split("==")[0] for line in lines}
    assert all("==" in line for line in lines), lines
    for needed in ("lightgbm", "scikit-learn", "numpy", "pandas", "scipy", "cloudpickle",
                   "bentoml", "pydantic", "pyyaml", "uvicorn", "starlette"):
        assert needed in names, needed
    for heavy in ("mlflow", "mlflow-skinny", "ray", "kfp", "torch", "optuna", "transformers",
                  "kubernetes", "boto3", "pyarrow", "dripml", "matplotlib", "xgboost-cpu"):
        assert heavy not in names, heavy
    assert "lightgbm==4.7.0" in lines
    assert not any(line.startswith("--") for line in lines)


def test_a_torch_model_keeps_its_cpu_build_on_cpu_only() -> None:
    cpu = images.runtime_requirements(["torch==2.13.0"], serving=())
    gpu = images.runtime_requirements(["torch==2.13.0"], gpu=True, serving=())
    installed = next(line for line in cpu if line.startswith("torch=="))
    if installed.endswith("+cpu"):
        assert cpu[0] == f"--extra-index-url {images.PYTORCH_CPU_INDEX}"
    assert "torch==2.13.0" in gpu and not any(line.startswith("--") for line in gpu)


def test_unknown_requirements_keep_their_logged_line() -> None:
    lines = images.runtime_requirements(["not-a-real-package-xyz==1.0"], serving=())
    assert lines == ["not-a-real-package-xyz==1.0"]


def test_unknown_builder_lists_the_valid_ones() -> None:
    with pytest.raises(DripmlError, match=r"unknown builder 'kaniko'.*\['buildah', 'docker'\]"):
        plan(builder="kaniko")


def test_missing_builder_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DripmlError, match=r"buildah is not on PATH: install buildah .*apt-get "
                                          r"install buildah.*--builder docker"):
        images.builder_binary("buildah")
    with pytest.raises(DripmlError, match=r"docker is not on PATH: install Docker.*--builder "
                                          r"buildah"):
        images.builder_binary("docker")


def test_missing_containerfile_says_checkout(tmp_path: Path) -> None:
    with pytest.raises(DripmlError, match="source checkout"):
        plan(repo_root=tmp_path)


def test_builder_commands(tmp_path: Path) -> None:
    built = plan()
    assert images.build_command(built, tmp_path) == [
        "buildah", "bud", "--isolation", "chroot", "--layers",
        "--build-arg", "BASE_IMAGE=python:3.11-slim", "--build-arg",
        "BUILD_IMAGE=python:3.11-slim", "--build-arg", "MODEL_URI=models:/adult/3",
        "--build-arg", "SYSTEM_PACKAGES=libgomp1",
        "-f", str(tmp_path / "Containerfile"), "-t", "127.0.0.1:5000/dripml/adult:adult-3",
        str(tmp_path)]
    assert images.push_command(built, tmp_path / "digest") == [
        "buildah", "push", "--digestfile", str(tmp_path / "digest"), "--tls-verify=false",
        "127.0.0.1:5000/dripml/adult:adult-3", "docker://127.0.0.1:5000/dripml/adult:adult-3"]
    remote = plan(registry="registry.example.com/ml/adult", builder="docker")
    assert images.build_command(remote, tmp_path)[:4] == ["docker", "build", "--network",
                                                          "host"]
    assert images.push_command(remote, tmp_path / "d") == [
        "docker", "push", "registry.example.com/ml/adult:adult-3"]


@pytest.mark.parametrize("name", ["Containerfile", "Containerfile.gpu"])
def test_serving_containerfiles_keep_the_image_contract(name: str) -> None:
    text = (ROOT / "containers" / "serving" / name).read_text()
    assert f"USER {images.IMAGE_USER}" in text and "--uid 10001 --gid 10001" in text
    assert f"DRIPML_MODEL_PATH={images.MODEL_PATH_IN_IMAGE}" in text
    assert f"EXPOSE {images.SERVING_PORT}" in text and "BENTOML_HOST=127.0.0.1" in text
    assert "HOME=/tmp" in text and "BENTOML_HOME=/tmp/bentoml" in text
    for argument in ("BASE_IMAGE", "BUILD_IMAGE", "MODEL_URI", "SYSTEM_PACKAGES"):
        assert f"ARG {argument}" in text, argument
    final = text.rsplit("FROM ${BASE_IMAGE}", 1)[1]
    assert "requirements.txt" not in final.replace("/opt/dripml/requirements.txt", "")
    assert "COPY --from=build /opt/dripml" in final and "/build/wheels" not in final


# --------------------------------------------------------------------------------- front doors


def test_cli_bad_registry_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["build", "adult", "--registry", "dripml/adult"])
    assert result.exit_code == 1
    assert "invalid registry 'dripml/adult'" in result.output
    assert "Traceback" not in result.output


def test_unknown_model_is_model_not_found(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(ModelNotFoundError, match="nosuch.*registered models"):
        images.plan_build("nosuch@champion", registry="127.0.0.1:5000/x", tracking_uri=uri)


def test_local_deploy_plan(tmp_path: Path) -> None:
    local = deploy.plan_local("adult@champion", image=f"127.0.0.1:5000/dripml/adult@{DIGEST}",
                              port=3123)
    command = local.command
    assert command[:3] == ("podman", "run", "--rm") and command[-1] == local.image.reference
    assert ("--network", "host") == command[5:7] and "--read-only" in command
    assert "BENTOML_HOST=127.0.0.1" in command and "BENTOML_PORT=3123" in command
    assert "--tls-verify=false" in command and local.name == "dripml-adult-3123"
    remote = deploy.plan_local("adult/3", image=f"registry.example.com/a@{DIGEST}",
                               runtime="docker")
    assert remote.command[0] == "docker" and "--tls-verify=false" not in remote.command
    with pytest.raises(DripmlError, match=r"unknown container runtime 'lxc'"):
        deploy.plan_local("adult", image=f"r.example.com/a@{DIGEST}", runtime="lxc")
    with pytest.raises(DripmlError, match="by digest"):
        deploy.plan_local("adult", image="r.example.com/a:latest")


# --------------------------------------------------------------------------------- context


def tiny_model() -> TrainedModel:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "c": rng.choice(["a", "b"], size=200)})
    y = ((frame["x"] + (frame["c"] == "a")) > 0.5).to_numpy(dtype=np.int64)
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    recipe = algorithms.build("lightgbm", BuildContext(task="binary", layout=encoder.layout),
                              {"n_estimators": 5, "num_leaves": 4})
    fitted = FittedRecipe(recipe, "binary", 2).fit(encoder.transform(frame), y)
    return TrainedModel(encoder=encoder, fitted=fitted, task="binary", classes=("no", "yes"),
                        label="y", algorithm="lightgbm", example={"x": 0.5, "c": "a"})


SECRETS = {"AWS_SECRET_ACCESS_KEY": "dripml-test-aws-secret-7f3a",
           "MLFLOW_TRACKING_PASSWORD": "dripml-test-mlflow-password-91c2",
           "MLFLOW_TRACKING_TOKEN": "dripml-test-token-5d0e"}


def test_context_has_bento_wheel_requirements_and_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://user:dripml-test-url-password@mlflow.x")
    built = plan()
    context = images.prepare_context(built, tiny_model(), tmp_path / "work")
    assert (context / "Containerfile").read_text() == built.containerfile.read_text()
    assert (context / "requirements.txt").read_text().splitlines() == list(built.requirements)
    wheels = list((context / "wheels").glob("dripml-*-py3-none-any.whl"))
    assert len(wheels) == 1
    assert (context / "bento" / "bento.yaml").is_file()
    bundle = context / "bento" / "src" / "model"
    assert sorted(p.name for p in bundle.iterdir()) == ["dripml-model.json", "model.pkl"]
    bento_yaml = (context / "bento" / "bento.yaml").read_text()
    assert "service: dripml.productionize.service:DripmlService" in bento_yaml
    from dripml.productionize import serving

    model, info = serving.read_bundle(bundle)
    assert info.version_label == "adult/3" and info.model_uri == "models:/adult/3"
    assert model.predict_records([{"x": 1.0, "c": "a"}]).labels in (["no"], ["yes"])

    needles = [v.encode() for v in SECRETS.values()] + [b"dripml-test-url-password"]
    for path in (tmp_path / "work").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), f"a secret reached {path}"
    import zipfile

    with zipfile.ZipFile(wheels[0]) as wheel:
        for name in wheel.namelist():
            assert not any(n in wheel.read(name) for n in needles), name
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRETS["AWS_SECRET_ACCESS_KEY"]


def test_bundle_errors(tmp_path: Path) -> None:
    from dripml.productionize import serving

    with pytest.raises(DripmlError, match="not a dripml model bundle"):
        serving.read_bundle(tmp_path)


def test_missing_tools_skip_locally_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import imaging

    monkeypatch.setattr(imaging.shutil, "which", lambda tool: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="container tools missing: buildah"):
        imaging.require_tools()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run these tests"):
        imaging.require_tools()


def test_test_images_use_the_machines_mirror(tmp_path: Path) -> None:
    import imaging

    sources = tmp_path / "debian.sources"
    sources.write_text("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n\n"
                       "Types: deb\nURIs: http://mirror.example/debian-security\n")
    assert imaging.debian_mirror(sources) == "http://mirror.example/debian"
    assert imaging.debian_mirror(tmp_path / "none") == imaging.DEFAULT_MIRROR
