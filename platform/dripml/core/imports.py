"""User code named ``package.module:name``, and the driver's import path for it.

Custom algorithms, metrics and pre/postprocessing are named ``package.module:name``
(:func:`import_object`); Ray workers and the memory meter's child process must import them
exactly as the driver does, so they get the driver's working directory and ``sys.path`` as
``PYTHONPATH`` (:func:`driver_import_path`).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path
from typing import Any

from dripml.errors import SpecError

_MISSING = object()


def import_object(path: str, *, field: str) -> Any:
    """The object ``package.module:name`` names (``name`` may be dotted: ``Class.method``),
    imported as the driver imports it.

    Args:
        field: what the user wrote it in, as errors name it (``data.preprocess``,
            ``custom metric 'm:f'``).

    Raises:
        SpecError: ``path`` is not ``module:name``, the module does not import (the message
            says why and asks about PYTHONPATH), or has no such name (the message lists the
            functions and classes it holds).
    """
    module_name, colon, name = path.partition(":")
    if not colon or not module_name or not name or ":" in name:
        raise SpecError(f"{field}: {path!r} must be written as 'package.module:name'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # any failure while importing user code
        raise SpecError(f"{field}: cannot import module {module_name!r} of {path!r}: "
                        f"{type(error).__name__}: {error}; is it on PYTHONPATH (the working "
                        "directory counts)?") from None
    found: Any = module
    for part in name.split("."):
        found = getattr(found, part, _MISSING)
        if found is _MISSING:
            raise SpecError(f"{field}: module {module_name!r} has no {name!r}; it holds "
                            f"{_callables(module) or 'no functions or classes'}")
    return found


def _callables(module: types.ModuleType) -> str:
    names = sorted(n for n, v in vars(module).items()
                   if not n.startswith("_") and callable(v) and not isinstance(v, types.ModuleType)
                   and getattr(v, "__module__", None) == module.__name__)
    return ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")


def driver_import_path() -> str:
    """The driver's import path as PYTHONPATH, so custom algorithms and metrics given as
    ``package.module:name`` import in embedded workers exactly as they do in the driver."""
    entries = [str(Path(p).resolve()) for p in [os.getcwd(), *sys.path] if p and Path(p).is_dir()]
    return os.pathsep.join(dict.fromkeys(entries))
