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
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

import dripml
from dripml import settings
from dripml.core import refs, resume
from dripml.core.model import TrainedModel, prediction_frame
from dripml.core.results import TrialResult
from dripml.core.spec import Spec, safe_key
from dripml.errors import ModelNotFoundError
from dripml.productionize import store
from dripml.productionize.pyfunc import PyfuncModel

if TYPE_CHECKING:
    from dripml.core.data import Dataset

STATE_DIR = settings.STATE_DIR
MAX_PARAM_LENGTH = 6000
MAX_DESCRIPTION_LENGTH = 5000
"""Longest model version description (MLflow's SQL stores hold 5,000 characters)."""

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
    store.apply_http_defaults()  # MLflow's HTTP calls bounded in time (user's values win)
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
def search_run(spec: Spec, spec_text: str, tags: Mapping[str, str] | None = None,
               *, resume_run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """The parent run of one search, with ``tags`` added to dripml's own; ends FAILED if the
    block raises. ``resume_run_id``: reopen that (unfinished) run instead, its status back
    to RUNNING, its params and spec as they were logged (``tags`` are set again)."""
    experiment_id = ensure_experiment(spec.name)
    run_name = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    tags = {**(tags or {}), "dripml.version": dripml.__version__, "dripml.kind": "search"}
    if resume_run_id is not None:
        with mlflow.start_run(run_id=resume_run_id) as run:
            mlflow.set_tags(tags)
            yield run
        return
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
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAILED": "FAILED",
              "INTERRUPTED": "KILLED"}[trial.state]
    # The child run spans the trial's real wall-clock time (its fits' start to end), not
    # the moment the driver logs it.
    now = int(time.time() * 1000)
    end = trial.end_time_ms if trial.end_time_ms is not None else now
    start = min(trial.start_time_ms if trial.start_time_ms is not None else end, end)
    child = client.create_run(
        parent.info.experiment_id,
        run_name=f"trial-{trial.number:03d}-{trial.algorithm}",
        start_time=start,
        tags={"mlflow.parentRunId": parent_run_id, "dripml.kind": "trial",
              "dripml.trial_state": trial.state, "dripml.algorithm": trial.algorithm},
    )
    params = [Param("algorithm", trial.algorithm_name)] + [
        Param(safe_key(k), _param_value(v)) for k, v in sorted(trial.params.items())]
    if trial.preprocess is not None:  # the data.preprocess choice of a search over several
        params.append(Param("preprocess", trial.preprocess))
    if trial.encoding:
        params.append(Param("encoding", trial.encoding[:6000]))
    values = [Metric(f"fold_{safe_key(k)}", v, f.ended_ms or end, f.fold)
              for f in trial.folds for k, v in f.metrics.items() if _finite(v)]
    values += [Metric(f"{safe_key(k)}_mean", v, end, 0) for k, v in trial.mean.items()
               if _finite(v)]
    values += [Metric(f"{safe_key(k)}_std", v, end, 0) for k, v in trial.std.items()
               if _finite(v)]
    values.append(Metric("fit_time_s", trial.fit_time_s, end, 0))
    # Successive halving's sample fits, stepped by their training rows.
    values += [Metric(f"halving_{safe_key(k)}", v, end, i) for i, f in enumerate(trial.rungs)
               for k, v in f.metrics.items() if k.startswith("validation_") and _finite(v)]
    values += [Metric(f"probe_{k}", v, end, 0) for k, v in trial.probe.items() if _finite(v)]
    tags = [RunTag("dripml.error", trial.error[-4000:])] if trial.error else []
    if trial.reason:
        tags.append(RunTag("dripml.pruned_reason", trial.reason[-4000:]))
    # What a resumed search reads back (dripml.core.resume), and the retries of lost workers.
    if trial.state != "INTERRUPTED":  # cut short by a signal: a resumed search reruns it
        tags += [RunTag(k, v) for k, v in resume.record_tags(trial).items()]
    tags.append(RunTag("dripml.trial_number", str(trial.number)))
    values.append(Metric("fold_retries", trial.fold_retries, end, 0))
    client.log_batch(child.info.run_id, metrics=values, params=params, tags=tags)
    client.set_terminated(child.info.run_id, status=status, end_time=end)
    return child.info.run_id


