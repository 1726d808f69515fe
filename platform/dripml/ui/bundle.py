""""Ask a scientist": one zip with what a scientist needs to reproduce and refine a run."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dripml.ui.sources import source_of

FILES = ("README.md", "spec.yaml", "knobs.json", "metrics.json", "leaderboard.csv",
         "frontier.csv")


def _csv(rows: Sequence[dict[str, Any]]) -> str:
    out = io.StringIO()
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v
                         for k, v in row.items()})
    return out.getvalue()


def readme(run: Any, *, page_url: str | None) -> str:
    """The bundle's README: what was run, with which knobs, how to rerun it."""
    knobs = " ".join(f"--set {k}={json.dumps(v) if not isinstance(v, str) else v}"
                     for k, v in (run.knobs or {}).items())
    model = (f"{run.model_name}/{run.model_version}" if run.model_name else "none registered")
    link = f"\nOn the page: {page_url.rstrip('/')}/runs/{run.id}\n" if page_url else ""
    source = source_of(run)
    data = (f"the recipe's data set `{source}`" if source else "the user's upload")
    where = (f"the recipe's data set {source}" if source else "the UI's copies of the upload")
    rerun = f"--source {source}" if source else "--data train=YOUR.csv"
    return (f"# dripml run {run.id}: recipe {run.recipe} {run.recipe_version}\n\n"
            f"Status: {run.status}. Pipeline: {run.pipeline}. Data: {data}. Model: {model}.\n"
            f"MLflow run: {run.mlflow_run_id or '-'} {run.run_url or ''}\n{link}\n"
            f"## Files\n\n"
            f"- `spec.yaml`: the full spec the run trained with (rerun: `drip run spec.yaml`;"
            f" the data paths are {where})\n"
            f"- `knobs.json`: the values the user set on the recipe's form\n"
            f"- `metrics.json`: test metrics and the best CV objective\n"
            f"- `leaderboard.csv`: every trial, best first\n"
            f"- `frontier.csv`: the refit candidates with their measured serving cost\n\n"
            f"## Reproduce from the recipe\n\n"
            f"    drip recipe run {run.recipe} {rerun} {knobs}\n"
            + (f"\n## Error\n\n```\n{run.error}\n```\n" if run.error else ""))


def bundle(run: Any, *, spec_path: Path | None, page_url: str | None = None) -> bytes:
    """The zip: README.md, spec.yaml, knobs.json, metrics.json, leaderboard.csv,
    frontier.csv (``run`` is a run store ``RunView``)."""
    metrics = {"test_metrics": dict(run.test_metrics or {}), "objective": run.objective,
               "best_value": run.best_value, "trials_done": run.done, "trials_total": run.total}
    spec = (spec_path.read_text() if spec_path is not None and spec_path.is_file()
            else "# the spec was not kept for this run\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.md", readme(run, page_url=page_url))
        archive.writestr("spec.yaml", spec)
        archive.writestr("knobs.json", json.dumps(run.knobs or {}, indent=2, default=str))
        archive.writestr("metrics.json", json.dumps(metrics, indent=2, default=str))
        archive.writestr("leaderboard.csv", _csv(run.leaderboard or []))
        archive.writestr("frontier.csv", _csv(run.frontier or []))
    return buffer.getvalue()
