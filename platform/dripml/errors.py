"""One error hierarchy: every message says what was wrong, what was got, and what to do.

Every error dripml raises on purpose is a :class:`DripmlError`; catch a subclass to handle one
kind of failure (``except ModelNotFoundError``), or the base class for all of them. No module
raises the bare base class (``tests/test_errors.py`` checks): each raise says which kind it is.
Every class here is exported from ``dripml`` (``dripml.ImageError``...).

    DripmlError
    ├── SpecError            malformed spec or argument, before anything starts
    │   ├── ModelRefError    a model reference that is none of the accepted forms
    │   ├── RecipeError      a malformed recipe file (dripml.recipes)
    │   └── KnobError        a recipe knob value outside its type or rules
    ├── SettingsError        an environment variable dripml reads holds an unusable value
    ├── DataError            the data does not fit the spec
    ├── PretrainedModelError a pretrained model location holds no model
    ├── ResourceError        the cluster lacks what the spec asks for
    ├── SearchError          no usable trial
    │   └── ConstraintError  no candidate meets the serving-cost constraints
    ├── TrackingError        the MLflow store lacks a run or artifact, or cannot be read
    │   ├── ModelNotFoundError
    │   └── StoreError       the store is unreachable, silent, read-only or not migrated
    ├── ServeError           the prediction server could not start
    ├── ImageError           a serving image could not be planned, built, pushed or recorded
    ├── DeployError          a deployment could not be planned or applied
    ├── ClusterError         a Ray cluster could not be created, or its job failed
    │   └── PipelineError    a Kubeflow pipeline could not be submitted or run
    ├── ManifestError        a Kubernetes manifest does not match its CRD
    └── RunNotFound          the web page's run store has no run with that id

Not an error, and so not a DripmlError: :class:`~dripml.core.interrupts.Interrupted`, the
``KeyboardInterrupt`` a run raises when Ctrl-C or SIGTERM stopped it (re-exported here for
the front doors, which print it as one line and exit 130 or 143).
"""

from __future__ import annotations

from dripml.core.interrupts import Interrupted as Interrupted  # re-exported


class DripmlError(Exception):
    """Base class of every error dripml raises on purpose; never raised itself."""


class SpecError(DripmlError):
    """The spec is malformed; raised before anything starts. The message names the field."""


class ModelRefError(SpecError):
    """A model reference (``drip serve NAME``, ``dripml.load_model(ref)``...) is none of the
    accepted forms; the message quotes what was given and lists the forms (see
    :mod:`dripml.core.refs`). Raised before MLflow is touched."""


class RecipeError(SpecError):
    """A recipe file (:mod:`dripml.recipes`) is malformed: not YAML, a missing or unknown
    field, a param whose path is not a spec field or whose default breaks its own rules, a
    base spec that does not validate. The message names the file and the field (and the line
    when the YAML says it)."""


class KnobError(SpecError):
    """A recipe knob's value breaks its param's rules: an unknown knob or pipeline, the wrong
    type, out of bounds, off the step grid, not one of the choices or columns, or missing.
    The message starts with ``knob '<key>': ``; ``knob`` holds the key."""

    def __init__(self, knob: str, message: str) -> None:
        self.knob = knob
        super().__init__(f"knob {knob!r}: {message}")

    def __reduce__(self) -> tuple[type[KnobError], tuple[str, str]]:
        text = str(self).removeprefix(f"knob {self.knob!r}: ")
        return (type(self), (self.knob, text))


class SettingsError(DripmlError):
    """An environment variable dripml reads holds a value it cannot use (for example
    ``DRIPML_SERVE_WORKERS=two``); the message names the variable, the value and what is
    accepted (see :mod:`dripml.settings`)."""


class DataError(DripmlError):
    """The data does not fit the spec: a missing column, an empty file, an unfit label, an
    unknown ``dataset://`` name."""


class PretrainedModelError(DripmlError):
    """A pretrained model location (``algorithms[i].pretrained``) does not exist or does not
    hold a transformers model; raised when the spec is checked or the model is built."""


class ResourceError(DripmlError):
    """The spec asks for resources the cluster lacks (for example GPUs on a CPU-only machine)."""


class SearchError(DripmlError):
    """The search could not produce a usable trial (for example every trial failed)."""


class ConstraintError(SearchError):
    """No candidate meets the spec's serving-cost ``constraints``; the message names each
    constraint and the best value measured for it."""


class TrackingError(DripmlError):
    """The MLflow tracking store has no such run or artifact, or cannot be read (no store at
    the path given, a server that refuses); the message names the store and what to pass."""


class ModelNotFoundError(TrackingError):
    """A registered model, version or alias does not exist in the MLflow Model Registry."""


class StoreError(TrackingError):
    """The tracking store failed its check before anything started (see
    :mod:`dripml.productionize.store`): nothing listens at the URI, a server accepts but does
    not answer in time or refuses writes, a SQLite file or folder is read-only, or its schema
    is older than MLflow's. The message names the URI and what to do."""


class ServeError(DripmlError):
    """The prediction server could not start (port taken, process died, not ready in time).

    The message includes the last lines of the server's log.
    """


class ImageError(DripmlError):
    """``drip build`` could not plan, build, push or record a serving image: a bad registry
    string or builder, a builder not on PATH or failing (the message has its output's tail
    and the log file), no source checkout to build from."""


class DeployError(DripmlError):
    """``drip deploy`` could not plan or apply a deployment: a bad argument (target, release,
    namespace, port, image not by digest), no chart, no image recorded for the version, helm
    or the container runtime missing or failing. The message says what to pass instead."""


class ClusterError(DripmlError):
    """A Ray cluster (KubeRay or local) could not be created, became not ready in time, or
    its job failed; the cluster has been deleted when this is raised."""


class PipelineError(ClusterError):
    """A Kubeflow pipeline could not be submitted (the KFP server refused the run or could not
    be reached) or run to the end (a step failed); the pipeline's cluster has been deleted
    when this is raised."""


class ManifestError(DripmlError):
    """A Kubernetes manifest does not match its CRD; the message lists each field path and
    problem."""


class RunNotFound(DripmlError, LookupError):
    """The web page's run store (:class:`dripml.orchestration.run_store.RunStore`) has no run
    with the id asked for (a mistyped or deleted id); the UI answers 404. The message names
    the id and the store."""
