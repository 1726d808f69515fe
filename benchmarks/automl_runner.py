"""One AutoML fit for ``discover_vs_automl.py``: FLAML or AutoGluon in its own virtualenv.

Run by ``discover_vs_automl.py`` with the Python of ``.bench-envs/<tool>``; it imports only
pandas, NumPy, scikit-learn and the tool (never dripml), so it runs in an environment that
holds nothing else. It reads the train and test Parquet files every tool gets, fits with the
time budget, scores the chosen model on the test rows (ROC AUC of the positive class for
binary, R^2 for regression, both with scikit-learn), times single-row predictions (median of
``--latency-calls`` calls, each on one test row given as a one-row pandas DataFrame, after 10
untimed calls; ``predict_proba`` for binary, ``predict`` for regression) and prints one line
``RESULT {json}`` last.

- FLAML: ``AutoML().fit(X, y, task=..., time_budget=BUDGET, metric="roc_auc"|"r2",
  n_jobs=CPUS, seed=0)``, default estimator list; trials = every configuration it evaluated
  (``AutoML._iter_per_learner`` summed; ``config_history`` holds only the improvements).
- AutoGluon: ``TabularPredictor(label, eval_metric=..., problem_type=...).fit(train,
  time_limit=BUDGET, presets=PRESETS, num_cpus=CPUS, num_gpus=0)`` (``--presets``, default
  ``medium_quality``) without its
  torch models (the env has no torch, see ``discover_vs_automl.py``), in a temporary folder;
  the predictor is persisted in memory (``predictor.persist()``, AutoGluon's advice for
  online inference) before the latency is timed; trials = models trained (the weighted
  ensemble included).
- baseline (``drip_vs_automl.py``'s logistic-regression floor): a scikit-learn pipeline,
  numeric columns median-imputed and standardised, the others most-frequent-imputed and
  one-hot encoded (unknown levels ignored), then ``LogisticRegression(max_iter=1000)`` for
  binary or ``Ridge()`` for regression; no search (``--budget`` is not used).

With ``--save DIR`` the fitted model stays in ``DIR`` (AutoGluon's predictor folder, or a
pickle of FLAML's ``AutoML`` / the baseline pipeline) with ``model.json`` saying how to load
it, for ``automl_server.py`` to serve.

The functions :func:`score` and :func:`median_latency_ms` are also used by
``automl_dripml.py`` so that every tool is scored and timed by the same code. By hand::

    .bench-envs/flaml/bin/python benchmarks/automl_runner.py --tool flaml \\
        --train TRAIN.parquet --test TEST.parquet --label income --task binary \\
        --positive '>50K' --budget 20
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pickle
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import r2_score, roc_auc_score

RESULT_PREFIX = "RESULT "
WARMUP_CALLS = 10
AUTOGLUON_PRESETS = "medium_quality"
MODEL_META = "model.json"
"""In a ``--save`` folder: ``{"tool", "task", "positive", "label", "file"}``."""
AUTOGLUON_TORCH_MODELS = ("NN_TORCH", "FASTAI", "TABM", "REALMLP", "MITRA", "TABPFNV2",
                          "TABICL")
"""AutoGluon's model keys that need torch; left out because the env has none."""


def score(task: str, y_true: pd.Series, prediction: np.ndarray, positive: str | None) -> float:
    """ROC AUC of ``prediction`` (the positive class's probability) for binary, else R^2."""
    if task == "binary":
        return float(roc_auc_score((y_true.astype(str) == positive).astype(int), prediction))
    return float(r2_score(y_true.astype(float), prediction))


