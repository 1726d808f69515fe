"""Data sets a recipe offers by name (its ``sources``): a user picks a name, never a path.

A recipe may list, besides the upload, data the scientist vouches for::

    sources:
      adult:
        title: UCI Adult census (sample data)
        description: 32,561 people; predict income.
        train: dataset://adult/train
        test: dataset://adult/test      # optional: else the recipe's test fraction of train

``train``/``test`` take the sources a spec takes: ``dataset://NAME/SPLIT`` (a data set
:mod:`dripml.core.datasets` knows), ``s3://bucket/key.csv|parquet`` or an absolute path. Their
form is checked when the recipe loads; nothing is read then. :func:`source_columns` reads a
source's header (a Parquet footer, a CSV's head) for the form and the column knobs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dripml.core import datasets
from dripml.errors import KnobError, SpecError

if TYPE_CHECKING:
    from dripml.recipes.model import Recipe

__all__ = ["FORMATS", "SOURCE_TAG", "DataSource", "recipe_data", "source_columns",
           "source_named", "uri_problem"]

FORMATS = (".csv", ".csv.gz", ".tsv", ".txt", ".parquet", ".pq")
"""File endings the data loader reads (:func:`dripml.core.data.read_table`)."""
SOURCE_TAG = "dripml.recipe_source"
"""The MLflow tag naming the recipe source a run trained on."""


class DataSource(BaseModel):
    """One data set a recipe offers: what a user sees (title, description) and where its
    rows are (``train``, optional ``test``; never shown to a user)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    description: str = ""
    train: str = Field(description="dataset://NAME/SPLIT, s3://bucket/key or an absolute path")
    test: str | None = Field(default=None, description="as train; default: the recipe's "
                             "test fraction of train is held out")

    @field_validator("train", "test")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is not None:
            problem = uri_problem(value)
            if problem:
                raise ValueError(problem)
        return value

    def public(self, name: str) -> dict[str, str]:
        """``{name, title, description}``: what a page shows; never the URIs."""
        return {"name": name, "title": self.title, "description": self.description}


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` is not a data source a recipe may name (None when it is one). Checks the
    form only; nothing is read."""
    accepted = ("use dataset://NAME/SPLIT, s3://bucket/key or an absolute path to a "
                f"{', '.join(FORMATS)} file")
    if not uri.strip():
        return f"is empty; {accepted}"
    if datasets.is_dataset_uri(uri):
        name, _, split = uri.removeprefix(datasets.SCHEME).partition("/")
        info = datasets.DATASETS.get(name)
        if info is None:
            return f"{uri!r}: unknown data set {name!r}; known: {sorted(datasets.DATASETS)}"
        if split not in info.splits:
            return f"{uri!r}: data set {name!r} has no split {split!r}; splits: " \
                   f"{list(info.splits)}"
        return None
    if uri.startswith("s3://"):
        parsed = urlparse(uri)
        if not parsed.netloc or not parsed.path.strip("/"):
            return f"{uri!r} names no bucket and key; write s3://bucket/key.parquet"
        return _format_problem(uri, PurePosixPath(parsed.path).name, accepted)
    if "://" in uri:
        return f"{uri!r}: scheme {uri.split('://', 1)[0]!r} is not read; {accepted}"
    if not Path(uri).is_absolute():
        return (f"{uri!r} is a relative path, which would depend on the folder a run starts "
                f"in; {accepted}")
    return _format_problem(uri, Path(uri).name, accepted)


def _format_problem(uri: str, name: str, accepted: str) -> str | None:
    if name.lower().endswith(FORMATS):
        return None
    return f"{uri!r}: unknown format; {accepted}"


def recipe_data(recipe: Recipe, *, data: Mapping[str, str | Path] | None = None,
                source: str | None = None) -> tuple[str, str | None]:
    """``(train, test)`` of a recipe run: from ``data`` (``{"train": FILE, "test": FILE}``,
    local paths made absolute) or from the recipe's source named ``source``; exactly one.

    Raises:
        SpecError: both or neither given, or bad ``data`` keys.
        KnobError: (knob ``source``) the recipe has no source of that name (the message
            lists the ones it has).
    """
    from dripml.recipes.sources import data_sources

    if source is not None and data:
        raise SpecError("give either data train=FILE (--data) or a source, one of the "
                        "recipe's data sets (--source NAME), not both")
    if source is None:
        if not data:
            offered = list(recipe.sources)
            raise SpecError("data needs train=FILE (a CSV or Parquet file to learn from)"
                            + (f", or name a source (--source): one of {offered}"
                               if offered else ""))
        return data_sources(data)
    found = source_named(recipe, source)
    return found.train, found.test


def source_named(recipe: Recipe, name: str) -> DataSource:
    """The recipe's source ``name``.

    Raises:
        KnobError: (knob ``source``) no such source; the message lists the recipe's.
    """
    if name not in recipe.sources:
        offered = (f"its data sets are {list(recipe.sources)}" if recipe.sources else
                   "it offers no data sets: upload a file")
        raise KnobError("source", f"recipe {recipe.name!r} has no data set {name!r}; {offered}")
    return recipe.sources[name]


def source_columns(source: DataSource) -> tuple[str, ...]:
    """The columns of ``source``'s train data, from its header only (a Parquet footer, a
    CSV's first rows; a ``dataset://`` set is fetched into the cache once).

    Raises:
        DataError: the source cannot be read (missing file, S3 error, unknown format).
    """
    from dripml.core.preview import preview

    return preview(source.train).columns
