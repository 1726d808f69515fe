"""What the serving stack costs per request: five servers of one Adult model, side by side.

Each measured with ``hey`` (the Debian package, ``/usr/bin/hey``) posting one Adult record as
JSON, on the same cores. The servers start one at a time (``ready`` is timed alone), then are
measured in interleaved rounds with one server under load at a time (other load on the
machine then hits each alike); the table gives the medians of the rounds:

- ``bentoml``: a plain BentoML 1.4 service around a scikit-learn pipeline (one-hot encoding +
  ``HistGradientBoostingClassifier``), as a user would write it: a typed ``@bentoml.api``
  taking the records, a one-row DataFrame, ``predict_proba``;
- ``fastapi``: a plain FastAPI app around the same pipeline, under uvicorn;
- ``drip-before``: ``drip serve`` with the lean path off (``DRIPML_SERVE_FAST_PATH=off``,
  access log and tracing on: what ``drip serve`` did before);
- ``drip``: ``drip serve`` as it ships;
- ``bare``: a bare ASGI callable under uvicorn around the same dripml model
  (``json.loads`` -> ``predict_records`` -> ``json.dumps``): the bound.

Per server: c=1 p50/p99 (ms), c=1 and c=8 requests/s, and ``ready`` (seconds from starting the
command to the first 200 answer). The table ends with ratios against the bare ASGI bound
(and ``drip``'s ready time against the plain BentoML service's). With ``--model`` it serves a
registered dripml model (``--tracking-uri``); else it trains a small LightGBM on Adult once,
in a temporary folder. In-process ``predict_records`` on the record is timed too.

Usage::

    python benchmarks/endpoint_overhead.py                       # trains a model (~30 s)
    python benchmarks/endpoint_overhead.py --model adult --tracking-uri sqlite:///$PWD/m.db
    python benchmarks/endpoint_overhead.py --servers drip,bare --requests 4000
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_name, "1")  # as drip serve sets them for its workers

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import textwrap  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402

SERVERS = ("bentoml", "fastapi", "drip-before", "drip", "bare")
SMALL_SPEC = {
    "name": "endpoint-bench", "task": "binary",
    "data": {"train": "dataset://adult/train", "test": "dataset://adult/test",
             "label": "income", "sample_rows": 5000},
    "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 100}}],
    "search": {"num_trials": 1}, "k_fold": 2,
}

PLAIN_BENTOML = '''
import bentoml, joblib, pandas as pd
from pydantic import BaseModel

PIPELINE = joblib.load(__import__("os").environ["BENCH_PIPELINE"])

class Request(BaseModel):
    records: list[dict]

@bentoml.service(workers=1)
class Plain:
    @bentoml.api
    def predict(self, records: list[dict]) -> dict:
        frame = pd.DataFrame(records)
        proba = PIPELINE.predict_proba(frame)
        labels = PIPELINE.classes_[proba.argmax(axis=1)].tolist()
        return {"predictions": labels, "probabilities": proba.round(6).tolist()}
'''

PLAIN_FASTAPI = '''
import os, joblib, pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

PIPELINE = joblib.load(os.environ["BENCH_PIPELINE"])
app = FastAPI()

class Request(BaseModel):
    records: list[dict]

@app.get("/readyz")
def readyz() -> dict:
    return {}

@app.post("/predict")
def predict(request: Request) -> dict:
    proba = PIPELINE.predict_proba(pd.DataFrame(request.records))
    labels = PIPELINE.classes_[proba.argmax(axis=1)].tolist()
    return {"predictions": labels, "probabilities": proba.round(6).tolist()}
'''

BARE_ASGI = '''
import json, os
from dripml.productionize.serving import read_bundle

MODEL, _ = read_bundle(os.environ["DRIPML_MODEL_PATH"])
CLASSES = list(MODEL.classes)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/predict":
        p = MODEL.predict_records(json.loads(body)["records"])
        out = {"predictions": p.labels,
               "probabilities": [dict(zip(CLASSES, r)) for r in p.probabilities.round(6).tolist()]}
    else:
        out = {}
    content = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": content})
'''


@dataclass
class Row:
    server: str
    p50_ms: float
    p99_ms: float
    rps_c1: float
    rps_c8: float
    ready_s: float


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hey(url: str, body: Path, *, concurrency: int, requests: int) -> dict[str, float]:
    """Run hey; requests/s, p50 and p99 in ms."""
    out = subprocess.run(
        ["hey", "-c", str(concurrency), "-n", str(requests), "-m", "POST", "-T",
         "application/json", "-D", str(body), url],
        capture_output=True, text=True, check=True).stdout
    codes = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
    if any(code != "200" for code, _ in codes):
        raise RuntimeError(f"non-200 answers from {url}: {codes}\n{out}")

    def pct(p: int) -> float:
        match = re.search(rf"{p}% in ([\d.]+) secs", out)
        return float(match.group(1)) * 1000 if match else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"rps": float(rps.group(1)) if rps else float("nan"), "p50": pct(50), "p99": pct(99)}


def wait_ready(process: subprocess.Popen[bytes], url: str, body: bytes, started: float,
               timeout_s: float = 180) -> float:
    """Seconds from ``started`` to the first 200 answer of ``POST url``."""
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with code {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                response = client.post(url, content=body,
                                       headers={"Content-Type": "application/json"})
                if response.status_code == 200:
                    return time.monotonic() - started
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout_s} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server and everything it started; SIGKILL what is left after 15 s."""
    try:
        family = [process.pid] + [p.pid for p in
                                  psutil.Process(process.pid).children(recursive=True)]
    except psutil.Error:
        family = [process.pid]
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    for pid in family:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def command(server: str, port: int, work: Path, model: str) -> tuple[list[str], dict[str, str]]:
    python = sys.executable
    env = dict(os.environ, PYTHONPATH=str(work), BENTOML_DO_NOT_TRACK="True",
               BENTOML_HOME=str(work / "bentoml"), BENCH_PIPELINE=str(work / "pipeline.joblib"))
    for name in ("DRIPML_SERVE_FAST_PATH", "DRIPML_SERVE_ACCESS_LOG", "DRIPML_SERVE_TRACING"):
        env.pop(name, None)
    uvicorn = [python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port),
               "--no-access-log", "--log-level", "warning"]
    if server == "bentoml":
        return [python, "-m", "bentoml", "serve", "plain_bentoml:Plain", "--host",
                "127.0.0.1", "--port", str(port)], env
    if server == "fastapi":
        return [*uvicorn, "plain_fastapi:app"], env
    if server == "bare":
        return [*uvicorn, "bare_asgi:app"], {**env, "DRIPML_MODEL_PATH": str(work / "bundle")}
    drip = shutil.which("drip", path=str(Path(python).parent)) or "drip"
    if server == "drip-before":
        env.update(DRIPML_SERVE_FAST_PATH="off", DRIPML_SERVE_ACCESS_LOG="on",
                   DRIPML_SERVE_TRACING="on")
    return [drip, "serve", model, "--host", "127.0.0.1", "--port", str(port)], env


