"""The web page's local run queue: runs outlive the page, one code path with ``drip run``.

A :class:`RunQueue` keeps its runs in a :class:`~dripml.orchestration.run_store.RunStore`
and executes each as a child process of the UI running the very command a user would type::

    python -m dripml run runs/<id>/spec.yaml --json --events runs/<id>/events.jsonl \\
        --tag dripml.ui_run=<id> --tag dripml.recipe=... [--resume]

One worker thread takes queued runs oldest first, up to ``concurrency`` at once, and every
half second tails each child's events file into the store (step, trials done of total, best
value so far, MLflow run id and URL); when a child exits it parses the run's ``--json``
summary (``runs/<id>/summary.json``) into the row: model name and version, leaderboard,
frontier, test metrics. Exit 0 is ``finished``; 130 or 143 after a cancel is ``cancelled``;
anything else is ``failed`` with the tail of ``runs/<id>/stderr.log``.

No child outlives the UI: on Linux each child asks the kernel (``prctl(PR_SET_PDEATHSIG,
SIGTERM)``) to be sent SIGTERM when its parent dies, however the parent dies (even
``kill -9``, which runs no cleanup). ``drip run`` takes SIGTERM as an interruption: it marks
its MLflow run KILLED, stops Ray and exits 143, which leaves the run resumable. When the UI
starts again, :meth:`RunQueue.start` finds the rows still ``running`` whose process is gone
and queues them again with ``--resume`` (``attempts`` + 1): the run continues where it
stopped, its finished trials kept. One queue per store: two UIs sharing one database would
each take the other's runs for orphans.

On a cluster (``submitter``: a :class:`~dripml.orchestration.kfp_runs.KfpRuns`), the worker
hands every run to it instead: uploads are staged where the pipeline's pods read them, and
each run is a Kubeflow pipeline run submitted with ``drip pipeline submit``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
import yaml

from dripml.orchestration.run_store import RunStore, RunView, now

if TYPE_CHECKING:
    from dripml.orchestration.kfp_runs import KfpRuns
    from dripml.recipes import Recipe

__all__ = ["CANCEL_GRACE_S", "POLL_S", "RunQueue", "child_command"]

log = logging.getLogger(__name__)

POLL_S = 0.5
"""How often the worker tails the events files and looks for exits and cancels, seconds."""
CANCEL_GRACE_S = 30.0
"""After a cancel's SIGINT, seconds until SIGTERM; as many again until SIGKILL."""
ERROR_LINES = 40
"""How many of the last stderr lines a failed run's ``error`` keeps."""
_INTERRUPTED = {130, 143, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL}
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_command(python: str, run_dir: Path, run_id: str, tags: Mapping[str, str], *,
                  resume: bool) -> list[str]:
    """The ``drip run`` command line of run ``run_id`` (files in ``run_dir``)."""
    command = [python, "-m", "dripml", "run", str(run_dir / "spec.yaml"), "--json",
               "--events", str(run_dir / "events.jsonl"), "--tag", f"dripml.ui_run={run_id}"]
    for key, value in tags.items():
        command += ["--tag", f"{key}={value}"]
    return [*command, "--resume"] if resume else command


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies (None
    elsewhere). The parent is the *thread* that forked: the queue's worker, which lives as
    long as the queue. Loaded before the fork, so the child only makes one system call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: stop now
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _alive(pid: int | None, started: float | None) -> psutil.Process | None:
    """The process ``pid`` if it still runs and is the one created at ``started`` (a pid
    reused by another process is not it)."""
    if pid is None:
        return None
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        if started is not None and abs(process.create_time() - started) > 0.5:
            return None
        return process
    except psutil.Error:
        return None


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class _Child:
    run_id: str
    process: subprocess.Popen[bytes]
    offset: int = 0               # bytes of the events file already read
    cancel_at: float | None = None
    signals: int = 0              # SIGINT, SIGTERM, SIGKILL sent so far


