"""Serving: a registered model behind a BentoML HTTP service (``drip serve``).

Three layers:

- :func:`request_model`: the pydantic model of ONE input record, built from the model's feature
  schema (one nullable field per feature, unknown fields rejected). It is what validates
  requests and what the OpenAPI docs show.
- :func:`build_service`: a BentoML 1.4 service class (``@bentoml.service``) with
  ``POST /predict``: ``{"records": [record, ...]}`` (1 to 10,000 records) in,
  :class:`PredictResponse` out, plus BentoML's ``/healthz``, ``/livez``, ``/readyz``,
  ``/metrics``, Swagger UI (``/``; ``/docs`` redirects there) and OpenAPI document
  (``/docs.json``), titled with the model and version (``adult v3``, :func:`docs_title`) and
  described with its algorithm and test metrics (:func:`docs_description`).
  :mod:`dripml.productionize.service` is the module ``bentoml serve`` imports; it calls this
  once at import.

Input values read as missing (a category unseen in training, a date that does not read as
one; see :class:`~dripml.core.features.InputIssue`) are never silent: each response's
``warnings`` lists them per feature (``workclass: 1 unseen category ('Space-agency') read as
missing``; ``[]`` when none), and ``/metrics`` counts them in the Prometheus counters
``dripml_unseen_categories_total{feature=...}`` and ``dripml_unreadable_dates_total{feature=...}``
(:func:`count_issues`; a 0 series per feature from the start). Finding them costs one
comparison per categorical value on the request path.
- :func:`serve`: resolves the model in the registry (fails fast, before any process starts),
  runs ``bentoml serve dripml.productionize.service:DripmlService`` in its own process group
  and waits until ``/readyz`` answers; returns a :class:`ServerHandle` that stops it.
  :func:`wait_forever` blocks until Ctrl-C, as ``drip serve`` does::

      handle = serve("adult", port=3000)
      print(handle.url, handle.curl_example())
      wait_forever(handle)

Client errors are always 4xx JSON, never 500, of one shape declared in the OpenAPI document
(:class:`~dripml.productionize.guard.ClientError`): ``{"error": "<one line>", "error_count":
n, "detail": [{"loc", "msg", "type"}, ...]}`` where the line names each bad field by its path,
e.g. ``records.0.age: Input should be a valid number``. BentoML itself answers pydantic
validation errors with 400 and a generic ``"1 validation error for PredictRequest"`` line;
:class:`ClientErrorMiddleware` rewrites that line (and BentoML's other 4xx bodies) into the
readable form. Before any of it, :class:`~dripml.productionize.guard.RequestGuard` answers a
body over the limit (413), a truncated body (400 within a second) and, with a token set, a
request to ``/predict`` without it (401).

- :func:`write_bundle` / :func:`read_bundle`: a model exported to a folder (the pickled
  :class:`~dripml.core.model.TrainedModel` and its provenance), which a serving image bakes in and
  :mod:`dripml.productionize.service` loads when ``DRIPML_MODEL_PATH`` is set, without MLflow.

Importing this module has no side effects and imports neither BentoML (only
:func:`build_service` does) nor MLflow (only :func:`serve` does, to resolve the model).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any

import httpx
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model

import dripml
from dripml import settings
from dripml.core import interrupts, refs
from dripml.core.costs import SINGLE_THREAD_ENV
from dripml.core.features import Feature, InputIssue, join_issues, split_issues
from dripml.core.model import Prediction, TrainedModel
from dripml.errors import DataError, ModelNotFoundError, ServeError, SettingsError
from dripml.productionize import fastpath, guard

MAX_RECORDS = 10_000
"""Most records one ``POST /predict`` accepts."""

PROBABILITY_DECIMALS = 6
"""Probabilities in responses are rounded to this many decimals."""

MAX_ERROR_DETAILS = 100
"""Most validation errors listed in a 400 body (``error_count`` gives the total)."""

SERVICE_NAME = "DripmlService"
"""The service class name, and its attribute in :mod:`dripml.productionize.service`."""

PREDICT_ROUTE = "/predict"


def __getattr__(name: str) -> Any:
    # BATCHED_ALGORITHMS: the registered algorithms whose declaration says `batches` (a
    # forward pass of a transformer over many rows costs little more than over one). Derived
    # on first use (PEP 562), so importing this module loads no algorithm module.
    if name == "BATCHED_ALGORITHMS":
        from dripml.algorithms import registry

        return frozenset(n for n, a in registry.declarations().items() if a.batches)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MAX_BATCH_SIZE = 64
"""Most records BentoML's adaptive batching puts into one model call (larger requests are
split into calls of this size)."""

MAX_BATCH_LATENCY_MS = 30_000
"""BentoML's batching deadline: a request still queued past it gets a 503."""

_INTEGER = re.compile(r"-?(0|[1-9]\d*)")  # canonical: str(int(c)) == c, so "007" is not


# --------------------------------------------------------------------------- request/response


def _field_description(feature: Feature, shown: int = 5) -> str:
    if feature.kind == "numeric":
        return "numeric: a number (integer or float); null when missing"
    if feature.kind == "text":
        return "text: a string; null when missing"
    if feature.kind == "datetime":
        return ("datetime: an ISO-8601 date or timestamp such as '2013-01-01T10:00:00Z'; "
                "null, or a value that does not read as one, counts as missing")
    if not feature.categories:
        return "categorical: a string; null when missing (no categories seen in training)"
    examples = ", ".join(repr(c) for c in feature.categories[:shown])
    more = f" (of {len(feature.categories)} known)" if len(feature.categories) > shown else ""
    return (f"categorical: a string such as {examples}{more}; "
            "null, or a category unseen in training, counts as missing")


def _field_type(feature: Feature) -> Any:
    if feature.kind == "numeric":
        # Strict: 3 and 3.5 pass; "3", true and NaN/Infinity are rejected.
        return Annotated[float | None, Field(strict=True, allow_inf_nan=False)]
    if _integer_coded(feature):
        # Integer-coded categories ("1", "2", ...) may come as JSON integers too.
        return str | StrictInt | None
    return str | None


