"""``drip``: the command line. Each command parses options, calls one public verb, prints.

The verbs are those of :mod:`dripml.api`; the Kubeflow pipeline's (``drip pipeline compile``,
``drip pipeline submit``, ``drip run --orchestrator kfp-local``) are those of
:mod:`dripml.kfp`, the front door that sits between this module and :mod:`dripml.api`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shlex
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack, nullcontext, redirect_stdout
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dripml import settings
from dripml.errors import DripmlError, Interrupted, SpecError

if TYPE_CHECKING:
    from dripml.productionize.serving import ServerHandle

CONTEXT = {"help_option_names": ["-h", "--help"]}
"""Every command takes ``-h`` as well as ``--help`` (subcommands inherit it)."""

app = typer.Typer(help="dripml: spec in, tuned, registered and served model out.",
                  no_args_is_help=True, add_completion=True, context_settings=CONTEXT,
                  pretty_exceptions_enable=False)
spec_app = typer.Typer(help="Inspect and check specs.", no_args_is_help=True,
                       context_settings=CONTEXT)
data_app = typer.Typer(help="Real data sets, fetched offline from the package registry.",
                       no_args_is_help=True, context_settings=CONTEXT)
pipeline_app = typer.Typer(help="Kubeflow Pipelines: the DRiP loop on a KubeRay cluster.",
                           no_args_is_help=True, context_settings=CONTEXT)
app.add_typer(spec_app, name="spec")
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")
runs_app = typer.Typer(help="Search runs left RUNNING by a driver that died.",
                       no_args_is_help=True, context_settings=CONTEXT)
app.add_typer(runs_app, name="runs")
recipe_app = typer.Typer(help="Recipes: a scientist's pipelines and the knobs a user may "
                                "turn.", no_args_is_help=True, context_settings=CONTEXT)
app.add_typer(recipe_app, name="recipe")

out = Console()
err = Console(stderr=True)
PIPED_WIDTH = 1000
"""Columns of a console whose stream is not a terminal (a file, a pipe, a CI log): tables
are as wide as their cells, so a row stays one line instead of folding at 80 columns."""


def _fit_consoles() -> None:
    """Widen ``out`` and ``err`` where their stream is not a terminal (a terminal keeps its
    own width)."""
    for console in (out, err):
        if not console.is_terminal:
            console.width = PIPED_WIDTH


def _print_json(data: Any) -> None:
    """``data`` as JSON on stdout, alone (``--json``): no markup, no wrapping."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def _terminate(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C (finally blocks and atexit handlers run); exits 143.
    raise Interrupted(signum)


def _show_version(value: bool) -> None:
    if value:
        from dripml import api

        for name, version in api.versions().items():
            print(f"{name} {version}")
        raise typer.Exit()


@app.callback()
def _process(
    version: Annotated[bool, typer.Option(
        "--version", callback=_show_version, is_eager=True,
        help="Print the versions of dripml, Python and the key libraries, and exit.")] = False,
) -> None:
    """dripml: spec in, tuned, registered and served model out."""
    _fit_consoles()
    # SIGTERM (what process managers, CI runners and `kill` send) would end Python at once,
    # leaving the servers, Ray clusters and MLflow runs a command started behind it.
    signal.signal(signal.SIGTERM, _terminate)

TrackingUri = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar=[settings.DRIPML_TRACKING_URI.name, settings.TRACKING_URI.name],
    help="MLflow tracking URI (default: SQLite under ./.dripml).")]
Json = Annotated[bool, typer.Option(
    "--json", help="Print JSON on stdout and nothing else (messages go to stderr).")]


