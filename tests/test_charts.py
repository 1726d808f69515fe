"""The Helm charts, checked with the real tools: `helm lint --strict`, `helm template` over a
values matrix validated by `kubernetes-validate --strict` (a WARN for a built-in kind is a
failure), values the schemas must reject, NOTES.txt, and checkov.

The tools come from `make tools` (.tools/bin/helm, .tools/checkov); `make test` runs it first.
Without them these tests skip when run by hand and fail in CI (CI set).

charts/dripml declares the optional kuberay-operator dependency, and Helm refuses to lint or
render a chart whose declared dependency is missing from charts/, even a disabled one. CI cannot
download it, so the platform chart is checked in a copy whose charts/ holds an empty
placeholder chart of that name and version: exactly what Helm renders for the dependency while
its condition is false (the default). The pristine chart is linted too, to show that the missing
download is its only finding.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHARTS = ROOT / "charts"
TOOLS = Path(os.environ.get("DRIPML_TOOLS_DIR", ROOT / ".tools"))
KUBE_VERSIONS = ("1.28.0", "1.37.0")
"""The oldest and the newest Kubernetes version the charts support (Chart.yaml kubeVersion)."""
NAMESPACE = "ml-platform"
APP_VERSION = "0.1.0"
DIGEST = re.compile(r"^[^@\s]+@sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Case:
    """One cell of the values matrix: a chart and its values files under the chart's ci/."""

    id: str
    chart: str
    values: tuple[str, ...]
    release: str

    def args(self, chart_dir: Path) -> list[str]:
        return [arg for name in self.values for arg in ("-f", str(chart_dir / "ci" / name))]


MATRIX = (
    Case("endpoint-defaults", "dripml-endpoint", ("default-values.yaml",), "adult"),
    Case("endpoint-gpu", "dripml-endpoint", ("gpu-values.yaml",), "adult-gpu"),
    Case("endpoint-minimal", "dripml-endpoint", ("minimal-values.yaml",), "churn"),
    Case("platform-defaults", "dripml", ("default-values.yaml",), "dripml"),
    Case("platform-postgresql-s3", "dripml", ("external-values.yaml",), "dripml"),
    Case("platform-pod-identity", "dripml", ("pod-identity-values.yaml",), "mlops"),
    Case("platform-ui", "dripml", ("ui-values.yaml",), "dripml"),
    Case("platform-ui-cluster", "dripml", ("ui-cluster-values.yaml",), "automl"),
)
CASES = {case.id: case for case in MATRIX}
RENDERS = [(case.id, version) for case in MATRIX for version in KUBE_VERSIONS]


# ------------------------------------------------------------------------------------ tools


def _tool(path: Path, how: str) -> Path:
    if path.exists():
        return path
    message = f"{path} is missing: {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def helm() -> Path:
    return _tool(TOOLS / "bin" / "helm", "run `make tools` (tools/fetch_helm.sh)")


@pytest.fixture(scope="session")
def checkov() -> Path:
    return _tool(TOOLS / "checkov" / "bin" / "checkov", "run `make tools`")


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HELM_CACHE_HOME": str(TOOLS / "helm-cache"),
                               "HELM_CONFIG_HOME": str(TOOLS / "helm-config"),
                               "HELM_DATA_HOME": str(TOOLS / "helm-data"),
                               "KUBECONFIG": os.devnull})


def kuberay_dependency() -> dict[str, Any]:
    chart = yaml.safe_load((CHARTS / "dripml" / "Chart.yaml").read_text())
    (dependency,) = [d for d in chart["dependencies"] if d["name"] == "kuberay-operator"]
    return dependency


