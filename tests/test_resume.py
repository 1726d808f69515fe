"""Resume and fold retries, with real processes: a driver killed with SIGKILL mid-search and
resumed from a real MLflow SQLite store; a Ray worker that dies on a fold (local Ray)."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
import ray

from dripml import api
from dripml.core import data, resume
from dripml.core.progress import Reporter
from dripml.core.results import FoldScore, TrialResult
from dripml.core.spec import load_spec
from dripml.discover import search, trials
from dripml.errors import SearchError
from dripml.refine import candidates

# ---------------------------------------------------------------------------------------
# Pure parts: the record, the digest, the study a resumed search starts from
# ---------------------------------------------------------------------------------------

BASE = {"name": "r", "task": "binary", "data": {"train": "x.csv", "label": "y"},
        "algorithms": [{"name": "logistic_regression",
                        "search_space": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}],
        "search": {"algorithm": "random", "num_trials": 6}}


def _trial(number: int, c: float, state: str = "COMPLETE", value: float = 0.8) -> TrialResult:
    folds = (FoldScore(0, {"validation_roc_auc": value, "train_roc_auc": math.nan}, 0.5,
                       started_ms=1, ended_ms=2),
             FoldScore(1, {"validation_roc_auc": value}, 0.25, probe_model_mb=0.1))
    return TrialResult(
        number=number, algorithm="logistic_regression", algorithm_name="logistic_regression",
        params={"C": c}, state=state, folds=folds if state == "COMPLETE" else folds[:1],
        mean={}, std={}, objective=value if state == "COMPLETE" else None, fit_time_s=0.75,
        reason="successive halving" if state == "PRUNED" else None, fold_retries=1,
        search_point={"logistic_regression.C": c},
        search_space={"logistic_regression.C": json.dumps(
            {"name": "FloatDistribution",
             "attributes": {"step": None, "low": 0.01, "high": 10.0, "log": True}})},
        reports={1: value})


def test_a_trial_record_reads_back_equal_even_beyond_one_tag() -> None:
    trial = _trial(3, 0.5)
    back = resume.trial_from_tags(resume.record_tags(trial))
    assert back is not None
    assert (back.params, back.state, back.objective, back.fold_retries, back.reports) == (
        trial.params, "COMPLETE", 0.8, 1, {1: 0.8})
    assert back.folds[1].probe_model_mb == 0.1 and math.isnan(back.folds[0].metrics[
        "train_roc_auc"])
    assert back.mean["validation_roc_auc"] == pytest.approx(0.8) and back.fit_time_s == 0.75
    big = TrialResult(**{**trial.__dict__, "params": {"text": "x" * 20_000}})
    tags = resume.record_tags(big)
    assert len(tags) == 3 and max(map(len, tags.values())) <= resume.TAG_LIMIT
    assert resume.trial_from_tags(tags).params == big.params  # type: ignore[union-attr]
    assert resume.trial_from_tags({resume.RECORD_TAG: "{not json"}) is None


def test_the_digest_ignores_where_a_search_runs_but_not_what_it_searches() -> None:
    digest = resume.spec_digest(load_spec(BASE))
    faster = {**BASE, "resources": {"cpus_per_trial": 2, "max_fold_retries": 5},
              "search": {**BASE["search"], "max_concurrent": 4, "time_budget_s": 600},
              "registry": {"alias": "staging"}}
    assert resume.spec_digest(load_spec(faster)) == digest
    other = {**BASE, "search": {**BASE["search"], "num_trials": 7}}
    assert resume.spec_digest(load_spec(other)) != digest


def test_a_resumed_study_knows_the_kept_trials_and_numbers_new_ones_after_them() -> None:
    spec = load_spec(BASE)
    kept = [_trial(0, 0.1), _trial(1, 5.0, "PRUNED"), _trial(3, 1.0, "FAILED")]  # 2 was lost
    study, total = search.create_study(spec, "maximize", kept)
    assert total == 6
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "PRUNED", "FAIL", "FAIL"]
    assert study.trials[0].params == {"logistic_regression.C": 0.1}
    assert study.trials[1].intermediate_values == {1: 0.8}
    new = study.ask()
    assert new.number == 4
    first = search.create_study(spec, "maximize")[0].ask()
    c = search.suggest(new, spec).params["C"]
    assert c != search.suggest(first, spec).params["C"]  # reseeded: not trial 0 again

    grid = load_spec({**BASE, "search": {"algorithm": "grid"}, "algorithms": [{
        "name": "logistic_regression",
        "search_space": {"C": {"type": "choice", "values": [0.1, 1.0, 10.0]}}}]})
    done = TrialResult(**{**_trial(0, 1.0).__dict__, "search_space": {
        "logistic_regression.C": json.dumps({"name": "CategoricalDistribution",
                                             "attributes": {"choices": [0.1, 1.0, 10.0]}})}})
    study, total = search.create_study(grid, "maximize", [done])
    asked = [study.ask() for _ in range(2)]
    assert total == 3
    assert sorted(search.suggest(t, grid).params["C"] for t in asked) == [0.1, 10.0]


# ---------------------------------------------------------------------------------------
# Real processes
# ---------------------------------------------------------------------------------------


class Said(Reporter):
    """A reporter that keeps what the run says."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def message(self, text: str) -> None:
        self.lines.append(text)


