"""The cluster backends by name: what a pipeline's ``backend`` parameter selects.

``get("kuberay")`` and ``get("local")`` return a
:class:`~dripml.orchestration.backend.ClusterBackend`; any other name is a
:class:`~dripml.errors.SpecError` that lists the valid ones. A new backend is a class with
the interface's five methods, added to :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from dripml.errors import SpecError
from dripml.orchestration.backend import ClusterBackend
from dripml.orchestration.kuberay.backend import KubeRayBackend
from dripml.orchestration.local_ray import LocalRayBackend

BACKENDS: Mapping[str, Callable[[], ClusterBackend]] = {
    KubeRayBackend.name: KubeRayBackend,
    LocalRayBackend.name: LocalRayBackend,
}
"""Backend name -> a factory of it (constructing one touches no cluster)."""


def names() -> list[str]:
    """The valid backend names, in :data:`BACKENDS` order."""
    return list(BACKENDS)


def check_name(name: str) -> None:
    """Raises:
        SpecError: ``name`` is no backend's; the message lists the valid names.
    """
    if name not in BACKENDS:
        raise SpecError(f"unknown cluster backend {name!r}; valid backends: {names()}")


def get(name: str) -> ClusterBackend:
    """A new backend named ``name``.

    Raises:
        SpecError: ``name`` is no backend's; the message lists the valid names.
    """
    check_name(name)
    return BACKENDS[name]()