@pytest.fixture(scope="session")
def chart_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The charts as helm sees them: the endpoint chart itself, and a copy of the platform
    chart with the placeholder for its undownloaded, disabled kuberay-operator dependency."""
    copy = tmp_path_factory.mktemp("charts") / "dripml"
    shutil.copytree(CHARTS / "dripml", copy)
    dependency = kuberay_dependency()
    if not list((copy / "charts").glob(f"{dependency['name']}*")):
        placeholder = copy / "charts" / dependency["name"]
        placeholder.mkdir(parents=True)
        (placeholder / "Chart.yaml").write_text(yaml.safe_dump({
            "apiVersion": "v2", "name": dependency["name"], "version": dependency["version"],
            "description": "Test placeholder: what Helm renders while the dependency is off."}))
    return {"dripml": copy, "dripml-endpoint": CHARTS / "dripml-endpoint"}


def template(helm: Path, chart_dirs: dict[str, Path], case: Case, version: str,
             *extra: str) -> subprocess.CompletedProcess[str]:
    chart = chart_dirs[case.chart]
    return run_helm(helm, "template", case.release, str(chart), "--namespace", NAMESPACE,
                    "--kube-version", version, *case.args(chart), *extra)


@pytest.fixture(scope="session")
def rendered(helm: Path, chart_dirs: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every (case, Kubernetes version) rendered once into a file."""
    folder = tmp_path_factory.mktemp("rendered")
    files = {}
    for case_id, version in RENDERS:
        result = template(helm, chart_dirs, CASES[case_id], version)
        assert result.returncode == 0, result.stderr
        files[case_id, version] = folder / f"{case_id}-{version}.yaml"
        files[case_id, version].write_text(result.stdout)
    return files


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def objects(rendered: dict[tuple[str, str], Path], case_id: str) -> list[dict[str, Any]]:
    return documents(rendered[case_id, KUBE_VERSIONS[-1]])


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


# ------------------------------------------------------------------------- lint and render


@pytest.mark.parametrize("case_id", list(CASES))
def test_lint_strict(helm: Path, chart_dirs: dict[str, Path], case_id: str) -> None:
    case = CASES[case_id]
    chart = chart_dirs[case.chart]
    for version in KUBE_VERSIONS:
        result = run_helm(helm, "lint", "--strict", str(chart), "--kube-version", version,
                          *case.args(chart))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def downloaded_dependencies() -> list[Path]:
    return sorted((CHARTS / "dripml" / "charts").glob("kuberay-operator*"))


def test_platform_chart_lint_needs_only_the_dependency_download(helm: Path) -> None:
    """The committed chart, without `helm dependency update`: Helm's one finding is the missing
    download of the declared dependency (README.md says to run that step first)."""
    result = run_helm(helm, "lint", "--strict", str(CHARTS / "dripml"))
    findings = [line for line in result.stdout.splitlines()
                if line.startswith(("[WARNING]", "[ERROR]"))]
    if downloaded_dependencies():  # `helm dependency update` was run in this checkout
        assert result.returncode == 0 and not findings, result.stdout
        return
    assert result.returncode != 0
    assert len(findings) == 1, findings
    assert "missing these dependencies: kuberay-operator" in findings[0]


def test_kuberay_operator_is_an_optional_pinned_dependency() -> None:
    dependency = kuberay_dependency()
    assert dependency["repository"] == "https://ray-project.github.io/kuberay-helm/"
    assert re.fullmatch(r"\d+\.\d+\.\d+", dependency["version"])
    assert dependency["condition"] == "kuberay-operator.enabled"
    values = yaml.safe_load((CHARTS / "dripml" / "values.yaml").read_text())
    assert values["kuberay-operator"] == {"enabled": False, "singleNamespaceInstall": True}
    ignored = (CHARTS / "dripml" / ".gitignore").read_text().splitlines()
    assert "charts/" in ignored, "a downloaded dependency must never be committed"
    readme = (CHARTS / "dripml" / "README.md").read_text()
    assert "helm dependency update charts/dripml" in readme


@pytest.mark.parametrize(("case_id", "version"), RENDERS)
def test_rendered_objects_validate(rendered: dict[tuple[str, str], Path], case_id: str,
                                   version: str) -> None:
    """kubernetes-validate --strict on each rendered file; custom resources get their own
    schema, and a WARN (no schema) for any other kind fails."""
    path = rendered[case_id, version]
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "kubernetes-validate"), "--strict", "-k", version,
         str(path)], capture_output=True, text=True, timeout=120)
    lines = result.stdout.splitlines()
    problems = [line for line in lines if line.startswith(("ERROR", "FATAL"))]
    warnings = [line for line in lines if line.startswith("WARN")]
    custom = [doc for doc in documents(path) if doc["apiVersion"] in CUSTOM_SCHEMAS]
    unexplained = [w for w in warnings
                   if not any(f"kind {doc['kind']} with api version {doc['apiVersion']}" in w
                              for doc in custom)]
    assert result.returncode == 0 and not problems and not unexplained, result.stdout
    passed = [line for line in lines if line.startswith("INFO") and " passed " in line]
    assert len(passed) + len(custom) == len(documents(path)) > 0
    for doc in custom:
        jsonschema.validate(doc, CUSTOM_SCHEMAS[doc["apiVersion"]][doc["kind"]])