class RunQueue:
    """Runs the page's runs as ``drip run`` child processes, keeping their state in ``store``.

    Args:
        store: where the runs are kept.
        work_dir: the UI's folder for runs: ``<work_dir>/runs/<id>/`` holds ``spec.yaml``,
            ``tags.json``, ``events.jsonl``, ``summary.json`` (stdout) and ``stderr.log``.
        tracking_uri: MLflow store, passed to the children as ``DRIPML_TRACKING_URI`` (None:
            theirs by the usual precedence, by default ``.dripml/`` of ``cwd``).
        concurrency: runs executing at once (each starts its own embedded Ray unless
            ``DRIPML_RAY_ADDRESS`` names a cluster).
        python: the interpreter the children run.
        cwd: the children's working folder (default: this process's, so the default
            embedded MLflow store is the same as ``drip run``'s).
        cancel_grace_s: after a cancel's SIGINT, seconds until SIGTERM, and again until
            SIGKILL.
        submitter: cluster mode: runs go to it (Kubeflow pipeline runs), not to children.
    """

    def __init__(self, store: RunStore, work_dir: Path, *, tracking_uri: str | None = None,
                 concurrency: int = 1, python: str = sys.executable, cwd: Path | None = None,
                 cancel_grace_s: float = CANCEL_GRACE_S, poll_s: float = POLL_S,
                 submitter: KfpRuns | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.store = store
        self.work_dir = Path(work_dir).absolute()
        self.tracking_uri = tracking_uri
        self.concurrency = concurrency
        self.python = python
        self.cwd = Path(cwd or Path.cwd()).absolute()
        self.cancel_grace_s = cancel_grace_s
        self.poll_s = poll_s
        self.submitter = submitter
        self._children: dict[str, _Child] = {}
        self._orphans: dict[str, psutil.Process] = {}
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the page's verbs ------------------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        """The folder of run ``run_id`` (``<work_dir>/runs/<id>``)."""
        return self.work_dir / "runs" / run_id

    def submit(self, recipe: Recipe, *, knobs: Mapping[str, Any], upload: Path,
               test_upload: Path | None = None, pipeline: str | None = None) -> RunView:
        """Queue a run of ``recipe`` with ``knobs`` (already resolved by
        :meth:`Recipe.resolve`) on the uploaded file(s); the upload ids are the files'
        stems. Writes the run's spec with :meth:`Recipe.build_spec` (raises its
        ``SpecError`` naming the field) and returns the run, status ``queued``."""
        name = pipeline or next(iter(recipe.pipelines))
        # Cluster mode: the data where the pipeline's pods read it (DataError if not).
        stage = self.submitter.stage if self.submitter is not None else str
        spec = recipe.build_spec(knobs, train=stage(upload),
                                 test=None if test_upload is None else stage(test_upload),
                                 pipeline=name)
        return self.submit_spec(spec, recipe=recipe.name, recipe_version=recipe.version,
                                pipeline=name, knobs=dict(knobs), upload_id=upload.stem,
                                test_upload_id=None if test_upload is None
                                else test_upload.stem,
                                tags=recipe.tags(knobs, pipeline=name))

    def submit_spec(self, spec: Mapping[str, Any], *, recipe: str = "", recipe_version: str = "",
                    pipeline: str = "", knobs: Mapping[str, Any] | None = None,
                    upload_id: str = "", test_upload_id: str | None = None,
                    tags: Mapping[str, str] | None = None) -> RunView:
        """Queue a run of a spec mapping (what :meth:`submit` does once the recipe built
        it); ``tags`` go to the MLflow search run beside ``dripml.ui_run=<id>``."""
        view = self.store.create(recipe=recipe, recipe_version=recipe_version,
                                 pipeline=pipeline, knobs=dict(knobs or {}),
                                 upload_id=upload_id, test_upload_id=test_upload_id)
        folder = self.run_dir(view.id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "spec.yaml").write_text(yaml.safe_dump(dict(spec), sort_keys=False))
        (folder / "tags.json").write_text(json.dumps(dict(tags or {})))
        self._wake.set()
        return view

    def cancel(self, run_id: str) -> RunView:
        """Cancel run ``run_id``: a queued run at once; a running one is sent SIGINT (it
        marks its MLflow run KILLED and exits 130; SIGTERM, then SIGKILL, follow after
        ``cancel_grace_s``) and becomes ``cancelled`` when it exits. A finished, failed or
        cancelled run is returned unchanged. Raises RunNotFound."""
        view = self.store.update(run_id, only_if=("queued",), status="cancelled",
                                 finished_at=now())
        if view.status == "running":
            view = self.store.update(run_id, only_if=("running",), cancel_requested=True)
            self._wake.set()
        return view

    def resume(self, run_id: str) -> RunView:
        """Queue a failed or cancelled run again; it continues with ``--resume`` (finished
        trials kept) and ``attempts`` + 1. Any other run is returned unchanged. Raises
        RunNotFound."""
        current = self.store.get(run_id)
        view = self.store.update(run_id, only_if=("failed", "cancelled"), status="queued",
                                 resume=True, attempts=current.attempts + 1, error=None,
                                 finished_at=None, cancel_requested=False, pid=None,
                                 pid_started=None)
        self._wake.set()
        return view

    def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The run's events (see the events file format), from line ``after`` on (0: all);
        a line still being written is left for the next call. Raises RunNotFound."""
        self.store.get(run_id)
        path = self.run_dir(run_id) / "events.jsonl"
        if not path.exists():
            return []
        lines = path.read_bytes().split(b"\n")[:-1]  # the last piece is unfinished or empty
        return [_parse(line) for line in lines[after:]]

    # -- the worker ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread. Runs a previous UI left ``running`` whose process is
        gone are queued again to resume (``attempts`` + 1), or marked ``cancelled`` when a
        cancel was asked; one whose process still exits is waited for first."""
        if self._thread is not None:
            return
        if self.submitter is not None:
            self.submitter.recover()
        for view in self.store.list(limit=10_000, status="running"):
            if self.submitter is not None:
                break  # cluster mode: the submitter follows its runs
            process = _alive(view.pid, view.pid_started)
            if process is None:
                self._recover(view)
            else:
                self._orphans[view.id] = process
        self._stopping.clear()
        self._thread = threading.Thread(target=self._work, name="dripml-run-queue",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 60) -> None:
        """Stop the worker: SIGTERM to every running child's process group, wait for them
        (SIGKILL after ``cancel_grace_s``). Their rows stay ``running``, so the next
        :meth:`start` resumes them."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout_s)

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # the queue must outlive one bad row or file
                log.exception("run queue: one pass failed; going on")
            self._wake.wait(self.poll_s)
            self._wake.clear()
        self._stop_children()

    def _tick(self) -> None:
        if self.submitter is not None:
            self.submitter.tick()
            return
        for run_id, process in list(self._orphans.items()):
            if not _running(process):
                del self._orphans[run_id]
                self._recover(self.store.get(run_id))
        for child in list(self._children.values()):
            self._follow(child)
        free = self.concurrency - len(self._children) - len(self._orphans)
        if free > 0:
            for view in self.store.oldest("queued", free):
                self._launch(view)

    def _launch(self, view: RunView) -> None:
        started_at = now()
        claimed = self.store.update(view.id, only_if=("queued",), status="running",
                                    started_at=started_at, cancel_requested=False, step=None)
        if claimed.started_at != started_at:
            return  # cancelled meanwhile
        folder = self.run_dir(view.id)
        try:
            tags = json.loads((folder / "tags.json").read_text())
            command = child_command(self.python, folder, view.id, tags, resume=view.resume)
            env = dict(os.environ)
            if self.tracking_uri:
                env["DRIPML_TRACKING_URI"] = self.tracking_uri
            events = folder / "events.jsonl"
            offset = events.stat().st_size if events.exists() else 0
            with open(folder / "summary.json", "wb") as out, \
                    open(folder / "stderr.log", "ab") as err:
                # Its own process group: a cancel signals the run and what it started,
                # never the UI. PDEATHSIG: see the module's docstring.
                process = subprocess.Popen(command, cwd=self.cwd, env=env, stdout=out,
                                           stderr=err, stdin=subprocess.DEVNULL,
                                           process_group=0, preexec_fn=_die_with_parent())
        except (OSError, ValueError) as failure:
            self.store.update(view.id, status="failed", finished_at=now(),
                              error=f"could not start the run: {failure}")
            return
        try:
            started = psutil.Process(process.pid).create_time()
        except psutil.Error:
            started = None
        self.store.update(view.id, pid=process.pid, pid_started=started)
        self._children[view.id] = _Child(view.id, process, offset)

    def _follow(self, child: _Child) -> None:
        """Tail the child's events; handle a cancel; settle the row when it has exited."""
        code = child.process.poll()
        self._tail(child)
        view = self.store.get(child.run_id)
        if code is None:
            if view.cancel_requested:
                self._signal_cancel(child)
            return
        del self._children[child.run_id]
        self._settle(view, code)

    def _tail(self, child: _Child) -> None:
        path = self.run_dir(child.run_id) / "events.jsonl"
        try:
            with open(path, "rb") as events:
                events.seek(child.offset)
                chunk = events.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n")
        if end < 0:
            return
        child.offset += end + 1
        fields: dict[str, Any] = {}
        for line in chunk[:end].split(b"\n"):
            fields.update(_progress(_parse(line)))
        if fields:
            self.store.update(child.run_id, **fields)

    def _signal_cancel(self, child: _Child) -> None:
        clock = time.monotonic()
        if child.cancel_at is None:
            child.cancel_at = clock
        due = min(2, int((clock - child.cancel_at) // self.cancel_grace_s))
        while child.signals <= due:
            sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[child.signals]
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, sig)
            child.signals += 1

    def _settle(self, view: RunView, code: int) -> None:
        folder = self.run_dir(view.id)
        done = {"finished_at": now(), "pid": None, "pid_started": None}
        if code == 0:
            try:
                summary = json.loads((folder / "summary.json").read_text())
                self.store.update(view.id, status="finished", step=None, error=None,
                                  **_from_summary(summary), **done)
            except (OSError, ValueError, KeyError, TypeError) as bad:
                self.store.update(view.id, status="failed", error=(
                    f"the run exited 0 but its summary ({folder / 'summary.json'}) could "
                    f"not be read: {bad}"), **done)
        elif view.cancel_requested and code in _INTERRUPTED:
            self.store.update(view.id, status="cancelled", **done)
        else:
            self.store.update(view.id, status="failed", error=(
                f"exit code {code}; last lines of {folder / 'stderr.log'}:\n"
                f"{_tail_lines(folder / 'stderr.log', ERROR_LINES)}"), **done)

    def _recover(self, view: RunView) -> None:
        """A row left ``running`` by a UI that is gone, its process gone too."""
        folder = self.run_dir(view.id)
        try:
            summary = json.loads((folder / "summary.json").read_text())
            finished = {**_from_summary(summary), "status": "finished"}
        except (OSError, ValueError, KeyError, TypeError):
            finished = None
        if finished is not None:  # it ended between the UI's death and its own
            self.store.update(view.id, only_if=("running",), finished_at=now(), pid=None,
                              pid_started=None, step=None, **finished)
        elif view.cancel_requested:
            self.store.update(view.id, only_if=("running",), status="cancelled",
                              finished_at=now(), pid=None, pid_started=None)
        else:
            self.store.update(view.id, only_if=("running",), status="queued", resume=True,
                              attempts=view.attempts + 1, pid=None, pid_started=None)

    def _stop_children(self) -> None:
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.cancel_grace_s
        for child in self._children.values():
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()
            self._tail(child)
        self._children.clear()


def _parse(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        return {"event": "unreadable", "text": line.decode(errors="replace")}
    return event if isinstance(event, dict) else {"event": "unreadable", "text": str(event)}


def _progress(event: Mapping[str, Any]) -> dict[str, Any]:
    """The row's fields one event changes."""
    kind = event.get("event")
    if kind == "run_started":
        return {"mlflow_run_id": event.get("run_id"), "run_url": event.get("url")}
    if kind == "step" and event.get("state") == "started":
        return {"step": event.get("name")}
    if kind == "search":  # the trials' step: the trial events leave it so
        return {"step": "search", "total": event.get("total")}
    if kind == "trial":
        return {"done": int(event.get("done") or 0), "total": event.get("total"),
                "best_value": event.get("best_value"), "objective": event.get("objective")}
    return {}


def _from_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The row's fields from ``drip run --json``'s summary."""
    model = summary["model"]
    return {"mlflow_run_id": summary["run_id"], "run_url": summary.get("run_url"),
            "model_name": model["name"], "model_version": int(model["version"]),
            "leaderboard": list(summary.get("leaderboard") or []),
            "frontier": list(summary.get("frontier") or []),
            "test_metrics": {k: float(v) for k, v in (summary.get("test_metrics") or {}).items()}}


def _tail_lines(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no stderr log)"
    return "\n".join(text.splitlines()[-lines:])[-4000:]
