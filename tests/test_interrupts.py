"""No run left RUNNING: Ctrl-C and SIGTERM stop `drip run` cleanly, `drip runs gc` collects
the runs of drivers that died (real processes, a real SQLite store, an embedded Ray)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from dripml import api, cli
from dripml.productionize import runs

BIN = Path(sys.executable).parent


def _session(leader: int) -> list[psutil.Process]:
    """Every live process of the session ``leader`` started (Ray's daemons and workers
    change their process group, not their session)."""
    found = []
    for process in psutil.process_iter():
        try:
            if (process.pid != os.getpid() and os.getsid(process.pid) == leader
                    and process.status() != psutil.STATUS_ZOMBIE):
                found.append(process)
        except (ProcessLookupError, psutil.Error):
            continue
    return found


def _trials_logged(db: Path) -> int:
    # Plain SQLite, read-only: an MLflow client here would race the driver's migration.
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute("select count(*) from tags where key = 'dripml.kind' "
                                      "and value = 'trial'").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_mid_search_kills_the_run_and_leaves_nothing(
        signum: int, adult_small_csv: dict[str, Path], in_tmp_dir: Path) -> None:
    spec = {"name": "interrupted", "task": "binary",
            "data": {"train": str(adult_small_csv["train"]),
                     "test": str(adult_small_csv["test"]), "label": "income"},
            "algorithms": [{"name": "logistic_regression"}], "k_fold": 2,
            "search": {"num_trials": 5000}}
    Path("spec.yaml").write_text(yaml.safe_dump(spec))
    db = in_tmp_dir / "store.db"
    client = MlflowClient(f"sqlite:///{db}")
    orphan = client.create_run(client.create_experiment("earlier"), tags={  # kill -9'd
        **runs.driver_tags(), "dripml.kind": "search", runs.DRIVER_TAG: "elsewhere:1",
        runs.HEARTBEAT_TAG: str(int(time.time()) - 600)}).info.run_id
    driver = subprocess.Popen(
        [str(BIN / "drip"), "run", "spec.yaml", "--tracking-uri", f"sqlite:///{db}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        started = time.monotonic()
        deadline = started + 90
        while _trials_logged(db) < 2:
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no 2 trials logged within 90 s"
            time.sleep(0.2)
        members = _session(driver.pid)
        assert any("raylet" in p.name() for p in members), [p.name() for p in members]
        sent = time.monotonic()
        if signum == signal.SIGINT:
            os.killpg(driver.pid, signum)  # a terminal's Ctrl-C reaches the whole group
        else:
            os.kill(driver.pid, signum)  # Kubernetes signals the container's main process
        _, err = driver.communicate(timeout=60)
        stopped_s = time.monotonic() - sent
        print(f"{signal.Signals(signum).name}: 2 trials logged {sent - started:.1f} s "
              f"after the start; exited {stopped_s:.1f} s after the signal")
        gone = time.monotonic() + 10
        while _session(driver.pid) and time.monotonic() < gone:
            time.sleep(0.1)
        left = [(p.pid, p.name()) for p in _session(driver.pid)]
    finally:
        for process in _session(driver.pid):
            process.kill()
        if driver.poll() is None:
            driver.kill()
            driver.wait()

    name = signal.Signals(signum).name
    assert driver.returncode == 128 + signum, err[-3000:]
    assert not left, f"processes of the run outlived it: {left}"
    assert "SIGTERM received" not in err and "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f"interrupted by {name}: kept ")
    assert lines[0].endswith("; resume with `drip run spec.yaml --resume`")
    assert stopped_s < 30, f"{stopped_s:.1f} s from the signal to the exit"

    assert client.get_run(orphan).info.status == "FAILED"  # collected when the run started
    assert f"marked run {orphan} FAILED: driver elsewhere:1 stopped sending" in err
    experiment = client.get_experiment_by_name("interrupted").experiment_id
    (parent,) = client.search_runs([experiment], "tags.`dripml.kind` = 'search'")
    assert parent.info.status == "KILLED"
    assert parent.data.tags[runs.END_REASON_TAG] == f"interrupted by {name}"
    assert parent.data.tags[runs.DRIVER_TAG] == f"{socket.gethostname()}:{driver.pid}"
    trials = client.search_runs([experiment], "tags.`dripml.kind` = 'trial'",
                                max_results=5000)
    assert not [t.info.run_id for t in trials if t.info.status == "RUNNING"]
    interrupted = [t for t in trials if t.data.tags["dripml.trial_state"] == "INTERRUPTED"]
    assert all(t.info.status == "KILLED" for t in interrupted)
    kept = len(trials) - len(interrupted)
    assert kept >= 2
    assert lines[0] == (f"interrupted by {name}: kept {kept} finished trials in run "
                        f"{parent.info.run_id}; resume with `drip run spec.yaml --resume`")


def test_runs_gc_fails_the_runs_of_dead_drivers_and_spares_live_ones(in_tmp_dir: Path) -> None:
    uri = f"sqlite:///{in_tmp_dir / 'store.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("gc")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    old = time.time() - 600

    def search_run(pid: int, beat: float) -> str:
        run = client.create_run(experiment, run_name=f"search-{pid}", tags={
            **runs.driver_tags(), "dripml.kind": "search", runs.DRIVER_TAG: f"{host}:{pid}",
            runs.HEARTBEAT_TAG: str(int(beat))})
        return run.info.run_id

    orphan = search_run(dead.pid, old)
    trial = client.create_run(experiment, tags={"mlflow.parentRunId": orphan,
                                                "dripml.kind": "trial"}).info.run_id
    # Another host's driver: only its heartbeat tells; 10 min old is 40 missed beats.
    silent = client.create_run(experiment, tags={
        "dripml.kind": "search", runs.DRIVER_TAG: "elsewhere:1",
        runs.HEARTBEAT_TAG: str(int(old)), runs.INTERVAL_TAG: "15"}).info.run_id
    alive = search_run(os.getpid(), old)  # the heartbeat below makes it fresh
    fresh_elsewhere = client.create_run(experiment, tags={
        "dripml.kind": "search", runs.DRIVER_TAG: "elsewhere:2",
        runs.HEARTBEAT_TAG: str(int(time.time())), runs.INTERVAL_TAG: "15"}).info.run_id

    with runs.heartbeat(alive, interval_s=1.0, client=client):
        first = float(client.get_run(alive).data.tags[runs.HEARTBEAT_TAG])
        assert first >= time.time() - 2  # written on entry
        orphaned = {row.run_id: row.orphaned for row in api.unfinished_runs(uri)}
        assert orphaned == {orphan: True, silent: True, alive: False, fresh_elsewhere: False}
        gc = CliRunner().invoke(cli.app, ["runs", "gc", "--json", "--tracking-uri", uri])
        beating = time.monotonic() + 5
        while float(client.get_run(alive).data.tags[runs.HEARTBEAT_TAG]) <= first:
            assert time.monotonic() < beating, "no heartbeat within 5 s (one a second)"
            time.sleep(0.1)
    assert gc.exit_code == 0, gc.output
    collected = {row["run_id"]: row for row in json.loads(gc.stdout)}
    assert set(collected) == {orphan, silent, trial}, (collected, alive, fresh_elsewhere)
    for run_id in (orphan, silent, trial):
        run = client.get_run(run_id)
        assert run.info.status == "FAILED"
        assert run.data.tags[runs.END_REASON_TAG] == collected[run_id]["reason"]
    assert collected[orphan]["reason"].startswith(
        f"driver {host}:{dead.pid} is no longer running (last heartbeat at ")
    assert collected[silent]["reason"].startswith(
        "driver elsewhere:1 stopped sending heartbeats at ")
    assert client.get_run(orphan).info.end_time == int(old) * 1000
    assert collected[trial]["parent_run_id"] == orphan
    assert client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(fresh_elsewhere).info.status == "RUNNING"

    assert api.gc_runs(uri) == []
