"""Algorithms: one registry of what each model family is, and one module per family.

See :mod:`dripml.algorithms.registry` for the public functions (lookup, check, build).

Models pickled by the pre-0.2 layout name ``dripml.algorithms.Recipe``, ``as_float`` and
``_text_only`` (the old flat module); :data:`LEGACY_NAMES` resolves those on first access, so
importing this package stays cheap (no scikit-learn, no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

LEGACY_NAMES: dict[str, str] = {
    "Recipe": "dripml.core.model",
    "as_float": "dripml.algorithms.preprocessing",
    "_text_only": "dripml.algorithms.preprocessing",
}
"""Attribute a pre-0.2 pickle reads from ``dripml.algorithms`` -> module now defining it."""


def __getattr__(name: str) -> Any:
    if name not in LEGACY_NAMES:
        raise AttributeError(f"module 'dripml.algorithms' has no attribute {name!r}")
    return getattr(importlib.import_module(LEGACY_NAMES[name]), name)