def _integer_coded(feature: Feature) -> bool:
    return feature.kind == "categorical" and bool(feature.categories) and all(
        _INTEGER.fullmatch(c) for c in feature.categories)


def _python_name(name: str) -> bool:
    return (name.isidentifier() and not name.startswith(("_", "model_"))
            and not hasattr(BaseModel, name))


def request_model(model: TrainedModel) -> type[BaseModel]:
    """The pydantic model of ONE input record of ``model``.

    One field per input column (:attr:`~dripml.core.model.TrainedModel.input_features`: the
    raw columns ``data.preprocess`` reads, when the model has one, else the encoder's
    features), in order; every key is required, every value is
    nullable (null = missing value); unknown keys are rejected (``extra="forbid"``). Types:
    numeric -> a JSON number (int or float; strings, booleans, NaN and Infinity rejected);
    categorical -> a string (also an integer when all training categories are integers);
    text, datetime (ISO-8601) -> a string. Field descriptions give the kind and a few known
    categories; the
    model's ``example`` record is the JSON-schema example.

    Feature names that are not valid pydantic field names (``"my col"``, ``"_id"``,
    ``"model_x"``) become aliases, so always read records with
    ``record.model_dump(by_alias=True)``.

    Example:
        >>> Record = request_model(model)
        >>> Record.model_validate({"age": 39, "workclass": None, ...}).model_dump(by_alias=True)
    """
    fields: dict[str, Any] = {}
    for i, feature in enumerate(model.input_features):
        name = feature.name if _python_name(feature.name) else f"feature_{i}"
        alias = None if name == feature.name else feature.name
        fields[name] = (_field_type(feature),
                        Field(..., alias=alias, description=_field_description(feature)))
    config = ConfigDict(
        extra="forbid",
        title="Record",
        # "example" (OpenAPI 3.0), not "examples": BentoML's OpenAPI Schema rejects the latter.
        json_schema_extra={"example": model.example} if model.example else None,
    )
    return create_model("Record", __config__=config, **fields)


class PredictResponse(BaseModel):
    """What ``POST /predict`` returns: one prediction per record, in request order."""

    predictions: list[str | float] = Field(
        description="predicted label per record (classification) or value (regression)")
    probabilities: list[dict[str, float]] | None = Field(
        default=None,
        description=f"per record, class -> probability (rounded to {PROBABILITY_DECIMALS} "
                    "decimals, in `classes` order); null for regression")
    model: str = Field(description="registered model served, as NAME/VERSION")
    classes: list[str] | None = Field(
        default=None, description="class labels (classification); null for regression")
    warnings: list[str] = Field(
        default_factory=list,
        description="input values of this request read as missing, one line per feature, "
                    "e.g. \"workclass: 1 unseen category ('Space-agency') read as missing\" "
                    "(categories unseen in training, dates that do not read as ISO-8601); "
                    "empty when none")
    outputs: list[dict[str, Any]] | None = Field(
        default=None,
        description="per record, the fields the model's `postprocess` function returned "
                    "(e.g. {\"decision\": \"approve\"}); null for a model without one")


def _warnings(issues: Sequence[InputIssue]) -> list[str]:
    return [issue.message() for issue in issues]


def _response(prediction: Prediction, version_label: str) -> PredictResponse:
    probabilities = None
    classes = list(prediction.classes) or None
    if prediction.probabilities is not None:
        rounded = np.round(prediction.probabilities, PROBABILITY_DECIMALS).tolist()
        probabilities = [dict(zip(prediction.classes, row, strict=True)) for row in rounded]
    # Built without re-validation: the values come from the model, already of the right types.
    return PredictResponse.model_construct(
        predictions=prediction.labels, probabilities=probabilities,
        model=version_label, classes=classes, warnings=_warnings(prediction.issues),
        outputs=prediction.outputs)


RecordPrediction = tuple[str | float, dict[str, float] | None, tuple[InputIssue, ...],
                         dict[str, Any] | None]
"""One record's prediction, class probabilities, input issues and postprocess outputs: the
unit adaptive batching splits."""


def _per_record(prediction: Prediction, response: PredictResponse) -> list[RecordPrediction]:
    n = len(response.predictions)
    probabilities = response.probabilities or [None] * n
    issues = split_issues(prediction.issues, n) if prediction.issues else [()] * n
    outputs = prediction.outputs if prediction.outputs is not None else [None] * n
    return list(zip(response.predictions, probabilities, issues, outputs, strict=True))


def _joined(parts: list[RecordPrediction], version_label: str,
            classes: list[str] | None) -> PredictResponse:
    issues = [i for _, _, i, _ in parts]
    warnings = (_warnings(join_issues(issues, [1] * len(parts))) if any(issues) else [])
    outputs = [o for _, _, _, o in parts]
    return PredictResponse.model_construct(
        predictions=[label for label, _, _, _ in parts],
        probabilities=[p for _, p, _, _ in parts] if classes else None,
        model=version_label, classes=classes, warnings=warnings,
        outputs=None if all(o is None for o in outputs) else outputs)


# --------------------------------------------------------------------------- metrics

UNSEEN_CATEGORIES_METRIC = "dripml_unseen_categories"
"""Prometheus counter (exposed as ``dripml_unseen_categories_total{feature="..."}``): values
of a categorical feature unseen in training, read as missing, since the worker started."""

UNREADABLE_DATES_METRIC = "dripml_unreadable_dates"
"""Prometheus counter (``dripml_unreadable_dates_total{feature="..."}``): values of a
datetime feature that did not read as ISO-8601, read as missing."""


@functools.cache
def _issue_counters() -> dict[str, Any]:
    """The counters per :class:`~dripml.core.features.InputIssue` reason, created once per
    process. ``prometheus_client`` is imported here, in a worker, where BentoML has set
    ``PROMETHEUS_MULTIPROC_DIR`` (imported earlier it would count in single-process mode,
    invisible to BentoML's ``/metrics``)."""
    import prometheus_client  # a BentoML dependency

    return {
        "unseen category": prometheus_client.Counter(
            UNSEEN_CATEGORIES_METRIC, "Categorical values unseen in training, read as missing",
            ["feature"]),
        "unreadable date": prometheus_client.Counter(
            UNREADABLE_DATES_METRIC, "Datetime values that do not read as ISO-8601, read as "
            "missing", ["feature"]),
    }


