"""`drip deploy --target kubernetes`: the values and the exact helm command it builds, the
dry run, the image read from the Model Registry, running helm (a stand-in on PATH: there is no
cluster here), and the chart rendered from exactly those values with the real helm and checked
by kubernetes-validate --strict (see test_charts.py for the tools)."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dripml.cli import app
from dripml.errors import DripmlError, ModelNotFoundError
from dripml.productionize import deploy

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "dripml-endpoint"
TOOLS = Path(os.environ.get("DRIPML_TOOLS_DIR", ROOT / ".tools"))
KUBE_VERSIONS = ("1.28.0", "1.37.0")
DIGEST = "sha256:" + "4f1c9a3b" * 8
IMAGE = f"registry.example.com/ml/adult-serving@{DIGEST}"
IN_CLUSTER = "http://dripml-mlflow.dripml.svc.cluster.local:5000"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


def make_plan(**overrides: Any) -> deploy.DeployPlan:
    model = overrides.pop("model", "adult@champion")
    arguments: dict[str, Any] = {"target": "kubernetes", "image": IMAGE,
                                 "tracking_uri": IN_CLUSTER, **overrides}
    return deploy.plan(model, **arguments)


# --------------------------------------------------------------------------------- planning


def test_plan_values_and_exact_command(workdir: Path) -> None:
    plan = make_plan(gpu=True, namespace="ml", sets=["autoscaling.maxReplicas=3"])
    assert plan.release == "adult" and plan.namespace == "ml"
    assert plan.values == {
        "image": {"repository": "registry.example.com/ml/adult-serving", "digest": DIGEST},
        "model": {"uri": "models:/adult@champion"},
        "mlflow": {"trackingUri": IN_CLUSTER},
        "gpu": {"enabled": True, "count": 1, "resourceName": "nvidia.com/gpu",
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                 "effect": "NoSchedule"}]},
    }
    assert plan.values_file == Path(".dripml/deploy/ml/adult.values.yaml")
    assert plan.command == (
        "helm", "upgrade", "--install", "adult", str(CHART), "--namespace", "ml",
        "--create-namespace", "-f", ".dripml/deploy/ml/adult.values.yaml",
        "--set", "autoscaling.maxReplicas=3", "--wait", "--timeout", "10m")
    assert list(workdir.iterdir()) == [], "planning writes nothing"


def test_chart_path_is_relative_from_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    plan = make_plan()
    assert plan.command[:5] == ("helm", "upgrade", "--install", "adult", "charts/dripml-endpoint")
    assert "gpu" not in plan.values


@pytest.mark.parametrize(("model", "release"), [
    ("adult", "adult"),
    ("adult@challenger", "adult"),
    ("adult/3", "adult"),
    ("models:/Churn_Model.v2@champion", "churn-model-v2"),
    ("2024-sales", "model-2024-sales"),
    ("a" * 80, "a" * 53),
    ("ab-" + "c" * 49 + "-d", "ab-" + "c" * 49),
])
def test_release_defaults_to_the_model_name(workdir: Path, model: str, release: str) -> None:
    plan = make_plan(model=model)
    assert plan.release == release
    assert len(plan.release) <= 53


@pytest.mark.parametrize(("model", "uri"), [
    ("adult", "models:/adult@champion"),
    ("adult@challenger", "models:/adult@challenger"),
    ("adult/3", "models:/adult/3"),
    ("models:/adult@champion", "models:/adult@champion"),
    ("runs:/0a1b2c/model", "runs:/0a1b2c/model"),
])
def test_model_uri_follows_tracking_rules(model: str, uri: str) -> None:
    from dripml.productionize import tracking

    assert deploy.model_uri(model) == uri == tracking.parse_model_ref(model)


def test_runs_uri_needs_release_and_image(workdir: Path) -> None:
    with pytest.raises(DripmlError, match="pass --release"):
        make_plan(model="runs:/0a1b2c/model")
    plan = make_plan(model="runs:/0a1b2c/model", release="churn")
    assert plan.values["model"]["uri"] == "runs:/0a1b2c/model"
    with pytest.raises(DripmlError, match="pass --image"):
        make_plan(model="runs:/0a1b2c/model", release="churn", image=None)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"target": "k8s"}, r"valid targets: \['local', 'kubernetes'\]"),
    ({"target": "local"}, r"plan_local"),
    ({"image": "registry.example.com/ml/adult:1.0"}, "referenced by digest"),
    ({"image": "registry.example.com/ml/adult@sha256:abc"}, "referenced by digest"),
    ({"image": f"Registry.example.com/ML/adult@{DIGEST.upper()}"}, "referenced by digest"),
    ({"image": f"@{DIGEST}"}, "referenced by digest"),
    ({"tracking_uri": None}, "pass --tracking-uri"),
    ({"tracking_uri": "sqlite:///mlflow.db"}, "http"),
    ({"tracking_uri": "http://127.0.0.1:5000"}, "--cluster-tracking-uri"),
    ({"release": "Adult"}, "invalid release"),
    ({"release": "1adult"}, "invalid release"),
    ({"release": "a" * 54}, "invalid release"),
    ({"namespace": "ML_team"}, "invalid namespace"),
    ({"sets": ["autoscaling.maxReplicas"]}, "KEY=VALUE"),
    ({"model": "adult@champion@x"}, "cannot deploy"),
    ({"model": "___"}, "release name"),
    ({"gpu": True, "gpu_count": 0}, "gpu_count"),
])
def test_bad_arguments_fail_clearly(workdir: Path, overrides: dict[str, Any],
                                    message: str) -> None:
    with pytest.raises(DripmlError, match=message):
        make_plan(**overrides)


def test_cluster_tracking_uri_is_what_the_pods_get(workdir: Path) -> None:
    plan = make_plan(tracking_uri="http://127.0.0.1:5000", cluster_tracking_uri=IN_CLUSTER)
    assert plan.values["mlflow"]["trackingUri"] == IN_CLUSTER


def test_tracking_uri_from_the_environment(workdir: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    plan = make_plan(tracking_uri=None)
    assert plan.values["mlflow"]["trackingUri"] == "https://mlflow.example.com"


def test_missing_chart_fails_clearly(workdir: Path) -> None:
    with pytest.raises(DripmlError, match=r"dripml-endpoint Helm chart is not at .*pip install -e"):
        make_plan(repo_root=workdir)


# ------------------------------------------------------------------------ image from MLflow


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite Model Registry: adult v1 (alias champion) tagged with its image, v2 (alias
    challenger) without a tag, v3 (alias legacy) tagged with a tag-based image."""
    from mlflow.tracking import MlflowClient

    from dripml.productionize import tracking

    folder = tmp_path_factory.mktemp("registry")
    uri = tracking.configure(f"sqlite:///{folder / 'mlflow.db'}")
    client = MlflowClient()
    client.create_registered_model("adult")
    for alias, image in (("champion", IMAGE), ("challenger", None),
                         ("legacy", "registry.example.com/ml/adult:latest")):
        (folder / alias).mkdir()
        version = client.create_model_version("adult", source=str(folder / alias)).version
        client.set_registered_model_alias("adult", alias, version)
        if image:
            client.set_model_version_tag("adult", version, deploy.IMAGE_TAG, image)
    return uri


