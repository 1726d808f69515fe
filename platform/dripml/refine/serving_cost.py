"""Serving-path costs: each Refine candidate measured through the real ``POST /predict`` server.

In process, ``predict_records`` on one record costs a fraction of a millisecond; a request to
the endpoint pays the serving stack on top (HTTP, validation, JSON), often several times the
model. A latency budget is a promise about the endpoint, so with ``refine.serving_path``
(the default) every measured candidate is also served, one after another, exactly as
``drip serve`` runs it (:func:`dripml.productionize.serving.serve` of a model bundle written
with :func:`~dripml.productionize.serving.write_bundle` to a temporary folder: the same
``bentoml serve`` command, service code, environment and one-thread pools), bound to
127.0.0.1 on a free port, and loaded for a bounded time:

- **deployment limits**, locally: the server's processes and threads are pinned to
  ``refine.serving_cpus`` CPUs with ``os.sched_setaffinity`` (CPU *affinity*, not a cgroup
  CPU quota: the server may use those CPUs fully, and no other process is kept off them),
  and the load generator to the other CPUs when there are any. ``refine.serving_memory_mib``
  is an **RSS watch**, not ``RLIMIT_AS``: the resident set of the server's processes
  (summed) is sampled every 100 ms while it is loaded; over the limit, the server is
  stopped and the candidate gets infinite latencies and ``serving_error`` (a Python
  server's virtual address space, with its thread stacks and allocator arenas, is far above
  what it uses, so an address-space limit would fail allocations unrelated to the model).
- **load**: after 20 untimed requests, single-record requests at concurrency 1 for half of
  ``refine.serving_seconds`` over one keep-alive connection (``http.client``, each timed
  with ``perf_counter_ns``: p50 and p99, the endpoint's ``latency_p50_ms`` /
  ``latency_p99_ms``), then at ``refine.concurrency`` for the other half (requests per
  second and that p99). With ``hey`` on the ``PATH`` it generates the concurrent load (a Go
  client costs the shared CPUs far less than Python); otherwise httpx, one thread per
  connection.
- **cost per million requests**: ``instance_price_per_hour / (3600 * requests_per_s) * 1e6``
  at the concurrent throughput.

The in-process figures stay beside them (``inproc_latency_p50_ms``, ``inproc_latency_p99_ms``).
Servers run in parallel only when the CPUs allow one pinned slot per server (its
``serving_cpus`` plus one for its client): on 2 cores, one at a time. Every server is
stopped by its process id before the next starts. Under a time budget a candidate is served
only while the server start (timed on the first) plus the load still fit; the rest keep
their in-process figures and the cut is reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from dripml.core.costs import MB, Record, ServingCost, cost_per_million
from dripml.core.network import free_loopback_port
from dripml.core.spec import RefineSpec

log = logging.getLogger(__name__)

WARMUP_REQUESTS = 20
RSS_SAMPLE_S = 0.1
READY_TIMEOUT_S = 120.0
MiB = 1024 * 1024


@dataclass(frozen=True)
class EndpointCost:
    """One candidate measured through its own server.

    Attributes:
        latency_p50_ms, latency_p99_ms: single-record requests at concurrency 1, ms.
        requests_per_s: completed requests per second at ``concurrency``.
        latency_p99_concurrent_ms: p99 at ``concurrency``, ms.
        concurrency: connections of the concurrent phase.
        requests: requests timed at concurrency 1.
        rss_mb: the server's peak resident set (its processes summed), MB; NaN unknown.
        ready_s: seconds from start to ready.
        error: why the figures are missing or infinite (over the memory watch, a failed
            start); None when measured.
    """

    latency_p50_ms: float
    latency_p99_ms: float
    requests_per_s: float
    latency_p99_concurrent_ms: float
    concurrency: int
    requests: int
    rss_mb: float = math.nan
    ready_s: float = math.nan
    error: str | None = None


def cpu_slots(serving_cpus: int, available: Sequence[int] | None = None
              ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """How many servers can be measured at once: (server CPUs, client CPUs) per slot.

    A slot takes ``serving_cpus`` CPUs for the server and one for its load client; with
    fewer CPUs than that there is one slot, the server on ``serving_cpus`` of them (all when
    fewer) and the client on the rest (empty: unpinned).

    Example: CPUs (0, 1) and one serving CPU -> ``[((0,), (1,))]``; CPUs 0..7 and three ->
    ``[((0, 1, 2), (3,)), ((4, 5, 6), (7,))]``.
    """
    cpus = sorted(os.sched_getaffinity(0) if available is None else available)
    size = serving_cpus + 1
    if len(cpus) < 2 * size:
        server = tuple(cpus[:serving_cpus])
        return [(server, tuple(c for c in cpus if c not in server))]
    return [(tuple(cpus[i:i + serving_cpus]), (cpus[i + serving_cpus],))
            for i in range(0, len(cpus) - size + 1, size)]


def pin(pids: Sequence[int], cpus: Sequence[int]) -> None:
    """CPU affinity (not a quota) of every thread of ``pids`` to ``cpus``; threads and
    processes they start later inherit it. Processes that exited meanwhile are skipped."""
    for pid in pids:
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), set(cpus))


def _rss_mb(pids: Sequence[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf(
                "SC_PAGE_SIZE")
    return total / MB


class _RssWatch:
    """Samples the server's summed RSS every :data:`RSS_SAMPLE_S`; over ``limit_mib`` it
    calls ``on_over`` once (which stops the server)."""

    def __init__(self, pids: Callable[[], list[int]], limit_mib: float | None,
                 on_over: Callable[[], None]) -> None:
        self.peak_mb = 0.0
        self.over = False
        self._pids, self._limit, self._on_over = pids, limit_mib, on_over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _rss_mb(self._pids())
            self.peak_mb = max(self.peak_mb, rss)
            if self._limit is not None and rss * MB / MiB > self._limit and not self.over:
                self.over = True
                self._on_over()
            self._stop.wait(RSS_SAMPLE_S)

    def __enter__(self) -> _RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _percentiles(ms: np.ndarray) -> tuple[float, float]:
    if not len(ms):
        return math.inf, math.inf
    p50, p99 = np.percentile(ms, [50, 99])
    return float(p50), float(p99)


def _hey(url: str, body: bytes, seconds: float, concurrency: int,
         cpus: Sequence[int]) -> tuple[np.ndarray, float]:
    """(latencies ms, requests/s) of ``hey`` posting ``body`` for ``seconds``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as payload:
        payload.write(body)
        payload.flush()
        command = ["hey", "-z", f"{max(0.2, seconds):.2f}s", "-c", str(concurrency),
                   "-m", "POST", "-T", "application/json", "-D", payload.name,
                   "-o", "csv", url]
        started = time.monotonic()
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + 60, check=False,
            preexec_fn=(lambda: os.sched_setaffinity(0, set(cpus))) if cpus else None)
        wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"hey failed: {done.stderr[-500:]}")
    rows = [line.split(",") for line in done.stdout.splitlines()[1:] if line.strip()]
    ok = [float(r[0]) * 1000 for r in rows if len(r) > 6 and r[6].strip() == "200"]
    if len(ok) < len(rows):
        raise RuntimeError(f"{len(rows) - len(ok)} of {len(rows)} requests failed")
    span = max((float(r[7]) + float(r[0]) for r in rows), default=wall) if rows else wall
    return np.asarray(ok), len(ok) / max(span, 1e-9)


