"""The DRiP loop as a Kubeflow pipeline (KFP v2, kfp-kubernetes): define it for one spec,
compile it, submit it to a KFP server, or run it with KFP's local runner.

validate the spec -> create a Ray cluster -> wait until it is ready -> run the search on it
as a Ray job -> move the registry alias to the chosen model version; an exit handler deletes
the cluster whether the run succeeded, failed or was cancelled.

The steps are the components of :mod:`dripml.kfp.components` (each calls one verb of
:mod:`dripml.api`); they run in the dripml trainer image, which holds dripml, so
``packages_to_install`` stays empty. The cluster comes from the backend the pipeline's
``backend`` parameter names (``kuberay`` by default; ``local`` under :func:`run_local`).

:func:`define` makes the pipeline for one spec: the spec and the RayCluster manifest (built
by :mod:`dripml.orchestration.kuberay.objects`, GPU resources, tolerations and node selector
included) are compiled in as constants, so the YAML shows exactly what the run will create.

Front doors: ``drip pipeline compile SPEC -o pipeline.yaml``, ``drip pipeline submit SPEC
--host URL`` and ``drip run SPEC --orchestrator kfp-local``; in Python :func:`compile`,
:func:`submit` and :func:`run_local`.

No ``from __future__ import annotations`` here: KFP reads the pipeline function's parameter
types from its annotations, which must be types.
"""

import re
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kfp import dsl, kubernetes

from dripml.core.spec import Spec
from dripml.errors import PipelineError
from dripml.kfp import components
from dripml.orchestration import local_ray
from dripml.orchestration import pipeline as steps
from dripml.orchestration.pipeline import DEFAULT_SERVICE_ACCOUNT, DEFAULT_TRACKING_URI, RUN_TAG

PIPELINE_NAME = "dripml-drip"
POD_LABEL = ("app.kubernetes.io/part-of", "dripml")
STEP_USER = 10001
"""UID and GID the steps run as (the trainer image's user)."""

SpecSource = str | Path | Mapping[str, Any] | Spec

__all__ = ["DEFAULT_SERVICE_ACCOUNT", "DEFAULT_TRACKING_URI", "PIPELINE_NAME", "RUN_TAG",
           "CompiledPipeline", "LocalRun", "SubmittedRun", "build", "compile", "define",
           "run_local", "submit"]


