"""A minimal HTTP endpoint around a model ``automl_runner.py --save`` kept, for
``drip_vs_automl.py``.

Run with the Python of the tool's own virtualenv (``.bench-envs/<tool>``; the baseline with
this repository's): it imports only the standard library, pandas and the tool. The server is
the standard library's ``http.server.ThreadingHTTPServer`` with HTTP/1.1 keep-alive and
``TCP_NODELAY``, no framework, no validation, no logging: a lower bound on what serving the
model behind any real framework costs, so the comparison with ``drip serve`` is conservative
in the competitor's favour. ``POST /predict`` takes ``{"records": [{column: value, ...}, ...]}``
(what ``drip serve`` takes), builds a DataFrame with the test split's column dtypes (so the
model sees what it was fit on) and answers ``{"predictions": [...]}``: the positive class's
probability for binary (``predict_proba``), the prediction for regression. ``GET /readyz``
answers 200 once the model is loaded (AutoGluon's predictor persisted in memory first, its
advice for online inference). Bad JSON or records get a 400.

By hand::

    .bench-envs/flaml/bin/python benchmarks/automl_server.py --model-dir DIR \\
        --test TEST.parquet --port 8123
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

MODEL_META = "model.json"  # as automl_runner.MODEL_META (not imported: that pulls sklearn)

Predict = Callable[[pd.DataFrame], list[float]]


def load_predict(folder: Path) -> tuple[Predict, dict[str, Any]]:
    """The saved model as a function of a DataFrame, and its ``model.json``."""
    meta = json.loads((folder / MODEL_META).read_text())
    path = folder / meta["file"]
    positive, binary = meta["positive"], meta["task"] == "binary"
    if meta["tool"] == "autogluon":
        from autogluon.tabular import TabularPredictor

        predictor = TabularPredictor.load(str(path), verbosity=0)
        predictor.persist()

        def predict(frame: pd.DataFrame) -> list[float]:
            if binary:
                return predictor.predict_proba(frame)[positive].tolist()
            return predictor.predict(frame).tolist()

        return predict, meta
    with open(path, "rb") as source:
        model = pickle.load(source)  # our own file, written by automl_runner.py
    if binary:
        column = list(model.classes_).index(positive)

        def predict(frame: pd.DataFrame) -> list[float]:
            return model.predict_proba(frame)[:, column].tolist()
    else:
        def predict(frame: pd.DataFrame) -> list[float]:
            return [float(v) for v in model.predict(frame)]
    return predict, meta


def handler(predict: Predict, dtypes: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    columns = list(dtypes)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as hey and drip serve use it
        # Headers and body go out as two writes: with Nagle's algorithm the body would wait
        # for the client's delayed ACK of the headers (40 ms on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """No access log (drip serve has none by default)."""

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/readyz":
                self._answer(200, {})
            else:
                self._answer(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path != "/predict":
                self._answer(404, {"error": f"no route {self.path}"})
                return
            try:
                records = json.loads(body)["records"]
                frame = pd.DataFrame.from_records(records, columns=columns).astype(dtypes)
            except (ValueError, KeyError, TypeError) as error:
                self._answer(400, {"error": f"bad request: {error}"})
                return
            self._answer(200, {"predictions": predict(frame)})

    return Handler


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True,
                        help="a folder automl_runner.py --save wrote")
    parser.add_argument("--test", required=True,
                        help="the test split (Parquet): its columns' dtypes type the records")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    predict, meta = load_predict(args.model_dir)
    template = pd.read_parquet(args.test).drop(columns=[meta["label"]])
    dtypes = template.dtypes.to_dict()
    server = ThreadingHTTPServer((args.host, args.port), handler(predict, dtypes))
    print(f"serving {meta['tool']} from {args.model_dir} on http://{args.host}:{args.port} "
          f"(pid {os.getpid()})", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
