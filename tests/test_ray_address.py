"""`--ray-address`: join a Ray cluster started separately (`ray start --head`) and leave it up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import yaml

from conftest import free_port
from dripml.errors import ResourceError
from dripml.orchestration import ray_cluster

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


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


def test_drip_run_joins_a_running_cluster(ray_head: str, adult_small_csv: dict,
                                          in_tmp_dir: Path) -> None:
    spec = {"name": "joined", "task": "binary", "k_fold": 2,
            "data": {"train": str(adult_small_csv["train"]), "label": "income"},
            "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}],
            "search": {"num_trials": 2, "algorithm": "random"}}
    (in_tmp_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    run = subprocess.run([str(BIN / "drip"), "run", "spec.yaml", "--ray-address", ray_head],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"joined {ray_head}" in run.stderr
    assert "registered models:/joined@champion" in run.stdout
    status = subprocess.run([str(BIN / "ray"), "status", "--address", ray_head],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "RAY_AUTH_MODE": "token"})
    assert status.returncode == 0, status.stderr  # the cluster was left running


def test_joining_without_auth_mode_says_what_to_set(ray_head: str) -> None:
    # This test process imported Ray with RAY_AUTH_MODE unset, as a Python user might.
    if os.environ.get("RAY_AUTH_MODE") == "token":
        pytest.skip("RAY_AUTH_MODE=token is set in this environment")
    with pytest.raises(ResourceError, match="set RAY_AUTH_MODE=token"):
        with ray_cluster.connect(ray_head):
            pass
    assert not ray.is_initialized()
