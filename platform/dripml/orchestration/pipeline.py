"""Cluster mode's steps: the DRiP loop on a Ray cluster that a pipeline run creates, searches
on, registers from and always deletes.

The Kubeflow pipeline (:mod:`dripml.kfp`) runs these steps, each through one verb of
:mod:`dripml.api` (its components call nothing else)::

    validate_step -> create_cluster_step -> wait_cluster_step -> search_step -> register_step
    delete_cluster_step                                     (the exit handler, on every outcome)

The search runs as a Ray job on the cluster's head, which calls the same function as an
embedded run (:func:`dripml.api.train`, through ``drip run --no-alias``).

The cluster comes from a backend found by name (:mod:`dripml.orchestration.backends`):
``kuberay``, a RayCluster on Kubernetes, or ``local``, a Ray head process for KFP's local
runner. No step branches on the name; each calls the
:class:`~dripml.orchestration.backend.ClusterBackend` interface.

:func:`plan` prepares what a pipeline is compiled with: the spec checked for the backend, the
RayCluster manifest and the steps' image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dripml.core.spec import Spec, load_spec
from dripml.orchestration import backends
from dripml.orchestration.kuberay import objects

DEFAULT_TRACKING_URI = "http://dripml-mlflow.dripml.svc.cluster.local:5000"
"""The MLflow server of the ``charts/dripml`` release named dripml in namespace dripml."""
DEFAULT_SERVICE_ACCOUNT = "dripml-pipeline"
"""The ServiceAccount ``charts/dripml`` creates for pipeline steps (RayCluster RBAC)."""
RUN_TAG = "dripml.pipeline_run_id"
"""MLflow tag on the search run and the registered version: the KFP run that made them."""
COMPILED_RUN_ID = "compiled"
"""Run id of the manifest compiled into a pipeline; each run renames and relabels it."""


@dataclass(frozen=True)
class PipelinePlan:
    """What a pipeline is compiled with, for one spec and backend.

    Attributes:
        spec: the spec, validated and checked for the backend (local paths made absolute
            for ``local``).
        manifest: the RayCluster manifest (``ray.io/v1``) a ``kuberay`` run creates, named
            and labelled for :data:`COMPILED_RUN_ID`; each run sets its own name and label.
        image: the image the pipeline steps run in: the one given, else
            ``spec.cluster.image``, else ``ghcr.io/dripml/trainer:<version>``.
    """

    spec: Spec
    manifest: dict[str, Any]
    image: str


def plan(spec_source: str | Path | Mapping[str, Any] | Spec, *, backend: str = "kuberay",
         image: str | None = None) -> PipelinePlan:
    """Validate the spec and check it for ``backend``; build the RayCluster manifest.

    Raises:
        SpecError: malformed spec, unknown backend (the message lists the valid ones), or
            data the backend's cluster cannot read (``kuberay``: a local path).
    """
    spec = backends.get(backend).check(load_spec(spec_source))
    manifest = objects.ray_cluster(spec, name=objects.cluster_name(spec.name, COMPILED_RUN_ID),
                                   run_id=COMPILED_RUN_ID)
    return PipelinePlan(spec, manifest, image or spec.cluster.image or objects.TRAINER_IMAGE)


# ---------------------------------------------------------------------------------------
# The steps (spec_yaml: the spec as YAML text, what a KFP parameter carries)
# ---------------------------------------------------------------------------------------


def validate_step(spec_yaml: str, backend: str) -> str:
    """Check the spec and that ``backend``'s cluster can read its data.

    Returns:
        The spec as normalized YAML (what the later steps receive).

    Raises:
        SpecError: malformed spec, unknown backend, or a local data path on ``kuberay``.
    """
    return backends.get(backend).check(_spec(spec_yaml)).to_yaml()


def create_cluster_step(spec_yaml: str, backend: str, run_id: str,
                        manifest: Mapping[str, Any]) -> str:
    """Create the run's cluster, named from (spec, run) so that a retried step adopts the
    one it made; return the name.

    Raises:
        ClusterError: the cluster could not be created, or one of that name belongs to
            another run.
    """
    spec = _spec(spec_yaml)
    name = objects.cluster_name(spec.name, run_id)
    return backends.get(backend).create(spec, name, run_id=run_id, manifest=manifest)


def wait_cluster_step(spec_yaml: str, backend: str, cluster: str) -> str:
    """Wait until ``cluster`` is ready; return its Job Submission API URL.

    Raises:
        ClusterError: not ready within ``cluster.ready_timeout_s``; it has been deleted.
    """
    spec = _spec(spec_yaml)
    return backends.get(backend).wait_ready(spec, cluster)


def search_step(spec_yaml: str, backend: str, cluster: str, address: str, tracking_uri: str,
                run_id: str, on_log: Callable[[str], None] | None = None,
                tags: Mapping[str, str] | None = None) -> str:
    """Run the search as a Ray job on the cluster at ``address``; return the MLflow run id.

    The job runs ``drip run`` with ``--no-alias``: versions are registered, the alias moves
    only in :func:`register_step`, so a run that fails later changes nothing users serve;
    and with ``--resume``: a retried step continues the unfinished search run tagged with
    its own ``run_id`` (its finished trials kept, see :mod:`dripml.productionize.unfinished`).

    Args:
        on_log: called with each new chunk of the job's output; default: print it.
        tags: more MLflow tags of the search run (the pipeline's ``run_id`` tag wins).

    Raises:
        ClusterError: the cluster is gone, or the job failed, was stopped or timed out (its
            output is in the message).
    """
    spec = _spec(spec_yaml)
    client = backends.get(backend).job_client(spec, cluster)
    os.environ.update(client.env)
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # read by Ray at import, below
    from dripml.orchestration import ray_jobs
    from dripml.productionize import tracking

    ray_jobs.submit_search(address, spec, tracking_uri=tracking_uri,
                       tags={**{str(k): str(v) for k, v in (tags or {}).items()},
                             RUN_TAG: run_id},
                       python=client.python, set_alias=False,
                       timeout_s=spec.cluster.job_timeout_s, on_log=on_log or _print_log)
    tracking.configure(tracking_uri)
    return tracking.find_search_run(spec.name, {RUN_TAG: run_id})


def register_step(spec_yaml: str, tracking_uri: str, search_run_id: str, run_id: str) -> str:
    """Point ``registry.alias`` at the version that search run chose (only if it still points
    where it did when the search started: :func:`dripml.productionize.store.move_alias`, else
    it is left and the step's log says who has it) and tag the version with ``run_id``.

    Returns:
        ``models:/NAME/VERSION``.

    Raises:
        ModelNotFoundError: the search run registered no chosen version.
    """
    from mlflow.tracking import MlflowClient

    from dripml.productionize import store, tracking

    spec = _spec(spec_yaml)
    tracking.configure(tracking_uri)
    version = tracking.chosen_version(spec.model_name, search_run_id)
    recorded, expected = store.recorded_alias(search_run_id)  # where it was at the search
    if recorded:
        move = store.move_alias(spec.model_name, spec.registry.alias, version,
                                expected=expected, run_id=search_run_id)
        if not move.moved:  # another run moved it meanwhile: left there, said in the log
            print(move.message, flush=True)
    else:
        tracking.set_model_alias(spec.model_name, spec.registry.alias, version)
    MlflowClient().set_model_version_tag(spec.model_name, version, RUN_TAG, run_id)
    return f"models:/{spec.model_name}/{version}"


def delete_cluster_step(spec_yaml: str, backend: str, run_id: str) -> str:
    """Delete every Ray cluster and job of ``run_id`` (found by run, so a cluster whose
    create step died before reporting its name goes too).

    Returns:
        What was deleted, comma-separated (empty when nothing was left).
    """
    spec = _spec(spec_yaml)
    return ",".join(backends.get(backend).delete_run(spec, run_id))


def alias_version(spec: Spec, tracking_uri: str) -> str:
    """``models:/NAME/VERSION`` that the spec's registry alias points to now (what a
    finished run registered).

    Raises:
        ModelNotFoundError: no such model or alias.
    """
    from dripml.productionize import tracking

    tracking.configure(tracking_uri)
    name, version = tracking.resolve_version(f"models:/{spec.model_name}@{spec.registry.alias}")
    return f"models:/{name}/{version}"


# ---------------------------------------------------------------------------------------


def _spec(spec_yaml: str) -> Spec:
    return load_spec(yaml.safe_load(spec_yaml))


def _print_log(chunk: str) -> None:
    print(chunk, end="", flush=True)
