"""The web page's runs, kept in SQL so that a restarted UI loses nothing.

:class:`RunStore` keeps one row per run the page started (table ``ui_runs``): what was asked
(recipe, version, pipeline, knob values, upload ids), where it stands (status, the current
step, trials done of total, the best value so far) and, once finished, what it produced
(registered model, leaderboard, quality-cost frontier, test metrics). Callers see rows as
frozen :class:`RunView` records; only :meth:`RunStore.update` changes a row.

Embedded, the store is a SQLite file beside the UI's data (``sqlite:///<ui dir>/ui.db``,
write-ahead log, one engine per store shared by the queue's worker thread and the web
server's threads); on a cluster it is the chart's PostgreSQL
(``postgresql+psycopg2://user:password@host/db``). The schema is created on open
(``create_all``) and its version kept in table ``ui_schema``; no Alembic yet: ``create_all``
adds missing tables, never columns, so each later column is added by a step of
:func:`_migrate` keyed on that version (version 2: ``kfp_run_id``).
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    delete,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from dripml.errors import RunNotFound, StoreError

__all__ = ["SCHEMA_VERSION", "STATUSES", "Base", "RunRecord", "RunStore", "RunView", "Status"]

SCHEMA_VERSION = 2
"""The ``ui_runs`` layout this code reads and writes (kept in table ``ui_schema``)."""

Status = Literal["queued", "running", "finished", "failed", "cancelled"]
STATUSES: tuple[str, ...] = ("queued", "running", "finished", "failed", "cancelled")
"""A run's states: queued -> running -> finished | failed | cancelled (a failed or cancelled
run may be queued again to resume; a queued one may be cancelled before it starts)."""


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a UTC-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect
                             ) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The UI's tables (their own metadata: nothing to do with MLflow's tables)."""


