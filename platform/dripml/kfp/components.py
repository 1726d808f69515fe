"""The pipeline's steps as KFP components: each calls one verb of :mod:`dripml.api`.

=====================  ==========================================  ====================
component (KFP task)   verb                                        returns
=====================  ==========================================  ====================
``validate_spec``      :func:`dripml.api.validate_for_cluster`     the spec, normalized
``create_cluster``     :func:`dripml.api.create_cluster`           the cluster's name
``wait_for_cluster``   :func:`dripml.api.wait_for_cluster`         its job API URL
``run_search``         :func:`dripml.api.search_on_cluster`        the MLflow run id
``register_model``     :func:`dripml.api.register_chosen`          ``models:/NAME/VER``
``delete_cluster``     :func:`dripml.api.delete_clusters`          what was deleted
=====================  ==========================================  ====================

KFP ships a lightweight component as its function's source alone and runs it with
``kfp.dsl.executor_main`` in the trainer image, which holds dripml (so nothing is
pip-installed): each function imports what it needs in its body and uses nothing else of
this module. That is also why this module has no ``from __future__ import annotations``: KFP
reads the parameters' types from the annotations, which must be types, not strings.
"""


def validate_spec(spec_yaml: str, backend: str) -> str:
    """Check the spec (and that the backend's cluster can read its data); return it
    normalized."""
    from dripml import api

    return api.validate_for_cluster(spec_yaml, backend)


def create_cluster(spec_yaml: str, backend: str, run_id: str, manifest: dict) -> str:
    """Create the run's Ray cluster (or adopt it on a retry); return its name."""
    from dripml import api

    return api.create_cluster(spec_yaml, backend, run_id, manifest)


def wait_for_cluster(spec_yaml: str, backend: str, cluster: str) -> str:
    """Wait until the cluster is ready (else delete it and fail); return its job API URL."""
    from dripml import api

    return api.wait_for_cluster(spec_yaml, backend, cluster)


def run_search(spec_yaml: str, backend: str, cluster: str, address: str, tracking_uri: str,
               run_id: str, tags: dict) -> str:
    """Run Discover and Refine as a Ray job on the cluster, its search run carrying ``tags``
    beside the pipeline run's; return the MLflow run id."""
    import os

    # Ray reads RAY_AUTH_MODE once, when it is imported (dripml.api imports it): set first.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from dripml import api

    return api.search_on_cluster(spec_yaml, backend, cluster, address, tracking_uri, run_id,
                                 tags)


def register_model(spec_yaml: str, tracking_uri: str, search_run_id: str, run_id: str) -> str:
    """Point the registry alias at the version the search chose; return its model URI."""
    from dripml import api

    return api.register_chosen(spec_yaml, tracking_uri, search_run_id, run_id)


def delete_cluster(spec_yaml: str, backend: str, run_id: str) -> str:
    """Delete every Ray cluster and job of this run (the exit handler)."""
    from dripml import api

    return api.delete_clusters(spec_yaml, backend, run_id)


STEPS = (validate_spec, create_cluster, wait_for_cluster, run_search, register_model,
         delete_cluster)
"""Every component function, in the order the pipeline runs them."""
