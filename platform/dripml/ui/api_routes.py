"""The HTTP API the page uses (``/api``; OpenAPI at ``/api/docs``).

Every 4xx answers ``{"detail": "..."}`` naming the knob, field or file at fault: a bad knob
value 422 (``knob '<key>': ...``), a bad upload 400/413/415, an unknown recipe, run or upload
404, a run in the wrong state for the action 409.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from dripml.errors import DataError, DripmlError, KnobError, RecipeError, RunNotFound, SpecError
from dripml.ui import sources as recipe_sources
from dripml.ui.deployments import curl_line
from dripml.ui.services import Services
from dripml.ui.uploads import UploadError, UploadInfo, example_record

router = APIRouter(prefix="/api", tags=["api"])

TERMINAL = ("finished", "failed", "cancelled")
EVENT_POLL_S = 1.0


# --------------------------------------------------------------------------------- models


class RecipeSummary(BaseModel):
    name: str
    version: str
    title: str
    description: str = Field(description="Markdown")


class PipelineOut(BaseModel):
    name: str
    title: str
    description: str = ""


class SourceOut(BaseModel):
    name: str = Field(description="what POST /api/runs takes as `source`")
    title: str
    description: str = Field("", description="Markdown")


class SourceColumnsOut(BaseModel):
    source: str
    columns: list[str] = Field(description="the data set's columns, in file order")


class RecipeOut(RecipeSummary):
    pipelines: list[PipelineOut]
    sources: list[SourceOut] = Field(default_factory=list, description="data sets a user "
                                     "may pick instead of uploading (POST /api/runs `source`)")
    params: list[dict[str, Any]] = Field(description="the knobs: key, label, help, type, "
                                         "default, required, min/max/step, choices, unit")
    contact: str | None = None


class UploadOut(BaseModel):
    id: str = Field(description="the upload's id (32 hex digits), for POST /api/runs")
    filename: str
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="the first rows, as records")


class RunCreated(BaseModel):
    id: str


class Progress(BaseModel):
    done: int
    total: int | None
    best_value: float | None = None
    objective: str | None = None
    step: str | None = None


class ModelOut(BaseModel):
    name: str
    version: int | None


class RunBrief(BaseModel):
    id: str
    recipe: str
    recipe_version: str
    pipeline: str
    status: Literal["queued", "running", "finished", "failed", "cancelled"]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    progress: Progress
    model: ModelOut | None
    endpoint_url: str | None
    attempts: int


class RunOut(RunBrief):
    knobs: dict[str, Any]
    upload_id: str = Field(description="the upload's id, or source:<name> for a data set")
    test_upload_id: str | None
    source: str | None = Field(None, description="the recipe's data set the run trained on "
                               "(None: an upload)")
    step: str | None
    mlflow_run_id: str | None
    run_url: str | None
    leaderboard: list[dict[str, Any]]
    frontier: list[dict[str, Any]]
    test_metrics: dict[str, float]
    error: str | None


class DeployIn(BaseModel):
    version: int = Field(ge=1, description="a model version on the run's frontier")


class DeployOut(BaseModel):
    url: str = Field(description="the endpoint's base URL; POST {url}/predict")
    curl: str = Field(description="a curl line posting one example record to /predict")
    model: str
    version: int


# -------------------------------------------------------------------------------- helpers


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _brief_fields(run: Any) -> dict[str, Any]:
    return {
        "id": run.id, "recipe": run.recipe, "recipe_version": run.recipe_version,
        "pipeline": run.pipeline, "status": run.status, "created_at": run.created_at,
        "started_at": run.started_at, "finished_at": run.finished_at,
        "progress": Progress(done=run.done or 0, total=run.total, best_value=run.best_value,
                             objective=run.objective, step=run.step),
        "model": (ModelOut(name=run.model_name, version=run.model_version)
                  if run.model_name else None),
        "endpoint_url": run.endpoint_url, "attempts": run.attempts,
    }


def run_out(run: Any) -> RunOut:
    return RunOut(**_brief_fields(run), knobs=dict(run.knobs or {}), upload_id=run.upload_id,
                  test_upload_id=run.test_upload_id, source=recipe_sources.source_of(run),
                  step=run.step,
                  mlflow_run_id=run.mlflow_run_id, run_url=run.run_url,
                  leaderboard=list(run.leaderboard or []), frontier=list(run.frontier or []),
                  test_metrics=dict(run.test_metrics or {}), error=run.error)


def _get_run(svc: Services, run_id: str) -> Any:
    try:
        return svc.store.get(run_id)
    except (RunNotFound, KeyError):
        raise HTTPException(404, f"run: no run {run_id!r}") from None


def _recipes(svc: Services) -> dict[str, Any]:
    try:
        return svc.recipes()
    except RecipeError as error:
        raise HTTPException(500, f"a recipe file in the configured folders is malformed: "
                                 f"{error}") from None


def _recipe(svc: Services, name: str) -> Any:
    recipes = _recipes(svc)
    if name not in recipes:
        known = ", ".join(sorted(recipes)) or "none"
        raise HTTPException(404, f"recipe: no recipe named {name!r}; known recipes: {known}")
    return recipes[name]


def _upload_error(error: UploadError) -> HTTPException:
    return HTTPException(error.status, str(error))


def _save_upload(svc: Services, file: UploadFile) -> UploadInfo:
    try:
        return svc.uploads.save(file.file, file.filename or "")
    except UploadError as error:
        raise _upload_error(error) from None


def _label(svc: Services, run: Any) -> str | None:
    import yaml

    spec = svc.spec_path(run.id)
    if spec.is_file():
        try:
            data = yaml.safe_load(spec.read_text()) or {}
            label = (data.get("data") or {}).get("label")
            if isinstance(label, str):
                return label
        except yaml.YAMLError:
            pass
    label = (run.knobs or {}).get("label")
    return label if isinstance(label, str) else None


# --------------------------------------------------------------------------------- routes


@router.get("/recipes", response_model=list[RecipeSummary])
def list_recipes(request: Request) -> list[RecipeSummary]:
    """The recipes in the configured folders, by name."""
    return [RecipeSummary(name=r.name, version=r.version, title=r.title,
                          description=r.description)
            for _, r in sorted(_recipes(services(request)).items())]


@router.get("/recipes/{name}", response_model=RecipeOut,
            responses={404: {"description": "no such recipe"}})
def get_recipe(name: str, request: Request) -> RecipeOut:
    """One recipe: its pipelines and knobs (what the form is built from)."""
    public = _recipe(services(request), name).public()
    return RecipeOut(**{k: public.get(k) for k in RecipeOut.model_fields if k in public})


@router.get("/recipes/{name}/sources/{source}/columns", response_model=SourceColumnsOut,
            responses={404: {"description": "no such recipe or data set"},
                       502: {"description": "the data set cannot be read"}})
def source_columns(name: str, source: str, request: Request) -> SourceColumnsOut:
    """The columns of one of the recipe's data sets (its header only), for the column
    knobs of the form."""
    recipe = _recipe(services(request), name)
    try:
        found = recipe_sources.columns(recipe, source)
    except KnobError as error:
        raise HTTPException(404, str(error).removeprefix("knob 'source': ")) from None
    except DataError as error:
        raise HTTPException(502, f"source {source!r}: the data set cannot be read ({error}); "
                                 "ask the recipe's author") from None
    return SourceColumnsOut(source=source, columns=found)


@router.post("/uploads", response_model=UploadOut,
             responses={400: {"description": "unreadable, empty or headerless file"},
                        413: {"description": "larger than the upload limit"},
                        415: {"description": "not CSV or Parquet"}})
def upload(request: Request, file: UploadFile = File(  # noqa: B008
        description="a .csv or .parquet file with a header")) -> UploadOut:
    """Store a data file under a new id; answers its columns and first rows."""
    info = _save_upload(services(request), file)
    return UploadOut(id=info.id, filename=info.filename, columns=info.columns,
                     rows=info.rows_preview)


@router.post("/runs", response_model=RunCreated,
             responses={400: {"description": "bad upload or params"},
                        404: {"description": "no such recipe or upload"},
                        413: {"description": "upload too large"},
                        415: {"description": "upload not CSV or Parquet"},
                        422: {"description": "a knob's value is invalid (named)"}})
def create_run(
    request: Request,
    recipe: str = Form(description="the recipe's name"),
    params: str = Form("{}", description="the knob values, a JSON object"),
    pipeline: str | None = Form(None, description="the recipe's pipeline (default first)"),
    file: UploadFile | None = File(None, description="the training data (CSV/Parquet)"),  # noqa: B008
    upload_id: str | None = Form(None, description="or: an id from POST /api/uploads"),
    test_file: UploadFile | None = File(None, description="optional test data"),  # noqa: B008
    test_upload_id: str | None = Form(None, description="or: a test upload's id"),
    source: str | None = Form(None, description="or, instead of file/upload_id: one of the "
                              "recipe's data sets by name (GET /api/recipes/{name}: sources)"),
) -> RunCreated:
    """Queue a run of ``recipe`` on the upload (``file`` or ``upload_id``) or on one of the
    recipe's data sets (``source``), exactly one of them, with the given knob values."""
    svc = services(request)
    chosen = _recipe(svc, recipe)
    try:
        values = json.loads(params or "{}")
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"params: not valid JSON ({error.msg} at position "
                                 f"{error.pos}); send a JSON object of knob values") from None
    if not isinstance(values, dict):
        raise HTTPException(400, "params: must be a JSON object of knob values, e.g. "
                                 '{"label": "income"}')
    if _data_fields(file, upload_id, source, test_file, test_upload_id):
        return _source_run(svc, chosen, str(source), values, pipeline or None)
    saved: list[UploadInfo] = []
    try:
        train = _upload_for(svc, file, upload_id, "file", saved, required=True)
        assert train is not None
        test = _upload_for(svc, test_file, test_upload_id, "test_file", saved, required=False)
        try:
            knobs = chosen.resolve(values, columns=train.columns, pipeline=pipeline or None)
            run = svc.queue.submit(chosen, knobs=knobs, upload=train.path,
                                   test_upload=test.path if test else None,
                                   pipeline=pipeline or None)
        except KnobError as error:
            raise HTTPException(422, str(error)) from None
        except SpecError as error:
            raise HTTPException(422, str(error)) from None
        except DripmlError as error:  # cluster mode: the upload could not be staged
            raise HTTPException(502, str(error)) from None
    except HTTPException:
        for info in saved:
            info.path.unlink(missing_ok=True)
            info.path.with_suffix(".json").unlink(missing_ok=True)
        raise
    return RunCreated(id=run.id)


