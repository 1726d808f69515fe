"""The algorithm declaration and the registry that maps names to declarations.

One :class:`Algorithm` says everything dripml knows about an algorithm, in one place: its
key, its builder, the tasks it supports, its default search space, the hyperparameter names a
spec may set, the pip requirements of a model it fits, the module a worker imports before
building it, and its capabilities (adaptive batching when served, data-parallel training,
a pretrained model, text columns).

Declarations come from three places, looked up lazily (as Ray Tune's registry imports a
trainable only when it is asked for):

- built-ins, registered by the family modules (:mod:`dripml.algorithms.linear`, ``trees``,
  ``gbm``, ``neural``, ``text``), imported on the first lookup. Registering one imports
  scikit-learn only: torch, transformers, LightGBM and XGBoost are imported by the builders.
- the ``dripml.algorithms`` entry-point group: an installed distribution declares
  ``name = package.module:OBJECT`` where OBJECT is an :class:`Algorithm` (its ``name`` must be
  the entry point's) or a model class; it is loaded when that name is first looked up.
- custom code named in a spec as ``package.module:Class`` (see :func:`load_custom`), whose
  class may declare the same things as class attributes (see :func:`from_class`).

A key is registered once: :func:`register` of a taken key, or an entry point reusing one,
raises naming both declarations (as AutoGluon's model registry does).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import inspect
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from pydantic import TypeAdapter, ValidationError

from dripml.core import imports
from dripml.core.features import ColumnLayout
from dripml.core.model import Recipe
from dripml.core.spec import Dimension, Spec, Task
from dripml.errors import SpecError

CLASSIFICATION = frozenset({"binary", "multiclass"})
ALL_TASKS = frozenset({"binary", "multiclass", "regression"})

ENTRY_POINT_GROUP = "dripml.algorithms"
"""The entry-point group plugins register algorithms in."""

BUILTIN_MODULES = (
    "dripml.algorithms.linear",
    "dripml.algorithms.trees",
    "dripml.algorithms.gbm",
    "dripml.algorithms.neural",
    "dripml.algorithms.text",
)
"""The family modules that register the built-ins when imported (in listing order)."""

MANAGED_PARAMS: Mapping[str, str] = {
    "random_state": "search.seed",
    "seed": "search.seed",
    "n_jobs": "resources.cpus_per_trial",
    "num_threads": "resources.cpus_per_trial",
    "device": "resources.gpus_per_trial",
    "gpus": "resources.gpus_per_trial",
    "workers": "resources.workers_per_trial",
    "verbose": "dripml (quiet)",
    "verbosity": "dripml (quiet)",
    "categorical_features": "the data's column kinds",
    "categorical_feature": "the data's column kinds",
    "enable_categorical": "the data's column kinds",
    "feature_types": "the data's column kinds",
    "tree_method": "dripml (hist)",
}
"""Estimator arguments the built-ins set themselves, and what they are set from (named in
the error when a spec sets one)."""

Builder = Callable[["BuildContext", dict[str, Any]], Recipe]
"""Makes a fresh, unfitted :class:`~dripml.core.model.Recipe` from a context and params."""

ParamNames = Callable[[Task], Collection[str]]
"""The hyperparameter names valid for a task."""


@dataclass(frozen=True)
class BuildContext:
    """Everything but hyperparameters that shapes an estimator."""

    task: Task
    layout: ColumnLayout
    n_threads: int = 1
    gpus: float = 0
    seed: int = 0
    workers: int = 1
    """Training workers of a fine-tune (``resources.workers_per_trial``)."""

    @classmethod
    def for_spec(cls, spec: Spec, layout: ColumnLayout) -> BuildContext:
        """The context of ``spec``'s fits: its task, search seed and per-trial resources
        (``n_threads`` = ``cpus_per_trial`` rounded down, at least 1)."""
        resources = spec.resources
        return cls(task=spec.task, layout=layout, n_threads=max(1, int(resources.cpus_per_trial)),
                   gpus=resources.gpus_per_trial, seed=spec.search.seed,
                   workers=resources.workers_per_trial)


_SPACE = TypeAdapter(dict[str, Dimension])


def space(raw: Mapping[str, Any]) -> Mapping[str, Dimension]:
    """A search space from plain dicts (``{"C": {"type": "loguniform", ...}}``).

    Raises:
        pydantic.ValidationError: a dimension is malformed.
    """
    return _SPACE.validate_python(dict(raw))


@dataclass(frozen=True)
class Algorithm:
    """What one algorithm is.

    Attributes:
        name: the key a spec names it by (``algorithms[i].name``); no ``:`` (that marks an
            import path).
        builder: ``builder(ctx, params) -> Recipe``; imports heavy libraries itself.
        tasks: the tasks it supports (a subset of ``binary``, ``multiclass``, ``regression``).
        description: one line for ``drip algorithms``.
        default_space: tuned dimensions when the spec gives no params or search space (plain
            dicts are validated into dimensions).
        regression_space: the default space for ``regression`` where it differs (a model
            with other hyperparameters, e.g. Ridge's ``alpha`` instead of ``C``).
        hyperparameters: names a spec may set in ``params`` and ``search_space``: a
            collection, or a function of the task; None leaves them unchecked.
        requirements: pip distributions a fitted model needs at run time besides the
            scikit-learn stack (what MLflow logs and the serving image installs).
        system_packages: apt packages a requirement needs at run time that its wheel does
            not bundle, by requirement (``{"lightgbm": ("libgomp1",)}``).
        dependency_module: the module a worker imports before building it (warm-up); None
            if scikit-learn is all.
        batches: served with adaptive batching by default (``batching: auto``).
        distributed: trains data-parallel with Ray Train's TorchTrainer when
            ``resources.workers_per_trial > 1``.
        needs_pretrained: reads a pretrained transformers model (``pretrained``).
        needs_text: needs a text column.
        low_cost: the cheapest sensible values of the dimensions that drive its fit time
            (trees, leaves, depth; FLAML's low-cost initial point): the cost-aware search
            starts the family there and grows those dimensions only while quality pays
            (:mod:`dripml.discover.planner`).
        scaled_space: ``scaled_space(n_rows)`` gives dimensions that replace the default
            space's for ``n_rows`` training rows (sizes of trees and ensembles scaled to the
            data); ``space_notes`` says how, for ``drip algorithms``.
        origin: who declared it (a module, or an entry point), named in duplicate-key
            errors; :func:`register` fills it from the builder's module when empty.
    """

    name: str
    builder: Builder
    tasks: frozenset[str] = ALL_TASKS
    description: str = ""
    default_space: Mapping[str, Dimension] = field(default_factory=dict)
    regression_space: Mapping[str, Dimension] | None = None
    hyperparameters: ParamNames | Collection[str] | None = None
    requirements: tuple[str, ...] = ()
    system_packages: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dependency_module: str | None = None
    batches: bool = False
    distributed: bool = False
    needs_pretrained: bool = False
    needs_text: bool = False
    low_cost: Mapping[str, Any] = field(default_factory=dict)
    scaled_space: Callable[[int], Mapping[str, Any]] | None = None
    space_notes: str = ""
    origin: str = ""

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__ so plugin authors may pass plain
        # sets, lists and dicts.
        if not self.name or ":" in self.name:
            raise SpecError(f"algorithm name {self.name!r} must be non-empty and without ':'")
        tasks = frozenset(self.tasks)
        if not tasks or not tasks <= ALL_TASKS:
            raise SpecError(f"algorithm {self.name!r}: tasks must be a non-empty subset of "
                            f"{sorted(ALL_TASKS)}, got {sorted(tasks)}")
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "requirements", tuple(self.requirements))
        try:
            object.__setattr__(self, "default_space", space(self.default_space))
            if self.regression_space is not None:
                object.__setattr__(self, "regression_space", space(self.regression_space))
        except ValidationError as error:
            raise SpecError(f"algorithm {self.name!r} declares a bad search space: "
                            f"{error}") from None
        unknown = set(self.system_packages) - set(self.requirements)
        if unknown:
            raise SpecError(f"algorithm {self.name!r}: system_packages are keyed by its "
                            f"requirements, {sorted(unknown)} is not one")
        object.__setattr__(self, "system_packages",
                           {k: tuple(v) for k, v in self.system_packages.items()})

    def space_for(self, task: Task, n_rows: int | None = None) -> Mapping[str, Dimension]:
        """The default search space for ``task``, its sizes scaled to ``n_rows`` training
        rows when given (see ``scaled_space``)."""
        base = (self.regression_space if task == "regression" and self.regression_space
                is not None else self.default_space)
        if n_rows is None or self.scaled_space is None:
            return base
        scaled = space(self.scaled_space(n_rows))
        return {**base, **{k: v for k, v in scaled.items() if k in base}}

    def param_names(self, task: Task) -> frozenset[str] | None:
        """The hyperparameter names valid for ``task``; None when unchecked."""
        if self.hyperparameters is None:
            return None
        if callable(self.hyperparameters):
            return frozenset(self.hyperparameters(task))
        return frozenset(self.hyperparameters)


def clamp(value: float, low: int, high: int) -> int:
    """``value`` rounded down into [low, high]: a size bound scaled to the rows."""
    return int(min(high, max(low, value)))


@functools.cache
def estimator_params(cls: type, exclude: frozenset[str] = frozenset()) -> frozenset[str]:
    """Hyperparameter names of a scikit-learn estimator class: ``get_params()`` of a default
    instance, less ``exclude`` (the arguments the builder sets itself)."""
    return frozenset(cls().get_params(deep=False)) - exclude


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------

_REGISTRY: dict[str, Algorithm] = {}
_LOCK = threading.RLock()
_builtins_state = "unloaded"  # "loading" while the family modules import, then "loaded"
_entry_points: dict[str, metadata.EntryPoint] | None = None


def register(algorithm: Algorithm) -> Algorithm:
    """Add ``algorithm`` under its name; returns it (with ``origin`` filled in).

    Raises:
        SpecError: the name is taken; the message names both declarations.
    """
    if not algorithm.origin:
        origin = getattr(algorithm.builder, "__module__", None) or "<unknown>"
        algorithm = dataclasses.replace(algorithm, origin=origin)
    with _LOCK:
        _load_builtins()
        _add(algorithm)
    return algorithm


def unregister(name: str) -> None:
    """Remove a registered algorithm (a no-op for an unknown name)."""
    with _LOCK:
        _REGISTRY.pop(name, None)


def _add(algorithm: Algorithm) -> None:
    existing = _REGISTRY.get(algorithm.name)
    if existing is not None:
        raise SpecError(f"algorithm {algorithm.name!r} is declared twice: by "
                        f"{existing.origin} and by {algorithm.origin}; rename one")
    planned = _entry_points.get(algorithm.name) if _entry_points is not None else None
    if planned is not None and not _same_source(planned, algorithm):
        raise SpecError(f"algorithm {algorithm.name!r} is declared twice: by "
                        f"{_entry_point_origin(planned)} and by {algorithm.origin}; rename one")
    _REGISTRY[algorithm.name] = algorithm


def _same_source(entry_point: metadata.EntryPoint, algorithm: Algorithm) -> bool:
    # The entry point's own declaration, or its module registering itself when imported.
    return algorithm.origin in (_entry_point_origin(entry_point), entry_point.module)


def _load_builtins() -> None:
    """Import the family modules once; each registers its built-ins."""
    global _builtins_state
    with _LOCK:
        if _builtins_state != "unloaded":
            return  # loaded, or loading (a family module's register() lands here)
        _builtins_state = "loading"
        try:
            for module in BUILTIN_MODULES:
                importlib.import_module(module)
        except BaseException:
            _builtins_state = "unloaded"
            raise
        _builtins_state = "loaded"


def _entry_point_origin(entry_point: metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    package = f" of {dist.name}" if dist is not None else ""
    return f"entry point {entry_point.name} = {entry_point.value}{package}"


def _discover() -> dict[str, metadata.EntryPoint]:
    """The ``dripml.algorithms`` entry points by name, read once per process (nothing is
    imported); an entry point naming a registered key, or two naming one key, raise."""
    global _entry_points
    with _LOCK:
        _load_builtins()
        if _entry_points is not None:
            return _entry_points
        found: dict[str, metadata.EntryPoint] = {}
        for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
            other = found.get(entry_point.name)
            if other is not None and other.value != entry_point.value:
                raise SpecError(f"algorithm {entry_point.name!r} is declared twice: by "
                                f"{_entry_point_origin(other)} and by "
                                f"{_entry_point_origin(entry_point)}; uninstall one")
            registered = _REGISTRY.get(entry_point.name)
            if registered is not None and not _same_source(entry_point, registered):
                raise SpecError(f"algorithm {entry_point.name!r} is declared twice: by "
                                f"{registered.origin} and by {_entry_point_origin(entry_point)}; "
                                "uninstall or rename the plugin")
            found[entry_point.name] = entry_point
        _entry_points = found
        return found


def refresh_entry_points() -> None:
    """Forget the entry points read so far (and the algorithms loaded from them), so the next
    lookup reads them again: after installing a plugin into a running process."""
    global _entry_points
    with _LOCK:
        if _entry_points is not None:
            for name, entry_point in _entry_points.items():
                registered = _REGISTRY.get(name)
                if registered is not None and registered.origin == _entry_point_origin(
                        entry_point):
                    del _REGISTRY[name]
        _entry_points = None


def _load_entry_point(entry_point: metadata.EntryPoint) -> Algorithm:
    origin = _entry_point_origin(entry_point)
    try:
        loaded = entry_point.load()
    except Exception as error:  # a plugin's import can fail in any way
        raise SpecError(f"algorithm {entry_point.name!r} ({origin}) does not load: "
                        f"{type(error).__name__}: {error}") from None
    if isinstance(loaded, Algorithm):
        if loaded.name != entry_point.name:
            raise SpecError(f"{origin} declares algorithm {loaded.name!r}; the entry point "
                            f"must be named after it")
        algorithm = dataclasses.replace(loaded, origin=origin)
    elif isinstance(loaded, type):
        check_model_class(loaded, origin)
        algorithm = from_class(loaded, name=entry_point.name, origin=origin,
                               module=entry_point.module)
    else:
        raise SpecError(f"{origin} loads a {type(loaded).__name__}; it must be a "
                        "dripml.algorithms.registry.Algorithm or a model class")
    # The plugin module may register its declaration itself when imported: keep that one.
    registered = _REGISTRY.get(entry_point.name)
    if registered is not None and registered.builder is algorithm.builder:
        return registered
    _add(algorithm)
    return algorithm


def find(name: str) -> Algorithm | None:
    """The declaration of ``name`` (a key or ``package.module:Class``), or None when there
    is none or its code does not import."""
    try:
        return get(name)
    except SpecError:
        return None


def get(name: str) -> Algorithm:
    """The declaration of ``name``: a built-in or registered key, an entry point (loaded
    now), or ``package.module:Class`` (imported now, see :func:`from_class`).

    Raises:
        SpecError: an unknown name (listing the known ones, with the closest), or custom
            code that does not import or declares something invalid.
    """
    if ":" in name:
        return from_class(load_custom(name), name=name, origin=f"custom algorithm {name!r}")
    with _LOCK:
        # Listing the entry points (about 10 ms, once per process) on every first lookup
        # makes a plugin reusing a key fail whichever name is asked for.
        entry_point = _discover().get(name)
        algorithm = _REGISTRY.get(name)
        if algorithm is not None:
            return algorithm
        if entry_point is not None:
            return _load_entry_point(entry_point)
    known = names()
    builtin = [n for n in known if is_builtin(n)]
    others = [n for n in known if not is_builtin(n)]
    close = difflib.get_close_matches(name, known, n=1)
    raise SpecError(
        f"unknown algorithm {name!r}; built-ins: {builtin}"
        + (f", installed: {others}" if others else "")
        + ", or custom code as 'package.module:Class'"
        + (f" (did you mean {close[0]!r}?)" if close else ""))


def names() -> list[str]:
    """Every registered key, then entry points not loaded yet (nothing is imported)."""
    with _LOCK:
        entry_points = _discover()
        return [*_REGISTRY, *(n for n in entry_points if n not in _REGISTRY)]


def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of dripml's own algorithms."""
    with _LOCK:
        _load_builtins()
        algorithm = _REGISTRY.get(name)
    return algorithm is not None and algorithm.origin in BUILTIN_MODULES


def declarations() -> dict[str, Algorithm]:
    """Every declaration registered so far (built-ins, :func:`register` calls, entry points
    already loaded) by name; loads no entry point (a copy)."""
    with _LOCK:
        _discover()
        return dict(_REGISTRY)


def builtins() -> dict[str, Algorithm]:
    """dripml's own algorithms by name, in listing order (a copy)."""
    with _LOCK:
        _load_builtins()
        return {n: a for n, a in _REGISTRY.items() if a.origin in BUILTIN_MODULES}


# ---------------------------------------------------------------------------------------
# Custom model classes
# ---------------------------------------------------------------------------------------


def load_custom(path: str) -> type:
    """Import ``package.module:Class``.

    Raises:
        SpecError: the module or attribute does not import, or lacks fit/predict.
    """
    cls = imports.import_object(path, field=f"custom algorithm {path!r}")
    check_model_class(cls, f"custom algorithm {path!r}")
    return cls


def check_model_class(cls: Any, label: str) -> None:
    """Raises SpecError unless ``cls`` has callable ``fit`` and ``predict``."""
    missing = [m for m in ("fit", "predict") if not callable(getattr(cls, m, None))]
    if missing:
        raise SpecError(f"{label} lacks {missing}; see dripml.algorithms.registry")


@dataclass(frozen=True)
class ClassBuilder:
    """The builder of a custom model class: ``cls(**params)`` on the feature DataFrame."""

    cls: type

    def __call__(self, ctx: BuildContext, params: dict[str, Any]) -> Recipe:
        return Recipe(self.cls(**params), input_kind="frame")


def from_class(cls: type, *, name: str, origin: str, module: str | None = None) -> Algorithm:
    """The declaration of a custom model class, from its optional class attributes.

    ``tasks`` (default: all), ``search_space`` and ``regression_search_space`` (default
    space, plain dicts; default none), ``hyperparameters`` (default: the constructor's
    keyword names, unchecked if it takes ``**kwargs``), ``requirements``,
    ``system_packages``, ``batches``, ``needs_text``, ``low_cost`` and ``description`` (default: the
    docstring's first line). Building calls ``cls(**params)`` on the feature DataFrame.

    Args:
        name: the key (an entry point's name), or the ``package.module:Class`` path; a
            path declares under the class name (a key holds no ``:``).
        origin: who declared it, for error messages.
        module: what a worker imports first (default: the path's module, else the class's).

    Raises:
        SpecError: an attribute is invalid, naming the class and the attribute.
    """
    doc = inspect.getdoc(cls) or ""
    declared: dict[str, Any] = {
        "tasks": getattr(cls, "tasks", ALL_TASKS),
        "description": getattr(cls, "description", doc.split("\n", 1)[0]),
        "default_space": getattr(cls, "search_space", None) or {},
        "regression_space": getattr(cls, "regression_search_space", None),
        "hyperparameters": getattr(cls, "hyperparameters", None) or _signature_params(cls),
        "requirements": getattr(cls, "requirements", ()),
        "system_packages": getattr(cls, "system_packages", None) or {},
        "batches": getattr(cls, "batches", False),
        "needs_text": getattr(cls, "needs_text", False),
        "low_cost": getattr(cls, "low_cost", None) or {},
    }
    for attribute in ("tasks", "hyperparameters", "requirements"):
        value = declared[attribute]
        if value is not None and (isinstance(value, str) or not isinstance(value, Iterable)):
            raise SpecError(f"{origin}: class attribute {attribute!r} must be a collection of "
                            f"names, got {value!r}")
    for attribute in ("batches", "needs_text"):
        if not isinstance(declared[attribute], bool):
            raise SpecError(f"{origin}: class attribute {attribute!r} must be true or false, "
                            f"got {declared[attribute]!r}")
    if declared["hyperparameters"] is not None:
        declared["hyperparameters"] = frozenset(declared["hyperparameters"])
    path_module, colon, _ = name.partition(":")
    try:
        return Algorithm(name=cls.__name__ if colon else name, builder=ClassBuilder(cls),
                         dependency_module=module or (path_module if colon else cls.__module__),
                         origin=origin, **declared)
    except (TypeError, ValueError) as error:  # e.g. a search_space that is no mapping
        raise SpecError(f"{origin}: its class attributes do not declare an algorithm: "
                        f"{error}") from None


def _signature_params(cls: type) -> frozenset[str] | None:
    """The constructor's keyword names; None when it takes ``**kwargs`` or has no signature."""
    try:
        parameters = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters
                     if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                   inspect.Parameter.KEYWORD_ONLY))


# ---------------------------------------------------------------------------------------
# Hyperparameter names
# ---------------------------------------------------------------------------------------


def unknown_param_error(algorithm: Algorithm, name: str, valid: Collection[str],
                        path: str) -> SpecError:
    """The error for hyperparameter ``name`` (at field ``path``) that ``algorithm`` lacks:
    what sets it when dripml does, else the closest valid name and every valid one."""
    if name in MANAGED_PARAMS:
        # A near name would be another argument, not what the user meant.
        reason, close = f"is set by dripml from {MANAGED_PARAMS[name]}", []
    else:
        reason = f"is not a hyperparameter of {algorithm.name}"
        close = difflib.get_close_matches(name, list(valid), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "."
    return SpecError(f"{path}: {name!r} {reason}{hint} Valid names: "
                     f"{', '.join(sorted(valid))}")