def _friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print dripml's own errors as one clear message (exit 2 for specs, 1 otherwise)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DripmlError as error:
            err.print(f"[bold red]error:[/] {type(error).__name__}: {error}", highlight=False)
            raise typer.Exit(2 if isinstance(error, SpecError) else 1) from None
        except Interrupted as stop:  # Ctrl-C or SIGTERM: one line, exit 130 or 143
            err.print(stop.message, highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(stop.exit_code) from None

    return wrapper


def _quiet_libraries() -> None:
    # MLflow and Ray narrate every step at INFO; the progress bar already says what happens.
    for name in ("mlflow", "ray", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@app.command()
@_friendly
def run(
    spec: Annotated[Path, typer.Argument(help="Spec file (YAML).")],
    ray_address: Annotated[str | None, typer.Option(
        envvar=[settings.DRIPML_RAY_ADDRESS.name, settings.RAY_ADDRESS.name],
        help="Join this Ray cluster instead of starting one on 127.0.0.1.")] = None,
    tracking_uri: TrackingUri = None,
    serve: Annotated[bool, typer.Option(
        "--serve", help="Serve the registered model afterwards (blocks until Ctrl-C).")] = False,
    port: Annotated[int, typer.Option(help="Port for --serve.")] = 3000,
    orchestrator: Annotated[str, typer.Option(
        help="embedded: this process drives Ray; kfp-local: the Kubeflow pipeline, run by "
             "KFP's local runner against a local Ray cluster.")] = "embedded",
    tag: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE tag for the MLflow search run (repeatable).")] = None,
    alias: Annotated[bool, typer.Option(
        help="Move the registry alias to the chosen version; --no-alias registers the "
             "versions and leaves the alias where it is.")] = True,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the newest unfinished run of this spec (same MLflow run): "
                         "finished trials are kept, the search goes on to num_trials; a run "
                         "that died in Refine resumes there. Nothing unfinished: a new "
                         "run.")] = False,
    json_output: Json = False,
    events: Annotated[Path | None, typer.Option(
        "--events", help="Also append the progress as JSON lines to this file (run_started, "
                         "step, search, trial, message).")] = None,
) -> None:
    """Run the DRiP loop on SPEC: search, refit the best, test and register it.

    Prints the MLflow run's address when the run starts; what MLflow, Ray, Optuna and Python
    warnings say goes to .dripml/logs/run-*.log (errors still show). --json prints the run's
    summary (run id and URL, model, test metrics, chosen trial, leaderboard, skipped steps)."""
    # Ray reads this once, at import: a cluster joined by address uses token authentication
    # (Ray 2.60's default for clusters it starts) unless the user says otherwise.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from dripml import api

    tags = _parse_tags(tag or [])
    if orchestrator not in ("embedded", "kfp-local"):
        raise SpecError(f"--orchestrator must be embedded or kfp-local, got {orchestrator!r}")
    if orchestrator == "kfp-local":
        if ray_address or tags or not alias or resume:
            raise SpecError("--orchestrator kfp-local starts its own Ray cluster, moves the "
                            "alias itself and resumes its search step when retried: drop "
                            "--ray-address (and unset DRIPML_RAY_ADDRESS and RAY_ADDRESS), "
                            "--tag, --no-alias and --resume")
        _run_kfp_local(spec, tracking_uri, serve, port, json_output)
        return
    if json_output and serve:
        raise SpecError("--json prints the run's summary and exits: drop --serve, and serve "
                        "the model with `drip serve NAME@ALIAS` afterwards")
    log_file = _library_log_file()
    # --json: stdout carries the JSON alone; anything printed on the way goes to stderr.
    with redirect_stdout(sys.stderr) if json_output else nullcontext():
        try:
            result = api.train(spec, ray_address=ray_address, tracking_uri=tracking_uri,
                               reporter=_reporter(events), tags=tags, set_alias=alias,
                               log_file=log_file, resume=resume)
        except Interrupted as stop:
            raise _with_resume_command(
                stop, f"drip run {shlex.quote(str(spec))} --resume") from None
    if json_output:
        _print_json({**result.summary(), "log_file": str(log_file)})
        return
    _print_leaderboard(result.leaderboard, result.best.number)
    board = result.frontier_table()
    if board is not None:
        _print_frontier(board)
    _print_test_metrics(result.test_metrics)
    if alias and not result.model.alias_conflict:
        out.print(f"[bold]registered[/] {result.model.alias_uri} -> version "
                  f"{result.model.version} (run {result.run_id}, tracking {result.tracking_uri})")
    else:
        out.print(f"[bold]registered[/] {result.model.model_uri}; alias {result.model.alias!r} "
                  f"not moved (run {result.run_id}, tracking {result.tracking_uri})")
        return
    budget = result.spec.search.time_budget_s
    if budget is not None:
        cut = "; ".join(result.skipped) or "nothing"
        out.print(f"[bold]time budget[/] {budget:g} s: ran {result.wall_time_s:.1f} s; "
                  f"skipped: {cut}", highlight=False)
    out.print(f"search: {result.search_time_s:.1f} s; serve it with: "
              f"drip serve {shlex.quote(f'{result.model.name}@{result.model.alias}')}",
              highlight=False, markup=False)
    if serve:
        _serve(f"{result.model.name}@{result.model.alias}", "127.0.0.1", port,
               result.tracking_uri, 1)


def _library_log_file() -> Path:
    """Quiet the libraries' own logging and say where it goes instead (``drip run``,
    ``drip recipe run``): the run's log file under ``.dripml/logs/``."""
    _quiet_libraries()
    log_file = settings.run_log_file()
    err.print(f"library logs (MLflow, Ray, Optuna, warnings): {log_file}", highlight=False,
              soft_wrap=True)
    return log_file


def _print_test_metrics(test_metrics: Any) -> None:
    metrics = ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in test_metrics.items())
    out.print(f"[bold]test[/] ({len(test_metrics)} metrics): {metrics}")


def _with_resume_command(stop: Interrupted, command: str) -> Interrupted:
    """``stop`` saying ``command`` (e.g. ``drip run SPEC --resume``) as the way to resume;
    ``stop`` itself when no run was kept."""
    if stop.run_id is None:
        return stop
    return Interrupted(stop.signum, run_id=stop.run_id, kept=stop.kept, message=(
        f"interrupted by {stop.signal_name}: kept {stop.kept} finished trials in run "
        f"{stop.run_id}; resume with `{command}`"))


def _reporter(events: Path | None) -> Any:
    """The terminal's progress on stderr, and with ``--events`` the JSON lines file too."""
    from dripml.core.progress import JsonLinesReporter, RichReporter, Tee

    terminal = RichReporter(err)
    return terminal if events is None else Tee(terminal, JsonLinesReporter(events))


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--tag takes KEY=VALUE, got {pair!r}")
        tags[key] = value
    return tags


