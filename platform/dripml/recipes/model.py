"""A recipe: named base specs ("pipelines") a scientist wrote and the few typed knobs a
non-technical user may turn, each mapped onto spec fields by dotted path.

Only the knobs' paths (and the data sources: the upload, or one of the recipe's named
``sources``, see :mod:`dripml.recipes.named_sources`) are ever written into a base spec:
everything else is the scientist's. See :mod:`dripml.recipes.knobs` for the values each param
type takes and :mod:`dripml.recipes.loading` for the YAML files.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from dripml.core.spec import check_fields, load_spec
from dripml.errors import KnobError, SpecError
from dripml.recipes import knobs as knob_values
from dripml.recipes.named_sources import DataSource
from dripml.recipes.paths import path_problem, write

__all__ = ["PLACEHOLDER_TRAIN", "Param", "ParamType", "Pipeline", "Recipe"]

ParamType = Literal["number", "integer", "choice", "multichoice", "boolean", "column",
                    "duration", "latency"]
SLUG = r"^[a-z0-9][a-z0-9-]*$"
PLACEHOLDER_TRAIN = "recipe-check.csv"
"""The training source a base spec is checked with when a recipe loads (never read)."""
_NUMERIC = {"number", "integer", "duration", "latency"}
_CHOOSING = {"choice", "multichoice"}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Pipeline(_Model):
    """One base spec to try: a title for people and the spec (a mapping, as in a spec YAML,
    without ``data.train``/``data.test``: those come from the upload)."""

    title: str = Field(min_length=1)
    description: str = ""
    spec: dict[str, Any]


class Param(_Model):
    """A knob: its type and rules, how it is shown, and the spec fields it writes.

    Attributes:
        key: what ``--set KEY=VALUE`` and the form name it by (``[a-z][a-z0-9_]*``).
        type: number | integer (``min``/``max`` inclusive, ``step`` grid from ``min`` or 0);
            choice | multichoice (``choices``); boolean; column (a column of the uploaded
            data); duration (``unit`` s, min or h; written to the spec in seconds); latency
            (``unit`` ms).
        default: used when no value is given; checked against the param's own rules.
        required: a value (given or default) must exist; an optional knob left empty writes
            nothing, so the base spec's value (or none) stands.
        paths: dotted spec fields the value is written to (``data.label``,
            ``search.time_budget_s``, ``constraints.max_latency_p99_ms``; a multichoice of
            algorithm names may write ``algorithms``).
    """

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = Field(min_length=1)
    help: str = ""
    type: ParamType
    default: Any = None
    required: bool = False
    min: float | None = None
    max: float | None = None
    step: float | None = Field(default=None, gt=0)
    choices: list[str] | None = None
    unit: str | None = None
    paths: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _rules(self) -> Param:
        kind = self.type
        if kind not in _NUMERIC and (self.min, self.max, self.step) != (None, None, None):
            raise ValueError(f"min, max and step apply to number, integer, duration and "
                             f"latency params, not {kind}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min:g} is above max {self.max:g}")
        if kind in _CHOOSING:
            if not self.choices:
                raise ValueError(f"a {kind} param needs choices")
            if len(set(self.choices)) != len(self.choices):
                raise ValueError(f"choices {self.choices} name one twice")
        elif self.choices is not None:
            raise ValueError(f"choices apply to choice and multichoice params, not {kind}")
        self._check_unit()
        for path in self.paths:
            problem = path_problem(path)
            if problem:
                raise ValueError(f"paths: {problem}")
        if not knob_values.is_empty(self.default):
            try:
                knob_values.coerce(self, self.default)
            except KnobError as error:
                raise ValueError(f"default {self.default!r} breaks the param's own rules: "
                                 f"{str(error).removeprefix(f'knob {self.key!r}: ')}") from None
        return self

    def _check_unit(self) -> None:
        if self.type == "duration":
            if self.unit is None:
                self.unit = "s"
            if self.unit not in knob_values.DURATION_UNITS:
                raise ValueError(f"a duration's unit is s, min or h, got {self.unit!r}")
        elif self.type == "latency":
            if self.unit is None:
                self.unit = "ms"
            if self.unit != "ms":
                raise ValueError(f"a latency's unit is ms, got {self.unit!r}")
        elif self.unit is not None and self.type not in _NUMERIC:
            raise ValueError(f"unit applies to number, integer, duration and latency params, "
                             f"not {self.type}")

    def public(self) -> dict[str, Any]:
        """JSON-ready: key, label, help, type, default, required, min, max, step, choices,
        unit (what a form needs to draw and pre-check the input)."""
        return self.model_dump(mode="json", exclude={"paths"})


class Recipe(_Model):
    """One recipe file: who it is for (title, Markdown description), the pipelines to try (the
    first is the default) and the knobs. ``source`` is the file it came from."""

    name: str = Field(pattern=SLUG, max_length=80)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    contact: str | None = Field(
        default=None, description="Where to ask the scientist: a mailto: or issue URL.")
    pipelines: dict[str, Pipeline] = Field(min_length=1)
    params: list[Param] = Field(default_factory=list)
    sources: dict[str, DataSource] = Field(
        default_factory=dict, description="Data sets a user may pick instead of uploading, by "
        "name (ordered); see dripml.recipes.named_sources.")
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        # `version: 1.0` in YAML is a float; the recipe means the text "1.0".
        return str(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else value

    @field_validator("pipelines")
    @classmethod
    def _pipeline_names(cls, value: dict[str, Pipeline]) -> dict[str, Pipeline]:
        bad = [name for name in value if not re.match(SLUG, name)]
        if bad:
            raise ValueError(f"pipeline names are [a-z0-9-] slugs, got {bad}")
        return value

    @field_validator("sources")
    @classmethod
    def _source_names(cls, value: dict[str, DataSource]) -> dict[str, DataSource]:
        bad = [name for name in value if not re.match(SLUG, name)]
        if bad:
            raise ValueError(f"source names are [a-z0-9-] slugs, got {bad}")
        return value

    @model_validator(mode="after")
    def _check(self) -> Recipe:
        keys = [param.key for param in self.params]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"params: keys {twice} are used twice")
        for name in self.pipelines:
            self._check_pipeline(name)
        return self

    def _check_pipeline(self, name: str) -> None:
        """The pipeline's base spec with every knob at its default (a placeholder where it
        has none, every choice of a multichoice) must be a valid spec naming known
        algorithms for its task."""
        base = self.pipelines[name].spec
        for field in ("train", "test"):
            if isinstance(base.get("data"), Mapping) and field in base["data"]:
                raise ValueError(f"pipelines.{name}.spec.data.{field}: comes from the "
                                 "uploaded data; remove it")
        spec = self._write(name, {p.key: _placeholder(p) for p in self.params},
                           train=PLACEHOLDER_TRAIN, test=None)
        checked, problems = check_fields(spec)
        if problems:
            raise ValueError(f"pipelines.{name}.spec is not a valid spec (with each knob at "
                             "its default):\n" + "\n".join(problems))
        if checked is not None:
            from dripml.algorithms import registry

            for i, algorithm in enumerate(checked.algorithms):
                if algorithm.is_custom:  # importing it would run its code: checked at run
                    continue
                try:
                    registry.check(algorithm, checked.task, where=f"algorithms[{i}]")
                except SpecError as error:
                    raise ValueError(f"pipelines.{name}.spec: {error}") from None

    # -- the interface ----------------------------------------------------------------------

    def pipeline_name(self, pipeline: str | None = None) -> str:
        """``pipeline``, checked; None: the first (default) pipeline.

        Raises:
            KnobError: (knob ``pipeline``) not one of the recipe's pipelines.
        """
        if pipeline is None:
            return next(iter(self.pipelines))
        if pipeline not in self.pipelines:
            raise KnobError("pipeline", f"unknown pipeline {pipeline!r}; recipe {self.name!r} "
                                        f"has {list(self.pipelines)}")
        return pipeline

    def resolve(self, values: Mapping[str, Any], *, columns: Sequence[str] | None = None,
                pipeline: str | None = None) -> dict[str, Any]:
        """Every knob's typed value, defaults filled (None: an optional knob left empty).

        Args:
            values: knob key -> value, a string (a form field, ``--set k=v``) or a JSON
                value; an empty string means "not given".
            columns: the uploaded data's columns, which ``column`` knobs must name (None:
                not checked).
            pipeline: checked when given.

        Raises:
            KnobError: naming the knob and the rule broken: an unknown knob (or pipeline),
                wrong type, out of bounds, off the step grid, not a choice or column, a
                required knob with no value and no default.
        """
        self.pipeline_name(pipeline)
        known = {param.key: param for param in self.params}
        for key in values:
            if key not in known:
                raise KnobError(key, f"recipe {self.name!r} has no such knob; its knobs are "
                                     f"{list(known)} (only these can be set)")
        resolved: dict[str, Any] = {}
        for param in self.params:
            value = values.get(param.key)
            if knob_values.is_empty(value):
                value = param.default
            if knob_values.is_empty(value):
                if param.required:
                    raise KnobError(param.key, f"is required ({param.label}): give a value")
                resolved[param.key] = None
                continue
            resolved[param.key] = knob_values.coerce(param, value, columns=columns)
        return resolved

    def build_spec(self, knobs: Mapping[str, Any], *, train: str, test: str | None = None,
                   pipeline: str | None = None) -> dict[str, Any]:
        """The pipeline's base spec (a copy) with ``data.train`` (and ``data.test``) set and
        each knob's value written at its paths; nothing else changes, except that a given
        ``test`` replaces the base's ``data.test_fraction`` and a base spec without a
        ``name`` is named after the recipe. Without ``test`` the base's
        ``data.test_fraction`` (default 0.2) of the upload is held out as the test split.

        Returns:
            The spec as a mapping (what ``drip run`` reads from YAML).

        Raises:
            KnobError: as :meth:`resolve` (columns are not checked here).
            SpecError: the spec is invalid with these values; the message names the field.
        """
        name = self.pipeline_name(pipeline)
        spec = self._write(name, self.resolve(knobs, pipeline=name), train=train, test=test)
        load_spec(spec)
        return spec

    def tags(self, knobs: Mapping[str, Any], *, pipeline: str | None = None) -> dict[str, str]:
        """MLflow tags of a run of this recipe: ``dripml.recipe``, ``dripml.recipe_version``,
        ``dripml.recipe_pipeline`` and ``dripml.knobs`` (the resolved values as compact JSON,
        keys sorted), enough to reproduce the run.

        Raises:
            KnobError: as :meth:`resolve`.
        """
        name = self.pipeline_name(pipeline)
        values = self.resolve(knobs, pipeline=name)
        return {"dripml.recipe": self.name, "dripml.recipe_version": self.version,
                "dripml.recipe_pipeline": name,
                "dripml.knobs": json.dumps(values, sort_keys=True, separators=(",", ":"))}

    def public(self) -> dict[str, Any]:
        """JSON-ready, for a page or an API: name, version, title, description, contact,
        pipelines (name, title, description), params (:meth:`Param.public`) and sources
        (name, title, description); never the base specs, the sources' URIs or the file's
        path."""
        return {"name": self.name, "version": self.version, "title": self.title,
                "description": self.description, "contact": self.contact,
                "pipelines": [{"name": name, "title": p.title, "description": p.description}
                              for name, p in self.pipelines.items()],
                "params": [param.public() for param in self.params],
                "sources": [s.public(name) for name, s in self.sources.items()]}

    def _write(self, pipeline: str, values: Mapping[str, Any], *, train: str,
               test: str | None) -> dict[str, Any]:
        spec = copy.deepcopy(self.pipelines[pipeline].spec)
        spec.setdefault("name", self.name)
        data = dict(spec.get("data") or {})
        data["train"] = train
        if test is not None:
            data["test"] = test
            data.pop("test_fraction", None)
        spec["data"] = data
        for param in self.params:
            value = values.get(param.key)
            if value is None:
                continue
            for path in param.paths:
                write(spec, path, knob_values.to_spec_value(param, copy.deepcopy(value)))
        return spec


def _placeholder(param: Param) -> Any:
    """A value to check a base spec with: every choice of a multichoice, else the default,
    else one that fits the type."""
    if param.type == "multichoice":
        return list(param.choices or [])
    if not knob_values.is_empty(param.default):
        return knob_values.coerce(param, param.default)
    if param.type == "choice":
        return (param.choices or [""])[0]
    if param.type == "column":
        return param.key
    if param.type == "boolean":
        return False
    if param.type == "latency":
        return None
    if param.type in _NUMERIC:
        return param.min if param.min is not None else (
            param.max if param.max is not None else 1)
    return None