class SchemaVersion(Base):
    __tablename__ = "ui_schema"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class RunRecord(Base):
    """One run the page started (see :class:`RunView` for the meaning of each column)."""

    __tablename__ = "ui_runs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    recipe: Mapped[str] = mapped_column(String(200))
    recipe_version: Mapped[str] = mapped_column(String(50))
    pipeline: Mapped[str] = mapped_column(String(200))
    knobs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    upload_id: Mapped[str] = mapped_column(String(64))
    test_upload_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    step: Mapped[str | None] = mapped_column(String(200))
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    best_value: Mapped[float | None] = mapped_column(Float)
    objective: Mapped[str | None] = mapped_column(String(100))
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64))
    run_url: Mapped[str | None] = mapped_column(Text)
    model_name: Mapped[str | None] = mapped_column(String(200))
    model_version: Mapped[int | None] = mapped_column(Integer)
    leaderboard: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    frontier: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    test_metrics: Mapped[dict[str, float]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    endpoint_url: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    # The queue's bookkeeping: the child process of the current attempt (pid and its
    # creation time, so that a reused pid is not taken for it), whether the next start passes
    # --resume, and whether a cancel was asked for while it ran.
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_started: Mapped[float | None] = mapped_column(Float)
    resume: Mapped[bool] = mapped_column(default=False)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # Cluster mode: the Kubeflow Pipelines run that executes it (schema version 2).
    kfp_run_id: Mapped[str | None] = mapped_column(String(64))


_MIGRATIONS: dict[int, tuple[str, ...]] = {
    2: ("ALTER TABLE ui_runs ADD COLUMN kfp_run_id VARCHAR(64)",),
}
"""Schema version -> the statements that bring the previous version to it."""


@dataclass(frozen=True)
class RunView:
    """A run as the page shows it (an immutable snapshot of its row).

    Attributes:
        id: uuid4 hex. recipe, recipe_version, pipeline: what it runs. knobs: knob key ->
            value as resolved. upload_id, test_upload_id: the uploads' ids (section 6).
        status: queued | running | finished | failed | cancelled.
        created_at, started_at, finished_at: UTC; started_at is the latest attempt's start.
        step: the current step's name; done, total: trials finished of planned (total None
            when the search is bounded by time alone); best_value: best CV objective so far
            (objective: its name, e.g. ``roc_auc``).
        mlflow_run_id, run_url: the MLflow search run and its page.
        model_name, model_version: the registered model once finished.
        leaderboard, frontier, test_metrics: ``drip run --json``'s ``leaderboard``,
            ``frontier`` and ``test_metrics`` once finished.
        error: the last lines of the run's stderr when it failed.
        endpoint_url: set by the UI after a deploy.
        attempts: 1 + the number of resumes.
        pid, pid_started, resume, cancel_requested: the queue's bookkeeping.
        kfp_run_id: cluster mode: the Kubeflow Pipelines run executing it.
    """

    id: str
    recipe: str
    recipe_version: str
    pipeline: str
    knobs: dict[str, Any]
    upload_id: str
    test_upload_id: str | None
    status: Status
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    step: str | None = None
    done: int = 0
    total: int | None = None
    best_value: float | None = None
    objective: str | None = None
    mlflow_run_id: str | None = None
    run_url: str | None = None
    model_name: str | None = None
    model_version: int | None = None
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    frontier: list[dict[str, Any]] = field(default_factory=list)
    test_metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    endpoint_url: str | None = None
    attempts: int = 1
    pid: int | None = None
    pid_started: float | None = None
    resume: bool = False
    cancel_requested: bool = False
    kfp_run_id: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the run is finished, failed or cancelled."""
        return self.status in ("finished", "failed", "cancelled")


_FIELDS = tuple(f.name for f in fields(RunView))
_UPDATABLE = frozenset(_FIELDS) - {"id", "created_at"}


def _view(row: RunRecord) -> RunView:
    values = {name: getattr(row, name) for name in _FIELDS}
    for name, empty in (("knobs", {}), ("leaderboard", []), ("frontier", []),
                        ("test_metrics", {})):
        if values[name] is None:
            values[name] = empty
    return RunView(**values)


def now() -> datetime:
    """The current time, UTC-aware (what the store's datetime columns hold)."""
    return datetime.now(UTC)


class RunStore:
    """The UI's runs in a SQL database; safe to share between threads.

    Args:
        url: a SQLAlchemy URL: ``sqlite:///<ui dir>/ui.db`` embedded (its folder is
            created), ``postgresql+psycopg2://user:password@host:5432/db`` on a cluster.

    Raises:
        StoreError: the database holds a newer schema than this dripml knows.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has no SELECT ... FOR UPDATE: one writer at a time within this process
        # (the queue's worker and the web server's threads share the store).
        self._write = threading.Lock()
        Base.metadata.create_all(self.engine)
        with self._write, self._sessions.begin() as session:
            found = session.scalars(select(SchemaVersion.version)).all()
            if not found:
                session.add(SchemaVersion(version=SCHEMA_VERSION))
            elif max(found) > SCHEMA_VERSION:
                raise StoreError(
                    f"the UI's run store {self.engine.url!r} has schema version {max(found)}, "
                    f"newer than this dripml's {SCHEMA_VERSION}: upgrade dripml, or point "
                    f"the UI at another data folder")
            elif max(found) < SCHEMA_VERSION:
                _migrate(session, max(found))

    def close(self) -> None:
        """Close the store's connections (the store is unusable afterwards)."""
        self.engine.dispose()

    def create(self, *, recipe: str, recipe_version: str, pipeline: str,
               knobs: dict[str, Any], upload_id: str, test_upload_id: str | None = None,
               run_id: str | None = None) -> RunView:
        """Add a run, status ``queued``, and return it (``run_id`` default: a new uuid4
        hex)."""
        row = RunRecord(id=run_id or uuid.uuid4().hex, recipe=recipe,
                        recipe_version=recipe_version, pipeline=pipeline, knobs=dict(knobs),
                        upload_id=upload_id, test_upload_id=test_upload_id, status="queued",
                        created_at=now(), done=0, leaderboard=[], frontier=[],
                        test_metrics={}, attempts=1, resume=False, cancel_requested=False)
        with self._write, self._sessions.begin() as session:
            session.add(row)
            session.flush()
            return _view(row)

    def get(self, run_id: str) -> RunView:
        """The run ``run_id``. Raises :class:`~dripml.errors.RunNotFound` if there is none."""
        with self._sessions() as session:
            return _view(self._row(session, run_id))

    def list(self, limit: int = 100, *, status: str | None = None) -> list[RunView]:
        """Up to ``limit`` runs, newest first (only those in ``status`` when given)."""
        query = select(RunRecord).order_by(RunRecord.created_at.desc()).limit(limit)
        if status is not None:
            query = query.where(RunRecord.status == status)
        with self._sessions() as session:
            return [_view(row) for row in session.scalars(query)]

    def oldest(self, status: str, limit: int) -> list[RunView]:
        """Up to ``limit`` runs in ``status``, oldest first (the queue's order)."""
        query = (select(RunRecord).where(RunRecord.status == status)
                 .order_by(RunRecord.created_at).limit(limit))
        with self._sessions() as session:
            return [_view(row) for row in session.scalars(query)]

    def update(self, run_id: str, *, only_if: tuple[str, ...] | None = None,
               **values: Any) -> RunView:
        """Set the given fields of run ``run_id`` and return it as it now is.

        ``only_if``: change nothing unless the run's status is one of these (the row is
        returned unchanged); the check and the write are one transaction.

        Raises:
            RunNotFound: no such run.
            TypeError: a field that is not a :class:`RunView` field (or ``id``,
                ``created_at``).
            ValueError: a status that is none of :data:`STATUSES`.
        """
        unknown = set(values) - _UPDATABLE
        if unknown:
            raise TypeError(f"RunStore.update: no updatable field {sorted(unknown)}; "
                            f"fields: {sorted(_UPDATABLE)}")
        if "status" in values and values["status"] not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {values['status']!r}")
        with self._write, self._sessions.begin() as session:
            row = self._row(session, run_id, lock=True)
            if only_if is None or row.status in only_if:
                for name, value in values.items():
                    setattr(row, name, value)
                session.flush()
            return _view(row)

    def _row(self, session: Session, run_id: str, *, lock: bool = False) -> RunRecord:
        query = select(RunRecord).where(RunRecord.id == run_id)
        if lock and self.engine.dialect.name != "sqlite":
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in the UI's run store "
                              f"({self.engine.url.render_as_string(hide_password=True)}); "
                              f"the runs page lists the ids")
        return row


def _migrate(session: Session, version: int) -> None:
    """Bring a store at schema ``version`` to :data:`SCHEMA_VERSION` (in the caller's
    transaction): the columns each later version added, when missing (``create_all`` made
    the tables of a new store with every column already)."""
    columns = {c["name"] for c in inspect(session.connection()).get_columns("ui_runs")}
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for statement in _MIGRATIONS.get(step, ()):
            column = statement.split("ADD COLUMN ", 1)[1].split()[0]
            if column not in columns:
                session.execute(text(statement))
    session.execute(delete(SchemaVersion))
    session.add(SchemaVersion(version=SCHEMA_VERSION))


def _engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    database = make_url(url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
