"""Single-row latency of ``drip serve`` against in-process ``predict_records``.

Starts the server with :func:`dripml.productionize.serving.serve` on a free loopback port, sends
``--calls`` sequential one-record ``POST /predict`` requests over one persistent HTTP
connection, then times the same record through ``TrainedModel.predict_records`` in this
process, and prints p50/p99 in milliseconds and the ratio. The server is always stopped.

Usage::

    python benchmarks/serving_latency.py --model tiny --tracking-uri sqlite:///$PWD/mlflow.db
"""

from __future__ import annotations

import os

# Same thread-pool sizes as the server (serve() sets them there), for a like-for-like baseline.
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from dripml import api  # noqa: E402
from dripml.productionize import serving  # noqa: E402


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def timed(call: Callable[[], object], n: int, warmup: int) -> np.ndarray:
    """Wall time of ``n`` sequential calls after ``warmup`` untimed ones, in milliseconds."""
    for _ in range(warmup):
        call()
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter()
        call()
        out[i] = (time.perf_counter() - start) * 1000.0
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="NAME, NAME@alias, NAME/version or URI")
    parser.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    parser.add_argument("--calls", type=int, default=1000, help="timed requests (default 1000)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed requests first")
    args = parser.parse_args(argv)

    model = api.load_model(args.model, tracking_uri=args.tracking_uri)
    record = model.example
    body = {"records": [record]}

    started = time.perf_counter()
    with serving.serve(args.model, port=free_port(), tracking_uri=args.tracking_uri) as server:
        print(f"server {server.version_label} ready at {server.url} "
              f"in {time.perf_counter() - started:.1f} s")
        with httpx.Client(base_url=server.url, timeout=10.0, trust_env=False) as client:
            def post() -> None:
                response = client.post("/predict", json=body)
                response.raise_for_status()

            http_ms = timed(post, args.calls, args.warmup)
    local_ms = timed(lambda: model.predict_records([record]), args.calls, args.warmup)

    def row(name: str, ms: np.ndarray) -> str:
        p50, p99 = np.percentile(ms, [50, 99])
        return f"{name:<28} {p50:8.3f} {p99:8.3f} {ms.mean():8.3f}"

    print(f"\n{args.calls} sequential single-row calls, {model.algorithm} ({model.task})")
    print(f"{'':<28} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    print(row("HTTP POST /predict", http_ms))
    print(row("in-process predict_records", local_ms))
    ratio50 = np.percentile(http_ms, 50) / np.percentile(local_ms, 50)
    ratio99 = np.percentile(http_ms, 99) / np.percentile(local_ms, 99)
    print(f"{'ratio HTTP / in-process':<28} {ratio50:7.1f}x {ratio99:7.1f}x")


if __name__ == "__main__":
    main()
