"""Algorithms: built-ins by name, plugins by entry point, custom code by import path.

This is the module the rest of dripml calls: :func:`check` (at spec time), :func:`search_space`,
:func:`build` (in the workers), and what a declaration says about an algorithm
(:func:`dependency_module`, :func:`requirements`, :func:`system_packages`, :func:`batches`,
:func:`distributed`). Declarations and the registry itself are in :mod:`dripml.algorithms.base`;
the built-ins in the family modules (``linear``, ``trees``, ``gbm``, ``neural``, ``text``).

A built-in turns (task, column layout, hyperparameters, threads) into a
:class:`~dripml.core.model.Recipe`: an optional scikit-learn preprocessor over the encoded
matrix (see :mod:`dripml.core.features`), an estimator with the scikit-learn API, and the
keyword arguments its ``fit`` needs.

Custom models (``package.module:Class`` in the spec, or a class behind a ``dripml.algorithms``
entry point) implement this interface::

    class MyModel:
        # all optional, see dripml.algorithms.base.from_class:
        tasks = ("binary", "multiclass")
        search_space = {"alpha": {"type": "loguniform", "low": 1e-3, "high": 1.0}}
        requirements = ("mypkg",)          # pip distributions the fitted model needs
        batches = False                    # adaptive batching when served

        def __init__(self, **params): ...            # hyperparameters from params/search_space
        def fit(self, X: pandas.DataFrame, y: numpy.ndarray) -> "MyModel": ...
        def predict(self, X: pandas.DataFrame) -> numpy.ndarray: ...
        # classification only, optional but needed for roc_auc, log_loss, coverage:
        def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray: ...  # (n, K)

``X`` holds the feature columns with their original values; ``y`` holds class codes 0..K-1
(classification) or floats (regression); ``predict`` returns the same kind. The class must be
importable where the model is served, and picklable with cloudpickle.

Importing this module imports neither torch, transformers, LightGBM nor XGBoost; building
an algorithm imports what it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dripml.algorithms.base import (
    ALL_TASKS,
    CLASSIFICATION,
    ENTRY_POINT_GROUP,
    Algorithm,
    BuildContext,
    builtins,
    declarations,
    find,
    from_class,
    get,
    is_builtin,
    load_custom,
    names,
    refresh_entry_points,
    register,
    unknown_param_error,
    unregister,
)
from dripml.algorithms.preprocessing import BUILTIN_ENCODINGS, LINEAR_INPUT, TREE_INPUT, as_float
from dripml.algorithms.preprocessing import _text_only as _text_only
from dripml.core.features import ColumnLayout
from dripml.core.model import Recipe, TrainedModel
from dripml.core.spec import AlgorithmSpec, Dimension, Scalar, Task
from dripml.errors import SpecError

__all__ = [
    "ALL_TASKS",
    "CLASSIFICATION",
    "ENTRY_POINT_GROUP",
    "LINEAR_INPUT",
    "TREE_INPUT",
    "Algorithm",
    "BuildContext",
    "Recipe",
    "as_float",
    "batches",
    "build",
    "builtins",
    "check",
    "declarations",
    "dependency_module",
    "distributed",
    "encoding_summary",
    "find",
    "for_model",
    "get",
    "is_builtin",
    "load_custom",
    "low_cost",
    "names",
    "refresh_entry_points",
    "register",
    "requirements",
    "search_space",
    "system_packages",
    "unregister",
]

# `as_float` and `_text_only` are imported above for the legacy alias of the old flat module:
# fitted models pickled before the package split reference `dripml.algorithms.as_float` and
# `dripml.algorithms._text_only`; new ones `dripml.algorithms.preprocessing.<name>`.


def __getattr__(name: str) -> Any:
    # Derived from the registry on first use, so importing this module imports no family
    # module (PEP 562).
    if name == "BUILTINS":
        return builtins()
    if name == "PRETRAINED_ALGORITHMS":
        return frozenset(n for n, a in builtins().items() if a.needs_pretrained)
    if name == "DEFAULT_PRETRAINED":
        from dripml.algorithms.text import DEFAULT_PRETRAINED

        return DEFAULT_PRETRAINED
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def search_space(spec: AlgorithmSpec, task: Task,
                 n_rows: int | None = None) -> Mapping[str, Dimension]:
    """The algorithm's tuned dimensions: the spec's, else the declared default (its sizes
    scaled to ``n_rows`` training rows when given), else none.

    Raises:
        SpecError: an unknown algorithm (see :func:`get`).
    """
    if spec.search_space is not None:
        return spec.search_space
    # `pretrained` names a model, not a hyperparameter: the default space still applies.
    if set(spec.params) - {"pretrained"}:
        return {}
    return get(spec.name).space_for(task, n_rows)


def check(spec: AlgorithmSpec, task: Task, layout: ColumnLayout | None = None, *,
          where: str | None = None) -> None:
    """Fail early on an unknown name, a task mismatch, a text algorithm without text, a
    missing pretrained model, custom code that does not import, or a hyperparameter name in
    ``params`` or ``search_space`` that the algorithm does not take.

    Args:
        where: the spec field of this algorithm, for messages (``algorithms[1]``);
            default ``algorithms[NAME]``.

    Raises:
        SpecError: naming the field and the valid choices (for a hyperparameter, the field
            path such as ``algorithms[1].search_space.num_leafs``, the closest valid name and
            every valid one).
    """
    where = where or f"algorithms[{spec.name}]"
    algorithm = get(spec.name)
    if task not in algorithm.tasks:
        valid = [n for n, a in declarations().items() if task in a.tasks]
        raise SpecError(f"algorithm {spec.name!r} does not support task {task!r}; "
                        f"for {task} use one of {valid}")
    if layout is not None and algorithm.needs_text and not layout.text:
        raise SpecError(f"algorithm {spec.name!r} needs a text column; name one in "
                        "data.text_columns")
    if algorithm.needs_pretrained:
        from dripml.algorithms.text import DEFAULT_PRETRAINED
        from dripml.core.text import PretrainedModelError, resolve_pretrained

        location = str(spec.params.get("pretrained", DEFAULT_PRETRAINED))
        try:
            resolve_pretrained(location)
        except PretrainedModelError as error:
            raise SpecError(f"{where}.pretrained: {error}") from None
    _check_hyperparameters(algorithm, spec, task, where)


def _check_hyperparameters(algorithm: Algorithm, spec: AlgorithmSpec, task: Task,
                           where: str) -> None:
    valid = algorithm.param_names(task)
    if valid is None:
        return
    for name in spec.params:
        if name in valid:
            continue
        if name == "pretrained" and spec.pretrained is not None:
            users = sorted(n for n, a in builtins().items() if a.needs_pretrained)
            raise SpecError(f"{where}.pretrained: {spec.name} takes no pretrained model; "
                            f"only {users} do")
        raise unknown_param_error(algorithm, name, valid, f"{where}.params.{name}")
    tuned = search_space(spec, task)
    for name in tuned:
        if name not in valid:
            path = f"{where}.search_space.{name}"
            if spec.search_space is None:
                path += f" (the default space of {spec.name})"
            raise unknown_param_error(algorithm, name, valid, path)


def for_model(model: TrainedModel) -> Algorithm | None:
    """The declaration behind a fitted model: its algorithm key's, else its estimator
    class's (custom code named by import path is recorded under its class name, which is
    no key); None when neither declares anything valid.

    Args:
        model: a :class:`~dripml.core.model.TrainedModel`; only ``algorithm`` is read when it
            names a registered algorithm, else ``fitted.recipe.estimator`` too.
    """
    found = find(model.algorithm) if model.algorithm else None
    if found is not None:
        return found
    cls = type(model.fitted.recipe.estimator)
    try:
        return from_class(cls, name=cls.__name__, origin=f"class {cls.__qualname__}")
    except SpecError:
        return None


def low_cost(spec: AlgorithmSpec) -> dict[str, Any]:
    """The declared low-cost point of ``spec``'s algorithm, less what the spec fixes
    ({} for custom code without one)."""
    return {k: v for k, v in get(spec.name).low_cost.items() if k not in spec.params}


def encoding_summary(name: str, ctx: BuildContext) -> str:
    """How built-in ``name`` encodes the categorical and datetime columns of ``ctx.layout``,
    e.g. ``"one-hot: origin, carrier; target: tailnum, dest; datetime parts: time_hour"``
    (at default hyperparameters). "" when there are no such columns, for algorithms that
    read text only, and for plugins and custom code (their encoding is their own)."""
    encoding = BUILTIN_ENCODINGS.get(name) if is_builtin(name) else None
    return encoding.describe(ctx.layout) if encoding is not None else ""


def dependency_module(name: str) -> str | None:
    """The heavy module an algorithm imports when built (None if only scikit-learn, or an
    unknown name)."""
    if ":" in name:
        return name.partition(":")[0]
    algorithm = find(name)
    return algorithm.dependency_module if algorithm is not None else None


def requirements(name: str) -> tuple[str, ...]:
    """Pip distributions a model of algorithm ``name`` needs besides the scikit-learn stack
    (() for an unknown name)."""
    algorithm = find(name)
    return algorithm.requirements if algorithm is not None else ()


def system_packages() -> dict[str, tuple[str, ...]]:
    """apt packages by pip requirement, merged over the declarations registered so far:
    ``{"lightgbm": ("libgomp1",)}`` (whatever the algorithm, a model needing LightGBM needs
    them)."""
    merged: dict[str, set[str]] = {}
    for algorithm in declarations().values():
        for requirement, needs in algorithm.system_packages.items():
            merged.setdefault(requirement, set()).update(needs)
    return {requirement: tuple(sorted(needs)) for requirement, needs in merged.items()}


def batches(name: str) -> bool:
    """Whether algorithm ``name`` is served with adaptive batching by default (False for an
    unknown name)."""
    algorithm = find(name)
    return algorithm is not None and algorithm.batches


def distributed(name: str | None) -> bool:
    """Whether algorithm ``name`` trains data-parallel (Ray Train) when a trial has several
    workers (False for None or an unknown name)."""
    algorithm = find(name) if name is not None else None
    return algorithm is not None and algorithm.distributed


def build(spec_name: str, ctx: BuildContext, params: Mapping[str, Scalar]) -> Recipe:
    """A fresh, unfitted recipe for one configuration.

    Raises:
        SpecError: an unknown algorithm (see :func:`get`).
    """
    return get(spec_name).builder(ctx, dict(params))
