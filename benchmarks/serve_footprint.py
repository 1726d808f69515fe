"""What a `drip serve` worker costs to start: ready time, worker RSS, modules it imports.

Measures, for one registered model (run from the folder holding its `.dripml` store, or with
MLFLOW_TRACKING_URI set):

- ``ready_s``: wall seconds from starting ``drip serve MODEL`` to ``GET /readyz`` answering 200,
  median of ``--repeats`` starts;
- ``worker_rss_mb``: resident set of the BentoML worker process (the one that loaded the
  model), MB = 10^6 bytes, read with psutil after the server is ready;
- ``import_s`` / ``modules``: ``python -X importtime -c "import dripml.productionize.service"``
  (the module ``bentoml serve`` imports in every worker, which loads the model; the pre-0.2
  layout's ``dripml.service`` when that is what exists), with the environment a worker gets:
  the cumulative import time of that module in seconds, and how many modules are loaded;
  plus which of ray, optuna, torch, kfp, mlflow and bentoml were among them.

Baseline: the same numbers for the previous layout, measured by running this script against a
checkout of it with the same model (see the closing note of issue 12).

    .venv/bin/python benchmarks/serve_footprint.py footprint@champion --repeats 3
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

HEAVY = ("ray", "optuna", "torch", "kfp", "mlflow", "bentoml")


def _service_module() -> str:
    if importlib.util.find_spec("dripml.productionize") is not None:
        return "dripml.productionize.service"
    return "dripml.service"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_once(drip: str, model: str) -> tuple[float, float]:
    """(ready seconds, worker RSS MB) of one `drip serve` start."""
    port = _free_port()
    started = time.perf_counter()
    server = subprocess.Popen([drip, "serve", model, "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = started + 180
        while time.perf_counter() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None:
                raise SystemExit(f"drip serve exited with {server.returncode}")
            time.sleep(0.05)
        ready = time.perf_counter() - started
        workers = [p for p in psutil.Process(server.pid).children(recursive=True)
                   if "worker-id" in " ".join(p.cmdline()) or "_bentoml_impl.worker" in
                   " ".join(p.cmdline())]
        rss = max((p.memory_info().rss for p in workers), default=0) / 1e6
        return ready, rss
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def worker_env(model_uri: str) -> dict[str, str]:
    """The model variables a `drip serve` worker gets: since 0.2 a bundle exported once by
    `drip serve` (DRIPML_MODEL_PATH), before it the registry URI (DRIPML_MODEL_URI)."""
    env = {"DRIPML_MODEL_URI": model_uri}
    if importlib.util.find_spec("dripml.productionize") is not None:
        from dripml.productionize import serving, tracking

        uri = tracking.absolute_tracking_uri(tracking.configure())
        pinned, label = serving._resolve(model_uri)
        env["DRIPML_MODEL_PATH"] = str(serving.export_for_serving(pinned, label, uri))
    return env


def import_cost(model_uri: str) -> dict[str, object]:
    """Cumulative import seconds and module count of the service module, in a fresh process
    with a worker's environment."""
    module = _service_module()
    env = {**os.environ, **worker_env(model_uri)}
    code = (f"import sys, json; import {module}; "
            f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}}))); "
            f"print(len(sys.modules))")
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env,
                          capture_output=True, text=True, check=True)
    top = 0
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if match and match.group(3) == module:
            top = int(match.group(1))
    roots, count = done.stdout.strip().splitlines()[-2:]
    loaded = set(json.loads(roots))
    return {"module": module, "import_s": round(top / 1e6, 2), "modules": int(count),
            "heavy_imported": [name for name in HEAVY if name in loaded]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="NAME@alias or NAME/VERSION")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    drip = str(Path(sys.executable).with_name("drip"))
    name, _, alias = args.model.partition("@")
    uri = f"models:/{name}@{alias}" if alias else f"models:/{args.model}"
    starts = [start_once(drip, args.model) for _ in range(args.repeats)]
    result = {"ready_s": round(statistics.median(s[0] for s in starts), 2),
              "worker_rss_mb": round(statistics.median(s[1] for s in starts), 1),
              **import_cost(uri)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