def median_latency_ms(predict_one: Callable[[int], object], calls: int) -> float:
    """Median wall time in ms of ``predict_one(i)`` for i in 0..calls-1, after
    :data:`WARMUP_CALLS` untimed calls."""
    for i in range(WARMUP_CALLS):
        predict_one(i % calls)
    times = []
    for i in range(calls):
        started = time.perf_counter()
        predict_one(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def save_model(args: argparse.Namespace, model: object | None, file: str) -> None:
    """Keep the fitted model in ``args.save`` (pickled unless ``model`` is None: a folder the
    tool wrote itself) with :data:`MODEL_META`; nothing without ``--save``."""
    if args.save is None:
        return
    folder = Path(args.save)
    folder.mkdir(parents=True, exist_ok=True)
    if model is not None:
        with open(folder / file, "wb") as out:
            pickle.dump(model, out)
    meta = {"tool": args.tool, "task": args.task, "positive": args.positive,
            "label": args.label, "file": file}
    (folder / MODEL_META).write_text(json.dumps(meta))


def _flaml(train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    import flaml
    from flaml import AutoML

    X, y = train.drop(columns=[args.label]), train[args.label]
    X_test = test.drop(columns=[args.label])
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(X, y, task="classification" if args.task == "binary" else "regression",
               time_budget=args.budget, metric="roc_auc" if args.task == "binary" else "r2",
               n_jobs=args.cpus, seed=0, verbose=0)
    fit_s = time.perf_counter() - started
    save_model(args, automl, "flaml.pkl")
    rows = [X_test.iloc[[i]] for i in range(args.latency_calls)]
    if args.task == "binary":
        column = list(automl.classes_).index(args.positive)
        prediction = automl.predict_proba(X_test)[:, column]

        def one(i: int) -> object:
            return automl.predict_proba(rows[i])
    else:
        prediction = automl.predict(X_test)

        def one(i: int) -> object:
            return automl.predict(rows[i])
    return {
        "tool_version": flaml.__version__, "fit_s": fit_s,
        "test_metric": score(args.task, test[args.label], np.asarray(prediction),
                             args.positive),
        # config_history holds only the improvements; _iter_per_learner counts every trial.
        "trials": int(sum(automl._iter_per_learner.values())),
        "trials_by_learner": dict(automl._iter_per_learner),
        "improvements": len(automl.config_history),
        "eval_method": automl._state.eval_method,
        "chosen": f"{automl.best_estimator} {json.dumps(automl.best_config, default=str)}",
        "latency_p50_ms": median_latency_ms(one, args.latency_calls),
    }


def _autogluon(train: pd.DataFrame, test: pd.DataFrame,
               args: argparse.Namespace) -> dict[str, Any]:
    import autogluon.tabular
    from autogluon.tabular import TabularPredictor

    X_test = test.drop(columns=[args.label])
    with contextlib.ExitStack() as stack:
        folder = args.save or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="autogluon-"))
        predictor = TabularPredictor(
            label=args.label, eval_metric="roc_auc" if args.task == "binary" else "r2",
            problem_type=args.task, path=f"{folder}/predictor", verbosity=1)
        started = time.perf_counter()
        predictor.fit(train, time_limit=args.budget, presets=args.presets.split(","),
                      num_cpus=args.cpus, num_gpus=0,
                      excluded_model_types=list(AUTOGLUON_TORCH_MODELS))
        fit_s = time.perf_counter() - started
        save_model(args, None, "predictor")  # the folder AutoGluon wrote
        predictor.persist()
        rows = [X_test.iloc[[i]] for i in range(args.latency_calls)]
        if args.task == "binary":
            prediction = predictor.predict_proba(X_test)[args.positive].to_numpy()

            def one(i: int) -> object:
                return predictor.predict_proba(rows[i])
        else:
            prediction = predictor.predict(X_test).to_numpy()

            def one(i: int) -> object:
                return predictor.predict(rows[i])
        models = predictor.model_names()
        return {
            "tool_version": autogluon.tabular.__version__, "fit_s": fit_s,
            "test_metric": score(args.task, test[args.label], prediction, args.positive),
            "trials": len(models),
            "chosen": f"{predictor.model_best} (of {', '.join(models)})",
            "presets": args.presets,
            "latency_p50_ms": median_latency_ms(one, args.latency_calls),
        }


def baseline_pipeline(X: pd.DataFrame, task: str) -> Any:
    """The logistic-regression (Ridge for regression) floor: impute, scale the numeric
    columns, one-hot the others (unknown levels ignored)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])]
    other = [c for c in X.columns if c not in numeric]
    encode = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("other", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                OneHotEncoder(handle_unknown="ignore")), other),
    ])
    model = LogisticRegression(max_iter=1000) if task == "binary" else Ridge()
    return Pipeline([("encode", encode), ("model", model)])


def _baseline(train: pd.DataFrame, test: pd.DataFrame,
              args: argparse.Namespace) -> dict[str, Any]:
    import sklearn

    X, y = train.drop(columns=[args.label]), train[args.label]
    X_test = test.drop(columns=[args.label])
    pipeline = baseline_pipeline(X, args.task)
    started = time.perf_counter()
    if args.task == "binary":
        pipeline.fit(X, y.astype(str))
    else:
        pipeline.fit(X, y.astype(float))
    fit_s = time.perf_counter() - started
    save_model(args, pipeline, "baseline.pkl")
    rows = [X_test.iloc[[i]] for i in range(args.latency_calls)]
    if args.task == "binary":
        column = list(pipeline.classes_).index(args.positive)
        prediction = pipeline.predict_proba(X_test)[:, column]

        def one(i: int) -> object:
            return pipeline.predict_proba(rows[i])
    else:
        prediction = pipeline.predict(X_test)

        def one(i: int) -> object:
            return pipeline.predict(rows[i])
    return {
        "tool_version": sklearn.__version__, "fit_s": fit_s,
        "test_metric": score(args.task, test[args.label], np.asarray(prediction),
                             args.positive),
        "trials": 1,
        "chosen": type(pipeline.named_steps["model"]).__name__,
        "latency_p50_ms": median_latency_ms(one, args.latency_calls),
    }


TOOLS: dict[str, Callable[[pd.DataFrame, pd.DataFrame, argparse.Namespace], dict[str, Any]]] = {
    "flaml": _flaml,
    "autogluon": _autogluon,
    "baseline": _baseline,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", choices=sorted(TOOLS), required=True)
    parser.add_argument("--train", required=True, help="training rows (Parquet)")
    parser.add_argument("--test", required=True, help="test rows (Parquet)")
    parser.add_argument("--label", required=True)
    parser.add_argument("--task", choices=["binary", "regression"], required=True)
    parser.add_argument("--positive", default=None,
                        help="the positive class (binary; ROC AUC is of its probability)")
    parser.add_argument("--budget", type=float, required=True, help="time budget, seconds")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--latency-calls", type=int, default=200)
    parser.add_argument("--presets", default=AUTOGLUON_PRESETS,
                        help="AutoGluon presets, comma-separated (default: medium_quality)")
    parser.add_argument("--save", default=None, metavar="DIR",
                        help="keep the fitted model in DIR for automl_server.py")
    args = parser.parse_args(argv)
    if args.task == "binary" and args.positive is None:
        parser.error("--positive is required for --task binary")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    train, test = pd.read_parquet(args.train), pd.read_parquet(args.test)
    if len(test) < args.latency_calls:
        raise SystemExit(f"the test split has {len(test)} rows, fewer than --latency-calls "
                         f"{args.latency_calls}")
    result = TOOLS[args.tool](train, test, args)
    result["pandas_version"] = pd.__version__
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
