"""Cluster mode: the compiled Kubeflow pipeline, its steps through the cluster backends,
`drip pipeline submit` against a KFP API on 127.0.0.1, and the same pipeline run end to end
by KFP's local runner on a local Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

import kfp_emulator
import ports
from dripml import kfp as pipeline
from dripml.errors import ClusterError, SpecError
from dripml.orchestration import backends, local_ray
from dripml.orchestration.backend import ClusterBackend, JobClient
from dripml.orchestration.kuberay import objects
from kfp_emulator import FakeKfpApi

BIN = Path(sys.executable).parent
BASE = {"name": "adult", "task": "binary",
        "data": {"train": "dataset://adult/train", "test": "dataset://adult/test",
                 "label": "income"},
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}],
        "search": {"num_trials": 2, "algorithm": "random"}}
GPU = {**BASE, "resources": {"cpus_per_trial": 2, "gpus_per_trial": 1}}


def compiled(spec: dict[str, Any], tmp_path: Path, **options: Any
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pipeline spec, platform spec) of the compiled YAML, both parsed strictly into KFP's
    protobuf messages first, as the KFP API server does."""
    path = pipeline.compile(spec, tmp_path / "pipeline.yaml", **options)
    documents = list(yaml.safe_load_all(path.read_text()))
    assert len(documents) == 2
    json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(documents[1], pipeline_spec_pb2.PlatformSpec())
    return documents[0], documents[1]["platforms"]["kubernetes"]


def manifest_in(doc: dict[str, Any]) -> dict[str, Any]:
    task = doc["root"]["dag"]["tasks"]["exit-handler-1"]
    inner = doc["components"][task["componentRef"]["name"]]["dag"]["tasks"]
    return inner["create-cluster"]["inputs"]["parameters"]["manifest"]["runtimeValue"][
        "constant"]


def test_gpu_pipeline_carries_gpu_resources_tolerations_selector_and_image(tmp_path) -> None:
    doc, _ = compiled(GPU, tmp_path)
    manifest = manifest_in(doc)
    group = manifest["spec"]["workerGroupSpecs"][0]
    pod = group["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"][objects.GPU_RESOURCE] == "1"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                   "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["containers"][0]["image"] == objects.TRAINER_IMAGE_GPU
    assert manifest["metadata"]["namespace"] == "dripml"


def test_cpu_pipeline_has_no_gpu_scheduling(tmp_path) -> None:
    doc, _ = compiled(BASE, tmp_path)
    text = json.dumps(manifest_in(doc))
    assert "nvidia.com/gpu" not in text


