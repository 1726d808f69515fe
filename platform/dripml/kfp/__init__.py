"""The Kubeflow Pipelines front door: the DRiP loop as a KFP pipeline.

- :func:`compile`: write a spec's pipeline as KFP IR YAML (``drip pipeline compile``).
- :func:`submit`: compile it and start a run on a KFP server (``drip pipeline submit``).
- :func:`run_local`: run it with KFP's local runner against a local Ray head
  (``drip run --orchestrator kfp-local``).
- :func:`build`: the ``@dsl.pipeline`` function itself, for one spec.

:mod:`dripml.kfp.components` holds the steps, each a call of one verb of :mod:`dripml.api`;
:mod:`dripml.kfp.pipeline` wires them into the pipeline. This package sits above
:mod:`dripml.api` (it calls the verbs, never the other way round) and below the CLI. It
imports ``kfp`` (the Kubeflow Pipelines SDK, a different package despite the name).
"""

from __future__ import annotations

from dripml.kfp.pipeline import (
    DEFAULT_SERVICE_ACCOUNT,
    DEFAULT_TRACKING_URI,
    PIPELINE_NAME,
    RUN_TAG,
    CompiledPipeline,
    LocalRun,
    SubmittedRun,
    build,
    compile,
    run_local,
    submit,
)

__all__ = ["DEFAULT_SERVICE_ACCOUNT", "DEFAULT_TRACKING_URI", "PIPELINE_NAME", "RUN_TAG",
           "CompiledPipeline", "LocalRun", "SubmittedRun", "build", "compile", "run_local",
           "submit"]