def test_validation_can_fail(rendered: dict[tuple[str, str], Path], tmp_path: Path) -> None:
    """A misspelt field in a rendered Deployment is an ERROR under --strict."""
    docs = objects(rendered, "endpoint-defaults")
    deployment = one(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    result = subprocess.run([str(ROOT / ".venv" / "bin" / "kubernetes-validate"), "--strict",
                             "-k", KUBE_VERSIONS[0], str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "readinesProbe" in result.stdout


@pytest.mark.parametrize("case_id", list(CASES))
def test_notes_render(helm: Path, chart_dirs: dict[str, Path], case_id: str) -> None:
    case = CASES[case_id]
    chart = chart_dirs[case.chart]
    result = run_helm(helm, "install", case.release, str(chart), "--namespace", NAMESPACE,
                      "--dry-run=client", *case.args(chart))
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"--namespace {NAMESPACE}" in notes
    if case.chart == "dripml":
        assert f".{NAMESPACE}.svc.cluster.local:5000" in notes and "drip deploy" in notes
        assert ("The dripml web page" in notes) == case.id.startswith("platform-ui")
    else:
        assert "/predict" in notes and "rollout status" in notes


@pytest.mark.parametrize(("case_id", "switch", "kind"), [
    ("endpoint-defaults", "networkPolicy.enabled", "NetworkPolicy"),
    ("endpoint-defaults", "podDisruptionBudget.enabled", "PodDisruptionBudget"),
    ("platform-defaults", "mlflow.networkPolicy.enabled", "NetworkPolicy"),
    ("platform-defaults", "pipeline.rbac.create", "Role"),
])
def test_optional_objects_can_be_left_out(helm: Path, chart_dirs: dict[str, Path], case_id: str,
                                          switch: str, kind: str) -> None:
    result = template(helm, chart_dirs, CASES[case_id], KUBE_VERSIONS[0], "--set",
                      f"{switch}=false")
    assert result.returncode == 0, result.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc]
    assert kind not in kinds and "Deployment" in kinds


def test_unsupported_kubernetes_version_is_refused(helm: Path,
                                                   chart_dirs: dict[str, Path]) -> None:
    result = template(helm, chart_dirs, CASES["endpoint-defaults"], "1.27.9")
    assert result.returncode != 0 and "kubeVersion" in result.stderr


# ----------------------------------------------------------------------- what is rendered


@pytest.mark.parametrize("case_id", list(CASES))
def test_standard_labels(rendered: dict[tuple[str, str], Path], case_id: str) -> None:
    case = CASES[case_id]
    for doc in objects(rendered, case_id):
        labels = doc["metadata"]["labels"]
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/name"] == case.chart, where
        assert labels["app.kubernetes.io/instance"] == case.release, where
        assert labels["app.kubernetes.io/version"] == APP_VERSION, where
        assert labels["app.kubernetes.io/part-of"] == "dripml", where
        assert labels["app.kubernetes.io/managed-by"] == "Helm", where
        assert labels["app.kubernetes.io/component"], where
        assert doc["metadata"]["namespace"] == NAMESPACE, where
        pod_labels = doc.get("spec", {}).get("template", {}).get("metadata", {}).get("labels")
        if pod_labels:
            selector = doc["spec"]["selector"]["matchLabels"]
            assert selector.items() <= pod_labels.items(), where


@pytest.mark.parametrize("case_id", list(CASES))
def test_pods_are_hardened(rendered: dict[tuple[str, str], Path], case_id: str) -> None:
    for deployment in [d for d in objects(rendered, case_id) if d["kind"] == "Deployment"]:
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] >= 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        scratch = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["privileged"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert "memory" in container["resources"]["limits"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] == "http"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts["/tmp"] in scratch


@pytest.mark.parametrize("case_id", ["endpoint-defaults", "endpoint-gpu", "endpoint-minimal"])
def test_endpoint(rendered: dict[tuple[str, str], Path], case_id: str) -> None:
    docs = objects(rendered, case_id)
    values = yaml.safe_load((CHARTS / "dripml-endpoint" / "ci" / CASES[case_id].values[0])
                            .read_text())
    deployment = one(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert DIGEST.match(container["image"])
    assert container["image"] == f"{values['image']['repository']}@{values['image']['digest']}"
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = env_of(container)
    assert env["DRIPML_MODEL_URI"]["value"] == values["model"]["uri"]
    assert env["MLFLOW_TRACKING_URI"]["value"] == values["mlflow"]["trackingUri"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert env["BENTOML_HOME"]["value"] in mounts and "/tmp" in mounts
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    kinds = {doc["kind"] for doc in docs}
    gpu = values.get("gpu", {}).get("enabled", False)
    limits = container["resources"]["limits"]
    if gpu:
        assert limits["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists",
                "effect": "NoSchedule"} in pod["tolerations"]
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    else:
        assert "nvidia.com/gpu" not in limits and "tolerations" not in pod
    if case_id == "endpoint-defaults":
        assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                "ServiceAccount"} <= kinds
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        hpa = one(docs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment["metadata"]["name"]}
        pdb = one(docs, "PodDisruptionBudget")
        assert pdb["spec"]["maxUnavailable"] == 1
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    if case_id == "endpoint-minimal":
        assert kinds == {"Deployment", "Service", "NetworkPolicy"}
        assert deployment["spec"]["replicas"] == 1
        assert pod["serviceAccountName"] == "default"
        assert "topologySpreadConstraints" not in pod
    if case_id == "endpoint-gpu":
        monitor = one(docs, "ServiceMonitor")
        assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        assert monitor["spec"]["selector"]["matchLabels"].items() <= \
            service["metadata"]["labels"].items()
        assert container["envFrom"] == [{"secretRef": {"name": "mlflow-client"}}]
        assert pod["imagePullSecrets"] == [{"name": "dripml-registry"}]


def mlflow_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def test_platform_defaults_are_a_trial_install(rendered: dict[tuple[str, str], Path]) -> None:
    docs = objects(rendered, "platform-defaults")
    container = mlflow_container(docs)
    assert container["command"] == ["mlflow", "server"]
    args = container["args"]
    assert args[:6] == ["--host", "0.0.0.0", "--port", "5000", "--workers", "1"]
    assert args[args.index("--artifacts-destination") + 1] == "/mlflow/artifacts"
    env = env_of(container)
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"] == "sqlite:////mlflow/mlflow.db"
    assert not any(name.startswith("AWS_") for name in env)
    assert container["image"] == "ghcr.io/mlflow/mlflow:v3.17.2"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/health"
    claim = one(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    data = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert data["data"] == "/mlflow"
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert not [doc for doc in docs if doc["kind"] in ("Ingress", "Secret")]


def test_platform_reads_postgresql_and_s3_from_secrets(
        rendered: dict[tuple[str, str], Path]) -> None:
    docs = objects(rendered, "platform-postgresql-s3")
    container = mlflow_container(docs)
    env = env_of(container)
    assert env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"] == {
        "secretKeyRef": {"name": "mlflow-postgres", "key": "uri"}}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-s3"
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-s3"
    assert env["MLFLOW_S3_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]["optional"] is True
    args = container["args"]
    assert args[args.index("--artifacts-destination") + 1] == "s3://ml-artifacts/dripml/mlflow"
    assert args[args.index("--workers") + 1] == "2"
    assert not [doc for doc in docs if doc["kind"] in ("PersistentVolumeClaim", "Secret")]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    service = f"dripml-mlflow.{NAMESPACE}.svc.cluster.local"
    assert {f"{service}:*", "dripml-mlflow:*", "mlflow.example.com",
            "mlflow.internal.example.com", "localhost:*"} <= set(hosts)
    ingress = one(docs, "Ingress")
    assert ingress["spec"]["tls"][0]["secretName"] == "mlflow-example-com-tls"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == one(docs, "Service")["metadata"]["name"]


def test_platform_pod_identity(rendered: dict[tuple[str, str], Path]) -> None:
    docs = objects(rendered, "platform-pod-identity")
    env = env_of(mlflow_container(docs))
    assert not any(name.startswith("AWS_ACCESS") or name.startswith("AWS_SECRET") for name in env)
    (secret,) = [doc for doc in docs if doc["kind"] == "Secret"]
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v]
    assert claims == ["mlflow-state"]
    assert not [doc for doc in docs if doc["kind"] == "PersistentVolumeClaim"]
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubeflow-pipeline-runner",
                                    "namespace": NAMESPACE}]
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "ServiceAccount"] == \
        ["mlops-dripml-mlflow"]


