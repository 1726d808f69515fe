"""`drip` output for people and scripts: -h and --version, --json on stdout alone, tables that
stay one line per row when stdout is a pipe, environment defaults, completion, the MLflow run
URL and library warnings routed to the run's log file."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

import dripml
from dripml import api
from dripml.cli import _dimension_text, app
from dripml.core.logs import library_logs_to

BIN = Path(sys.executable).parent
runner = CliRunner()


def _piped_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in {"COLUMNS", "DRIPML_TRACKING_URI", "MLFLOW_TRACKING_URI"}}
    return env


def _spec(paths: dict[str, Path], **changes: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": "cli-output", "task": "binary",
        "data": {"train": str(paths["train"]), "test": str(paths["test"]), "label": "income"},
        "k_fold": {"n_splits": 2}, "search": {"num_trials": 1, "algorithm": "random"},
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}]}
    spec.update(changes)
    return spec


def test_version_names_dripml_python_and_the_stack() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"dripml {dripml.__version__}"
    versions = dict(line.split(" ", 1) for line in lines)
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))
    assert versions["mlflow"][0].isdigit() and versions["ray"][0].isdigit()


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):  # a group (typer's own click classes)
            found += _commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def test_dash_h_is_help_on_every_command() -> None:
    commands = _commands(typer.main.get_command(app))
    assert ("spec", "validate") in commands and ("run",) in commands
    for command in commands:
        result = runner.invoke(app, [*command, "-h"])
        assert result.exit_code == 0 and "Usage:" in result.stdout, (command, result.output)


def test_shell_completion_is_on() -> None:
    shown = subprocess.run([str(BIN / "drip"), "--show-completion", "bash"],
                           capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "_DRIP_COMPLETE" in shown.stdout and "complete " in shown.stdout
    assert "--install-completion" in runner.invoke(app, ["-h"]).stdout


def test_algorithms_json_is_the_registry() -> None:
    result = runner.invoke(app, ["algorithms", "--json"])
    assert result.exit_code == 0, result.output
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert list(listed) == list(api.list_algorithms())
    lightgbm = listed["lightgbm"]
    assert "binary" in lightgbm["tasks"]
    leaves = lightgbm["search_space"]["num_leaves"]
    assert leaves["type"] == "int" and leaves["low"] < leaves["high"]


def test_a_piped_table_keeps_each_row_on_one_line() -> None:
    """Through a real pipe, no COLUMNS: each algorithm's name, its whole description and its
    first bounds share one line (rich folded them into 80 columns before)."""
    shown = subprocess.run([str(BIN / "drip"), "algorithms"], capture_output=True, text=True,
                           env=_piped_env(), timeout=120)  # stdout: a pipe
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    for name, algorithm in api.list_algorithms().items():
        task = "regression" if algorithm.tasks == {"regression"} else "binary"
        key, first = next(iter(algorithm.space_for(task, None).items()))
        row = [line for line in lines if f"│ {name} " in line]
        assert len(row) == 1, (name, row)
        assert algorithm.description in row[0] and f"{key}: {_dimension_text(first)}" in row[0]
    assert max(map(len, lines)) > 120  # wider than any terminal default


def test_spec_validate_json(adult_small_csv: dict[str, Path], tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_spec(adult_small_csv)))
    result = runner.invoke(app, ["spec", "validate", str(good), "--json"])
    assert result.exit_code == 0, result.output
    checked = json.loads(result.stdout)
    assert checked["valid"] is True and checked["algorithms"] == ["lightgbm"]
    assert checked["spec"]["k_fold"]["n_splits"] == 2  # the spec with its defaults
    assert checked["spec"]["registry"]["alias"] == "champion"

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_spec(adult_small_csv, algorithms=["lightgbmm"],
                                        k_fold={"n_splits": 1})))
    result = runner.invoke(app, ["spec", "validate", str(bad), "--json"])
    assert result.exit_code == 1
    answer = json.loads(result.stdout)  # stdout holds the JSON alone
    assert answer["valid"] is False and len(answer["errors"]) >= 2
    assert any("lightgbmm" in line for line in answer["errors"])
    assert any("n_splits" in line for line in answer["errors"])


def test_dripml_tracking_uri_is_the_default_of_tracking_uri(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store, registry_uri=store)
    client.create_registered_model("from-env")
    client.create_model_version("from-env", source=str(tmp_path / "model"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'other.db'}")
    monkeypatch.setenv("DRIPML_TRACKING_URI", store)  # dripml's own variable wins
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["version"]) for r in rows] == [("from-env", "1")]
    assert not (tmp_path / "other.db").exists()
    assert "DRIPML_TRACKING_URI" in runner.invoke(app, ["models", "-h"]).stdout


def test_library_logs_go_to_the_file_and_errors_to_the_screen(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mlflow_logger, ray_logger = logging.getLogger("mlflow"), logging.getLogger("ray")
    ours = logging.StreamHandler(sys.stderr)
    mlflow_logger.addHandler(ours)  # what MLflow installs at import
    before = (list(mlflow_logger.handlers), mlflow_logger.propagate, mlflow_logger.level)
    log = tmp_path / "logs" / "run.log"
    try:
        with library_logs_to(log), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("a deprecation nobody asked for", DeprecationWarning, stacklevel=1)
            logging.getLogger("mlflow.store.db.utils").info("creating tables")
            mlflow_logger.warning("cloudpickle is risky")
            ray_logger.error("a worker died")
            logging.getLogger("sqlalchemy.engine").info("SELECT 1")  # kept out: too chatty
        text = log.read_text()
        assert "a deprecation nobody asked for" in text and "creating tables" in text
        assert "cloudpickle is risky" in text and "a worker died" in text
        assert "SELECT 1" not in text
        screen = capsys.readouterr().err
        assert "a worker died" in screen  # errors are never silenced
        assert "cloudpickle" not in screen and "deprecation" not in screen
        assert (list(mlflow_logger.handlers), mlflow_logger.propagate,
                mlflow_logger.level) == before
        assert warnings.showwarning.__module__ == "warnings"  # captureWarnings undone
    finally:
        mlflow_logger.removeHandler(ours)


@pytest.mark.slow
def test_run_and_frontier_json(adult_small_csv: dict[str, Path],
                                                  in_tmp_dir: Path) -> None:
    """In process (the imports are shared with the other tests): Ray, MLflow, the log file."""
    (in_tmp_dir / "spec.yaml").write_text(yaml.safe_dump(_spec(adult_small_csv)))
    run = runner.invoke(app, ["run", "spec.yaml", "--json"])
    assert run.exit_code == 0, (run.stderr[-3000:], run.exception)
    summary = json.loads(run.stdout)  # stdout is the JSON and nothing else
    run_id, experiment = summary["run_id"], summary["experiment_id"]
    assert summary["run_url"] == (f"http://127.0.0.1:5000/#/experiments/{experiment}"
                                  f"/runs/{run_id}")
    assert summary["open_ui"].startswith("mlflow ui --backend-store-uri sqlite:///")
    assert summary["model"]["alias_uri"] == "models:/cli-output@champion"
    assert 0.5 < summary["test_metrics"]["test_roc_auc"] <= 1
    # the one trial, or its compiled twin (dripml.algorithms.compiled) if it measured faster
    assert summary["chosen"]["algorithm"] in {"lightgbm", "lightgbm+tl2cgen"}
    assert [row["trial"] for row in summary["leaderboard"]] == [0]
    assert summary["leaderboard"][0]["params"]["n_estimators"] == 20
    # the refit candidate and its twin, as the web page plots them
    assert {p["algorithm"] for p in summary["frontier"]} <= {"lightgbm", "lightgbm+tl2cgen"}
    (point,) = [p for p in summary["frontier"] if p["chosen"]]
    assert point["trial"] == summary["chosen"]["trial"]
    assert point["version"] == int(summary["model"]["version"]) and point["latency_p99_ms"] > 0
    assert f"MLflow run {run_id}: {summary['run_url']}" in run.stderr  # said at the start
    log = Path(summary["log_file"])
    assert log.parent == in_tmp_dir.resolve() / ".dripml" / "logs" and str(log) in run.stderr
    assert " WARNING " not in run.stderr and " INFO " not in run.stderr  # in the file instead
    assert "mlflow" in log.read_text()

    frontier = runner.invoke(app, ["frontier", run_id, "--json"])
    assert frontier.exit_code == 0, frontier.output
    points = json.loads(frontier.stdout)
    assert [p["trial"] for p in points] == [p["trial"] for p in summary["frontier"]]
    chosen = [(p["trial"], p["version"]) for p in points if p["chosen"]]
    assert chosen == [(summary["chosen"]["trial"], int(summary["model"]["version"]))]
    assert all(isinstance(p["version"], int | None) for p in points)  # never 1.0
    assert points[0]["params"]["n_estimators"] == 20