def test_image_comes_from_the_model_version_tag(workdir: Path, registry: str) -> None:
    plan = make_plan(image=None, tracking_uri=registry, cluster_tracking_uri=IN_CLUSTER)
    assert plan.values["image"] == {"repository": "registry.example.com/ml/adult-serving",
                                    "digest": DIGEST}


def test_untagged_version_says_what_to_do(workdir: Path, registry: str) -> None:
    with pytest.raises(DripmlError, match=r"adult/2 .* no 'dripml.image' tag.*--image"):
        make_plan(model="adult@challenger", image=None, tracking_uri=registry,
                  cluster_tracking_uri=IN_CLUSTER)
    with pytest.raises(DripmlError, match="referenced by digest"):
        make_plan(model="adult@legacy", image=None, tracking_uri=registry,
                  cluster_tracking_uri=IN_CLUSTER)
    with pytest.raises(ModelNotFoundError, match="registered models: \\['adult'\\]"):
        make_plan(model="churn", image=None, tracking_uri=registry,
                  cluster_tracking_uri=IN_CLUSTER)


def test_local_target_runs_the_recorded_image(workdir: Path, registry: str) -> None:
    local = deploy.plan_local("adult", port=3100, tracking_uri=registry)
    assert local.image == deploy.parse_image(IMAGE)
    assert local.command[-1] == IMAGE and "--tls-verify=false" not in local.command
    assert local.shell_command.startswith("podman run --rm --name dripml-adult-3100 ")


