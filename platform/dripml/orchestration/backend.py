"""The cluster backend interface: what the pipeline's steps need from whatever runs a Ray
cluster for them.

A pipeline run checks its spec for the backend, creates one Ray cluster, waits until it is
ready, submits the search to it as a Ray job and, whatever happened, deletes every cluster
of the run. :class:`ClusterBackend` is those five calls; two classes implement it:

- ``kuberay``: :class:`dripml.orchestration.kuberay.backend.KubeRayBackend`, a RayCluster on
  Kubernetes;
- ``local``: :class:`dripml.orchestration.local_ray.LocalRayBackend`, a Ray head process on
  this machine (what KFP's local runner uses).

:mod:`dripml.orchestration.backends` finds one by name. Every call is idempotent per
``(spec, run_id)``: KFP retries steps, and a retried step adopts what the first try made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from dripml.core.spec import Spec


@dataclass(frozen=True)
class JobClient:
    """How this process submits a Ray job to a ready cluster.

    Attributes:
        python: the interpreter the job's entrypoint runs on the cluster's head (a command
            name on the head's ``PATH``, or an absolute path).
        env: environment variables this process sets before it creates Ray's Job Submission
            client (for example ``RAY_AUTH_TOKEN_PATH``); Ray reads ``RAY_AUTH_MODE`` when it
            is imported, so a caller that has not imported Ray yet sets them first.
    """

    python: str = "python"
    env: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class ClusterBackend(Protocol):
    """A place Ray clusters are created for pipeline runs.

    Attributes:
        name: the name a pipeline's ``backend`` parameter gives (``kuberay``, ``local``).
    """

    name: ClassVar[str]

    def check(self, spec: Spec) -> Spec:
        """The spec as this backend's cluster will read it (for example local data paths
        made absolute).

        Raises:
            SpecError: the cluster cannot read the spec's data; the message names the field.
        """
        ...

    def create(self, spec: Spec, name: str, *, run_id: str, manifest: Mapping[str, Any]) -> str:
        """Create cluster ``name`` for pipeline run ``run_id``, or adopt the one a previous
        try of this step made; return its name.

        Args:
            manifest: the compiled RayCluster manifest (``ray.io/v1``); its name and run
                label are replaced. Backends that start no Kubernetes object ignore it.

        Raises:
            ClusterError: the cluster could not be created, or a cluster of that name
                belongs to another run.
        """
        ...

    def wait_ready(self, spec: Spec, name: str) -> str:
        """Wait until cluster ``name`` is ready, at most ``spec.cluster.ready_timeout_s``
        seconds; return its Job Submission API URL (``http://HOST:PORT``).

        Raises:
            ClusterError: not ready in time, or gone; the cluster has been deleted.
        """
        ...

    def job_client(self, spec: Spec, name: str) -> JobClient:
        """How to submit a job to the ready cluster ``name``.

        Raises:
            ClusterError: the cluster is gone.
        """
        ...

    def delete_run(self, spec: Spec, run_id: str) -> list[str]:
        """Delete every cluster (and job) of pipeline run ``run_id``, found by its run label
        or state, so a cluster whose create step died before reporting its name goes too;
        return the names deleted (none is not an error)."""
        ...
