"""Keep the Ray that dripml starts on 127.0.0.1: every port it opens, nothing beyond loopback.

Ray 2.60 binds its gRPC servers (GCS, raylet node and object managers, core workers, the
dashboard agent) and its agents to the node's address, on every interface unless that address
is loopback; but ``ray.init(_node_ip_address="127.0.0.1")`` and ``ray start
--node-ip-address 127.0.0.1`` are rewritten to the machine's routable address
(``services.resolve_ip_for_localhost``). The one switch Ray reads that keeps loopback is the
one it uses on macOS and Windows, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: the node's address
is then 127.0.0.1 and every server binds to it (IPv4, or ``::ffff:127.0.0.1`` on a dual-stack
socket). These single-node clusters never take another node, so nothing is lost. Ray's
Prometheus exporter (the dashboard agent's metrics port) is not opened at all
(``enable_metrics_collection``: nothing of dripml reads Ray's metrics).

:func:`embedded_node` applies that to an in-process ``ray.init`` (the switch is read at
``import ray``, so it is set on Ray's constant for the duration of the call);
:data:`RAY_START_ENV` to a ``ray start`` process (and, inherited, to the jobs it runs);
:func:`joining` to a driver that joins a cluster at ``127.0.0.1:PORT``. :func:`note_joined`
says in one line that a cluster dripml joins keeps the binding it was started with.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from dripml.core.network import is_loopback

log = logging.getLogger(__name__)

RAY_START_ENV: dict[str, str] = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # the node address stays 127.0.0.1
    "RAY_enable_metrics_collection": "0",  # no Prometheus exporter in the dashboard agent
    "RAY_USAGE_STATS_ENABLED": "0",
}
"""Environment for ``ray start --head`` of a cluster that must listen on 127.0.0.1 only."""

SYSTEM_CONFIG: dict[str, Any] = {"enable_metrics_collection": False}
"""``ray.init(_system_config=...)`` entries of an embedded cluster: no metrics exporter."""


@contextmanager
def embedded_node() -> Iterator[None]:
    """Within the block, a ``ray.init()`` that starts a cluster gives its node the address
    127.0.0.1, so all of its servers bind to loopback; Ray's setting is restored on exit.

    If this Ray has no such setting (a version dripml does not pin), the cluster starts as
    Ray decides and a warning says so.
    """
    try:
        from ray._private import ray_constants
    except ImportError:  # pragma: no cover - Ray's layout changed
        ray_constants = None
    if ray_constants is None or not hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        log.warning("this Ray version has no ENABLE_RAY_CLUSTER setting: the embedded Ray "
                    "may listen beyond 127.0.0.1 (dripml is tested with Ray 2.60)")
        yield
        return
    before = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


@contextmanager
def joining(address: str) -> Iterator[None]:
    """Within the block, ``ray.init(address=address)`` keeps a loopback address as it is
    (Ray would rewrite ``127.0.0.1:PORT`` to the routable address, where a cluster bound to
    loopback does not listen). Other addresses are left to Ray."""
    if is_loopback_address(address):
        with embedded_node():
            yield
    else:
        yield


def is_loopback_address(address: str) -> bool:
    """Whether a Ray address (``host:port``, ``ray://host:port``, ``[::1]:port``) names this
    machine only. ``"auto"`` (whatever cluster this machine runs) counts as not loopback."""
    text = address if "://" in address else f"ray://{address}"
    try:
        host = urlsplit(text).hostname
    except ValueError:
        return False
    return host is not None and is_loopback(host)


def note_joined(address: str) -> None:
    """One line (logged at INFO for ``auto`` or a loopback address, WARNING otherwise): a
    joined cluster listens where it was started to, not where dripml's own clusters do."""
    level = logging.INFO if address == "auto" or is_loopback_address(address) else logging.WARNING
    log.log(level, "joining the Ray cluster at %s: its ports listen where it was started to "
            "listen (only the Ray that dripml starts itself is bound to 127.0.0.1)", address)