TRAINING_CONTEXT = "training"
TESTING_CONTEXT = "testing"


def log_datasets(dataset: Dataset, spec: Spec) -> dict[str, Any]:
    """Log the training and test rows (features and label, as the model saw them: sampled,
    split) as dataset inputs of the active run, contexts ``training`` and ``testing``.

    Each carries MLflow's digest (a hash of up to 10,000 rows), the column schema, its
    row count and its source: the spec's file (a ``dataset://`` name resolved to its cached
    Parquet file; the test rows of a split-off test set name the training file).

    Returns:
        context -> the ``mlflow.data`` dataset logged (pass one as ``dataset=`` to
        :func:`mlflow.log_metrics` to tie metrics to it).
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    label = spec.data.label
    test_source = spec.data.test or spec.data.train
    logged: dict[str, Any] = {}
    tags: list[dict[str, str] | None] = []
    for context, X, y, source, split in (
            (TRAINING_CONTEXT, dataset.X_train, dataset.y_train, spec.data.train, "train"),
            (TESTING_CONTEXT, dataset.X_test, dataset.y_test, test_source, "test")):
        frame = X.copy()
        frame[label] = (y if not dataset.classes
                        else pd.Series(dataset.classes, dtype=object).to_numpy()[y])
        with warnings.catch_warnings():  # MLflow's own pandas deprecations, source guesses
            warnings.simplefilter("ignore")
            logged[context] = _dataset_class()(
                frame, source=resolve_dataset_source(_data_source(source)), targets=label,
                name=f"{spec.name}-{split}")
        tags.append({"rows": str(len(frame)), "spec_source": source,
                     **({"split_from": spec.data.train, "test_fraction":
                         str(spec.data.effective_test_fraction), "seed": str(spec.data.seed)}
                        if split == "test" and spec.data.test is None else {})})
    mlflow.log_inputs(datasets=list(logged.values()), contexts=list(logged), tags_list=tags)
    return logged


SCHEMA_ROWS = 1_000
"""Rows a logged dataset's column schema is inferred from (MLflow's own inference looks at
every value of a string column: 1 s for Adult's 48,842 rows)."""


@cache
def _dataset_class() -> type:
    from mlflow.data.pandas_dataset import PandasDataset

    class SampledSchemaDataset(PandasDataset):
        """MLflow's pandas dataset (digest of up to 10,000 rows, row count), its schema
        inferred from the first :data:`SCHEMA_ROWS` rows."""

        @cached_property
        def schema(self) -> Any:
            try:
                with warnings.catch_warnings():  # integer columns are long on purpose
                    warnings.simplefilter("ignore")
                    return infer_signature(self.df.head(SCHEMA_ROWS)).inputs
            except MlflowException:
                return None

    return SampledSchemaDataset


def _data_source(source: str) -> str:
    # MLflow resolves a path or URI to a dataset source; a dataset:// name is dripml's own.
    from dripml.core import datasets

    if datasets.is_dataset_uri(source):
        return str(datasets.resolve(source))
    if "://" in source:
        return source
    return str(Path(source).expanduser().resolve())