@pytest.mark.parametrize("case_id", [c.id for c in MATRIX if c.chart == "dripml"])
def test_pipeline_rbac_is_least_privilege(rendered: dict[tuple[str, str], Path],
                                          case_id: str) -> None:
    docs = objects(rendered, case_id)
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    pipeline = [d for d in docs if d["metadata"]["labels"]["app.kubernetes.io/component"]
                == "pipeline"]
    role = one(pipeline, "Role")
    assert role["rules"] == [{"apiGroups": ["ray.io"], "resources": ["rayclusters", "rayjobs"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]
    binding = one(pipeline, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"][0]["namespace"] == NAMESPACE
    for account in [d for d in docs if d["kind"] == "ServiceAccount"]:
        if "pipeline" in account["metadata"]["name"]:
            assert binding["subjects"][0]["name"] == account["metadata"]["name"]


# ------------------------------------------------------------------------------- the web UI


def ui_objects(docs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any],
                                                      dict[str, Any]]:
    """The UI's objects (component "ui"), its Deployment and its one container."""
    ui = [d for d in docs if d["metadata"]["labels"]["app.kubernetes.io/component"] == "ui"]
    deployment = one(ui, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return ui, deployment, container


def mounted(deployment: dict[str, Any], container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there, with the mount's readOnly flag."""
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: {**volumes[m["name"]], "readOnly": m.get("readOnly", False)}
            for m in container["volumeMounts"]}


def test_ui_beside_the_trial_install(rendered: dict[tuple[str, str], Path]) -> None:
    """Embedded runs in the UI pod, token from a Secret, SQLite and uploads on its own claim;
    no Kubernetes API access at all. (Hardening: test_pods_are_hardened covers it.)"""
    docs = objects(rendered, "platform-ui")
    ui, deployment, container = ui_objects(docs)
    pod = deployment["spec"]["template"]["spec"]
    assert container["image"] == "ghcr.io/dripml/trainer:0.1.0"
    assert container["command"] == ["drip", "ui"]
    args = container["args"]
    assert args[:8] == ["--host", "0.0.0.0", "--port", "8080", "--data-dir", "/data",
                        "--tracking-uri", f"http://dripml-mlflow.{NAMESPACE}.svc.cluster.local:5000"]
    assert args[args.index("--deploy-target") + 1] == "local"
    assert args[args.index("--max-upload-mib") + 1] == "200"
    assert args[args.index("--recipes") + 1] == "/recipes"
    assert "--kfp-host" not in args and "--trusted-user-header" not in args
    assert "--upload-uri" not in args and not any(n.startswith("AWS_") for n in env_of(container))
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    env = env_of(container)
    assert env["DRIPML_UI_TOKEN"]["valueFrom"] == {
        "secretKeyRef": {"name": "dripml-ui-token", "key": "token"}}
    assert "DRIPML_UI_DATABASE_URL" not in env and "HELM_DRIVER" not in env
    assert container["workingDir"] == "/data"
    mounts = mounted(deployment, container)
    claim = one(ui, "PersistentVolumeClaim")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert mounts["/data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"
    assert mounts["/recipes"]["configMap"]["name"] == "team-recipes"
    assert mounts["/recipes"]["readOnly"] is True
    assert not [v for v in pod["volumes"] if "projected" in v], "no API token without need"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    account = one(ui, "ServiceAccount")
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert not [d for d in ui if d["kind"] in ("Role", "RoleBinding", "Ingress")]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(ui, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    mlflow_pod = [d for d in docs if d["kind"] == "Deployment" and d is not deployment]
    assert not service["spec"]["selector"].items() <= \
        mlflow_pod[0]["spec"]["template"]["metadata"]["labels"].items()
    policy = one(ui, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_ui_on_a_cluster(rendered: dict[tuple[str, str], Path]) -> None:
    """Kubeflow runs and endpoint deploys: PostgreSQL from a Secret, an authenticating
    ingress's header, projected tokens, and namespaced RBAC that never touches Secrets."""
    docs = objects(rendered, "platform-ui-cluster")
    values = yaml.safe_load((CHARTS / "dripml" / "ci" / "ui-cluster-values.yaml").read_text())["ui"]
    ui, deployment, container = ui_objects(docs)
    assert container["image"] == f"{values['image']['repository']}@{values['image']['digest']}"
    args = container["args"]
    assert args[args.index("--tracking-uri") + 1] == \
        f"http://automl-dripml-mlflow.{NAMESPACE}.svc.cluster.local:5000"
    assert args[args.index("--deploy-target") + 1] == "kubernetes"
    assert args[args.index("--kfp-host") + 1] == values["kfpHost"]
    assert args[args.index("--upload-uri") + 1] == values["uploadUri"]
    assert args[args.index("--trusted-user-header") + 1] == "X-Forwarded-User"
    assert args[args.index("--max-upload-mib") + 1] == "500"
    env = env_of(container)
    assert env["DRIPML_UI_DATABASE_URL"]["valueFrom"] == {
        "secretKeyRef": {"name": "dripml-ui-postgres", "key": "url"}}
    assert "DRIPML_UI_TOKEN" not in env
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "dripml-ui-s3", "key": "AWS_SECRET_ACCESS_KEY"}}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "dripml-ui-s3"
    assert env["AWS_ENDPOINT_URL"]["value"] == values["s3"]["endpoint"]
    assert env["HELM_DRIVER"]["value"] == "configmap"
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    mounts = mounted(deployment, container)
    assert "/dev/shm" not in mounts
    kfp = mounts["/var/run/secrets/kubeflow/pipelines"]
    assert kfp["readOnly"] and kfp["projected"]["sources"][0]["serviceAccountToken"][
        "audience"] == "pipelines.kubeflow.org"
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"]["readOnly"]
    account = one(ui, "ServiceAccount")["metadata"]["name"]
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    deployer = one(ui, "Role")
    granted = {(group, resource) for rule in deployer["rules"]
               for group in rule["apiGroups"] for resource in rule["resources"]}
    assert ("apps", "deployments") in granted and ("", "configmaps") in granted
    assert not {resource for _, resource in granted} & {"secrets", "*", "roles", "rolebindings"}
    assert not [rule for rule in deployer["rules"] if "*" in rule["verbs"]]
    bindings = {b["roleRef"]["name"]: b for b in docs if b["kind"] == "RoleBinding"
                and b["subjects"][0]["name"] == account}
    assert set(bindings) == {deployer["metadata"]["name"], "automl-dripml-pipeline"}
    for binding in bindings.values():
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account,
                                        "namespace": NAMESPACE}]
    ingress = one(docs, "Ingress")  # MLflow's stays off; the UI has its own
    assert ingress["metadata"]["labels"]["app.kubernetes.io/component"] == "ui"
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == values["ingress"]["host"]
    assert rule["http"]["paths"][0]["backend"]["service"] == {
        "name": one(ui, "Service")["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [{"hosts": [values["ingress"]["host"]],
                                       "secretName": "automl-example-com-tls"}]
    assert one(ui, "NetworkPolicy")["spec"]["ingress"][0]["from"] == \
        values["networkPolicy"]["from"]


def test_ui_refuses_to_render_without_auth(helm: Path, chart_dirs: dict[str, Path]) -> None:
    """Beyond loopback `drip ui` needs a token or a trusted header: the chart fails early."""
    case = CASES["platform-defaults"]
    result = template(helm, chart_dirs, case, KUBE_VERSIONS[0], "--set", "ui.enabled=true")
    assert result.returncode != 0
    assert "ui.auth.existingSecret" in result.stderr
    assert "ui.auth.trustedUserHeader" in result.stderr
    for setting in ("ui.auth.existingSecret=ui-token",
                    "ui.auth.trustedUserHeader=X-Forwarded-User"):
        result = template(helm, chart_dirs, case, KUBE_VERSIONS[0], "--set", "ui.enabled=true",
                          "--set", setting)
        assert result.returncode == 0, result.stderr
        assert "name: dripml-ui\n" in result.stdout

def test_rbac_names_the_kuberay_resources() -> None:
    """The Role's group and resources are the ones the KubeRay CRDs define."""
    crds = ROOT.parent / "shared" / "crds" / "kuberay"
    if not crds.is_dir():
        pytest.skip(f"{crds} is not there (the shared folder holds the KubeRay CRDs)")
    for kind in ("rayclusters", "rayjobs"):
        text = (crds / f"ray.io_{kind}.yaml").read_text()
        assert re.search(r"^  group: ray\.io$", text, re.MULTILINE)
        assert re.search(rf"^    plural: {kind}$", text, re.MULTILINE)


def test_no_credential_is_a_plain_value(rendered: dict[tuple[str, str], Path]) -> None:
    """No rendered environment variable carries a credential as a literal value."""
    secret_like = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY)", re.IGNORECASE)
    for case_id, version in RENDERS:
        for doc in documents(rendered[case_id, version]):
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for container in pod.get("containers", []):
                for item in container.get("env", []):
                    if secret_like.search(item["name"]):
                        assert "valueFrom" in item and "value" not in item, item
                    assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", item.get("value", ""))


# --------------------------------------------------------------------------------- schemas

DIGEST_A = "sha256:" + "ab" * 32
REJECTED = [
    ("dripml-endpoint", ["--set", "image.digest=latest"], "/image/digest"),
    ("dripml-endpoint", ["--set", "image.digest=sha256:abc"], "/image/digest"),
    ("dripml-endpoint", ["--set", "image.repository=ghcr.io/x/serve:1.0"], "/image/repository"),
    ("dripml-endpoint", ["--set", "model.uri=adult@champion"], "/model/uri"),
    ("dripml-endpoint", ["--set", "mlflow.trackingUri=sqlite:///mlflow.db"],
     "/mlflow/trackingUri"),
    ("dripml-endpoint", ["--set", "gpu.count=0"], "/gpu/count"),
    ("dripml-endpoint", ["--set", "securityContext.runAsUser=0"], "/securityContext/runAsUser"),
    ("dripml-endpoint", ["--set", "securityContext.readOnlyRootFilesystem=false"],
     "readOnlyRootFilesystem"),
    ("dripml-endpoint", ["--set", "service.type=ExternalName"], "/service/type"),
    ("dripml-endpoint", ["--set", "autoscaling.targetCPUUtilizationPercentage=150"],
     "/autoscaling/targetCPUUtilizationPercentage"),
    ("dripml-endpoint", ["--set", "podDisruptionBudget.maxUnavailable=0"],
     "/podDisruptionBudget/maxUnavailable"),
    ("dripml-endpoint", ["--set", "extraEnv[0].name=DRIPML_MODEL_URI"], "/extraEnv/0/name"),
    ("dripml-endpoint", ["--set", "replicas=3"], "replicas"),
    ("dripml", ["--set", "mlflow.backendStore.type=postgresql"],
     "/mlflow/backendStore/postgresql/existingSecret"),
    ("dripml", ["--set", "mlflow.backendStore.type=mysql"], "/mlflow/backendStore/type"),
    ("dripml", ["--set", "mlflow.artifacts.type=s3"], "/mlflow/artifacts/s3/bucket"),
    ("dripml", ["--set", "mlflow.artifacts.s3.accessKeyId=AKIAEXAMPLE"], "accessKeyId"),
    ("dripml", ["--set", "mlflow.backendStore.postgresql.uri=postgresql://u:p@db/mlflow"],
     "uri"),
    ("dripml", ["--set", "mlflow.replicas=2"], "/mlflow/replicas"),
    ("dripml", ["--set", "mlflow.image.tag=latest"], "/mlflow/image/tag"),
    ("dripml", ["--set", "mlflow.image.digest=v3"], "/mlflow/image/digest"),
    ("dripml", ["--set", "ingress.enabled=true"], "/ingress/host"),
    ("dripml", ["--set", "ingress.enabled=true", "--set", "ingress.host=mlflow.example.com",
                "--set", "ingress.tls.enabled=true"], "/ingress/tls/secretName"),
    ("dripml", ["--set", "pipeline.serviceAccount.create=false"],
     "/pipeline/serviceAccount/name"),
    ("dripml", ["--set", "imagePullSecret.create=true"], "/imagePullSecret/dockerConfigJson"),
    ("dripml", ["--set", "mlflow.securityContext.runAsUser=0"],
     "/mlflow/securityContext/runAsUser"),
    ("dripml", ["--set", "ui.deployTarget=cloud"], "/ui/deployTarget"),
    ("dripml", ["--set", "ui.deployTarget=kubernetes"], "/ui/kfpHost"),
    ("dripml", ["--set", "ui.deployTarget=kubernetes", "--set", "ui.kfpHost=http://kfp:80"],
     "/ui/uploadUri"),
    ("dripml", ["--set", "ui.uploadUri=/data/uploads"], "/ui/uploadUri"),
    ("dripml", ["--set", "ui.s3.accessKeyId=AKIAEXAMPLE"], "accessKeyId"),
    ("dripml", ["--set", "ui.auth.token=s3cret"], "token"),
    ("dripml", ["--set", "ui.auth.trustedUserHeader=X-User: admin"],
     "/ui/auth/trustedUserHeader"),
    ("dripml", ["--set", "ui.securityContext.runAsUser=0"], "/ui/securityContext/runAsUser"),
    ("dripml", ["--set", "ui.image.tag=latest"], "/ui/image/tag"),
    ("dripml", ["--set", "ui.maxUploadMiB=0"], "/ui/maxUploadMiB"),
]


@pytest.mark.parametrize(("chart", "args", "field"), REJECTED,
                         ids=[f"{c}:{' '.join(a[1::2])}" for c, a, _ in REJECTED])
def test_schema_rejects(helm: Path, chart_dirs: dict[str, Path], chart: str, args: list[str],
                        field: str) -> None:
    defaults = ["-f", str(chart_dirs[chart] / "ci" / "default-values.yaml")]
    result = run_helm(helm, "template", "x", str(chart_dirs[chart]), *defaults, *args)
    assert result.returncode != 0, f"accepted: {args}"
    assert "don't meet the specifications of the schema" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr


def test_endpoint_chart_requires_image_model_and_tracking_uri(helm: Path) -> None:
    result = run_helm(helm, "template", "x", str(CHARTS / "dripml-endpoint"))
    assert result.returncode != 0
    for field in ("/image/digest", "/image/repository", "/model/uri", "/mlflow/trackingUri"):
        assert field in result.stderr


def test_schema_accepts_a_digest_with_registry_port(helm: Path,
                                                    chart_dirs: dict[str, Path]) -> None:
    result = template(helm, chart_dirs, CASES["endpoint-defaults"], KUBE_VERSIONS[0],
                      "--set", "image.repository=localhost:5000/serve",
                      "--set", f"image.digest={DIGEST_A}",
                      "--set", "podDisruptionBudget.maxUnavailable=25%")
    assert result.returncode == 0, result.stderr
    assert f"localhost:5000/serve@{DIGEST_A}" in result.stdout


# --------------------------------------------------------------------------------- checkov


CANARY = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "canary", "namespace": NAMESPACE},
    "spec": {"selector": {"matchLabels": {"app": "canary"}},
             "template": {"metadata": {"labels": {"app": "canary"}},
                          "spec": {"containers": [{"name": "c", "image": "busybox:latest",
                                                   "securityContext": {"privileged": True}}]}}},
}


