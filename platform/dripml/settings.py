"""Settings: every environment variable dripml reads, its default, and who reads it.

Each setting is read when it is needed, through a small typed function below (or the
:class:`ServeSettings` snapshot the prediction server takes once), never at import time:
importing this module reads nothing, so a test can set a variable (``monkeypatch.setenv``)
right before the call it tests. Every function takes ``environ`` (default ``os.environ``) for
the same reason.

Precedence, wherever a value can also be passed in: the argument (a CLI option, a keyword),
then the environment variable, then the default. The MLflow tracking store, for example::

    resolve_tracking_uri("http://mlflow:5000")  # the argument
    resolve_tracking_uri()                      # else $DRIPML_TRACKING_URI
                                                # else $MLFLOW_TRACKING_URI
                                                # else sqlite:///$PWD/.dripml/mlflow.db

An empty (or all-blank) variable counts as unset, except ``CUDA_VISIBLE_DEVICES``, where an
empty value means "no GPU".

:data:`VARIABLES` lists them all (name, default, meaning, readers);
``python -m dripml.settings`` prints that list as the README's Markdown table.

Not settings, so not here: what dripml *writes* into the environment of the processes it
starts or of the libraries it imports (``SINGLE_THREAD_ENV`` in :mod:`dripml.core.costs`,
``RAY_AUTH_MODE=token`` in the CLI, ``HF_HUB_OFFLINE=1`` in the transformer algorithm,
``PYTHONPATH`` and ``BENTOML_DO_NOT_TRACK`` for the server): those stay beside the code that
starts the process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dripml.errors import SettingsError

__all__ = [
    "VARIABLES",
    "STATE_DIR",
    "ServeSettings",
    "Variable",
    "absolute_tracking_uri",
    "base_image",
    "bentoml_home",
    "cache_dir",
    "c_compiler",
    "cuda_visible_devices",
    "default_tracking_uri",
    "logs_dir",
    "markdown_table",
    "mlflow_http_env",
    "ray_auth_mode",
    "resolve_tracking_uri",
    "run_log_file",
    "serve_max_body_mib",
    "serve_settings",
    "serve_token",
    "state_dir",
    "store_timeout_s",
    "tracking_uri",
    "train_storage",
]

STATE_DIR = ".dripml"
"""The state folder, relative to the working directory (never created by a read):
``mlflow.db`` and ``artifacts/`` (the embedded tracking store), ``bentoml/`` (BentoML's home
for ``drip serve``), ``deploy/`` (Helm values files, local endpoint logs), ``clusters/``
(local Ray clusters of the pipeline), ``kfp/`` (local pipeline runs) and ``logs/`` (what the
libraries said during each ``drip run``)."""

DEFAULT_BASE_IMAGE = "python:3.11-slim"
"""CPU serving image base: any image with ``python3.11`` and ``useradd`` (Debian/Ubuntu)."""

DEFAULT_GPU_BASE_IMAGE = "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
"""GPU serving image base: a CUDA runtime image; Python 3.11 comes from uv
(``containers/serving/Containerfile.gpu``)."""

DEFAULT_STORE_TIMEOUT_S = 5.0
"""How long the tracking store's check before a run waits for a server's answer, seconds."""
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}
"""dripml's bounds on each MLflow HTTP call (MLflow's own: 120 s, 7 retries, factor 2, about
20 minutes for a silent server): a silent server fails a call in about 4 x 20 s + 1 + 2 + 4 s
of backoff (87 s), a refused connection in about 7 s."""
DEFAULT_SERVE_WORKERS = 1
DEFAULT_SERVE_BATCHING = "auto"
DEFAULT_SERVE_MAX_BODY_MIB = 10.0
"""Largest request body the prediction server reads, MiB (larger ones get a 413)."""
DEFAULT_SERVE_FAST_PATH = True
DEFAULT_SERVE_ACCESS_LOG = False
DEFAULT_SERVE_TRACING = False


@dataclass(frozen=True)
class Variable:
    """One environment variable dripml reads.

    Attributes:
        name: the variable, e.g. ``DRIPML_CACHE_DIR``.
        default: what applies when it is unset, as a reader would write it.
        meaning: one sentence: what it sets.
        readers: the modules (under ``dripml.``) that read it, through this module.
    """

    name: str
    default: str
    meaning: str
    readers: tuple[str, ...]


DRIPML_TRACKING_URI = Variable(
    "DRIPML_TRACKING_URI", "`$MLFLOW_TRACKING_URI`",
    "The MLflow tracking and registry store for dripml alone; wins over "
    "`MLFLOW_TRACKING_URI`, and `--tracking-uri` wins over both.",
    ("productionize.tracking", "productionize.deploy", "productionize.images",
     "productionize.serving", "productionize.service", "kfp.pipeline", "api", "cli"))
TRACKING_URI = Variable(
    "MLFLOW_TRACKING_URI", f"`sqlite:///$PWD/{STATE_DIR}/mlflow.db` (embedded store)",
    "The MLflow tracking and registry store (MLflow's own variable); `--tracking-uri` wins. "
    "`drip deploy --target kubernetes` has no embedded default: its pods need a server.",
    ("productionize.tracking", "productionize.deploy", "productionize.images",
     "productionize.serving", "productionize.service", "kfp.pipeline", "api", "cli"))
DRIPML_RAY_ADDRESS = Variable(
    "DRIPML_RAY_ADDRESS", "`$RAY_ADDRESS`",
    "The Ray cluster `drip run` joins (`ray://HOST:10001` or `HOST:6379`); "
    "`--ray-address` wins.",
    ("cli",))
RAY_ADDRESS = Variable(
    "RAY_ADDRESS", "unset: `drip run` starts a Ray cluster on 127.0.0.1",
    "Ray's own variable, the default of `drip run --ray-address` when "
    "`DRIPML_RAY_ADDRESS` is unset.",
    ("cli",))
CACHE_DIR = Variable(
    "DRIPML_CACHE_DIR", "`~/.cache/dripml`",
    "Where `dataset://` data sets are downloaded and kept as Parquet.",
    ("core.datasets",))
BASE_IMAGE = Variable(
    "DRIPML_BASE_IMAGE", f"`{DEFAULT_BASE_IMAGE}`",
    "Base image of CPU serving images (`drip build`); `--base-image` wins.",
    ("productionize.images",))
GPU_BASE_IMAGE = Variable(
    "DRIPML_GPU_BASE_IMAGE", f"`{DEFAULT_GPU_BASE_IMAGE}`",
    "Base image of GPU serving images (`drip build --gpu`); `--base-image` wins.",
    ("productionize.images",))
MODEL_PATH = Variable(
    "DRIPML_MODEL_PATH", "unset",
    "A model bundle folder the prediction server loads (serving images bake one in); wins "
    "over `DRIPML_MODEL_URI`, and then MLflow is not needed.",
    ("productionize.service",))
MODEL_URI = Variable(
    "DRIPML_MODEL_URI", "unset (required without `DRIPML_MODEL_PATH`)",
    "The model the prediction server loads from MLflow: `models:/NAME/VERSION`, "
    "`models:/NAME@alias` or `runs:/...`; `drip serve` sets it.",
    ("productionize.service",))
MODEL_REF = Variable(
    "DRIPML_MODEL_REF", "the model URI",
    "The model reference as the user gave it, shown in the server's API docs.",
    ("productionize.service",))
SERVE_WORKERS = Variable(
    "DRIPML_SERVE_WORKERS", f"`{DEFAULT_SERVE_WORKERS}`",
    "BentoML worker processes of the prediction server (each holds a copy of the model); "
    "also the default of `drip serve --workers`.",
    ("productionize.service", "cli"))
SERVE_BATCHING = Variable(
    "DRIPML_SERVE_BATCHING", f"`{DEFAULT_SERVE_BATCHING}`",
    "Adaptive batching of `/predict`: `on`, `off` or `auto` (on for text models); also the "
    "default of `drip serve --batching`.",
    ("productionize.service", "cli"))
SERVE_MAX_BODY_MIB = Variable(
    "DRIPML_SERVE_MAX_BODY_MIB", f"`{DEFAULT_SERVE_MAX_BODY_MIB:g}`",
    "Largest request body the prediction server reads, MiB; a larger one gets a 413 before "
    "it is read. Also the default of `drip serve --max-body-mib`.",
    ("productionize.service", "cli"))
SERVE_TOKEN = Variable(
    "DRIPML_SERVE_TOKEN", "unset: `/predict` is open",
    "When set, `/predict` requires `Authorization: Bearer <token>` (401 otherwise); health, "
    "readiness, `/metrics` and the docs stay open. On Kubernetes, take it from a Secret.",
    ("productionize.service", "productionize.serving", "cli"))
SERVE_FAST_PATH = Variable(
    "DRIPML_SERVE_FAST_PATH", "`on`",
    "`off` sends every `/predict` request through BentoML's own route (per-request pydantic "
    "model, thread-pool hop) instead of dripml's lean path; the answers are the same.",
    ("productionize.service",))
SERVE_ACCESS_LOG = Variable(
    "DRIPML_SERVE_ACCESS_LOG", "`off`",
    "`on` turns on BentoML's access log of the prediction server (one line per request).",
    ("productionize.service",))
SERVE_TRACING = Variable(
    "DRIPML_SERVE_TRACING", "`off`",
    "`on` keeps BentoML's OpenTelemetry spans for `/predict` and the health probes (off, "
    "they are excluded: BentoML samples none by default yet builds them per request).",
    ("productionize.service",))
STORE_TIMEOUT_S = Variable(
    "DRIPML_STORE_TIMEOUT_S", f"`{DEFAULT_STORE_TIMEOUT_S:g}`",
    "Seconds a tracking server has to answer the store check that `drip run`, `drip models`, "
    "`serve` and `predict` make before starting anything (connect within 2 s).",
    ("productionize.store",))
MLFLOW_HTTP_REQUEST_TIMEOUT = Variable(
    "MLFLOW_HTTP_REQUEST_TIMEOUT", f"`{MLFLOW_HTTP_DEFAULTS['MLFLOW_HTTP_REQUEST_TIMEOUT']}` "
    "(dripml's; MLflow's is 120)",
    "MLflow's own variable: seconds each HTTP call to a tracking server may wait; dripml "
    "sets its default for the run when unset.",
    ("productionize.store",))
MLFLOW_HTTP_REQUEST_MAX_RETRIES = Variable(
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    f"`{MLFLOW_HTTP_DEFAULTS['MLFLOW_HTTP_REQUEST_MAX_RETRIES']}` (dripml's; MLflow's is 7)",
    "MLflow's own variable: retries of a failed HTTP call (refused, timed out, 429, 5xx).",
    ("productionize.store",))
MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR = Variable(
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
    f"`{MLFLOW_HTTP_DEFAULTS['MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR']}` (dripml's; MLflow's is 2)",
    "MLflow's own variable: the retries wait factor x 1, 2, 4... seconds (plus up to 1 s of "
    "jitter).",
    ("productionize.store",))
TRAIN_STORAGE = Variable(
    "DRIPML_TRAIN_STORAGE", "a new temporary folder per fine-tune",
    "Ray Train storage (a path or URI every node can reach) for fine-tunes trained on "
    "several workers; needed when they span nodes.",
    ("algorithms.transformer",))
BENTOML_HOME = Variable(
    "BENTOML_HOME", f"`$PWD/{STATE_DIR}/bentoml`",
    "BentoML's home for `drip serve` (its logs go to `logs/serve-PORT.log` there).",
    ("productionize.serving",))
REFINE_SERVING_PATH = Variable(
    "DRIPML_REFINE_SERVING_PATH", "`true`",
    "`false` measures Refine's candidates in process only, whatever `refine.serving_path` "
    "says (no server started per candidate: CI, machines without a spare core).",
    ("refine.serving_cost",))
FRAME_LAYOUT = Variable(
    "DRIPML_FRAME_LAYOUT", "`auto`",
    "How an endpoint runs the model's `data.preprocess`/`postprocess` code (dripml.frame): "
    "`auto` picks the layout by row count (the row layout up to 1,000 rows, else pandas), "
    "`measured` by measured time (a bandit over the layouts per function and size).",
    ("productionize.serving",))
C_COMPILER = Variable(
    "CC", "`gcc`",
    "The C compiler that builds Refine's compiled trees (treelite/tl2cgen); not needed to "
    "serve them.",
    ("algorithms.compiled",))
CUDA_VISIBLE_DEVICES = Variable(
    "CUDA_VISIBLE_DEVICES", "unset: every GPU `nvidia-smi` lists",
    "The GPUs an embedded Ray cluster may use; empty or `-1` means none, so a spec asking "
    "for GPUs fails at once.",
    ("orchestration.ray_cluster",))
RAY_AUTH_MODE = Variable(
    "RAY_AUTH_MODE", "unset (`drip run` sets `token`)",
    "Ray's own variable; dripml only names its value when joining a cluster fails.",
    ("orchestration.ray_cluster",))

VARIABLES: tuple[Variable, ...] = (
    DRIPML_TRACKING_URI, TRACKING_URI, DRIPML_RAY_ADDRESS, RAY_ADDRESS, CACHE_DIR, BASE_IMAGE,
    GPU_BASE_IMAGE, MODEL_PATH, MODEL_URI, MODEL_REF,
    SERVE_WORKERS, SERVE_BATCHING, SERVE_MAX_BODY_MIB, SERVE_TOKEN, SERVE_FAST_PATH,
    SERVE_ACCESS_LOG, SERVE_TRACING, STORE_TIMEOUT_S, MLFLOW_HTTP_REQUEST_TIMEOUT,
    MLFLOW_HTTP_REQUEST_MAX_RETRIES,
    MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR, TRAIN_STORAGE, BENTOML_HOME, REFINE_SERVING_PATH,
    FRAME_LAYOUT, C_COMPILER, CUDA_VISIBLE_DEVICES,
    RAY_AUTH_MODE)
"""Every environment variable dripml reads, in the README's order."""


