"""Deploy a run's frontier point from the page: embedded, an endpoint on a free loopback
port (``api.deploy(target="local")``); on a cluster, ``drip deploy --target kubernetes``.
The local endpoints live as long as the UI: :meth:`Deployments.stop_all` ends them."""

from __future__ import annotations

import shlex
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dripml import api
from dripml.core import refs
from dripml.core.network import free_loopback_port
from dripml.errors import DeployError
from dripml.ui.settings import UiSettings

if TYPE_CHECKING:
    from dripml.orchestration.run_store import RunView
    from dripml.productionize.serving import ServerHandle

PREDICT_ROUTE = "/predict"
CLUSTER_PORT = 3000
"""The ``dripml-endpoint`` chart's Service port."""


@dataclass(frozen=True)
class Endpoint:
    """A deployed model version: its URL and a curl line posting one example record."""

    url: str
    model: str
    version: int
    curl: str


def curl_line(url: str, record: dict[str, Any]) -> str:
    """``curl -s -X POST URL/predict -H 'Content-Type: application/json' -d '{...}'``."""
    import json

    payload = json.dumps({"records": [record]}, separators=(",", ":"))
    return (f"curl -s -X POST {url}{PREDICT_ROUTE} -H 'Content-Type: application/json' "
            f"-d {shlex.quote(payload)}")


class Deployments:
    """The endpoints started from the page (one per model version)."""

    def __init__(self, settings: UiSettings) -> None:
        self.settings = settings
        self._servers: dict[str, ServerHandle] = {}
        self._lock = threading.Lock()

    def deploy(self, run: RunView, version: int) -> str:
        """Deploy version ``version`` of ``run``'s registered model; return its URL once it
        answers (the caller checks the version is on the run's frontier).

        Embedded, the endpoint listens on a free port on 127.0.0.1 (the same version is
        deployed once and its URL returned again). ``deploy_target == "kubernetes"``: a Helm
        release of the ``dripml-endpoint`` chart; the URL is the in-cluster Service.

        Raises:
            DeployError, ModelRefError, ModelNotFoundError, ServeError: as :func:`api.deploy`.
        """
        if not run.model_name:
            raise DeployError(f"run {run.id} registered no model: nothing to deploy")
        ref = refs.ModelRef(run.model_name, version=str(version))
        key = f"{ref.name}/{ref.version}"
        if self.settings.deploy_target == "kubernetes":
            # Its own namespace, which exists: the UI's Role is namespaced (no namespace
            # creation rights).
            result = api.deploy(key, target="kubernetes", tracking_uri=self.settings.tracking_uri,
                                namespace=self.settings.resolved_namespace(),
                                create_namespace=False)
            plan = result.plan
            return (f"http://{getattr(plan, 'release', ref.name)}-dripml-endpoint."
                    f"{getattr(plan, 'namespace', 'dripml')}.svc:{CLUSTER_PORT}")
        with self._lock:
            running = self._servers.get(key)
            if running is not None and running.running():
                return running.url
            result = api.deploy(key, target="local", port=free_loopback_port(),
                                tracking_uri=self.settings.tracking_uri)
            assert result.server is not None
            self._servers[key] = result.server
            return result.server.url

    def plan(self, model: str, version: int, *, image: str | None = None) -> api.Deployment:
        """What :meth:`deploy` would do, changing nothing (a dry run)."""
        key = f"{model}/{version}"
        if self.settings.deploy_target == "kubernetes":
            return api.deploy(key, target="kubernetes", image=image, dry_run=True,
                              tracking_uri=self.settings.tracking_uri,
                              namespace=self.settings.resolved_namespace(),
                              create_namespace=False)
        return api.deploy(key, target="local", image=image, port=free_loopback_port(),
                          dry_run=True, tracking_uri=self.settings.tracking_uri)

    def stop_all(self) -> None:
        """Stop every local endpoint started here."""
        with self._lock:
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.stop()
