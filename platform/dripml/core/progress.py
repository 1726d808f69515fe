"""Progress on the terminal (rich): a bar for the search, a spinner for long steps.

:class:`Reporter` is the interface :func:`dripml.api.train` reports through; :class:`Silent`
reports nothing and :class:`RichReporter` draws on stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:  # numpy and pandas stay out of the CLI's start
    from dripml.core.links import RunLink
    from dripml.core.results import TrialResult


class Reporter:
    """Does nothing; subclasses draw. ``step`` wraps a long step, ``trial`` follows the search."""

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        yield

    @contextmanager
    def search(self, total: int | None) -> Iterator[None]:
        yield

    def trial(self, result: TrialResult, best: TrialResult | None, done: int,
              total: int | None, objective_key: str) -> None:
        return None

    def message(self, text: str) -> None:
        return None

    def run_started(self, link: RunLink) -> None:
        """The MLflow search run exists (called once, before the first trial): where to
        watch it."""
        return None


Silent = Reporter


class RichReporter(Reporter):
    """Spinners for steps and a bar for trials (done of total, best so far) on stderr."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: int | None = None

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        with self.console.status(description):
            yield
        self.console.print(f"[green]✓[/] {description}")

    @contextmanager
    def search(self, total: int | None) -> Iterator[None]:
        columns = [TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[best]}")]
        with Progress(*columns, console=self.console) as progress:
            self._progress = progress
            self._task = progress.add_task("search", total=total, best="")
            yield
        self._progress = self._task = None

    def trial(self, result: TrialResult, best: TrialResult | None, done: int,
              total: int | None, objective_key: str) -> None:
        if self._progress is None or self._task is None:
            return
        shown = (f"best {objective_key} {best.objective:.4f} ({best.algorithm}, trial "
                 f"{best.number})" if best and best.objective is not None else "")
        self._progress.update(self._task, completed=done, total=total, best=shown)
        if result.state == "FAILED":
            self._progress.console.print(f"[yellow]trial {result.number} ({result.algorithm}) "
                                         f"failed:[/] {(result.error or '').splitlines()[-1]}")

    def message(self, text: str) -> None:
        self.console.print(text)

    def run_started(self, link: RunLink) -> None:
        self.console.print(f"[bold]MLflow run[/] {link.run_id}: {link.text()}", highlight=False,
                           soft_wrap=True)


class RowsBar:
    """A bar of rows done (of the total, when known) with rows per second, on stderr; call it
    with (done, total) as :func:`dripml.predict_batch`'s ``progress``."""

    def __init__(self, console: Console | None = None, label: str = "rows") -> None:
        self.console = console or Console(stderr=True)
        self._progress = Progress(TextColumn(f"[bold]{label}"), BarColumn(),
                                  MofNCompleteColumn(), TimeElapsedColumn(),
                                  TextColumn("{task.fields[rate]}"), console=self.console)
        self._task = self._progress.add_task(label, total=None, rate="")

    def __enter__(self) -> RowsBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def __call__(self, done: int, total: int | None) -> None:
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = f"{done / elapsed:,.0f} rows/s" if elapsed > 0 else ""
        self._progress.update(self._task, completed=done, total=total, rate=rate)
