"""What the page's routes work with, built once per app (``app.state.services``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dripml.ui import bundle as bundles
from dripml.ui.deployments import Deployments
from dripml.ui.frontier_plot import frontier_svg
from dripml.ui.settings import UiSettings
from dripml.ui.uploads import Uploads

if TYPE_CHECKING:
    from dripml.orchestration.run_queue import RunQueue
    from dripml.orchestration.run_store import RunStore, RunView
    from dripml.recipes import Recipe


@dataclass
class Services:
    """The UI's collaborators.

    Attributes:
        settings: the :class:`UiSettings`.
        store: the run store (SQL). queue: the local run queue (its worker starts with the
            app). uploads: the upload folder. deployments: the endpoints started here.
    """

    settings: UiSettings
    store: RunStore
    queue: RunQueue
    uploads: Uploads
    deployments: Deployments
    extra: dict[str, Any] = field(default_factory=dict)

    def recipes(self) -> dict[str, Recipe]:
        """Name -> recipe, re-read from the configured folders on each call (cheap).

        Raises:
            RecipeError: a malformed recipe file (names the file and field).
        """
        from dripml.recipes import find_recipes

        return find_recipes(self.settings.resolved_recipe_dirs())

    def run_dir(self, run_id: str) -> Path:
        return self.queue.run_dir(run_id)

    def spec_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "spec.yaml"

    def frontier_svg(self, run: RunView, picked: int | None = None) -> str:
        """The run's frontier as SVG, each registered version a link ``?version=N``."""
        return frontier_svg(run.frontier or [], picked=picked,
                            title=f"{run.recipe}: quality against p99 latency (click to pick)")

    def bundle(self, run: RunView) -> bytes:
        """The "Ask a scientist" zip (spec, knobs, metrics, leaderboard, frontier, README)."""
        return bundles.bundle(run, spec_path=self.spec_path(run.id),
                              page_url=self.settings.public_url)

    def start(self) -> None:
        self.queue.start()

    def stop(self) -> None:
        try:
            self.queue.stop()
        finally:
            self.deployments.stop_all()


def create_services(settings: UiSettings) -> Services:
    """The store (``ui.db`` in the data folder unless ``store_url``), queue, uploads and
    deployments for ``settings``; starts nothing."""
    from dripml.orchestration.run_queue import RunQueue
    from dripml.orchestration.run_store import RunStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = RunStore(settings.resolved_store_url())
    queue = RunQueue(store, settings.data_dir, tracking_uri=settings.tracking_uri)
    if settings.kfp_host:  # cluster mode: Kubeflow pipeline runs, uploads on S3
        from dripml.orchestration.kfp_runs import KfpRuns
        from dripml.ui.settings import check_cluster_mode

        check_cluster_mode(settings)
        assert settings.upload_uri is not None
        queue.submitter = KfpRuns(store, queue.run_dir, host=settings.kfp_host,
                                  upload_uri=settings.upload_uri,
                                  tracking_uri=settings.tracking_uri)
    uploads = Uploads(settings.data_dir / "uploads", max_bytes=settings.max_upload_bytes)
    return Services(settings=settings, store=store, queue=queue, uploads=uploads,
                    deployments=Deployments(settings))
