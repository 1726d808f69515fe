"""Gradient-boosted trees from LightGBM and XGBoost, with native categoricals.

Both libraries are imported by the builders only, never when this module registers them.
Their scikit-learn wrappers take ``**kwargs``, so ``get_params`` cannot tell a typo from a
parameter: the valid names are declared here, from the libraries' documented parameter lists
(tests/test_algorithms.py checks each against the installed library).
"""

from __future__ import annotations

from typing import Any

from dripml.algorithms.base import ALL_TASKS, Algorithm, BuildContext, clamp, register
from dripml.algorithms.preprocessing import BOOSTING_ENCODING, tree_input
from dripml.core.model import Recipe

LIGHTGBM_PARAMS = frozenset({
    # LGBMModel's constructor (less random_state and n_jobs, which dripml sets)
    "boosting_type", "num_leaves", "max_depth", "learning_rate", "n_estimators",
    "subsample_for_bin", "objective", "class_weight", "min_split_gain", "min_child_weight",
    "min_child_samples", "subsample", "subsample_freq", "colsample_bytree", "reg_alpha",
    "reg_lambda", "importance_type",
    # https://lightgbm.readthedocs.io/en/stable/Parameters.html, by their main names:
    # core and learning control
    "boosting", "data_sample_strategy", "num_iterations", "min_data_in_leaf",
    "min_sum_hessian_in_leaf", "bagging_fraction", "pos_bagging_fraction",
    "neg_bagging_fraction", "bagging_freq", "bagging_seed", "feature_fraction",
    "feature_fraction_bynode", "feature_fraction_seed", "extra_trees", "extra_seed",
    "max_delta_step", "lambda_l1", "lambda_l2", "linear_lambda", "min_gain_to_split",
    "drop_rate", "max_drop", "skip_drop", "xgboost_dart_mode", "uniform_drop", "drop_seed",
    "top_rate", "other_rate", "min_data_per_group", "max_cat_threshold", "cat_l2",
    "cat_smooth", "max_cat_to_onehot", "top_k", "monotone_constraints",
    "monotone_constraints_method", "monotone_penalty", "feature_contri", "cegb_tradeoff",
    "cegb_penalty_split", "path_smooth", "interaction_constraints", "use_quantized_grad",
    "num_grad_quant_bins", "quant_train_renew_leaf", "stochastic_rounding", "deterministic",
    "force_col_wise", "force_row_wise", "histogram_pool_size",
    # dataset
    "linear_tree", "max_bin", "max_bin_by_feature", "min_data_in_bin",
    "bin_construct_sample_cnt", "data_random_seed", "is_enable_sparse", "enable_bundle",
    "use_missing", "zero_as_missing", "feature_pre_filter",
    # objective
    "is_unbalance", "scale_pos_weight", "sigmoid", "boost_from_average", "reg_sqrt", "alpha",
    "fair_c", "poisson_max_delta_step", "tweedie_variance_power",
})
"""Hyperparameters a spec may give ``lightgbm`` and ``embeddings_gbm``."""

XGBOOST_PARAMS = frozenset({
    # XGBModel's constructor, less what dripml sets (n_jobs, random_state, device,
    # tree_method, enable_categorical, feature_types) and what needs an evaluation set
    # (early_stopping_rounds, callbacks); see
    # https://xgboost.readthedocs.io/en/stable/python/python_api.html#xgboost.XGBModel
    "max_depth", "max_leaves", "max_bin", "grow_policy", "learning_rate", "n_estimators",
    "verbosity", "objective", "booster", "gamma", "min_child_weight", "max_delta_step",
    "subsample", "sampling_method", "colsample_bytree", "colsample_bylevel",
    "colsample_bynode", "reg_alpha", "reg_lambda", "scale_pos_weight", "base_score",
    "missing", "num_parallel_tree", "monotone_constraints", "interaction_constraints",
    "importance_type", "validate_parameters", "feature_weights", "max_cat_to_onehot",
    "max_cat_threshold", "multi_strategy", "eval_metric",
})
"""Hyperparameters a spec may give ``xgboost``."""

LIGHTGBM_SYSTEM_PACKAGES = {"lightgbm": ("libgomp1",)}
"""LightGBM's wheel loads the system's OpenMP runtime."""

_GBM_TREES = {"type": "int", "low": 16, "high": 1000, "log": True}


def gbm_trees(n_rows: int) -> dict[str, Any]:
    """Boosting rounds for ``n_rows`` training rows: 16 to rows/20, within [200, 2,000]."""
    return {"type": "int", "low": 16, "high": clamp(n_rows / 20, 200, 2000), "log": True}


def _lightgbm_scaled(n_rows: int) -> dict[str, Any]:
    return {"n_estimators": gbm_trees(n_rows),
            "num_leaves": {"type": "int", "low": 4, "high": clamp(n_rows / 100, 32, 512),
                           "log": True},
            "min_child_samples": {"type": "int", "low": 2,
                                  "high": clamp(n_rows / 500, 20, 200), "log": True}}


