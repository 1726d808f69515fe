"""Progress on the terminal (rich): a bar for the search, a spinner for long steps.

:class:`Reporter` is the interface :func:`dripml.api.train` reports through; :class:`Silent`
reports nothing and :class:`RichReporter` draws on stderr. :class:`JsonLinesReporter` writes
the same events as JSON lines to a file (``--events FILE``, what the web page follows) and
:class:`Tee` passes them to several reporters.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


class JsonLinesReporter(Reporter):
    """Appends one JSON object per event to ``path`` (UTF-8, one line each, flushed per
    line; the folder is made). Every object has ``t`` (Unix seconds, float) and ``event``:

    - ``run_started``: ``run_id``, ``url`` (the MLflow UI page, or null)
    - ``step``: ``name``, ``state`` (``started`` or ``finished``)
    - ``search``: ``total`` (trials to run, or null) when the search starts
    - ``trial``: ``done``, ``total``, ``trial``, ``state``, ``algorithm``, ``value`` (the
      trial's objective, null if none), ``best_value``, ``best_trial``, ``objective``
    - ``message``: ``text``

    Safe to call from several threads; a write that fails (disk full) is dropped, never
    stopping the run.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        """Append ``{"t": now, "event": event, **fields}`` as one line."""
        line = json.dumps({"t": time.time(), "event": event, **fields}, default=str)
        with self._lock:
            try:
                with self.path.open("a", encoding="utf-8") as stream:
                    stream.write(line + "\n")
                    stream.flush()
            except OSError:
                pass

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        self.write("step", name=description, state="started")
        yield
        self.write("step", name=description, state="finished")

    @contextmanager
    def search(self, total: int | None) -> Iterator[None]:
        self.write("search", total=total)
        yield

    def trial(self, result: TrialResult, best: TrialResult | None, done: int,
              total: int | None, objective_key: str) -> None:
        self.write("trial", done=done, total=total, trial=result.number, state=result.state,
                   algorithm=result.algorithm, value=_finite(result.objective),
                   best_value=_finite(best.objective) if best else None,
                   best_trial=best.number if best else None, objective=objective_key)

    def message(self, text: str) -> None:
        self.write("message", text=text)

    def run_started(self, link: RunLink) -> None:
        self.write("run_started", run_id=link.run_id, url=link.url)


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    return float(value) if value is not None and math.isfinite(value) else None


class Tee(Reporter):
    """Passes every event to each of ``reporters`` in order (a terminal bar and an events
    file, say)."""

    def __init__(self, *reporters: Reporter) -> None:
        self.reporters = reporters

    @contextmanager
    def step(self, description: str) -> Iterator[None]:
        with ExitStack() as stack:
            for reporter in self.reporters:
                stack.enter_context(reporter.step(description))
            yield

    @contextmanager
    def search(self, total: int | None) -> Iterator[None]:
        with ExitStack() as stack:
            for reporter in self.reporters:
                stack.enter_context(reporter.search(total))
            yield

    def trial(self, result: TrialResult, best: TrialResult | None, done: int,
              total: int | None, objective_key: str) -> None:
        for reporter in self.reporters:
            reporter.trial(result, best, done, total, objective_key)

    def message(self, text: str) -> None:
        for reporter in self.reporters:
            reporter.message(text)

    def run_started(self, link: RunLink) -> None:
        for reporter in self.reporters:
            reporter.run_started(link)


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
