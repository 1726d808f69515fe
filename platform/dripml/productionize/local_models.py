"""Models from a local folder (``file://...`` or a path), served or loaded only when asked.

A model is a pickle (cloudpickle): loading one runs whatever code it holds, with the
permissions of the process that loads it. A model from the MLflow Model Registry
(``NAME@alias``, ``models:/...``, ``runs:/...``) was put there by a training run of the store
you chose to trust; a folder on disk could hold anything. So :func:`dripml.api.serve`,
``drip serve`` and :func:`dripml.api.load_model` refuse a local folder unless the caller says
it trusts it (``allow_local=True``, ``--allow-local-model``). See ``SECURITY.md``.

A local model folder is either a dripml model bundle (``dripml-model.json`` and
``model.pkl``, written by :func:`dripml.productionize.serving.write_bundle`, what a serving
image bakes in) or an MLflow model (an ``MLmodel`` file, as ``mlflow.pyfunc.save_model``
writes a dripml model).

Pure path work: nothing here imports MLflow (the caller loads an MLflow folder).
"""

from __future__ import annotations

from pathlib import Path

from dripml.errors import ModelNotFoundError, ModelRefError

__all__ = ["BUNDLE", "MLFLOW", "check_allowed", "is_local", "local_kind", "local_path"]

BUNDLE = "bundle"
MLFLOW = "mlflow"

_PATH_PREFIXES = ("/", "./", "../", "~")

ALLOW_FLAG = "--allow-local-model (allow_local=True from Python)"
"""How a caller allows a local model, as the refusal words it."""


def is_local(ref: str) -> bool:
    """Whether ``ref`` names a local folder: a ``file:`` URI, or a path that is absolute or
    starts with ``./``, ``../`` or ``~`` (``adult/3`` is a registered model's version, not a
    path)."""
    value = ref.strip()
    return value.startswith("file:") or value.startswith(_PATH_PREFIXES) or value in (".", "..")


def local_path(ref: str) -> Path:
    """The absolute folder a local ``ref`` names (``file:///a/b`` -> ``/a/b``)."""
    value = ref.strip()
    if value.startswith("file://"):
        value = value.removeprefix("file://")
    elif value.startswith("file:"):
        value = value.removeprefix("file:")
    return Path(value).expanduser().resolve()


def check_allowed(ref: str, *, allow_local: bool, flag: str = ALLOW_FLAG) -> Path:
    """The folder of a local model ``ref``, once the caller has allowed local models.

    Args:
        ref: a ``file:`` URI or path (:func:`is_local`).
        allow_local: the caller trusts the folder's code.
        flag: how the caller allows it, for the message.

    Raises:
        ModelRefError: ``allow_local`` is False (the message says why and what to pass).
        ModelNotFoundError: the folder does not exist or holds no model.
    """
    if not allow_local:
        raise ModelRefError(
            f"{ref!r} is a model in a local folder, and loading a model unpickles it: its code "
            f"runs with your permissions. Serve or load it only if you trust where it came "
            f"from, with {flag}; models from the MLflow Model Registry (NAME@alias, "
            f"models:/NAME/VERSION) need no flag. See SECURITY.md")
    path = local_path(ref)
    local_kind(path)  # raises when there is no model
    return path


def local_kind(path: Path) -> str:
    """:data:`BUNDLE` or :data:`MLFLOW`: what kind of model folder ``path`` is.

    Raises:
        ModelNotFoundError: ``path`` is not a folder, or holds neither kind.
    """
    if not path.is_dir():
        raise ModelNotFoundError(f"no model folder at {path}: it does not exist or is not a "
                                 "folder")
    if (path / "dripml-model.json").is_file():
        return BUNDLE
    if (path / "MLmodel").is_file():
        return MLFLOW
    raise ModelNotFoundError(f"{path} holds no model: expected a dripml model bundle "
                             "(dripml-model.json, model.pkl; `drip build` exports one) or an "
                             "MLflow model (an MLmodel file)")
