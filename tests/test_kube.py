"""The kube module: RayCluster and RayJob manifests validated strictly against KubeRay's CRDs
(and their pod templates against Kubernetes' own Pod schema), and the lifecycle run against
an in-process Kubernetes API over real HTTP, failure paths included, ending with no cluster."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from dripml.core.spec import Spec, load_spec
from dripml.errors import ClusterError
from dripml.orchestration.kuberay import client as kube_client
from dripml.orchestration.kuberay import objects, schema
from kube_emulator import CRDS, kubernetes_emulator

NAMESPACE = "dripml"
BASE = {"name": "adult", "task": "binary",
        "data": {"train": "dataset://adult/train", "label": "income"},
        "algorithms": ["lightgbm"]}
SPECS = {
    "cpu": {},
    "gpu": {"resources": {"cpus_per_trial": 2, "gpus_per_trial": 1}},
    "gpu-sized": {"resources": {"gpus_per_trial": 0.5},
                  "cluster": {"workers": {"replicas": 3, "cpus": 8, "memory_gib": 30.5,
                                          "gpus": 2},
                              "image": "registry.example/dripml/trainer@sha256:" + "a" * 64,
                              "env_from_secrets": ["mlflow-s3"], "auth_token_secret": None}},
}


def crd(plural: str) -> Path:
    path = CRDS[plural]
    if not path.exists():
        pytest.skip(f"{path} is not there (../shared/crds holds KubeRay's CRDs)")
    return path


def spec_for(case: str) -> Spec:
    return load_spec({**BASE, **SPECS[case]})


# ------------------------------------------------------------------------------ manifests


@pytest.mark.parametrize("case", list(SPECS))
def test_ray_cluster_matches_the_crd_strictly(case: str) -> None:
    manifest = objects.ray_cluster(spec_for(case), name="adult-1", run_id="run-1")
    assert schema.problems(manifest, crd(objects.CLUSTER_PLURAL)) == []


@pytest.mark.parametrize("case", list(SPECS))
def test_ray_job_matches_the_crd_strictly(case: str) -> None:
    manifest = objects.ray_job(spec_for(case), name="adult-1", run_id="run-1",
                               entrypoint="python -m dripml.cli run spec.yaml")
    assert schema.problems(manifest, crd(objects.JOB_PLURAL)) == []
    assert manifest["spec"]["shutdownAfterJobFinishes"] is True
    assert manifest["spec"]["activeDeadlineSeconds"] == 24 * 3600


def test_an_unknown_field_fails_validation_and_names_its_path() -> None:
    manifest = objects.ray_cluster(spec_for("cpu"), name="adult-1", run_id="run-1")
    manifest["spec"]["workerGroupSpecs"][0]["replica"] = 2
    manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"]["cpu"] = ["4"]
    with pytest.raises(schema.ManifestError) as raised:
        schema.validate(manifest, crd(objects.CLUSTER_PLURAL))
    message = str(raised.value)
    assert "spec.workerGroupSpecs.0: Additional properties are not allowed ('replica'" in message
    assert "spec.headGroupSpec.template.spec.containers.0.resources.limits.cpu" in message


@pytest.mark.parametrize("case", list(SPECS))
def test_pod_templates_are_valid_pods(case: str, tmp_path: Path) -> None:
    """Each group's pod template, wrapped as a Pod, passes Kubernetes' own strict schema."""
    manifest = objects.ray_cluster(spec_for(case), name="adult-1", run_id="run-1")
    templates = [manifest["spec"]["headGroupSpec"]["template"],
                 *(g["template"] for g in manifest["spec"]["workerGroupSpecs"])]
    for template in templates:
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "p", **template["metadata"]}, "spec": template["spec"]}
        for version in ("1.28.0", "1.37.0"):
            kubernetes_validate.validate(pod, version, strict=True)


def worker(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["workerGroupSpecs"][0]


def test_cpu_spec_gets_cpu_workers_without_gpu_scheduling() -> None:
    manifest = objects.ray_cluster(spec_for("cpu"), name="adult-1", run_id="run-1")
    group = worker(manifest)
    pod = group["template"]["spec"]
    assert group["groupName"] == "cpu-workers"
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert objects.GPU_RESOURCE not in pod["containers"][0]["resources"]["limits"]
    assert pod["containers"][0]["image"] == objects.TRAINER_IMAGE
    assert manifest["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert manifest["spec"]["authOptions"] == {"mode": "token", "secretName": "dripml-ray-auth"}


def test_gpu_spec_gets_gpu_workers_tolerations_and_node_selector() -> None:
    manifest = objects.ray_cluster(spec_for("gpu"), name="adult-1", run_id="run-1")
    group = worker(manifest)
    pod = group["template"]["spec"]
    container = pod["containers"][0]
    assert group["groupName"] == "gpu-workers"
    assert container["resources"]["limits"][objects.GPU_RESOURCE] == "1"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert group["rayStartParams"] == {"num-cpus": "4", "num-gpus": "1"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert container["image"] == objects.TRAINER_IMAGE_GPU
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]
    assert "tolerations" not in head  # the head needs no GPU node


def test_cluster_settings_size_the_workers() -> None:
    manifest = objects.ray_cluster(spec_for("gpu-sized"), name="adult-1", run_id="run-1")
    group = worker(manifest)
    container = group["template"]["spec"]["containers"][0]
    assert group["replicas"] == group["minReplicas"] == group["maxReplicas"] == 3
    assert container["resources"]["limits"] == {"cpu": "8", "memory": "31232Mi",
                                                objects.GPU_RESOURCE: "2"}
    assert container["image"].endswith("@sha256:" + "a" * 64)
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-s3"}}]
    assert "authOptions" not in manifest["spec"]


def test_a_worker_fits_at_least_one_trial() -> None:
    spec = load_spec({**BASE, "resources": {"cpus_per_trial": 6.5}})
    assert objects.worker_shape(spec) == (6.5, 0)
    manifest = objects.ray_cluster(spec, name="a", run_id="r")
    assert worker(manifest)["template"]["spec"]["containers"][0]["resources"]["limits"][
        "cpu"] == "6500m"


def test_pods_are_hardened() -> None:
    manifest = objects.ray_cluster(spec_for("gpu"), name="adult-1", run_id="run-1")
    for template in (manifest["spec"]["headGroupSpec"]["template"], worker(manifest)["template"]):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        container = pod["containers"][0]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_cluster_names_are_stable_per_run_and_valid() -> None:
    name = objects.cluster_name("Adult_Income.v2", "4f1c2d")
    assert name == objects.cluster_name("Adult_Income.v2", "4f1c2d")
    assert name != objects.cluster_name("Adult_Income.v2", "other-run")
    assert len(name) <= objects.MAX_NAME and name[0].isalpha()
    assert all(c.isalnum() or c == "-" for c in name) and name == name.lower()
    assert objects.cluster_name("9" * 80, "r")[0].isalpha()


# ------------------------------------------------------------------------------ lifecycle


@pytest.fixture
def emulator():
    with kubernetes_emulator() as emu:
        yield emu
        # No path may leave a cluster behind.
        assert emu.names(objects.CLUSTER_PLURAL) == []
        assert emu.names(objects.JOB_PLURAL) == []


@pytest.fixture
def kuberay(emulator) -> kube_client.KubeRay:
    return kube_client.KubeRay(emulator.api_client, delete_timeout_s=10, watch_window_s=1)


def later(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_create_wait_ready_and_delete(emulator, kuberay) -> None:
    crd(objects.CLUSTER_PLURAL)
    manifest = objects.ray_cluster(spec_for("gpu"), name="adult-1", run_id="run-1")
    kuberay.create(manifest)
    assert emulator.names(objects.CLUSTER_PLURAL) == ["adult-1"]
    # KubeRay >= 1.2 reports readiness by conditions; the operator writes them after a while.
    later(1.0, lambda: emulator.set_status(objects.CLUSTER_PLURAL, "adult-1", {
        "state": "", "conditions": [
            {"type": "HeadPodReady", "status": "True"},
            {"type": "RayClusterProvisioned", "status": "True"}]}))
    started = time.monotonic()
    ready = kuberay.wait_ready("adult-1", NAMESPACE, timeout_s=20)
    assert 0.8 < time.monotonic() - started < 10
    assert kube_client.cluster_ready(ready)
    assert kuberay.delete_run("run-1", NAMESPACE) == ["rayclusters/adult-1"]
    assert kuberay.delete_run("run-1", NAMESPACE) == []  # idempotent: the exit handler may retry


def test_a_rerun_adopts_its_cluster_instead_of_duplicating_it(emulator, kuberay) -> None:
    manifest = objects.ray_cluster(spec_for("cpu"), name="adult-1", run_id="run-1")
    first = kuberay.create(manifest)
    again = kuberay.create(manifest)
    assert again["metadata"]["name"] == first["metadata"]["name"]
    assert emulator.names(objects.CLUSTER_PLURAL) == ["adult-1"]
    other_run = objects.ray_cluster(spec_for("cpu"), name="adult-1", run_id="run-2")
    with pytest.raises(ClusterError, match="already exists for run 'run-1', not 'run-2'"):
        kuberay.create(other_run)
    kuberay.delete_run("run-1", NAMESPACE)


def test_a_cluster_that_never_becomes_ready_is_deleted(emulator, kuberay) -> None:
    manifest = objects.ray_cluster(spec_for("gpu"), name="adult-1", run_id="run-1")
    kuberay.create(manifest)
    emulator.set_status(objects.CLUSTER_PLURAL, "adult-1", {
        "state": "", "conditions": [{"type": "ReplicaFailure", "status": "True",
                                     "message": "0/3 nodes have nvidia.com/gpu"}]})
    with pytest.raises(ClusterError) as raised:
        kuberay.wait_ready("adult-1", NAMESPACE, timeout_s=2)
    assert "not ready after 2 s, so it was deleted" in str(raised.value)
    assert "0/3 nodes have nvidia.com/gpu" in str(raised.value)
    assert emulator.names(objects.CLUSTER_PLURAL) == []


def test_a_cluster_deleted_while_waiting_is_reported(emulator, kuberay) -> None:
    kuberay.create(objects.ray_cluster(spec_for("cpu"), name="adult-1", run_id="run-1"))
    later(0.5, lambda: kuberay.delete(objects.CLUSTER_PLURAL, "adult-1", NAMESPACE, wait=False))
    with pytest.raises(ClusterError, match="was deleted while waiting"):
        kuberay.wait_ready("adult-1", NAMESPACE, timeout_s=20)


def test_the_server_rejecting_a_manifest_is_a_clear_error(emulator, kuberay) -> None:
    crd(objects.CLUSTER_PLURAL)
    manifest = objects.ray_cluster(spec_for("cpu"), name="adult-1", run_id="run-1")
    manifest["spec"]["headGroupSpec"]["rayStartParam"] = {}
    with pytest.raises(ClusterError, match=r"422 .*rayStartParam"):
        kuberay.create(manifest)
    assert emulator.names(objects.CLUSTER_PLURAL) == []


def job(name: str = "adult-job", run_id: str = "run-1") -> dict[str, Any]:
    return objects.ray_job(spec_for("cpu"), name=name, run_id=run_id,
                           entrypoint="python -m dripml.cli run spec.yaml")


def test_a_succeeded_job_is_followed_and_deleted(emulator, kuberay) -> None:
    kuberay.create(job())
    later(0.5, lambda: emulator.set_status(objects.JOB_PLURAL, "adult-job", {
        "jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}))
    later(1.5, lambda: emulator.set_status(objects.JOB_PLURAL, "adult-job", {
        "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}))
    seen: list[str] = []
    outcome = kuberay.wait_job("adult-job", NAMESPACE, timeout_s=20,
                               on_status=lambda s: seen.append(s.get("jobStatus", "")))
    assert outcome.job_status == "SUCCEEDED" and outcome.deployment_status == "Complete"
    assert "RUNNING" in seen


def test_a_job_failed_while_its_deployment_says_running_is_detected(emulator, kuberay) -> None:
    """kuberay 2314 / 3553: Ray says FAILED, KubeRay keeps saying Running."""
    kuberay.create(job())
    emulator.set_status(objects.JOB_PLURAL, "adult-job", {
        "jobDeploymentStatus": "Running", "jobStatus": "FAILED",
        "message": "entrypoint exited with 1"})
    started = time.monotonic()
    with pytest.raises(ClusterError) as raised:
        kuberay.wait_job("adult-job", NAMESPACE, timeout_s=60, stuck_grace_s=1.5)
    assert time.monotonic() - started < 15  # not the 60 s timeout
    message = str(raised.value)
    assert "ended FAILED" in message and "still reported it as Running" in message
    assert "entrypoint exited with 1" in message


def test_a_failed_deployment_is_deleted_at_once(emulator, kuberay) -> None:
    kuberay.create(job())
    emulator.set_status(objects.JOB_PLURAL, "adult-job", {
        "jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded"})
    with pytest.raises(ClusterError, match="DeadlineExceeded"):
        kuberay.wait_job("adult-job", NAMESPACE, timeout_s=60, stuck_grace_s=30)


def test_a_job_past_its_timeout_is_deleted(emulator, kuberay) -> None:
    kuberay.create(job())
    emulator.set_status(objects.JOB_PLURAL, "adult-job", {
        "jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    with pytest.raises(ClusterError, match="did not finish within 2 s"):
        kuberay.wait_job("adult-job", NAMESPACE, timeout_s=2)


def test_delete_run_removes_only_that_runs_clusters_and_jobs(emulator, kuberay) -> None:
    kuberay.create(objects.ray_cluster(spec_for("cpu"), name="adult-a", run_id="run-1"))
    kuberay.create(job("adult-a-job", "run-1"))
    kuberay.create(objects.ray_cluster(spec_for("cpu"), name="adult-b", run_id="run-2"))
    deleted = kuberay.delete_run("run-1", NAMESPACE)
    assert sorted(deleted) == ["rayclusters/adult-a", "rayjobs/adult-a-job"]
    assert emulator.names(objects.CLUSTER_PLURAL) == ["adult-b"]
    kuberay.delete_run("run-2", NAMESPACE)


def test_no_kubernetes_configuration_is_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="no Kubernetes configuration"):
        kube_client.KubeRay.from_environment()