def _given(file: UploadFile | None) -> bool:
    return file is not None and bool(file.filename or file.size)


def _data_fields(file: UploadFile | None, upload_id: str | None, source: str | None,
                 test_file: UploadFile | None, test_upload_id: str | None) -> bool:
    """Whether the run is on a recipe data set; 400 unless exactly one of file, upload_id
    and source is given (and no test data beside a source)."""
    given = [name for name, present in (("file", _given(file)), ("upload_id", bool(upload_id)),
                                        ("source", bool(source))) if present]
    if len(given) > 1:
        raise HTTPException(400, f"file, upload_id, source: give exactly one of them (the "
                                 f"training data), got {' and '.join(given)}")
    if given != ["source"]:
        return False
    if _given(test_file) or test_upload_id:
        raise HTTPException(400, "test_file, test_upload_id: a data set (source) brings its "
                                 "own test data; send them only with file or upload_id")
    return True


def _source_run(svc: Services, recipe: Any, source: str, values: dict[str, Any],
                pipeline: str | None) -> RunCreated:
    try:
        run = recipe_sources.submit(svc.queue, recipe, source, values, pipeline=pipeline)
    except (KnobError, SpecError) as error:
        raise HTTPException(422, str(error)) from None
    except DataError as error:
        raise HTTPException(502, f"source {source!r}: the data set cannot be read ({error}); "
                                 "ask the recipe's author") from None
    return RunCreated(id=run.id)