def _read(variable: Variable, environ: Mapping[str, str] | None) -> str | None:
    """The variable's value, None when unset, empty or blank."""
    value = (os.environ if environ is None else environ).get(variable.name)
    return (value.strip() or None) if value is not None else None


def _positive_number(variable: Variable, default: float, unit: str, examples: str,
                     environ: Mapping[str, str] | None) -> float:
    """The variable as a finite number above 0, ``default`` when unset.

    Raises:
        SettingsError: naming the variable, the unit and examples, and what it got.
    """
    text = _read(variable, environ)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise SettingsError(f"{variable.name} must be a number of {unit} above 0, "
                            f"such as {examples}, got {text!r}")
    return value


# --------------------------------------------------------------------------- state, tracking


def state_dir(workdir: Path | None = None) -> Path:
    """The absolute ``.dripml`` state folder of ``workdir`` (default the working directory);
    not created here."""
    return ((workdir or Path.cwd()) / STATE_DIR).resolve()


def logs_dir(workdir: Path | None = None) -> Path:
    """``.dripml/logs`` of ``workdir`` (absolute; not created here): one file per ``drip run``
    with what MLflow, Ray, Optuna and Python warnings said."""
    return state_dir(workdir) / "logs"


def run_log_file(workdir: Path | None = None, *, now: float | None = None) -> Path:
    """A new run's log file: ``.dripml/logs/run-YYYYMMDD-HHMMSS.log`` (local time of ``now``,
    default the current time); not created here."""
    return logs_dir(workdir) / time.strftime("run-%Y%m%d-%H%M%S.log", time.localtime(now))


