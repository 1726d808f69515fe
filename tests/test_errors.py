"""The error hierarchy: every error class is exported and documented, none is raised bare."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import dripml
from dripml import errors

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "dripml"

ERRORS = {name: value for name, value in vars(errors).items()
          if inspect.isclass(value) and issubclass(value, Exception)
          and value.__module__ == errors.__name__}


def test_every_error_is_exported_from_dripml() -> None:
    assert len(ERRORS) >= 17
    for name, cls in ERRORS.items():
        assert issubclass(cls, errors.DripmlError), name
        assert name in dripml.__all__, f"{name} is missing from dripml._PUBLIC"
        assert getattr(dripml, name) is cls


def test_every_error_says_when_it_is_raised() -> None:
    for name, cls in ERRORS.items():
        assert cls.__doc__ and len(cls.__doc__.split()) >= 8, name
        assert name in (errors.__doc__ or ""), f"{name} is missing from the module's tree"


def test_moved_errors_stay_importable_from_their_old_modules() -> None:
    from dripml.core.text import PretrainedModelError
    from dripml.orchestration.kuberay.schema import ManifestError

    assert PretrainedModelError is errors.PretrainedModelError
    assert ManifestError is errors.ManifestError


def bare_raises(tree: ast.AST) -> list[int]:
    """Lines of ``raise DripmlError(...)`` / ``raise DripmlError`` (any ``x.DripmlError``)."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Raise) or node.exc is None:
            continue
        target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        name = target.id if isinstance(target, ast.Name) else (
            target.attr if isinstance(target, ast.Attribute) else None)
        if name == "DripmlError":
            lines.append(node.lineno)
    return lines


def test_the_finder_finds_a_planted_bare_raise() -> None:
    planted = "raise DripmlError('x')\nraise errors.DripmlError\nraise SpecError('y')\n"
    assert bare_raises(ast.parse(planted)) == [1, 2]


def test_no_module_raises_the_bare_base_class() -> None:
    found = {str(p.relative_to(ROOT)): lines for p in sorted(PACKAGE.rglob("*.py"))
             if (lines := bare_raises(ast.parse(p.read_text(), str(p))))}
    assert not found, f"raise a subclass from dripml.errors instead: {found}"
