"""dripml against FLAML and AutoGluon at the same time budgets on real data sets.

The issue's goal: *at every time budget dripml's test metric is at least FLAML's, and its
wall time stays within 1.1x the budget.* For each (data set, budget, tool) the script
measures:

- the test metric of the chosen model: ROC AUC of the positive class for the binary sets
  (``adult``: ``income`` >50K; ``flights``: ``delayed`` yes), R^2 for ``diamonds``
  (regression on ``price``); every tool is scored by the same scikit-learn code
  (``automl_runner.score``) on the same test rows;
- the wall time of the fit call (``dripml.train``, ``AutoML.fit``, ``TabularPredictor.fit``)
  and its ratio to the budget; ``dripml.train`` includes Ray's start, loading the data,
  Refine's refits and cost measurements and MLflow registration, which its budget bounds;
- trials: the configurations each tool tried: every trial dripml's Discover started (its
  states in brackets: complete = all 5 folds, pruned = stopped early or cancelled at the
  deadline), every configuration FLAML evaluated (``AutoML._iter_per_learner`` summed, on a
  sample or on all rows), the models AutoGluon trained (its weighted ensemble included);
- single-row latency of the chosen model on the tool's own predict path: median of 200 calls,
  each on a different test row, after 10 untimed calls; FLAML and AutoGluon get a one-row
  pandas DataFrame (``predict_proba`` for binary, ``predict`` for regression; AutoGluon's
  predictor persisted in memory first), dripml the same row as a JSON-like dict through the
  registered model's ``TrainedModel.predict_records`` (what ``drip serve`` calls).

Baseline: FLAML (``flaml[automl]`` 2.8.0, ``AutoML().fit(X, y, task=..., time_budget=B,
metric="roc_auc"|"r2", n_jobs=2, seed=0)``, default estimators); AutoGluon
(``autogluon.tabular`` 1.6.3 with LightGBM, XGBoost and CatBoost, ``presets="medium_quality"``,
``time_limit=B``, ``num_cpus=2``; torch-based models left out, see ``TOOLS``) is shown too.
``medium_quality`` rather than ``best_quality``: best_quality bags every model over 8 folds
and stacks a second layer on top (about 8x the fitting work per model), which on 2 cores at
60 to 300 s leaves room for few models; medium_quality, AutoGluon's preset for short runs,
fits each model once on the training rows (holding out a validation split) like FLAML's and
dripml's final refit, plus AutoGluon's weighted ensemble of them.

dripml's spec (the issue's typical one): algorithms lightgbm, xgboost, logistic_regression
(ridge for regression), random_forest, hist_gradient_boosting with their default search
spaces; ``search: {algorithm: tpe, time_budget_s: B, seed: 0}`` (no ``num_trials``: the
budget ends the search, as in FLAML and AutoGluon; halving and the cost-aware planner are on
by default under a budget); 5 folds;
``resources.cpus_per_trial: 1`` on an embedded 2-CPU Ray cluster; MLflow into a temporary
folder, a registry model name per run.

Every tool reads the same Parquet files: ``dripml.core.datasets.fetch`` for adult and flights
(their train/test splits); diamonds has one split, so the script writes a seeded 80/20 split
(scikit-learn ``train_test_split``, seed 0) to the work folder. Each fit runs in its own
subprocess, one at a time, on the same 2 cores: dripml with this virtualenv
(``automl_dripml.py``), the others with ``.bench-envs/<tool>/bin/python automl_runner.py``.
The script creates the virtualenvs it needs when they are missing (pip from the package
registry; ``--setup`` creates them and exits). Before each fit it waits for processes
outside its own tree to use less than ``--max-foreign-load`` cores and reports the CPU
seconds they used during the fit; after each fit it kills whatever the fit left running in
its session (and reports it). "fit CPU s" is what the fit's whole process session used
(sampled every 0.5 s; up to 2 x the process wall on 2 cores), "other CPU s" what every other
process on the machine used meanwhile: over a few CPU-s, the row is disturbed.

Run from the repository root (the full default run is 3 data sets x (60 + 120 + 300 s) x 3
tools = 72 min of budgets, about 1.5 to 2 hours with start-up, scoring and waits)::

    .venv/bin/python benchmarks/discover_vs_automl.py --setup              # envs only
    .venv/bin/python benchmarks/discover_vs_automl.py                      # everything
    .venv/bin/python benchmarks/discover_vs_automl.py --budgets 60,120 --datasets adult
    .venv/bin/python benchmarks/discover_vs_automl.py --budgets 20 --datasets adult  # check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
from discover_vs_gridsearch import wait_until_quiet
from sklearn.model_selection import train_test_split

import dripml
from dripml.core import datasets

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
RESULT_PREFIX = "RESULT "
GOAL_WALL_RATIO = 1.1


@dataclass(frozen=True)
class Tool:
    """A competitor: the packages its own virtualenv gets, and what to report of it."""

    requirements: tuple[str, ...]
    versions_of: tuple[str, ...]
    note: str = ""


TOOLS: dict[str, Tool] = {
    # flaml[automl] caps xgboost below 3, so it brings xgboost 2.1.4 (and its nvidia-nccl
    # wheel, about 300 MB, unused on CPU); the rest is pinned to dripml's stack.
    "flaml": Tool(
        requirements=("flaml[automl]==2.8.0", "numpy==2.4.6", "pandas==3.1.1",
                      "scikit-learn==1.9.1", "lightgbm==4.7.0", "xgboost==2.1.4", "pyarrow"),
        versions_of=("flaml", "numpy", "pandas", "scikit-learn", "lightgbm", "xgboost",
                     "pyarrow")),
    # The lightgbm, xgboost (xgboost-cpu) and catboost extras need no torch; the fastai
    # extra (and AutoGluon's other neural models) would pull a CUDA torch of several GB, so
    # they are left out and excluded from the fit (automl_runner.AUTOGLUON_TORCH_MODELS).
    # AutoGluon 1.6.3 caps pandas below 2.4: this env has pandas 2.3.3.
    "autogluon": Tool(
        requirements=("autogluon.tabular[lightgbm,xgboost,catboost]==1.6.3",),
        versions_of=("autogluon.tabular", "autogluon.core", "numpy", "pandas",
                     "scikit-learn", "lightgbm", "xgboost-cpu", "catboost", "pyarrow"),
        note="without torch models (NN_TORCH, FASTAI)"),
}
ALL_TOOLS = ("dripml", *TOOLS)


@dataclass(frozen=True)
class DataSet:
    task: str
    label: str
    positive: str | None
    metric: str


DATASETS: dict[str, DataSet] = {
    "adult": DataSet("binary", "income", ">50K", "roc_auc"),
    "flights": DataSet("binary", "delayed", "yes", "roc_auc"),
    "diamonds": DataSet("regression", "price", None, "r2"),
}
DIAMONDS_TEST_FRACTION = 0.2


@dataclass
class Row:
    """One (data set, budget, tool) fit."""

    dataset: str
    budget_s: float
    tool: str
    metric: str
    test_metric: float | None = None
    fit_s: float | None = None
    process_s: float | None = None
    trials: int | None = None
    trials_note: str = ""
    chosen: str | None = None
    latency_p50_ms: float | None = None
    fit_cpu_s: float | None = None
    foreign_cpu_s: float | None = None
    leftover_processes: list[str] = field(default_factory=list)
    error: str | None = None
    log: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def wall_ratio(self) -> float | None:
        return None if self.fit_s is None else self.fit_s / self.budget_s


# ---------------------------------------------------------------------------------------------
# Virtualenvs of the competitors
# ---------------------------------------------------------------------------------------------


def env_python(envs_dir: Path, tool: str) -> Path:
    return envs_dir / tool / "bin" / "python"


def versions_file(envs_dir: Path, tool: str) -> Path:
    return envs_dir / tool / "bench-versions.json"


def _run_printed(command: list[str]) -> None:
    print("  $ " + " ".join(command), flush=True)
    subprocess.run(command, check=True)


def ensure_env(envs_dir: Path, tool: str, *, force: bool = False) -> dict[str, str]:
    """Create ``envs_dir/tool`` with the tool's requirements when it is missing (or with
    ``force``); return the installed versions of the packages the tool reports."""
    marker = versions_file(envs_dir, tool)
    if marker.is_file() and not force:
        return json.loads(marker.read_text())
    spec = TOOLS[tool]
    folder = envs_dir / tool
    print(f"setting up {tool} in {folder} (pip from the package registry; minutes)",
          flush=True)
    if not env_python(envs_dir, tool).is_file():
        # venv run from a virtualenv's Python builds on the base interpreter (Python 3.11).
        _run_printed([sys.executable, "-m", "venv", str(folder)])
    python = str(env_python(envs_dir, tool))
    _run_printed([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    _run_printed([python, "-m", "pip", "install", "--quiet", *spec.requirements])
    script = ("import importlib.metadata as m, json, sys; "
              "print(json.dumps({n: m.version(n) for n in sys.argv[1:]}))")
    out = subprocess.run([python, "-c", script, *spec.versions_of], check=True,
                         capture_output=True, text=True).stdout
    versions: dict[str, str] = json.loads(out)
    marker.write_text(json.dumps(versions, indent=2) + "\n")
    print(f"  {tool}: " + ", ".join(f"{k} {v}" for k, v in versions.items()), flush=True)
    return versions


def dripml_versions() -> dict[str, str]:
    import importlib.metadata as metadata

    names = ("ray", "optuna", "mlflow", "numpy", "pandas", "scikit-learn", "lightgbm",
             "xgboost", "xgboost-cpu")
    versions = {"dripml": dripml.__version__}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        versions["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                         check=True, capture_output=True,
                                         text=True).stdout.strip()
    return versions


# ---------------------------------------------------------------------------------------------
# Data: the same Parquet files for every tool
# ---------------------------------------------------------------------------------------------


def prepare_data(name: str, workdir: Path) -> tuple[Path, Path]:
    """(train, test) Parquet paths of data set ``name``, read by every tool."""
    paths = datasets.fetch(name)
    if "test" in paths:
        return paths["train"], paths["test"]
    folder = workdir / "data" / name
    train_path, test_path = folder / "train.parquet", folder / "test.parquet"
    if not (train_path.is_file() and test_path.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        frame = pd.read_parquet(paths["train"])
        info = DATASETS[name]
        train, test = train_test_split(
            frame, test_size=DIAMONDS_TEST_FRACTION, random_state=0,
            stratify=frame[info.label] if info.task != "regression" else None)
        train.reset_index(drop=True).to_parquet(train_path, index=False)
        test.reset_index(drop=True).to_parquet(test_path, index=False)
    return train_path, test_path


def dripml_spec(name: str, budget: float, train: Path, test: Path, num_trials: int | None,
                stamp: str) -> dict[str, Any]:
    info = DATASETS[name]
    linear = "logistic_regression" if info.task == "binary" else "ridge"
    return {
        "name": f"automl-{name}-{budget:g}s",
        "task": info.task,
        "data": {"train": str(train), "test": str(test), "label": info.label},
        "k_fold": 5,
        "algorithms": ["lightgbm", "xgboost", linear, "random_forest",
                       "hist_gradient_boosting"],
        "search": {"algorithm": "tpe", "time_budget_s": budget, "seed": 0,
                   **({"num_trials": num_trials} if num_trials else {})},
        "metrics": {"objective": info.metric},
        "resources": {"cpus_per_trial": 1},
        "registry": {"model_name": f"automl-bench-{name}-{budget:g}s-{stamp}"},
    }


# ---------------------------------------------------------------------------------------------
# One fit in a subprocess
# ---------------------------------------------------------------------------------------------


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error, OSError):
            if process.pid != os.getpid() and os.getsid(process.pid) == sid:
                found.append(process)
    return found


def _kill_leftovers(sid: int, grace_s: float = 15.0) -> list[str]:
    """Kill what a finished fit still runs in its session ``grace_s`` after it exited (Ray's
    processes stop on their own a moment after the driver); return their descriptions."""
    deadline = time.monotonic() + grace_s
    while (leftovers := _session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    described = []
    for process in leftovers:
        with contextlib.suppress(psutil.Error):
            described.append(f"{process.pid} {' '.join(process.cmdline())[:120]}")
            process.kill()
    psutil.wait_procs(leftovers, timeout=10)
    return described


def _machine_busy_s() -> float:
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class SessionCpu:
    """CPU seconds of every process in one session (a fit and all it starts: Ray's raylet and
    workers too, which a parent's ``children_user`` misses once they are reparented), sampled
    every 0.5 s, and what the rest of the machine used meanwhile. A process that lives less
    than a sample is missed (counted as other load)."""

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self._last: dict[tuple[int, float], float] = {}
        self._stop = threading.Event()
        self._busy = _machine_busy_s()
        self._own = sum(os.times()[:2])
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        for process in _session_processes(self.sid):
            with contextlib.suppress(psutil.Error):
                t = process.cpu_times()
                self._last[(process.pid, process.create_time())] = t.user + t.system

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def stop(self) -> tuple[float, float]:
        """(CPU seconds of the session, CPU seconds of other processes) since the start."""
        self._stop.set()
        self._thread.join()
        session = sum(self._last.values())
        own = sum(os.times()[:2]) - self._own
        return session, max(0.0, _machine_busy_s() - self._busy - session - own)


def run_fit(row: Row, command: list[str], cwd: Path, log: Path, timeout_s: float,
            env: dict[str, str] | None = None) -> None:
    """Run one fit's command, fill ``row`` from its ``RESULT`` line (or its error)."""
    row.log = str(log)
    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
        cpu = SessionCpu(process.pid)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            row.error = f"timed out after {timeout_s:.0f} s"
        row.process_s = time.perf_counter() - started
        row.leftover_processes = _kill_leftovers(process.pid)
        row.fit_cpu_s, row.foreign_cpu_s = cpu.stop()
    lines = log.read_text(errors="replace").splitlines()
    result = next((line for line in reversed(lines) if line.startswith(RESULT_PREFIX)), None)
    if result is None:
        tail = " | ".join(lines[-5:])
        row.error = row.error or f"exit {process.returncode}, no result: {tail[-600:]}"
        return
    values = json.loads(result.removeprefix(RESULT_PREFIX))
    for key in ("test_metric", "fit_s", "trials", "chosen", "latency_p50_ms"):
        setattr(row, key, values.pop(key))
    row.trials_note = values.pop("trials_note", "")
    row.details = values


def competitor_command(tool: str, info: DataSet, paths: tuple[Path, Path], budget: float,
                       args: argparse.Namespace) -> list[str]:
    """``automl_runner.py`` for ``tool`` in its own virtualenv (``--positive`` not included)."""
    train, test = paths
    return [str(env_python(args.envs_dir, tool)), str(BENCH / "automl_runner.py"),
            "--tool", tool, "--train", str(train), "--test", str(test),
            "--label", info.label, "--task", info.task, "--budget", f"{budget:g}",
            "--cpus", str(args.cpus), "--latency-calls", str(args.latency_calls)]


def run_one(dataset: str, budget: float, tool: str, paths: tuple[Path, Path],
            args: argparse.Namespace, workdir: Path, stamp: str) -> Row:
    info = DATASETS[dataset]
    row = Row(dataset=dataset, budget_s=budget, tool=tool, metric=info.metric)
    folder = workdir / f"{dataset}-{budget:g}s-{tool}"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = paths
    timeout_s = 3 * budget + 300
    if tool == "dripml":
        spec_path = folder / "spec.json"
        spec_path.write_text(json.dumps(
            dripml_spec(dataset, budget, train, test, args.dripml_num_trials, stamp), indent=2))
        command = [sys.executable, str(BENCH / "automl_dripml.py"), "--spec", str(spec_path),
                   "--test", str(test), "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--latency-calls", str(args.latency_calls)]
    else:
        command = competitor_command(tool, info, paths, budget, args)
    if info.positive is not None:
        command += ["--positive", info.positive]
    env = {**os.environ, "PYTHONPATH": str(BENCH)}
    env.pop("MLFLOW_TRACKING_URI", None)
    run_fit(row, command, folder, folder / "log.txt", timeout_s, env)
    return row


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[Row]) -> None:
    print("\n| data set | budget s | tool | metric | test | fit wall s | wall/budget | trials "
          "| 1-row p50 ms | fit CPU s | other CPU s | chosen |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        chosen = r.error if r.error else (r.chosen or "")[:70]
        trials = _fmt(r.trials, "d") + (f" ({r.trials_note})" if r.trials_note else "")
        print(f"| {r.dataset} | {r.budget_s:g} | {r.tool} | {r.metric} "
              f"| {_fmt(r.test_metric, '.4f')} | {_fmt(r.fit_s, '.1f')} "
              f"| {_fmt(r.wall_ratio, '.2f')} | {trials} "
              f"| {_fmt(r.latency_p50_ms, '.3f')} | {_fmt(r.fit_cpu_s, '.1f')} "
              f"| {_fmt(r.foreign_cpu_s, '.1f')} "
              f"| {chosen} |")


def comparisons(rows: list[Row]) -> list[dict[str, Any]]:
    """Per (data set, budget): dripml against FLAML (and AutoGluon where it ran)."""
    by_key = {(r.dataset, r.budget_s, r.tool): r for r in rows}
    out = []
    for dataset, budget in dict.fromkeys((r.dataset, r.budget_s) for r in rows):
        ours, flaml = by_key.get((dataset, budget, "dripml")), by_key.get(
            (dataset, budget, "flaml"))
        if ours is None or flaml is None:
            continue
        gluon = by_key.get((dataset, budget, "autogluon"))
        delta = (None if ours.test_metric is None or flaml.test_metric is None
                 else ours.test_metric - flaml.test_metric)
        met = (delta is not None and delta >= 0 and ours.wall_ratio is not None
               and ours.wall_ratio <= GOAL_WALL_RATIO)
        out.append({
            "dataset": dataset, "budget_s": budget, "metric": ours.metric,
            "dripml_minus_flaml": delta,
            "dripml_wall_over_budget": ours.wall_ratio,
            "flaml_wall_over_budget": flaml.wall_ratio,
            "dripml_minus_autogluon": (
                None if gluon is None or gluon.test_metric is None or ours.test_metric is None
                else ours.test_metric - gluon.test_metric),
            "autogluon_wall_over_budget": None if gluon is None else gluon.wall_ratio,
            "latency_dripml_over_flaml": (
                None if ours.latency_p50_ms is None or not flaml.latency_p50_ms
                else ours.latency_p50_ms / flaml.latency_p50_ms),
            "goal_met": met,
        })
    return out


def print_comparisons(items: list[dict[str, Any]]) -> None:
    if not items:
        return
    print(f"\nAgainst FLAML (goal: dripml - FLAML >= 0 and dripml wall/budget <= "
          f"{GOAL_WALL_RATIO}):\n")
    print("| data set | budget s | metric | dripml - FLAML | dripml wall/budget "
          "| FLAML wall/budget | dripml - AutoGluon | AutoGluon wall/budget "
          "| 1-row p50 dripml/FLAML | goal |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for c in items:
        print(f"| {c['dataset']} | {c['budget_s']:g} | {c['metric']} "
              f"| {_fmt(c['dripml_minus_flaml'], '+.4f')} "
              f"| {_fmt(c['dripml_wall_over_budget'], '.2f')} "
              f"| {_fmt(c['flaml_wall_over_budget'], '.2f')} "
              f"| {_fmt(c['dripml_minus_autogluon'], '+.4f')} "
              f"| {_fmt(c['autogluon_wall_over_budget'], '.2f')} "
              f"| {_fmt(c['latency_dripml_over_flaml'], '.2f')} "
              f"| {'met' if c['goal_met'] else 'MISSED'} |")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _names(value: str, valid: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {unknown or value!r}; valid: {', '.join(valid)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="60,120,300",
                        help="time budgets in seconds, comma-separated (default: 60,120,300)")
    parser.add_argument("--datasets", default="adult,flights,diamonds",
                        type=lambda v: _names(v, list(DATASETS), "data set"),
                        help="comma-separated (default: adult,flights,diamonds)")
    parser.add_argument("--tools", default="dripml,flaml,autogluon",
                        type=lambda v: _names(v, ALL_TOOLS, "tool"),
                        help="comma-separated (default: dripml,flaml,autogluon)")
    parser.add_argument("--out", type=Path, default=None,
                        help="write every row as JSON here (default: "
                             "/tmp/discover_vs_automl-<time>.json)")
    parser.add_argument("--setup", action="store_true",
                        help="create (or recreate) the competitors' virtualenvs and exit")
    parser.add_argument("--envs-dir", type=Path, default=ROOT / ".bench-envs",
                        help="where the competitors' virtualenvs live (default: "
                             ".bench-envs/ in the repository)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="data splits, specs, MLflow stores and logs of the fits "
                             "(default: a new folder under /tmp, kept)")
    parser.add_argument("--cpus", type=int, default=2,
                        help="n_jobs / num_cpus of FLAML and AutoGluon (dripml: its embedded "
                             "Ray cluster takes this machine's CPUs); default 2")
    parser.add_argument("--latency-calls", type=int, default=200,
                        help="timed single-row predictions per model (default: 200)")
    parser.add_argument("--dripml-num-trials", type=int, default=None,
                        help="dripml's search.num_trials (default: none, the budget ends "
                             "the search)")
    parser.add_argument("--max-foreign-load", type=float, default=0.2, metavar="CORES",
                        help="before each fit, wait until other processes use fewer cores "
                             "than this (default: 0.2)")
    parser.add_argument("--quiet-timeout", type=float, default=600, metavar="SECONDS",
                        help="wait at most this long for a quiet machine; 0: do not wait "
                             "(default: 600)")
    args = parser.parse_args(argv)
    try:
        args.budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    except ValueError:
        parser.error(f"--budgets takes seconds separated by commas, got {args.budgets!r}")
    if not args.budgets or min(args.budgets) <= 0:
        parser.error("--budgets must be positive seconds")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.envs_dir = args.envs_dir.resolve()
    competitors = [t for t in args.tools if t in TOOLS]
    if args.setup:
        for tool in TOOLS:
            ensure_env(args.envs_dir, tool, force=True)
        return 0
    versions = {"dripml": dripml_versions()}
    for tool in competitors:
        versions[tool] = ensure_env(args.envs_dir, tool)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="discover_vs_automl-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or Path(tempfile.gettempdir()) / f"discover_vs_automl-{stamp}.json"
    print(f"versions: {json.dumps(versions)}\nwork folder: {workdir}\n"
          f"{os.cpu_count()} CPUs here; FLAML/AutoGluon use {args.cpus}\n", flush=True)

    rows: list[Row] = []
    for dataset in args.datasets:
        paths = prepare_data(dataset, workdir)
        for budget in args.budgets:
            for tool in args.tools:
                if args.quiet_timeout > 0:
                    wait_until_quiet(args.max_foreign_load, args.quiet_timeout)
                print(f"== {dataset}, budget {budget:g} s, {tool} ...", flush=True)
                row = run_one(dataset, budget, tool, paths, args, workdir, stamp)
                rows.append(row)
                print(f"   {row.metric} {_fmt(row.test_metric, '.4f')}, fit "
                      f"{_fmt(row.fit_s, '.1f')} s (x{_fmt(row.wall_ratio, '.2f')} of the "
                      f"budget), {_fmt(row.trials, 'd')} trials, 1-row p50 "
                      f"{_fmt(row.latency_p50_ms, '.3f')} ms, CPU "
                      f"{_fmt(row.fit_cpu_s, '.1f')} s, other processes "
                      f"{_fmt(row.foreign_cpu_s, '.1f')} CPU-s"
                      + (f"; ERROR {row.error}" if row.error else "")
                      + (f"; killed leftovers: {row.leftover_processes}"
                         if row.leftover_processes else ""), flush=True)
                out.write_text(json.dumps(_report(rows, versions, args), indent=2,
                                          default=str))

    print_table(rows)
    print_comparisons(comparisons(rows))
    out.write_text(json.dumps(_report(rows, versions, args), indent=2, default=str))
    print(f"\nrows written to {out}; logs under {workdir}")
    return 1 if any(r.error for r in rows) else 0


def _report(rows: list[Row], versions: dict[str, Any],
            args: argparse.Namespace) -> dict[str, Any]:
    return {
        "versions": versions,
        "settings": {"budgets_s": args.budgets, "datasets": args.datasets, "tools": args.tools,
                     "cpus": args.cpus, "latency_calls": args.latency_calls,
                     "dripml_num_trials": args.dripml_num_trials,
                     "autogluon": TOOLS["autogluon"].note},
        "rows": [{**asdict(r), "wall_ratio": r.wall_ratio} for r in rows],
        "against_flaml": comparisons(rows),
    }


if __name__ == "__main__":
    sys.exit(main())
