"""Recipes: a scientist's named base specs and the few typed knobs a non-technical user may
turn (``drip recipe``, the web page).

A recipe file (YAML) holds ``name``, ``version``, ``title``, a Markdown ``description``, one
or more ``pipelines`` (base specs, the first the default) and ``params`` (the knobs), each
mapped onto spec fields by dotted path; nothing else of the spec can be changed from outside.
See :class:`Recipe` and the shipped examples (:func:`shipped_recipes_dir`).

Imports no Ray, MLflow or BentoML: reading recipes is cheap.
"""

from __future__ import annotations

from dripml.errors import KnobError, RecipeError
from dripml.recipes.loading import (
    default_recipe_dirs,
    find_recipes,
    get_recipe,
    load_recipe,
    shipped_recipes_dir,
)
from dripml.recipes.model import Param, ParamType, Pipeline, Recipe
from dripml.recipes.named_sources import DataSource, recipe_data, source_columns
from dripml.recipes.sources import data_sources

__all__ = ["DataSource", "KnobError", "Param", "ParamType", "Pipeline", "Recipe", "RecipeError",
           "data_sources", "default_recipe_dirs", "find_recipes", "get_recipe", "load_recipe",
           "recipe_data", "shipped_recipes_dir", "source_columns"]
