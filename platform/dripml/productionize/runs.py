"""No run left RUNNING: the search run's heartbeat, and the collection of runs whose driver died.

While :func:`dripml.api.train` searches, its parent run carries

- ``dripml.driver``: ``HOST:PID`` of the driving process;
- ``dripml.heartbeat``: when it last said it was alive (Unix epoch seconds), rewritten every
  ``dripml.heartbeat_interval_s`` seconds (:data:`HEARTBEAT_INTERVAL_S`) by a daemon thread
  (:func:`heartbeat`).

A run is *orphaned* when MLflow still says RUNNING and either its heartbeat is older than
:data:`MISSED_BEATS` intervals (the driver was killed, its node or pod went away), or its
driver ran on this host (same PID namespace) and that process is gone. :func:`collect`
marks each orphan FAILED with ``dripml.end_reason`` saying why (its end time: the last
heartbeat), and with it every child run (trial) still RUNNING; a RUNNING child run of a
parent that has ended is marked FAILED too. :func:`dripml.api.train` collects at its start;
``drip runs gc`` on demand. A run without a ``dripml.driver`` tag (not started by a dripml
that beats) is never collected: nothing says whether its driver lives.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import mlflow
import psutil
from mlflow.entities import RunStatus, RunTag, ViewType
from mlflow.tracking import MlflowClient

from dripml.core import interrupts

HEARTBEAT_TAG = "dripml.heartbeat"
DRIVER_TAG = "dripml.driver"
INTERVAL_TAG = "dripml.heartbeat_interval_s"
PID_NAMESPACE_TAG = "dripml.driver_pid_namespace"
END_REASON_TAG = "dripml.end_reason"
PARENT_TAG = "mlflow.parentRunId"
HEARTBEAT_INTERVAL_S = 15.0
"""Seconds between two heartbeats of a search run."""
MISSED_BEATS = 3
"""Intervals without a heartbeat after which a RUNNING run counts as orphaned."""
PAGE = 1000

log = logging.getLogger(__name__)


def driver_id() -> str:
    """``HOST:PID`` of this process, as the ``dripml.driver`` tag says it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def driver_tags(interval_s: float = HEARTBEAT_INTERVAL_S) -> dict[str, str]:
    """The tags a search run starts with: its driver, a first heartbeat (now), the
    interval."""
    return {DRIVER_TAG: driver_id(), HEARTBEAT_TAG: f"{time.time():.3f}",
            INTERVAL_TAG: f"{interval_s:g}", PID_NAMESPACE_TAG: _pid_namespace()}


@contextmanager
def heartbeat(run_id: str, interval_s: float = HEARTBEAT_INTERVAL_S,
              client: MlflowClient | None = None) -> Iterator[None]:
    """Tag run ``run_id`` with :func:`driver_tags` (this process, a first heartbeat), then
    rewrite its ``dripml.heartbeat`` tag every ``interval_s`` seconds from a daemon thread
    while the block runs (a failed write is logged and retried at the next beat); the thread
    stops with the block (waiting at most 2 s for a write in progress)."""
    client = client or MlflowClient()
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in driver_tags(interval_s).items()])
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval_s):
            try:
                client.set_tag(run_id, HEARTBEAT_TAG, f"{time.time():.3f}")
            except Exception as error:  # noqa: BLE001 - a missed beat must not end the run
                log.warning("heartbeat of run %s not written: %s", run_id, error)

    thread = threading.Thread(target=beat, name="dripml-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2)


@contextmanager
def ended_with_reason(run_id: str, client: MlflowClient | None = None) -> Iterator[None]:
    """Inside the active MLflow run ``run_id``: when the block is interrupted (Ctrl-C,
    SIGTERM), tag the run ``dripml.end_reason`` = ``interrupted by SIGINT`` (or SIGTERM),
    end it KILLED (MLflow's status for a run its user stopped) and re-raise the
    :class:`~dripml.core.interrupts.Interrupted` with ``run_id`` and ``kept`` (its trials
    that ended, :func:`finished_trials`) set; when it raises an error, tag the run's end
    reason with the error's first line (MLflow then ends it FAILED). A reason left by an
    earlier, resumed attempt is removed on entry."""
    client = client or MlflowClient()
    if END_REASON_TAG in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, END_REASON_TAG)
    try:
        yield
    except KeyboardInterrupt as stop:
        stopped = interrupts.as_interrupted(stop)
        stopped.run_id = run_id
        try:
            client.set_tag(run_id, END_REASON_TAG, stopped.reason)
            stopped.kept = finished_trials(run_id, client)
        finally:
            active = mlflow.active_run()
            if active is not None and active.info.run_id == run_id:
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            else:
                client.set_terminated(run_id, RunStatus.to_string(RunStatus.KILLED))
        if stopped is stop:
            raise
        raise stopped from None
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        try:
            client.set_tag(run_id, END_REASON_TAG, f"{type(error).__name__}: {first}"[:4000])
        except Exception:  # noqa: BLE001 - the store itself may be what failed
            pass
        raise


