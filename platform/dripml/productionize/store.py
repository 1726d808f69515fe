"""The tracking store first: check it in seconds before anything costly starts, migrate a new
SQLite store once under a file lock, bound MLflow's HTTP calls, move an alias only if no one
else moved it.

:func:`check` is what :func:`dripml.train` runs before Ray starts (and ``drip models``,
``serve``, ``predict`` before they read the store). By kind of URI:

- ``http(s)://``: ``GET /api/2.0/mlflow/experiments/search`` answers within
  :func:`dripml.settings.store_timeout_s` (default 5 s; connect within 2 s), with MLflow's own
  credentials (``MLFLOW_TRACKING_TOKEN``...); with ``write=True`` and an experiment, that
  experiment is created (or tagged ``dripml.store_checked``), which proves the server takes
  writes.
- ``sqlite:///PATH``: the folder can be made and written, the database file written (a write
  transaction rolled back), and MLflow's schema created or checked (its alembic migration)
  while holding ``PATH.lock`` (``fcntl.flock``, or ``filelock`` where installed), so two first
  runs on a new store do not race in the migration (``table _alembic_tmp_experiments
  already exists``). An out-of-date schema is an error saying how to upgrade it.
- anything else (``databricks``, ``postgresql://``...): not checked here.

Every failure is a :class:`~dripml.errors.StoreError` naming the URI and what to do.

:func:`apply_http_defaults` bounds every MLflow HTTP call of the process (timeout, retries,
backoff: :func:`dripml.settings.mlflow_http_env`); a variable the user set wins.

Alias compare-and-set: :func:`record_alias` tags a search run with where the alias pointed
when the run started (``dripml.alias_at_start``); :func:`move_alias` moves it only if it still
points there (or at one of the run's own versions), else leaves it and says who has it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dripml import settings
from dripml.errors import StoreError

SEARCH_ENDPOINT = "/api/2.0/mlflow/experiments/search"
CONNECT_TIMEOUT_S = 2.0
"""Longest wait for a TCP connection to a tracking server, seconds."""
LOCK_WAIT_S = 120.0
"""Longest wait for another process's migration of the same SQLite store, seconds."""
CHECKED_TAG = "dripml.store_checked"
ALIAS_TAG = "dripml.alias_at_start"
"""Search run tag: the version the alias pointed at when the run started, or ``none``."""
NO_VERSION = "none"


def apply_http_defaults() -> dict[str, str]:
    """Set dripml's bounds on MLflow's HTTP calls in this process's environment (children
    inherit them), leaving any the user set; returns what was set."""
    defaults = settings.mlflow_http_env()
    os.environ.update(defaults)
    return defaults


def check(uri: str, *, write: bool = True, experiment: str | None = None,
          timeout_s: float | None = None) -> str:
    """Check the tracking store at ``uri`` (see the module docstring); returns ``uri``.

    Args:
        write: also check that it takes writes (a training run); False for readers (a store
            that does not exist yet is then left uncreated, and nothing is written).
        experiment: over HTTP with ``write``, the experiment to create or tag.
        timeout_s: an HTTP server's time to answer, seconds; default
            :func:`dripml.settings.store_timeout_s`.

    Raises:
        StoreError: unreachable, silent, refusing, read-only or out-of-date store; the
            message names ``uri`` and what to do.
    """
    if uri.startswith(("http://", "https://")):
        _check_http(uri, write=write, experiment=experiment,
                    timeout_s=timeout_s if timeout_s is not None else settings.store_timeout_s())
    elif uri.startswith("sqlite:///"):
        _check_sqlite(uri, write=write)
    return uri


# --------------------------------------------------------------------------- HTTP


