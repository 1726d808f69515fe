"""The web page's runs: the SQL run store and the local queue of `drip run` child processes
(real SQLite files, real child processes, a real MLflow SQLite store, a local Ray)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import psutil
import pytest
import ray
import yaml

from dripml.errors import RunNotFound
from dripml.orchestration.run_queue import RunQueue, child_command
from dripml.orchestration.run_store import SCHEMA_VERSION, RunStore, RunView


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    store = RunStore(f"sqlite:///{tmp_path / 'ui.db'}")
    yield store
    store.close()


def _create(store: RunStore, **over: Any) -> RunView:
    fields = {"recipe": "tabular-classification", "recipe_version": "1.0",
              "pipeline": "default", "knobs": {"label": "income", "time_budget_s": 60},
              "upload_id": "a" * 32, **over}
    return store.create(**fields)


def test_a_run_reads_back_equal_from_a_reopened_sqlite_file(store: RunStore,
                                                            tmp_path: Path) -> None:
    first = _create(store, test_upload_id="b" * 32)
    second = _create(store)
    board = [{"trial": 3, "algorithm": "lightgbm", "objective": 0.91,
              "params": {"num_leaves": 31}}]
    frontier = [{"version": 1, "trial": 3, "chosen": True, "latency_p99_ms": 4.2}]
    store.update(first.id, status="finished", model_name="adult", model_version=2,
                 leaderboard=board, frontier=frontier, test_metrics={"test_roc_auc": 0.9},
                 done=6, total=6, best_value=0.91, objective="roc_auc")
    store.close()

    again = RunStore(f"sqlite:///{tmp_path / 'ui.db'}")
    try:
        view = again.get(first.id)
        assert (view.status, view.model_name, view.model_version) == ("finished", "adult", 2)
        assert (view.leaderboard, view.frontier) == (board, frontier)
        assert view.test_metrics == {"test_roc_auc": 0.9}
        assert view.knobs == {"label": "income", "time_budget_s": 60}
        assert view.test_upload_id == "b" * 32 and view.attempts == 1
        assert view.created_at.tzinfo == UTC and view.created_at == first.created_at
        assert [v.id for v in again.list()] == [second.id, first.id]  # newest first
        assert [v.id for v in again.list(status="queued")] == [second.id]
        assert [v.id for v in again.oldest("queued", 5)] == [second.id]
        with sqlite3.connect(tmp_path / "ui.db") as db:
            assert db.execute("pragma journal_mode").fetchone() == ("wal",)
            assert db.execute("select version from ui_schema").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        again.close()


def test_an_unknown_run_is_not_found_and_bad_fields_are_refused(store: RunStore,
                                                                tmp_path: Path) -> None:
    queue = RunQueue(store, tmp_path)
    for call in (store.get, queue.cancel, queue.resume, queue.events,
                 lambda run_id: store.update(run_id, done=1)):
        with pytest.raises(RunNotFound, match="no run 'nope' in the UI's run store"):
            call("nope")
    assert issubclass(RunNotFound, LookupError)
    run = _create(store)
    with pytest.raises(TypeError, match=r"no updatable field \['colour'\]"):
        store.update(run.id, colour="red")
    with pytest.raises(ValueError, match="status must be one of"):
        store.update(run.id, status="paused")


def test_queued_runs_cancel_at_once_and_resume_with_one_more_attempt(
        store: RunStore, tmp_path: Path) -> None:
    queue = RunQueue(store, tmp_path / "ui")  # not started: nothing runs
    run = queue.submit_spec({"name": "x"}, recipe="r", recipe_version="1", pipeline="p",
                            knobs={"k": 1}, upload_id="u", tags={"dripml.recipe": "r"})
    folder = tmp_path / "ui" / "runs" / run.id
    assert run.status == "queued" and yaml.safe_load((folder / "spec.yaml").read_text()) == {
        "name": "x"}
    assert json.loads((folder / "tags.json").read_text()) == {"dripml.recipe": "r"}

    cancelled = queue.cancel(run.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert queue.cancel(run.id) == cancelled  # a cancelled run stays as it is
    resumed = queue.resume(run.id)
    assert (resumed.status, resumed.attempts, resumed.resume) == ("queued", 2, True)
    assert resumed.finished_at is None
    assert queue.resume(run.id) == resumed  # a queued run is not queued twice
    store.update(run.id, status="finished")
    assert queue.resume(run.id).status == "finished"

    assert child_command("py", folder, run.id, {"dripml.recipe": "r"}, resume=True) == [
        "py", "-m", "dripml", "run", str(folder / "spec.yaml"), "--json", "--events",
        str(folder / "events.jsonl"), "--tag", f"dripml.ui_run={run.id}", "--tag",
        "dripml.recipe=r", "--resume"]
    (folder / "events.jsonl").write_bytes(
        b'{"t": 1.0, "event": "search", "total": 4}\n{"t": 2.0, "event": "trial", '
        b'"done": 1}\n{"t": 3.0, "ev')  # the last line is still being written
    assert [e["event"] for e in queue.events(run.id)] == ["search", "trial"]
    assert queue.events(run.id, after=1) == [{"t": 2.0, "event": "trial", "done": 1}]


def test_a_recipe_run_is_queued_with_its_spec_and_tags(store: RunStore, tmp_path: Path) -> None:
    from dripml.recipes import find_recipes, shipped_recipes_dir

    recipe = find_recipes([shipped_recipes_dir()])["tabular-classification"]
    upload = tmp_path / "uploads" / f"{'c' * 32}.csv"
    upload.parent.mkdir()
    upload.write_text("age,income\n30,>50K\n40,<=50K\n")
    knobs = recipe.resolve({"label": "income", "time_budget_s": 20}, columns=["age", "income"])
    queue = RunQueue(store, tmp_path / "ui")
    run = queue.submit(recipe, knobs=knobs, upload=upload)
    assert (run.status, run.recipe, run.upload_id, run.test_upload_id) == (
        "queued", "tabular-classification", "c" * 32, None)
    assert (run.recipe_version, run.pipeline, run.knobs) == (
        recipe.version, next(iter(recipe.pipelines)), knobs)
    folder = queue.run_dir(run.id)
    spec = yaml.safe_load((folder / "spec.yaml").read_text())
    assert spec["data"]["train"] == str(upload) and spec["data"]["label"] == "income"
    assert spec["search"]["time_budget_s"] == 20
    tags = json.loads((folder / "tags.json").read_text())
    assert tags == recipe.tags(knobs, pipeline=run.pipeline)


def _wait(what: str, check: Callable[[], Any], timeout_s: float, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(poll_s)
    return found


def test_a_run_whose_spec_is_bad_fails_with_the_error_in_the_row(
        store: RunStore, tmp_path: Path) -> None:
    queue = RunQueue(store, tmp_path / "ui", cwd=tmp_path, poll_s=0.1)
    run = queue.submit_spec({"name": "bad", "task": "binary", "colour": "red"})
    queue.start()
    try:
        failed = _wait("the run failed", lambda: (v := store.get(run.id)).terminal and v, 60)
    finally:
        queue.stop()
    assert failed.status == "failed" and failed.pid is None, failed
    assert failed.error.startswith("exit code 2; last lines of ")
    assert "colour" in failed.error, failed.error  # drip run names the field


# -- end to end: real `drip run` children on a shared local Ray ------------------------------

NUM_TRIALS = 6


@pytest.fixture
def e2e(ray_cluster: Any, small_adult: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> dict[str, Any]:
    """A UI folder, an MLflow store and a spec; the children join this process's Ray (one
    Ray start for the module, not one per child, on CI's 2 cores)."""
    monkeypatch.chdir(tmp_path)
    for name in ("MLFLOW_TRACKING_URI", "DRIPML_TRACKING_URI", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DRIPML_RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # this process's Ray wrote the token
    spec = {"name": "ui-queue", "task": "binary", "data": small_adult, "k_fold": 2,
            "algorithms": [{"name": "logistic_regression"}],
            "search": {"algorithm": "random", "num_trials": NUM_TRIALS, "max_concurrent": 1},
            "refine": {"top_k": 1}}
    return {"db": f"sqlite:///{tmp_path / 'ui' / 'ui.db'}", "work": tmp_path / "ui",
            "mlflow_db": tmp_path / "mlflow.db", "uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
            "spec": spec, "tags": {"dripml.recipe": "adult-test", "dripml.knobs": "{}"}}


def _trial_runs(db: Path, parent: str) -> list[tuple[str, str]]:
    """(trial number, status) of the search run ``parent``'s trials (plain SQLite)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
        return connection.execute(
            "select n.value, r.status from runs r join tags p on p.run_uuid = r.run_uuid and "
            "p.key = 'mlflow.parentRunId' and p.value = ? join tags n on n.run_uuid = "
            "r.run_uuid and n.key = 'dripml.trial_number'", (parent,)).fetchall()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


UI = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    from dripml.orchestration.run_queue import RunQueue
    from dripml.orchestration.run_store import RunStore
    queue = RunQueue(RunStore(sys.argv[1]), Path(sys.argv[2]), tracking_uri=sys.argv[3],
                     poll_s=0.2)
    run = queue.submit_spec(json.loads(sys.argv[4]), recipe="adult-test",
                            recipe_version="1", pipeline="default", upload_id="u",
                            tags=json.loads(sys.argv[5]))
    print(run.id, flush=True)
    queue.start()
    time.sleep(600)
""")


