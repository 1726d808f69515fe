"""Run a search as a Ray job: submit ``drip run`` to a cluster through Ray's Job Submission
API and follow it to its end.

This is how the pipeline's search step uses a KubeRay or local Ray cluster: the driver runs
on the cluster's head, next to the workers, so the pipeline step only waits. The spec travels
in the job's working directory; the tracking URI in its environment (no credentials: the Ray
pods read those from their Secrets).

Ray reads ``RAY_AUTH_MODE`` when it is imported: callers set it to ``token`` first (the
pipeline steps and the CLI do) and give the token in ``RAY_AUTH_TOKEN`` or
``RAY_AUTH_TOKEN_PATH``.
"""

from __future__ import annotations

import shlex
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dripml.core.spec import Spec
from dripml.errors import ClusterError

AGENT_WAIT_S = 120.0
"""How long to retry a submission while the head's job agent is still starting."""


@dataclass(frozen=True)
class JobResult:
    """A finished Ray job.

    Attributes:
        job_id: Ray's submission id.
        status: ``SUCCEEDED``.
        duration_s: from submission to the end, seconds.
        log_tail: the last lines of the driver's output.
    """

    job_id: str
    status: str
    duration_s: float
    log_tail: str


def entrypoint(*, python: str, tracking_uri: str, tags: Mapping[str, str],
               set_alias: bool) -> str:
    """The shell command the job runs on the head: ``drip run`` joining its own cluster,
    with ``--resume``: a retried pipeline step continues the unfinished search of its own
    pipeline run (the tags, ``dripml.pipeline_run_id`` among them, must match; see
    :mod:`dripml.productionize.unfinished`), a first attempt finds none and starts one."""
    command = [python, "-m", "dripml.cli", "run", "spec.yaml", "--ray-address", "auto",
               "--tracking-uri", tracking_uri, "--resume"]
    for key, value in tags.items():
        command += ["--tag", f"{key}={value}"]
    if not set_alias:
        command.append("--no-alias")
    return shlex.join(command)


def submit_search(address: str, spec: Spec, *, tracking_uri: str, tags: Mapping[str, str],
                  python: str = "python", set_alias: bool = False, timeout_s: float,
                  poll_s: float = 2.0, on_log: Callable[[str], None] | None = None
                  ) -> JobResult:
    """Submit the search of ``spec`` to the Ray cluster whose dashboard is ``address``
    (``http://host:8265``) and wait for it.

    Args:
        tags: MLflow tags of the search run (the pipeline finds the run by them).
        python: the interpreter on the cluster (``python`` in the trainer image).
        set_alias: let the job move the registry alias (the pipeline moves it later).
        timeout_s: stop the job after this long, seconds.
        on_log: called with each new chunk of the driver's output.

    Raises:
        ClusterError: the job could not be submitted, FAILED or was STOPPED, or ran past
            ``timeout_s`` (then it is stopped); the message ends with the driver's output.
    """
    from ray.job_submission import JobSubmissionClient

    started = time.monotonic()
    client = _client(address, JobSubmissionClient)
    with tempfile.TemporaryDirectory(prefix="dripml-job-") as folder:
        (Path(folder) / "spec.yaml").write_text(spec.to_yaml())
        command = entrypoint(python=python, tracking_uri=tracking_uri, tags=tags,
                             set_alias=set_alias)
        job_id = _submit(client, command, {"working_dir": folder})
    shown = 0
    while True:
        job_status = client.get_job_status(job_id)
        logs = client.get_job_logs(job_id)
        if on_log and len(logs) > shown:
            on_log(logs[shown:])
        shown = len(logs)
        if job_status.is_terminal():
            break
        if time.monotonic() - started > timeout_s:
            client.stop_job(job_id)
            raise ClusterError(f"Ray job {job_id} ran past {timeout_s:.0f} s and was stopped; "
                               f"its output ended with:\n{_tail(logs)}")
        time.sleep(poll_s)
    status = str(job_status.value)
    if status != "SUCCEEDED":
        info = client.get_job_info(job_id)
        raise ClusterError(f"Ray job {job_id} {status}: {info.message or ''}\n"
                           f"its output ended with:\n{_tail(logs)}")
    return JobResult(job_id, status, time.monotonic() - started, _tail(logs))


def _client(address: str, factory: type) -> object:
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return factory(address)
        except (ConnectionError, RuntimeError) as exc:
            if "Authentication" in type(exc).__name__ or time.monotonic() > deadline:
                raise ClusterError(f"cannot reach Ray's Job Submission API at {address}: {exc}"
                                   ) from exc
            time.sleep(1)


def _submit(client: object, command: str, runtime_env: dict[str, object]) -> str:
    # The head answers before its job agent is up ("No available agent"): retry for a while.
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            return client.submit_job(entrypoint=command, runtime_env=runtime_env)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise ClusterError(f"submitting the search failed: {exc}") from exc
            time.sleep(1)


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
