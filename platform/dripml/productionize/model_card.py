"""The model card: a registered version's description in Markdown.

What a reader of the Model Registry needs to trust or question a version, in one page: the
data (sources, rows, how the test set was made), the validation (k-fold), the algorithm and
its parameters, the CV score and the test metrics, what it costs to serve (latency, size,
memory), the versions of the libraries it was trained with, and the spec that produced it.
The first line is a one-line summary (``drip models`` shows it). The card fits MLflow's
5,000-character description: the spec's YAML is cut to what is left.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dripml.core.spec import Spec

MAX_LENGTH = 5000
"""MLflow's SQL stores keep at most this many characters of a description."""
COST_LINES = (("latency_p50_ms", "latency p50", "ms"), ("latency_p99_ms", "latency p99", "ms"),
              ("throughput_rows_s", "batch throughput", "rows/s"),
              ("model_mb", "pickled size", "MB"), ("memory_mb", "peak memory", "MB"),
              ("cost_per_million", "cost per 1M predictions", ""))


@dataclass(frozen=True)
class CardFacts:
    """What one version's card says.

    Attributes:
        algorithm, trial, params: the trial that was refit (algorithm key, number, every
            hyperparameter).
        cv_metric, cv_score, cv_std: the CV objective's key and its mean and std over folds.
        test_metrics: the refit model on the test split, ``test_<metric>`` -> value.
        costs: what Refine measured, cost name (``latency_p99_ms``...) -> value (None: not
            measured).
        train_rows, test_rows: rows the model was fitted on and tested on.
        chosen: the ``select`` policy chose it (it gets the alias).
        requirements: pinned packages it needs (``name==version``).
    """

    algorithm: str
    trial: int
    params: Mapping[str, Any]
    cv_metric: str
    cv_score: float | None
    test_metrics: Mapping[str, float]
    costs: Mapping[str, float | None]
    train_rows: int
    test_rows: int
    chosen: bool
    cv_std: float | None = None
    requirements: Sequence[str] = field(default_factory=tuple)


def render(spec: Spec, facts: CardFacts, *, dripml_version: str, mlflow_version: str) -> str:
    """The card as Markdown, at most :data:`MAX_LENGTH` characters (the spec cut to fit)."""
    data = spec.data
    main = _main_metric(facts.test_metrics)
    title = (f"{facts.algorithm} (trial {facts.trial}) predicting {data.label!r} ({spec.task}): "
             f"CV {facts.cv_metric.removeprefix('validation_')} {_num(facts.cv_score)}"
             + (f", test {main[0].removeprefix('test_')} {_num(main[1])}" if main else ""))
    sampled = (f" (a random sample of {data.sample_rows:,}, seed {data.seed})"
               if data.sample_rows is not None else "")
    test = (f"`{data.test}`" if data.test is not None else
            f"{data.effective_test_fraction:g} of `{data.train}` held out (seed {data.seed}"
            f"{', stratified' if spec.task != 'regression' else ''})")
    folds = spec.k_fold
    lines = [
        f"# {title}", "",
        f"{'Chosen by the select policy' if facts.chosen else 'A frontier point'} "
        f"({spec.select.policy}, cost {spec.select.cost}) of spec `{spec.name}`.", "",
        "## Data",
        f"- train: `{data.train}`, {facts.train_rows:,} rows{sampled}",
        f"- test: {test}, {facts.test_rows:,} rows",
        f"- label: `{data.label}`, task {spec.task}", "",
        "## Validation",
        f"- {folds.n_splits}-fold cross-validation on the training rows "
        f"({'stratified, ' if spec.stratified else ''}"
        f"{f'shuffled with seed {folds.seed}' if folds.shuffle else 'not shuffled'}); "
        "the model was then refit on every training row", "",
        "## Model",
        f"- algorithm: `{facts.algorithm}` (trial {facts.trial})",
        f"- params: `{json.dumps(dict(facts.params), sort_keys=True, default=str)[:800]}`", "",
        "## Metrics",
        "| metric | value |", "|---|---|",
        f"| CV {facts.cv_metric} (mean over folds) | {_num(facts.cv_score)}"
        + (f" ± {_num(facts.cv_std)}" if facts.cv_std is not None else "") + " |",
        *[f"| {k} | {_num(v)} |" for k, v in facts.test_metrics.items()], "",
        "## Serving cost",
        *[f"- {label}: {_num(facts.costs[key])}{' ' + unit if unit else ''}"
          for key, label, unit in COST_LINES if facts.costs.get(key) is not None], "",
        "## Versions",
        f"- dripml {dripml_version}, mlflow {mlflow_version}, "
        f"python {platform.python_version()}",
        f"- requirements: {', '.join(facts.requirements) or 'none recorded'}", "",
        "## Spec",
    ]
    card = "\n".join(lines)
    fence_open, fence_close = "\n```yaml\n", "\n```\n"
    room = MAX_LENGTH - len(card) - len(fence_open) - len(fence_close)
    yaml_text = spec.to_yaml().rstrip("\n")
    if len(yaml_text) > room:
        note = "\n# ... cut to fit; the full spec is spec.yaml in the run"
        yaml_text = yaml_text[:max(0, room - len(note))] + note
    return (card + fence_open + yaml_text + fence_close)[:MAX_LENGTH]


def _main_metric(metrics: Mapping[str, float]) -> tuple[str, float] | None:
    return next(iter(metrics.items()), None)


def _num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
