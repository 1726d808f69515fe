"""End to end through the CLI, as a user would: `drip run` on Adult -> registered model ->
`drip serve` -> the printed curl line works -> real rows get labels -> a bad request gets 4xx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest
import yaml

import dripml
from conftest import free_port, stop_process_group

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def test_adult_spec_to_endpoint(adult_files: dict[str, Path], in_tmp_dir: Path) -> None:
    spec = yaml.safe_load((Path(__file__).parent.parent / "examples" / "adult.yaml").read_text())
    # The example spec as shipped, on a sample of the training rows so CI stays quick.
    spec["data"]["sample_rows"] = 4000
    spec["search"]["num_trials"] = 6
    spec["k_fold"]["n_splits"] = 3
    (in_tmp_dir / "adult.yaml").write_text(yaml.safe_dump(spec))
    env = {**os.environ, "COLUMNS": "200"}

    run = subprocess.run([str(BIN / "drip"), "run", "adult.yaml"], capture_output=True,
                         text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "registered models:/adult@champion -> version 1" in run.stdout
    assert "leaderboard" in run.stdout and "roc_auc" in run.stdout
    assert "trials" in run.stderr  # the progress bar

    port = free_port()
    server = subprocess.Popen([str(BIN / "drip"), "serve", "adult@champion", "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              start_new_session=True)
    try:
        curl_line = _read_curl_line(server, timeout_s=180)
        answer = json.loads(subprocess.run(curl_line, shell=True, capture_output=True,
                                           text=True, check=True, timeout=30).stdout)
        assert answer["predictions"][0] in {"<=50K", ">50K"}
        assert set(answer["probabilities"][0]) == {"<=50K", ">50K"}

        url = f"http://127.0.0.1:{port}"
        test = pd.read_parquet(adult_files["test"]).sample(50, random_state=1)
        features = test.drop(columns="income")
        records = features.astype(object).where(features.notna(), None).to_dict("records")
        response = httpx.post(f"{url}/predict", json={"records": records}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        expected = dripml.load_model("adult@champion").predict_records(records)
        assert body["predictions"] == expected.labels
        assert (pd.Series(body["predictions"]) == test["income"].to_numpy()).mean() > 0.7

        bad = dict(records[0], age="forty")
        response = httpx.post(f"{url}/predict", json={"records": [bad]}, timeout=30)
        assert response.status_code in (400, 422) and "records.0.age" in response.text
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    finally:
        children = psutil.Process(server.pid).children(recursive=True)
        stop_process_group(server, signal.SIGINT, grace_s=60)
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"server processes left behind: {alive}"


def _read_curl_line(server: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("curl "):
            return line.strip()
        if time.monotonic() > deadline:
            break
    server.kill()
    raise AssertionError(f"drip serve printed no curl line; stderr: {server.stderr.read()[-3000:]}")
