"""Tracking: MLflow experiments, runs, logged models and the Model Registry.

Layout: one experiment per spec name; a parent run per search; a child run per trial with its
params, per-fold metrics (``fold_<split>_<metric>`` at step = fold index) and aggregates
(``<split>_<metric>_mean`` / ``_std``); the refit model logged in the parent run with a
signature and input example, registered as a new model version and given an alias.

Embedded default: a SQLite store ``.dripml/mlflow.db`` and artifacts under
``.dripml/artifacts`` in the working directory. ``MLFLOW_TRACKING_URI`` or an explicit URI
(for example ``http://127.0.0.1:5000``) points at a server instead: the precedence of
:func:`dripml.settings.resolve_tracking_uri`, the one resolver (re-exported here).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import dripml
from dripml import settings
from dripml.core import refs
from dripml.core.model import TrainedModel, prediction_frame
from dripml.core.results import TrialResult
from dripml.core.spec import Spec, safe_key
from dripml.errors import ModelNotFoundError
from dripml.productionize.pyfunc import PyfuncModel

STATE_DIR = settings.STATE_DIR
MAX_PARAM_LENGTH = 6000

# The tracking URI has one resolver, in settings; these names stay importable from here.
default_tracking_uri = settings.default_tracking_uri
resolve_tracking_uri = settings.resolve_tracking_uri
absolute_tracking_uri = settings.absolute_tracking_uri


def configure(uri: str | None = None) -> str:
    """Point MLflow (tracking and registry) at ``uri`` (precedence of
    :func:`dripml.settings.resolve_tracking_uri`); create the embedded folder if used.
    Returns the URI used."""
    resolved = resolve_tracking_uri(uri)
    if resolved.startswith("sqlite:///"):
        Path(resolved.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(resolved)
    mlflow.set_registry_uri(resolved)
    return resolved


def _artifact_location(uri: str) -> str | None:
    # A server decides where artifacts go; the embedded store keeps them beside the database.
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return None


def ensure_experiment(name: str) -> str:
    """The id of experiment ``name``, created if missing (restored if deleted)."""
    client = MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(
            name, artifact_location=_artifact_location(mlflow.get_tracking_uri()))
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


@contextmanager
def search_run(spec: Spec, spec_text: str, tags: Mapping[str, str] | None = None
               ) -> Iterator[mlflow.ActiveRun]:
    """The parent run of one search, with ``tags`` added to dripml's own; ends FAILED if the
    block raises."""
    experiment_id = ensure_experiment(spec.name)
    run_name = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {**(tags or {}), "dripml.version": dripml.__version__, "dripml.kind": "search"}
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
        mlflow.log_params({
            "task": spec.task, "label": spec.data.label, "k_fold": spec.k_fold.n_splits,
            "search": spec.search.algorithm, "num_trials": spec.num_trials or "grid",
            "early_stopping": spec.search.early_stopping,
            "algorithms": ",".join(a.key for a in spec.algorithms),
            "cpus_per_trial": spec.resources.cpus_per_trial,
            "gpus_per_trial": spec.resources.gpus_per_trial,
            "refine_top_k": spec.refine.top_k,
            "select_policy": spec.select.policy, "select_cost": spec.select.cost,
            **({"select_within_pct": spec.select.within_pct}
               if spec.select.within_pct is not None else {}),
            **{f"constraint_{k}": v for k, v in spec.constraints.active.items()},
        })
        mlflow.log_text(spec_text, "spec.yaml")
        yield run


def log_trial(parent_run_id: str, trial: TrialResult) -> str:
    """Log one trial as a child run of ``parent_run_id``; returns the child run id."""
    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED"}[trial.state]
    child = client.create_run(
        parent.info.experiment_id,
        run_name=f"trial-{trial.number:03d}-{trial.algorithm}",
        tags={"mlflow.parentRunId": parent_run_id, "dripml.kind": "trial",
              "dripml.trial_state": trial.state, "dripml.algorithm": trial.algorithm},
    )
    now = int(time.time() * 1000)
    params = [Param("algorithm", trial.algorithm_name)] + [
        Param(safe_key(k), _param_value(v)) for k, v in sorted(trial.params.items())]
    if trial.encoding:
        params.append(Param("encoding", trial.encoding[:6000]))
    values = [Metric(f"fold_{safe_key(k)}", v, now, f.fold)
              for f in trial.folds for k, v in f.metrics.items() if _finite(v)]
    values += [Metric(f"{safe_key(k)}_mean", v, now, 0) for k, v in trial.mean.items()
               if _finite(v)]
    values += [Metric(f"{safe_key(k)}_std", v, now, 0) for k, v in trial.std.items()
               if _finite(v)]
    values.append(Metric("fit_time_s", trial.fit_time_s, now, 0))
    # Successive halving's sample fits, stepped by their training rows.
    values += [Metric(f"halving_{safe_key(k)}", v, now, i) for i, f in enumerate(trial.rungs)
               for k, v in f.metrics.items() if k.startswith("validation_") and _finite(v)]
    values += [Metric(f"probe_{k}", v, now, 0) for k, v in trial.probe.items() if _finite(v)]
    tags = [RunTag("dripml.error", trial.error[-4000:])] if trial.error else []
    if trial.reason:
        tags.append(RunTag("dripml.pruned_reason", trial.reason[-4000:]))
    client.log_batch(child.info.run_id, metrics=values, params=params, tags=tags)
    client.set_terminated(child.info.run_id, status=status)
    return child.info.run_id


def _param_value(value: Any) -> str:
    return json.dumps(value)[:MAX_PARAM_LENGTH] if not isinstance(value, str) else value


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class RegisteredModel:
    """Where the refit model landed: ``models:/<name>@<alias>`` resolves to ``version``."""

    name: str
    version: str
    alias: str
    model_uri: str
    run_id: str

    @property
    def alias_uri(self) -> str:
        return f"models:/{self.name}@{self.alias}"


def pip_requirements(algorithm: str | TrainedModel) -> list[str]:
    """Pinned runtime requirements of a model: the ML stack it needs, nothing more.

    MLflow's inference lists torch for a scikit-learn model and takes 10 to 20 s; pinning
    keeps serving images small.

    Args:
        algorithm: an algorithm name, or the model (then a custom class's declared
            ``requirements`` count too); the extras are the declaration's ``requirements``
            (see :mod:`dripml.algorithms`), none for an unknown name.
    """
    from dripml.algorithms import registry

    packages = ["scikit-learn", "numpy", "pandas", "scipy", "cloudpickle", "threadpoolctl"]
    declaration = (registry.find(algorithm) if isinstance(algorithm, str)
                   else registry.for_model(algorithm))
    for package in declaration.requirements if declaration is not None else ():
        if package not in packages:
            packages.append(package)
    pins = []
    for package in packages:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


def log_and_register(model: TrainedModel, example: pd.DataFrame, spec: Spec,
                     tags: dict[str, str], *, set_alias: bool = True) -> RegisteredModel:
    """Log ``model`` in the active run, register a new version and (with ``set_alias``)
    point the alias at it."""
    version = log_version(model, example, spec, tags)
    if set_alias:
        set_model_alias(spec.model_name, spec.registry.alias, version)
    run_id = mlflow.active_run().info.run_id
    return RegisteredModel(spec.model_name, version, spec.registry.alias,
                           f"models:/{spec.model_name}/{version}", run_id)


def log_version(model: TrainedModel, example: pd.DataFrame, spec: Spec, tags: dict[str, str],
                *, name: str = "model") -> str:
    """Log ``model`` in the active run as ``name`` and register it as a new version of the
    spec's model with ``tags``; no alias moves. Returns the version."""
    example = input_example(example, model)
    signature = infer_signature(example, prediction_frame(model.predict_frame(example)))
    info = mlflow.pyfunc.log_model(
        name=name,
        python_model=PyfuncModel(model),
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(model),
        registered_model_name=spec.model_name,
    )
    version = str(info.registered_model_version)
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(spec.model_name, version, key, value)
    return version