def finished_trials(run_id: str, client: MlflowClient | None = None) -> int:
    """Trials (child runs) of search run ``run_id`` that ended on their own (complete,
    pruned, failed): not RUNNING, not cut short by a signal."""
    client = client or MlflowClient()
    run = client.get_run(run_id)
    count, token = 0, None
    while True:
        page = client.search_runs([run.info.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{run_id}'",
                                  run_view_type=ViewType.ALL, max_results=PAGE,
                                  page_token=token)
        count += sum(1 for r in page if r.info.status != "RUNNING"
                     and r.data.tags.get("dripml.trial_state") != "INTERRUPTED")
        token = page.token
        if not token:
            return count


@dataclass(frozen=True)
class UnfinishedRun:
    """A search run MLflow says is RUNNING.

    Attributes:
        run_id, experiment_id, run_name: the run.
        started: its start, Unix epoch seconds.
        driver: ``HOST:PID`` of its driver ("" when not recorded).
        heartbeat: its last heartbeat, Unix epoch seconds (None when not recorded).
        orphaned: its driver is gone (see the module docstring).
        reason: why it is orphaned ("" when it is not).
    """

    run_id: str
    experiment_id: str
    run_name: str
    started: float
    driver: str
    heartbeat: float | None
    orphaned: bool
    reason: str


@dataclass(frozen=True)
class CollectedRun:
    """A run :func:`collect` marked FAILED.

    Attributes:
        run_id, experiment_id, run_name: the run.
        parent_run_id: its parent (a trial's search run); None for a search run.
        reason: what ``dripml.end_reason`` now says.
    """

    run_id: str
    experiment_id: str
    run_name: str
    parent_run_id: str | None
    reason: str


def _running(client: MlflowClient) -> list[Any]:
    experiments = []
    token = None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, max_results=PAGE,
                                         page_token=token)
        experiments += [e.experiment_id for e in page]
        token = page.token
        if not token:
            break
    runs: list[Any] = []
    for start in range(0, len(experiments), 100):  # MLflow takes at most 100 ids a query
        token = None
        while True:
            page = client.search_runs(experiments[start:start + 100],
                                      filter_string="attributes.status = 'RUNNING'",
                                      run_view_type=ViewType.ALL, max_results=PAGE,
                                      page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                break
    return runs


def _when(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch_s))


