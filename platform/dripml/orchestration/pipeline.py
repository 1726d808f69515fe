"""Cluster mode: the DRiP loop as a Kubeflow pipeline that creates a Ray cluster, runs the
search on it as a Ray job, registers the model and always deletes the cluster.

Front doors: ``drip pipeline compile SPEC -o pipeline.yaml``, ``drip pipeline submit SPEC
--host URL`` and ``drip run SPEC --orchestrator kfp-local``; in Python :func:`compile`,
:func:`submit` and :func:`run_local`. The pipeline itself is defined in
``pipelines/drip_pipeline.py``; its components call the ``*_step`` functions below, which
call the same functions as an embedded run (:func:`dripml.api.train` inside the Ray job).

Two backends sit behind the same steps, chosen by name: ``kuberay`` (a RayCluster through
:mod:`dripml.orchestration.kuberay`) on Kubernetes and ``local`` (a Ray head process through
:mod:`dripml.orchestration.local_ray`) for KFP's local runner.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from dripml.core.spec import Spec, load_spec
from dripml.errors import ClusterError, SpecError
from dripml.orchestration import local_ray as local_cluster
from dripml.orchestration.kuberay import objects

BACKENDS = ("kuberay", "local")
DEFAULT_TRACKING_URI = "http://dripml-mlflow.dripml.svc.cluster.local:5000"
"""The MLflow server of the ``charts/dripml`` release named dripml in namespace dripml."""
DEFAULT_SERVICE_ACCOUNT = "dripml-pipeline"
"""The ServiceAccount ``charts/dripml`` creates for pipeline steps (RayCluster RBAC)."""
RUN_TAG = "dripml.pipeline_run_id"
"""MLflow tag on the search run and the registered version: the KFP run that made them."""
REMOTE_SCHEMES = ("s3://", "dataset://", "http://", "https://", "gs://")
PIPELINE_FILE = Path(__file__).resolve().parents[3] / "pipelines" / "drip_pipeline.py"


# ---------------------------------------------------------------------------------------
# Steps: what the pipeline's components call
# ---------------------------------------------------------------------------------------


def validate_step(spec_yaml: str, backend: str) -> str:
    """Check the spec; on Kubernetes also that the cluster can read its data.

    Returns:
        The spec as normalized YAML.

    Raises:
        SpecError: malformed spec, unknown backend, or a local data path on ``kuberay``.
    """
    spec = _spec(spec_yaml)
    _check_backend(backend)
    if backend == "kuberay":
        check_remote_data(spec)
    return spec.to_yaml()


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


def with_absolute_paths(spec: Spec) -> Spec:
    """``spec`` with relative local data paths made absolute (the Ray job runs elsewhere)."""
    update = {}
    for field in ("train", "test"):
        path = getattr(spec.data, field)
        if path is not None and "://" not in str(path) and not Path(path).is_absolute():
            update[field] = str(Path(path).resolve())
    if not update:
        return spec
    return spec.model_copy(update={"data": spec.data.model_copy(update=update)})


def create_cluster_step(spec_yaml: str, backend: str, run_id: str,
                        manifest: Mapping[str, Any]) -> str:
    """Create the run's cluster, named from (spec, run) so a retried step adopts the one it
    made; return the name.

    Raises:
        ClusterError: the API server rejected the manifest, or a cluster of that name
            belongs to another run.
    """
    spec = _spec(spec_yaml)
    name = objects.cluster_name(spec.name, run_id)
    if backend == "local":
        local_cluster.create(name, run_id=run_id)
        return name
    from dripml.orchestration.kuberay.client import KubeRay

    KubeRay().create(named(manifest, name=name, run_id=run_id))
    return name


def named(manifest: Mapping[str, Any], *, name: str, run_id: str) -> dict[str, Any]:
    """A copy of a compiled RayCluster manifest with its run's name and run label."""
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


def wait_cluster_step(spec_yaml: str, backend: str, cluster: str) -> str:
    """Wait until ``cluster`` is ready; return its Job Submission API URL.

    Raises:
        ClusterError: not ready within ``cluster.ready_timeout_s``; it has been deleted.
    """
    spec = _spec(spec_yaml)
    if backend == "local":
        return local_cluster.wait_ready(cluster, timeout_s=spec.cluster.ready_timeout_s
                                        ).dashboard_url
    from dripml.orchestration.kuberay.client import KubeRay

    KubeRay().wait_ready(cluster, spec.cluster.namespace, timeout_s=spec.cluster.ready_timeout_s)
    return objects.dashboard_url(cluster, spec.cluster.namespace)


