"""Which layout runs a call: by row count, or by measured time (a bandit over layouts).

By row count (``layout="auto"``): up to :data:`ROWS_MAX_ROWS` rows run on the row layout,
more on pandas. The row layout's fixed cost is about a microsecond per operation against
pandas' tens, but its cost grows faster with the rows (text methods loop in Python, every
column is converted in and out). Measured on the two functions of
``benchmarks/frame_layouts.py`` (2 cores, 2026-12-04, DataFrame in and out): the row layout
was 2.9x and 1.6x faster than pandas at 1,000 rows, even at 4,000 (1.5x and 1.0x), slower at
16,000 (0.5x and 1.0x); the threshold sits at 1,000, below the crossing, since a function
doing more per row in Python crosses earlier.

By measured time (``layout="measured"``, or ``auto`` after :func:`use_measured_auto`):
an epsilon-greedy bandit per (function, size bucket): each layout is tried
:attr:`LayoutBandit.warmup` times, then the one with the lowest mean time is chosen, and
another one with probability ``epsilon`` so a change in the data is noticed.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Chosen = Literal["pandas", "rows"]
LAYOUTS: tuple[Chosen, ...] = ("rows", "pandas")

ROWS_MAX_ROWS = 1_000
"""``auto`` runs calls of at most this many rows on the row layout, larger ones on pandas."""

_measured_auto = False


def use_measured_auto(enabled: bool) -> None:
    """Make ``layout="auto"`` choose by measured time (the bandit) instead of row count."""
    global _measured_auto
    _measured_auto = enabled


def measured_auto() -> bool:
    return _measured_auto


def by_rows(n_rows: int) -> Chosen:
    """The layout for ``n_rows`` rows by row count alone (zero rows: pandas)."""
    return "rows" if 0 < n_rows <= ROWS_MAX_ROWS else "pandas"


def size_bucket(n_rows: int) -> int:
    """Order of magnitude of the row count: 1 -> 0, 10..99 -> 1, 1,000..9,999 -> 3."""
    return int(math.log10(max(n_rows, 1)))


def function_key(func: Callable[..., Any]) -> Any:
    """What identifies a user function across calls: its code object (each ``def`` and
    ``lambda`` has its own), else its type (a callable object)."""
    return getattr(func, "__code__", None) or type(func)


@dataclass
class _Arm:
    trials: int = 0
    total_s: float = 0.0

    @property
    def mean_s(self) -> float:
        return self.total_s / self.trials if self.trials else math.inf


@dataclass
class LayoutBandit:
    """Epsilon-greedy choice of a layout per (function key, size bucket).

    Attributes:
        epsilon: probability of trying a layout other than the fastest one, once warmed up.
        warmup: calls per layout before choosing by mean time.
        rng: the random source (seed it in tests).
    """

    epsilon: float = 0.05
    warmup: int = 3
    rng: random.Random = field(default_factory=random.Random)
    _arms: dict[tuple[Any, int, str], _Arm] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def choose(self, key: Any, bucket: int) -> Chosen:
        """The layout to run next for ``key`` on rows of size bucket ``bucket``."""
        with self._lock:
            arms = {layout: self._arms.get((key, bucket, layout), _Arm())
                    for layout in LAYOUTS}
            for layout, arm in arms.items():
                if arm.trials < self.warmup:
                    return layout
            best = min(LAYOUTS, key=lambda layout: arms[layout].mean_s)
            if self.rng.random() < self.epsilon:
                return self.rng.choice([layout for layout in LAYOUTS if layout != best])
            return best

    def record(self, key: Any, bucket: int, layout: Chosen, seconds: float) -> None:
        """Add one measured call (``seconds`` of wall time) of ``layout``."""
        with self._lock:
            arm = self._arms.setdefault((key, bucket, layout), _Arm())
            arm.trials += 1
            arm.total_s += seconds

    def mean_s(self, key: Any, bucket: int, layout: Chosen) -> float:
        """Mean measured seconds (inf before any call)."""
        with self._lock:
            return self._arms.get((key, bucket, layout), _Arm()).mean_s


BANDIT = LayoutBandit()
"""The process-wide bandit ``layout="measured"`` uses."""
