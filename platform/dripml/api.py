"""The public verbs. The CLI, the Python API and the pipeline steps all call these.

- :func:`validate`: check a spec completely without starting anything.
- :func:`train`: the DRiP loop on one machine or a Ray cluster: Discover, Refine, register.
- :func:`connect`: Ray connected and the data loaded (what :func:`train` searches on).
- :func:`models`: the registered model versions.
- :func:`load_model`: a registered model, ready to predict.
- :func:`frontier_table`: the quality-cost frontier a :func:`train` run measured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd

from dripml.algorithms import registry as algorithms
from dripml.core import data, metrics
from dripml.core.model import TrainedModel
from dripml.core.progress import Reporter
from dripml.core.spec import Spec, load_spec
from dripml.discover import search, trials
from dripml.orchestration import ray_cluster as cluster
from dripml.productionize import tracking
from dripml.refine import candidates as selection
from dripml.refine import frontier
from dripml.refine import stage as refine

SpecSource = str | Path | Mapping[str, Any] | Spec | None


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        spec: the validated spec.
        tracking_uri: the MLflow store everything was logged to.
        experiment_id, run_id: MLflow experiment and parent (search) run.
        model: registry entry of the chosen model (name, version, alias, ``models:/`` URIs).
        best: the winning trial of the search (best CV objective).
        leaderboard: one row per trial, best first (see :func:`dripml.refine.candidates.leaderboard`).
        test_metrics: the chosen model on the test split, ``test_<metric>`` -> value.
        search_time_s: wall time of the Discover step, seconds.
        frontier: the measured candidates on the quality-cost trade-off, the chosen point
            marked and every frontier point's registered version filled in.
        chosen: the trial the ``select`` policy chose (``best`` unless constraints or a
            cheapest_within policy chose another).
        versions: trial number -> registered model version, for every frontier point.
    """

    spec: Spec
    tracking_uri: str
    experiment_id: str
    run_id: str
    model: tracking.RegisteredModel
    best: trials.TrialResult
    leaderboard: pd.DataFrame
    test_metrics: dict[str, float]
    search_time_s: float
    frontier: frontier.Frontier | None = None
    chosen: trials.TrialResult | None = None
    versions: dict[int, str] = field(default_factory=dict)


def validate(spec: SpecSource = None, /, **fields: Any) -> Spec:
    """Check the spec completely (fields, algorithm names and tasks, metrics, grid size)
    without reading data or starting anything.

    Raises:
        SpecError: naming the field and the valid choices.
    """
    checked = load_spec(spec, **fields)
    for algorithm in checked.algorithms:
        algorithms.check(algorithm, checked.task)
    trials.resolve_objective(checked)
    for specs in (checked.metrics.train, checked.metrics.validation, checked.metrics.test):
        metrics.resolve_all(list(specs or []), checked.task)
    if checked.search.algorithm == "grid":
        search.grid(checked)
    return checked