def search_step(spec_yaml: str, backend: str, cluster: str, address: str, tracking_uri: str,
                run_id: str, on_log: Callable[[str], None] | None = None) -> str:
    """Run the search as a Ray job on the cluster at ``address``; return the MLflow run id.

    The job runs ``drip run`` with ``--no-alias``: versions are registered, the alias moves
    only in :func:`register_step`, so a run that fails later changes nothing users serve.

    Raises:
        ClusterError: the job failed, was stopped or timed out (its output is in the message).
    """
    spec = _spec(spec_yaml)
    python = "python"
    if backend == "local":
        found = local_cluster.load(cluster)
        if found is None:
            raise ClusterError(f"local Ray cluster {cluster!r} is gone")
        os.environ.update(found.client_env())
        python = sys.executable
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # read by Ray at import, below
    from dripml.orchestration import ray_jobs as jobs
    from dripml.productionize import tracking

    jobs.submit_search(address, spec, tracking_uri=tracking_uri, tags={RUN_TAG: run_id},
                       python=python, set_alias=False, timeout_s=spec.cluster.job_timeout_s,
                       on_log=on_log or _print_log)
    tracking.configure(tracking_uri)
    return tracking.find_search_run(spec.name, {RUN_TAG: run_id})


def register_step(spec_yaml: str, tracking_uri: str, search_run_id: str, run_id: str) -> str:
    """Point ``registry.alias`` at the version that search run chose; return
    ``models:/NAME/VERSION``.

    Raises:
        ModelNotFoundError: the search run registered no chosen version.
    """
    from mlflow.tracking import MlflowClient

    from dripml.productionize import tracking

    spec = _spec(spec_yaml)
    tracking.configure(tracking_uri)
    version = tracking.chosen_version(spec.model_name, search_run_id)
    registered = tracking.set_model_alias(spec.model_name, spec.registry.alias, version)
    MlflowClient().set_model_version_tag(spec.model_name, version, RUN_TAG, run_id)
    return registered.model_uri


def delete_cluster_step(spec_yaml: str, backend: str, run_id: str) -> str:
    """Delete every Ray cluster and RayJob of ``run_id`` (by label, so a cluster whose
    create step died before reporting its name goes too); return what was deleted."""
    spec = _spec(spec_yaml)
    if backend == "local":
        deleted = local_cluster.delete_run(run_id)
    else:
        from dripml.orchestration.kuberay.client import KubeRay

        deleted = KubeRay().delete_run(run_id, spec.cluster.namespace)
    return ",".join(deleted)


# ---------------------------------------------------------------------------------------
# Front doors: compile, submit, run locally
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledPipeline:
    """A pipeline built for one spec.

    Attributes:
        function: the ``@dsl.pipeline`` function (for ``kfp.local`` or the compiler).
        spec: the validated spec compiled into it.
        manifest: the RayCluster manifest compiled into it (name set at run time).
    """

    function: Any
    spec: Spec
    manifest: dict[str, Any]


def build(spec_source: str | Path | Mapping[str, Any] | Spec, *, backend: str = "kuberay",
          image: str | None = None, tracking_uri: str = DEFAULT_TRACKING_URI,
          image_pull_secrets: list[str] | None = None) -> CompiledPipeline:
    """Validate the spec and build its pipeline.

    Args:
        image: the trainer image of the pipeline steps; default ``spec.cluster.image`` or
            ``ghcr.io/dripml/trainer:<version>``.

    Raises:
        SpecError: malformed spec, or (``kuberay``) data the cluster cannot read.
    """
    spec = load_spec(spec_source)
    _check_backend(backend)
    if backend == "kuberay":
        check_remote_data(spec)
    else:
        spec = with_absolute_paths(spec)
    manifest = objects.ray_cluster(spec, name=objects.cluster_name(spec.name, "compiled"),
                                   run_id="compiled")
    module = _pipeline_module()
    function = module.build(
        spec.to_yaml(), manifest, image=image or spec.cluster.image or objects.TRAINER_IMAGE,
        namespace=spec.cluster.namespace, auth_token_secret=spec.cluster.auth_token_secret,
        image_pull_secrets=image_pull_secrets, job_timeout_s=int(spec.cluster.job_timeout_s),
        ready_timeout_s=int(spec.cluster.ready_timeout_s), tracking_uri=tracking_uri)
    return CompiledPipeline(function, spec, manifest)


def compile(spec_source: str | Path | Mapping[str, Any] | Spec, output: str | Path, *,
            image: str | None = None, tracking_uri: str = DEFAULT_TRACKING_URI,
            image_pull_secrets: list[str] | None = None) -> Path:
    """Write the spec's pipeline as KFP IR YAML (what the Kubeflow Pipelines UI and API
    accept) to ``output``.

    Raises:
        SpecError: as :func:`build`.
    """
    from kfp import compiler

    built = build(spec_source, image=image, tracking_uri=tracking_uri,
                  image_pull_secrets=image_pull_secrets)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(built.function, str(path))
    return path