def define(spec_yaml: str, manifest: dict[str, Any], *, image: str, namespace: str,
           auth_token_secret: str | None, image_pull_secrets: list[str] | None = None,
           job_timeout_s: int, ready_timeout_s: int, tracking_uri: str,
           tags: Mapping[str, str] | None = None) -> Any:
    """The pipeline function for one spec (pass it to ``kfp.compiler.Compiler().compile``
    or call it under ``kfp.local``).

    Args:
        spec_yaml: the validated spec, compiled in.
        manifest: the RayCluster manifest, compiled in; its name and run label are set at
            run time from the pipeline run's id.
        image: the trainer image the steps run in.
        namespace: where the RayCluster goes (recorded in ``manifest`` too).
        auth_token_secret: Secret (key ``auth_token``) with the Ray token, given to the
            search step as ``RAY_AUTH_TOKEN``; None when authentication is off.
        image_pull_secrets: Secrets the steps' pods pull ``image`` with.
        job_timeout_s, ready_timeout_s: bounds of the search and of the cluster start,
            seconds; the steps' pods get them (plus a margin) as ``activeDeadlineSeconds``.
        tracking_uri: default of the pipeline parameter ``tracking_uri``.
        tags: MLflow tags the search run gets (compiled in; e.g. the UI's
            ``dripml.ui_run`` and the recipe's), beside ``dripml.pipeline_run_id``.

    Returns:
        The ``@dsl.pipeline`` function, with parameters ``tracking_uri`` and ``backend``
        (default ``kuberay``).
    """
    # The trainer image holds dripml and kfp: steps install nothing when they start.
    component = dsl.component(base_image=image, install_kfp_package=False)
    step = {f.__name__: component(f) for f in components.STEPS}

    def harden(task: dsl.PipelineTask, timeout_s: int, *, retries: int = 0) -> None:
        task.set_caching_options(False)  # every step acts on the outside world
        task.set_cpu_limit("1").set_memory_limit("2G")
        kubernetes.set_security_context(task, run_as_user=STEP_USER, run_as_group=STEP_USER,
                                        run_as_non_root=True)
        kubernetes.set_timeout(task, timeout_s)
        kubernetes.add_pod_label(task, *POD_LABEL)
        if image_pull_secrets:
            kubernetes.set_image_pull_secrets(task, image_pull_secrets)
        if retries:
            task.set_retry(num_retries=retries, backoff_duration="30s")

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="dripml: K-fold hyper-parameter search on a KubeRay cluster, "
                              "refine by cost, register; the cluster is always deleted.")
    def drip(tracking_uri: str = tracking_uri, backend: str = "kuberay") -> None:
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        cleanup = step["delete_cluster"](spec_yaml=spec_yaml, backend=backend, run_id=run_id)
        cleanup.set_display_name("delete Ray cluster")
        harden(cleanup, 900, retries=3)
        with dsl.ExitHandler(cleanup, name="drip"):
            checked = step["validate_spec"](spec_yaml=spec_yaml, backend=backend)
            checked.set_display_name("validate spec")
            harden(checked, 300)
            created = step["create_cluster"](spec_yaml=checked.output, backend=backend,
                                             run_id=run_id, manifest=manifest)
            created.set_display_name(f"create RayCluster in {namespace}")
            harden(created, 300, retries=2)  # a retry adopts the cluster, never duplicates it
            ready = step["wait_for_cluster"](spec_yaml=checked.output, backend=backend,
                                             cluster=created.output)
            ready.set_display_name("wait for RayCluster")
            harden(ready, ready_timeout_s + 300)
            search = step["run_search"](spec_yaml=checked.output, backend=backend,
                                        cluster=created.output, address=ready.output,
                                        tracking_uri=tracking_uri, run_id=run_id,
                                        tags=dict(tags or {}))
            search.set_display_name("search (Ray job)")
            harden(search, job_timeout_s + 600)
            if auth_token_secret:
                kubernetes.use_secret_as_env(search, secret_name=auth_token_secret,
                                             secret_key_to_env={"auth_token": "RAY_AUTH_TOKEN"})
            registered = step["register_model"](spec_yaml=checked.output,
                                                tracking_uri=tracking_uri,
                                                search_run_id=search.output, run_id=run_id)
            registered.set_display_name("register model")
            harden(registered, 600, retries=2)

    return drip


# ---------------------------------------------------------------------------------------
# Front doors: build, compile, submit, run locally
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


def build(spec_source: SpecSource, *, backend: str = "kuberay", image: str | None = None,
          tracking_uri: str | None = None,
          image_pull_secrets: list[str] | None = None,
          tags: Mapping[str, str] | None = None) -> CompiledPipeline:
    """Validate the spec for ``backend`` and build its pipeline.

    Args:
        spec_source: a YAML path, a mapping or a :class:`~dripml.core.spec.Spec`.
        backend: the cluster backend the spec is checked for (``kuberay``: its data must be
            remote; ``local``: local paths are made absolute).
        image: the trainer image of the pipeline steps; default ``spec.cluster.image`` or
            ``ghcr.io/dripml/trainer:<version>``.
        tracking_uri: MLflow as the steps reach it (default :data:`DEFAULT_TRACKING_URI`,
            the ``charts/dripml`` server).
        image_pull_secrets: Secrets the steps' pods pull ``image`` with.
        tags: MLflow tags of the search run (``KEY`` -> ``VALUE``), compiled in.

    Raises:
        SpecError: malformed spec, unknown backend, or (``kuberay``) data the cluster
            cannot read.
    """
    planned = steps.plan(spec_source, backend=backend, image=image)
    spec = planned.spec
    function = define(
        spec.to_yaml(), planned.manifest, image=planned.image, namespace=spec.cluster.namespace,
        auth_token_secret=spec.cluster.auth_token_secret, image_pull_secrets=image_pull_secrets,
        job_timeout_s=int(spec.cluster.job_timeout_s),
        ready_timeout_s=int(spec.cluster.ready_timeout_s),
        tracking_uri=tracking_uri or DEFAULT_TRACKING_URI, tags=tags)
    return CompiledPipeline(function, spec, planned.manifest)


