"""The module ``bentoml serve`` imports:
``bentoml serve dripml.productionize.service:DripmlService``.

Unlike the rest of dripml, this module does its work at import time: it reads its configuration
from the environment, loads the model once and defines the service class at module level. It
is the application entry point, like ``app = FastAPI()`` in a web app: BentoML imports the
service by its import path in the ``bentoml serve`` process and again in every worker process,
so it cannot be handed Python arguments, only the environment.
:func:`dripml.productionize.serving.serve` sets these variables; they can also be set by hand
(a container, a Kubernetes pod). They are read once, through
:func:`dripml.settings.serve_settings` (where their defaults live):

- ``DRIPML_MODEL_PATH``: a model bundle folder
  (:func:`dripml.productionize.serving.write_bundle`), as a serving image built by
  ``drip build`` bakes in. When set, it wins over ``DRIPML_MODEL_URI``
  and neither MLflow nor its server is needed (nor imported).
- ``DRIPML_MODEL_URI`` (required without ``DRIPML_MODEL_PATH``): the model,
  ``models:/NAME/VERSION``, ``models:/NAME@alias`` or ``runs:/...``. ``serve()`` pins an alias
  to its version before starting.
- ``MLFLOW_TRACKING_URI``: the MLflow store holding it (MLflow's own variable); default the
  embedded store under ``./.dripml``.
- ``DRIPML_MODEL_REF`` (optional): the reference the user gave, shown in the docs.
- ``DRIPML_SERVE_WORKERS`` (optional, default 1): BentoML worker processes.
- ``DRIPML_SERVE_BATCHING`` (optional, default ``auto``): BentoML adaptive batching of
  ``/predict``, ``on``, ``off`` or ``auto`` (on for text models, see
  :func:`dripml.productionize.serving.batching_enabled`).
- ``DRIPML_SERVE_MAX_BODY_MIB`` (optional, default 10): the largest request body, MiB; a
  larger one gets a 413 (:mod:`dripml.productionize.guard`).
- ``DRIPML_SERVE_TOKEN`` (optional): when set, ``/predict`` requires
  ``Authorization: Bearer <token>``; on Kubernetes, from a Secret.
- ``DRIPML_SERVE_FAST_PATH`` (optional, default ``on``): dripml's lean ``/predict``
  (:mod:`dripml.productionize.fastpath`); ``off`` takes BentoML's route for every request.
- ``DRIPML_SERVE_ACCESS_LOG`` (optional, default ``off``): BentoML's per-request access log.
- ``DRIPML_SERVE_TRACING`` (optional, default ``off``): BentoML's OpenTelemetry spans for
  ``/predict`` and the probes (with ``tracing`` configured in BentoML's configuration).

Both ``DRIPML_MODEL_PATH`` and ``DRIPML_MODEL_URI`` name a pickled model, and loading it runs
its code: whoever sets them is trusted (see ``SECURITY.md``).
"""

from __future__ import annotations

from dripml import settings
from dripml.core.refs import ModelRef
from dripml.productionize import serving

CONFIG = settings.serve_settings()
MODEL_PATH = CONFIG.model_path or ""
MODEL_URI = CONFIG.model_uri or ""

if MODEL_PATH:
    model, _bundle = serving.read_bundle(MODEL_PATH)
    MODEL_URI, VERSION_LABEL = _bundle.model_uri, _bundle.version_label
    _metrics = _bundle.metrics
    _source = CONFIG.model_ref or f"{MODEL_URI} (exported model bundle)"
else:
    if not MODEL_URI:
        raise serving.ServeError(
            "DRIPML_MODEL_URI is not set; start the server with `drip serve NAME` or set it to "
            "a model URI such as models:/NAME@champion (or DRIPML_MODEL_PATH to a model "
            "bundle folder)")
    from dripml.productionize import tracking

    tracking.configure()  # MLFLOW_TRACKING_URI, else the embedded store
    if MODEL_URI.startswith("models:/"):
        _name, _version = tracking.resolve_version(MODEL_URI)
        _pinned = ModelRef(_name, version=_version)
        VERSION_LABEL, MODEL_URI = _pinned.label, _pinned.uri
    else:
        VERSION_LABEL = MODEL_URI
    model = tracking.load_trained_model(MODEL_URI)
    _metrics = tracking.version_test_metrics(MODEL_URI)
    _source = CONFIG.model_ref or MODEL_URI

DripmlService = serving.build_service(
    model,
    _source,
    VERSION_LABEL,
    workers=CONFIG.workers,
    batching=serving.batching_enabled(model, CONFIG.batching),
    metrics=_metrics,
    max_body_mib=CONFIG.max_body_mib,
    token=CONFIG.token,
    fast_path=CONFIG.fast_path,
    access_log=CONFIG.access_log,
    tracing=CONFIG.tracing,
)