def _check_http(uri: str, *, write: bool, experiment: str | None, timeout_s: float) -> None:
    _http(uri, "GET", SEARCH_ENDPOINT, timeout_s, params={"max_results": 1})
    if not write or experiment is None:
        return
    found = _http(uri, "GET", "/api/2.0/mlflow/experiments/get-by-name", timeout_s,
                  params={"experiment_name": experiment}, missing_ok=True)
    if found is None:
        _http(uri, "POST", "/api/2.0/mlflow/experiments/create", timeout_s,
              json={"name": experiment}, action=f"create experiment {experiment!r}")
        return
    info = found.get("experiment", {})
    if info.get("lifecycle_stage") == "deleted":  # restored by the run anyway
        _http(uri, "POST", "/api/2.0/mlflow/experiments/restore", timeout_s,
              json={"experiment_id": info.get("experiment_id")},
              action=f"restore experiment {experiment!r}")
        return
    _http(uri, "POST", "/api/2.0/mlflow/experiments/set-experiment-tag", timeout_s,
          json={"experiment_id": info.get("experiment_id"), "key": CHECKED_TAG,
                "value": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
          action=f"write a tag on experiment {experiment!r}")


def _http(uri: str, method: str, endpoint: str, timeout_s: float, *, missing_ok: bool = False,
          action: str = "read it", **kwargs: Any) -> dict[str, Any] | None:
    """One request, no retry, bounded in time; the JSON answer (None: 404 with missing_ok)."""
    import requests
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    timeout = (min(CONNECT_TIMEOUT_S, timeout_s), timeout_s)
    try:
        response = http_request(get_default_host_creds(uri), endpoint, method, max_retries=0,
                                backoff_factor=0, timeout=timeout, raise_on_status=False,
                                **kwargs)
    except Exception as error:  # MLflow wraps what requests raised
        cause = error.__cause__ or error.__context__
        if isinstance(cause, requests.exceptions.ReadTimeout) or "Read timed out" in str(error):
            raise StoreError(
                f"the tracking server {uri} accepted the connection but did not answer within "
                f"{timeout_s:g} s; check that it is an MLflow server and not overloaded, or "
                f"raise {settings.STORE_TIMEOUT_S.name}") from None
        if isinstance(cause, requests.exceptions.ConnectTimeout) or "connect timeout" in str(
                error).lower():
            raise StoreError(
                f"the tracking server {uri} did not accept a connection within "
                f"{timeout[0]:g} s; check the host and port, and that no firewall drops "
                "them") from None
        raise StoreError(
            f"the tracking server {uri} cannot be reached ({_reason(error)}); start it "
            "(`mlflow server --host 127.0.0.1 --port 5000`) or pass another --tracking-uri"
        ) from None
    if response.status_code == 404 and missing_ok:
        return None
    if response.status_code in (401, 403):
        raise StoreError(
            f"the tracking server {uri} refused to let dripml {action} (HTTP "
            f"{response.status_code}); set MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD to an account that may write, or pass another "
            "--tracking-uri")
    if response.status_code == 404:
        raise StoreError(
            f"{uri} answered HTTP 404 to {endpoint}: it is not an MLflow tracking server (or "
            "the URI lacks its path prefix); pass the server's URI with --tracking-uri")
    if response.status_code >= 300:
        raise StoreError(
            f"the tracking server {uri} could not {action} (HTTP {response.status_code}: "
            f"{response.text[:300]}); check the server's log")
    try:
        return response.json()
    except ValueError:
        raise StoreError(f"{uri} answered {endpoint} with something not JSON: it is not an "
                         "MLflow tracking server; pass the server's URI with --tracking-uri"
                         ) from None


def _reason(error: BaseException) -> str:
    text = str(error)
    for marker in ("Connection refused", "Name or service not known", "No route to host",
                   "Temporary failure in name resolution", "Network is unreachable"):
        if marker in text:
            return marker.lower()
    return text.rsplit("failed with exception ", 1)[-1][:200]


# --------------------------------------------------------------------------- SQLite


def _check_sqlite(uri: str, *, write: bool) -> None:
    path = Path(uri.removeprefix("sqlite:///"))
    if not write and not path.exists():
        return  # nothing to read yet; MLflow would create it, so leave it to the caller
    folder = path.parent
    if write:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise _read_only(uri, f"its folder {folder} cannot be created ({error.strerror})"
                             ) from None
    if not write and not os.access(folder, os.W_OK):
        _migrated(uri)  # a read-only copy: read it as it is
        return
    with migration_lock(path, uri=uri):
        if write:
            _probe_write(path, uri)
        _migrated(uri)


@contextlib.contextmanager
def migration_lock(db: Path, *, uri: str = "", wait_s: float = LOCK_WAIT_S) -> Iterator[Path]:
    """Hold ``<db>.lock`` (beside the database) exclusively while the block runs, so one
    process at a time creates or migrates the store; waits up to ``wait_s`` seconds for the
    holder. The operating system releases the lock when its holder exits, so a crashed
    holder leaves nothing stale.

    Raises:
        StoreError: the lock file cannot be created (a read-only folder), or another process
            held it for ``wait_s`` seconds.
    """
    lock = db.with_name(db.name + ".lock")
    try:
        import filelock
    except ImportError:
        filelock = None
    try:
        if filelock is not None:
            try:
                with filelock.FileLock(str(lock), timeout=wait_s):
                    yield lock
                return
            except filelock.Timeout:
                raise _lock_timeout(lock, uri or str(db), wait_s) from None
        with open(lock, "a") as handle:  # noqa: PTH123 (a handle flock needs)
            _flock(handle, lock, uri or str(db), wait_s)
            yield lock
    except PermissionError as error:
        raise _read_only(uri or str(db), f"the lock file {lock} cannot be created "
                         f"({error.strerror})") from None
    except OSError as error:
        if error.errno in (1, 13, 30):  # EPERM, EACCES, EROFS
            raise _read_only(uri or str(db), f"the lock file {lock} cannot be created "
                             f"({error.strerror})") from None
        raise


def _flock(handle: Any, lock: Path, uri: str, wait_s: float) -> None:
    import fcntl

    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return  # released when the handle closes, or the process ends
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise _lock_timeout(lock, uri, wait_s) from None
            time.sleep(0.05)


def _lock_timeout(lock: Path, uri: str, wait_s: float) -> StoreError:
    return StoreError(f"another process held the migration lock {lock} of the tracking store "
                      f"{uri} for {wait_s:g} s; wait for it (a `drip run` or `mlflow db "
                      "upgrade`) to finish, then run again")


def _probe_write(path: Path, uri: str) -> None:
    """A write transaction rolled back: proves the file and its folder (the journal) take
    writes, whoever runs this (root ignores file modes, not a read-only mount)."""
    try:
        connection = sqlite3.connect(path, timeout=settings.store_timeout_s())
    except sqlite3.Error as error:
        raise _read_only(uri, f"the database cannot be opened ({error})") from None
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("CREATE TABLE dripml_write_probe (x INTEGER)")
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            raise StoreError(f"the tracking store {uri} stayed locked by another process for "
                             f"{settings.store_timeout_s():g} s; let it finish, then run again"
                             ) from None
        raise _read_only(uri, str(error)) from None
    except sqlite3.Error as error:
        raise _read_only(uri, str(error)) from None
    finally:
        connection.close()


def _read_only(uri: str, why: str) -> StoreError:
    return StoreError(f"the tracking store {uri} cannot be written: {why}; make the file and "
                      "its folder writable (`chmod u+w`), or pass a writable --tracking-uri")


def _migrated(uri: str) -> None:
    """MLflow's tracking and registry stores of ``uri`` made (creating and migrating the
    schema of a new database, checking an existing one's); MLflow keeps them for the run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.search_experiments(max_results=1)
        client.search_registered_models(max_results=1)
    except MlflowException as error:
        text = str(error)
        if "out-of-date database schema" in text:
            raise StoreError(
                f"the tracking store {uri} has an older MLflow schema than this MLflow "
                "writes; back the file up, then run `mlflow db upgrade "
                f"{uri}`") from None
        raise StoreError(f"the tracking store {uri} cannot be opened: {text[:400]}") from None
    except Exception as error:  # SQLAlchemy's own (a corrupt file, a read-only one)
        raise StoreError(f"the tracking store {uri} cannot be opened: "
                         f"{type(error).__name__}: {str(error).splitlines()[0][:300]}; "
                         "if it is not an MLflow SQLite database, pass another --tracking-uri"
                         ) from None


# --------------------------------------------------------------------------- alias CAS


@dataclass(frozen=True)
class AliasMove:
    """What :func:`move_alias` did.

    Attributes:
        moved: the alias now points at the run's version.
        found: where the alias pointed right before the move (a version, or None).
        message: one line for the user when ``moved`` is False, else "".
    """

    moved: bool
    found: str | None
    message: str = ""


def current_alias(name: str, alias: str) -> str | None:
    """The version ``name@alias`` points at, None when the model or alias does not exist."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return str(MlflowClient().get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def record_alias(run_id: str, name: str, alias: str) -> str | None:
    """Tag run ``run_id`` with where ``name@alias`` points now (``dripml.alias_at_start``),
    unless it already carries that tag (a resumed run keeps what it first found); returns
    the version recorded, None for no alias."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    recorded = client.get_run(run_id).data.tags.get(ALIAS_TAG)
    if recorded is not None:
        return None if recorded == NO_VERSION else recorded
    found = current_alias(name, alias)
    client.set_tag(run_id, ALIAS_TAG, found or NO_VERSION)
    return found


def recorded_alias(run_id: str) -> tuple[bool, str | None]:
    """(whether run ``run_id`` recorded the alias at its start, the version it recorded)."""
    from mlflow.tracking import MlflowClient

    value = MlflowClient().get_run(run_id).data.tags.get(ALIAS_TAG)
    return value is not None, (None if value in (None, NO_VERSION) else value)


def move_alias(name: str, alias: str, version: str, *, expected: str | None,
               run_id: str) -> AliasMove:
    """Point ``name@alias`` at ``version`` only if it still points at ``expected`` (None: no
    alias) or at a version run ``run_id`` registered; else leave it and say who has it.

    MLflow's registry has no compare-and-set: the alias is read right before it is set, which
    leaves a window of one request in which another writer can still slip in.
    """
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    found = current_alias(name, alias)
    owner = client.get_model_version(name, found).run_id if found is not None else None
    if found == expected or found == version or owner == run_id:
        client.set_registered_model_alias(name, alias, version)
        return AliasMove(True, found)
    by = f" (registered by run {owner})" if owner else ""
    was = f"version {expected}" if expected is not None else "no version"
    moved = f"moved to version {found}{by}" if found is not None else "removed"
    return AliasMove(False, found, (
        f"alias {alias} of {name} was {moved} while this run was going "
        f"(it pointed at {was} when the run started); left there; this run's version is "
        f"{version} (set it with `mlflow.MlflowClient().set_registered_model_alias("
        f"{name!r}, {alias!r}, {version!r})` or in the MLflow UI)"))