def input_example(frame: pd.DataFrame, model: TrainedModel, rows: int = 5) -> pd.DataFrame:
    """A few complete rows with numeric features as float (missing values are allowed)."""
    complete = frame.dropna()
    example = (complete if len(complete) >= rows else frame).head(rows).copy()
    for feature in model.encoder.features:
        if feature.kind == "numeric":
            example[feature.name] = example[feature.name].astype("float64")
        else:
            example[feature.name] = example[feature.name].astype(object)
    return example.reset_index(drop=True)


def parse_model_ref(ref: str, default_alias: str = refs.DEFAULT_ALIAS) -> str:
    """``NAME``, ``NAME@alias``, ``NAME/version``, a ``models:/`` URI or ``runs:/RUN_ID/PATH``
    -> the model URI (:func:`dripml.core.refs.model_uri`).

    Raises:
        ModelRefError: none of those forms.
    """
    return refs.model_uri(ref, default_alias)


def resolve_version(model_uri: str) -> tuple[str, str]:
    """(name, version) of a registered model reference (``models:/NAME@alias``,
    ``models:/NAME/3`` or any form of :meth:`dripml.core.refs.ModelRef.parse`).

    Raises:
        ModelRefError: ``model_uri`` is none of those forms.
        ModelNotFoundError: the model, version or alias does not exist (the message lists the
            registered models or the model's aliases).
    """
    ref = refs.ModelRef.parse(model_uri)
    client = MlflowClient()
    try:
        if ref.alias is not None:
            found = client.get_model_version_by_alias(ref.name, ref.alias)
        else:
            found = client.get_model_version(ref.name, ref.version)
        return ref.name, str(found.version)  # MLflow gives an int or a str, by store
    except MlflowException:
        names = [m.name for m in client.search_registered_models()]
        raise ModelNotFoundError(
            f"{model_uri!r} is not in the Model Registry at {mlflow.get_tracking_uri()}; "
            f"registered models: {names or 'none'} (see `drip models`)") from None


