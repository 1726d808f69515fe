"""One error hierarchy: every message says what was wrong, what was got, and what to do."""

from __future__ import annotations


class DripmlError(Exception):
    """Base class of every error dripml raises on purpose."""


class SpecError(DripmlError):
    """The spec is malformed; raised before anything starts. The message names the field."""


class DataError(DripmlError):
    """The data does not fit the spec: a missing column, an empty file, an unfit label."""


class ResourceError(DripmlError):
    """The spec asks for resources the cluster lacks (for example GPUs on a CPU-only machine)."""


class SearchError(DripmlError):
    """The search could not produce a usable trial (for example every trial failed)."""


class ConstraintError(SearchError):
    """No candidate meets the spec's serving-cost ``constraints``; the message names each
    constraint and the best value measured for it."""


class ModelNotFoundError(DripmlError):
    """A registered model, version or alias does not exist in the MLflow Model Registry."""


class ServeError(DripmlError):
    """The prediction server could not start (port taken, process died, not ready in time).

    The message includes the last lines of the server's log.
    """


class ClusterError(DripmlError):
    """A Ray cluster (KubeRay or local) could not be created, became not ready in time, or
    its job failed; the cluster has been deleted when this is raised."""
