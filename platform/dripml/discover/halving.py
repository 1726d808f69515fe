"""Successive halving over rows and folds: the rungs a trial climbs before it fits every fold.

A trial first fits fold 0 on a sample of its training rows, then on more, then on all of them,
and only then the other folds (Jamieson and Talwalkar's successive halving, asynchronous as
in ASHA, Li et al. 2020). After each rung the trial reports its score to Optuna's
``SuccessiveHalvingPruner`` at step ``eta ** rung``, which promotes it when it ranks in the
top ``1/eta`` of the trials that reached that rung (the best so far while fewer than ``eta``
have); otherwise the trial is PRUNED there. Every trial fits the same sample of the same fold,
so scores at a rung compare like with like.

With ``n`` training rows in fold 0, ``eta`` 3 and ``min_rows`` 2,000, a 60,000-row data set
with 5 folds (48,000 rows a fold) climbs: 5,333 rows, 16,000 rows, all 48,000 rows of fold 0,
then folds 1 to 4. The rows of a sample are a seeded random subset of fold 0's training rows;
its validation rows are fold 0's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fit:
    """One fit of a rung: fold ``fold`` on ``rows`` training rows; ``sample`` is the index in
    :attr:`Ladder.samples` when it fits a sample, None when it fits the whole fold."""

    fold: int
    rows: int
    sample: int | None = None


@dataclass(frozen=True)
class Ladder:
    """The rungs of every trial of one search, and the sample splits they use.

    Attributes:
        rungs: the fits of each rung, in order; the last rung holds folds 1..K-1.
        samples: (training indices, validation indices) per sample rung, into the
            training rows.
        eta: the reduction factor (promote the top 1/eta).
    """

    rungs: tuple[tuple[Fit, ...], ...]
    samples: tuple[tuple[np.ndarray, np.ndarray], ...]
    eta: int

    def step(self, rung: int) -> int:
        """Optuna step at which rung ``rung`` reports (the pruner's resource, ``eta ** rung``)."""
        return self.eta ** rung

    @property
    def last(self) -> int:
        return len(self.rungs) - 1

    def describe(self, rung: int) -> str:
        """``fold 0 on 5,333 rows`` / ``folds 1-4``: what rung ``rung`` fits."""
        fits = self.rungs[rung]
        if len(fits) == 1:
            return f"fold {fits[0].fold} on {fits[0].rows:,} rows"
        return f"folds {fits[0].fold}-{fits[-1].fold}"


def ladder(folds: Sequence[tuple[np.ndarray, np.ndarray]], *, eta: int = 3,
           min_rows: int = 2000, seed: int = 0) -> Ladder:
    """The rungs for ``folds`` (see the module docstring).

    Samples are ``n / eta**j`` rows of fold 0 for each j >= 1 with at least ``min_rows``
    rows, smallest first. With one fold only, there is no last rung of other folds.
    """
    train, validation = folds[0]
    n = len(train)
    rng = np.random.default_rng(seed)
    order = rng.permutation(train)
    sizes = []
    j = 1
    while n // eta ** j >= min_rows:
        sizes.append(n // eta ** j)
        j += 1
    sizes.reverse()
    samples = tuple((np.sort(order[:size]), validation) for size in sizes)
    rungs: list[tuple[Fit, ...]] = [(Fit(0, size, i),) for i, size in enumerate(sizes)]
    rungs.append((Fit(0, n),))
    if len(folds) > 1:
        rungs.append(tuple(Fit(i, len(folds[i][0])) for i in range(1, len(folds))))
    return Ladder(tuple(rungs), samples, eta)