def compile(spec_source: SpecSource, output: str | Path, *, image: str | None = None,
            tracking_uri: str | None = None,
            image_pull_secrets: list[str] | None = None) -> Path:
    """Write the spec's pipeline as KFP IR YAML (what the Kubeflow Pipelines UI and API
    accept) to ``output``, creating its folder.

    Returns:
        The path written.

    Raises:
        SpecError: as :func:`build` (nothing is written).
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


def submit(spec_source: SpecSource, *, host: str, experiment: str | None = None,
           run_name: str | None = None, namespace: str | None = None,
           service_account: str = DEFAULT_SERVICE_ACCOUNT, image: str | None = None,
           tracking_uri: str | None = None,
           tags: Mapping[str, str] | None = None) -> SubmittedRun:
    """Compile the spec's pipeline and create a run of it on the KFP server at ``host`` with
    ``kfp.Client`` (credentials as kfp.Client finds them: ``KF_PIPELINES_SA_TOKEN_PATH``,
    a kubeconfig, or none).

    Args:
        host: the KFP API, e.g. ``http://ml-pipeline-ui.kubeflow:80``.
        experiment: the KFP experiment (default: the spec's name).
        run_name: default ``<spec name>-<YYYYmmdd-HHMMSS>``.
        namespace: the Kubeflow profile namespace (multi-user installs).
        service_account: what the steps run as (RayCluster RBAC).
        image, tracking_uri: as :func:`build`.
        tags: MLflow tags the run's search run carries (``drip pipeline submit --tag``), as
            ``drip run --tag`` gives them.

    Raises:
        SpecError: as :func:`build`.
        PipelineError: (a ClusterError) the server refused the run or could not be reached.
    """
    import kfp
    from kfp import compiler

    built = build(spec_source, image=image, tracking_uri=tracking_uri, tags=tags)
    experiment = experiment or built.spec.name
    with tempfile.TemporaryDirectory() as folder:
        package = Path(folder) / "pipeline.yaml"
        compiler.Compiler().compile(built.function, str(package))
        try:
            client = kfp.Client(host=host, namespace=namespace)
            result = client.create_run_from_pipeline_package(
                str(package), arguments={}, experiment_name=experiment,
                run_name=run_name or f"{built.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                namespace=namespace, service_account=service_account)
        except Exception as exc:  # kfp raises ApiException, urllib3 and connection errors
            raise PipelineError(f"Kubeflow Pipelines at {host} refused the run: {exc}") from exc
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


def run_local(spec_source: SpecSource, *, tracking_uri: str | None = None,
              pipeline_root: str | Path = Path(".dripml") / "kfp") -> LocalRun:
    """Run the spec's pipeline with KFP's SubprocessRunner against a local Ray head: the
    same pipeline as on a cluster, with the ``local`` backend.

    Every local cluster created during the run is deleted when it ends, even on Ctrl-C
    (the pipeline's exit handler does it otherwise; this covers an interrupted runner).

    Args:
        tracking_uri: the MLflow store (default ``MLFLOW_TRACKING_URI``, else the embedded
            one under ``./.dripml``); made absolute, as the steps run in subprocesses.
        pipeline_root: where KFP's local runner keeps task outputs and logs.

    Raises:
        SpecError: malformed spec (before anything starts).
        PipelineError: (a ClusterError) a step failed; the message names it (its log is
            above).
    """
    from kfp import local

    from dripml import settings

    # The steps run in subprocesses: pin a relative store to this directory.
    uri = settings.resolve_tracking_uri(tracking_uri, absolute=True)
    built = build(spec_source, backend=local_ray.LocalRayBackend.name, tracking_uri=uri)
    root = Path(pipeline_root).resolve()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root),
               raise_on_error=True)
    started = time.monotonic()
    with local_ray.deleting_new_clusters():
        try:
            built.function(tracking_uri=uri, backend=local_ray.LocalRayBackend.name)
        except RuntimeError as exc:
            raise PipelineError(f"the pipeline failed: {_plain(str(exc))}") from exc
    spec = built.spec
    return LocalRun(steps.alias_version(spec, uri),
                    f"models:/{spec.model_name}@{spec.registry.alias}", uri,
                    time.monotonic() - started, str(root))


def _plain(text: str) -> str:
    """``text`` without ANSI colour codes (KFP's local runner colours its messages)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)