@pytest.mark.slow
def test_a_run_killed_with_its_ui_resumes_to_the_end_when_the_ui_starts_again(
        e2e: dict[str, Any]) -> None:
    # The UI (a process owning a RunQueue) starts the run; it goes queued -> running with
    # progress; the UI is SIGKILLed mid-search: the run dies with it (PDEATHSIG). A new
    # queue on the same store resumes it to the end: finished, summary parsed, and no more
    # trials run in all than a fresh run runs.
    started = time.monotonic()
    ui = subprocess.Popen([sys.executable, "-c", UI, e2e["db"], str(e2e["work"]), e2e["uri"],
                           json.dumps(e2e["spec"]), json.dumps(e2e["tags"])],
                          stdout=subprocess.PIPE, text=True, start_new_session=True)
    child_pid = None
    try:
        run_id = ui.stdout.readline().strip()  # type: ignore[union-attr]
        assert run_id, "the UI process printed no run id"
        store = RunStore(e2e["db"])
        seen = {store.get(run_id).status}
        running = _wait("the run started", lambda: (v := store.get(run_id)).pid and v, 30, 0.05)
        child_pid = running.pid
        seen.add(running.status)
        assert psutil.Process(child_pid).ppid() == ui.pid
        progressed = _wait("a trial done", lambda: (v := store.get(run_id)).done >= 1 and v,
                           90, 0.05)
        assert progressed.total == NUM_TRIALS and progressed.objective
        assert progressed.mlflow_run_id and progressed.step
        assert progressed.best_value is not None and 0.5 < progressed.best_value <= 1
        os.kill(ui.pid, signal.SIGKILL)  # no cleanup at all
        ui.wait(10)
        _wait("the run died with its UI (PDEATHSIG)", lambda: _gone(child_pid), 30)
        killed = store.get(run_id)
        assert (killed.status, killed.pid) == ("running", child_pid)  # as the UI left it
        assert killed.done < NUM_TRIALS, "the kill came too late to test resuming a search"
        print(f"killed after {time.monotonic() - started:.1f} s with {killed.done} trials")

        queue = RunQueue(store, e2e["work"], tracking_uri=e2e["uri"], poll_s=0.2)
        queue.start()  # the restarted UI
        try:
            assert store.get(run_id).attempts == 2
            finished = _wait("the resumed run ended", lambda: (v := store.get(run_id)
                                                                ).terminal and v, 150)
        finally:
            queue.stop()
    finally:
        for pid in (ui.pid, child_pid):
            if pid is not None and not _gone(pid):
                os.killpg(pid, signal.SIGKILL)
        ui.wait(10)
    print(f"queued -> finished in {time.monotonic() - started:.1f} s, 2 attempts")
    assert seen == {"queued", "running"} or seen == {"running"}
    assert finished.status == "finished", finished.error
    assert (finished.attempts, finished.pid) == (2, None)
    assert finished.mlflow_run_id == progressed.mlflow_run_id  # the same MLflow run, resumed
    assert (finished.model_name, finished.model_version) == ("ui-queue", 1)
    assert {row["trial"] for row in finished.leaderboard} == set(range(NUM_TRIALS))
    assert finished.test_metrics["test_roc_auc"] > 0.7
    assert len(finished.frontier) == 1  # refine.top_k
    (chosen,) = [p for p in finished.frontier if p["chosen"]]
    assert chosen["version"] == 1 and chosen["latency_p99_ms"] > 0
    assert {"trial", "algorithm", "validation_roc_auc", "latency_p50_ms"} <= set(chosen)
    trials = _trial_runs(e2e["mlflow_db"], finished.mlflow_run_id)
    completed = [n for n, status in trials if status == "FINISHED"]
    assert sorted(completed) == sorted(str(n) for n in range(NUM_TRIALS))  # none twice
    assert len(trials) - len(completed) <= 1  # at most the one interrupted in flight
    events = RunQueue(store, e2e["work"]).events(run_id)
    assert sum(e["event"] == "run_started" for e in events) == 2
    assert events[-1]["event"] != "unreadable"
    store.close()