def sklearn_pipeline(train_path: Path, label: str, features: list[str]) -> object:
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.read_parquet(train_path)
    x, y = frame[features], frame[label].astype(str)
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(x[c])]
    encode = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
        remainder="passthrough")
    return Pipeline([("encode", encode),
                     ("model", HistGradientBoostingClassifier(max_iter=100))]).fit(x, y)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="a registered dripml model (NAME, NAME@alias, NAME/version); "
                             "default: train a small LightGBM on Adult once")
    parser.add_argument("--tracking-uri", default=None, help="MLflow store of --model")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"comma-separated, of {', '.join(SERVERS)}")
    parser.add_argument("--requests", type=int, default=2000, help="requests per hey run")
    parser.add_argument("--warmup", type=int, default=300, help="untimed requests first")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds over the servers; medians are reported")
    args = parser.parse_args(argv)
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(servers) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers {unknown}; choose among {', '.join(SERVERS)}")
    if shutil.which("hey") is None:
        parser.error("hey is not installed (Debian: apt-get install hey)")

    import joblib

    from dripml import api
    from dripml.core import datasets
    from dripml.productionize import serving

    work = Path(tempfile.mkdtemp(prefix="endpoint-bench-"))
    os.chdir(work)  # drip serve keeps its state (.dripml/) here
    tracking_uri = args.tracking_uri or f"sqlite:///{work}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    model_ref = args.model
    if model_ref is None:
        print("training a small LightGBM on Adult ...", flush=True)
        api.train(SMALL_SPEC, tracking_uri=tracking_uri)
        model_ref = SMALL_SPEC["name"]
    model = api.load_model(model_ref, tracking_uri=tracking_uri)
    serving.write_bundle(model, work / "bundle", model_uri=model_ref, version_label=model_ref)
    record = model.example
    body = work / "record.json"
    body.write_text(json.dumps({"records": [record]}))
    adult = datasets.fetch("adult")
    joblib.dump(sklearn_pipeline(adult["train"], model.label, model.feature_names),
                work / "pipeline.joblib")
    for name, source in (("plain_bentoml", PLAIN_BENTOML), ("plain_fastapi", PLAIN_FASTAPI),
                         ("bare_asgi", BARE_ASGI)):
        (work / f"{name}.py").write_text(textwrap.dedent(source))

    for _ in range(200):
        model.predict_records([record])
    times = []
    for _ in range(2000):
        start = time.perf_counter()
        model.predict_records([record])
        times.append((time.perf_counter() - start) * 1000)
    in_process = float(np.median(times))

    # Started one at a time (ready is timed alone), then measured in interleaved rounds, one
    # server under load at a time, so that other load on the machine hits every server alike.
    running: dict[str, tuple[subprocess.Popen[bytes], str, float]] = {}
    try:
        for server in servers:
            port = free_port()
            cmd, env = command(server, port, work, model_ref)
            url = f"http://127.0.0.1:{port}/predict"
            with (work / f"{server}.log").open("wb") as log:
                started = time.monotonic()
                process = subprocess.Popen(cmd, env=env, cwd=work, stdin=subprocess.DEVNULL,
                                           stdout=log, stderr=subprocess.STDOUT)
            try:
                ready = wait_ready(process, url, body.read_bytes(), started)
                hey(url, body, concurrency=1, requests=args.warmup)
            except (RuntimeError, subprocess.CalledProcessError) as error:
                print(f"{server}: {error}; see {work / f'{server}.log'}", file=sys.stderr)
                stop(process)
                continue
            running[server] = (process, url, ready)
            print(f"  {server}: ready in {ready:.1f} s", flush=True)
        results: dict[str, list[tuple[dict[str, float], dict[str, float]]]] = {
            s: [] for s in running}
        for round_ in range(args.rounds):
            for server, (_, url, _) in running.items():
                c1 = hey(url, body, concurrency=1, requests=args.requests)
                c8 = hey(url, body, concurrency=8, requests=args.requests)
                results[server].append((c1, c8))
                print(f"  round {round_ + 1} {server}: p50 {c1['p50']:.2f} ms, "
                      f"c=1 {c1['rps']:.0f}/s, c=8 {c8['rps']:.0f}/s", flush=True)
    finally:
        for process, _, _ in running.values():
            stop(process)
    rows: list[Row] = []
    for server, runs in results.items():
        def median(key: str, at: int, runs: list = runs) -> float:
            return float(np.median([run[at][key] for run in runs]))

        rows.append(Row(server, median("p50", 0), median("p99", 0), median("rps", 0),
                        median("rps", 1), running[server][2]))

    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
          f"in-process predict_records p50 {in_process:.3f} ms; hey -n {args.requests}, "
          f"medians of {args.rounds} interleaved rounds\n")
    print("| server | c=1 p50 ms | c=1 p99 ms | c=1 req/s | c=8 req/s | ready s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r.server} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.rps_c1:.0f} | "
              f"{r.rps_c8:.0f} | {r.ready_s:.1f} |")
    by_name = {r.server: r for r in rows}
    bare, plain = by_name.get("bare"), by_name.get("bentoml")
    if bare is not None:
        print("\nagainst the bare ASGI bound (p50 gap in ms; throughput as a ratio):")
        for r in rows:
            if r is not bare:
                print(f"  {r.server}: p50 {r.p50_ms - bare.p50_ms:+.2f} ms, c=8 "
                      f"{r.rps_c8 / bare.rps_c8:.2f}x, c=1 {r.rps_c1 / bare.rps_c1:.2f}x")
    drip = by_name.get("drip")
    if plain is not None and drip is not None:
        print(f"drip ready {drip.ready_s / plain.ready_s:.2f}x the plain BentoML service's")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