def _run_kfp_local(spec: Path, tracking_uri: str | None, serve: bool, port: int,
                   json_output: bool = False) -> None:
    from dripml import kfp

    if json_output and serve:
        raise SpecError("--json prints the run's summary and exits: drop --serve")
    with redirect_stdout(sys.stderr) if json_output else nullcontext():
        result = kfp.run_local(spec, tracking_uri=tracking_uri)
    if json_output:
        _print_json(dataclasses.asdict(result))
        return
    out.print(f"[bold]registered[/] {result.alias_uri} -> {result.model_uri} "
              f"(pipeline {result.wall_time_s:.0f} s, tracking {result.tracking_uri}, "
              f"task outputs {result.pipeline_root})")
    name = result.alias_uri.removeprefix("models:/")
    out.print(f"serve it with: drip serve {shlex.quote(name)}", highlight=False, markup=False)
    if serve:
        _serve(name, "127.0.0.1", port, result.tracking_uri, 1)


@pipeline_app.command("compile")
@_friendly
def pipeline_compile(
    spec: Annotated[Path, typer.Argument(help="Spec file (YAML).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Pipeline YAML to write.")
                      ] = Path("pipeline.yaml"),
    image: Annotated[str | None, typer.Option(
        help="Trainer image of the steps (default: spec cluster.image or "
             "ghcr.io/dripml/trainer:<version>).")] = None,
    tracking_uri: Annotated[str, typer.Option(
        help="MLflow tracking URI as seen from the cluster.")] = "",
) -> None:
    """Compile SPEC into a Kubeflow pipeline (KFP IR YAML) that runs it on a KubeRay cluster."""
    from dripml import kfp

    path = kfp.compile(spec, output, image=image, tracking_uri=tracking_uri or None)
    out.print(f"wrote {path}: upload it in the Kubeflow Pipelines UI, or run "
              f"`drip pipeline submit {shlex.quote(str(spec))} --host URL`", markup=False)


@pipeline_app.command("submit")
@_friendly
def pipeline_submit(
    spec: Annotated[Path, typer.Argument(help="Spec file (YAML).")],
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines API, e.g. "
                                           "http://ml-pipeline-ui.kubeflow:80.")],
    experiment: Annotated[str | None, typer.Option(
        help="KFP experiment (default: the spec's name).")] = None,
    namespace: Annotated[str | None, typer.Option(
        help="Kubeflow profile namespace (multi-user installs).")] = None,
    service_account: Annotated[str, typer.Option(
        help="ServiceAccount the steps run as (charts/dripml creates it).")
    ] = "dripml-pipeline",
    image: Annotated[str | None, typer.Option(help="Trainer image of the steps.")] = None,
    tracking_uri: Annotated[str, typer.Option(
        help="MLflow tracking URI as seen from the cluster.")] = "",
    tag: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE tag for the MLflow search run (repeatable).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print {"run_id", "experiment", "url"} as JSON.')] = False,
) -> None:
    """Compile SPEC's pipeline and start a run of it on a Kubeflow Pipelines server."""
    from dripml import kfp

    # kfp.Client prints the experiment's and run's links: on stderr when stdout is JSON.
    with redirect_stdout(sys.stderr) if as_json else nullcontext():
        run = kfp.submit(spec, host=host, experiment=experiment, namespace=namespace,
                         service_account=service_account, image=image,
                         tracking_uri=tracking_uri or None, tags=_parse_tags(tag or []))
    if as_json:
        print(json.dumps({"run_id": run.run_id, "experiment": run.experiment, "url": run.url}))
        return
    out.print(f"submitted run {run.run_id} in experiment {run.experiment!r}: {run.url}")


def _print_leaderboard(board: Any, best: int, rows: int = 10) -> None:
    objective = next(c for c in board.columns if c.endswith("_mean")).removesuffix("_mean")
    table = Table(title=f"leaderboard: {objective}, mean and std over the folds",
                  title_justify="left")
    columns = {"rank": "rank", "trial": "trial", "algorithm": "algorithm", "state": "state",
               f"{objective}_mean": "mean", f"{objective}_std": "std",
               "fit_time_s": "fit s", "params": "params"}
    for title in columns.values():
        table.add_column(title, overflow="fold", ratio=4 if title == "params" else None,
                         no_wrap=title != "params")
    for _, row in board.head(rows).iterrows():
        style = "bold green" if row["trial"] == best else None
        cells = [_cell(row[c]) for c in list(columns)[:-1]] + [_compact_params(row["params"])]
        table.add_row(*cells, style=style)
    out.print(table)
    if len(board) > rows:
        out.print(f"... {len(board) - rows} more trials in leaderboard.csv of the MLflow run")


def _compact_params(params_json: str) -> str:
    params = json.loads(params_json)
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in params.items())


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e9 else f"{value:.4f}"
    return "" if str(value) == "<NA>" else str(value)


