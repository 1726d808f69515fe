"""dripml.fit with each preset against AutoGluon's and FLAML's front doors, on real data.

The question of issue 14: *does a scientist who knows AutoGluon get as good a model, as fast,
in as few lines, from* ``dripml.fit(df, label, presets=...)``? For each data set and dripml
preset the script runs, one at a time on the same cores, each in a process of its own:

- **dripml** (``fit_dripml.py``, this virtualenv): ``dripml.fit(train, label=...,
  presets=P)``; nothing else (the preset's time limit, task inferred, algorithms from the
  columns).
- **AutoGluon** 1.6 (``automl_runner.py --tool autogluon``, ``.bench-envs/autogluon``):
  ``TabularPredictor(label, eval_metric=...).fit(train, presets=AG, time_limit=T)`` with the
  AutoGluon presets paired below and T the dripml preset's time limit (no torch models: that
  env has no torch, see ``discover_vs_automl.py``).
- **FLAML** 2.8 (``automl_runner.py --tool flaml``, ``.bench-envs/flaml``):
  ``AutoML().fit(X, y, time_budget=T, metric=...)``; run once per distinct T and data set.

Printed per row: test metric (ROC AUC of the positive class, R^2 for regression, same code for
all), fit wall time and its ratio to T, lines of user code (:data:`USER_CODE`, non-blank lines
a user writes: import, fit, predict), single-row latency p50 on each tool's own predict path
(a one-row DataFrame into ``predict_proba``), then dripml's differences and ratios against each.

=====================  ======  ============================================
dripml preset          T (s)   AutoGluon presets paired with it
=====================  ======  ============================================
fast                   60      medium_quality
balanced               300     good_quality
best_quality           1800    best_quality
cheapest_to_serve      300     good_quality, optimize_for_deployment
=====================  ======  ============================================

Usage::

    .venv/bin/python benchmarks/fit_vs_autogluon.py                           # fast, balanced
    .venv/bin/python benchmarks/fit_vs_autogluon.py --presets fast --datasets adult  # ~4 min
    .venv/bin/python benchmarks/fit_vs_autogluon.py --presets all   # + best_quality: ~4 h
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from discover_vs_automl import (
    DATASETS,
    TOOLS,
    Row,
    _fmt,
    competitor_command,
    dripml_versions,
    ensure_env,
    prepare_data,
    run_fit,
)
from discover_vs_gridsearch import wait_until_quiet
from fit_dripml import USER_CODE as DRIPML_CODE

from dripml.core import presets as dripml_presets

BENCH = Path(__file__).resolve().parent
AUTOGLUON_PRESETS = {
    "fast": "medium_quality",
    "balanced": "good_quality",
    "best_quality": "best_quality",
    "cheapest_to_serve": "good_quality,optimize_for_deployment",
}
"""The AutoGluon presets paired with each dripml preset (comma: several, as AutoGluon takes)."""

USER_CODE = {
    "dripml": DRIPML_CODE,
    "autogluon": """\
from autogluon.tabular import TabularPredictor
predictor = TabularPredictor(label=LABEL, eval_metric=METRIC).fit(train, presets=AG, time_limit=T)
scores = predictor.predict_proba(test)
""",
    "flaml": """\
