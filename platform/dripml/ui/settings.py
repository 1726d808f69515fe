"""The web page's settings (``drip ui``): where it listens, where it keeps its state, what
guards it. Read once, from arguments and ``DRIPML_UI_TOKEN``; nothing else reads the
environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from dripml.core.network import is_loopback
from dripml.errors import SettingsError

TOKEN_VARIABLE = "DRIPML_UI_TOKEN"
"""The environment variable holding the UI's bearer token."""
DATABASE_VARIABLE = "DRIPML_UI_DATABASE_URL"
"""The environment variable holding the run store's SQLAlchemy URL (it may hold a password)."""
UPLOAD_URI_VARIABLE = "DRIPML_UI_UPLOAD_URI"
"""The environment variable naming where uploads go for cluster runs (``s3://bucket/prefix``)."""
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""In a pod: the namespace it runs in (where Deploy puts endpoints)."""
DEFAULT_NAMESPACE = "dripml"

DEFAULT_DATA_DIR = Path(".dripml/ui")


class UiSettings(BaseModel):
    """What ``drip ui`` serves and how.

    Attributes:
        host, port: where to listen (default 127.0.0.1:8080, loopback only).
        recipe_dirs: folders the recipes are loaded from, earlier first (default ``./recipes``
            and the shipped examples); a recipe is only ever named, never a path.
        data_dir: the UI's folder: ``ui.db`` (the run store), ``uploads/``, ``runs/``.
        tracking_uri: the MLflow store the runs write to (default as ``drip run``).
        token: the bearer token every request needs (``DRIPML_UI_TOKEN``); required when
            listening beyond loopback unless ``trusted_user_header`` is set.
        trusted_user_header: a header an authenticating ingress sets (``X-Forwarded-User``);
            a request carrying it is let in.
        max_upload_mib: the largest upload, MiB (a larger one gets a 413).
        deploy_target: ``local`` (an endpoint on 127.0.0.1) or ``kubernetes`` (``drip deploy
            --target kubernetes``).
        public_url: the page's address as users reach it (links in the bundle).
        database_url: the run store's SQLAlchemy URL (``DRIPML_UI_DATABASE_URL``, e.g.
            ``postgresql+psycopg2://...``; default ``sqlite:///<data_dir>/ui.db``).
        kfp_host: the Kubeflow Pipelines API on a cluster (``--kfp-host``): runs are
            submitted there as Kubeflow pipeline runs instead of running in the UI's own
            process tree (embedded Ray).
        upload_uri: with ``kfp_host`` (required then): ``s3://bucket/prefix`` each upload is
            copied to (``<prefix>/<upload id>.<ext>``), where the pipeline's pods read it
            (``--upload-uri``, ``DRIPML_UI_UPLOAD_URI``; S3 credentials as boto3 finds
            them, endpoint ``AWS_ENDPOINT_URL``).
        namespace: where a Kubernetes Deploy goes (default: the pod's own namespace, else
            ``dripml``).
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    recipe_dirs: list[Path] = Field(default_factory=list)
    data_dir: Path = DEFAULT_DATA_DIR
    tracking_uri: str | None = None
    token: SecretStr | None = None
    trusted_user_header: str | None = None
    max_upload_mib: int = Field(200, ge=1)
    deploy_target: Literal["local", "kubernetes"] = "local"
    public_url: str | None = None
    database_url: SecretStr | None = None
    kfp_host: str | None = None
    upload_uri: str | None = None
    namespace: str | None = None

    @property
    def max_upload_bytes(self) -> int:
        return self.max_upload_mib * 1024 * 1024

    @property
    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token else None

    @property
    def auth_required(self) -> bool:
        return bool(self.token_value or self.trusted_user_header)

    def resolved_recipe_dirs(self) -> list[Path]:
        """The configured recipe folders, or the defaults (``./recipes``, shipped examples)."""
        if self.recipe_dirs:
            return list(self.recipe_dirs)
        from dripml.recipes import default_recipe_dirs

        return default_recipe_dirs()

    def resolved_store_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir.resolve() / 'ui.db'}"

    def resolved_namespace(self) -> str:
        """``namespace``, else the pod's namespace (service account file), else ``dripml``."""
        if self.namespace:
            return self.namespace
        try:
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
        except OSError:
            return DEFAULT_NAMESPACE


def load(*, host: str = "127.0.0.1", port: int = 8080,
         recipe_dirs: list[str | Path] | tuple[str | Path, ...] | None = None,
         data_dir: str | Path = DEFAULT_DATA_DIR, tracking_uri: str | None = None,
         token: str | None = None, trusted_user_header: str | None = None,
         max_upload_mib: int = 200, deploy_target: str = "local",
         public_url: str | None = None, kfp_host: str | None = None,
         database_url: str | None = None, environ: Mapping[str, str] | None = None,
         upload_uri: str | None = None) -> UiSettings:
    """The settings from arguments, the token defaulting to ``DRIPML_UI_TOKEN`` and the
    database URL to ``DRIPML_UI_DATABASE_URL``, the upload URI to ``DRIPML_UI_UPLOAD_URI``.

    Raises:
        SettingsError: a field out of range (names it), a host beyond loopback with
            neither a token nor a trusted user header, or a KFP host without an
            ``s3://`` upload URI (says what to set).
    """
    from pydantic import ValidationError

    env = os.environ if environ is None else environ
    token = token or env.get(TOKEN_VARIABLE) or None
    database_url = database_url or env.get(DATABASE_VARIABLE) or None
    upload_uri = upload_uri or env.get(UPLOAD_URI_VARIABLE) or None
    try:
        settings = UiSettings(
            host=host, port=port, recipe_dirs=[Path(d) for d in recipe_dirs or ()],
            data_dir=Path(data_dir), tracking_uri=tracking_uri,
            token=SecretStr(token) if token else None,
            trusted_user_header=trusted_user_header or None, max_upload_mib=max_upload_mib,
            deploy_target=deploy_target, public_url=public_url, kfp_host=kfp_host or None,
            database_url=SecretStr(database_url) if database_url else None,
            upload_uri=upload_uri)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in error.errors())
        raise SettingsError(f"drip ui: {problems}") from None
    check_exposure(settings)
    check_cluster_mode(settings)
    return settings


def check_cluster_mode(settings: UiSettings) -> None:
    """With a KFP host, require an ``s3://`` upload URI (the pipeline's pods cannot read the
    UI's own folder).

    Raises:
        SettingsError: what to set.
    """
    if not settings.kfp_host:
        return
    uri = settings.upload_uri or ""
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        got = f" (got {uri!r})" if uri else ""
        raise SettingsError(
            f"drip ui --kfp-host {settings.kfp_host}: the pipeline's pods must read the "
            f"uploads, so set --upload-uri s3://BUCKET/PREFIX (or {UPLOAD_URI_VARIABLE}; "
            f"chart value ui.uploadUri){got}, with S3 credentials in the environment "
            f"(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for MinIO)")


def check_exposure(settings: UiSettings) -> None:
    """Refuse a host beyond loopback without a token or a trusted user header.

    Raises:
        SettingsError: what to set.
    """
    if is_loopback(settings.host) or settings.auth_required:
        return
    raise SettingsError(
        f"drip ui refuses to listen on {settings.host!r} (beyond loopback) without "
        f"authentication: set {TOKEN_VARIABLE} (a long random token, e.g. from `python -c "
        f"'import secrets; print(secrets.token_urlsafe(32))'`), or pass "
        f"--trusted-user-header X-Forwarded-User behind an ingress that authenticates users, "
        f"or listen on 127.0.0.1")