@app.command("serve")
@_friendly
def serve_command(
    model: Annotated[str, typer.Argument(
        help="NAME[@alias] (default alias champion), NAME/version, or a models:/ URI.")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
    tracking_uri: TrackingUri = None,
    workers: Annotated[int, typer.Option(
        min=1, envvar=settings.SERVE_WORKERS.name, help="BentoML worker processes.")] = 1,
    batching: Annotated[str, typer.Option(
        envvar=settings.SERVE_BATCHING.name,
        help="BentoML adaptive batching of /predict: auto (on for text models), on or off."
    )] = "auto",
    max_body_mib: Annotated[float, typer.Option(
        envvar=settings.SERVE_MAX_BODY_MIB.name,
        help="Largest request body, MiB; a larger one gets a 413.")
    ] = settings.DEFAULT_SERVE_MAX_BODY_MIB,
    allow_local_model: Annotated[bool, typer.Option(
        "--allow-local-model",
        help="Also serve a model folder on disk (file://... or a path). Loading a model runs "
             "its pickled code: only for folders you trust (see SECURITY.md).")] = False,
) -> None:
    """Serve a registered model over HTTP with BentoML (POST /predict) until Ctrl-C.

    With DRIPML_SERVE_TOKEN set, /predict requires 'Authorization: Bearer <token>'.
    """
    _quiet_libraries()
    _serve(model, host, port, tracking_uri, workers, batching, max_body_mib=max_body_mib,
           allow_local=allow_local_model)


def _serve(model: str, host: str, port: int, tracking_uri: str | None, workers: int,
           batching: str = "auto", *, max_body_mib: float | None = None,
           allow_local: bool = False) -> None:
    from dripml import api

    warning = api.exposure_warning(host, port)
    if warning:
        err.print(warning, style="yellow", markup=False, highlight=False)
    with err.status(f"starting the endpoint for {model} on {host}:{port}"):
        handle = api.serve(model, host=host, port=port, tracking_uri=tracking_uri,
                           workers=workers, batching=batching, max_body_mib=max_body_mib,
                           allow_local=allow_local)
    _serve_until_stopped(model, handle)


def _serve_until_stopped(model: str, handle: ServerHandle) -> None:
    """Say where ``model`` is served, with a curl line, and block until Ctrl-C."""
    out.print(f"[bold green]serving[/] {model} at {handle.url} "
              f"(docs {handle.url}/docs, health {handle.url}/readyz); try:")
    print(handle.curl_example(), flush=True)
    handle.wait_forever()


@app.command("ui")
@_friendly
def ui_command(
    host: Annotated[str, typer.Option(
        help="Interface to bind; beyond loopback needs DRIPML_UI_TOKEN or "
             "--trusted-user-header.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    recipes: Annotated[list[Path] | None, typer.Option(
        "--recipes", help="A folder of recipes (repeatable; default ./recipes and the "
                          "shipped examples).")] = None,
    data_dir: Annotated[Path, typer.Option(
        help="The UI's folder: run store, uploads, runs.")] = Path(".dripml/ui"),
    tracking_uri: TrackingUri = None,
    trusted_user_header: Annotated[str | None, typer.Option(
        help="A header an authenticating ingress sets (e.g. X-Forwarded-User); requests "
             "carrying it are let in.")] = None,
    max_upload_mib: Annotated[int, typer.Option(min=1, help="Largest upload, MiB.")] = 200,
    deploy_target: Annotated[str, typer.Option(
        help="Where Deploy puts an endpoint: local or kubernetes.")] = "local",
    kfp_host: Annotated[str | None, typer.Option(
        help="Kubeflow Pipelines API: runs become Kubeflow pipeline runs (needs "
             "--upload-uri).")] = None,
    upload_uri: Annotated[str | None, typer.Option(
        envvar="DRIPML_UI_UPLOAD_URI",
        help="With --kfp-host: s3://BUCKET/PREFIX the uploads are copied to for the "
             "pipeline's pods (S3 credentials as boto3 finds them; AWS_ENDPOINT_URL).")
    ] = None,
) -> None:
    """The web page: run a recipe on your data, compare the models, deploy one (Ctrl-C
    stops it). With DRIPML_UI_TOKEN set, every request needs that token;
    DRIPML_UI_DATABASE_URL names the run store (default SQLite in --data-dir)."""
    from dripml import ui

    _quiet_libraries()
    ui.serve(host=host, port=port, recipe_dirs=recipes, data_dir=data_dir,
             tracking_uri=tracking_uri, trusted_user_header=trusted_user_header,
             max_upload_mib=max_upload_mib, deploy_target=deploy_target, kfp_host=kfp_host,
             upload_uri=upload_uri)


@app.command()
@_friendly
def predict(
    model: Annotated[str, typer.Argument(
        help="NAME[@alias] (default alias champion), NAME/version, or a models:/ URI.")],
    input_file: Annotated[str, typer.Option(
        "--input", "-i", help="CSV or Parquet file (.csv, .csv.gz, .parquet, .pq), local or "
                              "s3://...")],
    output_file: Annotated[str, typer.Option(
        "--output", "-o", help="Where to write: CSV or Parquet by its suffix (with Ray, a "
                               "folder of part files).")],
    batch_size: Annotated[int, typer.Option(min=1, help="Most rows per model call.")] = 10_000,
    engine: Annotated[str, typer.Option(
        help="local (this process), ray (Ray Data map_batches) or auto (Ray with "
             "--ray-address or from 2,000,000 rows).")] = "auto",
    ray_address: Annotated[str | None, typer.Option(
        envvar=[settings.DRIPML_RAY_ADDRESS.name, settings.RAY_ADDRESS.name],
        help="Ray cluster to score on (its workers read the input and write the output).")
    ] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Predict every row of a CSV or Parquet file; bad rows are reported by line, not fatal.

    Exits 1 when no row could be predicted (every row bad) or the file is unusable.
    """
    from dripml import api
    from dripml.core.progress import RowsBar

    if ray_address:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # as `drip run`
    _quiet_libraries()
    with RowsBar(err) as bar:
        report = api.predict_batch(model, input=input_file, output=output_file,
                                   batch_size=batch_size, engine=engine,
                                   ray_address=ray_address, tracking_uri=tracking_uri,
                                   progress=bar)
    out.print(f"[bold]predicted[/] {report.rows_predicted:,} of {report.rows_read:,} rows -> "
              f"{report.output} in {report.seconds:.1f} s ({report.rows_per_s:,.0f} rows/s, "
              f"{report.engine})", highlight=False)
    if report.bad_row_count:
        err.print(f"[yellow]{report.bad_row_count:,} bad rows left out[/] (first "
                  f"{min(10, len(report.bad_rows))}):", highlight=False)
        for bad in report.bad_rows[:10]:
            err.print(f"  {bad.where}: {bad.reason}", highlight=False, markup=False)
    if report.rows_predicted == 0:
        err.print("[bold red]error:[/] no row could be predicted", highlight=False)
        raise typer.Exit(1)


@app.command()
@_friendly
def models(tracking_uri: TrackingUri = None, json_output: Json = False) -> None:
    """List registered model versions, their aliases and test metrics (--json: one object
    per version with every field dripml records)."""
    from dripml import api

    _quiet_libraries()
    rows = api.models(tracking_uri)
    if json_output:
        _print_json([dataclasses.asdict(row) for row in rows])
        return
    if not rows:
        out.print("no registered models yet; run `drip run SPEC` first")
        return
    table = Table(title="registered models", title_justify="left")
    for column in ("model", "version", "aliases", "algorithm", "CV score", "test metrics (own)",
                   "p99 ms", "created"):
        table.add_column(column)
    for row in rows:
        shown = ", ".join(f"{k.removeprefix('test_')} {v:.4f}"
                          for k, v in list(row.test_metrics.items())[:4])
        cv = ("" if row.cv_score is None else
              f"{(row.cv_metric or '').removeprefix('validation_')} {row.cv_score:.4f}")
        p99 = row.costs.get("latency_p99_ms")
        table.add_row(row.name, row.version, ", ".join(row.aliases), row.algorithm, cv, shown,
                      "" if p99 is None else f"{p99:.3f}", row.created)
    out.print(table)


@app.command()
def algorithms(
    rows: Annotated[int | None, typer.Option(
        min=1, help="Show the default spaces scaled to this many training rows (a fold's).")
    ] = None,
    json_output: Json = False,
) -> None:
    """List the built-in algorithms: tasks, default search spaces with their bounds, how the
    bounds scale with the rows, and where the cost-aware search starts each one."""
    from dripml import api

    if json_output:
        _print_json([_algorithm_json(name, algorithm, rows)
                     for name, algorithm in api.list_algorithms().items()])
        return

    title = "built-in algorithms" + (f" (spaces for {rows:,} training rows)" if rows else "")
    table = Table(title=title, title_justify="left")
    for column in ("name", "tasks", "description", "default search space"):
        table.add_column(column, overflow="fold")
    for name, algorithm in api.list_algorithms().items():
        task = "regression" if algorithm.tasks == {"regression"} else "binary"
        lines = [f"{k}: {_dimension_text(v)}" for k, v in algorithm.space_for(task, rows).items()]
        if algorithm.space_notes and rows is None:
            lines.append(f"[dim]{algorithm.space_notes}[/]")
        if algorithm.low_cost:
            start = ", ".join(f"{k}={v}" for k, v in algorithm.low_cost.items())
            lines.append(f"[dim]low-cost start: {start}[/]")
        table.add_row(name, ", ".join(sorted(algorithm.tasks)), algorithm.description,
                      "\n".join(lines))
    out.print(table)


def _algorithm_json(name: str, algorithm: Any, rows: int | None) -> dict[str, Any]:
    """One algorithm for ``drip algorithms --json``: its default space as the spec writes it
    (``{"type": "int", "low": 16, "high": 2000, "log": true}``) for its first task."""
    task = "regression" if algorithm.tasks == {"regression"} else "binary"
    space = {key: dim.model_dump(mode="json", exclude_none=True)
             for key, dim in algorithm.space_for(task, rows).items()}
    return {"name": name, "tasks": sorted(algorithm.tasks), "description": algorithm.description,
            "search_space": space, "space_for_task": task, "rows": rows,
            "space_notes": algorithm.space_notes or None,
            "low_cost": dict(algorithm.low_cost or {})}


def _dimension_text(dim: Any) -> str:
    """``int 16..2000 log`` / ``loguniform 0.01..0.5`` / ``choice sqrt, 0.5``."""
    if dim.type == "choice":
        return "choice " + ", ".join(map(str, dim.values))
    log = " log" if getattr(dim, "log", False) else ""
    return f"{dim.type} {dim.low:g}..{dim.high:g}{log}"


@spec_app.command("schema")
def spec_schema() -> None:
    """Print the spec's JSON Schema."""
    from dripml import api

    print(json.dumps(api.spec_schema(), indent=2))


@spec_app.command("validate")
@_friendly
def spec_validate(spec: Annotated[Path, typer.Argument(help="Spec file (YAML).")],
                  json_output: Json = False) -> None:
    """Check SPEC completely, every problem at once, reading only the data's headers and
    first rows; starts nothing. --json: {"valid": true, "spec": the spec with its defaults,
    ...}, or {"valid": false, "errors": [one per problem]} and exit code 1."""
    from dripml import api

    if json_output:
        _validate_json(spec)
        return
    seen: list[Any] = []
    checked = api.validate(spec, on_data=seen.append)
    out.print(f"[green]✓[/] {spec} is valid: task {checked.task}, "
              f"{len(checked.algorithms)} algorithm(s), {checked.k_fold.n_splits}-fold, "
              f"{checked.search.algorithm} search")
    for summary in seen:
        out.print(summary.line(), markup=False, highlight=False)


def _validate_json(spec: Path) -> None:
    from dripml import api

    seen: list[Any] = []
    try:
        checked = api.validate(spec, on_data=seen.append)
    except DripmlError as error:
        message = str(error)
        problems = [line.strip() for line in message.splitlines() if line.startswith("  ")]
        _print_json({"valid": False, "path": str(spec), "error": type(error).__name__,
                     "errors": problems or [message], "message": message})
        raise typer.Exit(1) from None
    _print_json({"valid": True, "path": str(spec), "task": checked.task,
                 "algorithms": [a.name for a in checked.algorithms],
                 "n_splits": checked.k_fold.n_splits, "search": checked.search.algorithm,
                 "spec": checked.model_dump(mode="json"),
                 "data": [dataclasses.asdict(summary) for summary in seen]})


@data_app.command("fetch")
@_friendly
def data_fetch(name: Annotated[str, typer.Argument(help="Data set name, e.g. adult.")]) -> None:
    """Download a data set into the cache and print its files."""
    from dripml import api

    for split, path in api.fetch_dataset(name).items():
        out.print(f"{split}: {path}  (use dataset://{name}/{split} in a spec)")


@data_app.command("list")
def data_list() -> None:
    """List the data sets dripml can fetch."""
    from dripml import api

    for info in api.list_datasets():
        out.print(f"[bold]{info.name}[/] ({info.package}): {info.description}")


@app.command()
@_friendly
def deploy(
    model: Annotated[str, typer.Argument(
        help="NAME[@alias] (default alias champion), NAME/version, or a models:/ URI.")],
    target: Annotated[str, typer.Option(
        help="Where to deploy: local (this machine, 127.0.0.1) or kubernetes.")],
    image: Annotated[str | None, typer.Option(
        help="Serving image REPO@sha256:DIGEST (default: the version's dripml.image tag).")
    ] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="One NVIDIA GPU per replica.")] = False,
    port: Annotated[int, typer.Option(help="--target local: the port on 127.0.0.1.")] = 3000,
    runtime: Annotated[str, typer.Option(
        help="--target local: the container runtime, podman or docker.")] = "podman",
    namespace: Annotated[str, typer.Option(help="Namespace (created if missing).")] = "dripml",
    create_namespace: Annotated[bool, typer.Option(
        "--create-namespace/--no-create-namespace",
        help="Let helm create --namespace when missing (--no-create-namespace: it must "
             "exist, e.g. with a namespaced Role).")] = True,
    release: Annotated[str | None, typer.Option(
        help="Helm release name (default: the model name).")] = None,
    sets: Annotated[list[str] | None, typer.Option(
        "--set", help="Chart value KEY=VALUE for helm (repeatable).")] = None,
    tracking_uri: TrackingUri = None,
    cluster_tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow as the endpoint's pods reach it (default: --tracking-uri).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the values and the exact helm command; change nothing.")
    ] = False,
) -> None:
    """Deploy a registered model as an HTTP endpoint: on this machine (its serving image from
    `drip build`, or bentoml serve without one) or on Kubernetes (the dripml-endpoint chart)."""
    from dripml import api

    if target == "local":
        _quiet_libraries()
    with ExitStack() as status:

        def planned(plan: Any) -> None:  # before anything is written or started
            if target != "local":
                print(plan.shell_command, flush=True)
                return
            if plan.image is None:
                err.print(f"{model} has no serving image (no dripml.image tag; `drip build` "
                          f"makes one): serving it with bentoml serve from the MLflow store")
            status.enter_context(err.status(
                f"starting {plan.image.reference if plan.image else model} on 127.0.0.1:{port}"))

        done = api.deploy(model, target=target, image=image, gpu=gpu, port=port,
                          runtime=runtime, namespace=namespace, release=release,
                          sets=sets or (), tracking_uri=tracking_uri,
                          cluster_tracking_uri=cluster_tracking_uri, dry_run=dry_run,
                          on_plan=planned, create_namespace=create_namespace)
    if dry_run:
        print(done.script, end="")
    elif done.server is not None:
        _serve_until_stopped(model, done.server)
    else:
        out.print(f"[bold green]deployed[/] {done.plan.release} in namespace "
                  f"{done.plan.namespace} (values: {done.values_file})")