def _upload_for(svc: Services, file: UploadFile | None, upload_id: str | None, field: str,
                saved: list[UploadInfo], *, required: bool) -> UploadInfo | None:
    if file is not None and (file.filename or file.size):
        info = _save_upload(svc, file)
        saved.append(info)
        return info
    if upload_id:
        try:
            return svc.uploads.get(upload_id)
        except UploadError as error:
            raise _upload_error(error) from None
    if required:
        raise HTTPException(400, f"{field}: upload a CSV or Parquet file (or pass the "
                                 f"upload_id of one sent to POST /api/uploads, or pick one of "
                                 f"the recipe's data sets as source)")
    return None


@router.get("/runs", response_model=list[RunBrief])
def list_runs(request: Request, limit: int = 100) -> list[RunBrief]:
    """The runs, newest first."""
    return [RunBrief(**_brief_fields(r))
            for r in services(request).store.list(limit=max(1, min(limit, 1000)))]


@router.get("/runs/{run_id}", response_model=RunOut,
            responses={404: {"description": "no such run"}})
def get_run(run_id: str, request: Request) -> RunOut:
    """A run: status, progress, and once finished leaderboard, frontier, test metrics and
    the registered model."""
    return run_out(_get_run(services(request), run_id))


@router.post("/runs/{run_id}/cancel", response_model=RunOut,
             responses={404: {"description": "no such run"},
                        409: {"description": "already over"}})
def cancel_run(run_id: str, request: Request) -> RunOut:
    """Cancel a queued run at once, or interrupt a running one."""
    svc = services(request)
    run = _get_run(svc, run_id)
    if run.status in TERMINAL:
        raise HTTPException(409, f"run {run_id} is already {run.status}: nothing to cancel")
    return run_out(_queue_action(svc.queue.cancel, run_id))


