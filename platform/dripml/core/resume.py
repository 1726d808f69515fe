"""What a resumed run needs, as plain data: which spec a run searched, and each trial as a
record that reads back exactly.

A search run carries three tags (see :mod:`dripml.productionize.unfinished`):

- ``dripml.spec_digest``: :func:`spec_digest` of its spec, so that ``drip run SPEC --resume``
  finds the unfinished run of the same search;
- ``dripml.stage``: ``discover`` while trials run, ``refine`` once Discover's results are
  logged, ``done`` at the end; a run that died at ``refine`` resumes at Refine;
- on each trial's child run, ``dripml.trial_record`` (split over ``.1``, ``.2``... beyond
  MLflow's 8,000 characters a tag): :func:`to_record` of its
  :class:`~dripml.core.results.TrialResult` as JSON, every field the search and Refine read
  (fold scores, fit times, probe, the sampler's parameters and distributions).

No MLflow, Ray or Optuna here: the records are JSON, the distributions Optuna's own JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from dripml.core.objective import Objective
from dripml.core.results import FoldScore, SearchResult, TrialResult, aggregate
from dripml.core.spec import Spec
from dripml.errors import SearchError

DIGEST_TAG = "dripml.spec_digest"
STAGE_TAG = "dripml.stage"
RECORD_TAG = "dripml.trial_record"
RECORD_VERSION = 1
TAG_LIMIT = 8000
"""The longest tag value MLflow stores (characters)."""

DISCOVER, REFINE, DONE = "discover", "refine", "done"
"""Values of :data:`STAGE_TAG`."""

IGNORED_FIELDS: dict[str, tuple[str, ...]] = {
    "cluster": (),
    "registry": (),
    "resources": (),
    "search": ("max_concurrent", "time_budget_s"),
}
"""Spec fields that change where and how fast a search runs, or where its model is
registered, but not which trials it runs or what they score: left out of the digest (an
empty tuple leaves out the whole section). A run resumed with more CPUs, a longer time
budget or another alias is the same search."""


def spec_digest(spec: Spec) -> str:
    """A short hex digest (16 characters) of the spec's normalized YAML without
    :data:`IGNORED_FIELDS`: two specs that search the same way have the same digest."""
    data = spec.model_dump(mode="json", exclude_none=True)
    for section, names in IGNORED_FIELDS.items():
        if not names:
            data.pop(section, None)
        elif isinstance(data.get(section), dict):
            for name in names:
                data[section].pop(name, None)
    text = yaml.safe_dump(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_record(trial: TrialResult) -> dict[str, Any]:
    """``trial`` as JSON-ready data (Python's JSON, NaN included): :func:`from_record` reads
    it back equal."""
    return {
        "v": RECORD_VERSION, "number": trial.number, "algorithm": trial.algorithm,
        "algorithm_name": trial.algorithm_name, "params": trial.params, "state": trial.state,
        "folds": [_fold(f) for f in trial.folds], "rungs": [_fold(f) for f in trial.rungs],
        "error": trial.error, "reason": trial.reason, "encoding": trial.encoding,
        "start_time_ms": trial.start_time_ms, "end_time_ms": trial.end_time_ms,
        "fold_retries": trial.fold_retries, "search_point": trial.search_point,
        "search_space": trial.search_space, "objective": trial.objective,
        "reports": [[step, v] for step, v in sorted(trial.reports.items())],
        "preprocess": trial.preprocess,
    }


def from_record(record: Mapping[str, Any]) -> TrialResult:
    """The trial :func:`to_record` wrote (mean and std recomputed from its folds, as
    Discover computes them).

    Raises:
        ValueError: not a record of this version.
    """
    if record.get("v") != RECORD_VERSION:
        raise ValueError(f"trial record version {record.get('v')!r}, expected "
                         f"{RECORD_VERSION}")
    folds = tuple(_fold_score(f) for f in record["folds"])
    mean, std = aggregate(folds)
    return TrialResult(
        number=int(record["number"]), algorithm=record["algorithm"],
        algorithm_name=record["algorithm_name"], params=dict(record["params"]),
        state=record["state"], folds=folds, mean=mean, std=std,
        objective=record.get("objective"),
        fit_time_s=sum(f.fit_time_s for f in folds), error=record.get("error"),
        reason=record.get("reason"), rungs=tuple(_fold_score(f) for f in record["rungs"]),
        encoding=record.get("encoding") or "", start_time_ms=record.get("start_time_ms"),
        end_time_ms=record.get("end_time_ms"), fold_retries=int(record.get("fold_retries", 0)),
        search_point=dict(record.get("search_point") or {}),
        search_space=dict(record.get("search_space") or {}),
        reports={int(step): float(v) for step, v in record.get("reports", [])},
        preprocess=record.get("preprocess"))


def record_tags(trial: TrialResult) -> dict[str, str]:
    """The trial's record as tags: :data:`RECORD_TAG`, then ``.1``, ``.2``... for what does
    not fit in one tag."""
    text = json.dumps(to_record(trial), separators=(",", ":"), default=_plain)
    chunks = [text[i:i + TAG_LIMIT] for i in range(0, len(text), TAG_LIMIT)] or [""]
    return {RECORD_TAG if i == 0 else f"{RECORD_TAG}.{i}": chunk
            for i, chunk in enumerate(chunks)}


def trial_from_tags(tags: Mapping[str, str]) -> TrialResult | None:
    """The trial whose :func:`record_tags` are among ``tags``; None when there is no record
    (a trial logged before records, or one still running) or it cannot be read."""
    if RECORD_TAG not in tags:
        return None
    parts = [tags[RECORD_TAG]]
    while f"{RECORD_TAG}.{len(parts)}" in tags:
        parts.append(tags[f"{RECORD_TAG}.{len(parts)}"])
    try:
        return from_record(json.loads("".join(parts)))
    except (ValueError, KeyError, TypeError):
        return None


def _plain(value: Any) -> Any:
    # NumPy scalars in params (a custom algorithm's defaults) as Python numbers.
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


def _fold(fold: FoldScore) -> dict[str, Any]:
    return {"fold": fold.fold,
            "metrics": dict(fold.metrics),
            "fit_time_s": fold.fit_time_s, "p50": fold.probe_latency_p50_ms,
            "p99": fold.probe_latency_p99_ms, "mb": fold.probe_model_mb,
            "row_ms": fold.predict_row_ms, "started_ms": fold.started_ms,
            "ended_ms": fold.ended_ms}


def _fold_score(data: Mapping[str, Any]) -> FoldScore:
    return FoldScore(
        fold=int(data["fold"]),
        metrics={k: float(v) for k, v in data["metrics"].items()},
        fit_time_s=float(data["fit_time_s"]), probe_latency_p50_ms=data.get("p50"),
        probe_latency_p99_ms=data.get("p99"), probe_model_mb=data.get("mb"),
        predict_row_ms=data.get("row_ms"), started_ms=data.get("started_ms"),
        ended_ms=data.get("ended_ms"))


def search_result(trials: Sequence[TrialResult], objective: Objective,
                  wall_time_s: float) -> SearchResult:
    """The Discover result of a run resumed at Refine: its kept ``trials``, the best
    COMPLETE one by ``objective``; ``wall_time_s`` as the interrupted run logged it.

    Raises:
        SearchError: none of the trials is COMPLETE.
    """
    best: TrialResult | None = None
    for trial in trials:
        if trial.state == "COMPLETE" and objective.better(
                trial.objective, best.objective if best else None):
            best = trial
    if best is None:
        raise SearchError(f"the run to resume reached Refine, but none of its {len(trials)} "
                          "trials read back is COMPLETE; start a new run (without --resume)")
    return SearchResult(tuple(sorted(trials, key=lambda t: t.number)), best, objective.key,
                        objective.direction, wall_time_s)
