"""dripml.core.refs: the one parser of model references (no MLflow, no registry)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from dripml.core.refs import FORMS, ModelRef, model_uri
from dripml.errors import ModelRefError, SpecError
from dripml.productionize import deploy


@pytest.mark.parametrize(("text", "name", "version", "alias", "uri"), [
    ("adult", "adult", None, "champion", "models:/adult@champion"),
    ("adult@challenger", "adult", None, "challenger", "models:/adult@challenger"),
    ("adult/3", "adult", "3", None, "models:/adult/3"),
    ("models:/adult@champion", "adult", None, "champion", "models:/adult@champion"),
    ("models:/adult/12", "adult", "12", None, "models:/adult/12"),
    ("  Churn_Model.v2@blue-1 ", "Churn_Model.v2", None, "blue-1", "models:/Churn_Model.v2@blue-1"),
])
def test_every_form_parses(text: str, name: str, version: str | None, alias: str | None,
                           uri: str) -> None:
    ref = ModelRef.parse(text)
    assert (ref.name, ref.version, ref.alias) == (name, version, alias)
    assert ref.uri == str(ref) == uri == model_uri(text)
    assert ref.pinned == (version is not None)
    assert ModelRef.parse(ref.uri) == ref  # the URI reads back as the same reference


def test_default_alias_and_label() -> None:
    assert ModelRef.parse("adult", default_alias="staging").uri == "models:/adult@staging"
    assert ModelRef.parse("adult/3", default_alias="staging").uri == "models:/adult/3"
    assert ModelRef.parse("adult@champion").label == "adult@champion"
    assert ModelRef.parse("adult/3").label == "adult/3"


def test_an_alias_pins_to_a_version() -> None:
    pinned = ModelRef.parse("adult@champion").at_version(7)
    assert pinned == ModelRef("adult", version="7") and pinned.uri == "models:/adult/7"


@pytest.mark.parametrize(("text", "problem"), [
    ("", "names no model"),
    ("models:/", "names no model"),
    ("@champion", "names no model"),
    ("models:/adult", "needs @ALIAS or /VERSION"),
    ("adult@champion@x", "more than one '@'"),
    ("adult@champion/3", "a '/' after the '@'"),
    ("adult/3/4", "more than one '/'"),
    ("adult/0", "whole number from 1"),
    ("adult/latest", "whole number from 1, got 'latest'"),
    ("adult@", "nothing follows the '@'"),
    ("adult/", "nothing follows the '/'"),
    ("adult@blue green", "alias 'blue green'"),
    ("my model", "holds whitespace"),
    ("s3://bucket/model", "is a URI"),
    ("runs:/0a1b2c/model", "is a URI"),
])
def test_malformed_references_name_what_was_given_and_the_forms(text: str,
                                                                  problem: str) -> None:
    with pytest.raises(ModelRefError) as raised:
        ModelRef.parse(text)
    message = str(raised.value)
    assert f"invalid model reference {text!r}" in message
    assert problem in message
    assert message.endswith("expected NAME, NAME@ALIAS, NAME/VERSION, models:/NAME@ALIAS or "
                            "models:/NAME/VERSION")
    assert len(FORMS) == 5


def test_the_error_is_a_spec_error() -> None:
    # Raised on user input before anything starts, as SpecError is; the CLI prints either.
    assert issubclass(ModelRefError, SpecError)


def test_constructing_checks_the_parts() -> None:
    with pytest.raises(ModelRefError, match="exactly one of a version and an alias"):
        ModelRef("adult")
    with pytest.raises(ModelRefError, match="exactly one"):
        ModelRef("adult", version="1", alias="champion")
    with pytest.raises(ModelRefError, match="whole number"):
        ModelRef("adult", version="v1")


def test_model_uri_also_takes_a_runs_uri() -> None:
    assert model_uri("runs:/0a1b2c/model") == "runs:/0a1b2c/model"
    with pytest.raises(ModelRefError, match=r"runs:/RUN_ID/PATH; expected .* or "
                                            r"runs:/RUN_ID/PATH$"):
        model_uri("runs:/0a1b2c")
    with pytest.raises(ModelRefError, match=r"is a URI.* or runs:/RUN_ID/PATH$"):
        model_uri("s3://bucket/model")


def test_deploy_uses_the_same_parser() -> None:
    for text in ("adult", "adult@challenger", "adult/3", "models:/adult/3",
                 "runs:/0a1b2c/model"):
        assert deploy.model_uri(text) == model_uri(text)
    with pytest.raises(ModelRefError, match="cannot deploy: invalid model reference"):
        deploy.model_uri("adult@champion@x")


def test_parsing_imports_no_mlflow() -> None:
    probe = ("import sys, json; from dripml.core.refs import ModelRef; "
             "ModelRef.parse('adult@champion'); "
             "print(json.dumps(sorted({'mlflow', 'ray', 'bentoml'} & set(sys.modules))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert json.loads(done.stdout) == []
