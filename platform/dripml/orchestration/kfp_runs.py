"""The web page's runs on a cluster: each is a Kubeflow Pipelines run, submitted through the
same code path as the shell (``drip pipeline submit``) and followed with ``kfp.Client``.

When the UI is given a KFP host (``drip ui --kfp-host URL --upload-uri s3://bucket/prefix``),
its :class:`~dripml.orchestration.run_queue.RunQueue` hands its runs to a :class:`KfpRuns`
instead of starting ``drip run`` children:

- :meth:`KfpRuns.stage` copies an upload to ``s3://bucket/prefix/<upload id>.<ext>`` (boto3,
  credentials as boto3 finds them, endpoint ``AWS_ENDPOINT_URL``): the spec's
  ``data.train``/``data.test`` name that URI, which the pipeline's pods can read.
- :meth:`KfpRuns.tick` (the queue's worker calls it every ``poll_s``) submits each queued
  run as ``python -m dripml pipeline submit runs/<id>/spec.yaml --host H --json
  --tag dripml.ui_run=<id> --tag <recipe tags>...`` and records the KFP run id in the row
  (``kfp_run_id``); every ``poll_s`` it reads each running run's state with ``get_run``
  (PENDING/RUNNING/... -> running, the running task's name as the step; SUCCEEDED ->
  finished, once its results are read from MLflow by the ``dripml.ui_run`` tag; FAILED,
  SKIPPED -> failed; CANCELED -> cancelled) and terminates the ones a cancel was asked for
  (``terminate_run``).

Runs outlive the UI: the rows keep the KFP run ids, so a restarted UI follows them again; a
row left ``running`` without one (the UI died while submitting it) is queued again.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dripml.errors import DataError, SettingsError
from dripml.orchestration.run_store import RunStore, RunView, now

__all__ = ["POLL_S", "RUNNING_STATES", "KfpRuns", "submit_command"]

log = logging.getLogger(__name__)

POLL_S = 5.0
"""How often each running KFP run's state is read, seconds."""
SUBMIT_TIMEOUT_S = 300.0
"""The longest ``drip pipeline submit`` may take (it compiles the pipeline, then one call)."""
RESULT_TRIES = 5
"""Polls a succeeded run's MLflow results may fail to be read before the run is failed."""
RUNNING_STATES = frozenset({"RUNTIME_STATE_UNSPECIFIED", "PENDING", "RUNNING", "PAUSED",
                            "CANCELING", ""})
"""KFP states of a run that has not ended (shown as ``running``)."""
UI_RUN_TAG = "dripml.ui_run"


def submit_command(python: str, spec: Path, run_id: str, tags: Mapping[str, str], *,
                   host: str, tracking_uri: str | None = None) -> list[str]:
    """The ``drip pipeline submit`` command line of UI run ``run_id``."""
    command = [python, "-m", "dripml", "pipeline", "submit", str(spec), "--host", host,
               "--json", "--tag", f"{UI_RUN_TAG}={run_id}"]
    for key, value in tags.items():
        command += ["--tag", f"{key}={value}"]
    if tracking_uri:
        command += ["--tracking-uri", tracking_uri]
    return command


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix without slashes at either end).

    Raises:
        SettingsError: not an ``s3://bucket[/prefix]`` URI.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SettingsError(f"upload URI {uri!r}: must be s3://BUCKET[/PREFIX], where the "
                            f"pipeline's pods can read the uploads")
    return parsed.netloc, parsed.path.strip("/")


