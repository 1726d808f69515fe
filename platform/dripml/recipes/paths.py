"""Dotted spec paths (``data.label``, ``search.time_budget_s``): checked against the spec's
models, written into a spec mapping."""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from pydantic import BaseModel

from dripml.core.spec import Spec

__all__ = ["FROM_UPLOAD", "path_problem", "takes_list", "write"]

FROM_UPLOAD = frozenset({"data.train", "data.test"})
"""Set from the upload by :meth:`Recipe.build_spec`, never by a knob: a knob that wrote a
source would let a user name any file the runner can read."""


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a spec field a knob may write (None when it is one): empty parts,
    a part the spec has no field for (listing the fields it has there), a source path."""
    if path in FROM_UPLOAD:
        return f"{path} is set from the uploaded data, never by a knob"
    parts = path.split(".")
    if not all(parts):
        return f"{path!r} is not a dotted path such as data.label"
    model: type[BaseModel] | None = Spec
    for depth, part in enumerate(parts):
        if model is None:
            where = ".".join(parts[:depth])
            return f"{where} has no fields below it, so {path!r} is not a spec field"
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:depth]) or "the spec"
            return f"{where} has no field {part!r} (its fields: {', '.join(fields)})"
        model = _submodel(fields[part].annotation)
    return None


def takes_list(path: str) -> bool:
    """Whether the spec field at ``path`` (a valid path) holds a list (``algorithms``,
    ``data.text_columns``): a single value written there becomes a one-item list."""
    model: type[BaseModel] | None = Spec
    annotation: Any = None
    for part in path.split("."):
        if model is None or part not in model.model_fields:
            return False
        annotation = model.model_fields[part].annotation
        model = _submodel(annotation)
    return _is_list(annotation)


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_list(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin is list


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds (``DataSpec``, ``SearchSpec | None``), else None
    (a scalar, a list or a mapping: the path must end there)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _submodel(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found = [m for m in map(_submodel, typing.get_args(annotation)) if m is not None]
        return found[0] if len(found) == 1 else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def write(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set ``spec[a][b]...[z] = value`` for ``path`` ``a.b...z``, making the mappings on the
    way (copies, so a shared base is never changed). Algorithm names written to
    ``algorithms`` keep the base spec's entry for a name it already configures."""
    parts = path.split(".")
    node = spec
    for part in parts[:-1]:
        child = node.get(part)
        child = dict(child) if isinstance(child, Mapping) else {}
        node[part] = child
        node = child
    last = parts[-1]
    if not isinstance(value, list) and takes_list(path):
        value = [value]
    if path == "algorithms" and isinstance(value, list):
        value = _keep_configured(spec.get("algorithms", spec.get("algorithm")), value)
        spec.pop("algorithm", None)
    node[last] = value


def _keep_configured(base: Any, names: list[Any]) -> list[Any]:
    configured: dict[str, Any] = {}
    for entry in base if isinstance(base, list) else [base] if base else []:
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            configured[entry["name"]] = entry
    return [configured.get(name, name) if isinstance(name, str) else name for name in names]