@pytest.mark.slow
def test_cancelling_a_running_recipe_run_kills_it_and_its_mlflow_run(
        e2e: dict[str, Any], adult_small_csv: dict[str, Path]) -> None:
    # The page's way in: the shipped tabular recipe on an upload, through RunQueue.submit.
    from mlflow.tracking import MlflowClient

    from dripml.recipes import find_recipes, shipped_recipes_dir

    recipe = find_recipes([shipped_recipes_dir()])["tabular-classification"]
    knobs = recipe.resolve({"label": "income", "families": ["logistic_regression"]},
                           columns=["income"])
    store = RunStore(e2e["db"])
    queue = RunQueue(store, e2e["work"], tracking_uri=e2e["uri"], poll_s=0.2)
    run = queue.submit(recipe, knobs=knobs, upload=adult_small_csv["train"])
    queue.start()
    pid = None
    try:
        started = _wait("the search started", lambda: (v := store.get(run.id)).total and v,
                        90, 0.1)
        assert started.status == "running" and started.mlflow_run_id
        pid = started.pid
        group = [p.pid for p in psutil.Process(pid).children(recursive=True)] + [pid]
        sent = time.monotonic()
        assert queue.cancel(run.id).cancel_requested
        cancelled = _wait("cancelled", lambda: (v := store.get(run.id)).terminal and v, 60)
        print(f"cancelled {time.monotonic() - sent:.1f} s after the request")
    finally:
        queue.stop()
        if pid is not None and not _gone(pid):
            os.killpg(pid, signal.SIGKILL)
    assert cancelled.status == "cancelled", cancelled.error
    assert [p for p in group if not _gone(p)] == []
    mlflow_run = MlflowClient(e2e["uri"]).get_run(cancelled.mlflow_run_id)
    assert mlflow_run.info.status == "KILLED"
    assert {k: mlflow_run.data.tags.get(k) for k in ("dripml.ui_run", "dripml.recipe")} == {
        "dripml.ui_run": run.id, "dripml.recipe": "tabular-classification"}
    assert json.loads(mlflow_run.data.tags["dripml.knobs"])["label"] == "income"
    assert queue.resume(run.id).status == "queued"  # and resumable
    store.close()
