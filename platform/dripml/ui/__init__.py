"""The web page (``drip ui``): recipes, a form per recipe, runs with live progress, results
with the quality-cost frontier, deploy, and the HTTP API behind it (``/api/docs``).

:func:`serve` runs it (blocking); :func:`create_app` builds the FastAPI app for tests.
Importing this package starts nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dripml.ui.settings import UiSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["UiSettings", "create_app", "serve"]


def create_app(settings: UiSettings) -> FastAPI:
    """The app for ``settings``; see :func:`dripml.ui.app.create_app`."""
    from dripml.ui.app import create_app as build

    return build(settings)


def serve(*, host: str = "127.0.0.1", port: int = 8080,
          recipe_dirs: list[str | Path] | tuple[str | Path, ...] | None = None,
          data_dir: str | Path = ".dripml/ui", tracking_uri: str | None = None,
          token: str | None = None, trusted_user_header: str | None = None,
          max_upload_mib: int = 200, deploy_target: str = "local",
          public_url: str | None = None, kfp_host: str | None = None,
          upload_uri: str | None = None) -> None:
    """Serve the page on ``host:port`` until Ctrl-C or SIGTERM (blocks).

    Args:
        host, port: where to listen; default 127.0.0.1:8080 (this machine only).
        recipe_dirs: folders recipes are read from (default ``./recipes`` and the shipped
            examples).
        data_dir: the UI's folder (run store ``ui.db``, ``uploads/``, ``runs/``).
        tracking_uri: the MLflow store runs write to (default as ``drip run``).
        token: the bearer token every request needs; default ``DRIPML_UI_TOKEN``.
        trusted_user_header: a header set by an authenticating ingress, e.g.
            ``X-Forwarded-User``.
        max_upload_mib: the largest upload, MiB.
        deploy_target: ``local`` or ``kubernetes``.
        public_url: the page's address as users reach it (for links in bundles).
        kfp_host: the Kubeflow Pipelines API: the page's runs are submitted there as
            Kubeflow pipeline runs (``drip pipeline submit``), not run in this process tree.
        upload_uri: with ``kfp_host``: ``s3://bucket/prefix`` the uploads are copied to
            (default ``DRIPML_UI_UPLOAD_URI``).

    Raises:
        SettingsError: a host beyond loopback with neither a token nor a trusted header
            (the message says what to set), a KFP host without an upload URI, or a setting
            out of range.
    """
    import uvicorn

    from dripml import api
    from dripml.ui import settings as ui_settings

    settings = ui_settings.load(
        host=host, port=port, recipe_dirs=recipe_dirs, data_dir=data_dir,
        tracking_uri=tracking_uri, token=token, trusted_user_header=trusted_user_header,
        max_upload_mib=max_upload_mib, deploy_target=deploy_target, public_url=public_url,
        kfp_host=kfp_host, upload_uri=upload_uri)
    warning = api.exposure_warning(host, port)
    if warning:
        guard = ("a token (DRIPML_UI_TOKEN) is required" if settings.token_value else
                 f"only requests carrying {settings.trusted_user_header} (set by the "
                 f"ingress) are let in: make sure nothing else can reach this port")
        print(warning.replace("the endpoint", "the UI").split(";")[0]
              + f"; {guard}; traffic is plain HTTP (put TLS in front)", flush=True)
    if settings.kfp_host:
        print(f"runs are submitted to Kubeflow Pipelines at {settings.kfp_host}; uploads "
              f"are copied to {settings.upload_uri}", flush=True)
    print(f"drip ui: http://{_shown(host)}:{port}/  (API docs: /api/docs)", flush=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning",
                proxy_headers=not ui_settings.is_loopback(host))


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host
