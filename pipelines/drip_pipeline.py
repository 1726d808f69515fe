"""The DRiP loop as a Kubeflow pipeline (KFP v2, kfp-kubernetes).

validate the spec -> create a RayCluster -> wait until it is ready -> run the search on it
as a Ray job -> move the registry alias to the chosen model version; an exit handler deletes
the cluster whether the run succeeded, failed or was cancelled.

Every component is a thin wrapper over one function of :mod:`dripml.orchestration.pipeline` (one code
path: the CLI, the Python API and these components call the same functions); they run in
the dripml trainer image, which holds dripml, so ``packages_to_install`` stays empty.

:func:`build` makes the pipeline for one spec: the spec and the RayCluster manifest (built
by :mod:`dripml.orchestration.kuberay.objects`, GPU resources, tolerations and node selector included) are
compiled in as constants, so the YAML shows exactly what the run will create. Use it
through ``drip pipeline compile SPEC`` / ``drip pipeline submit SPEC``.
"""


from typing import Any

from kfp import dsl, kubernetes

PIPELINE_NAME = "dripml-drip"
POD_LABEL = ("app.kubernetes.io/part-of", "dripml")
STEP_USER = 10001


def validate_spec(spec_yaml: str, backend: str) -> str:
    """Check the spec (and that a cluster can read its data); return it normalized."""
    from dripml.orchestration import pipeline

    return pipeline.validate_step(spec_yaml, backend)


def create_cluster(spec_yaml: str, backend: str, run_id: str, manifest: dict) -> str:
    """Create the run's Ray cluster (or adopt it on a retry); return its name."""
    from dripml.orchestration import pipeline

    return pipeline.create_cluster_step(spec_yaml, backend, run_id, manifest)


def wait_for_cluster(spec_yaml: str, backend: str, cluster: str) -> str:
    """Wait until the cluster is ready (else delete it and fail); return its job API URL."""
    from dripml.orchestration import pipeline

    return pipeline.wait_cluster_step(spec_yaml, backend, cluster)


def run_search(spec_yaml: str, backend: str, cluster: str, address: str, tracking_uri: str,
               run_id: str) -> str:
    """Run Discover and Refine as a Ray job on the cluster; return the MLflow run id."""
    from dripml.orchestration import pipeline

    return pipeline.search_step(spec_yaml, backend, cluster, address, tracking_uri, run_id)


def register_model(spec_yaml: str, tracking_uri: str, search_run_id: str, run_id: str) -> str:
    """Point the registry alias at the version the search chose; return its model URI."""
    from dripml.orchestration import pipeline

    return pipeline.register_step(spec_yaml, tracking_uri, search_run_id, run_id)


def delete_cluster(spec_yaml: str, backend: str, run_id: str) -> str:
    """Delete every Ray cluster and job of this run (the exit handler)."""
    from dripml.orchestration import pipeline

    return pipeline.delete_cluster_step(spec_yaml, backend, run_id)


def build(spec_yaml: str, manifest: dict[str, Any], *, image: str, namespace: str,
          auth_token_secret: str | None, image_pull_secrets: list[str] | None = None,
          job_timeout_s: int, ready_timeout_s: int, tracking_uri: str) -> Any:
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
        job_timeout_s, ready_timeout_s: bounds of the search and of the cluster start;
            the steps' pods get them (plus a margin) as ``activeDeadlineSeconds``.
        tracking_uri: default of the pipeline parameter ``tracking_uri``.
    """
    # The trainer image holds dripml and kfp: steps install nothing when they start.
    component = dsl.component(base_image=image, install_kfp_package=False)
    steps = {f.__name__: component(f) for f in (validate_spec, create_cluster, wait_for_cluster,
                                                run_search, register_model, delete_cluster)}

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
        cleanup = steps["delete_cluster"](spec_yaml=spec_yaml, backend=backend, run_id=run_id)
        cleanup.set_display_name("delete Ray cluster")
        harden(cleanup, 900, retries=3)
        with dsl.ExitHandler(cleanup, name="drip"):
            checked = steps["validate_spec"](spec_yaml=spec_yaml, backend=backend)
            checked.set_display_name("validate spec")
            harden(checked, 300)
            created = steps["create_cluster"](spec_yaml=checked.output, backend=backend,
                                              run_id=run_id, manifest=manifest)
            created.set_display_name(f"create RayCluster in {namespace}")
            harden(created, 300, retries=2)  # a retry adopts the cluster, never duplicates it
            ready = steps["wait_for_cluster"](spec_yaml=checked.output, backend=backend,
                                              cluster=created.output)
            ready.set_display_name("wait for RayCluster")
            harden(ready, ready_timeout_s + 300)
            search = steps["run_search"](spec_yaml=checked.output, backend=backend,
                                         cluster=created.output, address=ready.output,
                                         tracking_uri=tracking_uri, run_id=run_id)
            search.set_display_name("search (Ray job)")
            harden(search, job_timeout_s + 600)
            if auth_token_secret:
                kubernetes.use_secret_as_env(search, secret_name=auth_token_secret,
                                             secret_key_to_env={"auth_token": "RAY_AUTH_TOKEN"})
            registered = steps["register_model"](spec_yaml=checked.output,
                                                 tracking_uri=tracking_uri,
                                                 search_run_id=search.output, run_id=run_id)
            registered.set_display_name("register model")
            harden(registered, 600, retries=2)

    return drip
