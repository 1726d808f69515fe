"""Ensembles at the top of the curve: the best single candidate against the greedy and
stacked ensembles of the refit candidates, on UCI Adult.

One in-process search (``--num-trials`` trials, default 30, over logistic regression,
LightGBM and XGBoost, 5 folds), Refine with ``refine.ensembles: [greedy, stacked]``; then
the frontier table (CV and test ROC AUC, single-row latency on the serving path and in
process), and a head-to-head in-process single-row latency of the best single candidate and
both ensembles (interleaved, ``costs.measure_latencies``, 2,000 calls each; models loaded
from the registry, so only frontier points), with the load average beside it.

Run from the repository root (about 10 minutes on 2 idle cores)::

    .venv/bin/python benchmarks/ensembles.py
    .venv/bin/python benchmarks/ensembles.py --num-trials 20 --sample-rows 10000  # quicker
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import mlflow
import pandas as pd

import dripml
from dripml.core import costs, datasets
from dripml.productionize import tracking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--num-trials", type=int, default=30)
    parser.add_argument("--sample-rows", type=int, default=None)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="dripml-ensembles-")
    os.chdir(root)
    uri = f"sqlite:///{root}/mlflow.db"
    data = {"train": "dataset://adult/train", "test": "dataset://adult/test", "label": "income"}
    if args.sample_rows:
        data["sample_rows"] = args.sample_rows
    spec = {"name": "adult-ensembles", "task": "binary", "data": data, "k_fold": args.folds,
            "algorithms": ["logistic_regression", "lightgbm", "xgboost"],
            "search": {"num_trials": args.num_trials, "seed": 0},
            "refine": {"top_k": 5, "ensembles": ["greedy", "stacked"]}}
    started = time.monotonic()
    result = dripml.train(spec, tracking_uri=uri)
    print(f"search + refine: {time.monotonic() - started:.0f} s; load {os.getloadavg()}")
    table = result.frontier_table()
    assert table is not None
    columns = [c for c in ("trial", "algorithm", "validation_roc_auc", "test_roc_auc",
                           "latency_p50_ms", "latency_p99_ms", "inproc_latency_p50_ms",
                           "inproc_latency_p99_ms", "frontier", "chosen", "version")
               if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table[columns].to_string(index=False))
    singles = [p for p in result.frontier.points
               if not p.candidate.algorithm.startswith("ensemble")]
    best = max(singles, key=lambda p: p.candidate.objective)
    rows = [("best single: " + best.candidate.algorithm, best)]
    rows += [(p.candidate.algorithm, p) for p in result.frontier.points
             if p.candidate.algorithm.startswith("ensemble")]
    for name, point in rows:
        c = point.candidate
        print(f"{name:38s} trial {c.trial:3d}  CV AUC {c.objective:.5f}  test AUC "
              f"{c.test_metrics.get('test_roc_auc', float('nan')):.5f}  p50 "
              f"{c.cost.latency_p50_ms:.3f} ms  p99 {c.cost.latency_p99_ms:.3f} ms  "
              f"params {dict(c.params) if name.startswith('ensemble') else ''}")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    loaded = [(name, tracking.load_trained_model(
        f"models:/{result.model.name}/{result.versions[p.candidate.trial]}"))
        for name, p in rows[1:] if p.candidate.trial in result.versions]
    # The best single candidate may be off the frontier (its compiled twin scores the same
    # for less): time it as the ensembles' own first member, the same fitted recipe.
    ensemble = next((m for _, m in loaded), None)
    if ensemble is not None:
        estimator = ensemble.fitted.recipe.estimator
        first = dataclasses.replace(ensemble, fitted=estimator.members[0],
                                    algorithm=estimator.algorithms[0])
        loaded.insert(0, (f"member 1: {estimator.algorithms[0]}", first))
    test = pd.read_parquet(datasets.fetch("adult")["test"])
    records = costs.json_records(test.drop(columns="income"), 1000)
    print(f"head to head, in process, interleaved; load before {os.getloadavg()}")
    latencies = costs.measure_latencies([m for _, m in loaded], records, calls=2000)
    for (name, _), latency in zip(loaded, latencies, strict=True):
        print(f"  {name:38s} p50 {latency.p50_ms:.3f} ms  p99 {latency.p99_ms:.3f} ms")
    print(f"load after {os.getloadavg()}")


if __name__ == "__main__":
    main()
