"""The Ray cluster trials run on: embedded (started here, on 127.0.0.1) or joined by address."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import ray

from dripml import settings
from dripml.core.imports import driver_import_path
from dripml.core.interrupts import keep_handlers
from dripml.core.spec import ResourcesSpec
from dripml.errors import ResourceError
from dripml.orchestration import loopback

log = logging.getLogger(__name__)


def local_gpu_count() -> int:
    """GPUs this machine shows (``nvidia-smi -L``), honouring ``CUDA_VISIBLE_DEVICES``."""
    visible = settings.cuda_visible_devices()
    if visible is not None and visible.strip() in {"", "-1"}:
        return 0
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    count = sum(1 for line in listed.stdout.splitlines() if line.startswith("GPU "))
    if visible is not None:
        count = min(count, len([v for v in visible.split(",") if v.strip()]))
    return count


def check_local_resources(resources: ResourcesSpec) -> None:
    """Before starting an embedded cluster: fail at once if the trials ask for absent GPUs.

    Raises:
        ResourceError: ``gpus_per_trial`` > 0 and this machine shows no GPU.
    """
    if resources.gpus_per_trial > 0 and local_gpu_count() == 0:
        raise ResourceError(
            f"resources.gpus_per_trial is {resources.gpus_per_trial:g} but this machine has no "
            "GPU (nvidia-smi lists none); set gpus_per_trial: 0, or pass --ray-address of a "
            "cluster with GPU workers")


def check_cluster_resources(resources: ResourcesSpec) -> None:
    """After connecting: fail if no node could ever run one fold task.

    Raises:
        ResourceError: the cluster has fewer GPUs or CPUs than one trial asks for.
    """
    total = ray.cluster_resources()
    gpus, cpus = total.get("GPU", 0.0), total.get("CPU", 0.0)
    if resources.gpus_per_trial > gpus:
        raise ResourceError(
            f"resources.gpus_per_trial is {resources.gpus_per_trial:g} but the Ray cluster has "
            f"{gpus:g} GPUs; trials would wait forever. Lower gpus_per_trial or add GPU workers")
    if resources.cpus_per_trial > cpus:
        raise ResourceError(
            f"resources.cpus_per_trial is {resources.cpus_per_trial:g} but the Ray cluster has "
            f"{cpus:g} CPUs; lower cpus_per_trial")


def _start_embedded(num_cpus: int | None) -> None:
    # Every port on 127.0.0.1 (see dripml.orchestration.loopback); no dashboard and no
    # metrics exporter: nothing for a browser or a scraper to reach.
    with loopback.embedded_node():
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": {"PYTHONPATH": driver_import_path()}},
                 # Ray runs workers at nice 15, so any busy process on a laptop starves the
                 # trials (measured: 1.5x slower searches beside one spinning process).
                 _system_config={"worker_niceness": 0, **loopback.SYSTEM_CONFIG})


def _join(address: str) -> None:
    loopback.note_joined(address)
    try:
        with loopback.joining(address):  # 127.0.0.1:PORT stays 127.0.0.1
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError) as error:
        mode = settings.ray_auth_mode() or "unset"
        raise ResourceError(
            f"could not join the Ray cluster at {address!r}: {str(error)[:300]}. Ray 2.60 "
            "clusters use token authentication by default: set RAY_AUTH_MODE=token and the "
            "cluster's token (~/.ray/auth_token or RAY_AUTH_TOKEN) before Python starts "
            f"(RAY_AUTH_MODE is {mode}; `drip run` sets it for you)") from None


@contextmanager
def connect(address: str | None = None, *, resources: ResourcesSpec | None = None,
            num_cpus: int | None = None) -> Iterator[dict[str, float]]:
    """Connect to Ray for the duration of the block; yield the cluster's total resources.

    Args:
        address: ``None`` starts an embedded single-node cluster (every port on 127.0.0.1,
            no dashboard, token authentication on) and stops it on exit; ``"auto"``,
            ``"ray://host:10001"`` or ``"host:6379"`` joins one (its workers need dripml
            installed: the trainer image), logs a line saying its ports are as it was
            started, and leaves it running.
        resources: checked against the cluster before the block runs.
        num_cpus: CPUs of an embedded cluster (default: all of this machine's).

    Raises:
        ResourceError: see :func:`check_local_resources` and :func:`check_cluster_resources`.
    """
    if ray.is_initialized():  # the caller manages Ray (a notebook, a test fixture)
        if resources is not None:
            check_cluster_resources(resources)
        yield ray.cluster_resources()
        return
    if address is None and resources is not None:
        check_local_resources(resources)
    with keep_handlers():  # ray.init's SIGTERM handlers abort a driver that cleans up
        try:
            if address is None:
                _start_embedded(num_cpus)
            else:
                _join(address)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while starting: leave no process
            ray.shutdown()
            raise
    try:
        if resources is not None:
            check_cluster_resources(resources)
        yield ray.cluster_resources()
    finally:
        ray.shutdown()