def _sequential(url: str, body: bytes, seconds: float,
                cpus: Sequence[int]) -> tuple[np.ndarray, float]:
    """(latencies ms, requests/s) of one keep-alive ``http.client`` connection posting
    ``body`` back to back for ``seconds``, timed with ``perf_counter_ns`` (``hey`` reports
    0.1 ms steps, coarse beside a 1 ms endpoint), from a thread pinned to ``cpus``."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    out: list[np.ndarray] = []

    def run() -> None:
        if cpus:
            os.sched_setaffinity(0, set(cpus))  # this thread only
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        headers = {"Content-Type": "application/json"}
        times = []
        clock = time.perf_counter_ns
        until = time.monotonic() + seconds
        try:
            while time.monotonic() < until:
                started = clock()
                connection.request("POST", parts.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                times.append(clock() - started)
                if response.status != 200:
                    raise RuntimeError(f"POST {parts.path} answered {response.status}")
        finally:
            connection.close()
        out.append(np.asarray(times) / 1e6)

    started = time.monotonic()
    failure: list[BaseException] = []

    def guarded() -> None:
        try:
            run()
        except BaseException as error:  # reported in the caller's thread
            failure.append(error)

    thread = threading.Thread(target=guarded, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise RuntimeError(str(failure[0])) from failure[0]
    return out[0], len(out[0]) / (time.monotonic() - started)


def _httpx(url: str, body: bytes, seconds: float, concurrency: int) -> tuple[np.ndarray, float]:
    """(latencies ms, requests/s) of ``concurrency`` httpx clients for ``seconds``."""
    until = time.monotonic() + seconds
    headers = {"content-type": "application/json"}

    def client() -> list[float]:
        times = []
        with httpx.Client(timeout=30, trust_env=False) as session:
            while time.monotonic() < until:
                started = time.perf_counter()
                response = session.post(url, content=body, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
        return times

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        times = [t for part in pool.map(lambda _: client(), range(concurrency)) for t in part]
    return np.asarray(times), len(times) / (time.monotonic() - started)


def load(url: str, record: Record, *, seconds: float, concurrency: int,
         client_cpus: Sequence[int] = ()) -> tuple[float, float, int, float, float]:
    """Load ``url`` (``/predict``) with one record: (p50 ms, p99 ms, requests at c=1,
    requests/s at ``concurrency``, p99 ms at ``concurrency``); half of ``seconds`` each."""
    body = json.dumps({"records": [record]}).encode()
    with httpx.Client(timeout=30, trust_env=False) as warm:
        for _ in range(WARMUP_REQUESTS):
            warm.post(url, content=body, headers={"content-type": "application/json"}
                      ).raise_for_status()
    half = seconds / 2

    def run(c: int) -> tuple[np.ndarray, float]:
        if shutil.which("hey"):
            return _hey(url, body, half, c, client_cpus)
        return _httpx(url, body, half, c)

    single, _ = _sequential(url, body, half, client_cpus)
    concurrent, rps = run(concurrency)
    p50, p99 = _percentiles(single)
    return p50, p99, len(single), rps, _percentiles(concurrent)[1]


def measure_endpoint(model: Any, record: Record, refine: RefineSpec, *,
                     seconds: float | None = None,
                     slot: tuple[Sequence[int], Sequence[int]] | None = None,
                     tracking_uri: str | None = None) -> EndpointCost:
    """Serve ``model`` (a :class:`~dripml.core.model.TrainedModel`) as ``drip serve`` does,
    pinned to ``slot``'s server CPUs, watch its RSS, load it with ``record`` for ``seconds``
    (default ``refine.serving_seconds``), stop it by its process id.

    Returns:
        The endpoint's figures; on a failed start, a failed load or the memory watch,
        infinite latencies, zero throughput and ``error`` saying why (never raises for them).
    """
    from dripml.productionize import serving

    seconds = refine.serving_seconds if seconds is None else seconds
    server_cpus, client_cpus = slot or cpu_slots(refine.serving_cpus)[0]
    folder = Path(tempfile.mkdtemp(prefix="dripml-serving-cost-"))
    handle = None
    started = time.monotonic()
    try:
        bundle = serving.write_bundle(model, folder / "bundle", model_uri="refine:candidate",
                                      version_label="refine/candidate")
        handle = serving.serve(str(bundle.path), port=free_loopback_port(), allow_local=True,
                               tracking_uri=tracking_uri, timeout_s=READY_TIMEOUT_S,
                               log_path=folder / "server.log")
        ready_s = time.monotonic() - started
        pin(handle.pids(), server_cpus)
        with _RssWatch(handle.pids, refine.serving_memory_mib, handle.stop) as watch:
            try:
                p50, p99, count, rps, p99_c = load(
                    f"{handle.url}/predict", record, seconds=seconds,
                    concurrency=refine.concurrency, client_cpus=client_cpus)
                error = None
            except (RuntimeError, httpx.HTTPError, subprocess.TimeoutExpired) as failure:
                error = f"load failed: {failure}"
        if watch.over:
            error = (f"the server's RSS reached {watch.peak_mb * MB / MiB:.0f} MiB, over "
                     f"refine.serving_memory_mib {refine.serving_memory_mib:g}")
        if error is not None:
            return EndpointCost(math.inf, math.inf, 0.0, math.inf, refine.concurrency, 0,
                                rss_mb=watch.peak_mb, ready_s=ready_s, error=error)
        return EndpointCost(p50, p99, rps, p99_c, refine.concurrency, count,
                            rss_mb=watch.peak_mb, ready_s=ready_s)
    except Exception as failure:  # one candidate's server must not fail the run
        log.warning("serving-path measurement failed", exc_info=True)
        return EndpointCost(math.inf, math.inf, 0.0, math.inf, refine.concurrency, 0,
                            ready_s=time.monotonic() - started,
                            error=f"{type(failure).__name__}: {str(failure)[:300]}")
    finally:
        if handle is not None:
            handle.stop()
        shutil.rmtree(folder, ignore_errors=True)


def with_endpoint(cost: ServingCost, endpoint: EndpointCost,
                  instance_price_per_hour: float | None) -> ServingCost:
    """``cost`` with the endpoint's figures as its latencies and price (per million
    requests at the concurrent throughput); the in-process latencies kept as
    ``inproc_latency_p50_ms`` / ``inproc_latency_p99_ms``."""
    price = (None if instance_price_per_hour is None
             else cost_per_million(instance_price_per_hour, endpoint.requests_per_s))
    return dataclasses.replace(
        cost, latency_p50_ms=endpoint.latency_p50_ms, latency_p99_ms=endpoint.latency_p99_ms,
        inproc_latency_p50_ms=cost.latency_p50_ms, inproc_latency_p99_ms=cost.latency_p99_ms,
        requests_per_s=endpoint.requests_per_s,
        latency_p99_concurrent_ms=endpoint.latency_p99_concurrent_ms,
        serving_requests=endpoint.requests, serving_rss_mb=endpoint.rss_mb,
        serving_error=endpoint.error,
        cost_per_million=price if price is not None else cost.cost_per_million)


def measure_all(models: Sequence[Any], costs: Sequence[ServingCost], records: Sequence[Record],
                refine: RefineSpec, *, left_s: Callable[[], float] = lambda: math.inf,
                tracking_uri: str | None = None, labels: Sequence[str] = ()
                ) -> tuple[list[ServingCost], list[str]]:
    """Measure each model on the serving path (see the module docstring) and fold the
    figures into its in-process ``costs``.

    ``left_s`` is the time the run has left for this; a server is started only while the
    first one's start-up plus ``refine.serving_seconds`` fits (the first always, unless
    less than ``serving_seconds`` is left). ``labels`` name the models in what was cut
    (default ``candidate N``). Returns the costs (in-process ones where a candidate was not
    served) and what was cut, one line each.
    """
    if not models:
        return [], []
    record = records[0]
    slots = cpu_slots(refine.serving_cpus)
    out = list(costs)
    cut: list[str] = []
    expected_s = refine.serving_seconds
    index = 0
    while index < len(models):
        batch = list(range(index, min(len(models), index + len(slots))))
        left = left_s()
        seconds = min(refine.serving_seconds, max(0.0, left - expected_s + refine.serving_seconds))
        if left < expected_s or seconds < 0.5:
            names = list(labels) or [f"candidate {i + 1}" for i in range(len(models))]
            cut += [f"{names[i]} not measured on the serving path ({left:.1f} s left, "
                    f"~{expected_s:.1f} s needed)" for i in range(index, len(models))]
            break
        with ThreadPoolExecutor(len(batch)) as pool:
            futures = [pool.submit(measure_endpoint, models[i], record, refine, seconds=seconds,
                                   slot=slot, tracking_uri=tracking_uri)
                       for i, slot in zip(batch, slots, strict=False)]
            results = [f.result() for f in futures]
        for i, endpoint in zip(batch, results, strict=True):
            out[i] = with_endpoint(out[i], endpoint, refine.instance_price_per_hour)
            if math.isfinite(endpoint.ready_s):
                expected_s = max(expected_s, endpoint.ready_s + seconds + 2.0)
        index += len(batch)
    return out, cut
