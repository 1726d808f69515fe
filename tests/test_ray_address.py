"""`--ray-address`: join a Ray cluster started separately (`ray start --head`) and leave it up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from conftest import free_port
from dripml import api

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head(tmp_path: Path):
    """A real Ray head started by `ray start`, stopped by `ray stop` afterwards."""
    ray_bin = str(Path(sys.executable).parent / "ray")
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    subprocess.run([ray_bin, "start", "--head", "--port", str(port), "--num-cpus", "2",
                    "--include-dashboard=false", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=120)
    yield f"127.0.0.1:{port}"
    subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_train_joins_a_running_cluster(ray_head: str, adult_small_csv: dict,
                                       in_tmp_dir: Path) -> None:
    assert not ray.is_initialized()
    result = api.train({
        "name": "joined", "task": "binary", "k_fold": 2,
        "data": {"train": str(adult_small_csv["train"]), "label": "income"},
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}],
        "search": {"num_trials": 2, "algorithm": "random"}}, ray_address=ray_head)
    assert [t.state for t in result.leaderboard.itertuples()] == ["COMPLETE", "COMPLETE"]
    assert not ray.is_initialized()  # disconnected from the cluster ...
    status = subprocess.run([str(Path(sys.executable).parent / "ray"), "status",
                             "--address", ray_head], capture_output=True, text=True,
                            env={**os.environ, "RAY_AUTH_MODE": "token"}, timeout=60)
    assert status.returncode == 0, status.stderr  # ... and left it running
