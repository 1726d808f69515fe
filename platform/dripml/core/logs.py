"""Library logs to a file: what MLflow, Ray, Optuna and Python's ``warnings`` say during a run
goes to the run's log file, not the screen; their errors still reach stderr.

:func:`library_logs_to` takes the libraries' loggers over for the length of a ``with`` block
and gives them back as they were. It names the loggers, it never imports the libraries (this
module is in the core): call it after they are imported, since each installs its own screen
handler when imported (MLflow, Ray and Optuna do), which it replaces. Python warnings are
routed with :func:`logging.captureWarnings` (logger ``py.warnings``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LIBRARY_LOGGERS", "library_logs_to"]

LIBRARY_LOGGERS = ("py.warnings", "mlflow", "ray", "optuna", "alembic", "sqlalchemy", "huey",
                   "bentoml", "lightgbm", "xgboost", "urllib3", "filelock")
"""The top loggers taken over; their children (``mlflow.store.db.utils``...) propagate to
them. ``dripml``'s own loggers are left alone: their warnings are for the user."""

NARRATED = ("mlflow", "ray", "optuna")
"""The loggers whose INFO records the file keeps (what was logged, started, tried); the others
keep WARNING and above (SQLAlchemy at INFO logs every statement and slows the run down)."""

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler writing to whatever ``sys.stderr`` is when a record comes (a test
    runner may swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


@contextmanager
def library_logs_to(path: Path, *, screen_level: int = logging.ERROR,
                    file_level: int = logging.INFO,
                    loggers: tuple[str, ...] = LIBRARY_LOGGERS) -> Iterator[Path]:
    """Send the libraries' log records and Python warnings to ``path`` while the block runs.

    Args:
        path: the log file (its folder is created; appended to if it exists).
        screen_level: records at this level or above also go to stderr (default ERROR:
            errors are never silenced).
        file_level: the level of the :data:`NARRATED` loggers while the block runs (default
            INFO, so the file says what MLflow and Ray did; the others WARNING); restored
            afterwards.
        loggers: the top logger names taken over (default :data:`LIBRARY_LOGGERS`).

    Yields:
        ``path``. Each taken-over logger (and every child logger with handlers of its own,
        e.g. ``ray.data``) has its screen handlers removed for the block; on exit every
        handler, level and ``propagate`` flag is put back and warnings go to the screen again.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(FORMAT))
    to_screen = _StderrNow()
    to_screen.setLevel(screen_level)
    to_screen.setFormatter(logging.Formatter(FORMAT))
    saved: list[tuple[logging.Logger, list[logging.Handler], int, bool]] = []
    for name in loggers:
        top = logging.getLogger(name)
        saved.append((top, list(top.handlers), top.level, top.propagate))
        top.handlers = [to_file, to_screen]
        top.setLevel(file_level if name in NARRATED else max(file_level, logging.WARNING))
        top.propagate = False
        for child in _children_with_handlers(name):
            saved.append((child, list(child.handlers), child.level, child.propagate))
            # Keep a child's own files (ray.data's session log); its screen goes through us.
            child.handlers = [h for h in child.handlers if isinstance(h, logging.FileHandler)]
            child.propagate = True
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in reversed(saved):
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        to_file.close()


def _children_with_handlers(name: str) -> list[logging.Logger]:
    prefix = name + "."
    return [logger for key, logger in list(logging.Logger.manager.loggerDict.items())
            if key.startswith(prefix) and isinstance(logger, logging.Logger)
            and (logger.handlers or not logger.propagate)]