def _driver_gone(tags: dict[str, str], started_ms: int) -> bool:
    """Whether the driver ran here (this host, this PID namespace) and is gone (or its pid
    now belongs to a process started after the run)."""
    host, _, pid = tags.get(DRIVER_TAG, "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if tags.get(PID_NAMESPACE_TAG, "") != _pid_namespace():
        return False
    try:
        process = psutil.Process(int(pid))
        return (process.status() == psutil.STATUS_ZOMBIE
                or process.create_time() * 1000 > started_ms + 1000)
    except psutil.NoSuchProcess:
        return True


def judge(run: Any, now: float | None = None) -> UnfinishedRun:
    """Whether RUNNING search run ``run`` (an MLflow ``Run``) is orphaned, and why."""
    now = time.time() if now is None else now
    tags = run.data.tags
    driver = tags.get(DRIVER_TAG, "")
    try:
        beat: float | None = float(tags[HEARTBEAT_TAG])
    except (KeyError, ValueError):
        beat = None
    try:
        interval = float(tags.get(INTERVAL_TAG, HEARTBEAT_INTERVAL_S))
    except ValueError:
        interval = HEARTBEAT_INTERVAL_S
    reason = ""
    if driver and beat is not None:
        if _driver_gone(tags, run.info.start_time):
            reason = (f"driver {driver} is no longer running (last heartbeat at "
                      f"{_when(beat)})")
        elif now - beat > MISSED_BEATS * interval:
            reason = (f"driver {driver} stopped sending heartbeats at {_when(beat)} "
                      f"(none for {now - beat:.0f} s; one is expected every {interval:g} s)")
    return UnfinishedRun(run.info.run_id, run.info.experiment_id, run.info.run_name or "",
                         run.info.start_time / 1000, driver, beat, bool(reason), reason)


def unfinished(client: MlflowClient | None = None,
               now: float | None = None) -> list[UnfinishedRun]:
    """Every search run of the store that MLflow says is RUNNING, oldest first, each judged
    (:func:`judge`)."""
    client = client or MlflowClient()
    runs = [r for r in _running(client) if r.data.tags.get("dripml.kind") == "search"]
    return sorted((judge(r, now) for r in runs), key=lambda r: r.started)


def collect(client: MlflowClient | None = None,
            now: float | None = None) -> list[CollectedRun]:
    """Mark every orphaned search run FAILED (tag ``dripml.end_reason`` says why; end time
    its last heartbeat) with its RUNNING child runs, and every RUNNING child run whose
    parent has ended. Returns what was marked, parents first."""
    client = client or MlflowClient()
    now = time.time() if now is None else now
    running = _running(client)
    parents = {r.info.run_id: judge(r, now) for r in running
               if r.data.tags.get("dripml.kind") == "search"}
    collected: list[CollectedRun] = []
    ended: dict[str, str] = {}
    for run in running:
        judged = parents.get(run.info.run_id)
        if judged is not None and judged.orphaned:
            end_ms = int((judged.heartbeat or now) * 1000)
            _fail(client, run.info.run_id, judged.reason, end_ms)
            ended[run.info.run_id] = judged.reason
            collected.append(CollectedRun(run.info.run_id, run.info.experiment_id,
                                          judged.run_name, None, judged.reason))
    status: dict[str, str] = {}
    for run in running:
        parent = run.data.tags.get(PARENT_TAG)
        if parent is None or run.info.run_id in parents:
            continue
        if parent in ended:
            reason = f"its search run {parent} was marked FAILED: {ended[parent]}"
        else:
            if parent not in status:
                try:
                    status[parent] = client.get_run(parent).info.status
                except Exception:  # noqa: BLE001 - a deleted parent has ended too
                    status[parent] = "DELETED"
            if status[parent] == "RUNNING":
                continue
            reason = f"its search run {parent} ended ({status[parent]}) while it ran"
        _fail(client, run.info.run_id, reason, int(now * 1000))
        collected.append(CollectedRun(run.info.run_id, run.info.experiment_id,
                                      run.info.run_name or "", parent, reason))
    return collected


def _fail(client: MlflowClient, run_id: str, reason: str, end_ms: int) -> None:
    client.set_tag(run_id, END_REASON_TAG, reason[:4000])
    client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.FAILED),
                          end_time=end_ms)
