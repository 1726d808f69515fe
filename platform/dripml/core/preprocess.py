"""Custom pre- and postprocessing: user pandas code named in the spec.

``data.preprocess: package.module:name`` runs before dripml's encoder, on training, test,
fold and request rows alike. ``name`` is either

- a function ``DataFrame -> DataFrame`` (stateless), or
- a class following :class:`FittedTransform`: instantiated with no arguments, ``fit(df)``
  on the training rows only (it returns itself), then ``transform(df) -> DataFrame`` on
  every row set unchanged (the test split, folds, requests): scikit-learn's transformer
  idea, for state such as vocabularies or means.

It gets the RAW feature columns (``data.features``, default every column but the label;
never the label) and returns the columns dripml's encoder reads; ``data.column_types`` and
``data.text_columns`` name those returned columns.

``postprocess: package.module:name`` is a function ``DataFrame -> DataFrame`` called with
the predictions (``prediction`` and, for classification, ``probability_<class>`` columns,
one row per record); the columns it returns (``decision``...) are added to each record's
response.

Both run through :mod:`dripml.frame` (``call`` on frames, ``call_records`` on a request's
records), so write them with the pandas API that module documents. Their code travels with
the fitted model: :class:`Preprocessor` and :class:`Postprocessor` pickle the user's module by
value (cloudpickle), so the server needs no copy of it, only the packages it imports
(:attr:`Preprocessor.requirements`, added to the model's pip requirements). This code runs
in training and in the endpoint (see ``SECURITY.md``).
"""

from __future__ import annotations

import inspect
import math
import sys
import threading
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from dripml import frame
from dripml.core import imports
from dripml.core.features import Feature, Kind, infer_kinds
from dripml.errors import DataError, SpecError

MAX_SCHEMA_CATEGORIES = 1_000
"""Most frequent raw categories a raw input column keeps for the request schema's text."""


RowsTransform = Callable[["Preprocessor", pd.DataFrame, str], pd.DataFrame]
"""How a fitted step runs over a whole split, ``(step, rows, source) -> rows``: the same as
:meth:`Preprocessor.transform_frame` (same columns, rows in order, errors naming ``source``),
in this process (:func:`in_process`) or on Ray Data
(:func:`dripml.orchestration.frame_ray.transform_rows`, ``data.engine: ray``)."""


def in_process(step: Preprocessor, rows: pd.DataFrame, source: str) -> pd.DataFrame:
    """:data:`RowsTransform` in this process: ``step.transform_frame(rows)``."""
    return step.transform_frame(rows, source=source)


@runtime_checkable
class FittedTransform(Protocol):
    """A stateful preprocessing step: ``cls()`` then ``fit`` on the training rows (a
    DataFrame of the raw feature columns; returns the fitted object), then ``transform`` on
    any rows (a DataFrame with the same columns; returns a DataFrame of as many rows, in
    order)."""

    def fit(self, df: pd.DataFrame) -> Any: ...

    def transform(self, df: pd.DataFrame) -> pd.DataFrame: ...


# ---------------------------------------------------------------------------------------
# Loading a reference
# ---------------------------------------------------------------------------------------


def load_step(path: str, *, field: str = "data.preprocess") -> Any:
    """The preprocessing step ``path`` names: a function, or a class with callable ``fit``
    and ``transform`` (see :class:`FittedTransform`).

    Raises:
        SpecError: as :func:`~dripml.core.imports.import_object`, or the object is neither
            (the message says what it is).
    """
    step = imports.import_object(path, field=field)
    if inspect.isclass(step):
        missing = [m for m in ("fit", "transform") if not callable(getattr(step, m, None))]
        if missing:
            raise SpecError(f"{field}: class {path!r} lacks {missing}; a preprocessing class "
                            "needs fit(df) -> self and transform(df) -> DataFrame")
        return step
    if not callable(step):
        raise SpecError(f"{field}: {path!r} is a {type(step).__name__}, not a function "
                        "DataFrame -> DataFrame or a class with fit/transform")
    return step