@pytest.fixture(scope="session")
def checkov_report(checkov: Path, rendered: dict[tuple[str, str], Path],
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One checkov run over every rendered case plus a known-bad canary Deployment."""
    folder = tmp_path_factory.mktemp("checkov")
    for (case_id, version), path in rendered.items():
        if version == KUBE_VERSIONS[-1]:
            shutil.copy(path, folder / f"{case_id}.yaml")
    (folder / "canary.yaml").write_text(yaml.safe_dump(CANARY))
    result = subprocess.run(
        [str(checkov), "--directory", str(folder), "--framework", "kubernetes",
         "--skip-download", "--output", "json"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": ""})
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def _check_file(check: dict[str, Any]) -> str:
    return Path(check["file_path"]).name


def test_checkov_finds_no_failed_check(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    failed = [f"{c['check_id']} {c['resource']} ({_check_file(c)})"
              for c in results["failed_checks"] if _check_file(c) != "canary.yaml"]
    assert not failed, "\n".join(failed)
    canary = {c["check_id"] for c in results["failed_checks"] if _check_file(c) == "canary.yaml"}
    assert {"CKV_K8S_16", "CKV_K8S_14"} <= canary, "checkov did not scan (canary not caught)"
    scanned = {_check_file(c) for c in results["passed_checks"]}
    assert scanned >= {f"{case.id}.yaml" for case in MATRIX}


def test_checkov_exceptions_are_documented(checkov_report: dict[str, Any]) -> None:
    """Each skipped check is an accepted exception listed, with its reason, in the README of
    the chart that skips it."""
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "expected the documented exceptions to show up as skipped checks"
    for check in skipped:
        chart = CASES[Path(check["file_path"]).stem].chart
        readme = (CHARTS / chart / "README.md").read_text()
        row = [line for line in readme.splitlines()
               if line.startswith("|") and check["check_id"] in line]
        assert row, f"{check['check_id']} is skipped in {chart} but not listed in its README"
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 20, check


# ------------------------------------------------------------- custom resource schemas

_LABEL_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"}
SERVICE_MONITOR = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "additionalProperties": False,
                             "properties": {"matchLabels": _LABEL_MAP}},
                "namespaceSelector": {"type": "object", "additionalProperties": False,
                                      "properties": {"any": {"type": "boolean"},
                                                     "matchNames": {"type": "array",
                                                                    "items": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                        "scheme": {"enum": ["http", "https"]},
                        "interval": _DURATION, "scrapeTimeout": _DURATION}}}}}},
}
"""The fields of prometheus-operator's ServiceMonitor (monitoring.coreos.com/v1) the endpoint
chart uses, with the CRD's types and duration pattern; any other field fails."""

CUSTOM_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "monitoring.coreos.com/v1": {"ServiceMonitor": SERVICE_MONITOR},
}