def default_tracking_uri(workdir: Path | None = None) -> str:
    """The embedded store: ``sqlite:///<absolute workdir>/.dripml/mlflow.db``."""
    return f"sqlite:///{state_dir(workdir) / 'mlflow.db'}"


def tracking_uri(uri: str | None = None, *,
                 environ: Mapping[str, str] | None = None) -> str | None:
    """The tracking URI given or set: ``uri``, else ``DRIPML_TRACKING_URI``, else
    ``MLFLOW_TRACKING_URI``, else None.

    For callers that need a server and have no use for the embedded store (a deployment's
    pods); everyone else calls :func:`resolve_tracking_uri`.
    """
    return uri or _read(DRIPML_TRACKING_URI, environ) or _read(TRACKING_URI, environ)


def resolve_tracking_uri(uri: str | None = None, *, absolute: bool = False,
                         workdir: Path | None = None,
                         environ: Mapping[str, str] | None = None) -> str:
    """The MLflow store to use. Precedence: ``uri``, then ``DRIPML_TRACKING_URI``, then
    ``MLFLOW_TRACKING_URI``, then the embedded SQLite store of ``workdir``
    (:func:`default_tracking_uri`).

    Args:
        absolute: resolve a relative SQLite or file path against the working directory
            (:func:`absolute_tracking_uri`), for a child process that may run elsewhere.
    """
    resolved = tracking_uri(uri, environ=environ) or default_tracking_uri(workdir)
    return absolute_tracking_uri(resolved) if absolute else resolved


