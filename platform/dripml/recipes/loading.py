"""Recipe files: one YAML file per recipe, found in folders (``./recipes`` and the shipped
examples by default). A malformed file fails with a :class:`~dripml.errors.RecipeError`
naming the file, the field and, where the YAML has it, the line."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from dripml.errors import RecipeError
from dripml.recipes.model import Recipe

__all__ = ["default_recipe_dirs", "find_recipes", "get_recipe", "load_recipe",
           "shipped_recipes_dir"]

SUFFIXES = (".yaml", ".yml")


def shipped_recipes_dir() -> Path:
    """The recipes shipped with dripml (package data; ``examples/recipes`` in the repo)."""
    return Path(__file__).resolve().parent / "examples"


def default_recipe_dirs() -> list[Path]:
    """Where recipes are looked for by default: ``./recipes``, then the shipped ones."""
    return [Path("recipes"), shipped_recipes_dir()]


def load_recipe(path: str | Path) -> Recipe:
    """Read and check one recipe file (its base specs included: every knob at its default
    must give a valid spec naming known algorithms).

    Raises:
        RecipeError: the file is missing or not YAML (with the line), not a mapping, or a
            field is missing, unknown or invalid (each named by its path, e.g.
            ``params[1] (time_budget_s).default``, with its line).
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise RecipeError(f"recipe file {str(path)!r} is not valid YAML{where}: {problem}"
                          ) from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe file {str(path)!r} must hold a mapping (name, version, "
                          f"title, pipelines, params), got {type(raw).__name__}")
    try:
        recipe = Recipe.model_validate(raw)
    except ValidationError as error:
        raise RecipeError(_message(path, text, raw, error)) from None
    return recipe.model_copy(update={"source": path})


def find_recipes(dirs: Sequence[str | Path]) -> dict[str, Recipe]:
    """Every recipe in ``dirs`` (``*.yaml``, ``*.yml``, not recursive), by name. A recipe in
    an earlier folder wins over one of the same name in a later folder; a missing folder is
    skipped.

    Raises:
        RecipeError: a file is malformed, or two files of one folder share a name.
    """
    found: dict[str, Recipe] = {}
    for folder in map(Path, dirs):
        if not folder.is_dir():
            continue
        here: dict[str, Path] = {}
        for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()):
            recipe = load_recipe(path)
            if recipe.name in here:
                raise RecipeError(f"recipes {str(here[recipe.name])!r} and {str(path)!r} are "
                                  f"both named {recipe.name!r}; rename one")
            here[recipe.name] = path
            found.setdefault(recipe.name, recipe)
    return found


def get_recipe(ref: str | Path | Recipe, dirs: Sequence[str | Path] | None = None) -> Recipe:
    """A recipe by file path (anything ending in .yaml/.yml, or an existing file) or by name
    in ``dirs`` (default :func:`default_recipe_dirs`).

    Raises:
        RecipeError: no such file or name (listing the names found), or a malformed file.
    """
    if isinstance(ref, Recipe):
        return ref
    path = Path(ref)
    if path.suffix in SUFFIXES or path.is_file():
        return load_recipe(path)
    folders = list(dirs) if dirs is not None else default_recipe_dirs()
    recipes = find_recipes(folders)
    if str(ref) not in recipes:
        shown = ", ".join(str(f) for f in folders)
        raise RecipeError(f"no recipe named {str(ref)!r} in {shown}; found "
                          f"{sorted(recipes) or 'none'} (or give a recipe file's path)")
    return recipes[str(ref)]


def _message(path: Path, text: str, raw: dict[str, Any], error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        location = [p for p in item["loc"] if not (isinstance(p, str) and "[" in p)]
        field = _field_name(location, raw)
        line = _line_of(text, location)
        at = f" (line {line})" if line else ""
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  {field}{at}: {message}" if field else f"  {message}")
    count = len(lines)
    return (f"recipe file {str(path)!r} has {count} problem{'s' if count > 1 else ''}:\n"
            + "\n".join(lines))


def _field_name(location: list[Any], raw: dict[str, Any]) -> str:
    """``params[1] (time_budget_s).default`` / ``pipelines.fast.spec``."""
    parts: list[str] = []
    node: Any = raw
    for part in location:
        if isinstance(part, int):
            key = ""
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict):
                key = f" ({node[part]['key']})" if "key" in node[part] else ""
            parts[-1] = f"{parts[-1] if parts else ''}[{part}]{key}"
        else:
            parts.append(str(part))
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return ".".join(parts)


def _line_of(text: str, location: list[Any]) -> int | None:
    """The 1-based line of the deepest node of ``location`` the YAML has."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in location:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if child is not None:
                key = next(k for k, v in node.value if v is child)
                line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
            if child is not None:
                line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line