def load_postprocess(path: str | None, *, field: str = "postprocess") -> Postprocessor | None:
    """The :class:`Postprocessor` of ``path`` (None for None).

    Raises:
        SpecError: as :func:`~dripml.core.imports.import_object`, or the object is not a function.
    """
    if path is None:
        return None
    function = imports.import_object(path, field=field)
    if inspect.isclass(function) or not callable(function):
        raise SpecError(f"{field}: {path!r} is a {type(function).__name__}, not a function "
                        "DataFrame -> DataFrame")
    return Postprocessor(path, function)


# ---------------------------------------------------------------------------------------
# By-value pickling and requirements
# ---------------------------------------------------------------------------------------


_PICKLE_LOCK = threading.Lock()


def _dumps_by_value(obj: Any) -> bytes:
    """``obj`` pickled with cloudpickle, its defining module's code embedded (by value), so
    it loads where that module cannot be imported. What the module imports stays by
    reference (numpy, pandas...): it must be installed where the model loads."""
    import cloudpickle

    module = sys.modules.get(_module_name(obj) or "")
    if module is None or module.__name__ in ("__main__", "builtins"):
        return cloudpickle.dumps(obj)  # __main__ is pickled by value anyway
    with _PICKLE_LOCK:  # the registry is global: no other thread's pickle sees our entry
        ours = module.__name__ not in cloudpickle.list_registry_pickle_by_value()
        if ours:
            cloudpickle.register_pickle_by_value(module)
        try:
            return cloudpickle.dumps(obj)
        finally:
            if ours:
                cloudpickle.unregister_pickle_by_value(module)


def _loads(payload: bytes) -> Any:
    import cloudpickle

    return cloudpickle.loads(payload)


def _module_name(obj: Any) -> str | None:
    owner = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    return getattr(owner, "__module__", None)


def module_requirements(obj: Any) -> tuple[str, ...]:
    """Distributions (pip names) of the packages the module defining ``obj`` imports at its
    top level (``import x``, ``from x import y``), without the standard library, dripml and
    the module's own package: what the module needs installed where the model is served.
    Sorted; () when the module is not loaded."""
    from importlib import metadata

    name = _module_name(obj)
    module = sys.modules.get(name or "")
    if module is None:
        return ()
    own = module.__name__.split(".")[0]
    tops = set()
    for value in vars(module).values():
        imported = value.__name__ if isinstance(value, types.ModuleType) else (
            getattr(value, "__module__", None)
            if inspect.isclass(value) or inspect.isroutine(value) else None)
        if isinstance(imported, str) and imported:
            tops.add(imported.split(".")[0])
    skipped = {own, "dripml", "builtins", "__main__", *sys.stdlib_module_names}
    by_package = metadata.packages_distributions()
    found = {dist for top in tops - skipped for dist in by_package.get(top, ())}
    return tuple(sorted(found, key=str.lower))


# ---------------------------------------------------------------------------------------
# The fitted objects
# ---------------------------------------------------------------------------------------


