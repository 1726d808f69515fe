"""RayCluster and RayJob manifests (KubeRay ``ray.io/v1``) built as data from a spec.

``ray_cluster(spec, name=...)`` returns the dict that ``kubectl apply`` or the ``kubernetes``
client sends: one head group and one worker group sized from ``spec.cluster`` and
``spec.resources``. A spec that asks for GPUs (``resources.gpus_per_trial > 0``) gets GPU
workers: an ``nvidia.com/gpu`` limit, the GPU node pool's tolerations and node selector, and
the GPU variant of the trainer image.

Every pod runs as UID 10001, non-root, with all capabilities dropped and no service-account
token; Ray writes its sockets and logs under /tmp/ray, which is an emptyDir.
"""

from __future__ import annotations

import hashlib
import math
import re
from importlib import metadata
from typing import Any

from dripml import __version__ as _dripml_version
from dripml.core.spec import Spec

API_VERSION = "ray.io/v1"
GROUP, VERSION = "ray.io", "v1"
CLUSTER_PLURAL, JOB_PLURAL = "rayclusters", "rayjobs"

TRAINER_IMAGE = f"ghcr.io/dripml/trainer:{_dripml_version}"
"""Default image of the Ray pods and pipeline steps (built from ``containers/trainer``)."""
TRAINER_IMAGE_GPU = f"{TRAINER_IMAGE}-gpu"

GPU_RESOURCE = "nvidia.com/gpu"
DASHBOARD_PORT = 8265
"""The Ray dashboard, which serves the Job Submission API."""
GCS_PORT = 6379
RUN_LABEL = "dripml.io/run"
"""Label carrying the pipeline run a cluster belongs to; clean-up selects on it."""
SPEC_LABEL = "dripml.io/spec"
AUTH_TOKEN_KEY = "auth_token"
"""Key of the Ray token in ``spec.cluster.auth_token_secret``."""

MAX_NAME = 40
"""KubeRay derives pod and service names (``<name>-head-svc``...) from the cluster name, and
pod names must stay within 63 characters; 40 leaves room for its suffixes."""


def cluster_name(spec_name: str, run_id: str) -> str:
    """A DNS-1035 name that is the same every time for the same (spec, pipeline run).

    A retried pipeline step therefore finds the cluster it created instead of creating a
    second one. ``run_id`` is the KFP run (job) id; the name ends in a hash of it.
    """
    digest = hashlib.sha256(f"{spec_name}/{run_id}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", spec_name.lower()).strip("-") or "drip"
    if not stem[0].isalpha():
        stem = f"drip-{stem}"
    return f"{stem[:MAX_NAME - 9].rstrip('-')}-{digest}"


def trainer_image(spec: Spec) -> str:
    """The image of the Ray pods: ``spec.cluster.image``, else the CPU or GPU default."""
    if spec.cluster.image:
        return spec.cluster.image
    return TRAINER_IMAGE_GPU if uses_gpus(spec) else TRAINER_IMAGE


def uses_gpus(spec: Spec) -> bool:
    return spec.resources.gpus_per_trial > 0 or spec.cluster.workers.gpus > 0


def labels(spec: Spec, run_id: str, component: str) -> dict[str, str]:
    """The standard ``app.kubernetes.io/*`` labels plus the run and spec they belong to."""
    return {
        "app.kubernetes.io/name": "dripml",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "dripml",
        "app.kubernetes.io/version": _dripml_version,
        RUN_LABEL: label_value(run_id),
        SPEC_LABEL: label_value(spec.name),
    }


