"""DRiP's three claims, measured against AutoGluon and FLAML at one time budget (issue 17.6).

For each data set (``adult``, ``flights``: ROC AUC of the positive class; ``diamonds``: R^2
of ``price``; the splits of ``discover_vs_automl.py``) and one time budget T, the script fits,
one at a time on the same cores, each in a process of its own:

- **dripml** (``automl_dripml.py --frontier``, this virtualenv): ``dripml.train`` on the spec
  of ``discover_vs_automl.dripml_spec`` (lightgbm, xgboost, logistic regression / ridge,
  random forest, hist gradient boosting; TPE under ``search.time_budget_s: T``; 5 folds) with
  Refine's defaults: every candidate measured on the serving path, compiled-tree twins and
  greedy ensembles as extra points, every frontier point registered. Each registered point
  is loaded back and scored on the test rows.
- **AutoGluon** 1.6 ``medium_quality`` and ``high_quality`` (``automl_runner.py``,
  ``.bench-envs/autogluon``, ``time_limit=T``, no torch models) and **FLAML** 2.8
  (``.bench-envs/flaml``, ``time_budget=T``).
- **baseline**: scikit-learn one-hot + scaling + ``LogisticRegression`` (``Ridge`` for
  regression), see ``automl_runner.baseline_pipeline``; this virtualenv.

Every model is scored by the same code (``automl_runner.score``) on the same test rows.

**Cost: the single-row endpoint latency.** After the fits of a data set every model in
question is served, one server at a time, and measured the same way: ``hey -c 1 -n 1000``
posting one JSON record (``{"records": [record]}``, the first test row without a missing
value) after 50 untimed requests, p50 and p99 in ms (hey prints them to 0.1 ms). dripml's
points run behind ``drip serve NAME/VERSION`` (the real endpoint: BentoML, its request guard
and schema check); AutoGluon, FLAML and the baseline behind ``automl_server.py``, a minimal
``http.server.ThreadingHTTPServer`` wrapper in the tool's own virtualenv: no framework, no
validation, no logging, so the comparison is conservative in their favour. Their servers get
the one-thread OpenMP/BLAS pools ``drip serve`` gives its workers; the fits get the
machine's defaults. The in-process single-row figures stand beside them (competitors: median
of 200 ``predict_proba`` calls on one-row DataFrames; dripml: Refine's p50 of
``predict_records`` on one record).

**The three claims**, per data set, "best" = the best test metric of any tool (dripml's
registered points included):

(i) on-par quality at a tenth of the latency: the cheapest dripml frontier point whose test
    metric is within 0.5 % (relative) of the best; its endpoint p50 (and p99) over
    AutoGluon's (each preset) and FLAML's. PASS when its p50 is at most 0.1x every
    AutoGluon preset's.
(ii) the lowest-cost point above the floor: the cheapest dripml frontier point whose test
    metric beats the baseline's; its endpoint latency over the baseline's and the others'.
    PASS when such a point exists (the ratios say what it costs).
(iii) the best quality of all: dripml's best registered point minus the best of all. PASS
    when it is the best (difference >= 0), else MISS by the difference.

"Cheapest" is decided from dripml's own measurements, as a user reading the frontier would:
Refine's endpoint p50 when every eligible point was served, else (a time budget cut some
serving measurements) the in-process p50 of all of them. Only registered frontier points
count (the others cannot be served by version); each chosen point (and dripml's best) is
then measured with hey like the rest.

Run from the repository root. A full run (3 data sets at ``--budget 60``) takes about 30
minutes on 2 quiet cores (per data set: 4 fits of about T + 20 s, the baseline, then 5 to 7
servers of 10 to 60 s each, AutoGluon's up to about 2 minutes each on flights and diamonds,
where it has taken 100+ ms a row; ``high_quality`` may also overrun T)::

    .venv/bin/python benchmarks/drip_vs_automl.py --budget 60            # ~30 min
    .venv/bin/python benchmarks/drip_vs_automl.py                        # T = 300 s, ~80 min
    .venv/bin/python benchmarks/drip_vs_automl.py --datasets adult --budget 30  # smoke, ~8 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from automl_dripml import json_record
from discover_vs_automl import (
    DATASETS,
    Row,
    _fmt,
    competitor_command,
    dripml_spec,
    dripml_versions,
    ensure_env,
    prepare_data,
    run_fit,
)
from discover_vs_gridsearch import wait_until_quiet

BENCH = Path(__file__).resolve().parent
QUALITY_GAP = 0.005
"""Claim (i): a test metric within this fraction of the best counts as on par."""
LATENCY_GOAL = 0.1
"""Claim (i): the on-par point's endpoint p50 over AutoGluon's, at most."""
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Set to 1 for the competitors' servers (as drip serve sets them for its workers), dropped
from every fit's environment (``endpoint_overhead``, imported for the servers, sets them in
this process)."""
SERVE_SETTINGS = ("DRIPML_SERVE_FAST_PATH", "DRIPML_SERVE_ACCESS_LOG", "DRIPML_SERVE_TRACING")
"""Left unset for drip serve: the endpoint as it ships."""


