"""The web pages a non-technical user sees: the recipes, a recipe's form, the runs and one
run (live progress, then results, the frontier, Deploy and "Ask a scientist").

Server-rendered with Jinja2 from ``ui/templates``; the little behaviour they need (upload the
file, fill the column selects, submit, follow progress, deploy) is ``ui/static/app.js``, which
talks to the JSON API in :mod:`dripml.ui.api_routes`. Every page carries the CSRF token in a
``<meta name="csrf-token">`` tag; the JavaScript sends it as the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from dripml.errors import RecipeError, RunNotFound
from dripml.ui.security import csrf_token

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
LEADERBOARD_ROWS = 10  # the run page shows the best ten trials

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=TEMPLATES_DIR)


@lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # "html": False escapes any HTML in the scientist's text; markdown-it's link validation
    # drops javascript:, vbscript: and file: links.
    return MarkdownIt("commonmark", {"html": False}).enable("table")


def markdown(text: str | None) -> Markup:
    """Markdown ``text`` as HTML, with any raw HTML in it escaped."""
    return Markup(_markdown().render(text or ""))  # noqa: S704 - markdown-it escapes it


def number(value: Any, digits: int = 4) -> str:
    """A metric or cost for a table cell: ``0.9123``, ``12.5``, ``1,234``; ``-`` for none."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:.{digits}g}" if abs(value) < 1 else f"{value:,.{max(1, digits - 2)}f}"


def plain(value: Any) -> str:
    """A bound or default as a form shows it: ``2`` for 2.0, ``0.5``, ``1e-05``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def step(name: str | None) -> str:
    """A step's name as the page shows it: without the details in parentheses (a file's
    path on the server, say): ``loaded data (/srv/...)`` -> ``loaded data``."""
    return re.sub(r"\s*\(.*\)\s*$", "", name or "")


def label(key: str) -> str:
    """A column key as a header: ``latency_p99_ms`` -> ``latency p99 (ms)``."""
    unit = re.search(r"_(ms|s|mb|mib|gib)$", key)
    text = key[: unit.start()] if unit else key
    text = text.replace("_", " ")
    return f"{text} ({unit.group(1)})" if unit else text


templates.env.globals["csrf_token"] = csrf_token
templates.env.filters["markdown"] = markdown
templates.env.filters["number"] = number
templates.env.filters["label"] = label
templates.env.filters["plain"] = plain
templates.env.filters["step"] = step


def _services(request: Request) -> Any:
    return request.app.state.services


def _error_page(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "error.html",
                                      {"title": title, "message": message},
                                      status_code=status)


def _not_found(request: Request, what: str) -> HTMLResponse:
    return _error_page(request, 404, "Not found", what)


def _recipes(request: Request) -> dict[str, Any] | HTMLResponse:
    """The loaded recipes, or a page saying which recipe file is malformed."""
    try:
        return dict(_services(request).recipes())
    except RecipeError as error:
        return _error_page(request, 500, "A recipe file could not be read",
                           f"{error} Ask the scientist who wrote it to fix it (drip recipe "
                           "validate FILE shows what is wrong).")


@router.get("/", response_class=HTMLResponse)
def recipes_page(request: Request) -> HTMLResponse:
    """The recipes a scientist wrote, by title, with their descriptions."""
    loaded = _recipes(request)
    if isinstance(loaded, HTMLResponse):
        return loaded
    recipes = [recipe.public() for recipe in loaded.values()]
    recipes.sort(key=lambda r: str(r.get("title") or r["name"]).lower())
    return templates.TemplateResponse(request, "recipes.html",
                                      {"title": "Recipes", "recipes": recipes})


@router.get("/recipes/{name}", response_class=HTMLResponse)
def recipe_page(request: Request, name: str) -> HTMLResponse:
    """A recipe's form: the data upload, the pipeline (when there are several) and one input
    per knob, typed by the knob's type."""
    loaded = _recipes(request)
    if isinstance(loaded, HTMLResponse):
        return loaded
    recipe = loaded.get(name)
    if recipe is None:
        return _not_found(request, f"There is no recipe named '{name}'. Pick one from the "
                                   "list of recipes.")
    public = recipe.public()
    return templates.TemplateResponse(request, "recipe.html",
                                      {"title": public.get("title") or name, "recipe": public})


