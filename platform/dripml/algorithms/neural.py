"""``mlp``: a PyTorch multi-layer perceptron on standardised numbers and one-hot (target
encoded when large) categories.

The estimator lives in :mod:`dripml.algorithms.torch_mlp`, which imports torch: only the
builder imports it, so registering ``mlp`` (and checking a spec) never loads torch.
"""

from __future__ import annotations

from typing import Any

from dripml.algorithms.base import ALL_TASKS, Algorithm, BuildContext, register
from dripml.algorithms.preprocessing import LINEAR_INPUT, linear_preprocessor
from dripml.core.model import Recipe

MLP_PARAMS = frozenset({
    "hidden_units", "num_layers", "dropout", "learning_rate", "weight_decay", "epochs",
    "batch_size", "validation_fraction", "early_stopping_patience", "mixed_precision",
})
"""Hyperparameters of ``mlp``: the keyword arguments of ``TorchMLPClassifier`` /
``TorchMLPRegressor`` less ``device``, ``num_threads`` and ``random_state`` (set from the
resources and the seed). Declared rather than read with ``inspect`` because reading the
signature imports torch (tests/test_algorithms.py keeps the two in step)."""


def _mlp(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    from dripml.algorithms.torch_mlp import TorchMLPClassifier, TorchMLPRegressor

    cls = TorchMLPRegressor if ctx.task == "regression" else TorchMLPClassifier
    device = "auto" if ctx.gpus > 0 else "cpu"
    estimator = cls(**params, num_threads=ctx.n_threads, random_state=ctx.seed, device=device)
    preprocessor = linear_preprocessor(ctx.layout, task=ctx.task, seed=ctx.seed)
    return Recipe(estimator, preprocessor, preprocessor_key=LINEAR_INPUT)


MLP = register(Algorithm(
    name="mlp", builder=_mlp, tasks=ALL_TASKS,
    description="PyTorch MLP on standardised, one-hot and target-encoded features",
    default_space={"hidden_units": {"type": "choice", "values": [64, 128, 256]},
                   "num_layers": {"type": "int", "low": 1, "high": 3},
                   "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
                   "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
                   "epochs": {"type": "int", "low": 5, "high": 30}},
    hyperparameters=MLP_PARAMS, requirements=("torch",),
    dependency_module="dripml.algorithms.torch_mlp"))