@dataclass(frozen=True)
class Contender:
    """A model other than dripml's: what ``automl_runner.py --tool`` fits, in which
    virtualenv (None: this one), with which AutoGluon presets."""

    runner_tool: str
    env: str | None
    presets: str | None = None


CONTENDERS: dict[str, Contender] = {
    "autogluon-medium": Contender("autogluon", "autogluon", "medium_quality"),
    "autogluon-high": Contender("autogluon", "autogluon", "high_quality"),
    "flaml": Contender("flaml", "flaml"),
    "baseline": Contender("baseline", None),
}
ALL_TOOLS = ("dripml", *CONTENDERS)
AUTOGLUON = ("autogluon-medium", "autogluon-high")


@dataclass
class Endpoint:
    """One server measured with hey at concurrency 1 (ms; ``ready_s`` from start to the
    first 200 answer)."""

    name: str
    p50_ms: float | None = None
    p99_ms: float | None = None
    requests_per_s: float | None = None
    ready_s: float | None = None
    requests: int | None = None
    error: str | None = None


@dataclass
class Claim:
    """One of the three claims on one data set: ``reference`` is the best test metric of
    all for (i) and (iii), the baseline's for (ii); ``difference`` the point's metric minus
    it; the ratios are the point's hey p50 / p99 over each other tool's."""

    dataset: str
    claim: str
    passed: bool
    point: dict[str, Any] | None = None
    reference: float | None = None
    difference: float | None = None
    p50_ratio: dict[str, float | None] = field(default_factory=dict)
    p99_ratio: dict[str, float | None] = field(default_factory=dict)
    note: str = ""


# ---------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------


def fit_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env["PYTHONPATH"] = str(BENCH)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def fit(tool: str, dataset: str, paths: tuple[Path, Path], args: argparse.Namespace,
        workdir: Path, stamp: str) -> Row:
    """Fit ``tool`` on ``dataset`` in its own process; the model stays in its folder."""
    info = DATASETS[dataset]
    row = Row(dataset=dataset, budget_s=args.budget, tool=tool, metric=info.metric)
    folder = workdir / f"{dataset}-{tool}"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = paths
    if tool == "dripml":
        spec = dripml_spec(dataset, args.budget, train, test, None, stamp)
        spec["registry"]["model_name"] = f"drip-vs-automl-{dataset}-{stamp}"
        (folder / "spec.json").write_text(json.dumps(spec, indent=2))
        command = [sys.executable, str(BENCH / "automl_dripml.py"), "--spec",
                   str(folder / "spec.json"), "--test", str(test), "--tracking-uri",
                   tracking_uri(folder), "--latency-calls", str(args.latency_calls),
                   "--frontier"]
    else:
        contender = CONTENDERS[tool]
        command = competitor_command(contender.runner_tool, info, paths, args.budget, args)
        if contender.env is None:
            command[0] = sys.executable
        if contender.presets:
            command += ["--presets", contender.presets]
        command += ["--save", str(folder / "model")]
    if info.positive is not None:
        command += ["--positive", info.positive]
    run_fit(row, command, folder, folder / "log.txt", 3 * args.budget + 300, fit_env())
    return row


