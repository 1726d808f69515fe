"""One dripml fit for ``discover_vs_automl.py``, in a process of its own.

Run by ``discover_vs_automl.py`` with the project's virtualenv, in a temporary working folder
(so Ray is started and stopped by this process alone, and ``.dripml/`` lands there). It calls
``dripml.train`` on the spec the benchmark passes (JSON), with MLflow tracking into that
folder, loads the registered chosen model (``dripml.load_model``: a ``TrainedModel``), scores
it on the test rows with the same code as the other tools (``automl_runner.score``: ROC AUC
of the positive class's probability, or R^2), times ``TrainedModel.predict_records`` on one
record (one test row as a JSON-like dict; median of ``--latency-calls`` calls after 10
untimed ones, ``automl_runner.median_latency_ms``) and prints one line ``RESULT {json}``
last. With ``--frontier`` (``drip_vs_automl.py``) the result also lists every registered
frontier point (``frontier``: trial, algorithm, version, its test metric by the same scorer,
and Refine's costs: endpoint p50/p99 when it was served, in-process p50/p99). By hand::

    .venv/bin/python benchmarks/automl_dripml.py --spec spec.json --test TEST.parquet \\
        --positive '>50K'
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from automl_runner import RESULT_PREFIX, median_latency_ms, score

import dripml
from dripml.core.model import TrainedModel


def json_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON would bring it: Python scalars, None for missing values."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if hasattr(value, "item"):
            value = value.item()
        if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
            value = None
        out[name] = value
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", required=True, help="the dripml spec as a JSON file")
    parser.add_argument("--test", required=True, help="test rows (Parquet), for scoring")
    parser.add_argument("--positive", default=None, help="the positive class (binary)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: sqlite:///$PWD/mlflow.db)")
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--frontier", action="store_true",
                        help="also score every registered frontier point on the test rows")
    return parser.parse_args(argv)


def prediction_for_score(model: TrainedModel, X_test: pd.DataFrame, task: str,
                    positive: str | None) -> Any:
    """What ``automl_runner.score`` takes: the positive class's probability, or the value."""
    predicted = model.predict_frame(X_test)
    if task == "binary":
        assert predicted.probabilities is not None
        return predicted.probabilities[:, list(model.classes).index(positive)]
    return pd.Series(predicted.labels, dtype=float).to_numpy()


def _number(value: Any) -> float | None:
    return None if value is None or value == "" or pd.isna(value) else float(value)


def frontier_points(result: dripml.TrainResult, test: pd.DataFrame, label: str, task: str,
                    positive: str | None) -> list[dict[str, Any]]:
    """Every registered frontier point, scored on ``test`` by ``automl_runner.score``, with
    Refine's costs (``served``: whether ``latency_p50_ms`` is the endpoint's)."""
    table = result.frontier_table()
    if table is None:
        return []
    X_test = test.drop(columns=[label])
    points = []
    for row in table.to_dict("records"):
        if not row.get("version"):
            continue
        try:
            model = dripml.load_model(f"{result.model.name}/{row['version']}",
                                      tracking_uri=result.tracking_uri)
            prediction = prediction_for_score(model, X_test, task, positive)
        except Exception as error:  # one point that fails to load must not lose the run
            print(f"frontier point v{row['version']} ({row['algorithm']}) not scored: "
                  f"{error!r}", flush=True)
            continue
        served = _number(row.get("requests_per_s")) is not None
        points.append({
            "trial": int(row["trial"]), "algorithm": row["algorithm"],
            "version": str(row["version"]), "model": result.model.name,
            "test_metric": score(task, test[label], prediction, positive),
            "served": served, "chosen": bool(row["chosen"]), "frontier": row["frontier"],
            **{key: _number(row.get(key)) for key in (
                "latency_p50_ms", "latency_p99_ms", "inproc_latency_p50_ms",
                "inproc_latency_p99_ms", "requests_per_s", "model_mb")},
        })
    return points


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    uri = args.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    started = time.perf_counter()
    result = dripml.train(spec, tracking_uri=uri)
    fit_s = time.perf_counter() - started

    model = dripml.load_model(f"{result.model.name}/{result.model.version}",
                              tracking_uri=result.tracking_uri)
    label, task = spec["data"]["label"], spec["task"]
    test = pd.read_parquet(args.test)
    X_test = test.drop(columns=[label])
    prediction = prediction_for_score(model, X_test, task, args.positive)
    records = [json_record(r) for r in X_test.iloc[:args.latency_calls].to_dict("records")]

    def one(i: int) -> object:
        return model.predict_records([records[i]])

    board = result.leaderboard
    states = board["state"].value_counts().to_dict()
    chosen = result.chosen or result.best
    print(RESULT_PREFIX + json.dumps({
        "tool_version": dripml.__version__, "fit_s": fit_s,
        "test_metric": score(task, test[label], prediction, args.positive),
        # Every configuration Discover started, as FLAML counts the ones it tried on samples.
        "trials": len(board),
        "trials_note": ", ".join(f"{int(v)} {str(k).lower()}" for k, v in states.items()),
        "chosen": f"{chosen.algorithm} {json.dumps(chosen.params, default=str)}",
        "latency_p50_ms": median_latency_ms(one, args.latency_calls),
        "dripml_test_metrics": result.test_metrics,
        "dripml_wall_time_s": result.wall_time_s,
        "dripml_search_time_s": result.search_time_s,
        "skipped": list(result.skipped),
        **({"frontier": frontier_points(result, test, label, task, args.positive)}
           if args.frontier else {}),
        "pandas_version": pd.__version__,
    }, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