def test_steps_run_the_trainer_image_hardened_and_uncached(tmp_path) -> None:
    image = "registry.example/dripml/trainer@sha256:" + "b" * 64
    doc, kube = compiled(BASE, tmp_path, image=image)
    executors = doc["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-validate-spec", "exec-create-cluster",
                              "exec-wait-for-cluster", "exec-run-search",
                              "exec-register-model", "exec-delete-cluster"}
    for name, executor in executors.items():
        assert executor["container"]["image"] == image, name
        # the trainer image holds dripml: nothing is pip-installed when a step starts
        assert "pip install" not in " ".join(executor["container"]["command"])
        platform = kube["deploymentSpec"]["executors"][name]
        assert platform["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001",
                                               "runAsNonRoot": True}
        assert int(platform["activeDeadlineSeconds"]) > 0
    search = kube["deploymentSpec"]["executors"]["exec-run-search"]
    [secret] = search["secretAsEnv"]
    assert secret["secretName"] == "dripml-ray-auth"
    assert secret["keyToEnv"] == [{"secretKey": "auth_token", "envVar": "RAY_AUTH_TOKEN"}]
    tasks = doc["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    for task in [*tasks.values(), doc["root"]["dag"]["tasks"]["delete-cluster"]]:
        assert task["cachingOptions"] == {} or task["cachingOptions"].get("enableCache") in (
            None, False)


def test_the_exit_handler_deletes_the_cluster_on_every_outcome(tmp_path) -> None:
    doc, _ = compiled(BASE, tmp_path)
    root = doc["root"]["dag"]["tasks"]
    cleanup = root["delete-cluster"]
    assert cleanup["dependentTasks"] == ["exit-handler-1"]
    assert cleanup["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    run_id = cleanup["inputs"]["parameters"]["run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"
    assert cleanup["retryPolicy"]["maxRetryCount"] == 3
    inner = doc["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert sorted(inner["register-model"]["dependentTasks"]) == ["run-search", "validate-spec"]
    assert sorted(inner["run-search"]["dependentTasks"]) == ["create-cluster",
                                                             "validate-spec",
                                                             "wait-for-cluster"]


def test_a_local_data_path_is_rejected_for_a_cluster_naming_the_field(tmp_path) -> None:
    spec = {**BASE, "data": {"train": "data/train.csv", "label": "income"}}
    with pytest.raises(SpecError, match=r"data.train: 'data/train.csv' is a local path"):
        pipeline.compile(spec, tmp_path / "p.yaml")
    assert not (tmp_path / "p.yaml").exists()


def test_compile_cli_names_the_bad_field(tmp_path) -> None:
    bad = {**BASE, "cluster": {"workers": {"replicas": 0}}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(bad))
    result = subprocess.run([str(BIN / "drip"), "pipeline", "compile", "spec.yaml", "-o",
                             "p.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "cluster.workers.replicas" in result.stderr
    assert not (tmp_path / "p.yaml").exists()


def test_compile_cli_writes_yaml(tmp_path) -> None:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(GPU))
    result = subprocess.run([str(BIN / "drip"), "pipeline", "compile", "spec.yaml", "-o",
                             "out/p.yaml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "nvidia.com/gpu" in (tmp_path / "out" / "p.yaml").read_text()


# ---------------------------------------------------------------- the cluster backends


def test_an_unknown_backend_names_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"unknown cluster backend 'nomad'; valid backends: "
                                        r"\['kuberay', 'local'\]"):
        backends.get("nomad")
    with pytest.raises(SpecError, match="valid backends"):
        pipeline.build(BASE, backend="nomad")


def test_every_backend_implements_the_interface() -> None:
    assert backends.names() == ["kuberay", "local"]
    for name in backends.names():
        backend = backends.get(name)
        assert isinstance(backend, ClusterBackend), name
        assert backend.name == name


def test_the_local_backend_makes_data_paths_absolute(in_tmp_dir: Path) -> None:
    spec = {**BASE, "data": {"train": "data/train.csv", "test": "dataset://adult/test",
                             "label": "income"}}
    built = pipeline.build(spec, backend="local")
    assert built.spec.data.train == str(in_tmp_dir / "data" / "train.csv")
    assert built.spec.data.test == "dataset://adult/test"
    with pytest.raises(SpecError, match="data.train: 'data/train.csv' is a local path"):
        pipeline.build(spec, backend="kuberay")


class RecordingBackend:
    """A backend that records the calls the steps make on it."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def check(self, spec: Any) -> Any:
        self.calls.append(("check", spec.name))
        return spec

    def create(self, spec: Any, name: str, *, run_id: str, manifest: Any) -> str:
        self.calls.append(("create", (name, run_id, manifest)))
        return name

    def wait_ready(self, spec: Any, name: str) -> str:
        self.calls.append(("wait_ready", name))
        return "http://recording:8265"

    def job_client(self, spec: Any, name: str) -> JobClient:
        self.calls.append(("job_client", name))
        return JobClient(python="/opt/python", env={"DRIPML_TEST_TOKEN_PATH": "/t"})

    def delete_run(self, spec: Any, run_id: str) -> list[str]:
        self.calls.append(("delete_run", run_id))
        return ["a", "b"]


def test_the_steps_go_through_the_backend_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's verbs (what its components call) reach a backend only through the
    interface, so a new backend needs no change to them."""
    from dripml import api
    from dripml.orchestration import ray_jobs
    from dripml.productionize import tracking

    backend = RecordingBackend()
    assert isinstance(backend, ClusterBackend)
    monkeypatch.setitem(backends.BACKENDS, backend.name, lambda: backend)
    submitted: dict[str, Any] = {}

    def submit_search(address: str, spec: Any, **options: Any) -> None:
        submitted.update(options, address=address, token=os.environ["DRIPML_TEST_TOKEN_PATH"])

    monkeypatch.setattr(ray_jobs, "submit_search", submit_search)
    monkeypatch.setattr(tracking, "configure", lambda uri=None: uri)
    monkeypatch.setattr(tracking, "find_search_run", lambda experiment, tags: "mlflow-run-1")
    # search_step sets the backend's client environment (and RAY_AUTH_MODE): undone after
    monkeypatch.setenv("DRIPML_TEST_TOKEN_PATH", "before")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    spec_yaml = api.validate_for_cluster(yaml.safe_dump(BASE), "recording")
    name = api.create_cluster(spec_yaml, "recording", "run-1", {"kind": "RayCluster"})
    assert name == objects.cluster_name("adult", "run-1")
    address = api.wait_for_cluster(spec_yaml, "recording", name)
    run = api.search_on_cluster(spec_yaml, "recording", name, address, "http://mlflow:5000",
                                "run-1")
    assert run == "mlflow-run-1"
    assert submitted["address"] == "http://recording:8265"
    assert submitted["python"] == "/opt/python" and submitted["token"] == "/t"
    assert submitted["tags"] == {pipeline.RUN_TAG: "run-1"} and not submitted["set_alias"]
    assert api.delete_clusters(spec_yaml, "recording", "run-1") == "a,b"
    assert [call for call, _ in backend.calls] == [
        "check", "create", "wait_ready", "job_client", "delete_run"]
    assert backend.calls[1][1] == (name, "run-1", {"kind": "RayCluster"})


# ---------------------------------------------------------------- submit, to a KFP API


@pytest.fixture
def kfp_api() -> Iterator[str]:
    with kfp_emulator.kfp_api() as url:
        yield url


def test_submit_creates_a_run_through_kfp_client(kfp_api: str, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(GPU))
    result = subprocess.run([str(BIN / "drip"), "pipeline", "submit", "spec.yaml", "--host",
                             kfp_api, "--experiment", "census"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "submitted run run-42 in experiment 'census'" in result.stdout
    runs = [body for method, path, body in FakeKfpApi.received if path == "/apis/v2beta1/runs"]
    assert len(runs) == 1
    assert runs[0]["service_account"] == "dripml-pipeline"
    assert runs[0]["experiment_id"] == "exp-1"
    assert runs[0]["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "dripml-drip"
    assert "nvidia.com/gpu" in json.dumps(runs[0]["pipeline_spec"])


def test_submit_to_an_unreachable_host_is_a_clear_error(tmp_path: Path) -> None:
    from conftest import free_port

    with pytest.raises(ClusterError, match="Kubeflow Pipelines at http://127.0.0.1"):
        pipeline.submit(BASE, host=f"http://127.0.0.1:{free_port()}")


# ---------------------------------------------------------------- kfp-local, end to end


def ray_processes(marker: str = "dripml-ray-") -> list[str]:
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if marker in line]


@pytest.mark.slow
def test_kfp_local_runs_the_pipeline_end_to_end(adult_small_csv: dict, in_tmp_dir: Path
                                                ) -> None:
    spec = {**BASE, "name": "adult-kfp", "k_fold": 2,
            "data": {"train": str(adult_small_csv["train"]), "label": "income"},
            "refine": {"top_k": 1}}
    (in_tmp_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = ray_processes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run([str(BIN / "drip"), "run", "spec.yaml", "--orchestrator",
                             "kfp-local"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "registered models:/adult-kfp@champion -> models:/adult-kfp/1" in result.stdout
    logs = result.stdout + result.stderr
    for task in ("validate-spec", "create-cluster", "wait-for-cluster", "run-search",
                 "register-model", "delete-cluster"):
        assert f"Task \x1b[96m'{task}'\x1b[0m finished with status \x1b[92mSUCCESS" in logs, task
    # the alias was moved by the register step, which tagged the version with the run
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{in_tmp_dir / '.dripml' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=store, registry_uri=store)
    version = client.get_model_version_by_alias("adult-kfp", "champion")
    assert version.tags[pipeline.RUN_TAG]
    run = client.get_run(version.run_id)
    assert run.data.tags[pipeline.RUN_TAG] == version.tags[pipeline.RUN_TAG]
    # no cluster outlives the run
    assert local_ray.names() == []
    assert ray_processes() == before


@pytest.mark.slow
def test_kfp_local_deletes_the_cluster_when_the_search_fails(adult_small_csv: dict,
                                                             in_tmp_dir: Path) -> None:
    spec = {**BASE, "name": "adult-kfp-bad", "k_fold": 2,
            "data": {"train": str(adult_small_csv["train"]), "label": "no_such_column"}}
    (in_tmp_dir / "spec.yaml").write_text(yaml.safe_dump(spec))
    before = ray_processes()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    result = subprocess.run([str(BIN / "drip"), "run", "spec.yaml", "--orchestrator",
                             "kfp-local"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode != 0
    logs = result.stdout + result.stderr
    assert "no_such_column" in logs
    assert "Inner task failed: \x1b[96m'run-search'" in logs.replace("\n", " ") or \
        "run-search" in result.stderr
    assert "Task \x1b[96m'delete-cluster'\x1b[0m finished with status \x1b[92mSUCCESS" in logs
    assert local_ray.names() == []
    assert ray_processes() == before


@pytest.mark.slow
def test_local_cluster_lifecycle_is_idempotent(in_tmp_dir: Path) -> None:
    first = local_ray.create("lc-test", run_id="r-1", num_cpus=1)
    try:
        assert local_ray.create("lc-test", run_id="r-1").pid == first.pid  # a retry adopts
        ready = local_ray.wait_ready("lc-test", timeout_s=120)
        assert ready.dashboard_url.startswith("http://127.0.0.1:")
        head = ports.process_tree(psutil.Process(ready.pid), marker=ready.temp_dir)
        ports.assert_loopback_only(ports.listeners(head), "the local Ray head")
        assert oct(Path(ready.token_file).stat().st_mode & 0o777) == "0o600"
    finally:
        assert local_ray.delete_run("r-1") == ["lc-test"]
    assert local_ray.delete_run("r-1") == []
    assert not Path(first.temp_dir).exists()
    assert ray_processes(first.temp_dir) == []