def label_value(value: str) -> str:
    """``value`` as a valid label value (63 characters of ``[A-Za-z0-9_.-]``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[:63].strip("-_.")
    return cleaned or "none"


def _quantity_cpu(cpus: float) -> str:
    millis = math.ceil(cpus * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def _quantity_memory(gib: float) -> str:
    return f"{math.ceil(gib * 1024)}Mi"


def _resources(cpus: float, memory_gib: float, gpus: int = 0) -> dict[str, Any]:
    amounts: dict[str, str] = {"cpu": _quantity_cpu(cpus), "memory": _quantity_memory(memory_gib)}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    # Requests equal limits: Guaranteed QoS, so a search is not the first thing evicted.
    return {"requests": dict(amounts), "limits": dict(amounts)}


def worker_shape(spec: Spec) -> tuple[float, int]:
    """CPUs and GPUs per worker pod: at least what one trial asks for."""
    cpus = max(spec.cluster.workers.cpus, spec.resources.cpus_per_trial)
    gpus = spec.cluster.workers.gpus or math.ceil(spec.resources.gpus_per_trial)
    return cpus, gpus


def _container(name: str, image: str, resources: dict[str, Any], spec: Spec,
               ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": resources,
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "ray-tmp", "mountPath": "/tmp/ray"}],
    }
    if spec.cluster.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in spec.cluster.env_from_secrets]
    if ports:
        container["ports"] = ports
    return container


def _pod_spec(container: dict[str, Any], *, gpu: bool, spec: Spec) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "containers": [container],
        # The Ray pods need no Kubernetes API access.
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                            "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "ray-tmp", "emptyDir": {}}],
    }
    if gpu:
        pod["nodeSelector"] = dict(spec.cluster.gpu_node_selector)
        pod["tolerations"] = [dict(t) for t in spec.cluster.gpu_tolerations]
    return pod


def ray_cluster(spec: Spec, *, name: str, run_id: str) -> dict[str, Any]:
    """The RayCluster for ``spec``: a head pod that runs the search driver (no trials:
    ``num-cpus: 0``) and ``spec.cluster.workers.replicas`` workers that run the trials.

    Returns:
        A ``ray.io/v1`` RayCluster manifest (dict), validated by
        :mod:`dripml.orchestration.kuberay.schema` in the tests against KubeRay's CRD.
    """
    image = trainer_image(spec)
    head, workers = spec.cluster.head, spec.cluster.workers
    worker_cpus, worker_gpus = worker_shape(spec)
    head_container = _container(
        "ray-head", image, _resources(head.cpus, head.memory_gib), spec,
        ports=[{"containerPort": GCS_PORT, "name": "gcs"},
               {"containerPort": DASHBOARD_PORT, "name": "dashboard"}])
    worker_container = _container(
        "ray-worker", image, _resources(worker_cpus, workers.memory_gib, worker_gpus), spec)
    pod_labels = labels(spec, run_id, "ray")
    manifest: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": {"name": name, "namespace": spec.cluster.namespace,
                     "labels": labels(spec, run_id, "ray-cluster")},
        "spec": {
            "rayVersion": metadata.version("ray"),
            "enableInTreeAutoscaling": False,
            "headGroupSpec": {
                # The driver only: trials go to the workers.
                "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                "template": {"metadata": {"labels": pod_labels},
                             "spec": _pod_spec(head_container, gpu=False, spec=spec)},
            },
            "workerGroupSpecs": [{
                "groupName": "gpu-workers" if worker_gpus else "cpu-workers",
                "replicas": workers.replicas,
                "minReplicas": workers.replicas,
                "maxReplicas": workers.replicas,
                "rayStartParams": {"num-cpus": _ray_number(worker_cpus),
                                   **({"num-gpus": str(worker_gpus)} if worker_gpus else {})},
                "template": {"metadata": {"labels": pod_labels},
                             "spec": _pod_spec(worker_container, gpu=bool(worker_gpus),
                                               spec=spec)},
            }],
        },
    }
    if spec.cluster.auth_token_secret:
        manifest["spec"]["authOptions"] = {"mode": "token",
                                           "secretName": spec.cluster.auth_token_secret}
    return manifest


def _ray_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def ray_job(spec: Spec, *, name: str, run_id: str, entrypoint: str,
            runtime_env_yaml: str | None = None) -> dict[str, Any]:
    """A RayJob that brings up its own cluster (the same one :func:`ray_cluster` builds),
    runs ``entrypoint`` on it and deletes the cluster when the job ends, succeeded or not.

    ``activeDeadlineSeconds`` (``spec.cluster.job_timeout_s``) bounds the whole job, cluster
    start included, so a job that hangs is failed and cleaned up by KubeRay itself.
    """
    cluster = ray_cluster(spec, name=name, run_id=run_id)
    job_spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "rayClusterSpec": cluster["spec"],
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": 0,
        "activeDeadlineSeconds": int(spec.cluster.job_timeout_s),
        "backoffLimit": 0,
        "submissionMode": "K8sJobMode",
        "submitterPodTemplate": {
            "metadata": {"labels": labels(spec, run_id, "ray-job-submitter")},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "ray-job-submitter",
                    "image": trainer_image(spec),
                    "resources": _resources(0.5, 1),
                    "securityContext": {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}},
                }],
            },
        },
    }
    if runtime_env_yaml:
        job_spec["runtimeEnvYAML"] = runtime_env_yaml
    return {
        "apiVersion": API_VERSION,
        "kind": "RayJob",
        "metadata": {"name": name, "namespace": spec.cluster.namespace,
                     "labels": labels(spec, run_id, "ray-job")},
        "spec": job_spec,
    }


def head_service(name: str, namespace: str) -> str:
    """DNS name of the head's Service, which KubeRay names ``<cluster>-head-svc``."""
    return f"{name}-head-svc.{namespace}.svc.cluster.local"


def dashboard_url(name: str, namespace: str) -> str:
    """The Job Submission API of cluster ``name``, from inside the cluster."""
    return f"http://{head_service(name, namespace)}:{DASHBOARD_PORT}"
