"""An in-process emulator of the Kubeflow Pipelines v2beta1 API, enough for ``kfp.Client``:
create experiments and runs (the pipeline spec parsed strictly, as the server does: 400 when
that fails), read a run, terminate it. A test moves a run's state by setting
``FakeKfpApi.runs[run_id]["state"]`` (and ``"tasks"``: display name -> state)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

RUNS = "/apis/v2beta1/runs"


class FakeKfpApi(BaseHTTPRequestHandler):
    """The v2beta1 endpoints kfp.Client uses to start, read and terminate a run."""

    received: list[tuple[str, str, dict[str, Any]]] = []
    runs: dict[str, dict[str, Any]] = {}
    next_id = 42
    lock = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        cls.received, cls.runs, cls.next_id = [], {}, 42

    def _reply(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.received.append(("GET", self.path, {}))
        run_id = self.path.removeprefix(RUNS + "/").split("?")[0]
        if self.path.startswith(RUNS + "/") and run_id in self.runs:
            with self.lock:
                run = self.runs[run_id]
                if run["state"] == "CANCELING":  # the server stops the pods, then says so
                    run["state"] = "CANCELED"
                body = {"run_id": run_id, "display_name": run["display_name"],
                        "experiment_id": run["experiment_id"], "state": run["state"],
                        "run_details": {"task_details": [
                            {"display_name": name, "state": state}
                            for name, state in run.get("tasks", {}).items()]}}
                if run.get("error"):
                    body["error"] = {"message": run["error"]}
            self._reply(200, body)
        elif self.path.startswith(RUNS + "/"):
            self._reply(404, {"error": f"run {run_id} not found"})
        else:
            self._reply(200, {})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.received.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            self._reply(200, {"experiment_id": "exp-1", **body})
        elif self.path == RUNS:
            try:
                json_format.ParseDict(body["pipeline_spec"]["pipeline_spec"],
                                      pipeline_spec_pb2.PipelineSpec())
            except (json_format.ParseError, KeyError) as exc:
                self._reply(400, {"error": str(exc)})
                return
            with self.lock:
                run_id = f"run-{FakeKfpApi.next_id}"
                FakeKfpApi.next_id += 1
                self.runs[run_id] = {"state": "PENDING", "body": body,
                                     "display_name": body.get("display_name", ""),
                                     "experiment_id": body.get("experiment_id", "")}
            self._reply(200, {"run_id": run_id, **body, "state": "PENDING"})
        elif self.path.startswith(RUNS + "/") and self.path.endswith(":terminate"):
            run_id = self.path.removeprefix(RUNS + "/").removesuffix(":terminate")
            if run_id not in self.runs:
                self._reply(404, {"error": f"run {run_id} not found"})
                return
            with self.lock:
                self.runs[run_id]["state"] = "CANCELING"
            self._reply(200, {})
        else:
            self._reply(404, {"error": "not found"})

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def kfp_api() -> Iterator[str]:
    """The emulator on a free port of 127.0.0.1 (its URL), stopped afterwards."""
    FakeKfpApi.reset()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