@app.command()
@_friendly
def build(
    model: Annotated[str, typer.Argument(
        help="NAME[@alias] (default alias champion), NAME/version, or a models:/ URI.")],
    registry: Annotated[str, typer.Option(
        help="HOST[:PORT]/REPO to push to, e.g. registry.example.com/ml/adult-serving.")],
    gpu: Annotated[bool, typer.Option("--gpu", help="A CUDA image (Containerfile.gpu).")
                   ] = False,
    builder: Annotated[str, typer.Option(help="buildah (daemonless) or docker.")] = "buildah",
    base_image: Annotated[str | None, typer.Option(
        help="Base image (default: $DRIPML_BASE_IMAGE or python:3.11-slim; with --gpu "
             "$DRIPML_GPU_BASE_IMAGE or nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04).")
    ] = None,
    build_image: Annotated[str | None, typer.Option(
        help="Image of the install stage (default: the base image).")] = None,
    tracking_uri: TrackingUri = None,
) -> None:
    """Build a registered model's serving image (a BentoML bento with the model baked in),
    push it, print its digest and record it on the model version (tag dripml.image)."""
    from dripml import api

    _quiet_libraries()
    with err.status(f"building the serving image of {model} with {builder}"):
        result = api.build_image(model, registry=registry, gpu=gpu, base_image=base_image,
                                 build_image=build_image, builder=builder,
                                 tracking_uri=tracking_uri)
    plan = result.plan
    out.print(f"[bold green]built[/] {plan.reference} ({result.size_mb:.0f} MB, base "
              f"{plan.base_image}) in {result.build_s:.0f} s, pushed in {result.push_s:.0f} s; "
              f"recorded on {plan.version_label} as dripml.image")
    print(result.image.reference, flush=True)
    out.print(f"deploy it with: drip deploy {shlex.quote(plan.version_label)} --target local "
              f"(or --target kubernetes)", highlight=False, markup=False)