def _trial_rows(db: Path) -> list[tuple[str, str, str]]:
    """(run id, status, trial number) of every trial run in the store; [] while it is
    being created."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as connection:
            return connection.execute(
                "SELECT r.run_uuid, r.status, n.value FROM runs r "
                "JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'dripml.kind' "
                "AND k.value = 'trial' "
                "JOIN tags n ON n.run_uuid = r.run_uuid AND n.key = 'dripml.trial_number'"
            ).fetchall()
    except sqlite3.Error:
        return []


def _search_runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return connection.execute(
            "SELECT r.run_uuid, r.status FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid "
            "AND k.key = 'dripml.kind' AND k.value = 'search'").fetchall()


@pytest.mark.slow
def test_a_driver_killed_mid_search_resumes_without_running_a_trial_twice(
        ray_cluster, small_adult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The driver joins this process's Ray (one Ray start, not two, on CI's 2 cores), as a
    # pipeline's driver joins its cluster; SIGKILL leaves its run RUNNING in MLflow.
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    spec = {"name": "resumed", "task": "binary", "data": small_adult, "k_fold": 2,
            "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 60}, "search_space": {
                "num_leaves": {"type": "int", "low": 4, "high": 64},
                "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.3}}}],
            "search": {"algorithm": "random", "num_trials": 6, "max_concurrent": 1},
            "refine": {"top_k": 1}}
    code = ("import json, sys, dripml; dripml.train(json.loads(sys.argv[1]), "
            "tracking_uri=sys.argv[2], ray_address=sys.argv[3])")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "DRIPML_TRACKING_URI", "RAY_ADDRESS")}
    env["RAY_AUTH_MODE"] = "token"  # this process's Ray wrote ~/.ray/auth_token
    address = ray.get_runtime_context().gcs_address
    with open(tmp_path / "driver.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec), uri, address],
                                  cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_trial_rows(db)) < 3:
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the driver logged no 3 trials in 120 s"
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGKILL)  # no cleanup at all
        driver.wait(timeout=30)
    finally:
        _kill_group(driver)
    logged = _trial_rows(db)
    assert 3 <= len(logged) < 6, "the kill came too late to test resume"
    [(parent, status)] = _search_runs(db)
    assert status == "RUNNING"  # what a killed driver leaves behind

    said = Said()
    result = api.train(spec, tracking_uri=uri, resume=True, reporter=said)

    assert result.run_id == parent
    assert f"resuming run {parent}: {len(logged)} trials kept, {6 - len(logged)} to go" in (
        said.lines)
    rows = _trial_rows(db)
    per_number = Counter(number for _, _, number in rows)
    assert len(rows) == 6 and max(per_number.values()) == 1, per_number
    assert len(result.leaderboard) == 6
    params = {json.dumps(json.loads(p), sort_keys=True) for p in result.leaderboard["params"]}
    assert len(params) == 6  # no configuration evaluated twice
    assert _search_runs(db) == [(parent, "FINISHED")]
    from mlflow.tracking import MlflowClient

    assert MlflowClient(uri).get_run(parent).data.tags[resume.STAGE_TAG] == resume.DONE
    # Nothing unfinished is left: resuming again would start a new run, and say nothing.
    from dripml.productionize import tracking, unfinished

    tracking.configure(uri)
    checked = load_spec(spec)
    plan = unfinished.plan(checked, None, resume_it=True, total=6)
    assert plan.run_id is None and plan.message == ""

    # A run that died in Refine: its trials read back as they ran, and it resumes at Refine.
    done = unfinished.read_trials(unfinished.Unfinished(parent, result.experiment_id,
                                                        "FINISHED", resume.DONE))
    assert [t.number for t in done] == sorted(int(n) for n in per_number)
    assert all(t.search_point and t.state == "COMPLETE" for t in done)
    client = MlflowClient(uri)
    died = client.create_run(result.experiment_id, tags={
        "dripml.kind": "search", resume.DIGEST_TAG: resume.spec_digest(checked),
        resume.STAGE_TAG: resume.REFINE}).info.run_id
    for trial in done:
        tracking.log_trial(died, trial)
    client.set_terminated(died, "FAILED")
    plan = unfinished.plan(checked, None, resume_it=False, total=6)
    assert plan.run_id is None and died in plan.message and "--resume" in plan.message
    plan = unfinished.plan(checked, None, resume_it=True, total=6)
    assert (plan.run_id, plan.stage) == (died, resume.REFINE)
    assert plan.message == f"resuming run {died}: 6 trials kept, 0 to go, resuming at Refine"
    objective = trials.resolve_objective(checked)
    assert resume.search_result(plan.kept, objective, 1.0).best.number == result.best.number
    # Another pipeline run's tags do not match it.
    assert unfinished.plan(checked, {"dripml.pipeline_run_id": "other"}, resume_it=True,
                           total=6).run_id is None


def _kill_group(process: subprocess.Popen) -> None:
    """SIGKILL what is left of the process group ``process`` leads (Ray's own processes
    included), and check that nothing of it survives."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:
        left = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == process.pid:
                    left.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"processes of the killed driver outlived it: {left}"


