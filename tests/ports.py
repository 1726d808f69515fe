"""Who listens where: the TCP sockets a process tree holds in LISTEN state, and whether
they are on loopback (for tests/test_loopback.py and test_pipeline.py)."""

from __future__ import annotations

import os

import psutil

from dripml.core import network

Listener = tuple[int, str, str, int]  # pid, process name, address, port


def is_loopback(address: str) -> bool:
    """A listening socket's address (``::ffff:127.0.0.1`` on a dual-stack socket counts)."""
    return network.is_loopback(address)


def _name(process: psutil.Process) -> str:
    """``gcs_server``, ``raylet``, ``ray::IDLE``, or a Python script's name."""
    try:
        words = [word.rsplit("/", 1)[-1] for word in process.cmdline()[:3] if word]
    except psutil.Error:
        return "?"
    if words and words[0].startswith("python"):
        words = [w for w in words[1:] if not w.startswith("-")][:1] or words
    return words[0] if words else "?"


def listeners(processes: dict[int, psutil.Process]) -> set[Listener]:
    """TCP sockets in LISTEN state held by ``processes``."""
    return {(c.pid, _name(processes[c.pid]), c.laddr.ip, c.laddr.port)
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.pid in processes}


def process_tree(*roots: psutil.Process, marker: str | None = None
                 ) -> dict[int, psutil.Process]:
    """``roots``, their descendants, and processes whose command line mentions ``marker``
    (Ray's session or temp folder) with theirs."""
    found = list(roots)
    if marker:
        for process in psutil.process_iter(["cmdline"]):
            if any(marker in part for part in process.info["cmdline"] or ()):
                found.append(process)
    tree: dict[int, psutil.Process] = {}
    for process in found:
        try:
            tree[process.pid] = process
            tree.update((child.pid, child) for child in process.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return tree


def assert_loopback_only(opened: set[Listener], what: str) -> None:
    table = "\n".join(f"  {ip}:{port}  pid {pid} {name}" for pid, name, ip, port
                      in sorted(opened, key=lambda row: (row[1], row[3])))
    assert opened, f"{what}: no listening socket found, so nothing was checked"
    exposed = {row for row in opened if not is_loopback(row[2])}
    assert not exposed, f"{what} listens beyond loopback:\n{table}"


def assert_all_gone(processes: dict[int, psutil.Process], what: str) -> None:
    ours = [p for pid, p in processes.items() if pid != os.getpid()]
    _, alive = psutil.wait_procs(ours, timeout=15)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"{what} left processes: {[(p.pid, _name(p)) for p in alive]}"