@app.command("frontier")
@_friendly
def frontier_command(
    run_id: Annotated[str, typer.Argument(
        help="MLflow run id of a search (`drip run` prints it).")],
    tracking_uri: TrackingUri = None,
    json_output: Json = False,
) -> None:
    """Print the quality-cost frontier a run measured: every candidate's objective and
    serving costs, which meet the constraints, the frontier points and their versions
    (--json: one object per candidate)."""
    from dripml import api

    _quiet_libraries()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if json_output:
        _print_json(api.frontier_points(run_id, tracking_uri))
        return
    _print_frontier(api.frontier_table(run_id, tracking_uri))


def _print_frontier(board: Any) -> None:
    objective = next(c for c in board.columns if c.startswith("validation_"))
    columns = {"rank": "rank", "trial": "trial", "algorithm": "algorithm",
               objective: objective.removeprefix("validation_") + " (cv)",
               "latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms",
               "throughput_rows_s": "rows/s", "model_mb": "MB", "memory_mb": "peak MB"}
    if "requests_per_s" in board and board["requests_per_s"].notna().any():  # served
        columns |= {"inproc_latency_p50_ms": "in-proc p50", "inproc_latency_p99_ms":
                    "in-proc p99", "requests_per_s": "req/s"}
    if board["cost_per_million"].notna().any():
        columns["cost_per_million"] = "per 1M"
    columns |= {"frontier": "frontier of", "version": "version"}
    table = Table(title="frontier: quality against serving cost (★ chosen, ✗ breaks a "
                  "constraint)", title_justify="left")
    for title in ["", *columns.values()]:
        table.add_column(title, overflow="fold")
    notes = []
    for _, row in board.iterrows():
        mark = "★" if _flag(row["chosen"]) else ("✗" if not _flag(row["feasible"]) else "")
        style = "bold green" if mark == "★" else ("red" if mark == "✗" else None)
        cells = [_cost_cell(c, row[c]) for c in columns]
        table.add_row(mark, *cells, style=style)
        if mark == "✗":
            notes.append(f"trial {row['trial']}: {row['violations']}")
    out.print(table)
    for note in notes:
        out.print(f"[red]✗[/] {note}")


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1"}