def test_local_target_without_image_falls_back_to_bentoml_serve(workdir: Path,
                                                               registry: str) -> None:
    local = deploy.plan_local("adult@challenger", port=3101, tracking_uri=registry)
    assert local.image is None and local.command == ()
    assert local.shell_command == "drip serve models:/adult@challenger --port 3101"
    with pytest.raises(ModelNotFoundError):
        deploy.plan_local("churn", tracking_uri=registry)
    with pytest.raises(DripmlError, match="referenced by digest"):
        deploy.plan_local("adult@legacy", tracking_uri=registry)


def test_local_target_dry_run_through_the_cli(workdir: Path, registry: str) -> None:
    result = CliRunner().invoke(app, ["deploy", "adult", "--target", "local", "--port", "3102",
                                      "--dry-run", "--tracking-uri", registry])
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output)
    assert argv[:3] == ["podman", "run", "--rm"] and argv[-1] == IMAGE
    assert "BENTOML_HOST=127.0.0.1" in argv and "BENTOML_PORT=3102" in argv


def test_local_target_without_a_runtime(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = deploy.plan_local("adult", image=IMAGE, runtime="docker")
    monkeypatch.setenv("PATH", str(workdir))
    with pytest.raises(DripmlError, match=r"docker is not on PATH.*--runtime podman"):
        deploy.run_local(local)


def test_container_ulimits_never_exceed_the_hard_limits() -> None:
    import resource

    limits = deploy.container_ulimits()
    for name, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(which)[1]
        assert limits[name] <= deploy.CONTAINER_ULIMITS[name]
        assert hard == resource.RLIM_INFINITY or limits[name] <= hard


def test_no_registry_to_read_the_image_from(workdir: Path) -> None:
    with pytest.raises(DripmlError, match="no MLflow store at"):
        make_plan(image=None, tracking_uri=None, cluster_tracking_uri=IN_CLUSTER)
    assert not (workdir / ".dripml").exists()


# ------------------------------------------------------------------ the dry run and the CLI


def fake_helm(folder: Path, status: int = 0) -> Path:
    """A `helm` stand-in that records its arguments and the values file it is given."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "helm"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > "{folder}/argv"\n'
        'while [ $# -gt 0 ]; do if [ "$1" = -f ]; then cp "$2" '
        f'"{folder}/values.yaml"; fi; shift; done\n'
        f"exit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_dry_run_prints_the_script_and_touches_nothing(workdir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = workdir.parent / f"{workdir.name}-bin"
    fake_helm(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = CliRunner().invoke(app, [
        "deploy", "adult@champion", "--target", "kubernetes", "--image", IMAGE, "--gpu",
        "--namespace", "ml", "--release", "adult-gpu", "--set", "replicaCount=3",
        "--set", "autoscaling.enabled=false", "--tracking-uri", IN_CLUSTER, "--dry-run"])
    assert result.exit_code == 0, result.output
    plan = make_plan(gpu=True, namespace="ml", release="adult-gpu",
                     sets=["replicaCount=3", "autoscaling.enabled=false"])
    lines = result.output.splitlines()
    assert lines[-1] == plan.shell_command
    start = lines.index("cat > .dripml/deploy/ml/adult-gpu.values.yaml <<'EOF'")
    end = lines.index("EOF")
    assert yaml.safe_load("\n".join(lines[start + 1:end])) == plan.values
    assert list(workdir.iterdir()) == [] and not (bin_dir / "argv").exists()


def test_no_create_namespace_for_a_namespaced_role(workdir: Path) -> None:
    """``--no-create-namespace`` (and the page's Deploy, whose Role is namespaced) leaves
    helm's ``--create-namespace`` out; the default keeps it."""
    from dripml.ui.deployments import Deployments
    from dripml.ui.settings import UiSettings

    result = CliRunner().invoke(app, [
        "deploy", "adult@champion", "--target", "kubernetes", "--image", IMAGE,
        "--namespace", "team-a", "--no-create-namespace", "--tracking-uri", IN_CLUSTER,
        "--dry-run"])
    assert result.exit_code == 0, result.output
    command = shlex.split(result.output.splitlines()[-1])
    assert command[:7] == ["helm", "upgrade", "--install", "adult", str(CHART), "--namespace",
                           "team-a"] and "--create-namespace" not in command
    assert make_plan(create_namespace=False).command == tuple(
        a for a in make_plan().command if a != "--create-namespace")
    page = Deployments(UiSettings(data_dir=workdir / "ui", deploy_target="kubernetes",
                                  tracking_uri=IN_CLUSTER, namespace="team-a"))
    planned = page.plan("adult", 3, image=IMAGE)
    assert "--namespace team-a" in planned.script and "--create-namespace" not in planned.script
    assert list(workdir.iterdir()) == [], "planning writes nothing"


def test_dry_run_script_does_what_apply_does(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    """Running the printed script (against the helm stand-in) writes the same values file and
    calls helm with the same arguments as `drip deploy` without --dry-run."""
    bin_dir = tmp_path_factory.mktemp("bin")
    fake_helm(bin_dir)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    plan = make_plan(namespace="ml")
    subprocess.run(["sh", "-c", deploy.render(plan)], check=True, cwd=workdir)
    scripted = ((bin_dir / "argv").read_text(), (workdir / plan.values_file).read_text())
    (workdir / plan.values_file).unlink()
    result = CliRunner().invoke(app, ["deploy", "adult", "--target", "kubernetes", "--image",
                                      IMAGE, "--namespace", "ml", "--tracking-uri", IN_CLUSTER])
    assert result.exit_code == 0, result.output
    assert plan.shell_command in result.output and "deployed adult" in result.output
    assert ((bin_dir / "argv").read_text(), (workdir / plan.values_file).read_text()) == scripted
    assert scripted[0].splitlines() == list(plan.command[1:])
    assert yaml.safe_load(scripted[1]) == plan.values


def test_apply_reports_a_failing_helm(workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    bin_dir = tmp_path_factory.mktemp("bin")
    fake_helm(bin_dir, status=3)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(DripmlError, match=r"helm exited with status 3.*adult.values.yaml"):
        deploy.apply(make_plan())


def test_apply_without_helm(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(workdir))
    with pytest.raises(DripmlError, match="helm is not on PATH.*--dry-run"):
        deploy.apply(make_plan())
    assert list(workdir.iterdir()) == []


def test_cli_errors_are_one_line(workdir: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "adult", "--target", "aws", "--image", IMAGE,
                                      "--dry-run"])
    assert result.exit_code == 1
    assert "unknown deploy target 'aws'" in result.output and "Traceback" not in result.output


# --------------------------------------------------- the chart rendered from exactly those values


@pytest.fixture(scope="module")
def helm() -> Path:
    path = TOOLS / "bin" / "helm"
    if not path.exists():
        message = f"{path} is missing: run `make tools`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def template_argv(plan: deploy.DeployPlan, helm: Path, version: str) -> list[str]:
    """The plan's command as `helm template`: the same release, chart, namespace, values file
    and --set values; only what needs a cluster (install, wait) is left out."""
    argv = list(plan.command)
    assert argv[:3] == ["helm", "upgrade", "--install"]
    assert argv[-3:] == ["--wait", "--timeout", deploy.HELM_TIMEOUT]
    rest = [a for a in argv[3:-3] if a != "--create-namespace"]
    return [str(helm), "template", *rest, "--kube-version", version]


@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_deploy_values_render_and_validate(helm: Path, workdir: Path, gpu: bool) -> None:
    plan = make_plan(gpu=gpu, namespace="ml", sets=["autoscaling.maxReplicas=4"])
    plan.values_file.parent.mkdir(parents=True)
    plan.values_file.write_text(plan.values_yaml)
    lint = subprocess.run([str(helm), "lint", "--strict", str(CHART), "-f",
                           str(plan.values_file)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout
    for version in KUBE_VERSIONS:
        result = subprocess.run(template_argv(plan, helm, version), capture_output=True,
                                text=True, env={**os.environ, "KUBECONFIG": os.devnull})
        assert result.returncode == 0, result.stderr
        manifest = workdir / f"{version}.yaml"
        manifest.write_text(result.stdout)
        check = subprocess.run([str(ROOT / ".venv" / "bin" / "kubernetes-validate"), "--strict",
                                "-k", version, str(manifest)], capture_output=True, text=True)
        assert check.returncode == 0 and not any(
            line.startswith(("WARN", "ERROR")) for line in check.stdout.splitlines()), \
            check.stdout
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DRIPML_MODEL_URI"] == "models:/adult@champion"
    assert env["MLFLOW_TRACKING_URI"] == IN_CLUSTER
    assert docs["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 4
    assert docs["Deployment"]["metadata"]["namespace"] == "ml"
    assert docs["Deployment"]["metadata"]["labels"]["app.kubernetes.io/instance"] == "adult"
    if gpu:
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["tolerations"] == plan.values["gpu"]["tolerations"]
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"]
        assert "tolerations" not in pod
    assert shlex.split(plan.shell_command) == list(plan.command)
