"""dripml: one spec in, a tuned, registered and served model out.

The public verbs (the CLI and the pipeline steps call the same ones)::

    import dripml
    result = dripml.train("examples/adult.yaml")          # or a dict, or keyword arguments
    result = dripml.train(name="adult", task="binary",
                          data={"train": "dataset://adult/train", "label": "income"},
                          algorithm=["lightgbm", "logistic_regression"],
                          metrics={"objective": "roc_auc"}, resources={"cpus_per_trial": 1})
    model = dripml.load_model("adult@champion")
    model.predict_records([{"age": 39, ...}])

The verbs are imported on first use: every Ray worker imports this package before its first
fold, and MLflow alone would add about 1.5 s to that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dripml import _legacy

__version__ = "0.1.0"

# Models pickled by the pre-0.2 flat layout name classes by their old module paths.
_legacy.install()

_PUBLIC = {
    "train": "dripml.api",
    "fit": "dripml.api",
    "FitResult": "dripml.api",
    "validate": "dripml.api",
    "models": "dripml.api",
    "load_model": "dripml.api",
    "predict_batch": "dripml.api",
    "frontier_points": "dripml.api",
    "frontier_table": "dripml.api",
    "serve": "dripml.api",
    "build_image": "dripml.api",
    "deploy": "dripml.api",
    "list_datasets": "dripml.api",
    "fetch_dataset": "dripml.api",
    "list_algorithms": "dripml.api",
    "TrainResult": "dripml.api",
    "Deployment": "dripml.api",
    "Spec": "dripml.core.spec",
    "load_spec": "dripml.core.spec",
    "spec_json_schema": "dripml.core.spec",
    "DripmlError": "dripml.errors",
    "SpecError": "dripml.errors",
    "ModelRefError": "dripml.errors",
    "RecipeError": "dripml.errors",
    "KnobError": "dripml.errors",
    "SettingsError": "dripml.errors",
    "DataError": "dripml.errors",
    "PretrainedModelError": "dripml.errors",
    "ResourceError": "dripml.errors",
    "SearchError": "dripml.errors",
    "ConstraintError": "dripml.errors",
    "TrackingError": "dripml.errors",
    "ModelNotFoundError": "dripml.errors",
    "StoreError": "dripml.errors",
    "ServeError": "dripml.errors",
    "ImageError": "dripml.errors",
    "DeployError": "dripml.errors",
    "ClusterError": "dripml.errors",
    "PipelineError": "dripml.errors",
    "ManifestError": "dripml.errors",
    "RunNotFound": "dripml.errors",
    "Interrupted": "dripml.errors",
}

__all__ = sorted([*_PUBLIC, "__version__"])

if TYPE_CHECKING:
    from dripml.api import (  # noqa: F401
        Deployment,
        FitResult,
        TrainResult,
        build_image,
        deploy,
        fetch_dataset,
        fit,
        frontier_points,
        frontier_table,
        list_algorithms,
        list_datasets,
        load_model,
        models,
        predict_batch,
        serve,
        train,
        validate,
    )
    from dripml.core.spec import Spec, load_spec, spec_json_schema  # noqa: F401
    from dripml.errors import (  # noqa: F401
        ClusterError,
        ConstraintError,
        DataError,
        DeployError,
        DripmlError,
        ImageError,
        Interrupted,
        KnobError,
        ManifestError,
        ModelNotFoundError,
        ModelRefError,
        PipelineError,
        PretrainedModelError,
        RecipeError,
        ResourceError,
        RunNotFound,
        SearchError,
        ServeError,
        SettingsError,
        SpecError,
        StoreError,
        TrackingError,
    )


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'dripml' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value
