"""Create, watch and delete KubeRay RayClusters and RayJobs with the ``kubernetes`` client.

:class:`KubeRay` wraps ``CustomObjectsApi`` for ``ray.io/v1`` and guards against what
KubeRay users report (kuberay issues 1023, 1723, 2314, 2359, 3553, 4233):

- a cluster that never becomes ready: :meth:`KubeRay.wait_ready` gives up after a timeout,
  deletes the cluster and raises :class:`~dripml.errors.ClusterError` with its last status;
- a RayJob that failed while its deployment status still says Running:
  :meth:`KubeRay.wait_job` treats a terminal ``jobStatus`` as the end, deletes the job and
  its cluster after a short grace period, and raises;
- a re-run of the same step: :meth:`KubeRay.create` adopts the object of the same name and
  run (names come from :func:`dripml.orchestration.kuberay.objects.cluster_name`) instead
  of making a second;
- anything left over: :meth:`KubeRay.delete_run` deletes every RayCluster and RayJob
  labelled with a pipeline run, whatever state the run ended in.

Watches are list-then-watch with short server-side windows, so timeouts and grace periods
are checked even when no event arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config, watch

from dripml.errors import ClusterError
from dripml.orchestration.kuberay.objects import (
    CLUSTER_PLURAL,
    GROUP,
    JOB_PLURAL,
    RUN_LABEL,
    VERSION,
)

WATCH_WINDOW_S = 10.0
"""Longest wait for one watch request; the deadlines are checked at least this often."""

TERMINAL_JOB_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
"""Ray job statuses (``status.jobStatus``) that no longer change."""

FAILED_DEPLOYMENTS = frozenset({"Failed", "ValidationFailed"})


@dataclass(frozen=True)
class JobOutcome:
    """How a RayJob ended.

    Attributes:
        name: the RayJob's name.
        job_status: Ray's status of the job (``SUCCEEDED``, ``FAILED``, ``STOPPED``).
        deployment_status: KubeRay's ``jobDeploymentStatus`` when it ended.
        message: KubeRay's or Ray's message, if any.
    """

    name: str
    job_status: str
    deployment_status: str
    message: str


def cluster_ready(obj: Mapping[str, Any]) -> bool:
    """KubeRay marks a usable cluster with ``status.state: ready`` (all versions) and, from
    1.2 on, the conditions ``HeadPodReady`` and ``RayClusterProvisioned``."""
    status = obj.get("status") or {}
    if status.get("state") == "ready":
        return True
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    return conditions.get("HeadPodReady") == "True" and \
        conditions.get("RayClusterProvisioned") == "True"


def describe_status(obj: Mapping[str, Any] | None) -> str:
    """One line about a custom object's status, for error messages."""
    if not obj:
        return "no status (the object is gone)"
    status = obj.get("status") or {}
    if not status:
        return "no status yet: is the KubeRay operator running and watching this namespace?"
    parts = [f"{k}={status[k]}" for k in ("state", "jobDeploymentStatus", "jobStatus", "reason")
             if status.get(k)]
    for condition in status.get("conditions") or []:
        if condition.get("status") == "True" and condition.get("message"):
            parts.append(f"{condition.get('type')}: {condition['message']}")
    if status.get("message"):
        parts.append(str(status["message"]))
    return "; ".join(parts) or str(status)