def _cost_cell(column: str, value: Any) -> str:
    if isinstance(value, float) and not math.isnan(value):
        if column == "throughput_rows_s":
            return f"{value:,.0f}"
        if column in {"version", "rank", "trial"}:
            return str(int(value))
        return f"{value:.4g}" if column != "model_mb" else f"{value:.3f}"
    return _cell(value)


@runs_app.command("gc")
@_friendly
def runs_gc(tracking_uri: TrackingUri = None, json_output: Json = False) -> None:
    """Mark search runs whose driver died FAILED, with their RUNNING trials (`drip run`
    does it at its start): a run is orphaned when its heartbeat is older than 3 intervals
    or its driver process on this host is gone."""
    from dripml import api

    _quiet_libraries()
    collected = api.gc_runs(tracking_uri)
    if json_output:
        _print_json([dataclasses.asdict(run) for run in collected])
        return
    if not collected:
        out.print("no orphaned runs")
        return
    for run in collected:
        what = "search run" if run.parent_run_id is None else "trial run"
        out.print(f"marked {what} {run.run_id} FAILED: {run.reason}", highlight=False,
                  soft_wrap=True)


@runs_app.command("list")
@_friendly
def runs_list(tracking_uri: TrackingUri = None, json_output: Json = False) -> None:
    """List search runs MLflow says are RUNNING: driver, last heartbeat, orphaned or not."""
    import time

    from dripml import api

    _quiet_libraries()
    rows = api.unfinished_runs(tracking_uri)
    if json_output:
        _print_json([dataclasses.asdict(row) for row in rows])
        return
    if not rows:
        out.print("no unfinished search runs")
        return
    table = Table(title="unfinished search runs", title_justify="left")
    for column in ("run", "experiment", "name", "driver", "heartbeat s ago", "state"):
        table.add_column(column)
    now = time.time()
    for row in rows:
        ago = "" if row.heartbeat is None else f"{now - row.heartbeat:.0f}"
        state = f"orphaned: {row.reason}" if row.orphaned else "running"
        table.add_row(row.run_id, row.experiment_id, row.run_name, row.driver, ago, state)
    out.print(table)


RecipeArg = Annotated[str, typer.Argument(
    help="A recipe file, or a recipe's name in --recipes folders (default ./recipes and the "
         "shipped examples).")]
