"""Which failed fits are worth running again: those whose Ray worker or node died.

A fold task fails in one of two ways. The model code raised (a bad parameter, a NaN, a bug):
running it again fails the same way, so its trial is FAILED at once. Or the process running
it went away: the worker was killed (out of memory, ``kill -9``, a segfault in a native
library), its node died (a spot instance, an evicted pod), or an object it needed was lost
with a node. Those say nothing about the configuration, so Discover submits the fit again,
at most ``resources.max_fold_retries`` times (see :func:`dripml.discover.trials.discover`).

Ray's tasks run with ``max_retries=0`` (:func:`dripml.discover.trials.fit_task_options`):
Ray's own retries would also rerun a fold after a system failure, but silently and
without a count; here each retry is logged and counted on the trial (``fold_retries``).
"""

from __future__ import annotations

import ray

LOST_WORKER: tuple[type[BaseException], ...] = (
    ray.exceptions.WorkerCrashedError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.LocalRayletDiedError,
    ray.exceptions.OutOfMemoryError,
    ray.exceptions.ObjectLostError,  # OwnerDiedError, ObjectReconstructionFailedError...
)
"""Failures of the process or node a fit ran on, not of the fit's code."""

CAUGHT: tuple[type[BaseException], ...] = (ray.exceptions.RayTaskError, *LOST_WORKER)
"""What ``ray.get`` of a fold may raise that ends or retries the fold, not the search."""


def is_lost_worker(error: BaseException) -> bool:
    """Whether ``error`` (from ``ray.get`` of a fit) says its worker, node or input was lost,
    directly or as the cause of a :class:`ray.exceptions.RayTaskError` (a task whose input,
    the shared preprocessing, was computed by a worker that died)."""
    if isinstance(error, LOST_WORKER):
        return True
    return isinstance(getattr(error, "cause", None), LOST_WORKER)


def describe(error: BaseException, retried: int, text: str) -> str:
    """The error a FAILED trial records: ``text``, after how many retries when the worker
    was lost."""
    if not is_lost_worker(error):
        return text
    tried = f"{retried} retr{'y' if retried == 1 else 'ies'}"
    return (f"the fold's Ray worker or node was lost ({tried}, resources.max_fold_retries): "
            f"{text}")
