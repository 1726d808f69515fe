"""An in-process Kubernetes API for the kube module's tests: kmock's KubernetesEmulator behind
a real HTTP server on 127.0.0.1, in a thread, spoken to by the official ``kubernetes`` client.

Two things make it closer to a real API server than kmock alone:
- creating a RayCluster or RayJob validates it against KubeRay's CRD (strict: unknown fields
  fail) and answers 422 with the field paths, as kube-apiserver does;
- ``?watch=True`` (what the Python client sends) starts a watch, as Go's ParseBool does.

:class:`FakeOperator` plays KubeRay's part: it writes the statuses a real operator would.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp.web
import kmock
from kmock._internal import enums, parsing
from kubernetes import client

from dripml.orchestration.kuberay import schema
from dripml.orchestration.kuberay.objects import CLUSTER_PLURAL, GROUP, JOB_PLURAL, VERSION

CRD_DIR = Path(__file__).resolve().parents[2] / "shared" / "crds" / "kuberay"
CRDS = {CLUSTER_PLURAL: CRD_DIR / "ray.io_rayclusters.yaml",
        JOB_PLURAL: CRD_DIR / "ray.io_rayjobs.yaml"}

_guess_k8s = parsing.guess_k8s


def _guess_k8s_go_bools(k8s: Any, method: Any, query: dict[str, str]) -> Any:
    # The API server parses ?watch= with Go's strconv.ParseBool, which accepts "True".
    if query.get("watch") in ("1", "t", "T", "TRUE", "True"):
        query = {**query, "watch": "true"}
    return _guess_k8s(k8s, method, query)


parsing.guess_k8s = _guess_k8s_go_bools


class ValidatingEmulator(kmock.KubernetesEmulator):
    """kmock's emulator, answering 422 to KubeRay objects that their CRD rejects."""

    async def _handle(self, request: Any) -> Any:
        if request.action == enums.action.CREATE and request.resource is not None:
            crd = CRDS.get(request.resource.plural)
            if crd is not None and crd.exists():
                found = schema.problems(request.data, crd)
                if found:
                    return aiohttp.web.json_response(
                        {"apiVersion": "v1", "kind": "Status", "metadata": {}, "code": 422,
                         "status": "Failure", "reason": "Invalid",
                         "message": "; ".join(found)}, status=422)
        return await super()._handle(request)


class Emulator:
    """The emulator's URL, its stored objects and an ``ApiClient`` pointed at it."""

    def __init__(self, url: str, handler: ValidatingEmulator) -> None:
        self.url = url
        self.handler = handler
        configuration = client.Configuration()
        configuration.host = url
        self.api_client = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api_client)

    def names(self, plural: str, namespace: str = "dripml") -> list[str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        return sorted(i["metadata"]["name"] for i in items["items"])

    def set_status(self, plural: str, name: str, status: dict[str, Any],
                   namespace: str = "dripml") -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, plural, name, {"status": status})


@contextmanager
def kubernetes_emulator() -> Iterator[Emulator]:
    """Start the emulator on 127.0.0.1 in a thread; stop it on exit."""
    started = threading.Event()
    state: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        stop = asyncio.Event()
        async with ValidatingEmulator() as handler, kmock.Server(handler) as server:
            handler.resources[f"{GROUP}/{VERSION}/{CLUSTER_PLURAL}"] = {}
            handler.resources[f"{GROUP}/{VERSION}/{JOB_PLURAL}"] = {}
            state.update(handler=handler, url=str(server.url).rstrip("/"), stop=stop)
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the Kubernetes emulator did not start")
    emulator = Emulator(state["url"], state["handler"])
    try:
        yield emulator
    finally:
        emulator.api_client.close()
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(10)