def _crash_spec(small_adult: dict, marker: Path, retries: int):
    return api.validate({
        "name": "crash", "task": "binary", "data": small_adult, "k_fold": 2,
        "algorithms": [{"name": "custom_components:CrashOnce",
                        "params": {"marker": str(marker)}}],
        "search": {"num_trials": 1}, "resources": {"max_fold_retries": retries}})


@pytest.mark.slow
def test_a_fold_whose_worker_dies_is_retried_and_counted(ray_cluster, small_adult,
                                                         tmp_path: Path) -> None:
    spec = _crash_spec(small_adult, tmp_path / "crashed", retries=2)
    dataset = data.load(spec)
    result = trials.discover(dataset, spec, trials.resolve_objective(spec))
    [trial] = result.trials
    assert (tmp_path / "crashed").exists()  # a worker did die
    assert trial.state == "COMPLETE" and trial.fold_retries == 1 and len(trial.folds) == 2
    board = candidates.leaderboard(result)
    assert board.loc[0, "reason"] == "fold retries: 1"

    spec = _crash_spec(small_adult, tmp_path / "crashed-again", retries=0)
    seen: list[TrialResult] = []
    with pytest.raises(SearchError, match="none of 1 trials completed") as failed:
        trials.discover(dataset, spec, trials.resolve_objective(spec),
                        on_trial=lambda r, *_: seen.append(r))
    assert [t.state for t in seen] == ["FAILED"] and seen[0].fold_retries == 0
    assert "Ray worker or node was lost (0 retries" in str(failed.value)