def absolute_tracking_uri(uri: str) -> str:
    """A tracking URI valid from any working directory (relative SQLite/file paths resolved),
    for child processes that may run elsewhere (a server, pipeline steps)."""
    if uri.startswith("sqlite:///"):
        path = uri.removeprefix("sqlite:///")
        return f"sqlite:///{Path(path).resolve()}" if not path.startswith("/") else uri
    if uri.startswith("file:") or "://" in uri:
        return uri
    return str(Path(uri).resolve())


# --------------------------------------------------------------------------- the other settings


def store_timeout_s(*, environ: Mapping[str, str] | None = None) -> float:
    """``DRIPML_STORE_TIMEOUT_S``, else :data:`DEFAULT_STORE_TIMEOUT_S`.

    Raises:
        SettingsError: not a finite number of seconds above 0.
    """
    return _positive_number(STORE_TIMEOUT_S, DEFAULT_STORE_TIMEOUT_S, "seconds", "5 or 0.5",
                            environ)


def mlflow_http_env(*, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """dripml's defaults (:data:`MLFLOW_HTTP_DEFAULTS`) for the MLflow HTTP variables the
    environment leaves unset (empty counts as unset): what to add to it for a run."""
    variables = (MLFLOW_HTTP_REQUEST_TIMEOUT, MLFLOW_HTTP_REQUEST_MAX_RETRIES,
                 MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR)
    return {v.name: MLFLOW_HTTP_DEFAULTS[v.name] for v in variables if _read(v, environ) is None}


def cache_dir(*, environ: Mapping[str, str] | None = None) -> Path:
    """The data set cache root: ``DRIPML_CACHE_DIR``, else ``~/.cache/dripml``."""
    value = _read(CACHE_DIR, environ)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "dripml"


def base_image(gpu: bool, given: str | None = None, *,
               environ: Mapping[str, str] | None = None) -> str:
    """The serving image's base. Precedence: ``given`` (``--base-image``), then
    ``DRIPML_GPU_BASE_IMAGE`` (with ``gpu``) or ``DRIPML_BASE_IMAGE``, then
    :data:`DEFAULT_GPU_BASE_IMAGE` / :data:`DEFAULT_BASE_IMAGE`."""
    if given:
        return given
    if gpu:
        return _read(GPU_BASE_IMAGE, environ) or DEFAULT_GPU_BASE_IMAGE
    return _read(BASE_IMAGE, environ) or DEFAULT_BASE_IMAGE


def train_storage(*, environ: Mapping[str, str] | None = None) -> str | None:
    """``DRIPML_TRAIN_STORAGE``: Ray Train storage shared by every node, or None (the caller
    makes a temporary folder, which is enough on one node)."""
    return _read(TRAIN_STORAGE, environ)


def bentoml_home(*, workdir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Path:
    """BentoML's home for ``drip serve``: ``BENTOML_HOME``, else ``.dripml/bentoml`` of
    ``workdir`` (absolute)."""
    value = _read(BENTOML_HOME, environ)
    return Path(value) if value else state_dir(workdir) / "bentoml"


def cuda_visible_devices(*, environ: Mapping[str, str] | None = None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as set, None when unset. Unlike the other variables an empty
    value is kept: it hides every GPU."""
    return (os.environ if environ is None else environ).get(CUDA_VISIBLE_DEVICES.name)


def ray_auth_mode(*, environ: Mapping[str, str] | None = None) -> str | None:
    """``RAY_AUTH_MODE`` as set (Ray reads it itself; dripml only reports it), or None."""
    return _read(RAY_AUTH_MODE, environ)


# --------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class ServeSettings:
    """What the prediction server (:mod:`dripml.productionize.service`) is configured with.

    Attributes:
        model_path: ``DRIPML_MODEL_PATH``, a model bundle folder; None when unset.
        model_uri: ``DRIPML_MODEL_URI``; None when unset.
        model_ref: ``DRIPML_MODEL_REF``, the reference as the user gave it; None when unset.
        workers: ``DRIPML_SERVE_WORKERS``, BentoML worker processes, at least 1.
        batching: ``DRIPML_SERVE_BATCHING``, ``auto``, ``on`` or ``off`` (checked by
            :func:`dripml.productionize.serving.check_batching`, which owns the modes).
        max_body_mib: ``DRIPML_SERVE_MAX_BODY_MIB``, the largest request body, MiB (> 0).
        token: ``DRIPML_SERVE_TOKEN``, the bearer token ``/predict`` requires; None when
            unset. Left out of ``repr``, so it never reaches a log.
        fast_path: ``DRIPML_SERVE_FAST_PATH``, dripml's lean ``/predict`` (default on).
        access_log: ``DRIPML_SERVE_ACCESS_LOG``, BentoML's access log (default off).
        tracing: ``DRIPML_SERVE_TRACING``, BentoML's spans for ``/predict`` (default off).
    """

    model_path: str | None
    model_uri: str | None
    model_ref: str | None
    workers: int = DEFAULT_SERVE_WORKERS
    batching: str = DEFAULT_SERVE_BATCHING
    max_body_mib: float = DEFAULT_SERVE_MAX_BODY_MIB
    token: str | None = field(default=None, repr=False)
    fast_path: bool = DEFAULT_SERVE_FAST_PATH
    access_log: bool = DEFAULT_SERVE_ACCESS_LOG
    tracing: bool = DEFAULT_SERVE_TRACING


def serve_settings(*, environ: Mapping[str, str] | None = None) -> ServeSettings:
    """The server's settings, read once (BentoML hands the service nothing but these).

    Raises:
        SettingsError: ``DRIPML_SERVE_WORKERS`` is not a whole number of at least 1,
            ``DRIPML_SERVE_MAX_BODY_MIB`` not a number above 0, or ``DRIPML_SERVE_FAST_PATH``
            / ``DRIPML_SERVE_ACCESS_LOG`` / ``DRIPML_SERVE_TRACING`` not on or off.
    """
    workers_text = _read(SERVE_WORKERS, environ)
    workers = DEFAULT_SERVE_WORKERS
    if workers_text is not None:
        try:
            workers = int(workers_text)
        except ValueError:
            workers = 0
        if workers < 1:
            raise SettingsError(f"{SERVE_WORKERS.name} must be a whole number of at least 1, "
                                f"got {workers_text!r}")
    return ServeSettings(
        model_path=_read(MODEL_PATH, environ), model_uri=_read(MODEL_URI, environ),
        model_ref=_read(MODEL_REF, environ), workers=workers,
        batching=_read(SERVE_BATCHING, environ) or DEFAULT_SERVE_BATCHING,
        max_body_mib=serve_max_body_mib(environ=environ), token=serve_token(environ=environ),
        fast_path=_switch(SERVE_FAST_PATH, DEFAULT_SERVE_FAST_PATH, environ),
        access_log=_switch(SERVE_ACCESS_LOG, DEFAULT_SERVE_ACCESS_LOG, environ),
        tracing=_switch(SERVE_TRACING, DEFAULT_SERVE_TRACING, environ))


_ON, _OFF = frozenset({"on", "true", "1", "yes"}), frozenset({"off", "false", "0", "no"})


def _switch(variable: Variable, default: bool, environ: Mapping[str, str] | None) -> bool:
    """An on/off variable (``on``/``off``, also ``true``/``false``, ``1``/``0``,
    ``yes``/``no``, any case); ``default`` when unset.

    Raises:
        SettingsError: any other value (the message names the variable and the choices).
    """
    text = _read(variable, environ)
    if text is None:
        return default
    if text.lower() in _ON | _OFF:
        return text.lower() in _ON
    raise SettingsError(f"{variable.name} must be on or off, got {text!r}")


def serve_max_body_mib(*, environ: Mapping[str, str] | None = None) -> float:
    """``DRIPML_SERVE_MAX_BODY_MIB``, else :data:`DEFAULT_SERVE_MAX_BODY_MIB`.

    Raises:
        SettingsError: not a finite number above 0.
    """
    return _positive_number(SERVE_MAX_BODY_MIB, DEFAULT_SERVE_MAX_BODY_MIB, "MiB",
                            "10 or 0.5", environ)


def serve_token(*, environ: Mapping[str, str] | None = None) -> str | None:
    """``DRIPML_SERVE_TOKEN``, the bearer token ``/predict`` requires, or None (open).
    Surrounding blanks (a trailing newline from a Secret file) are dropped."""
    return _read(SERVE_TOKEN, environ)


def refine_serving_path(*, environ: Mapping[str, str] | None = None) -> bool:
    """``DRIPML_REFINE_SERVING_PATH``: False when it is ``false``, ``0``, ``no`` or ``off``
    (any case); True when unset or anything else."""
    return (_read(REFINE_SERVING_PATH, environ) or "true").lower() not in {
        "false", "0", "no", "off"}


def frame_layout(*, environ: Mapping[str, str] | None = None) -> str:
    """``DRIPML_FRAME_LAYOUT``: ``auto`` (default) or ``measured``, any case.

    Raises:
        SettingsError: another value (the message lists both).
    """
    value = (_read(FRAME_LAYOUT, environ) or "auto").lower()
    if value not in ("auto", "measured"):
        raise SettingsError(f"{FRAME_LAYOUT.name} must be auto or measured, got {value!r}")
    return value


def c_compiler(*, environ: Mapping[str, str] | None = None) -> str:
    """``CC``, else ``gcc``: the compiler name (resolved on PATH by the caller)."""
    return _read(C_COMPILER, environ) or "gcc"


# --------------------------------------------------------------------------- documentation


def markdown_table() -> str:
    """:data:`VARIABLES` as a Markdown table (variable, default, meaning, read by)."""
    rows = ["| Variable | Default | Meaning | Read by |", "|---|---|---|---|"]
    rows += [f"| `{v.name}` | {v.default} | {v.meaning} | "
             f"{', '.join(f'`{r}`' for r in v.readers)} |" for v in VARIABLES]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