FRAME_FALLBACKS_METRIC = "dripml_frame_fallbacks"
"""Prometheus counter (``dripml_frame_fallbacks_total{op="..."}``): calls of the model's
``data.preprocess``/``postprocess`` that ran on pandas because the row layout does not support
``op`` (see :mod:`dripml.frame`)."""


@functools.cache
def count_frame_fallbacks() -> None:
    """Set up :mod:`dripml.frame` in this worker, once per process: its layout choice from
    ``DRIPML_FRAME_LAYOUT`` and its fallbacks to pandas counted in ``/metrics`` (imported in
    the worker for the same reason as :func:`_issue_counters`)."""
    import prometheus_client

    from dripml import frame
    from dripml.frame import dispatch

    dispatch.use_measured_auto(settings.frame_layout() == "measured")
    counter = prometheus_client.Counter(
        FRAME_FALLBACKS_METRIC, "Pre/postprocessing calls that fell back from dripml.frame's "
        "row layout to pandas, by operation", ["op"])
    frame.add_listener(lambda op: counter.labels(op=op).inc())


def start_issue_counters(features: Sequence[Feature]) -> None:
    """Create the counters with a 0 series per categorical and datetime feature, so that
    ``/metrics`` lists them (and ``rate()`` has a start) before the first issue."""
    counters = _issue_counters()
    for feature in features:
        if feature.kind == "categorical":
            counters["unseen category"].labels(feature=feature.name)
        elif feature.kind == "datetime":
            counters["unreadable date"].labels(feature=feature.name)


def count_issues(issues: Sequence[InputIssue]) -> None:
    """Add each issue's count to its feature's counter (nothing to do, and no cost, when
    there are none)."""
    if not issues:
        return
    counters = _issue_counters()
    for issue in issues:
        counters[issue.reason].labels(feature=issue.feature).inc(issue.count)


def batching_enabled(model: TrainedModel, batching: str = "auto") -> bool:
    """Whether ``POST /predict`` uses BentoML's adaptive batching for ``model``.

    Args:
        batching: ``on``, ``off`` or ``auto`` (on when the model's algorithm declares
            ``batches``; see :mod:`dripml.algorithms`).

    Raises:
        ServeError: ``batching`` is none of those.
    """
    check_batching(batching)
    if batching == "auto":
        from dripml.algorithms import registry

        declaration = registry.for_model(model)
        return declaration is not None and declaration.batches
    return batching == "on"


def check_batching(batching: str) -> None:
    """Raises ServeError unless ``batching`` is ``auto``, ``on`` or ``off``."""
    if batching not in ("auto", "on", "off"):
        raise ServeError(f"batching must be auto, on or off, got {batching!r}")


# --------------------------------------------------------------------------- error middleware

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def readable_error(status: int, body: bytes) -> dict[str, Any]:
    """Normalise a 4xx body into the one shape of every 4xx of the server,
    :class:`~dripml.productionize.guard.ClientError`: ``{"error": "<one line>",
    "error_count": n, "detail": [{"loc": [...], "msg": ..., "type": ...}, ...]}``.

    Validation errors list the first :data:`MAX_ERROR_DETAILS` of pydantic's errors in
    ``detail``. BentoML gives ``{"error": "N validation error for X", "detail": [{"loc",
    "msg", ...}]}`` for pydantic errors and ``[{"error": "..."}]`` for its own 4xx exceptions;
    the line becomes ``"invalid request: records.0.age: Input should be a valid number;
    ..."``. A body already in that shape (the guard's 401/413) is returned as it is; any
    other becomes one problem of type ``http_<status>``.
    """
    try:
        data = json.loads(body or b"null")
    except ValueError:
        data = body.decode("utf-8", "replace").strip() or f"HTTP {status}"
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]
    if not isinstance(data, dict):
        return _one_problem(str(data), status)
    detail = data.get("detail")
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        if isinstance(data.get("error_count"), int) and isinstance(data.get("error"), str):
            return data  # already readable
        parts = []
        for item in detail[:10]:
            loc = ".".join(str(p) for p in item.get("loc", ())) or "body"
            parts.append(f"{loc}: {item.get('msg', 'invalid')}")
        more = f" (and {len(detail) - 10} more)" if len(detail) > 10 else ""
        items = [{**item, "loc": list(item.get("loc") or ()), "msg": str(item.get("msg", "")),
                  "type": str(item.get("type", "invalid"))} for item in detail]
        return {"error": "invalid request: " + "; ".join(parts) + more,
                "error_count": len(detail), "detail": items[:MAX_ERROR_DETAILS]}
    message = data.get("error") if isinstance(data.get("error"), str) else None
    if message is None and isinstance(detail, str):
        message = detail
    return _one_problem(message or json.dumps(data), status)


def _one_problem(message: str, status: int) -> dict[str, Any]:
    return guard.client_error(message, kind=f"http_{status}", loc=())