def _param_value(value: Any) -> str:
    return json.dumps(value)[:MAX_PARAM_LENGTH] if not isinstance(value, str) else value


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True)
class RegisteredModel:
    """Where the refit model landed: ``models:/<name>@<alias>`` resolves to ``version``,
    unless ``alias_conflict`` says why the alias was left where another writer put it."""

    name: str
    version: str
    alias: str
    model_uri: str
    run_id: str
    alias_conflict: str = ""

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
            (see :mod:`dripml.algorithms`), none for an unknown name; a model's
            ``data.preprocess`` and ``postprocess`` add the distributions their modules
            import (:func:`dripml.core.preprocess.module_requirements`).
    """
    from dripml.algorithms import registry

    packages = ["scikit-learn", "numpy", "pandas", "scipy", "cloudpickle", "threadpoolctl"]
    declaration = (registry.find(algorithm) if isinstance(algorithm, str)
                   else registry.for_model(algorithm))
    extras = list(declaration.requirements if declaration is not None else ())
    if not isinstance(algorithm, str):  # an ensemble's estimator lists its members' needs
        extras += getattr(algorithm.fitted.recipe.estimator, "requirements", None) or ()
        # what data.preprocess and postprocess import (their own code travels by value)
        for step in (getattr(algorithm, "preprocessor", None),
                     getattr(algorithm, "postprocessor", None)):
            extras += step.requirements if step is not None else ()
    for package in extras:
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
                     tags: dict[str, str], *, set_alias: bool = True,
                     description: str | None = None) -> RegisteredModel:
    """Log ``model`` in the active run, register a new version (with ``tags`` and
    ``description``, see :func:`log_version`) and (with ``set_alias``) point the alias at
    it: only if it still points where the run found it when it recorded that
    (:func:`dripml.productionize.store.move_alias`), else ``alias_conflict`` says who has it."""
    version = log_version(model, example, spec, tags, description=description)
    run_id = mlflow.active_run().info.run_id
    conflict = ""
    if set_alias:
        recorded, expected = store.recorded_alias(run_id)
        if recorded:
            conflict = store.move_alias(spec.model_name, spec.registry.alias, version,
                                        expected=expected, run_id=run_id).message
        else:
            set_model_alias(spec.model_name, spec.registry.alias, version)
    return RegisteredModel(spec.model_name, version, spec.registry.alias,
                           f"models:/{spec.model_name}/{version}", run_id, conflict)


def log_version(model: TrainedModel, example: pd.DataFrame, spec: Spec, tags: dict[str, str],
                *, name: str = "model", description: str | None = None) -> str:
    """Log ``model`` in the active run as ``name`` and register it as a new version of the
    spec's model with ``tags`` (and ``description``, Markdown, at most
    :data:`MAX_DESCRIPTION_LENGTH` characters); no alias moves. Returns the version."""
    example = input_example(example, model)
    with warnings.catch_warnings():
        # Integer columns are long on purpose (they match the data); MLflow hints at doubles.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        signature = infer_signature(example, prediction_frame(model.predict_frame(example),
                                                              outputs=True))
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
    if description:
        client.update_model_version(spec.model_name, version,
                                    description=description[:MAX_DESCRIPTION_LENGTH])
    return version


def input_example(frame: pd.DataFrame, model: TrainedModel, rows: int = 5) -> pd.DataFrame:
    """A few complete rows of ``frame``, typed as ``frame`` is, so that the signature MLflow
    infers from them accepts ``frame`` itself: integer columns without missing values stay
    int64 (``long``), other numbers float64 (``double``, missing values allowed), booleans
    bool, datetimes datetime64, everything else strings (object)."""
    complete = frame.dropna()
    example = (complete if len(complete) >= rows else frame).head(rows).copy()
    for feature in model.input_features:
        column = frame[feature.name]
        example[feature.name] = example[feature.name].astype(_example_dtype(column,
                                                                            feature.kind))
    return example.reset_index(drop=True)


def _example_dtype(column: pd.Series, kind: str) -> Any:
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype) and not column.isna().any():
        return "bool"
    if kind == "numeric" or pd.api.types.is_numeric_dtype(dtype):
        integer = (pd.api.types.is_integer_dtype(dtype)
                   and not pd.api.types.is_bool_dtype(dtype) and not column.isna().any())
        return "int64" if integer else "float64"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return dtype
    return object


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


COST_TAGS = ("latency_p50_ms", "latency_p99_ms", "throughput_rows_s", "model_mb", "memory_mb",
             "cost_per_million")
"""Model version tags holding what Refine measured of that version (see
:func:`dripml.refine.stage.version_tags`); units in the names (MB are 10^6 bytes)."""
TEST_METRIC_PREFIX = "test_"
DESCRIPTION_SUMMARY_LENGTH = 160


@dataclass(frozen=True)
class ModelSummary:
    """One registered model version as listed by ``drip models``.

    Attributes:
        name, version: the registered model and its version (a string of digits).
        aliases: the aliases pointing at this version (``champion``...), sorted.
        algorithm: the algorithm key of the version ("" if not a dripml version).
        created: when the version was registered, local time ``YYYY-MM-DD HH:MM``.
        run_id: the MLflow run that logged it (a search's parent run).
        test_metrics: this version's own model on the test split, ``test_<metric>`` ->
            value (from its version tags; a version registered before dripml tagged them
            shows its run's test metrics only if it was that run's chosen model, else {}).
        cv_metric: the CV objective's key (``validation_roc_auc``...); None if unknown.
        cv_score: the mean of ``cv_metric`` over the folds of its trial; None if unknown.
        costs: what Refine measured for it, by :data:`COST_TAGS` name (``latency_p50_ms``,
            ``latency_p99_ms``, ``throughput_rows_s``, ``model_mb``, ``memory_mb``,
            ``cost_per_million``); only those measured.
        description: the first line of its description (its model card's title), at most
            160 characters; "" without one.
    """

    name: str
    version: str
    aliases: tuple[str, ...]
    algorithm: str
    created: str
    run_id: str
    test_metrics: dict[str, float]
    cv_metric: str | None = None
    cv_score: float | None = None
    costs: dict[str, float] = field(default_factory=dict)
    description: str = ""


def list_models() -> list[ModelSummary]:
    """Every version of every registered model, newest first per model.

    Reads the registry with two paged queries (registered models for the aliases, model
    versions with their tags), whatever the number of versions; only versions registered
    before dripml tagged their test metrics cost one run lookup each (chosen ones only).
    """
    client = MlflowClient()
    aliases: dict[str, dict[str, tuple[str, ...]]] = {}
    for registered in _all_pages(client.search_registered_models):
        # search_model_versions leaves ModelVersion.aliases empty; the model holds the map.
        aliases[registered.name] = _aliases_by_version(registered.aliases)
    rows = [_summary(client, version, aliases.get(version.name, {}))
            for version in _all_pages(client.search_model_versions)
            if version.name in aliases]
    rows.sort(key=lambda r: (r.name, -int(r.version)))
    return rows


def _all_pages(search: Any) -> Iterator[Any]:
    token = None
    while True:
        page = search(page_token=token) if token else search()
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def _summary(client: MlflowClient, version: Any,
             aliases: Mapping[str, tuple[str, ...]]) -> ModelSummary:
    tags = version.tags or {}
    test_metrics = {k: v for k, v in _floats(tags).items() if k.startswith(TEST_METRIC_PREFIX)}
    if not test_metrics and tags.get("dripml.chosen", "true") == "true" and version.run_id:
        # Registered before versions carried their own metrics: the run's are the chosen's.
        try:
            run = client.get_run(version.run_id)
            test_metrics = {k: v for k, v in run.data.metrics.items()
                            if k.startswith(TEST_METRIC_PREFIX)}
        except MlflowException:
            pass
    floats = _floats({k: tags[k] for k in (*COST_TAGS, "cv_objective_mean") if k in tags})
    description = (version.description or "").strip().split("\n", 1)[0].lstrip("# ")
    return ModelSummary(
        name=version.name, version=str(version.version),
        aliases=aliases.get(str(version.version), ()),
        algorithm=tags.get("algorithm", ""),
        created=time.strftime("%Y-%m-%d %H:%M",
                              time.localtime(int(version.creation_timestamp) / 1000)),
        run_id=version.run_id or "",
        test_metrics=_objective_first(test_metrics, tags.get("objective", "")),
        cv_metric=tags.get("objective") or None, cv_score=floats.get("cv_objective_mean"),
        costs={k: floats[k] for k in COST_TAGS if k in floats},
        description=description[:DESCRIPTION_SUMMARY_LENGTH])


def _objective_first(metrics: Mapping[str, float], objective: str) -> dict[str, float]:
    # Tags come unordered: the CV objective's test counterpart first, then by name.
    first = TEST_METRIC_PREFIX + objective.removeprefix("validation_")
    return dict(sorted(metrics.items(), key=lambda item: (item[0] != first, item[0])))


def _floats(tags: Mapping[str, str]) -> dict[str, float]:
    out = {}
    for key, value in tags.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def version_test_metrics(model_uri: str) -> dict[str, float]:
    """Test metrics (``test_<metric>`` -> value) of a registered version, as ``drip models``
    lists them; {} for a ``runs:/`` URI or a version without any.

    Raises:
        ModelNotFoundError: no such model, version or alias.
    """
    if not model_uri.startswith(refs.SCHEME):
        return {}
    name, version = resolve_version(model_uri)
    client = MlflowClient()
    return _summary(client, client.get_model_version(name, version), {}).test_metrics


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

