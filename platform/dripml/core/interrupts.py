"""Ctrl-C and SIGTERM as one exception, so that a run stops the same way for both.

:func:`catch_signals` turns SIGINT (Ctrl-C) and SIGTERM (what Kubernetes, CI runners and
``kill`` send) into :class:`Interrupted`, a ``KeyboardInterrupt`` that remembers which signal
came: ``finally`` blocks and context managers unwind (the trials in flight are cancelled and
logged, the MLflow run is marked KILLED, Ray stops) and the command exits 130 or 143, as a
shell does for those signals. A second signal while that cleanup runs is ignored (the
cleanup takes seconds; a process manager's SIGKILL still ends it).

Why a run needs this, and not Python's defaults: without a handler SIGTERM ends the process
at once (nothing logged, the run left RUNNING); ``ray.init`` in the main thread replaces the
SIGTERM handler with ``sys.exit`` and its core worker installs abseil's failure-signal
handler over it, which prints a C++ stack dump and arms a 3 s ``SIGALRM`` that aborts the
process (SIGABRT) while the driver is still cleaning up (ray-project/ray#64830).
:func:`keep_handlers` puts the handlers back after ``ray.init`` (see
:func:`dripml.orchestration.ray_cluster.connect`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""The signals :func:`catch_signals` turns into :class:`Interrupted`."""


class Interrupted(KeyboardInterrupt):  # noqa: N818 - a KeyboardInterrupt, not an error
    """The run was stopped by a signal (Ctrl-C or SIGTERM); a ``KeyboardInterrupt``, so code
    that handles Ctrl-C handles both.

    Attributes:
        signum: the signal's number (2 for SIGINT, 15 for SIGTERM).
        run_id: the MLflow search run it stopped (None before the run existed).
        kept: trials of that run that had ended (logged, kept for ``resume``) when it stopped.
        message: one line saying what stopped, what was kept and how to resume.
    """

    def __init__(self, signum: int, *, run_id: str | None = None, kept: int = 0,
                 message: str | None = None) -> None:
        self.signum = signum
        self.run_id = run_id
        self.kept = kept
        self.message = message or f"interrupted by {signal_name(signum)}"
        super().__init__(self.message)

    @property
    def signal_name(self) -> str:
        """``SIGINT`` or ``SIGTERM``."""
        return signal_name(self.signum)

    @property
    def exit_code(self) -> int:
        """What a shell reports for a process ended by this signal: 128 + its number (130 for
        SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum

    @property
    def reason(self) -> str:
        """``interrupted by SIGINT`` or ``interrupted by SIGTERM`` (the run's end reason)."""
        return f"interrupted by {self.signal_name}"


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, ``SIGTERM`` for 15; the number for an unnamed signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def as_interrupted(stop: KeyboardInterrupt) -> Interrupted:
    """``stop`` as an :class:`Interrupted` (a plain ``KeyboardInterrupt`` is a SIGINT)."""
    return stop if isinstance(stop, Interrupted) else Interrupted(signal.SIGINT)


Handler = Callable[[int, FrameType | None], Any] | int | None


_deferring = 0
_pending: int | None = None


def _raise(signum: int, frame: FrameType | None) -> None:
    global _pending
    # The first signal stops the run; later ones would interrupt its cleanup.
    for number in SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    if _deferring:
        _pending = signum
        return
    raise Interrupted(signum)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a signal that :func:`catch_signals` would raise until the block ends (then raise
    it): for a write that must not stop halfway (a trial's MLflow child run, whose SQLite
    transaction an exception mid-way leaves locked)."""
    global _deferring, _pending
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        signum, _pending = (_pending, None) if not _deferring else (None, _pending)
        if signum is not None:
            raise Interrupted(signum)


@contextmanager
def catch_signals() -> Iterator[None]:
    """While the block runs, SIGINT and SIGTERM raise :class:`Interrupted` in the main thread
    (the first one; later ones are ignored until the block ends); the previous handlers are
    restored after it. Outside the main thread (where Python cannot set handlers) the block
    runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Handler] = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        for number in SIGNALS:
            signal.signal(number, _raise)
        yield
    finally:
        global _pending
        _pending = None
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def keep_handlers() -> Iterator[None]:
    """Put the SIGINT and SIGTERM handlers back as they were before the block (in the main
    thread), for a block that starts a library which replaces them (``ray.init``)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            # Set even when Python thinks it is unchanged: a C library (abseil's failure
            # signal handler in Ray's core worker) may have replaced it underneath Python.
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def on_interrupt(callback: Callable[[Interrupted], None]) -> Iterator[None]:
    """Call ``callback`` with the :class:`Interrupted` (a plain ``KeyboardInterrupt`` counts
    as SIGINT) when the block is interrupted, then let it propagate."""
    try:
        yield
    except KeyboardInterrupt as stop:
        stopped = as_interrupted(stop)
        callback(stopped)
        if stopped is stop:
            raise
        raise stopped from None


@contextmanager
def stopping_run(resume_hint: str) -> Iterator[None]:
    """:func:`catch_signals` around a run: when the block ends on a signal (after its own
    cleanup), raise :class:`Interrupted` whose ``message`` says what was kept (``run_id``,
    ``kept`` as the block's cleanup set them) and how to resume (``resume_hint``)."""
    with catch_signals():
        try:
            yield
        except KeyboardInterrupt as stop:
            stopped = as_interrupted(stop)
            name = stopped.signal_name
            message = (f"interrupted by {name}: kept {stopped.kept} finished trials in run "
                       f"{stopped.run_id}; resume with {resume_hint}"
                       if stopped.run_id else
                       f"interrupted by {name} before the search run started: nothing was "
                       "kept")
            raise Interrupted(stopped.signum, run_id=stopped.run_id, kept=stopped.kept,
                              message=message) from None