def load_trained_model(model_uri: str) -> TrainedModel:
    """Load a dripml model from MLflow (``models:/name@alias``, ``models:/name/3``, ``runs:/``)."""
    if model_uri.startswith(refs.SCHEME):
        name, version = resolve_version(model_uri)
        model_uri = refs.ModelRef(name, version=version).uri
    pyfunc = mlflow.pyfunc.load_model(model_uri)
    wrapped = pyfunc.unwrap_python_model()
    if not isinstance(wrapped, PyfuncModel):
        raise ModelNotFoundError(f"{model_uri!r} is not a dripml model")
    return wrapped.model


def _aliases_by_version(aliases: Any) -> dict[str, tuple[str, ...]]:
    items = aliases.items() if isinstance(aliases, dict) else (
        (a.alias, a.version) for a in aliases)
    by_version: dict[str, tuple[str, ...]] = {}
    for alias, version in sorted(items):
        by_version[str(version)] = (*by_version.get(str(version), ()), alias)
    return by_version


@dataclass(frozen=True)
class ModelSummary:
    """One registered model version as listed by ``drip models``."""

    name: str
    version: str
    aliases: tuple[str, ...]
    algorithm: str
    created: str
    run_id: str
    metrics: dict[str, float]


def list_models() -> list[ModelSummary]:
    """Every version of every registered model, newest first per model."""
    client = MlflowClient()
    rows = []
    for registered in client.search_registered_models():
        # search_model_versions leaves ModelVersion.aliases empty; the model holds the map.
        aliases = _aliases_by_version(registered.aliases)
        for version in client.search_model_versions(f"name='{registered.name}'"):
            run_metrics: dict[str, float] = {}
            if version.run_id:
                try:
                    run = client.get_run(version.run_id)
                    run_metrics = {k: v for k, v in run.data.metrics.items()
                                   if k.startswith("test_")}
                except MlflowException:
                    pass
            rows.append(ModelSummary(
                name=registered.name, version=str(version.version),
                aliases=aliases.get(str(version.version), ()),
                algorithm=version.tags.get("algorithm", ""),
                created=time.strftime("%Y-%m-%d %H:%M",
                                      time.localtime(version.creation_timestamp / 1000)),
                run_id=version.run_id or "", metrics=run_metrics))
    rows.sort(key=lambda r: (r.name, -int(r.version)))
    return rows


def set_model_alias(name: str, alias: str, version: str) -> RegisteredModel:
    """Point ``name@alias`` at ``version`` (which must exist) and return where it points."""
    client = MlflowClient()
    found = client.get_model_version(name, version)
    client.set_registered_model_alias(name, alias, version)
    return RegisteredModel(name, version, alias, f"models:/{name}/{version}", found.run_id)


def find_search_run(experiment: str, tags: Mapping[str, str]) -> str:
    """The id of the newest search run of ``experiment`` that carries every tag in ``tags``.

    Raises:
        ModelNotFoundError: no such run.
    """
    found = mlflow.search_runs(
        experiment_names=[experiment], output_format="list", max_results=1,
        filter_string=" and ".join([f"tags.`{k}` = '{v}'" for k, v in tags.items()]
                                   + ["tags.`dripml.kind` = 'search'"]),
        order_by=["attributes.start_time DESC"])
    if not found:
        raise ModelNotFoundError(f"no search run in experiment {experiment!r} has the tags "
                                 f"{dict(tags)}")
    return found[0].info.run_id


def chosen_version(name: str, run_id: str) -> str:
    """The model version of ``name`` that search run ``run_id`` chose (tag dripml.chosen).

    Raises:
        ModelNotFoundError: the run registered no chosen version of ``name``.
    """
    versions = MlflowClient().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    chosen = [v.version for v in versions if v.tags.get("dripml.chosen") == "true"]
    if not chosen:
        raise ModelNotFoundError(f"run {run_id} registered no chosen version of model {name!r}")
    return str(max(int(v) for v in chosen))

