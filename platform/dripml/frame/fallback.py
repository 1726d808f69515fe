"""What the row layout does not support: :class:`Unsupported`, raised inside the row layout and
caught by :func:`dripml.frame.call`, which reruns that call on pandas.

Each fallback is counted by operation (:func:`fallback_counts`, what the serving endpoint
exports to ``/metrics``) and logged once per (user function, operation), so a function that
falls back on every request writes one line, not one per request.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable

log = logging.getLogger("dripml.frame")


class Unsupported(Exception):  # noqa: N818 (an internal signal, never shown to a user)
    """An operation the row layout does not run; ``op`` names it (``"Series.rolling"``)."""

    def __init__(self, op: str) -> None:
        super().__init__(op)
        self.op = op


_lock = threading.Lock()
_counts: Counter[str] = Counter()
_logged: set[tuple[str, str]] = set()
_listeners: list[Callable[[str], None]] = []


def record(function: str, op: str) -> None:
    """Count one fallback of ``function`` (its qualified name) on ``op``; log the first."""
    with _lock:
        _counts[op] += 1
        first = (function, op) not in _logged
        _logged.add((function, op))
    for listener in list(_listeners):
        listener(op)
    if first:
        log.info("dripml.frame: %s uses %s, which the row layout does not support; this "
                 "call and later ones run it on pandas (logged once)", function, op)


def add_listener(listener: Callable[[str], None]) -> None:
    """Call ``listener(op)`` on every fallback from now on (the endpoint's ``/metrics``
    counter); a listener added twice is called once."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def fallback_counts() -> dict[str, int]:
    """Fallbacks to pandas since the process started, by operation (``{"Series.rank": 3}``)."""
    with _lock:
        return dict(_counts)


def reset() -> None:
    """Forget counts and logged pairs (tests)."""
    with _lock:
        _counts.clear()
        _logged.clear()