class ClientErrorMiddleware:
    """Pure ASGI middleware: rewrites 4xx responses of one route into :func:`readable_error`.

    Successful responses pass through untouched (no buffering), so the cost on the hot path is
    one wrapper call per ASGI message.
    """

    def __init__(self, app: ASGIApp, route: str = PREDICT_ROUTE) -> None:
        self.app = app
        self.route = route

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("path") != self.route:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def send_readable(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            content = json.dumps(readable_error(start["status"], bytes(body))).encode()
            headers = [(k, v) for k, v in start.get("headers", [])
                       if k.lower() not in (b"content-length", b"content-type")]
            headers += [(b"content-type", b"application/json"),
                        (b"content-length", str(len(content)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content, "more_body": False})

        await self.app(scope, receive, send_readable)


class DocsRedirectMiddleware:
    """Pure ASGI middleware: ``GET /docs`` redirects (307) to BentoML's Swagger UI at ``/``.

    BentoML 1.4 serves the UI at ``/`` and the OpenAPI document at ``/docs.json`` but has no
    ``/docs`` route (404), the address FastAPI users try first.
    """

    def __init__(self, app: ASGIApp, path: str = "/docs", target: str = "/") -> None:
        self.app = app
        self.path = path
        self.target = target.encode()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or scope.get("path") not in (self.path, self.path + "/"):
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 307,
                    "headers": [(b"location", self.target), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


# --------------------------------------------------------------------------- service


def docs_title(version_label: str) -> str:
    """The OpenAPI (and Swagger page) title: ``adult v3`` for ``adult/3``; a label that is no
    ``NAME/VERSION`` (a ``runs:/`` URI) as it is."""
    name, slash, version = version_label.rpartition("/")
    return f"{name} v{version}" if slash and name and version.isdigit() else version_label


def docs_description(model: TrainedModel, model_ref: str, version_label: str,
                     metrics: Mapping[str, float] | None = None) -> str:
    """The OpenAPI ``info.description`` (Markdown): algorithm, task, label, test metrics
    (``test_<metric>`` keys of ``metrics``, shown without the prefix, 4 significant digits),
    where the model came from, its features and what ``warnings`` and ``/metrics`` report."""
    tested = {k.removeprefix("test_"): v for k, v in sorted((metrics or {}).items())
              if k.startswith("test_")}
    scores = (", ".join(f"{k} {v:.4g}" for k, v in tested.items()) if tested
              else "not recorded")
    kinds = ", ".join(f"{f.name} ({f.kind})" for f in model.input_features)
    return (f"dripml model **{version_label}**: {model.algorithm} ({model.task}) predicting "
            f"{model.label!r}.\n\nTest metrics: {scores}.\n\nLoaded from {model_ref}.\n\n"
            f"Features: {kinds}.\n\nA category unseen in training (or a date that does not "
            f"read as one) is read as missing: the response's `warnings` says so, and "
            f"`/metrics` counts it in `{UNSEEN_CATEGORIES_METRIC}_total` "
            f"(`{UNREADABLE_DATES_METRIC}_total`) per feature.")


def build_service(model: TrainedModel, model_ref: str, version_label: str, *,
                  workers: int = 1, timeout_s: float = 60.0, batching: bool = False,
                  metrics: Mapping[str, float] | None = None,
                  max_body_mib: float = settings.DEFAULT_SERVE_MAX_BODY_MIB,
                  token: str | None = None, fast_path: bool = True,
                  access_log: bool = False, tracing: bool = False) -> Any:
    """A BentoML 1.4 service class serving ``model``.

    Routes: ``POST /predict`` with JSON ``{"records": [record, ...]}`` (1 to
    :data:`MAX_RECORDS` records, each as :func:`request_model` describes) returning
    :class:`PredictResponse` as JSON (with ``warnings`` naming input values read as
    missing); BentoML's ``GET /healthz``, ``/livez``, ``/readyz``, ``/metrics`` (plus the
    counters of :func:`count_issues`), Swagger UI at ``/`` (``/docs`` redirects there) and the
    OpenAPI document at ``/docs.json``, titled :func:`docs_title` and described by
    :func:`docs_description`. Invalid requests get a 400 whose ``error`` names each bad field
    (``records.0.age: Input should be a valid number``), see :func:`readable_error`.
    Every request first passes :class:`~dripml.productionize.guard.RequestGuard`: a body over
    ``max_body_mib`` gets a 413, a truncated body a 400 within a second, and with ``token``
    ``/predict`` without ``Authorization: Bearer <token>`` a 401. Every 4xx body is a
    :class:`~dripml.productionize.guard.ClientError`, declared in the OpenAPI document.

    Args:
        model: the model to serve (already loaded; shared by every request of the worker).
        model_ref: where it came from (shown in the service description), e.g.
            ``models:/adult@champion``.
        version_label: ``NAME/VERSION``, returned as ``model`` in every response.
        workers: BentoML worker processes (each loads the model).
        timeout_s: per-request timeout, seconds.
        batching: BentoML adaptive batching: the records of concurrent requests are
            predicted in one model call of at most :data:`MAX_BATCH_SIZE` records (a
            transformer's throughput under concurrent single-row traffic), and each request
            gets its own records' predictions back in the same response shape.
        metrics: the model version's test metrics (``test_<metric>`` -> value), shown in
            the OpenAPI description; None or {} when unknown.
        max_body_mib: the largest request body, MiB (> 0).
        token: the bearer token ``/predict`` requires; None: open.
        fast_path: answer valid ``/predict`` requests without BentoML's route
            (:mod:`dripml.productionize.fastpath`: the same bodies, 1 to 3 ms less per
            request on 2 cores); off while ``batching`` is on.
        access_log: BentoML's access log (a log line written per request; off by default).
        tracing: BentoML's OpenTelemetry spans for ``/predict`` and the probes. Off, those
            routes are in ``tracing.excluded_urls``: BentoML samples no span by default
            (``tracing.sample_rate`` 0) yet builds three per request (a sixth of a
            worker's time per single-row request, profiled).

    Returns:
        The class decorated with ``@bentoml.service`` (named :data:`SERVICE_NAME`); bind it to a
        module attribute of that name for ``bentoml serve module:DripmlService``.
    """
    import attrs  # a BentoML dependency
    import bentoml

    record = request_model(model)
    aliased = any(f.alias for f in record.model_fields.values())
    example = {"records": [model.example]} if model.example else None

    class _JSONBody(bentoml.IODescriptor):
        model_config = ConfigDict(extra="forbid", json_schema_extra=(
            {"example": example} if example else None))

        @classmethod
        async def from_http_request(cls, request: Any, serde: Any) -> Any:
            # Always JSON whatever the Content-Type: BentoML would pick a multipart or pickle
            # parser from the header, which answers malformed bodies with a 500.
            return cls.model_validate_json(await request.body() or b"{}")

    records_type = Annotated[list[record], Field(
        min_length=1, max_length=MAX_RECORDS,
        description=f"1 to {MAX_RECORDS} records; every feature key is required, "
                    "null marks a missing value")]
    request_type = create_model("PredictRequest", __base__=_JSONBody,
                                __doc__=f"Records to score with {version_label}.",
                                records=(records_type, ...))
    classes = list(model.classes) or None

    class _JSONResponse(bentoml.IODescriptor):
        @classmethod
        async def to_http_response(cls, obj: Any, serde: Any) -> Any:
            if isinstance(obj, list):  # this request's share of a batched call
                obj = _joined(obj, version_label, classes)
            return await super().to_http_response(obj, serde)

    response_type = create_model("PredictResponse", __doc__=PredictResponse.__doc__,
                                 __base__=(_JSONResponse, PredictResponse))
    api_options: dict[str, Any] = {
        "route": PREDICT_ROUTE, "input_spec": request_type, "output_spec": response_type}
    if batching:
        api_options.update(batchable=True, batch_dim=0, max_batch_size=MAX_BATCH_SIZE,
                           max_latency_ms=MAX_BATCH_LATENCY_MS)
    description = docs_description(model, model_ref, version_label, metrics)
    title = docs_title(version_label)

    class _DocumentedService(bentoml.Service):  # type: ignore[misc]
        # BentoML 1.4 titles the OpenAPI document with the service name (an identifier it
        # also uses for configuration) and describes it with its own README; there is no
        # option for either (bentoml/BentoML#2975), so the service_class hook fills them in.
        @property
        def openapi_spec(self) -> Any:
            spec = super().openapi_spec
            return attrs.evolve(spec, info=attrs.evolve(
                spec.info, title=title, description=description,
                version=version_label.rpartition("/")[2], contact=None),
                **_documented_errors(spec, token_required=token is not None))

    @bentoml.service(name=SERVICE_NAME, description=description, workers=workers,
                     traffic={"timeout": timeout_s}, service_class=_DocumentedService,
                     logging={"access": {"enabled": access_log}},
                     tracing={} if tracing else {"excluded_urls": [
                         f"{route}$" for route in _UNTRACED_ROUTES]})
    class DripmlService:
        served = model
        label = version_label

        def __init__(self) -> None:
            start_issue_counters(model.encoder.features)
            if getattr(model, "preprocessor", None) or getattr(model, "postprocessor", None):
                count_frame_fallbacks()

        # Sync on purpose: BentoML runs it in its thread pool (1 thread per worker), so the
        # event loop stays free for health probes while a 10,000-record batch predicts; an
        # async variant measured the same single-row latency.
        # Batched, ``records`` holds the records of every request in the batch and the
        # result is one RecordPrediction per record, which BentoML splits back per request.
        @bentoml.api(**api_options)
        def predict(self, records: list[Any]) -> Any:
            """Predict one label (or value) per record, with class probabilities."""
            rows = ([r.model_dump(by_alias=True) for r in records] if aliased
                    else [r.__dict__ for r in records])
            try:
                prediction = self.served.predict_records(rows)
            except DataError as error:  # data.preprocess/postprocess refused these records
                raise bentoml.exceptions.InvalidArgument(str(error)) from None
            count_issues(prediction.issues)
            response = _response(prediction, self.label)
            return _per_record(prediction, response) if batching else response

    # The first added is the outermost: the guard answers before anything reads the body.
    DripmlService.add_asgi_middleware(
        guard.RequestGuard, max_body_bytes=max(1, int(max_body_mib * guard.MIB)), token=token,
        protected=(PREDICT_ROUTE,))
    if fast_path and not batching:  # inside the guard: the token and body limit come first
        def predict_json(rows: list[dict[str, Any]]) -> dict[str, Any]:
            prediction = model.predict_records(rows)
            count_issues(prediction.issues)
            return _response(prediction, version_label).model_dump(mode="json")

        checker = fastpath.RecordChecker(
            model.input_features, max_records=MAX_RECORDS, integer_categories=frozenset(
                f.name for f in model.input_features if _integer_coded(f)))
        DripmlService.add_asgi_middleware(fastpath.PredictFastPath, predict=predict_json,
                                          checker=checker, route=PREDICT_ROUTE)
    DripmlService.add_asgi_middleware(ClientErrorMiddleware, route=PREDICT_ROUTE)
    DripmlService.add_asgi_middleware(DocsRedirectMiddleware)
    return DripmlService


_UNTRACED_ROUTES = (PREDICT_ROUTE, "/healthz", "/livez", "/readyz", "/metrics")
"""Routes left out of BentoML's OpenTelemetry spans unless ``tracing`` is on."""

_ERROR_RESPONSES = {
    400: "Invalid request: a field of a record, the JSON, or a body that ended before its "
         "Content-Length; `error` names each problem",
    401: "Missing or invalid token: send `Authorization: Bearer <token>` (the server's "
         "DRIPML_SERVE_TOKEN)",
    413: "Request body over the server's limit (DRIPML_SERVE_MAX_BODY_MIB); send fewer records "
         "per request",
}


def _documented_errors(spec: Any, *, token_required: bool) -> dict[str, Any]:
    """``components`` and ``paths`` of BentoML's OpenAPI document with every 4xx of
    ``/predict`` declared as :class:`~dripml.productionize.guard.ClientError` (and, with a
    token, the bearer security scheme)."""
    import attrs  # a BentoML dependency
    from bentoml._internal.service.openapi.specification import (
        MediaType,
        Reference,
        Response,
    )

    components = dict(spec.components or {})
    components["schemas"] = {**components.get("schemas", {}), **guard.openapi_error_schemas()}
    paths = dict(spec.paths)
    item = paths.get(PREDICT_ROUTE)
    if item is None or not isinstance(item.post, dict):
        return {"components": components}
    content = {"application/json": MediaType(
        schema=Reference("#/components/schemas/ClientError"))}
    responses = {k: v for k, v in item.post.get("responses", {}).items()
                 if not 400 <= int(k) < 500}
    for status, text in _ERROR_RESPONSES.items():
        if status != 401 or token_required:
            responses[status] = Response(description=text, content=content)
    post = {**item.post, "responses": dict(sorted(responses.items(), key=lambda kv: int(kv[0])))}
    if token_required:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        post["security"] = [{"bearer": []}]
    paths[PREDICT_ROUTE] = attrs.evolve(item, post=post)
    return {"components": components, "paths": paths}


# --------------------------------------------------------------------------- model bundle

BUNDLE_MODEL_FILE = "model.pkl"
"""The pickled :class:`~dripml.core.model.TrainedModel` in a model bundle (cloudpickle)."""

BUNDLE_INFO_FILE = "dripml-model.json"
"""Provenance of a model bundle: ``model_uri``, ``version_label``, algorithm, task, versions."""


@dataclass(frozen=True)
class ModelBundle:
    """A model exported to a folder, to be served without the MLflow server (a serving image
    bakes one in and points ``DRIPML_MODEL_PATH`` at it).

    Attributes:
        path: the folder (holds :data:`BUNDLE_MODEL_FILE` and :data:`BUNDLE_INFO_FILE`).
        model_uri: the registered version it was exported from, ``models:/NAME/VERSION``.
        version_label: ``NAME/VERSION``, returned as ``model`` in every response.
        algorithm, task: of the model.
        metrics: the version's test metrics (``test_<metric>`` -> value); {} when unknown
            (or in a bundle written before they were kept).
    """

    path: Path
    model_uri: str
    version_label: str
    algorithm: str
    task: str
    metrics: dict[str, float] = field(default_factory=dict)


def write_bundle(model: TrainedModel, folder: str | Path, *, model_uri: str,
                 version_label: str, metrics: Mapping[str, float] | None = None
                 ) -> ModelBundle:
    """Export ``model`` to ``folder`` (created): the model pickled with cloudpickle plus a JSON
    file of provenance (with ``metrics``, the version's test metrics, for the served docs).
    Loading it needs dripml and the model's runtime requirements only (not MLflow, Ray or
    Optuna): see :func:`read_bundle`."""
    import cloudpickle

    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    (path / BUNDLE_MODEL_FILE).write_bytes(cloudpickle.dumps(model))
    info = {"model_uri": model_uri, "version_label": version_label,
            "algorithm": model.algorithm, "task": model.task,
            "metrics": dict(metrics or {}),
            "dripml_version": dripml.__version__,
            "python": ".".join(map(str, sys.version_info[:3]))}
    (path / BUNDLE_INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return ModelBundle(path=path, model_uri=model_uri, version_label=version_label,
                       algorithm=model.algorithm, task=model.task,
                       metrics=dict(metrics or {}))


def read_bundle(folder: str | Path) -> tuple[TrainedModel, ModelBundle]:
    """Load a folder written by :func:`write_bundle`: (the model, its provenance).

    Raises:
        ServeError: the folder is not a model bundle, or its model does not load here (the
            message names the missing package or the unpickling error).
    """
    import cloudpickle

    path = Path(folder)
    try:
        info = json.loads((path / BUNDLE_INFO_FILE).read_text())
        with (path / BUNDLE_MODEL_FILE).open("rb") as f:
            model = cloudpickle.load(f)
    except FileNotFoundError as error:
        raise ServeError(f"{path} is not a dripml model bundle ({error.filename} is missing); "
                         f"DRIPML_MODEL_PATH must name a folder `drip build` exported") from None
    except (ImportError, AttributeError, ValueError, EOFError) as error:
        raise ServeError(f"cannot load the model in {path}: {type(error).__name__}: {error}; "
                         f"install the model's runtime requirements (the image's "
                         f"requirements.txt)") from None
    if not isinstance(model, TrainedModel):
        raise ServeError(f"{path / BUNDLE_MODEL_FILE} holds a {type(model).__name__}, "
                         f"not a dripml TrainedModel")
    bundle = ModelBundle(path=path, model_uri=str(info["model_uri"]),
                         version_label=str(info["version_label"]),
                         algorithm=str(info.get("algorithm", model.algorithm)),
                         task=str(info.get("task", model.task)),
                         metrics={str(k): float(v)
                                  for k, v in (info.get("metrics") or {}).items()})
    return model, bundle


# --------------------------------------------------------------------------- process


@dataclass
class ServerHandle:
    """A running ``bentoml serve`` process group started by :func:`serve`.

    Attributes:
        url: base URL, e.g. ``http://127.0.0.1:3000``.
        model_uri: the pinned model served (``models:/NAME/VERSION``).
        version_label: ``NAME/VERSION``.
        log_path: the server's stdout and stderr.
        process: the ``bentoml serve`` process (leader of its own process group).
        example: one input record, from the service's OpenAPI docs (empty if it has none).
        token_required: ``/predict`` requires a bearer token (``DRIPML_SERVE_TOKEN``).
    """

    url: str
    model_uri: str
    version_label: str
    log_path: Path
    process: subprocess.Popen[bytes]
    example: dict[str, Any] = field(default_factory=dict)
    token_required: bool = False
    _stopped: bool = field(default=False, init=False, repr=False)

    @property
    def pid(self) -> int:
        """Process id of the server, also its process-group id."""
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the server, SIGKILL whatever is left after ``grace_s`` seconds.

        BentoML starts each worker in a session (and process group) of its own, so signalling
        the server's group is not enough: the workers alive at this call are tracked too and
        killed if the server did not take them down. Idempotent; returns once every process
        of the server has exited.
        """
        import psutil  # a BentoML dependency

        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        try:
            workers = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            workers = []
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self.process.wait(timeout=grace_s)
        _, alive = psutil.wait_procs(workers, timeout=grace_s)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(alive, timeout=grace_s)
        _signal_group(self.pid, signal.SIGKILL)  # stragglers left in the server's own group

    def pids(self) -> list[int]:
        """The server process and its live descendants (the BentoML workers)."""
        import psutil

        try:
            leader = psutil.Process(self.pid)
            return [self.pid] + [p.pid for p in leader.children(recursive=True)]
        except psutil.Error:
            return []

    def curl_example(self) -> str:
        """A one-line POSIX-shell ``curl`` command posting the example record to ``/predict``
        (with a token required, its header reads the token from ``$DRIPML_SERVE_TOKEN``: the
        token itself is never printed)."""
        payload = json.dumps({"records": [self.example]}, separators=(",", ":"))
        auth = (f'-H "Authorization: Bearer ${settings.SERVE_TOKEN.name}" '
                if self.token_required else "")
        return (f"curl -s -X POST {self.url}{PREDICT_ROUTE} {auth}"
                f"-H 'Content-Type: application/json' -d {shlex.quote(payload)}")

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the server log."""
        return _tail(self.log_path, lines)

    def wait_forever(self, poll_s: float = 0.5) -> None:
        """Block until Ctrl-C or SIGTERM, then stop the server; see :func:`wait_forever`.

        Raises:
            ServeError: the server exited by itself (with its log's last lines).
        """
        wait_forever(self, poll_s)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass
class ContainerHandle(ServerHandle):
    """A model server running in a container (``drip deploy --target local``).

    ``process`` is the foreground ``podman run`` / ``docker run``; ``stop()`` first stops the
    container with its runtime (SIGTERM, then a kill after ``grace_s``) and removes it, then
    ends the run process as :meth:`ServerHandle.stop` does.

    Attributes:
        runtime: the runtime's executable (podman or docker).
        container: the container name.
    """

    runtime: str = "podman"
    container: str = ""

    def stop(self, grace_s: float = 10.0) -> None:
        if not self._stopped and self.container:
            subprocess.run([self.runtime, "stop", "--time", str(int(grace_s)), self.container],
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
            subprocess.run([self.runtime, "rm", "--force", self.container],
                           stdin=subprocess.DEVNULL, capture_output=True, check=False)
        super().stop(grace_s)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as f:
            return b"".join(deque(f, maxlen=lines)).decode("utf-8", "replace").rstrip()
    except OSError:
        return ""


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # SO_REUSEADDR as servers set it: TIME_WAIT leftovers are fine, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot serve on {host}:{port}: {exc.strerror}; "
                             "pick another port (--port)") from None


def _resolve(model_ref: str) -> tuple[str, str]:
    """(pinned model URI, NAME/VERSION label); raises ModelNotFoundError for unknown models."""
    from dripml.productionize import tracking

    uri = tracking.parse_model_ref(model_ref)
    if uri.startswith(refs.SCHEME):
        name, version = tracking.resolve_version(uri)
        pinned = refs.ModelRef(name, version=version)
        return pinned.uri, pinned.label
    return uri, uri


def export_for_serving(model_uri: str, version_label: str, tracking_uri: str) -> Path:
    """The model bundle ``drip serve`` hands its workers: the registered model loaded once here
    and written with :func:`write_bundle` under ``.dripml/serving/``, so that no worker imports
    MLflow (about 1,300 modules and 2.5 s of imports per worker on 2 cores).

    Model versions (and run artifacts) never change, so a bundle is written once per
    (tracking store, model URI) and reused; it is written to a temporary folder and renamed,
    so a crash never leaves half a bundle.

    Raises:
        ModelNotFoundError: the model does not exist.
        ServeError: the model does not load here (its error, before any server starts).
    """
    import hashlib
    import shutil
    import tempfile

    from dripml.productionize import tracking

    # "v2": bundles written since they hold the version's test metrics.
    key = hashlib.sha256(f"v2\n{tracking_uri}\n{model_uri}".encode()).hexdigest()[:16]
    root = settings.state_dir() / "serving"
    folder = root / key
    if (folder / BUNDLE_INFO_FILE).is_file():
        return folder
    try:
        model = tracking.load_trained_model(model_uri)
        metrics = tracking.version_test_metrics(model_uri)
    except (ModelNotFoundError, ServeError):
        raise
    except Exception as error:  # an unpickling error names the package the model needs
        raise ServeError(f"{model_uri} does not load in this environment: "
                         f"{type(error).__name__}: {error}") from error
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
    try:
        write_bundle(model, staging, model_uri=model_uri, version_label=version_label,
                     metrics=metrics)
        staging.rename(folder)
    except OSError:
        if not (folder / BUNDLE_INFO_FILE).is_file():  # not a concurrent export of the same
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def serve(model_ref: str, *, host: str = "127.0.0.1", port: int = 3000,
          tracking_uri: str | None = None, workers: int = 1, timeout_s: float = 120,
          log_path: str | Path | None = None, batching: str = "auto",
          max_body_mib: float | None = None, token: str | None = None,
          allow_local: bool = False) -> ServerHandle:
    """Start a prediction server for a registered model; return once it is ready.

    The model is resolved in the registry first (an alias is pinned to its current version)
    and exported once to a bundle (:func:`export_for_serving`), then ``bentoml serve
    dripml.productionize.service:DripmlService`` starts with this interpreter in a new process
    group, with ``DRIPML_MODEL_PATH`` (so workers load the bundle without MLflow),
    ``DRIPML_MODEL_URI``, an absolute ``MLFLOW_TRACKING_URI``, one thread per BLAS/OpenMP pool
    and ``BENTOML_HOME``
    (:func:`dripml.settings.bentoml_home`: ``./.dripml/bentoml`` unless set).
    Like :func:`dripml.api.models`, it points this process's MLflow client at the store.

    Args:
        model_ref: ``NAME`` (alias ``champion``), ``NAME@alias``, ``NAME/version`` or a
            ``models:/``/``runs:/`` URI.
        host, port: where to listen (default loopback only).
        tracking_uri: MLflow store; default ``MLFLOW_TRACKING_URI``, else ``./.dripml``.
        workers: server worker processes (each holds a copy of the model).
        timeout_s: seconds to wait for ``GET /readyz`` to answer 200.
        log_path: file for the server's stdout/stderr; default
            ``$BENTOML_HOME/logs/serve-<port>.log``.
        batching: adaptive batching of ``/predict``: ``on``, ``off``, or ``auto`` (on for
            text models, :func:`batching_enabled`).
        max_body_mib: the largest request body, MiB (a larger one gets a 413); default
            ``DRIPML_SERVE_MAX_BODY_MIB``, else 10.
        token: the bearer token ``/predict`` requires (401 without it); default
            ``DRIPML_SERVE_TOKEN``, else none. Handed to the server in its environment,
            never on a command line.
        allow_local: also serve a model folder on disk (``file://...`` or a path: a dripml
            bundle or an MLflow model). Loading a model runs its pickled code, so this is
            off by default; registry models need no flag (see ``SECURITY.md``).

    Returns:
        A :class:`ServerHandle` (a context manager; ``stop()`` ends the process group).

    Raises:
        ModelRefError: ``model_ref`` is none of those forms, or a local folder without
            ``allow_local`` (nothing is started).
        SettingsError: ``max_body_mib`` (or its variable) is not a number above 0.
        ModelNotFoundError: no such model, version or alias (nothing is started).
        ServeError: the port is taken, or the server exited or was not ready within
            ``timeout_s`` (the message ends with the server log's last lines).
    """
    from dripml.productionize import local_models, tracking

    check_batching(batching)
    max_body = settings.serve_max_body_mib() if max_body_mib is None else max_body_mib
    if not 0 < max_body < float("inf"):
        raise SettingsError(f"max_body_mib must be a number of MiB above 0, got {max_body!r}")
    token = token or settings.serve_token()
    local = local_models.is_local(model_ref)
    if local:
        folder = local_models.check_allowed(model_ref, allow_local=allow_local)
    uri = tracking.configure(tracking_uri)
    if local:
        model_uri = version_label = folder.as_uri()
    else:
        model_uri, version_label = _resolve(model_ref)
    check_port_free(host, port)
    store = tracking.absolute_tracking_uri(uri)  # valid from the server's working directory
    if local and local_models.local_kind(folder) == local_models.BUNDLE:
        bundle = folder  # served as it is: it is what DRIPML_MODEL_PATH takes
    else:
        bundle = export_for_serving(model_uri, version_label, store)

    env = dict(os.environ)
    # The folder holding the dripml package, so the server imports this very copy.
    package_root = str(Path(dripml.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    env.update(SINGLE_THREAD_ENV)
    env.update({
        "DRIPML_MODEL_PATH": str(bundle),
        "DRIPML_MODEL_URI": model_uri,
        "DRIPML_MODEL_REF": model_ref,
        "DRIPML_SERVE_WORKERS": str(workers),
        "DRIPML_SERVE_BATCHING": batching,
        "DRIPML_SERVE_MAX_BODY_MIB": repr(float(max_body)),
        "MLFLOW_TRACKING_URI": store,
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONUNBUFFERED": "1",
    })
    env["BENTOML_HOME"] = str(settings.bentoml_home())  # BENTOML_HOME, else .dripml/bentoml
    env.pop(settings.SERVE_TOKEN.name, None)
    if token:
        env[settings.SERVE_TOKEN.name] = token
    log = Path(log_path) if log_path else Path(env["BENTOML_HOME"]) / "logs" / f"serve-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)

    command = [sys.executable, "-m", "bentoml", "serve",
               f"dripml.productionize.service:{SERVICE_NAME}", "--host", host, "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True)
    # A wildcard bind is reached through loopback.
    url_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(
        host, f"[{host}]" if ":" in host else host)
    handle = ServerHandle(url=f"http://{url_host}:{port}", model_uri=model_uri,
                          version_label=version_label, log_path=log, process=process,
                          token_required=bool(token))
    return until_ready(handle, timeout_s)


def until_ready(handle: ServerHandle, timeout_s: float) -> ServerHandle:
    """Wait for ``handle``'s server to be ready and read its example record; return it.

    The server is stopped at interpreter exit, and at once if it never gets ready (or the
    wait is interrupted).

    Raises:
        ServeError: see :func:`wait_ready`.
    """
    atexit.register(handle.stop)
    try:
        wait_ready(handle, timeout_s)
        handle.example = example_from_docs(handle.url)
    except BaseException:
        handle.stop()
        raise
    return handle


def wait_ready(handle: ServerHandle, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=2.0, trust_env=False) as client:  # loopback: no proxies
        while True:
            code = handle.process.poll()
            if code is not None:
                raise ServeError(
                    f"the server for {handle.model_uri} exited with code {code} before it was "
                    f"ready; last lines of {handle.log_path}:\n{handle.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"{handle.url}/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise ServeError(
                    f"the server for {handle.model_uri} was not ready after {timeout_s:g} s; "
                    f"last lines of {handle.log_path}:\n{handle.log_tail()}")
            time.sleep(0.2)


def example_from_docs(url: str) -> dict[str, Any]:
    """The Record example from the service's OpenAPI document ({} if it has none).

    Keys come back in feature order (the schema generator sorts the example's keys; its
    ``properties`` keep the model's order).
    """
    try:
        spec = httpx.get(f"{url}/docs.json", timeout=5.0, trust_env=False).json()
        record = spec["components"]["schemas"]["Record"]
        example, order = record.get("example"), list(record.get("properties", {}))
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    if not isinstance(example, dict):
        return {}
    return {k: example[k] for k in order if k in example} | example


def wait_forever(handle: ServerHandle, poll_s: float = 0.5) -> None:
    """Block until Ctrl-C or SIGTERM (then stop the server) or until the server exits.

    Both signals get a handler of their own: a process started in the background inherits
    SIGINT as ignored, and Ctrl-C must still stop the server it started.

    Raises:
        ServeError: the server exited by itself (the message has its log's last lines).
    """
    # catch_signals: SIGTERM (what process managers send) stops the server like Ctrl-C does,
    # and a second signal does not interrupt the stop.
    with interrupts.catch_signals():
        try:
            while handle.running():
                time.sleep(poll_s)
        except KeyboardInterrupt:  # interrupts.Interrupted is one
            pass
        else:
            raise ServeError(f"the server exited with code {handle.process.returncode}; last "
                             f"lines of {handle.log_path}:\n{handle.log_tail()}")
        finally:
            handle.stop()