@router.get("/runs", response_class=HTMLResponse)
def runs_page(request: Request) -> HTMLResponse:
    """Every run, newest first, with its status and cancel/resume buttons."""
    runs = _services(request).store.list()
    return templates.TemplateResponse(request, "runs.html", {"title": "Runs", "runs": runs})


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, version: int | None = None) -> HTMLResponse:
    """One run: live progress while it runs; then test metrics, the leaderboard, the
    frontier (``?version=N`` picks a point to deploy), Deploy and "Ask a scientist"."""
    services = _services(request)
    try:
        run = services.store.get(run_id)
    except RunNotFound:
        return _not_found(request, f"There is no run '{run_id}'. See the list of runs.")
    try:
        recipe = services.recipes().get(run.recipe)
    except RecipeError:  # the run page still shows the run; only the recipe's title is lost
        recipe = None
    versions = _versions(run.frontier)
    picked = version if version in versions else _chosen_version(run.frontier, run.model_version)
    svg = None
    if run.status == "finished" and run.frontier:
        svg = Markup(_inline_svg(services.frontier_svg(run, version)))  # noqa: S704 - ours
    context = {
        "title": f"Run {run.id[:8]}", "run": run,
        "recipe": recipe.public() if recipe is not None else None,
        "contact": _contact(recipe.public().get("contact") if recipe is not None else None),
        "leaderboard": _table(run.leaderboard[:LEADERBOARD_ROWS], _LEADERBOARD_FIRST,
                              _LEADERBOARD_SKIP),
        "frontier_rows": _table(run.frontier, _FRONTIER_FIRST, _FRONTIER_SKIP),
        "picked_rows": [_version(point) == picked for point in run.frontier],
        "frontier_svg": svg, "versions": versions, "picked": picked,
        "picked_explicitly": version in versions,
    }
    return templates.TemplateResponse(request, "run.html", context)


_LEADERBOARD_FIRST = ("rank", "trial", "algorithm", "state")
_LEADERBOARD_SKIP = frozenset({"params", "folds"})
_FRONTIER_FIRST = ("version", "chosen", "algorithm", "trial")
_FRONTIER_SKIP = frozenset({"params", "rank", "frontier", "violations"})


def _table(rows: Sequence[Mapping[str, Any]], first: Iterable[str],
           skip: frozenset[str]) -> dict[str, Any]:
    """Rows as ``{"columns": [...], "rows": [[...], ...]}``: the ``first`` columns that are
    present, then the others in the order the rows give them, less ``skip``."""
    seen: list[str] = []
    for row in rows:
        seen.extend(key for key in row if key not in seen)
    columns = [c for c in first if c in seen] + [c for c in seen
                                                  if c not in first and c not in skip]
    return {"columns": columns, "rows": [[row.get(c) for c in columns] for row in rows]}


def _version(point: Mapping[str, Any]) -> int | None:
    """A frontier point's registered model version (``None``, ``""`` or NaN when none)."""
    value = point.get("version")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return int(value) if isinstance(value, int | str) and str(value).isdigit() else None


def _versions(frontier: Sequence[Mapping[str, Any]]) -> list[int]:
    """The registered model versions among the frontier points, in frontier order."""
    return [v for v in map(_version, frontier) if v is not None]


def _chosen_version(frontier: Sequence[Mapping[str, Any]], model_version: int | None
                    ) -> int | None:
    for point in frontier:
        if point.get("chosen") and _version(point) is not None:
            return _version(point)
    return model_version


def _contact(value: Any) -> str | None:
    """The recipe's contact as a link: an http(s) or mailto URL, or an e-mail address."""
    text = str(value or "").strip()
    if re.match(r"(?i)^(https?://|mailto:)", text):
        return text
    return f"mailto:{text}" if re.fullmatch(r"[^@\s:/]+@[^@\s:/]+", text) else None


def _inline_svg(svg: str) -> str:
    """An SVG document as an element to inline in HTML: no XML prolog or doctype, and
    scalable (``viewBox`` kept, fixed width/height dropped for CSS to size it)."""
    start = svg.find("<svg")
    svg = svg[start:] if start >= 0 else svg
    head_end = svg.find(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", svg[:head_end])
    return head + ' role="img" aria-labelledby="frontier-caption"' + svg[head_end:]