def _xgboost_scaled(n_rows: int) -> dict[str, Any]:
    import math

    return {"n_estimators": gbm_trees(n_rows),
            "max_depth": {"type": "int", "low": 2,
                          "high": clamp(math.log2(max(2, n_rows)) - 2, 6, 14)}}


GBM_NOTES = ("scaled to the training rows n: n_estimators 16..clamp(n/20, 200, 2000); "
             "{leaves}")


def lightgbm_estimator(ctx: BuildContext, params: dict[str, Any]) -> Any:
    """An LGBMRegressor or LGBMClassifier (200 trees unless params say otherwise)."""
    import lightgbm

    cls = lightgbm.LGBMRegressor if ctx.task == "regression" else lightgbm.LGBMClassifier
    return cls(**{"n_estimators": 200, **params}, n_jobs=ctx.n_threads,
               random_state=ctx.seed, verbose=-1)


def _lightgbm(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    # Native categoricals need non-negative whole codes, NaN missing: what the encoder gives.
    tree = tree_input(ctx.layout, BOOSTING_ENCODING, task=ctx.task, seed=ctx.seed)
    return Recipe(lightgbm_estimator(ctx, params), tree.preprocessor, preprocessor_key=tree.key,
                  fit_params={"categorical_feature": tree.categorical or "auto"})


def _xgboost(ctx: BuildContext, params: dict[str, Any]) -> Recipe:
    import xgboost

    tree = tree_input(ctx.layout, BOOSTING_ENCODING, task=ctx.task, seed=ctx.seed)
    # XGBoost wants a type per input column; target-encoded ones, last, are numbers.
    feature_types = ["c" if i in set(tree.categorical) else "q" for i in range(tree.leading)]
    cls: type
    if tree.target and ctx.task == "multiclass":
        # One column per class, a count known at fit time: this class adds the "q"s then.
        from dripml.algorithms.xgboost_estimators import XGBClassifier as cls
    else:
        feature_types += ["q"] * len(tree.target)
        cls = xgboost.XGBRegressor if ctx.task == "regression" else xgboost.XGBClassifier
    estimator = cls(**{"n_estimators": 200, **params}, tree_method="hist",
                    enable_categorical=True, feature_types=feature_types,
                    n_jobs=ctx.n_threads, random_state=ctx.seed,
                    device="cuda" if ctx.gpus > 0 else "cpu")
    return Recipe(estimator, tree.preprocessor, preprocessor_key=tree.key)


LIGHTGBM = register(Algorithm(
    name="lightgbm", builder=_lightgbm, tasks=ALL_TASKS,
    description="LightGBM with native categoricals",
    default_space={"n_estimators": _GBM_TREES,
                   "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.5},
                   "num_leaves": {"type": "int", "low": 4, "high": 256, "log": True},
                   "min_child_samples": {"type": "int", "low": 2, "high": 100, "log": True},
                   "colsample_bytree": {"type": "uniform", "low": 0.3, "high": 1.0},
                   "reg_alpha": {"type": "loguniform", "low": 1e-3, "high": 10.0},
                   "reg_lambda": {"type": "loguniform", "low": 1e-3, "high": 10.0}},
    low_cost={"n_estimators": 32, "num_leaves": 16},
    scaled_space=_lightgbm_scaled,
    space_notes=GBM_NOTES.format(leaves="num_leaves 4..clamp(n/100, 32, 512); "
                                 "min_child_samples 2..clamp(n/500, 20, 200)"),
    hyperparameters=LIGHTGBM_PARAMS, requirements=("lightgbm",),
    system_packages=LIGHTGBM_SYSTEM_PACKAGES, dependency_module="lightgbm"))

XGBOOST = register(Algorithm(
    name="xgboost", builder=_xgboost, tasks=ALL_TASKS,
    description="XGBoost (hist) with native categoricals",
    default_space={"n_estimators": _GBM_TREES,
                   "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.5},
                   "max_depth": {"type": "int", "low": 2, "high": 12},
                   "min_child_weight": {"type": "loguniform", "low": 0.5, "high": 50.0},
                   "subsample": {"type": "uniform", "low": 0.5, "high": 1.0},
                   "colsample_bytree": {"type": "uniform", "low": 0.3, "high": 1.0},
                   "reg_lambda": {"type": "loguniform", "low": 1e-3, "high": 10.0}},
    low_cost={"n_estimators": 32, "max_depth": 4},
    scaled_space=_xgboost_scaled,
    space_notes=GBM_NOTES.format(leaves="max_depth 2..clamp(log2(n) - 2, 6, 14)"),
    hyperparameters=XGBOOST_PARAMS, requirements=("xgboost-cpu",),
    dependency_module="xgboost"))
