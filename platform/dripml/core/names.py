"""Registered model names: what MLflow's registry and dripml's model references accept.

MLflow refuses an empty name, ``/`` and ``:``, and a name that a path normalisation would
change (``..``, ``./x``, ``a//b``; ``mlflow.utils.validation._validate_model_name``); its
SQL store holds 256 characters. dripml's ``NAME@ALIAS`` references
(:mod:`dripml.core.refs`) also exclude whitespace and ``@``, and a name starting with ``-``
would read as an option in ``drip serve NAME``. :func:`model_name_problem` checks all of
them without importing MLflow, so the spec fails before anything starts.
"""

from __future__ import annotations

import posixpath
import re

__all__ = ["MODEL_NAME_MAX", "model_name_problem"]

MODEL_NAME_MAX = 256
"""Characters MLflow's SQL store holds in a registered model name."""

_FORBIDDEN = re.compile(r"[\s/@:\\]|[\x00-\x1f\x7f]")
_ADVICE = "use letters, digits, '_', '-' and '.', e.g. 'adult-income'"


def model_name_problem(name: str) -> str | None:
    """What is wrong with ``name`` as a registered model name, in one sentence; None when
    it is fine."""
    if not name.strip():
        return f"a registered model name cannot be empty; {_ADVICE}"
    if len(name) > MODEL_NAME_MAX:
        return (f"a registered model name holds at most {MODEL_NAME_MAX} characters, got "
                f"{len(name)}")
    bad = _FORBIDDEN.search(name)
    if bad:
        shown = {" ": "a space", "\t": "a tab", "\n": "a newline"}.get(bad.group(),
                                                                      repr(bad.group()))
        return (f"a registered model name cannot contain {shown} (MLflow refuses '/' and "
                f"':', and NAME@ALIAS references whitespace and '@'); {_ADVICE}")
    if name.startswith("-"):
        return f"a registered model name cannot start with '-' (it reads as an option); {_ADVICE}"
    if name.startswith("..") or name == "." or posixpath.normpath(name) != name:
        return (f"a registered model name must not read as a relative path ('.', '..'); "
                f"{_ADVICE}")
    return None
