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
"""

__version__ = "0.1.0"

from dripml.api import TrainResult, load_model, models, train, validate  # noqa: E402
from dripml.errors import (  # noqa: E402
    DataError,
    DripmlError,
    ModelNotFoundError,
    ResourceError,
    SearchError,
    ServeError,
    SpecError,
)
from dripml.spec import Spec, load_spec, spec_json_schema  # noqa: E402

__all__ = [
    "DataError",
    "DripmlError",
    "ModelNotFoundError",
    "ResourceError",
    "SearchError",
    "ServeError",
    "Spec",
    "SpecError",
    "TrainResult",
    "__version__",
    "load_model",
    "load_spec",
    "models",
    "spec_json_schema",
    "train",
    "validate",
]