from flaml import AutoML
automl = AutoML()
automl.fit(train.drop(columns=[LABEL]), train[LABEL], time_budget=T, metric=METRIC)
scores = automl.predict_proba(test.drop(columns=[LABEL]))
""",
}
"""What a user of each tool writes for the same job (the runners do the same calls)."""


def lines_of_code(tool: str) -> int:
    return sum(1 for line in USER_CODE[tool].splitlines() if line.strip())


def run_tool(tool: str, dataset: str, preset: str, paths: tuple[Path, Path],
             args: argparse.Namespace, workdir: Path) -> Row:
    info = DATASETS[dataset]
    limit = dripml_presets.get(preset).time_limit_s
    row = Row(dataset=dataset, budget_s=limit, tool=tool, metric=info.metric)
    folder = workdir / f"{dataset}-{preset}-{tool}"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = paths
    if tool == "dripml":
        command = [sys.executable, str(BENCH / "fit_dripml.py"), "--train", str(train),
                   "--test", str(test), "--label", info.label, "--preset", preset,
                   "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--latency-calls", str(args.latency_calls)]
    else:
        command = competitor_command(tool, info, paths, limit, args)
        if tool == "autogluon":
            command += ["--presets", AUTOGLUON_PRESETS[preset]]
    if info.positive is not None:
        command += ["--positive", info.positive]
    env = {**os.environ, "PYTHONPATH": str(BENCH)}
    env.pop("MLFLOW_TRACKING_URI", None)
    run_fit(row, command, folder, folder / "log.txt", 3 * limit + 300, env)
    return row


def comparisons(results: list[tuple[str, Row]]) -> list[dict[str, Any]]:
    """Per data set and preset: dripml minus / over AutoGluon and FLAML."""
    by_key = {(r.dataset, preset, r.tool): r for preset, r in results}
    items = []
    for (dataset, preset, tool), mine in by_key.items():
        if tool != "dripml":
            continue
        item: dict[str, Any] = {"dataset": dataset, "preset": preset, "metric": mine.metric}
        for other in ("autogluon", "flaml"):
            theirs = by_key.get((dataset, preset, other))
            if theirs is None:
                continue
            item[f"metric_minus_{other}"] = _diff(mine.test_metric, theirs.test_metric)
            item[f"wall_over_{other}"] = _ratio(mine.fit_s, theirs.fit_s)
            item[f"latency_over_{other}"] = _ratio(mine.latency_p50_ms, theirs.latency_p50_ms)
            item[f"lines_{other}"] = lines_of_code(other)
        item["lines_dripml"] = lines_of_code("dripml")
        items.append(item)
    return items


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def print_rows(results: list[tuple[str, Row]]) -> None:
    print("\n| data set | preset | tool | limit s | metric | test | fit wall s | wall/limit "
          "| trials | lines of code | 1-row p50 ms | chosen |")
    print("|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for preset, r in results:
        chosen = r.error if r.error else (r.chosen or "")[:60]
        print(f"| {r.dataset} | {preset} | {r.tool} | {r.budget_s:g} | {r.metric} "
              f"| {_fmt(r.test_metric, '.4f')} | {_fmt(r.fit_s, '.1f')} "
              f"| {_fmt(r.wall_ratio, '.2f')} | {_fmt(r.trials, 'd')} "
              f"| {lines_of_code(r.tool)} | {_fmt(r.latency_p50_ms, '.3f')} | {chosen} |")


def print_comparisons(items: list[dict[str, Any]]) -> None:
    print("\n| data set | preset | metric | dripml - AutoGluon | wall dripml/AG "
          "| 1-row p50 dripml/AG | dripml - FLAML | wall dripml/FLAML | 1-row p50 dripml/FLAML "
          "| lines dripml / AG / FLAML |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for i in items:
        print(f"| {i['dataset']} | {i['preset']} | {i['metric']} "
              f"| {_fmt(i.get('metric_minus_autogluon'), '+.4f')} "
              f"| {_fmt(i.get('wall_over_autogluon'), '.2f')} "
              f"| {_fmt(i.get('latency_over_autogluon'), '.3f')} "
              f"| {_fmt(i.get('metric_minus_flaml'), '+.4f')} "
              f"| {_fmt(i.get('wall_over_flaml'), '.2f')} "
              f"| {_fmt(i.get('latency_over_flaml'), '.3f')} "
              f"| {i['lines_dripml']} / {lines_of_code('autogluon')} / "
              f"{lines_of_code('flaml')} |")


def _names(value: str, valid: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = list(valid) if value == "all" else [v.strip() for v in value.split(",") if v]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {list(valid)} or 'all'")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="fast,balanced",
                        help="dripml presets, comma-separated or 'all' (default: fast,balanced)")
    parser.add_argument("--datasets", default="adult,flights",
                        help="data sets (default: adult,flights; diamonds also works)")
    parser.add_argument("--tools", default="dripml,autogluon,flaml")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (default: /tmp)")
    parser.add_argument("--envs-dir", type=Path, default=BENCH.parent / ".bench-envs")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--cpus", type=int, default=2,
                        help="num_cpus / n_jobs of AutoGluon and FLAML (default 2)")
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--max-foreign-load", type=float, default=0.2, metavar="CORES")
    parser.add_argument("--quiet-timeout", type=float, default=600, metavar="SECONDS")
    args = parser.parse_args(argv)
    args.presets = _names(args.presets, list(AUTOGLUON_PRESETS), "presets")
    args.datasets = _names(args.datasets, list(DATASETS), "data sets")
    args.tools = _names(args.tools, ["dripml", *TOOLS], "tools")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.envs_dir = args.envs_dir.resolve()
    versions = {"dripml": dripml_versions()}
    for tool in args.tools:
        if tool in TOOLS:
            versions[tool] = ensure_env(args.envs_dir, tool)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fit_vs_autogluon-"))
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or Path(tempfile.gettempdir()) / f"fit_vs_autogluon-{stamp}.json"
    print(f"versions: {json.dumps(versions)}\nwork folder: {workdir}\n", flush=True)

    results: list[tuple[str, Row]] = []
    flaml_rows: dict[tuple[str, float], Row] = {}
    for dataset in args.datasets:
        paths = prepare_data(dataset, workdir)
        for preset in args.presets:
            limit = dripml_presets.get(preset).time_limit_s
            for tool in args.tools:
                if tool == "flaml" and (dataset, limit) in flaml_rows:
                    results.append((preset, flaml_rows[(dataset, limit)]))  # same T, same fit
                    continue
                if args.quiet_timeout > 0:
                    wait_until_quiet(args.max_foreign_load, args.quiet_timeout)
                print(f"== {dataset}, preset {preset} ({limit:g} s), {tool} ...", flush=True)
                row = run_tool(tool, dataset, preset, paths, args, workdir)
                if tool == "flaml":
                    flaml_rows[(dataset, limit)] = row
                results.append((preset, row))
                print(f"   {row.metric} {_fmt(row.test_metric, '.4f')}, fit "
                      f"{_fmt(row.fit_s, '.1f')} s, 1-row p50 "
                      f"{_fmt(row.latency_p50_ms, '.3f')} ms"
                      + (f"; ERROR {row.error}" if row.error else ""), flush=True)
                out.write_text(json.dumps(_report(results, versions), indent=2, default=str))
    print_rows(results)
    print_comparisons(comparisons(results))
    out.write_text(json.dumps(_report(results, versions), indent=2, default=str))
    print(f"\nrows written to {out}; logs under {workdir}")
    return 1 if any(r.error for _, r in results) else 0


def _report(results: list[tuple[str, Row]], versions: dict[str, Any]) -> dict[str, Any]:
    return {"versions": versions, "user_code": USER_CODE,
            "rows": [{"preset": p, **asdict(r), "wall_ratio": r.wall_ratio}
                     for p, r in results],
            "comparisons": comparisons(results)}


if __name__ == "__main__":
    sys.exit(main())