@dataclass(frozen=True)
class SubmittedRun:
    """A run created on a Kubeflow Pipelines server.

    Attributes:
        run_id: KFP's run id.
        url: the run's page in the KFP UI.
        experiment: the KFP experiment it belongs to.
    """

    run_id: str
    url: str
    experiment: str


def submit(spec_source: str | Path | Mapping[str, Any] | Spec, *, host: str,
           experiment: str | None = None, run_name: str | None = None,
           namespace: str | None = None, service_account: str = DEFAULT_SERVICE_ACCOUNT,
           image: str | None = None, tracking_uri: str = DEFAULT_TRACKING_URI) -> SubmittedRun:
    """Compile the spec's pipeline and create a run on the KFP server at ``host`` with
    ``kfp.Client`` (credentials as kfp.Client finds them: ``KF_PIPELINES_SA_TOKEN_PATH``,
    a kubeconfig, or none).

    Raises:
        SpecError: as :func:`build`.
        ClusterError: the server refused the run or could not be reached.
    """
    import kfp

    built = build(spec_source, image=image, tracking_uri=tracking_uri)
    experiment = experiment or built.spec.name
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder) / "pipeline.yaml"
        from kfp import compiler

        compiler.Compiler().compile(built.function, str(package))
        try:
            client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package), arguments={}, experiment_name=experiment,
                run_name=run_name or f"{built.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                namespace=namespace, service_account=service_account)
        except Exception as exc:  # kfp raises ApiException, urllib3 and connection errors
            raise ClusterError(f"Kubeflow Pipelines at {host} refused the run: {exc}") from exc
    return SubmittedRun(result.run_id, f"{host.rstrip('/')}/#/runs/details/{result.run_id}",
                        experiment)


@dataclass(frozen=True)
class LocalRun:
    """What ``--orchestrator kfp-local`` produced.

    Attributes:
        model_uri: ``models:/NAME/VERSION`` the alias now points to.
        alias_uri: ``models:/NAME@alias``.
        tracking_uri: the MLflow store used.
        wall_time_s: the whole pipeline, seconds.
        pipeline_root: where KFP's local runner kept the task outputs and logs.
    """

    model_uri: str
    alias_uri: str
    tracking_uri: str
    wall_time_s: float
    pipeline_root: str


def run_local(spec_source: str | Path | Mapping[str, Any] | Spec, *,
              tracking_uri: str | None = None,
              pipeline_root: str | Path = Path(".dripml") / "kfp") -> LocalRun:
    """Run the spec's pipeline with KFP's SubprocessRunner against a local Ray head: the
    same pipeline code as on a cluster, with the ``local`` backend.

    Every local cluster created during the run is deleted when it ends, even on Ctrl-C
    (the pipeline's exit handler does it otherwise; this covers an interrupted runner).

    Raises:
        SpecError: malformed spec (before anything starts).
        ClusterError: a step failed; the message names it (its log is above).
    """
    from kfp import local

    from dripml.productionize import tracking

    # The steps run in subprocesses: pin a relative store to this directory.
    uri = tracking.absolute_tracking_uri(tracking.resolve_tracking_uri(tracking_uri))
    built = build(spec_source, backend="local", tracking_uri=uri)
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=str(Path(pipeline_root).resolve()), raise_on_error=True)
    before = set(local_cluster.names())
    started = time.monotonic()
    try:
        built.function(tracking_uri=uri, backend="local")
    except RuntimeError as exc:
        raise ClusterError(f"the pipeline failed: {_plain(str(exc))}") from exc
    finally:
        for name in set(local_cluster.names()) - before:
            local_cluster.delete(name)
    spec = built.spec
    tracking.configure(uri)
    name, version = tracking.resolve_version(f"models:/{spec.model_name}@{spec.registry.alias}")
    return LocalRun(f"models:/{name}/{version}",
                    f"models:/{spec.model_name}@{spec.registry.alias}", uri,
                    time.monotonic() - started, str(Path(pipeline_root).resolve()))


# ---------------------------------------------------------------------------------------


def _spec(spec_yaml: str) -> Spec:
    return load_spec(yaml.safe_load(spec_yaml))


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise SpecError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")


def _pipeline_module() -> ModuleType:
    if not PIPELINE_FILE.exists():
        raise ClusterError(f"{PIPELINE_FILE} not found: `drip pipeline` runs from a dripml "
                           "source checkout (or the trainer image, which holds one)")
    loaded = sys.modules.get("dripml_pipelines.drip_pipeline")
    if loaded is not None:
        return loaded
    spec = importlib.util.spec_from_file_location("dripml_pipelines.drip_pipeline",
                                                  PIPELINE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _print_log(chunk: str) -> None:
    print(chunk, end="", flush=True)
