"""Where to look at a run: the MLflow UI's address of a run, for a server or a local store.

For an ``http(s)://`` tracking server the UI is the server itself. A local store (SQLite or a
folder) has no UI until one is started: the link then carries the ``mlflow ui`` command that
serves it and the address that command serves it at.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

__all__ = ["LOCAL_UI", "RunLink", "run_link"]

LOCAL_UI = "http://127.0.0.1:5000"
"""Where ``mlflow ui`` serves by default."""


@dataclass(frozen=True)
class RunLink:
    """An MLflow run and where to open it.

    Attributes:
        run_id, experiment_id: the run and its experiment.
        url: the run's page, ``<ui>/#/experiments/<experiment_id>/runs/<run_id>``; None for a
            store with no UI address (``databricks``...).
        open_command: for a local store, the shell command that starts the UI at ``url``
            (``mlflow ui --backend-store-uri ...``); None for a server.
    """

    run_id: str
    experiment_id: str
    url: str | None
    open_command: str | None = None

    def text(self) -> str:
        """One line: ``<url>`` or ``<url> (after: <open_command>)``; the run id alone if no url."""
        if self.url is None:
            return f"run {self.run_id}"
        return self.url if self.open_command is None else (
            f"{self.url} (after: {self.open_command})")


def run_link(tracking_uri: str, experiment_id: str, run_id: str) -> RunLink:
    """The page of run ``run_id`` of experiment ``experiment_id`` in the MLflow UI of
    ``tracking_uri``: the server's own address for ``http(s)://``, :data:`LOCAL_UI` with the
    ``mlflow ui`` command for a ``sqlite:``/``file:`` URI or a plain folder."""
    page = f"/#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return RunLink(run_id, experiment_id, tracking_uri.rstrip("/") + page)
    if tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri:
        command = f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"
        return RunLink(run_id, experiment_id, LOCAL_UI + page, command)
    return RunLink(run_id, experiment_id, None)