def train(
    spec: SpecSource = None,
    /,
    *,
    ray_address: str | None = None,
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    tags: Mapping[str, str] | None = None,
    set_alias: bool = True,
    **fields: Any,
) -> TrainResult:
    """Run the DRiP loop: search with K-fold CV on Ray; refit the top candidates, measure
    their serving cost and choose one on the quality-cost frontier; test and register.

    Args:
        spec: a YAML path, a mapping or a :class:`~dripml.core.spec.Spec`; keyword ``fields``
            (``data=``, ``task=``, ``algorithm=[...]``, ``metrics=``, ``resources=``...)
            add to or override it.
        ray_address: join this Ray cluster; None starts an embedded one on 127.0.0.1.
        tracking_uri: MLflow tracking URI; default ``MLFLOW_TRACKING_URI``, else the
            embedded SQLite store under ``.dripml/``.
        reporter: progress output (the CLI passes a rich one); default silent.
        tags: MLflow tags added to the search run (a pipeline finds its run by them).
        set_alias: move the registry alias to the chosen version; without it the versions
            are registered and a later step moves the alias (see :mod:`dripml.orchestration.pipeline`).

    Returns:
        A :class:`TrainResult`; the chosen model is registered as ``models:/<name>@<alias>``
        and every other frontier point as a version (see :mod:`dripml.refine.stage`).

    Raises:
        SpecError: malformed spec (before anything starts).
        DataError: missing column, empty file, label that does not fit the task.
        ResourceError: GPUs asked for where there are none (before any trial starts).
        SearchError: no trial completed.
        ConstraintError: (a SearchError) no trial or candidate meets the spec's
            ``constraints``; the message names each constraint and the best value measured.
    """
    report = reporter or Reporter()
    checked = validate(spec, **fields)
    objective = trials.resolve_objective(checked)
    if ray_address is None:
        cluster.check_local_resources(checked.resources)
    with ExitStack() as stack:
        dataset = stack.enter_context(connect(checked, ray_address=ray_address, reporter=report))
        uri = tracking.configure(tracking_uri)
        run = stack.enter_context(tracking.search_run(checked, checked.to_yaml(), tags))
        run_id = run.info.run_id

        def on_trial(result: trials.TrialResult, best: trials.TrialResult | None,
                     done: int, total: int) -> None:
            tracking.log_trial(run_id, result)
            report.trial(result, best, done, total, objective.key)

        with report.search(search.trial_count(checked)):
            result = trials.discover(dataset, checked, objective, on_trial=on_trial)

        board = selection.leaderboard(result)
        mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
        mlflow.log_text(board.to_markdown(index=False) if _has_tabulate() else
                        board.to_string(index=False), "leaderboard.md")
        best_key = f"best_cv_{objective.key}"
        mlflow.log_metrics({best_key: result.best.objective or float("nan"),
                            "search_time_s": result.wall_time_s,
                            "trials_completed": sum(t.state == "COMPLETE" for t in result.trials)})
        refined = refine.run(dataset, checked, result, objective, report, set_alias=set_alias)
    return TrainResult(
        spec=checked, tracking_uri=uri, experiment_id=run.info.experiment_id, run_id=run_id,
        model=refined.registered, best=result.best, leaderboard=board,
        test_metrics=refined.refit.test_metrics, search_time_s=result.wall_time_s,
        frontier=refined.frontier, chosen=refined.chosen, versions=refined.versions)


@contextmanager
def connect(spec: Spec, *, ray_address: str | None = None,
            reporter: Reporter | None = None) -> Iterator[data.Dataset]:
    """Connect to Ray and load the spec's data, overlapped; yield the checked dataset.

    Ray's start-up (2 to 3 s) is mostly waiting on its processes, and reading Parquet/CSV
    releases the GIL, so the data loads in a thread meanwhile; one warm-up task per CPU then
    imports the algorithms' libraries in the workers while the driver finishes. An embedded
    Ray stops when the block exits.

    Raises:
        ResourceError, DataError, SpecError: as :func:`train`.
    """
    report = reporter or Reporter()
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as pool:
        loading = pool.submit(data.load, spec)
        with report.step("started Ray" if ray_address is None else f"joined {ray_address}"):
            try:
                stack.enter_context(cluster.connect(ray_address, resources=spec.resources))
            except BaseException:
                loading.cancel()
                raise
        trials.warm_up_workers(spec)
        with report.step(f"loaded data ({spec.data.train})"):
            dataset = loading.result()
        for algorithm in spec.algorithms:
            algorithms.check(algorithm, spec.task, dataset.encoder.layout)
        yield dataset


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def models(tracking_uri: str | None = None) -> list[tracking.ModelSummary]:
    """Every registered model version in the tracking store, newest first per model."""
    tracking.configure(tracking_uri)
    return tracking.list_models()


def load_model(ref: str, tracking_uri: str | None = None) -> TrainedModel:
    """A registered model by ``NAME``, ``NAME@alias``, ``NAME/version`` or MLflow URI.

    Raises:
        ModelNotFoundError: no such model, version or alias (lists what exists).
    """
    tracking.configure(tracking_uri)
    return tracking.load_trained_model(tracking.parse_model_ref(ref))


def frontier_table(run_id: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The frontier table (``frontier.csv``) :func:`train` logged in run ``run_id``: one row
    per measured candidate, best CV objective first, with its costs, whether it meets the
    constraints, the costs on whose frontier it lies, the chosen point and its version.

    Raises:
        DripmlError: no such run, or the run logged no frontier (it predates Refine by cost,
            or failed before it).
    """
    tracking.configure(tracking_uri)
    return refine.load_table(run_id)