RecipeDirs = Annotated[list[Path] | None, typer.Option(
    "--recipes", help="A folder of recipes (repeatable; default ./recipes, then the shipped "
                      "examples).")]
DataPairs = Annotated[list[str] | None, typer.Option(
    "--data", help="train=FILE (CSV or Parquet), and optionally test=FILE (default: the "
                   "recipe's test fraction of train is held out).")]
SourceOpt = Annotated[str | None, typer.Option(
    "--source", help="Instead of --data: one of the recipe's data sets, by name (`drip "
                     "recipe list --json` shows them).")]
KnobPairs = Annotated[list[str] | None, typer.Option(
    "--set", help="KNOB=VALUE (repeatable); `drip recipe list` shows the knobs.")]
PipelineOpt = Annotated[str | None, typer.Option(
    "--pipeline", help="The recipe's pipeline to run (default: its first).")]


def _pairs(option: str, pairs: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"{option} takes KEY=VALUE, got {pair!r}")
        values[key.strip()] = value
    return values


@recipe_app.command("validate")
@_friendly
def recipe_validate(path: Annotated[Path, typer.Argument(help="Recipe file (YAML).")]) -> None:
    """Check a recipe file: its fields, each knob's type, rules, default and spec paths, and
    each pipeline's base spec with the knobs at their defaults (exit 2 naming the field)."""
    from dripml import api

    recipe = api.validate_recipe(path)
    out.print(f"[green]✓[/] {path} is valid: recipe {recipe.name!r} version {recipe.version}, "
              f"{len(recipe.pipelines)} pipeline(s) ({', '.join(recipe.pipelines)}), knobs: "
              f"{', '.join(p.key for p in recipe.params) or 'none'}", highlight=False)


@recipe_app.command("list")
@_friendly
def recipe_list(recipes: RecipeDirs = None, json_output: Json = False) -> None:
    """List the recipes found, with their pipelines and knobs (--json: Recipe.public())."""
    from dripml import api

    found = api.list_recipes(list(recipes) if recipes else None)
    if json_output:
        _print_json([recipe.public() for recipe in found.values()])
        return
    if not found:
        out.print("no recipes found")
        return
    table = Table(title="recipes", title_justify="left")
    for column in ("name", "version", "title", "pipelines", "knobs", "file"):
        table.add_column(column, overflow="fold")
    for recipe in found.values():
        table.add_row(recipe.name, recipe.version, recipe.title, ", ".join(recipe.pipelines),
                      ", ".join(f"{p.key} ({p.type})" for p in recipe.params),
                      str(recipe.source or ""))
    out.print(table)


@recipe_app.command("run")
@_friendly
def recipe_run(
    recipe: RecipeArg,
    data: DataPairs = None,
    source: SourceOpt = None,
    knobs: KnobPairs = None,
    pipeline: PipelineOpt = None,
    recipes: RecipeDirs = None,
    tracking_uri: TrackingUri = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the newest unfinished run of the same spec and knobs."
    )] = False,
    events: Annotated[Path | None, typer.Option(
        "--events", help="Also append the progress as JSON lines to this file.")] = None,
    json_output: Json = False,
) -> None:
    """Run a recipe on your data with your knob values: the DRiP loop on the spec the recipe
    builds, its MLflow run tagged with the recipe, its version and the knobs. --json prints
    the run's summary as `drip run --json` does."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from dripml import api

    log_file = _library_log_file()
    with redirect_stdout(sys.stderr) if json_output else nullcontext():
        try:
            result = api.run_recipe(
                recipe, data=_pairs("--data", data or []), knobs=_pairs("--set", knobs or []),
                pipeline=pipeline, reporter=_reporter(events), resume=resume,
                tracking_uri=tracking_uri, recipe_dirs=list(recipes) if recipes else None,
                log_file=log_file, source=source)
        except Interrupted as stop:
            again = shlex.join(["drip", *sys.argv[1:], *([] if resume else ["--resume"])])
            raise _with_resume_command(stop, again) from None
    if json_output:
        _print_json({**result.summary(), "log_file": str(log_file)})
        return
    _print_leaderboard(result.leaderboard, result.best.number)
    _print_test_metrics(result.test_metrics)
    out.print(f"[bold]registered[/] {result.model.model_uri} (run {result.run_id}, tracking "
              f"{result.tracking_uri}); serve it with: drip serve "
              f"{shlex.quote(f'{result.model.name}@{result.model.alias}')}", highlight=False)


@recipe_app.command("render")
@_friendly
def recipe_render(
    recipe: RecipeArg,
    data: DataPairs = None,
    source: SourceOpt = None,
    knobs: KnobPairs = None,
    pipeline: PipelineOpt = None,
    recipes: RecipeDirs = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Spec file to write (default: print it).")] = None,
) -> None:
    """Write the spec a recipe run would train (`drip run SPEC` runs it)."""
    import yaml

    from dripml import api

    spec = api.render_recipe(recipe, data=_pairs("--data", data or []),
                             knobs=_pairs("--set", knobs or []), pipeline=pipeline,
                             recipe_dirs=list(recipes) if recipes else None, source=source)
    text = yaml.safe_dump(spec, sort_keys=False)
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text)
    err.print(f"wrote {output}: run it with `drip run {shlex.quote(str(output))}`",
              highlight=False, markup=False)


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # python -m dripml.cli
    main()