class Preprocessor:
    """``data.preprocess`` fitted on the training rows: raw feature columns in, the
    encoder's input columns out.

    Attributes:
        path: the spec's ``package.module:name``.
        input_features: the raw input columns (names, kinds and, for categoricals, the
            training levels, most frequent first), in order: the endpoint's request schema.
        output_columns: the columns the step returned on the training rows.
        requirements: pip distributions the step's module imports (see
            :func:`module_requirements`).
        stateful: the step is a fitted class instance (else a function).
    """

    def __init__(self, path: str, step: Any, input_features: tuple[Feature, ...],
                 output_columns: tuple[str, ...], requirements: tuple[str, ...], *,
                 stateful: bool) -> None:
        self.path = path
        self._step = step  # a function, or a fitted FittedTransform instance (stateful)
        self.stateful = stateful
        self.input_features = input_features
        self.output_columns = output_columns
        self.requirements = requirements

    @classmethod
    def fit(cls, path: str, rows: pd.DataFrame, *, source: str,
            kinds: Mapping[str, Kind] | None = None,
            transform: RowsTransform | None = None) -> tuple[Preprocessor, pd.DataFrame]:
        """Load ``path``, fit it on ``rows`` (raw feature columns of the training rows) when
        it is a class, and transform them.

        Args:
            source: where the rows come from, as errors name it (the quoted file name).
            kinds: declared kinds of raw columns (others are inferred) for the request schema.
            transform: how the fitted step runs over ``rows`` (default :func:`in_process`;
                ``data.engine: ray`` passes Ray Data's).

        Returns:
            The fitted preprocessor and the transformed training rows (the index of ``rows``).

        Raises:
            SpecError: ``path`` does not load (see :func:`load_step`).
            DataError: the step raised, or returned no DataFrame or another row count (the
                message names the step and ``source``).
        """
        loaded = load_step(path)
        step = loaded
        if inspect.isclass(loaded):
            try:
                step = loaded()
                fitted = step.fit(rows.copy())
            except Exception as error:
                raise DataError(f"data.preprocess {path!r}: fit on {source} failed: "
                                f"{type(error).__name__}: {error}") from error
            step = fitted if fitted is not None else step
            if not callable(getattr(step, "transform", None)):
                raise DataError(f"data.preprocess {path!r}: fit returned a "
                                f"{type(step).__name__} without transform; return self")
        features = _input_features(rows, kinds or {})
        fitted_step = cls(path, step, features, (), module_requirements(loaded),
                          stateful=inspect.isclass(loaded))
        out = (transform or in_process)(fitted_step, rows, source)
        fitted_step.output_columns = tuple(map(str, out.columns))
        return fitted_step, out

    @property
    def input_names(self) -> list[str]:
        """The raw input column names, in order."""
        return [f.name for f in self.input_features]

    def _function(self) -> Callable[[Any], Any]:
        return self._step.transform if self.stateful else self._step

    def transform_frame(self, rows: pd.DataFrame, *, source: str = "the rows") -> pd.DataFrame:
        """Apply the step to a DataFrame holding the raw input columns (others are left out):
        a DataFrame of the encoder's input columns, same rows and index.

        Raises:
            DataError: a raw input column is missing, the step raised, or it returned no
                DataFrame or another row count (naming the step and ``source``).
        """
        missing = [n for n in self.input_names if n not in rows.columns]
        if missing:
            raise DataError(f"data.preprocess {self.path!r} reads columns {missing}, missing "
                            f"from {source}; columns found: {list(rows.columns)[:20]}")
        raw = _numbers_as_floats(rows[self.input_names], self._numeric_names())
        try:
            out = frame.call(self._function(), raw)
        except Exception as error:  # user code: any failure, or no DataFrame returned
            raise self._failed(error, source) from error
        if len(out) != len(raw):
            raise DataError(f"data.preprocess {self.path!r} returned {len(out)} rows for the "
                            f"{len(raw)} of {source}; it must keep every row, in order")
        if not out.index.equals(raw.index):
            out = out.set_axis(raw.index)
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Apply the step to JSON-like records (one dict per row, the raw input columns):
        one dict of the encoder's input columns per record.

        Raises:
            DataError: the step raised, or returned another number of rows.
        """
        numeric = self._numeric_names()
        if numeric:  # null -> NaN, as a frame of these rows holds it
            records = [_nulls_as_nan(r, numeric) for r in records]
        try:
            out = frame.call_records(self._function(), records)
        except Exception as error:
            raise self._failed(error, "the request's records") from error
        if len(out) != len(records):
            raise DataError(f"data.preprocess {self.path!r} returned {len(out)} rows for "
                            f"{len(records)} records; it must keep every row, in order")
        return out

    def _failed(self, error: Exception, source: str) -> DataError:
        return DataError(f"data.preprocess {self.path!r} failed on {source}: "
                         f"{type(error).__name__}: {error}")

    def _numeric_names(self) -> tuple[str, ...]:
        names = self.__dict__.get("_numeric")
        if names is None:
            names = tuple(f.name for f in self.input_features if f.kind == "numeric")
            self._numeric = names
        return names

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_numeric", None)  # derived again on first use
        state["_step"] = _dumps_by_value(self._step)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["_step"] = _loads(state["_step"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Preprocessor({self.path!r}, inputs={self.input_names})"


class Postprocessor:
    """``postprocess``: a function of the predictions frame (``prediction``,
    ``probability_<class>``; one row per record) returning the columns added to each
    record's response (``decision``...)."""

    def __init__(self, path: str, function: Callable[[Any], Any]) -> None:
        self.path = path
        self._function = function
        self.requirements = module_requirements(function)

    def apply_frame(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """The columns the function adds to ``predictions`` (same rows and index; the
        prediction columns it hands back are left out).

        Raises:
            DataError: it raised, or returned no DataFrame or another row count.
        """
        try:
            out = frame.call(self._function, predictions)
        except Exception as error:
            raise self._failed(error) from error
        self._check_rows(len(out), len(predictions))
        out = out.drop(columns=[c for c in out.columns if c in predictions.columns])
        return out if out.index.equals(predictions.index) else out.set_axis(predictions.index)

    def apply_records(self, predictions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The function's columns for one dict of predictions per record, as one dict per
        record (plain Python values, None for missing)."""
        try:
            out = frame.call_records(self._function, predictions)
        except Exception as error:
            raise self._failed(error) from error
        self._check_rows(len(out), len(predictions))
        given = predictions[0].keys() if predictions else ()
        return [{k: v for k, v in row.items() if k not in given} for row in out]

    def _check_rows(self, got: int, wanted: int) -> None:
        if got != wanted:
            raise DataError(f"postprocess {self.path!r} returned {got} rows for {wanted} "
                            "predictions; it must return one row per prediction, in order")

    def _failed(self, error: Exception) -> DataError:
        return DataError(f"postprocess {self.path!r} failed: {type(error).__name__}: {error}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_function"] = _dumps_by_value(self._function)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["_function"] = _loads(state["_function"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"Postprocessor({self.path!r})"


def _nulls_as_nan(record: Mapping[str, Any], numeric: tuple[str, ...]) -> Mapping[str, Any]:
    missing = [n for n in numeric if record.get(n) is None]
    return record if not missing else {**record, **dict.fromkeys(missing, math.nan)}


def _numbers_as_floats(rows: pd.DataFrame, numeric: tuple[str, ...]) -> pd.DataFrame:
    """``rows`` with numeric input columns held as objects (a frame of JSON records with a
    null) read as numbers, so the step sees NaN in both paths."""
    loose = [n for n in numeric if rows[n].dtype == object]
    if not loose:
        return rows
    return rows.assign(**{n: pd.to_numeric(rows[n], errors="coerce") for n in loose})


def _input_features(rows: pd.DataFrame, declared: Mapping[str, Kind]) -> tuple[Feature, ...]:
    """The raw columns as request-schema features: kinds declared or inferred (as the
    encoder infers them), levels of categorical columns most frequent first."""
    kinds = infer_kinds(rows, {k: v for k, v in declared.items() if k in rows.columns})
    features = []
    for name in rows.columns:
        kind = kinds[name]
        levels: tuple[str, ...] = ()
        if kind == "categorical":
            counts = rows[name].dropna().astype(str).value_counts()
            levels = tuple(counts.index[:MAX_SCHEMA_CATEGORIES])
        features.append(Feature(str(name), kind, levels))
    return tuple(features)
