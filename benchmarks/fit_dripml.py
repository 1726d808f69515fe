"""One ``dripml.fit`` for ``fit_vs_autogluon.py``, in a process of its own.

Run by ``fit_vs_autogluon.py`` with the project's virtualenv, in a work folder of its own (Ray
is started and stopped by this process alone; ``.dripml/`` and MLflow's store land there). It
reads the train and test Parquet files every tool gets into DataFrames and runs the user's
code of the benchmark (:data:`USER_CODE`, the lines counted as "lines of user code"): the fit
is timed alone; then the chosen model is scored on the test rows with the code every tool
shares (``automl_runner.score``: ROC AUC of the positive class's probability, or R^2), and
``FitResult.predict_proba`` (``predict`` for regression) is timed on one-row DataFrames, as
AutoGluon's and FLAML's predict paths are (median of ``--latency-calls`` calls after 10
untimed ones). Prints one line ``RESULT {json}`` last. By hand::

    .venv/bin/python benchmarks/fit_dripml.py --train TRAIN.parquet --test TEST.parquet \\
        --label income --positive '>50K' --preset fast
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import pandas as pd
from automl_runner import RESULT_PREFIX, median_latency_ms, score

import dripml

USER_CODE = """\
import dripml
result = dripml.fit(train, label=LABEL, presets=PRESET)
scores = result.predict_proba(test)
"""
"""What a user writes: DataFrames in, the chosen model's probabilities out."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="training rows (Parquet)")
    parser.add_argument("--test", required=True, help="test rows (Parquet)")
    parser.add_argument("--label", required=True)
    parser.add_argument("--positive", default=None, help="the positive class (binary)")
    parser.add_argument("--preset", required=True, help="dripml preset")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: dripml's, under the work folder)")
    parser.add_argument("--latency-calls", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train, test = pd.read_parquet(args.train), pd.read_parquet(args.test)
    X_test = test.drop(columns=[args.label])
    started = time.perf_counter()
    result = dripml.fit(train, label=args.label, presets=args.preset,
                        tracking_uri=args.tracking_uri)
    fit_s = time.perf_counter() - started
    task = result.result.spec.task
    if task == "regression":
        prediction = pd.Series(result.predict(X_test), dtype=float).to_numpy()
        rows = [X_test.iloc[[i]] for i in range(args.latency_calls)]

        def one(i: int) -> object:
            return result.predict(rows[i])
    else:
        prediction = result.predict_proba(X_test)[args.positive].to_numpy()
        rows = [X_test.iloc[[i]] for i in range(args.latency_calls)]

        def one(i: int) -> object:
            return result.predict_proba(rows[i])

    board = result.leaderboard()
    run = result.result
    chosen = run.chosen or run.best
    summary: dict[str, Any] = {
        "tool_version": dripml.__version__, "fit_s": fit_s,
        "test_metric": score(task, test[args.label], prediction, args.positive),
        "trials": len(board),
        "trials_note": ", ".join(f"{int(v)} {str(k).lower()}"
                                 for k, v in board["state"].value_counts().items()),
        "chosen": f"{chosen.algorithm} {json.dumps(chosen.params, default=str)}",
        "latency_p50_ms": median_latency_ms(one, args.latency_calls),
        "notes": list(result.notes),
        "skipped": list(run.skipped),
        "model_ref": result.model_ref,
    }
    print(RESULT_PREFIX + json.dumps(summary, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
