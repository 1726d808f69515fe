"""Unfinished searches in MLflow: find the one a resumed run continues and read its trials.

A search run is unfinished while its status is not FINISHED: RUNNING (its driver was killed
or its node died), FAILED or KILLED. A RUNNING run whose driver still sends heartbeats (see
:mod:`dripml.productionize.runs`) is a live search and never resumed; :func:`dripml.api.train`
first marks the orphaned ones FAILED. :func:`find` picks the newest one of the same search
(the same :func:`dripml.core.resume.spec_digest`, and every tag the caller gives: a pipeline
run passes its ``dripml.pipeline_run_id``), :func:`read_trials` reads its trials back from
the child runs' records. One query each, whatever the number of trials (paged by 1,000).

Which trials are kept: those logged with a record (``dripml.trial_record``, see
:mod:`dripml.core.resume`) as COMPLETE, PRUNED or FAILED. A trial in flight when the driver
died was never logged (or was logged without a record, or is still RUNNING): it is run
again. When two child runs carry one trial number (they should not), the first logged wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from dripml.core import resume
from dripml.core.results import TrialResult
from dripml.core.spec import Spec
from dripml.productionize import runs

PAGE = 1000
KEPT_STATES = ("COMPLETE", "PRUNED", "FAILED")


@dataclass(frozen=True)
class Unfinished:
    """A search run that did not finish.

    Attributes:
        run_id, experiment_id: the MLflow run and its experiment.
        status: RUNNING, FAILED or KILLED (MLflow's).
        stage: where it stopped (``discover`` or ``refine``, :data:`dripml.core.resume.STAGE_TAG`).
        search_time_s: Discover's logged wall time (seconds) when it reached Refine, else 0.
    """

    run_id: str
    experiment_id: str
    status: str
    stage: str
    search_time_s: float = 0.0


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def find(experiment: str, digest: str, tags: Mapping[str, str] | None = None
         ) -> Unfinished | None:
    """The newest unfinished search run of ``experiment`` tagged with ``digest`` and every
    tag in ``tags``; None when there is none (or no such experiment)."""
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        return None
    clauses = [f"tags.`{resume.DIGEST_TAG}` = '{_quote(digest)}'",
               "tags.`dripml.kind` = 'search'", "attributes.status != 'FINISHED'"]
    clauses += [f"tags.`{k}` = '{_quote(v)}'" for k, v in (tags or {}).items()]
    found_runs = client.search_runs([found.experiment_id], " and ".join(clauses),
                                    run_view_type=ViewType.ACTIVE_ONLY, max_results=20,
                                    order_by=["attributes.start_time DESC"])
    # A RUNNING run whose driver still beats is another live search, not one to resume.
    run = next((r for r in found_runs if not _alive(r)), None)
    if run is None:
        return None
    stage = run.data.tags.get(resume.STAGE_TAG, resume.DISCOVER)
    return Unfinished(run.info.run_id, run.info.experiment_id, run.info.status,
                      resume.REFINE if stage == resume.REFINE else resume.DISCOVER,
                      float(run.data.metrics.get("search_time_s", 0.0)))


def read_trials(run: Unfinished) -> list[TrialResult]:
    """The finished trials of ``run`` (see the module docstring), by trial number."""
    kept: dict[int, TrialResult] = {}
    for child in _children(MlflowClient(), run.experiment_id, run.run_id):
        if child.info.status == "RUNNING":
            continue
        trial = resume.trial_from_tags(child.data.tags)
        if trial is not None and trial.state in KEPT_STATES:
            kept.setdefault(trial.number, trial)
    return [kept[n] for n in sorted(kept)]


def _alive(run: object) -> bool:
    """Whether ``run`` (an MLflow ``Run``) is RUNNING with a driver that still beats (see
    :mod:`dripml.productionize.runs`); a run without a heartbeat counts as dead."""
    info = run.info  # type: ignore[attr-defined]
    if info.status != "RUNNING":
        return False
    judged = runs.judge(run)
    return bool(judged.driver) and judged.heartbeat is not None and not judged.orphaned


def set_stage(run_id: str, stage: str) -> None:
    """Tag search run ``run_id`` with the stage it reached (:data:`resume.STAGE_TAG`)."""
    MlflowClient().set_tag(run_id, resume.STAGE_TAG, stage)


def _children(client: MlflowClient, experiment_id: str, run_id: str) -> list:
    """Every trial run of search run ``run_id``, oldest first."""
    children: list = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id], f"tags.`mlflow.parentRunId` = '{_quote(run_id)}' and "
            "tags.`dripml.kind` = 'trial'", run_view_type=ViewType.ACTIVE_ONLY,
            max_results=PAGE, order_by=["attributes.start_time ASC"], page_token=token)
        children.extend(page)
        token = page.token
        if not token:
            return children


@dataclass(frozen=True)
class Plan:
    """How :func:`dripml.api.train` opens its search run.

    Attributes:
        run_id: the unfinished run to reopen; None starts a new run.
        kept: its trials read back (empty for a new run).
        stage: where the run goes on: ``discover``, or ``refine`` (Discover is skipped).
        tags: the tags to set on the search run (the caller's, the digest, the stage).
        message: one line for the user ("resuming run ...", or that an unfinished run
            exists and how to resume it); "" when there is nothing to say.
        search_time_s: Discover's logged wall time of a run resumed at Refine, seconds.
    """

    run_id: str | None
    kept: tuple[TrialResult, ...]
    stage: str
    tags: dict[str, str]
    message: str
    search_time_s: float = 0.0


def plan(spec: Spec, tags: Mapping[str, str] | None, *, resume_it: bool,
         total: int | None) -> Plan:
    """Find the newest unfinished run of ``spec`` (same digest, same ``tags``) and decide:
    with ``resume_it``, reopen it with its trials (``total``: the trials the search runs in
    all, None when only the time budget ends it); without, start anew and say that it
    exists."""
    digest = resume.spec_digest(spec)
    run_tags = {**(tags or {}), resume.DIGEST_TAG: digest}
    found = find(spec.name, digest, tags)
    if found is None:
        return Plan(None, (), resume.DISCOVER, {**run_tags, resume.STAGE_TAG: resume.DISCOVER},
                    "")
    if not resume_it:
        return Plan(None, (), resume.DISCOVER, {**run_tags, resume.STAGE_TAG: resume.DISCOVER},
                    f"an unfinished run of this spec exists ({found.run_id}, {found.status} "
                    f"in {found.stage}): this is a new run; `drip run SPEC --resume` (or "
                    "dripml.train(..., resume=True)) would continue it")
    kept = tuple(read_trials(found))
    if found.stage == resume.REFINE:
        to_go = "0 to go, resuming at Refine"
    elif total is None:
        to_go = "more until the time budget ends the search"
    else:
        to_go = f"{max(0, total - len(kept))} to go"
    return Plan(found.run_id, kept, found.stage, run_tags,
                f"resuming run {found.run_id}: {len(kept)} trials kept, {to_go}",
                found.search_time_s)
