"""A Ray cluster as a local process: what ``drip run --orchestrator kfp-local`` uses in place
of a KubeRay cluster, as the ``local`` backend (:class:`LocalRayBackend`, an implementation of
:class:`dripml.orchestration.backend.ClusterBackend`).

:func:`create` starts ``ray start --head --block`` in its own session, on 127.0.0.1 ports of
its own (so several can run beside each other and beside an embedded Ray), with the dashboard
and its Job Submission API on 127.0.0.1 and a token of its own. What a later step needs to
find it (PID, addresses, token file) is written to ``.dripml/clusters/<name>.json``.
:func:`delete` stops the whole process group by its ID, never with ``ray stop`` (which stops
every Ray cluster of the user).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

from dripml.core.network import free_loopback_port
from dripml.core.spec import Spec
from dripml.errors import ClusterError
from dripml.orchestration import loopback
from dripml.orchestration.backend import JobClient

STATE_DIR = Path(".dripml") / "clusters"
"""Where each local cluster's state file lives, relative to the working directory."""


@dataclass(frozen=True)
class LocalCluster:
    """A running local Ray head.

    Attributes:
        name: the cluster's name (its state file's stem).
        pid: PID (and process group ID) of ``ray start --block``.
        dashboard_url: the Job Submission API, ``http://127.0.0.1:PORT``.
        gcs_address: ``127.0.0.1:PORT`` for ``ray.init(address=...)``.
        token_file: file holding the cluster's Ray token (mode 0600).
        temp_dir: Ray's session directory root.
        run_id: the pipeline run that created it.
    """

    name: str
    pid: int
    dashboard_url: str
    gcs_address: str
    token_file: str
    temp_dir: str
    run_id: str

    def client_env(self) -> dict[str, str]:
        """Environment for a Ray client of this cluster (``RAY_AUTH_MODE`` + token path)."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token_file}


def state_file(name: str, state_dir: Path | None = None) -> Path:
    return (state_dir or STATE_DIR).resolve() / f"{name}.json"


def create(name: str, *, run_id: str, num_cpus: int | None = None,
           state_dir: Path | None = None) -> LocalCluster:
    """Start a Ray head named ``name``, or return the one already running under that name
    (a retried step).

    Raises:
        ClusterError: ``ray start`` exited at once (its output is in the message).
    """
    existing = load(name, state_dir)
    if existing is not None and _alive(existing.pid):
        return existing
    folder = state_file(name, state_dir).parent
    folder.mkdir(parents=True, exist_ok=True)
    token_file = folder / f"{name}.token"
    token_file.touch(mode=0o600)
    token_file.write_text(secrets.token_hex(32))
    # Unix socket paths are limited to 107 bytes: keep Ray's directory short.
    temp_dir = Path("/tmp") / f"dripml-ray-{secrets.token_hex(4)}"
    gcs_port, dashboard_port = free_loopback_port(), free_loopback_port()
    ray = Path(sys.executable).parent / "ray"
    command = [str(ray) if ray.exists() else "ray", "start", "--head", "--block",
               "--port", str(gcs_port), "--node-ip-address", "127.0.0.1",
               "--include-dashboard=true", "--dashboard-host", "127.0.0.1",
               "--dashboard-port", str(dashboard_port),
               "--dashboard-agent-listen-port", str(free_loopback_port()),
               "--dashboard-agent-grpc-port", str(free_loopback_port()),
               "--metrics-export-port", str(free_loopback_port()),
               "--runtime-env-agent-port", str(free_loopback_port()),
               "--ray-client-server-port", str(free_loopback_port()),
               "--temp-dir", str(temp_dir), "--disable-usage-stats"]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
           **loopback.RAY_START_ENV}  # every port on 127.0.0.1, no metrics exporter
    env.pop("RAY_AUTH_TOKEN", None)
    env.pop("RAY_ADDRESS", None)
    log = (folder / f"{name}.log").open("w")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    cluster = LocalCluster(name, process.pid, f"http://127.0.0.1:{dashboard_port}",
                           f"127.0.0.1:{gcs_port}", str(token_file), str(temp_dir), run_id)
    state_file(name, state_dir).write_text(json.dumps(asdict(cluster), indent=2))
    return cluster


def load(name: str, state_dir: Path | None = None) -> LocalCluster | None:
    path = state_file(name, state_dir)
    if not path.exists():
        return None
    return LocalCluster(**json.loads(path.read_text()))


def wait_ready(name: str, *, timeout_s: float = 120.0, state_dir: Path | None = None
               ) -> LocalCluster:
    """Wait until the head's Job Submission API answers.

    Raises:
        ClusterError: the head exited, or was not ready after ``timeout_s`` (it is then
            deleted); the message ends with its log.
    """
    cluster = load(name, state_dir)
    if cluster is None:
        raise ClusterError(f"no local Ray cluster named {name!r}; create it first")
    deadline = time.monotonic() + timeout_s
    headers = {"Authorization": f"Bearer {Path(cluster.token_file).read_text().strip()}"}
    while time.monotonic() < deadline:
        if not _alive(cluster.pid):
            log = _log_tail(name, state_dir)
            delete(name, state_dir=state_dir)
            raise ClusterError(f"local Ray head {name} exited while starting:\n{log}")
        try:
            if httpx.get(f"{cluster.dashboard_url}/api/version", headers=headers,
                         timeout=2).status_code == 200:
                return cluster
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    log = _log_tail(name, state_dir)
    delete(name, state_dir=state_dir)
    raise ClusterError(f"local Ray head {name} was not ready after {timeout_s:.0f} s and was "
                       f"deleted:\n{log}")


def delete(name: str, *, grace_s: float = 5.0, state_dir: Path | None = None) -> bool:
    """Stop the head's process group (SIGTERM, then SIGKILL after ``grace_s``) and remove
    its state. Returns whether it was there."""
    cluster = load(name, state_dir)
    if cluster is None:
        return False
    _stop_group(cluster.pid, grace_s)
    shutil.rmtree(cluster.temp_dir, ignore_errors=True)
    for path in (state_file(name, state_dir), Path(cluster.token_file)):
        path.unlink(missing_ok=True)
    return True


def names(state_dir: Path | None = None) -> list[str]:
    """Local clusters with a state file (running or not yet cleaned up)."""
    folder = (state_dir or STATE_DIR).resolve()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []


@contextmanager
def deleting_new_clusters(state_dir: Path | None = None) -> Iterator[None]:
    """Delete, when the block exits however it exits (Ctrl-C included), every local cluster
    created in it."""
    before = set(names(state_dir))
    try:
        yield
    finally:
        for name in set(names(state_dir)) - before:
            delete(name, state_dir=state_dir)


def delete_run(run_id: str, *, state_dir: Path | None = None) -> list[str]:
    """Delete every local cluster created by pipeline run ``run_id``."""
    deleted = []
    for name in names(state_dir):
        cluster = load(name, state_dir)
        if cluster is not None and cluster.run_id == run_id and delete(name, state_dir=state_dir):
            deleted.append(name)
    return deleted


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie of ours is not alive
        waited, _ = os.waitpid(pid, os.WNOHANG)
        return waited == 0
    except ChildProcessError:
        return True


def _stop_group(pgid: int, grace_s: float) -> None:
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            _reap(pgid)
            time.sleep(0.2)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _log_tail(name: str, state_dir: Path | None, lines: int = 30) -> str:
    path = state_file(name, state_dir).with_suffix(".log")
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------------------------------
# The ``local`` cluster backend
# ---------------------------------------------------------------------------------------


class LocalRayBackend:
    """Local Ray heads (:func:`create`), one per pipeline run, found again by name through
    their state files under ``state_dir`` (default :data:`STATE_DIR` of the working
    directory, which KFP's local runner shares with its steps).

    Args:
        state_dir: where the clusters' state files live.
    """

    name: ClassVar[str] = "local"

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir

    def check(self, spec: Spec) -> Spec:
        """``spec`` with relative local data paths made absolute (the search runs as a Ray
        job, in a working directory of its own)."""
        update = {}
        for field in ("train", "test"):
            path = getattr(spec.data, field)
            if path is not None and "://" not in str(path) and not Path(path).is_absolute():
                update[field] = str(Path(path).resolve())
        if not update:
            return spec
        return spec.model_copy(update={"data": spec.data.model_copy(update=update)})

    def create(self, spec: Spec, name: str, *, run_id: str, manifest: Mapping[str, Any]) -> str:
        """Start Ray head ``name`` for ``run_id`` (or adopt the running one); ``manifest`` is
        not used.

        Raises:
            ClusterError: ``ray start`` exited at once.
        """
        create(name, run_id=run_id, state_dir=self.state_dir)
        return name

    def wait_ready(self, spec: Spec, name: str) -> str:
        """Wait for head ``name``; return its Job Submission API, ``http://127.0.0.1:PORT``.

        Raises:
            ClusterError: it exited, or was not ready in ``spec.cluster.ready_timeout_s``
                (it is deleted).
        """
        return wait_ready(name, timeout_s=spec.cluster.ready_timeout_s,
                          state_dir=self.state_dir).dashboard_url

    def job_client(self, spec: Spec, name: str) -> JobClient:
        """This interpreter (the head runs on this machine) and the head's token.

        Raises:
            ClusterError: no local cluster ``name`` (it was deleted).
        """
        found = load(name, self.state_dir)
        if found is None:
            raise ClusterError(f"local Ray cluster {name!r} is gone")
        return JobClient(python=sys.executable, env=found.client_env())

    def delete_run(self, spec: Spec, run_id: str) -> list[str]:
        """Stop every local head of ``run_id``; return their names."""
        return delete_run(run_id, state_dir=self.state_dir)