class KubeRay:
    """RayCluster and RayJob lifecycle in one cluster.

    Args:
        api_client: a configured ``kubernetes.client.ApiClient``; default from
            :meth:`from_environment`.
        delete_timeout_s: how long :meth:`delete` waits for an object to be gone.
        watch_window_s: longest single watch request; deadlines are checked this often.
    """

    def __init__(self, api_client: client.ApiClient | None = None, *,
                 delete_timeout_s: float = 300.0,
                 watch_window_s: float = WATCH_WINDOW_S) -> None:
        self.api = client.CustomObjectsApi(api_client or self.from_environment())
        self.delete_timeout_s = delete_timeout_s
        self.watch_window_s = watch_window_s

    @staticmethod
    def from_environment(context: str | None = None) -> client.ApiClient:
        """In a pod, the pod's service account; elsewhere the kubeconfig's (current or
        ``context``) context.

        Raises:
            ClusterError: neither is available.
        """
        try:
            config.load_incluster_config()
        except config.ConfigException:
            try:
                config.load_kube_config(context=context)
            except (config.ConfigException, FileNotFoundError, TypeError) as exc:
                raise ClusterError(
                    f"no Kubernetes configuration: not in a pod and no kubeconfig ({exc}); "
                    "set KUBECONFIG or run inside the cluster") from exc
        return client.ApiClient()

    # -- generic ------------------------------------------------------------------------

    def get(self, plural: str, name: str, namespace: str) -> dict[str, Any] | None:
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Create ``manifest`` (a RayCluster or RayJob), or adopt the existing object of the
        same name when it belongs to the same run (a retried step).

        Raises:
            ClusterError: an object of that name exists for another run, or the server
                rejected the manifest (the message carries the server's reason).
        """
        plural = _plural(manifest)
        meta = manifest["metadata"]
        try:
            return self.api.create_namespaced_custom_object(
                GROUP, VERSION, meta["namespace"], plural, dict(manifest))
        except client.ApiException as exc:
            if exc.status != 409:
                raise ClusterError(f"creating {manifest['kind']} {meta['name']} failed: "
                                   f"{exc.status} {exc.reason}: {_body(exc)}") from exc
        existing = self.get(plural, meta["name"], meta["namespace"]) or {}
        run = meta.get("labels", {}).get(RUN_LABEL)
        theirs = (existing.get("metadata") or {}).get("labels", {}).get(RUN_LABEL)
        if existing.get("metadata", {}).get("deletionTimestamp"):
            raise ClusterError(f"{manifest['kind']} {meta['name']} is being deleted; retry "
                               "once it is gone")
        if theirs != run:
            raise ClusterError(f"{manifest['kind']} {meta['name']} already exists for run "
                               f"{theirs!r}, not {run!r}; delete it or choose another name")
        return existing

    def delete(self, plural: str, name: str, namespace: str, *, wait: bool = True) -> bool:
        """Delete one object (foreground: its pods go first) and wait until it is gone.

        Returns:
            Whether it existed.

        Raises:
            ClusterError: it is still there after ``delete_timeout_s`` (a finalizer that
                nobody removes: is the KubeRay operator running?).
        """
        try:
            self.api.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, name,
                body=client.V1DeleteOptions(propagation_policy="Foreground"))
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise
        if wait:
            deadline = time.monotonic() + self.delete_timeout_s
            while (obj := self.get(plural, name, namespace)) is not None:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{plural} {name} still exists {self.delete_timeout_s:.0f}"
                                       f" s after deletion: {describe_status(obj)}")
                time.sleep(0.5)
        return True

    def list(self, plural: str, namespace: str, *, run_id: str | None = None
             ) -> list[dict[str, Any]]:
        selector = f"{RUN_LABEL}={run_id}" if run_id else None
        items = self.api.list_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, label_selector=selector)["items"]
        if run_id:  # not every server filters by label
            items = [i for i in items if i["metadata"].get("labels", {}).get(RUN_LABEL) == run_id]
        return items

    def watch(self, plural: str, name: str, namespace: str, timeout_s: float
              ) -> Iterator[dict[str, Any] | None]:
        """Yield the object's current state (None once deleted) now, on every change, and at
        least every ``watch_window_s`` seconds until ``timeout_s`` has passed."""
        deadline = time.monotonic() + timeout_s
        yield self.get(plural, name, namespace)
        while (left := deadline - time.monotonic()) > 0:
            window = max(1, int(min(self.watch_window_s, left)))
            stream = watch.Watch()
            try:
                for event in stream.stream(
                        self.api.list_namespaced_custom_object, GROUP, VERSION, namespace,
                        plural, field_selector=f"metadata.name={name}",
                        timeout_seconds=window, _request_timeout=window + 2):
                    obj = event["object"]
                    if obj.get("metadata", {}).get("name") != name:
                        continue
                    yield None if event["type"] == "DELETED" else obj
                    if time.monotonic() > deadline:
                        break
            except (urllib3.exceptions.ReadTimeoutError, urllib3.exceptions.ProtocolError):
                pass  # the window ended without an event
            finally:
                stream.stop()
            yield self.get(plural, name, namespace)

    # -- clusters -----------------------------------------------------------------------

    def wait_ready(self, name: str, namespace: str, *, timeout_s: float) -> dict[str, Any]:
        """Wait until RayCluster ``name`` is ready and return it.

        Raises:
            ClusterError: not ready within ``timeout_s`` or deleted meanwhile; the cluster
                is deleted before raising, so nothing is left behind.
        """
        last: dict[str, Any] | None = None
        for obj in self.watch(CLUSTER_PLURAL, name, namespace, timeout_s):
            if obj is None:
                raise ClusterError(f"RayCluster {name} was deleted while waiting for it")
            last = obj
            if cluster_ready(obj):
                return obj
        self.delete(CLUSTER_PLURAL, name, namespace)
        raise ClusterError(f"RayCluster {name} was not ready after {timeout_s:.0f} s, so it was "
                           f"deleted; last status: {describe_status(last)}")

    def delete_run(self, run_id: str, namespace: str) -> list[str]:
        """Delete every RayJob and RayCluster labelled with ``run_id``; return their names."""
        deleted = []
        for plural in (JOB_PLURAL, CLUSTER_PLURAL):
            for obj in self.list(plural, namespace, run_id=run_id):
                name = obj["metadata"]["name"]
                if self.delete(plural, name, namespace):
                    deleted.append(f"{plural}/{name}")
        return deleted

    # -- jobs ---------------------------------------------------------------------------

    def wait_job(self, name: str, namespace: str, *, timeout_s: float,
                 stuck_grace_s: float = 60.0,
                 on_status: Callable[[dict[str, Any]], None] | None = None) -> JobOutcome:
        """Follow RayJob ``name`` to its end, then delete it (and so its cluster).

        A job whose Ray status is terminal but whose deployment status is not after
        ``stuck_grace_s`` is over (kuberay 2314, 3553): it is deleted and reported as it is.

        Returns:
            The outcome of a job that SUCCEEDED.

        Raises:
            ClusterError: the job failed, was stopped, vanished, got stuck or ran past
                ``timeout_s``; the RayJob has been deleted.
        """
        terminal_since: float | None = None
        last: dict[str, Any] | None = None
        for obj in self.watch(JOB_PLURAL, name, namespace, timeout_s):
            if obj is None:
                raise ClusterError(f"RayJob {name} was deleted before it finished; last "
                                   f"status: {describe_status(last)}")
            last = obj
            status = obj.get("status") or {}
            if on_status:
                on_status(status)
            outcome = JobOutcome(name, status.get("jobStatus", ""),
                                 status.get("jobDeploymentStatus", ""),
                                 status.get("message", ""))
            deployment_done = outcome.deployment_status in FAILED_DEPLOYMENTS | {"Complete"}
            if outcome.job_status in TERMINAL_JOB_STATUSES or deployment_done:
                terminal_since = terminal_since or time.monotonic()
                stuck = time.monotonic() - terminal_since >= stuck_grace_s
                if deployment_done or stuck:
                    self.delete(JOB_PLURAL, name, namespace)
                    if outcome.job_status == "SUCCEEDED":
                        return outcome
                    raise ClusterError(
                        f"RayJob {name} ended {outcome.job_status or 'without a job status'} "
                        f"({describe_status(obj)})"
                        + (" while KubeRay still reported it as "
                           f"{outcome.deployment_status}" if stuck and not deployment_done
                           else "") + "; it was deleted")
        self.delete(JOB_PLURAL, name, namespace)
        raise ClusterError(f"RayJob {name} did not finish within {timeout_s:.0f} s, so it was "
                           f"deleted; last status: {describe_status(last)}")


def _plural(manifest: Mapping[str, Any]) -> str:
    kinds = {"RayCluster": CLUSTER_PLURAL, "RayJob": JOB_PLURAL}
    try:
        return kinds[manifest["kind"]]
    except KeyError:
        raise ClusterError(f"expected kind RayCluster or RayJob, got {manifest.get('kind')!r}"
                           ) from None


def _body(exc: client.ApiException) -> str:
    return (exc.body or "")[:500] if isinstance(exc.body, str) else str(exc.body)[:500]