class KfpRuns:
    """Runs the page's runs as Kubeflow Pipelines runs (see the module's docstring).

    Args:
        store: the UI's run store (the queue's).
        run_dir: run id -> its folder (``spec.yaml``, ``tags.json``, ``summary.json``,
            ``stderr.log``): the queue's :meth:`~RunQueue.run_dir`.
        host: the KFP API, e.g. ``http://ml-pipeline-ui.kubeflow:80``.
        upload_uri: ``s3://bucket/prefix`` the uploads are copied to.
        tracking_uri: MLflow as the pipeline's steps and this process reach it (passed to
            ``drip pipeline submit --tracking-uri``; results are read from it).
        python: the interpreter the submit command runs.
        cwd: its working folder.
        poll_s: seconds between two reads of a running run's state.

    Raises:
        SettingsError: ``upload_uri`` is not ``s3://BUCKET[/PREFIX]``.
    """

    def __init__(self, store: RunStore, run_dir: Any, *, host: str, upload_uri: str,
                 tracking_uri: str | None = None, python: str = sys.executable,
                 cwd: Path | None = None, poll_s: float = POLL_S) -> None:
        self.bucket, self.prefix = split_s3_uri(upload_uri)
        self.store = store
        self.run_dir = run_dir
        self.host = host
        self.tracking_uri = tracking_uri
        self.python = python
        self.cwd = Path(cwd or Path.cwd()).absolute()
        self.poll_s = poll_s
        self._client: Any = None
        self._polled: dict[str, float] = {}
        self._terminated: set[str] = set()
        self._result_failures: dict[str, int] = {}

    # -- uploads -------------------------------------------------------------------------

    def stage(self, path: Path) -> str:
        """Copy upload ``path`` (``<upload id>.<ext>``) to the upload URI; return its
        ``s3://`` URI (what the spec's data fields name).

        Raises:
            DataError: S3 refused it or could not be reached (names the URI).
        """
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.prefix}/{path.name}" if self.prefix else path.name
        uri = f"s3://{self.bucket}/{key}"
        try:
            boto3.client("s3").upload_file(str(path), self.bucket, key)
        except (BotoCoreError, ClientError, OSError) as failure:
            raise DataError(f"could not copy the upload to {uri}: {failure}; check the UI's "
                            f"S3 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                            f"AWS_ENDPOINT_URL) and that the bucket exists") from None
        return uri

    # -- the queue's worker --------------------------------------------------------------

    def recover(self) -> None:
        """At the queue's start: a row left ``running`` without a KFP run id (the UI died
        while submitting it) is queued again, or cancelled when a cancel was asked; rows
        with one are followed by :meth:`tick`."""
        for view in self.store.list(limit=10_000, status="running"):
            if view.kfp_run_id:
                continue
            if view.cancel_requested:
                self.store.update(view.id, only_if=("running",), status="cancelled",
                                  finished_at=now())
            else:
                self.store.update(view.id, only_if=("running",), status="queued",
                                  attempts=view.attempts + 1)

    def tick(self) -> None:
        """Follow every running run (state, cancel), then submit the queued ones."""
        clock = time.monotonic()
        for view in self.store.list(limit=10_000, status="running"):
            if not view.kfp_run_id:
                continue
            try:
                if view.cancel_requested and view.id not in self._terminated:
                    self._client_for().terminate_run(view.kfp_run_id)
                    self._terminated.add(view.id)
                    self._polled.pop(view.id, None)
                if clock - self._polled.get(view.id, -math.inf) >= self.poll_s:
                    self._polled[view.id] = clock
                    self._follow(view)
            except Exception as failure:  # KFP unreachable, a bad answer: try next time
                log.warning("KFP run %s of UI run %s: %s", view.kfp_run_id, view.id, failure)
        for view in self.store.oldest("queued", 10):
            self._submit(view)

    # -- one run -------------------------------------------------------------------------

    def _client_for(self) -> Any:
        if self._client is None:
            import kfp

            self._client = kfp.Client(host=self.host)
        return self._client

    def _submit(self, view: RunView) -> None:
        started_at = now()
        claimed = self.store.update(view.id, only_if=("queued",), status="running",
                                    started_at=started_at, cancel_requested=False,
                                    step="submitting", kfp_run_id=None)
        if claimed.started_at != started_at:
            return  # cancelled meanwhile
        folder = Path(self.run_dir(view.id))
        try:
            tags = json.loads((folder / "tags.json").read_text())
            command = submit_command(self.python, folder / "spec.yaml", view.id, tags,
                                     host=self.host, tracking_uri=self.tracking_uri)
            done = subprocess.run(command, cwd=self.cwd, capture_output=True,
                                  stdin=subprocess.DEVNULL, timeout=SUBMIT_TIMEOUT_S)
        except (OSError, ValueError, subprocess.TimeoutExpired) as failure:
            self.store.update(view.id, status="failed", finished_at=now(), step=None,
                              error=f"could not submit the run to {self.host}: {failure}")
            return
        (folder / "submit.json").write_bytes(done.stdout)
        with open(folder / "stderr.log", "ab") as err:
            err.write(done.stderr)
        try:
            submitted = json.loads(done.stdout) if done.returncode == 0 else None
            run_id = str(submitted["run_id"]) if submitted else None
        except (ValueError, KeyError, TypeError):
            run_id = None
        if run_id is None:
            tail = "\n".join(done.stderr.decode(errors="replace").splitlines()[-20:])
            self.store.update(view.id, status="failed", finished_at=now(), step=None,
                              error=f"`drip pipeline submit` exited {done.returncode}:\n{tail}")
            return
        self.store.update(view.id, kfp_run_id=run_id, step="pending",
                          run_url=submitted.get("url"))
        self._result_failures.pop(view.id, None)
        self._terminated.discard(view.id)

    def _follow(self, view: RunView) -> None:
        run = self._client_for().get_run(view.kfp_run_id)
        state = str(getattr(run, "state", None) or "")
        finished = {"finished_at": now(), "pid": None, "pid_started": None}
        if state in RUNNING_STATES:
            step = _running_task(run) or state.lower() or "pending"
            if step != view.step:
                self.store.update(view.id, only_if=("running",), step=step)
        elif state == "SUCCEEDED":
            try:
                fields = self.results(view)
            except Exception as failure:  # MLflow unreachable, results missing
                tries = self._result_failures.get(view.id, 0) + 1
                self._result_failures[view.id] = tries
                if tries < RESULT_TRIES:
                    return  # read again at the next poll
                self.store.update(view.id, only_if=("running",), status="failed", step=None,
                                  error=(f"the pipeline run {view.kfp_run_id} succeeded, but "
                                         f"its results could not be read from MLflow: "
                                         f"{failure}"), **finished)
                return
            self.store.update(view.id, only_if=("running",), status="finished", step=None,
                              error=None, **fields, **finished)
        elif state == "CANCELED" or (view.cancel_requested and state == "FAILED"):
            self.store.update(view.id, only_if=("running",), status="cancelled", step=None,
                              **finished)
        else:  # FAILED, SKIPPED, or a state this code does not know
            self.store.update(view.id, only_if=("running",), status="failed", step=None,
                              error=f"the Kubeflow pipeline run {view.kfp_run_id} ended "
                                    f"{state or 'without a state'}: {_error_of(run)}; its "
                                    f"steps' logs are in the Kubeflow Pipelines UI",
                              **finished)
        if state not in RUNNING_STATES:
            self._polled.pop(view.id, None)
            self._terminated.discard(view.id)

    def results(self, view: RunView) -> dict[str, Any]:
        """The row's fields from the MLflow search run tagged ``dripml.ui_run=<id>`` (in any
        experiment): run id and URL, the model and version it chose, leaderboard, frontier,
        test metrics.

        Raises:
            ModelNotFoundError: no such search run, or it registered no chosen version.
            TrackingError: the frontier table is missing.
        """
        import mlflow
        import pandas as pd
        from mlflow.tracking import MlflowClient

        from dripml.errors import ModelNotFoundError
        from dripml.productionize import tracking
        from dripml.refine import stage

        uri = tracking.configure(self.tracking_uri)
        found = mlflow.search_runs(
            search_all_experiments=True, output_format="list", max_results=1,
            filter_string=f"tags.`{UI_RUN_TAG}` = '{view.id}' and tags.`dripml.kind` = 'search'",
            order_by=["attributes.start_time DESC"])
        if not found:
            raise ModelNotFoundError(f"no search run in MLflow at {uri} has the tag "
                                     f"{UI_RUN_TAG}={view.id}")
        run = found[0]
        run_id = run.info.run_id
        client = MlflowClient()
        chosen = [v for v in client.search_model_versions(f"run_id = '{run_id}'")
                  if v.tags.get("dripml.chosen") == "true"]
        if not chosen:
            raise ModelNotFoundError(f"search run {run_id} registered no chosen model version")
        model = max(chosen, key=lambda v: int(v.version))
        with tempfile.TemporaryDirectory() as folder:
            board_path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path="leaderboard.csv", dst_path=folder)
            board = _records(pd.read_csv(board_path, keep_default_na=False, na_values=[""]))
        frontier = _records(stage.load_table(run_id))
        for point in frontier:
            version = point.get("version")
            point["version"] = int(version) if version not in (None, "") else None
        # The MLflow run's page when MLflow is a server; else the KFP run's page stays.
        url = {}
        if uri.startswith(("http://", "https://")):
            url = {"run_url": f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}"
                              f"/runs/{run_id}"}
        return {"mlflow_run_id": run_id, **url, "model_name": model.name,
                "model_version": int(model.version), "leaderboard": board,
                "frontier": frontier,
                "test_metrics": {k: float(v) for k, v in run.data.metrics.items()
                                 if k.startswith(tracking.TEST_METRIC_PREFIX)}}


def _records(frame: Any) -> list[dict[str, Any]]:
    """A table as JSON records (``params`` decoded from its JSON text)."""
    rows = json.loads(frame.to_json(orient="records"))
    for row in rows:
        if isinstance(row.get("params"), str):
            try:
                row["params"] = json.loads(row["params"])
            except ValueError:
                pass
    return rows


def _running_task(run: Any) -> str | None:
    """The display name of the newest task still running (e.g. ``search (Ray job)``)."""
    details = getattr(run, "run_details", None)
    tasks = [t for t in (getattr(details, "task_details", None) or [])
             if str(getattr(t, "state", "")) == "RUNNING" and getattr(t, "display_name", None)]
    if not tasks:
        return None
    tasks.sort(key=lambda t: str(getattr(t, "start_time", None) or ""))
    return str(tasks[-1].display_name)


def _error_of(run: Any) -> str:
    error = getattr(run, "error", None)
    message = getattr(error, "message", None) if error is not None else None
    return str(message) if message else "no error message"

