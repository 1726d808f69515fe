"""A recipe's data sets (its ``sources``) on the page: their columns for the form, and a run
on one instead of an upload.

A run on a source is recorded with ``upload_id`` ``source:<name>`` (no upload is stored) and
the MLflow tag ``dripml.recipe_source=<name>``; its spec's ``data.train``/``data.test`` are the
source's URIs, which no request ever names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dripml.core import datasets
from dripml.errors import DataError
from dripml.recipes.named_sources import SOURCE_TAG, source_columns, source_named

if TYPE_CHECKING:
    from dripml.orchestration.run_queue import RunQueue
    from dripml.orchestration.run_store import RunView
    from dripml.recipes import Recipe

__all__ = ["SOURCE_PREFIX", "columns", "example_source", "source_of", "submit"]

SOURCE_PREFIX = "source:"
"""``RunView.upload_id`` of a run on a recipe's data set: ``source:<name>``."""


def source_of(run: Any) -> str | None:
    """The name of the recipe data set ``run`` (a ``RunView``) trained on; None for an
    upload."""
    upload_id = getattr(run, "upload_id", "") or ""
    return upload_id.removeprefix(SOURCE_PREFIX) if upload_id.startswith(SOURCE_PREFIX) \
        else None


def columns(recipe: Recipe, name: str) -> list[str]:
    """The columns of the recipe's data set ``name`` (its train header).

    Raises:
        KnobError: (knob ``source``) no such data set in the recipe.
        DataError: the data set cannot be read.
    """
    return list(source_columns(source_named(recipe, name)))


def submit(queue: RunQueue, recipe: Recipe, name: str, values: Mapping[str, Any], *,
           pipeline: str | None = None) -> RunView:
    """Queue a run of ``recipe`` on its data set ``name`` with the knob ``values`` (as a form
    sends them; column knobs checked against the data set's header).

    Raises:
        KnobError: an unknown data set (knob ``source``) or pipeline, or a bad knob value.
        SpecError: the spec is invalid with these values (names the field).
        DataError: the data set cannot be read.
    """
    source = source_named(recipe, name)
    chosen = recipe.pipeline_name(pipeline)
    knobs = recipe.resolve(values, columns=source_columns(source), pipeline=chosen)
    spec = recipe.build_spec(knobs, train=source.train, test=source.test, pipeline=chosen)
    tags = {**recipe.tags(knobs, pipeline=chosen), SOURCE_TAG: name}
    return queue.submit_spec(spec, recipe=recipe.name, recipe_version=recipe.version,
                             pipeline=chosen, knobs=dict(knobs),
                             upload_id=SOURCE_PREFIX + name, test_upload_id=None, tags=tags)


def example_source(spec_path: Path) -> Path | None:
    """A local file holding the training rows of a source run (for the deploy's curl
    example): its spec's ``data.train`` when that is a cached ``dataset://`` set or a local
    file; None otherwise (S3, no spec)."""
    try:
        train = (yaml.safe_load(spec_path.read_text()) or {}).get("data", {}).get("train")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    if not isinstance(train, str):
        return None
    if datasets.is_dataset_uri(train):
        try:
            return datasets.resolve(train)
        except DataError:
            return None
    path = Path(train)
    return path if "://" not in train and path.is_file() else None