def tracking_uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


# ---------------------------------------------------------------------------------------------
# Which dripml points the claims are about
# ---------------------------------------------------------------------------------------------


def best_of_all(rows: list[Row], points: list[dict[str, Any]]) -> float | None:
    """The best test metric of any tool (higher is better for ROC AUC and R^2)."""
    metrics = [r.test_metric for r in rows if r.tool != "dripml" and r.test_metric is not None]
    metrics += [p["test_metric"] for p in points]
    return max(metrics) if metrics else None


def on_par(metric: float, best: float) -> bool:
    return metric >= best - QUALITY_GAP * abs(best)


def cheapest(points: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The point of least Refine endpoint p50 when all were served, else of least in-process
    p50 (one unit for all: an unserved point's latency_p50_ms is the in-process one)."""
    if not points:
        return None
    key = ("latency_p50_ms" if all(p["served"] for p in points)
           else "inproc_latency_p50_ms")
    return min(points, key=lambda p: (p.get(key) is None, p.get(key) or 0.0))


def claim_points(rows: list[Row], points: list[dict[str, Any]]
                 ) -> dict[str, dict[str, Any] | None]:
    """The dripml points of claims (i), (ii) and (iii)."""
    best = best_of_all(rows, points)
    floor = next((r.test_metric for r in rows if r.tool == "baseline"), None)
    return {
        "on_par": None if best is None else cheapest(
            [p for p in points if on_par(p["test_metric"], best)]),
        "beats_baseline": None if floor is None else cheapest(
            [p for p in points if p["test_metric"] > floor]),
        "best": max(points, key=lambda p: p["test_metric"], default=None),
    }


def point_name(point: dict[str, Any]) -> str:
    return f"dripml v{point['version']} {point['algorithm']}"


# ---------------------------------------------------------------------------------------------
# Endpoints
# ---------------------------------------------------------------------------------------------


def write_body(test: Path, label: str, body: Path) -> Path:
    """``{"records": [record]}``: the first test row without a missing value, as JSON."""
    frame = pd.read_parquet(test).drop(columns=[label]).dropna()
    body.write_text(json.dumps({"records": [json_record(frame.iloc[0].to_dict())]}))
    return body


def measure(name: str, command: list[str], env: dict[str, str], cwd: Path, body: Path,
            args: argparse.Namespace) -> Endpoint:
    """Start one server, wait for its first 200 answer, warm it, time ``hey`` at c=1, stop."""
    # Imported here: endpoint_overhead sets THREAD_VARS in this process when it is imported.
    from endpoint_overhead import free_port, hey, stop, wait_ready

    endpoint = Endpoint(name)
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    url = f"http://127.0.0.1:{port}/predict"
    log = cwd / f"server-{name.replace(' ', '_')}.log"
    with log.open("wb") as out:
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        endpoint.ready_s = wait_ready(process, url, body.read_bytes(), started)
        warm = hey(url, body, concurrency=1, requests=args.warmup_requests)
        # A slow server (AutoGluon on flights: ~100 ms a row) gets fewer timed requests, at
        # least 200, so that one endpoint takes at most about --endpoint-seconds.
        requests = min(args.requests, max(200, int(args.endpoint_seconds * 1000
                                                    / max(_finite(warm["p50"], 1.0), 0.01))))
        timed = hey(url, body, concurrency=1, requests=requests)
        endpoint.requests = requests
        endpoint.p50_ms, endpoint.p99_ms = timed["p50"], timed["p99"]
        endpoint.requests_per_s = timed["rps"]
    except (RuntimeError, subprocess.CalledProcessError) as error:
        endpoint.error = f"{str(error)[:300]} (log: {log})"
    finally:
        stop(process)
    return endpoint


def _finite(value: float, default: float) -> float:
    return value if math.isfinite(value) else default


def contender_server(tool: str, test: Path, workdir: Path, dataset: str,
                     args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    contender = CONTENDERS[tool]
    python = (sys.executable if contender.env is None
              else str(args.envs_dir / contender.env / "bin" / "python"))
    folder = workdir / f"{dataset}-{tool}"
    env = {**os.environ, **dict.fromkeys(THREAD_VARS, "1")}
    return [python, str(BENCH / "automl_server.py"), "--model-dir", str(folder / "model"),
            "--test", str(test), "--port", "{port}"], env


def dripml_server(point: dict[str, Any], workdir: Path, dataset: str
                  ) -> tuple[list[str], dict[str, str]]:
    drip = shutil.which("drip", path=str(Path(sys.executable).parent)) or "drip"
    folder = workdir / f"{dataset}-dripml"
    env = {k: v for k, v in os.environ.items() if k not in SERVE_SETTINGS}
    return [drip, "serve", f"{point['model']}/{point['version']}", "--host", "127.0.0.1",
            "--port", "{port}", "--tracking-uri", tracking_uri(folder)], env


def measure_endpoints(dataset: str, rows: list[Row], chosen: dict[str, dict[str, Any] | None],
                      test: Path, workdir: Path, args: argparse.Namespace
                      ) -> dict[str, Endpoint]:
    """hey at c=1 on every fitted contender and every dripml point in ``chosen`` (once each),
    one server at a time."""
    body = write_body(test, DATASETS[dataset].label, workdir / f"{dataset}-record.json")
    servers: dict[str, tuple[list[str], dict[str, str], Path]] = {}
    for row in rows:
        if row.tool in CONTENDERS and row.error is None:
            command, env = contender_server(row.tool, test, workdir, dataset, args)
            servers[row.tool] = (command, env, workdir / f"{dataset}-{row.tool}")
    for point in chosen.values():
        if point is not None and point_name(point) not in servers:
            command, env = dripml_server(point, workdir, dataset)
            servers[point_name(point)] = (command, env, workdir / f"{dataset}-dripml")
    endpoints = {}
    for name, (command, env, cwd) in servers.items():
        endpoint = measure(name, command, env, cwd, body, args)
        endpoints[name] = endpoint
        print(f"   endpoint {name}: p50 {_fmt(endpoint.p50_ms, '.2f')} ms, p99 "
              f"{_fmt(endpoint.p99_ms, '.2f')} ms, ready in {_fmt(endpoint.ready_s, '.1f')} s"
              + (f"; ERROR {endpoint.error}" if endpoint.error else ""), flush=True)
    return endpoints


# ---------------------------------------------------------------------------------------------
# The claims
# ---------------------------------------------------------------------------------------------


def _ratio(mine: float | None, theirs: float | None) -> float | None:
    return None if mine is None or not theirs else mine / theirs


def latency_ratios(point: dict[str, Any], endpoints: dict[str, Endpoint],
                   against: tuple[str, ...]) -> tuple[dict[str, float | None],
                                                      dict[str, float | None]]:
    """The point's hey p50 and p99 over each of ``against`` (None where either is missing)."""
    mine = endpoints.get(point_name(point), Endpoint(""))
    p50, p99 = {}, {}
    for tool in against:
        theirs = endpoints.get(tool, Endpoint(tool))
        p50[tool] = _ratio(mine.p50_ms, theirs.p50_ms)
        p99[tool] = _ratio(mine.p99_ms, theirs.p99_ms)
    return p50, p99


def judge(dataset: str, rows: list[Row], points: list[dict[str, Any]],
          chosen: dict[str, dict[str, Any] | None], endpoints: dict[str, Endpoint]
          ) -> list[Claim]:
    """Claims (i), (ii) and (iii) on one data set (see the module docstring)."""
    best = best_of_all(rows, points)
    others = tuple(t for t in CONTENDERS if any(r.tool == t for r in rows))
    claims = []

    point = chosen["on_par"]
    claim = Claim(dataset, "(i) on par at <= 0.1x AutoGluon's latency", False, point, best)
    if point is None:
        claim.note = "no dripml point within 0.5 % of the best"
    else:
        claim.difference = None if best is None else point["test_metric"] - best
        claim.p50_ratio, claim.p99_ratio = latency_ratios(point, endpoints, others)
        gluon = [claim.p50_ratio.get(t) for t in AUTOGLUON if t in others]
        claim.passed = bool(gluon) and all(r is not None and r <= LATENCY_GOAL for r in gluon)
        if not gluon or any(r is None for r in gluon):
            claim.note = "an AutoGluon endpoint or this point's is missing"
    claims.append(claim)

    point = chosen["beats_baseline"]
    floor = next((r.test_metric for r in rows if r.tool == "baseline"), None)
    claim = Claim(dataset, "(ii) cheapest point above the LR baseline", point is not None,
                  point, floor)
    if point is None:
        claim.note = ("no baseline result" if floor is None
                      else "no dripml point beats the baseline")
    else:
        claim.p50_ratio, claim.p99_ratio = latency_ratios(point, endpoints, others)
        claim.difference = point["test_metric"] - floor if floor is not None else None
    claims.append(claim)

    point = chosen["best"]
    claim = Claim(dataset, "(iii) best quality of all", False, point, best)
    if point is None or best is None:
        claim.note = "dripml registered no point"
    else:
        claim.difference = point["test_metric"] - best
        claim.passed = claim.difference >= 0
        claim.p50_ratio, claim.p99_ratio = latency_ratios(point, endpoints, others)
        if not claim.passed:
            leader = max((r for r in rows if r.tool != "dripml" and r.test_metric is not None),
                         key=lambda r: r.test_metric or 0.0, default=None)
            claim.note = (f"misses {leader.tool}'s by {-claim.difference:.4f} "
                          f"({-claim.difference / abs(best):.2%})" if leader else "")
    claims.append(claim)
    return claims


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def print_models(dataset: str, rows: list[Row], points: list[dict[str, Any]],
                 endpoints: dict[str, Endpoint]) -> None:
    print(f"\n{dataset}: every model (endpoint: hey c=1; Refine: dripml's own serving-path "
          "measurement)\n")
    print("| model | test | fit s | endpoint p50 ms | endpoint p99 ms | Refine endpoint p50 ms "
          "| in-process p50 ms | chosen |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        if row.tool == "dripml":
            continue
        ep = endpoints.get(row.tool, Endpoint(row.tool))
        what = row.error or (row.chosen or "")[:60]
        print(f"| {row.tool} | {_fmt(row.test_metric, '.4f')} | {_fmt(row.fit_s, '.1f')} "
              f"| {_fmt(ep.p50_ms, '.2f')} | {_fmt(ep.p99_ms, '.2f')} | - "
              f"| {_fmt(row.latency_p50_ms, '.3f')} | {what} |")
    drip = next((r for r in rows if r.tool == "dripml"), None)
    if drip is not None and drip.error:
        print(f"| dripml | - | - | - | - | - | - | {drip.error[:100]} |")
    for point in sorted(points, key=lambda p: -p["test_metric"]):
        ep = endpoints.get(point_name(point), Endpoint(""))
        refine = _fmt(point["latency_p50_ms"], ".2f") if point["served"] else "not served"
        print(f"| {point_name(point)} | {point['test_metric']:.4f} "
              f"| {_fmt(drip.fit_s if drip else None, '.1f')} | {_fmt(ep.p50_ms, '.2f')} "
              f"| {_fmt(ep.p99_ms, '.2f')} | {refine} "
              f"| {_fmt(point['inproc_latency_p50_ms'], '.3f')} "
              f"| {'champion; ' if point['chosen'] else ''}frontier: {point['frontier']} |")


def _ratios(claim: Claim) -> str:
    return "; ".join(f"{tool} {_fmt(claim.p50_ratio[tool], '.3f')} "
                     f"({_fmt(claim.p99_ratio.get(tool), '.3f')})"
                     for tool in claim.p50_ratio) or "-"


def print_claims(claims: list[Claim], endpoints: dict[str, dict[str, Endpoint]]) -> None:
    print("\nThe three claims (ratios: this dripml point's endpoint p50 over theirs, p99 in "
          "brackets; hey c=1)\n")
    print("| data set | claim | dripml point | its test | reference | difference "
          "| endpoint p50 / p99 ms | latency ratios | result |")
    print("|---|---|---|---:|---:|---:|---:|---|---|")
    for c in claims:
        point = c.point
        ep = (endpoints.get(c.dataset, {}).get(point_name(point), Endpoint(""))
              if point else Endpoint(""))
        result = "PASS" if c.passed else "MISS"
        print(f"| {c.dataset} | {c.claim} | {point_name(point) if point else '-'} "
              f"| {_fmt(point['test_metric'] if point else None, '.4f')} "
              f"| {_fmt(c.reference, '.4f')} | {_fmt(c.difference, '+.4f')} "
              f"| {_fmt(ep.p50_ms, '.2f')} / {_fmt(ep.p99_ms, '.2f')} | {_ratios(c)} "
              f"| {result}{': ' + c.note if c.note else ''} |")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def _names(valid: tuple[str, ...] | list[str], what: str) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        names = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [n for n in names if n not in valid]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {unknown or value!r}; valid: {', '.join(valid)}")
        return names
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=300,
                        help="the time budget of every fit, seconds (default: 300)")
    parser.add_argument("--datasets", default="adult,flights,diamonds",
                        type=_names(list(DATASETS), "data set"),
                        help="comma-separated (default: adult,flights,diamonds)")
    parser.add_argument("--tools", default=",".join(ALL_TOOLS),
                        type=_names(ALL_TOOLS, "tool"),
                        help=f"comma-separated (default: {','.join(ALL_TOOLS)})")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON results (default: /tmp/drip_vs_automl-<time>.json)")
    parser.add_argument("--envs-dir", type=Path, default=BENCH.parent / ".bench-envs",
                        help="the competitors' virtualenvs (see discover_vs_automl.py --setup)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="data splits, models, MLflow stores and logs (default: a new "
                             "folder under /tmp, kept)")
    parser.add_argument("--cpus", type=int, default=2,
                        help="n_jobs / num_cpus of FLAML and AutoGluon (default: 2)")
    parser.add_argument("--latency-calls", type=int, default=200,
                        help="in-process single-row calls per model (default: 200)")
    parser.add_argument("--requests", type=int, default=1000,
                        help="timed hey requests per endpoint, concurrency 1 (default: 1000)")
    parser.add_argument("--endpoint-seconds", type=float, default=30.0,
                        help="cap on one endpoint's timed requests, seconds at its warm-up "
                             "p50 (at least 200 requests; default: 30)")
    parser.add_argument("--warmup-requests", type=int, default=50,
                        help="untimed hey requests first (default: 50)")
    parser.add_argument("--max-foreign-load", type=float, default=0.2, metavar="CORES",
                        help="before each fit and each data set's servers, wait until other "
                             "processes use fewer cores than this (default: 0.2)")
    parser.add_argument("--quiet-timeout", type=float, default=120, metavar="SECONDS",
                        help="wait at most this long for a quiet machine; 0: do not wait "
                             "(default: 120)")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error("--budget must be positive seconds")
    if args.requests < 1 or args.warmup_requests < 1:
        parser.error("--requests and --warmup-requests must be at least 1")
    if shutil.which("hey") is None:
        parser.error("hey is not installed (Debian: apt-get install hey)")
    args.envs_dir = args.envs_dir.resolve()
    return args


def run_dataset(dataset: str, args: argparse.Namespace, workdir: Path, stamp: str
                ) -> tuple[list[Row], list[dict[str, Any]], dict[str, Endpoint], list[Claim]]:
    """Fit every tool on ``dataset``, serve the models in question, judge the claims."""
    paths = prepare_data(dataset, workdir)
    rows: list[Row] = []
    for tool in args.tools:
        if args.quiet_timeout > 0:
            wait_until_quiet(args.max_foreign_load, args.quiet_timeout)
        print(f"== {dataset}, budget {args.budget:g} s, {tool} ...", flush=True)
        row = fit(tool, dataset, paths, args, workdir, stamp)
        rows.append(row)
        print(f"   {row.metric} {_fmt(row.test_metric, '.4f')}, fit {_fmt(row.fit_s, '.1f')} "
              f"s, in-process 1-row p50 {_fmt(row.latency_p50_ms, '.3f')} ms"
              + (f"; ERROR {row.error}" if row.error else ""), flush=True)
        for line in row.details.get("skipped", []):  # what dripml's budget cut (Refine too)
            print(f"   dripml skipped: {line}", flush=True)
    points = next((r.details.get("frontier", []) for r in rows if r.tool == "dripml"), [])
    chosen = claim_points(rows, points)
    if args.quiet_timeout > 0:
        wait_until_quiet(args.max_foreign_load, args.quiet_timeout)
    endpoints = measure_endpoints(dataset, rows, chosen, paths[1], workdir, args)
    claims = judge(dataset, rows, points, chosen, endpoints)
    print_models(dataset, rows, points, endpoints)
    return rows, points, endpoints, claims


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    versions: dict[str, Any] = {"dripml": dripml_versions()}
    for env in sorted({c.env for t, c in CONTENDERS.items() if t in args.tools and c.env}):
        versions[env] = ensure_env(args.envs_dir, env)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="drip_vs_automl-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or Path(tempfile.gettempdir()) / f"drip_vs_automl-{stamp}.json"
    print(f"versions: {json.dumps(versions)}\nwork folder: {workdir}\n", flush=True)

    started = time.monotonic()
    results: dict[str, Any] = {}
    claims: list[Claim] = []
    endpoints: dict[str, dict[str, Endpoint]] = {}
    for dataset in args.datasets:
        rows, points, measured, judged = run_dataset(dataset, args, workdir, stamp)
        endpoints[dataset] = measured
        claims += judged
        results[dataset] = {"rows": [{**asdict(r), "wall_ratio": r.wall_ratio} for r in rows],
                            "dripml_points": points,
                            "endpoints": {k: asdict(v) for k, v in measured.items()},
                            "claims": [asdict(c) for c in judged]}
        out.write_text(json.dumps(_report(results, versions, args), indent=2, default=str))
    print_claims(claims, endpoints)
    wall = time.monotonic() - started
    report = _report(results, versions, args) | {"wall_s": wall}
    out.write_text(json.dumps(report, indent=2, default=str))
    load = os.getloadavg()
    print(f"\nwall time {wall / 60:.1f} min; load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} on {os.cpu_count()} CPUs\nresults written to {out}; models and "
          f"logs under {workdir}")
    failed = any(r["error"] for d in results.values() for r in d["rows"]) or any(
        e["error"] for d in results.values() for e in d["endpoints"].values())
    return 1 if failed else 0


def _report(results: dict[str, Any], versions: dict[str, Any],
            args: argparse.Namespace) -> dict[str, Any]:
    return {
        "versions": versions,
        "settings": {"budget_s": args.budget, "datasets": args.datasets, "tools": args.tools,
                     "cpus": args.cpus, "latency_calls": args.latency_calls,
                     "hey_requests": args.requests, "hey_warmup": args.warmup_requests,
                     "quality_gap": QUALITY_GAP, "latency_goal": LATENCY_GOAL},
        "datasets": results,
    }


if __name__ == "__main__":
    sys.exit(main())
