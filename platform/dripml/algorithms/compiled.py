"""Compiled trees: a LightGBM or XGBoost model turned into a small C library.

Treelite (``treelite``) reads the fitted booster and TL2cgen (``tl2cgen``) writes it out as
C code, which the system's C compiler (``gcc``, or ``$CC``) builds into a shared library:
every tree becomes nested ``if``s, with no interpreter of tree nodes and no per-call
checks. :func:`compile_model` returns a :class:`~dripml.core.model.TrainedModel` like the one
it was given (the same fitted encoder and preprocessor, the same API), whose estimator is a
:class:`CompiledTrees` holding the library's bytes.

Serving needs neither the compiler nor Treelite/TL2cgen nor the boosting library: the
library depends on libc and libm only and is called through :mod:`ctypes` (its exported
``predict(union Entry* row, int pred_margin, <float|double>* out)``, one row per call), so
the pickled model is the whole artifact (it lands in the registered version and the image
with it). Unpickling writes the bytes to a temporary file, loads it and deletes the file.

This module imports neither Treelite nor TL2cgen at import time: only :func:`compile_model`
does. The library is built for the machine's architecture (x86-64 Linux here) without
``-march=native``, so it runs on any CPU of that architecture.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dripml import settings
from dripml.core.model import FittedRecipe, Recipe, TrainedModel

SUFFIX = "+tl2cgen"
"""Appended to the algorithm of a compiled model: ``lightgbm+tl2cgen``."""

COMPILABLE = ("lightgbm", "xgboost")
"""Algorithm keys whose models compile."""

PACKAGES = ("treelite", "tl2cgen")
"""Pip distributions compiling needs (not serving)."""


def compiler() -> str | None:
    """The C compiler TL2cgen would call: ``$CC`` if set, else ``gcc``; None when it is
    not on PATH."""
    name = settings.c_compiler()
    return name if shutil.which(name) else None


def unavailable() -> str | None:
    """Why models cannot be compiled here (one line), or None when they can."""
    try:
        import tl2cgen  # noqa: F401
        import treelite  # noqa: F401
    except ImportError as error:
        return (f"compiled trees skipped: {error.name or 'treelite/tl2cgen'} is not installed "
                "(pip install treelite==4.8.1 tl2cgen==1.0.0)")
    if compiler() is None:
        name = settings.c_compiler()
        return f"compiled trees skipped: no C compiler {name!r} on PATH (install gcc or set CC)"
    return None


def compilable(model: TrainedModel) -> bool:
    """Whether ``model`` is a LightGBM or XGBoost model on the encoded matrix."""
    estimator = model.fitted.recipe.estimator
    return (model.fitted.recipe.input_kind == "encoded"
            and (hasattr(estimator, "booster_") or hasattr(estimator, "get_booster")))


def compile_model(model: TrainedModel, *, workdir: str | Path | None = None) -> TrainedModel:
    """``model`` with its booster compiled to C (see the module docstring): same encoder,
    preprocessor, classes and API; algorithm ``<algorithm>+tl2cgen``.

    Args:
        model: a fitted LightGBM or XGBoost model (:func:`compilable`).
        workdir: where the C sources are built (a temporary folder by default).

    Raises:
        ValueError: ``model`` is not compilable.
        RuntimeError: Treelite cannot read the booster (e.g. LightGBM linear trees) or the
            compiler failed; the message says which.
    """
    if not compilable(model):
        raise ValueError(f"model of algorithm {model.algorithm!r} is no LightGBM or XGBoost "
                         "booster on encoded rows; only those compile")
    library = _build_library(_treelite_model(model.fitted.recipe.estimator), workdir)
    estimator = model.fitted.recipe.estimator
    classes = getattr(estimator, "classes_", None)
    compiled = CompiledTrees(library, regression=model.task == "regression",
                             classes=None if classes is None else np.asarray(classes))
    recipe = Recipe(compiled, model.fitted.recipe.preprocessor,
                    preprocessor_key=model.fitted.recipe.preprocessor_key)
    fitted = FittedRecipe(recipe, model.task, model.fitted.n_classes)
    return dataclasses.replace(model, fitted=fitted, algorithm=model.algorithm + SUFFIX)


def _treelite_model(estimator: Any) -> Any:
    import treelite

    try:
        if hasattr(estimator, "booster_"):
            return treelite.frontend.from_lightgbm(estimator.booster_)
        return treelite.frontend.from_xgboost(estimator.get_booster())
    except Exception as error:  # treelite raises its own TreeliteError
        raise RuntimeError(f"Treelite cannot read this {type(estimator).__name__}: "
                           f"{str(error).strip().splitlines()[-1][:300]}") from None


def _build_library(tl_model: Any, workdir: str | Path | None) -> bytes:
    import tl2cgen

    cc = compiler()
    if cc is None:
        raise RuntimeError(unavailable() or "no C compiler")
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        path = Path(folder) / "model.so"
        # gcc's optimizer is superlinear in a function's size. Measured on Adult, 300
        # LightGBM trees, 2 busy cores: -O3 in one file 51-61 s, in 12 files 36-56 s; -O1
        # 24-26 s in one file, 17-21 s in 12. A row is nested ifs, which -O1 already makes
        # tight (~0.02 ms for 300 trees): -O1 (after TL2cgen's -O3) over files of ~25 trees.
        cores = os.cpu_count() or 1
        params = {"parallel_comp": max(1, min(32, tl_model.num_tree // 25))}
        chatter = io.StringIO()  # TL2cgen prints its log lines and warns of its own
        try:                     # Treelite's version: neither says anything to users
            with contextlib.redirect_stdout(chatter), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tl2cgen.export_lib(tl_model, toolchain=cc, libpath=path, params=params,
                                   nthread=cores, options=["-O1"])
        except Exception as error:
            raise RuntimeError(f"compiling the trees with {cc} failed: "
                               f"{str(error).strip()[-300:]}") from None
        return path.read_bytes()


class CompiledTrees:
    """The compiled library of a tree ensemble as a scikit-learn-like estimator:
    ``predict`` (labels' codes or values, shape (n,)) and ``predict_proba`` (n, K) on the
    preprocessed float matrix (NaN = missing). Thread-safe: each call has its own buffers.

    Pickles as the library's bytes plus what it predicts; loading needs only numpy.
    """

    def __init__(self, library: bytes, *, regression: bool,
                 classes: np.ndarray | None = None) -> None:
        self.library = library
        self.regression = regression
        self.classes_ = classes
        self._load()

    # The library is loaded from a file: pickle the bytes, load again when unpickled.
    def __getstate__(self) -> dict[str, Any]:
        return {"library": self.library, "regression": self.regression,
                "classes_": self.classes_}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()

    def _load(self) -> None:
        with tempfile.NamedTemporaryFile(prefix="dripml-trees-", suffix=".so") as file:
            file.write(self.library)
            file.flush()
            lib = ctypes.CDLL(file.name)  # mapped now: the file may go
        for name, restype in (("get_num_feature", ctypes.c_int32),
                              ("get_num_target", ctypes.c_int32),
                              ("get_threshold_type", ctypes.c_char_p),
                              ("get_leaf_output_type", ctypes.c_char_p)):
            getattr(lib, name).restype = restype
            getattr(lib, name).argtypes = []
        n_target = lib.get_num_target()
        n_class = np.zeros(n_target, dtype=np.int32)
        lib.get_num_class.argtypes = [ctypes.c_void_p]
        lib.get_num_class(n_class.ctypes.data)
        if n_target != 1:
            raise ValueError(f"compiled trees predict {n_target} targets; dripml uses one")
        self._n_feature = int(lib.get_num_feature())
        self._n_out = int(n_class[0])
        self._entry = np.dtype(lib.get_threshold_type().decode())  # float32 or float64
        self._out = np.dtype(lib.get_leaf_output_type().decode())
        lib.predict.restype = None
        lib.predict.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self._predict_row = lib.predict
        self._lib = lib

    def fit(self, X: Any, y: Any) -> CompiledTrees:
        raise TypeError("compiled trees are fitted already: refit the LightGBM or XGBoost "
                        "model and compile it again (dripml.algorithms.compiled)")

    def raw(self, X: Any) -> np.ndarray:
        """The library's output for each row: shape (n, outputs), in the library's leaf type
        (float32 for XGBoost, as its own predictions; float64 for LightGBM): probabilities
        of the positive class or of each class, or values."""
        matrix = np.asarray(X, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[1] > self._n_feature:
            raise ValueError(f"compiled trees take rows of {self._n_feature} features; got "
                             f"shape {matrix.shape}")
        n = matrix.shape[0]
        # union Entry {int missing; <float|double> fvalue; int qvalue;}: a missing value is
        # missing == -1 in the union's first four bytes, whatever its width.
        entries = np.zeros((n, self._n_feature), dtype=self._entry)
        entries[:, :matrix.shape[1]] = matrix
        missing = np.isnan(entries)
        if matrix.shape[1] < self._n_feature:
            missing[:, matrix.shape[1]:] = True
        if missing.any():
            words = entries.view(np.int32).reshape(n, self._n_feature, -1)
            words[missing, 0] = -1
        out = np.zeros((n, self._n_out), dtype=self._out)
        row_bytes = entries.strides[0] if n else 0
        out_bytes = out.strides[0] if n else 0
        base, result = entries.ctypes.data, out.ctypes.data
        predict = self._predict_row
        for i in range(n):
            predict(base + i * row_bytes, 0, result + i * out_bytes)
        return out

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, shape (n, K) (K = 2 for a binary model)."""
        if self.regression:
            raise ValueError("predict_proba needs a classification model")
        out = self.raw(X)
        if out.shape[1] == 1:  # binary: the positive class's probability
            return np.hstack([1.0 - out, out])
        return out

    def predict(self, X: Any) -> np.ndarray:
        """Values (regression) or class codes (classification), shape (n,)."""
        if self.regression:
            return self.raw(X)[:, 0].astype(np.float64)
        codes = self.predict_proba(X).argmax(axis=1)
        return codes if self.classes_ is None else np.asarray(self.classes_)[codes]
