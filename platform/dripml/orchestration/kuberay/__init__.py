"""KubeRay on Kubernetes: the RayCluster and RayJob objects a spec needs, and their lifecycle.

- :mod:`dripml.orchestration.kuberay.objects` builds ``ray.io/v1`` RayCluster and RayJob
  manifests as plain data from a :class:`~dripml.core.spec.Spec` (no cluster needed).
- :mod:`dripml.orchestration.kuberay.schema` checks manifests against the KubeRay CRD
  schemas, strictly (unknown fields fail), as a server with strict field validation does.
- :mod:`dripml.orchestration.kuberay.client` creates, watches and deletes them with the official
  ``kubernetes`` client, and handles the failures KubeRay users meet: a cluster that never
  becomes ready, a job that failed while its status still says Running, a re-run.
- :mod:`dripml.orchestration.kuberay.backend` is the ``kuberay`` cluster backend of the
  pipeline's steps (:class:`~dripml.orchestration.backend.ClusterBackend`) over the client.

There is no maintained Python client for KubeRay's custom resources, so the objects are
dicts built by small functions, checked against the CRDs, rather than generated classes.
"""
