"""The tracking store first: a bad store fails in seconds before Ray starts; concurrent first
runs on a new SQLite store both succeed; an alias another run moved is left where it is."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from conftest import free_port
from dripml import api, cli, settings
from dripml.errors import StoreError
from dripml.productionize import store


def spec_for(data: dict[str, Path]) -> dict:
    return {"name": "store-check", "task": "binary",
            "data": {"train": str(data["train"]), "test": str(data["test"]), "label": "income"},
            "algorithms": [{"name": "lightgbm"}], "search": {"num_trials": 1}, "k_fold": 2}


def ray_processes() -> list[str]:
    """Ray's daemons among this process's descendants."""
    names = []
    for child in psutil.Process().children(recursive=True):
        try:
            names.append(child.name())
        except psutil.NoSuchProcess:
            continue
    return [n for n in names if "raylet" in n or "gcs_server" in n]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[str]:
    """A SQLite store whose file and folder cannot be written, even by root (who ignores
    file modes): the immutable attribute as root, the modes otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "mlflow.db"
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TABLE something (x INTEGER)")
    connection.close()
    db.chmod(0o444)
    folder.chmod(0o555)
    root = os.geteuid() == 0
    if root and subprocess.run(["chattr", "+i", str(db), str(folder)],
                               capture_output=True).returncode != 0:
        folder.chmod(0o755)
        pytest.skip("running as root on a file system without chattr +i: cannot make a "
                    "store read-only")
    yield f"sqlite:///{db}"
    if root:
        subprocess.run(["chattr", "-i", str(db), str(folder)], check=True)
    folder.chmod(0o755)
    db.chmod(0o644)


@pytest.mark.parametrize("kind", ["refused", "silent", "read-only"])
def test_a_bad_store_fails_in_seconds_before_ray_starts(
        kind: str, request: pytest.FixtureRequest, adult_small_csv: dict[str, Path],
        in_tmp_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setenv(settings.STORE_TIMEOUT_S.name, "1")
    uri, expected = {
        "refused": lambda: (f"http://127.0.0.1:{free_port()}", "cannot be reached"),
        "silent": lambda: (request.getfixturevalue("silent_server"), "did not answer within 1 s"),
        "read-only": lambda: (request.getfixturevalue("read_only_store"), "cannot be written"),
    }[kind]()
    started = time.monotonic()
    with pytest.raises(StoreError) as raised:
        api.train(spec_for(adult_small_csv), tracking_uri=uri)
    assert time.monotonic() - started < 10
    assert uri in str(raised.value) and expected in str(raised.value)
    assert not ray.is_initialized() and ray_processes() == []
    assert not (in_tmp_dir / ".dripml" / "mlflow.db").exists()  # no other store made either


@pytest.mark.parametrize("command", [["run", "spec.yaml"], ["models"], ["serve", "m@champion"],
                                     ["predict", "m", "--input", "TEST", "--output",
                                      "out.csv"]])
def test_the_cli_names_the_store_without_a_traceback(
        command: list[str], adult_small_csv: dict[str, Path], in_tmp_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    # `drip run` and `predict` set RAY_AUTH_MODE in this process: restored after the test,
    # so later tests' Ray does not start with another auth mode than it was imported with.
    monkeypatch.setenv("RAY_AUTH_MODE", os.environ.get("RAY_AUTH_MODE", "unset"))
    if os.environ["RAY_AUTH_MODE"] == "unset":
        monkeypatch.delenv("RAY_AUTH_MODE")

    (in_tmp_dir / "spec.yaml").write_text(yaml.safe_dump(spec_for(adult_small_csv)))
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    command = [str(adult_small_csv["test"]) if c == "TEST" else c for c in command]
    result = CliRunner().invoke(cli.app, [*command, "--tracking-uri", uri])
    assert time.monotonic() - started < 10
    assert result.exit_code == 1, result.output
    assert "StoreError" in result.output and uri in result.output
    assert "Traceback" not in result.output
    assert not (in_tmp_dir / "out.csv").exists()


@pytest.fixture(scope="module")
def raced_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int], list[str]]:
    """A new SQLite store first checked (created, migrated) by two processes at once:
    (the database, their exit codes, their output)."""
    folder = tmp_path_factory.mktemp("raced")
    db = folder / "new" / "mlflow.db"
    code = textwrap.dedent(f"""
        from dripml.productionize import store
        store.check({f"sqlite:///{db}"!r}, write=True)
    """)
    processes = [subprocess.Popen([sys.executable, "-c", code], cwd=folder,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in processes]
    return db, [p.returncode for p in processes], outputs


def test_two_first_runs_on_a_new_sqlite_store_both_succeed(
        raced_store: tuple[Path, list[int], list[str]]) -> None:
    # Without the lock MLflow's migration races: `table registered_models already exists`,
    # `duplicate column name: step`, `table _alembic_tmp_experiments already exists`.
    db, codes, outputs = raced_store
    assert codes == [0, 0], outputs
    uri = f"sqlite:///{db}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert db.with_name("mlflow.db.lock").exists()
    assert store.check(uri, write=False) == uri  # what `drip models` runs


def register_version(client: MlflowClient, name: str, experiment_id: str) -> tuple[str, str]:
    """A new version of ``name`` logged by a new (finished) run: (version, run id)."""
    run = client.create_run(experiment_id)
    version = client.create_model_version(name, f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    client.set_terminated(run.info.run_id)
    return str(version.version), run.info.run_id


def test_an_alias_moved_by_another_run_is_left_there(
        raced_store: tuple[Path, list[int], list[str]], in_tmp_dir: Path) -> None:
    import mlflow

    from dripml.productionize import tracking

    shutil.copy(raced_store[0], in_tmp_dir / "mlflow.db")  # migrated already
    uri = tracking.configure(f"sqlite:///{in_tmp_dir / 'mlflow.db'}")
    store.check(uri, write=True)
    client = MlflowClient()
    experiment = client.create_experiment("cas")
    client.create_registered_model("m")
    first, _ = register_version(client, "m", experiment)
    client.set_registered_model_alias("m", "champion", first)

    ours = client.create_run(experiment).info.run_id  # starts while champion -> first
    assert store.record_alias(ours, "m", "champion") == first
    theirs_version, theirs = register_version(client, "m", experiment)
    client.set_registered_model_alias("m", "champion", theirs_version)  # another run moves it
    with mlflow.start_run(run_id=ours):
        our_version = client.create_model_version("m", "runs:/x/model", run_id=ours).version
        assert store.record_alias(ours, "m", "champion") == first  # kept, as on a resume
        recorded, expected = store.recorded_alias(ours)
        move = store.move_alias("m", "champion", str(our_version), expected=expected,
                                run_id=ours)
    assert recorded and not move.moved and move.found == theirs_version
    assert (f"alias champion of m was moved to version {theirs_version} (registered by run "
            f"{theirs}) while this run was going") in move.message
    assert f"this run's version is {our_version}" in move.message
    assert store.current_alias("m", "champion") == theirs_version  # untouched

    # Nobody moved it since this run started: it moves; a first model (no alias) too.
    later = client.create_run(experiment).info.run_id
    store.record_alias(later, "m", "champion")
    version, _ = register_version(client, "m", experiment)
    assert store.move_alias("m", "champion", version, expected=theirs_version,
                            run_id=later).moved
    assert store.current_alias("m", "champion") == version
    assert store.record_alias(client.create_run(experiment).info.run_id, "new", "champion") is None