@router.post("/runs/{run_id}/resume", response_model=RunOut,
             responses={404: {"description": "no such run"},
                        409: {"description": "not failed or cancelled"}})
def resume_run(run_id: str, request: Request) -> RunOut:
    """Queue a failed or cancelled run again; it resumes where it stopped."""
    svc = services(request)
    run = _get_run(svc, run_id)
    if run.status not in ("failed", "cancelled"):
        raise HTTPException(409, f"run {run_id} is {run.status}: only a failed or cancelled "
                                 f"run can be resumed")
    return run_out(_queue_action(svc.queue.resume, run_id))


def _queue_action(action: Any, run_id: str) -> Any:
    try:
        return action(run_id)
    except (RunNotFound, KeyError):
        raise HTTPException(404, f"run: no run {run_id!r}") from None
    except (ValueError, DripmlError) as error:
        raise HTTPException(409, str(error)) from None


@router.post("/runs/{run_id}/deploy", response_model=DeployOut,
             responses={400: {"description": "version not on the run's frontier"},
                        404: {"description": "no such run"},
                        409: {"description": "the run has not finished"},
                        502: {"description": "the endpoint did not start"}})
def deploy_run(run_id: str, body: DeployIn, request: Request) -> DeployOut:
    """Deploy one of the run's frontier versions; answers once the endpoint answers.
    Embedded: an endpoint on 127.0.0.1; cluster: a ``dripml-endpoint`` Helm release."""
    svc = services(request)
    run = _get_run(svc, run_id)
    if run.status != "finished" or not run.model_name:
        raise HTTPException(409, f"run {run_id} is {run.status} and has no registered model "
                                 f"yet: deploy once it has finished")
    versions = sorted({int(p["version"]) for p in run.frontier or []
                       if str(p.get("version") or "").isdigit()})
    if not versions and run.model_version:
        versions = [int(run.model_version)]
    if body.version not in versions:
        raise HTTPException(400, f"version: {body.version} is not one of this run's frontier "
                                 f"versions {versions}")
    try:
        url = svc.deployments.deploy(run, body.version)
    except DripmlError as error:
        raise HTTPException(502, f"deploy of {run.model_name}/{body.version} failed: "
                                 f"{error}") from None
    try:
        rows = (recipe_sources.example_source(svc.spec_path(run.id))
                if recipe_sources.source_of(run) else svc.uploads.get(run.upload_id).path)
        record = example_record(rows, drop=_label(svc, run)) if rows else {}
    except (UploadError, OSError, ValueError):
        record = {}
    svc.store.update(run_id, endpoint_url=url)
    return DeployOut(url=url, curl=curl_line(url, record), model=run.model_name,
                     version=body.version)


@router.get("/runs/{run_id}/bundle", response_class=Response,
            responses={200: {"content": {"application/zip": {}}}, 404: {}})
def run_bundle(run_id: str, request: Request) -> Response:
    """"Ask a scientist": a zip of spec.yaml, knobs.json, metrics.json, leaderboard.csv,
    frontier.csv and a README."""
    svc = services(request)
    run = _get_run(svc, run_id)
    return Response(svc.bundle(run), media_type="application/zip", headers={
        "Content-Disposition": f'attachment; filename="dripml-{run.recipe}-{run.id}.zip"'})


@router.get("/runs/{run_id}/frontier.svg", response_class=Response,
            responses={200: {"content": {"image/svg+xml": {}}}, 404: {}})
def run_frontier(run_id: str, request: Request, version: int | None = None) -> Response:
    """The quality-cost frontier; each registered version is a link ``?version=N``."""
    svc = services(request)
    return Response(svc.frontier_svg(_get_run(svc, run_id), version),
                    media_type="image/svg+xml")


@router.get("/runs/{run_id}/events", responses={
    200: {"content": {"text/event-stream": {}},
          "description": "`progress` events (status, step, done, total, best_value) while "
                         "the run goes on; one `status` event at the end"}, 404: {}})
async def run_events(run_id: str, request: Request) -> Any:
    """Server-sent events: the run's progress as it changes, then its final status."""
    from sse_starlette.sse import EventSourceResponse

    svc = services(request)
    await run_in_threadpool(_get_run, svc, run_id)

    async def stream() -> Any:
        last: str | None = None
        while True:
            run = await run_in_threadpool(svc.store.get, run_id)
            data = json.dumps({"status": run.status, "step": run.step, "done": run.done,
                               "total": run.total, "best_value": run.best_value,
                               "objective": run.objective})
            if data != last:
                yield {"event": "progress", "data": data}
                last = data
            if run.status in TERMINAL:
                yield {"event": "status", "data": json.dumps(
                    {"status": run.status, "error": run.error})}
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(EVENT_POLL_S)

    return EventSourceResponse(stream())
