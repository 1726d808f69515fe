"""Import paths of the pre-0.2 flat layout, for models pickled by it.

A registered model is a pickle that names its classes by module path (``dripml.tracking.
PyfuncModel``, ``dripml.model.TrainedModel``, ``dripml.features.TabularEncoder``...). Those
modules moved into subpackages in 0.2; this finder makes each old path an alias of the module
that now holds the classes, so models registered before the move still load and serve. It
aliases only the modules a pickle can name, and only on import of those exact names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

MOVED_MODULES: dict[str, str] = {
    "dripml.tracking": "dripml.productionize.pyfunc",
    "dripml.model": "dripml.core.model",
    "dripml.features": "dripml.core.features",
    "dripml.text": "dripml.core.text",
    "dripml.torch_mlp": "dripml.algorithms.torch_mlp",
    "dripml.transformer": "dripml.algorithms.transformer",
}
"""Old module path -> the module that now defines the classes pickles reference from it."""


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self._target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self._target)

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the target module executed when :meth:`create_module` imported it."""


class LegacyFinder(importlib.abc.MetaPathFinder):
    """Resolves the old module paths in :data:`MOVED_MODULES` to their new modules."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new))


def install() -> None:
    """Add the finder to ``sys.meta_path`` once (``import dripml`` calls this)."""
    if not any(isinstance(finder, LegacyFinder) for finder in sys.meta_path):
        sys.meta_path.append(LegacyFinder())
