"""The ``kuberay`` cluster backend: a pipeline run's Ray cluster as a KubeRay RayCluster.

Implements :class:`dripml.orchestration.backend.ClusterBackend` with
:class:`dripml.orchestration.kuberay.client.KubeRay` (created on first use, from the pod's
service account or the kubeconfig) and the manifests of
:mod:`dripml.orchestration.kuberay.objects`. The pipeline steps run in pods beside the
cluster, so the Job Submission API is the head Service's in-cluster address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import yaml

from dripml.core.spec import Spec
from dripml.errors import SpecError
from dripml.orchestration.backend import JobClient
from dripml.orchestration.kuberay import objects

if TYPE_CHECKING:
    from dripml.orchestration.kuberay.client import KubeRay

REMOTE_SCHEMES = ("s3://", "dataset://", "http://", "https://", "gs://")
"""Data locations a Ray cluster's pods can read (``dataset://`` names are fetched there)."""


class KubeRayBackend:
    """RayClusters in ``spec.cluster.namespace``, labelled with their pipeline run.

    Args:
        client: the KubeRay client to use; default one made from the environment on first
            use (so constructing the backend needs no cluster).
    """

    name: ClassVar[str] = "kuberay"

    def __init__(self, client: KubeRay | None = None) -> None:
        self._client = client

    @property
    def client(self) -> KubeRay:
        """The KubeRay client (made on first use).

        Raises:
            ClusterError: no Kubernetes configuration (not in a pod, no kubeconfig).
        """
        if self._client is None:
            from dripml.orchestration.kuberay.client import KubeRay

            self._client = KubeRay()
        return self._client

    def check(self, spec: Spec) -> Spec:
        """``spec`` unchanged, once its data is known to be readable from the cluster.

        Raises:
            SpecError: as :func:`check_remote_data`.
        """
        check_remote_data(spec)
        return spec

    def create(self, spec: Spec, name: str, *, run_id: str, manifest: Mapping[str, Any]) -> str:
        """Create RayCluster ``name`` from ``manifest`` (renamed, labelled with ``run_id``),
        or adopt the one of that name and run.

        Raises:
            ClusterError: the API server rejected it, or ``name`` belongs to another run.
        """
        self.client.create(named(manifest, name=name, run_id=run_id))
        return name

    def wait_ready(self, spec: Spec, name: str) -> str:
        """Wait for RayCluster ``name``; return its head Service's Job Submission API URL.

        Raises:
            ClusterError: not ready within ``spec.cluster.ready_timeout_s`` (it is deleted).
        """
        self.client.wait_ready(name, spec.cluster.namespace,
                               timeout_s=spec.cluster.ready_timeout_s)
        return objects.dashboard_url(name, spec.cluster.namespace)

    def job_client(self, spec: Spec, name: str) -> JobClient:
        """``python`` of the trainer image; the Ray token comes from the step's environment
        (``RAY_AUTH_TOKEN``, from ``spec.cluster.auth_token_secret``)."""
        return JobClient(python="python")

    def delete_run(self, spec: Spec, run_id: str) -> list[str]:
        """Delete every RayJob and RayCluster labelled with ``run_id``; return
        ``plural/name`` of each."""
        return self.client.delete_run(run_id, spec.cluster.namespace)


def check_remote_data(spec: Spec) -> None:
    """A Ray cluster's pods cannot read files on the submitting machine.

    Raises:
        SpecError: naming the field (``data.train``, ``data.test``) that is a local path.
    """
    for field in ("train", "test"):
        path = getattr(spec.data, field)
        if path is not None and not str(path).startswith(REMOTE_SCHEMES):
            raise SpecError(f"data.{field}: {path!r} is a local path, which the Ray cluster "
                            "cannot read; upload it (s3://bucket/key) or use a dataset:// "
                            "name, or run it locally with --orchestrator kfp-local")


def named(manifest: Mapping[str, Any], *, name: str, run_id: str) -> dict[str, Any]:
    """A deep copy of a compiled RayCluster manifest with its run's name and run label (on
    the cluster and on every pod template)."""
    copy = yaml.safe_load(yaml.safe_dump(dict(manifest)))
    copy["metadata"]["name"] = name
    for labels in _label_maps(copy):
        labels[objects.RUN_LABEL] = objects.label_value(run_id)
    return copy


def _label_maps(manifest: dict[str, Any]) -> list[dict[str, str]]:
    spec = manifest["spec"]
    maps = [manifest["metadata"].setdefault("labels", {}),
            spec["headGroupSpec"]["template"].setdefault("metadata", {}).setdefault("labels", {})]
    for group in spec.get("workerGroupSpecs", []):
        maps.append(group["template"].setdefault("metadata", {}).setdefault("labels", {}))
    return maps

