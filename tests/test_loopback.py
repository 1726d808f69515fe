"""Loopback only: every port of the Ray that dripml starts listens on 127.0.0.1 (or ::1), and
no Ray process outlives it. The local-cluster half (`local_ray.create`) is asserted in
`test_pipeline.py::test_local_cluster_lifecycle_is_idempotent`, which starts one anyway."""

from __future__ import annotations

import logging
import os

import psutil
import pytest
import ray

from dripml.orchestration import loopback, ray_cluster
from ports import assert_all_gone, assert_loopback_only, is_loopback, listeners, process_tree


@pytest.mark.slow
def test_embedded_ray_listens_on_loopback_only() -> None:
    assert not ray.is_initialized(), "an earlier test left Ray running"
    me = psutil.Process()
    earlier = process_tree(me)  # other fixtures' servers (a registry...) are not Ray's
    before = listeners(earlier)
    ray_processes: dict[int, psutil.Process] = {}
    try:
        with ray_cluster.connect(num_cpus=1):  # as dripml.train starts it
            assert ray.get(ray.remote(lambda: os.getpid()).remote()) != os.getpid()  # a worker
            ray_processes = {pid: p for pid, p in process_tree(
                me, marker=ray._private.worker._global_node.get_session_dir_path()).items()
                if pid not in earlier}
            opened = listeners(ray_processes) - before
            kinds = {name for _, name, _, _ in opened}
            assert {"gcs_server", "raylet"} <= kinds, kinds
            assert_loopback_only(opened, "the embedded Ray")
            gcs = ray.get_runtime_context().gcs_address  # what a joining driver is told
            assert is_loopback(gcs.rsplit(":", 1)[0]), gcs
    finally:
        ray.shutdown()
        assert_all_gone(ray_processes, "the embedded Ray")


def test_loopback_addresses_are_told_apart() -> None:
    for address in ("127.0.0.1:6379", "localhost:6379", "[::1]:6379", "ray://127.0.0.1:10001"):
        assert loopback.is_loopback_address(address), address
    for address in ("auto", "10.0.0.5:6379", "ray://head-svc:10001", "0.0.0.0:6379"):
        assert not loopback.is_loopback_address(address), address


def test_one_predicate_decides_loopback_for_hosts_and_addresses() -> None:
    """core.network.is_loopback is what the endpoint's warning, the web page's token rule and
    the Ray address check share."""
    from dripml.core.network import is_loopback as host_is_loopback
    from dripml.productionize import guard
    from dripml.ui import settings as ui_settings

    assert guard.is_loopback is host_is_loopback is ui_settings.is_loopback
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST", "::1", "[::1]",
                 "::ffff:127.0.0.1", "::1%lo"):
        assert host_is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.5", "example.com", "", "[::]"):
        assert not host_is_loopback(host), host


def test_joining_a_cluster_beyond_loopback_says_so_in_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger=loopback.__name__):
        loopback.note_joined("ray://head-svc:10001")
        loopback.note_joined("127.0.0.1:6379")
    [remote, local] = caplog.records
    assert remote.levelno == logging.WARNING and "head-svc:10001" in remote.getMessage()
    assert "127.0.0.1" in remote.getMessage() and "\n" not in remote.getMessage()
    assert local.levelno == logging.INFO
