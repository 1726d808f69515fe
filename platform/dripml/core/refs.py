"""Model references: the one parser of the text that names a registered model version.

``drip serve``, ``drip build``, ``drip deploy`` and :func:`dripml.load_model` take a model as
text; :meth:`ModelRef.parse` reads every form they accept (NAME: a registered model name,
without whitespace, ``/``, ``@`` or ``:``; VERSION: a whole number from 1; ALIAS: letters,
digits, ``_`` and ``-``)::

    adult                   -> models:/adult@champion   (the default alias)
    adult@challenger        -> models:/adult@challenger
    adult/3                 -> models:/adult/3
    models:/adult@champion  -> models:/adult@champion
    models:/adult/3         -> models:/adult/3

:func:`model_uri` also lets an MLflow run's model through (``runs:/RUN_ID/PATH``), for the
verbs that can load one. Pure string work: nothing here imports MLflow or asks the registry
whether the model exists (:func:`dripml.productionize.tracking.resolve_version` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from dripml.errors import ModelRefError

__all__ = ["DEFAULT_ALIAS", "FORMS", "ModelRef", "model_uri"]

DEFAULT_ALIAS = "champion"
"""The alias a bare ``NAME`` means (the alias Refine moves by default)."""

SCHEME = "models:/"
FORMS = ("NAME", "NAME@ALIAS", "NAME/VERSION", "models:/NAME@ALIAS", "models:/NAME/VERSION")
"""The forms :meth:`ModelRef.parse` accepts, as error messages list them."""
RUN_FORM = "runs:/RUN_ID/PATH"
"""The extra form :func:`model_uri` accepts."""

_NAME = re.compile(r"[^\s/@:]+")
_ALIAS = re.compile(r"[A-Za-z0-9_-]+")
_VERSION = re.compile(r"[1-9][0-9]*")
_RUN_URI = re.compile(r"runs:/[0-9a-zA-Z]+/\S+")


@dataclass(frozen=True)
class ModelRef:
    """A registered model version, by number or by alias (exactly one of the two).

    Attributes:
        name: the registered model's name.
        version: its version number as text (``"3"``), or None when named by alias.
        alias: the alias (``"champion"``), or None when named by version.

    Raises:
        ModelRefError: (on construction) a bad name, version or alias, or not exactly one
            of ``version`` and ``alias``.
    """

    name: str
    version: str | None = None
    alias: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.version, int) and not isinstance(self.version, bool):
            # MLflow's ModelVersion.version is an int on some stores: keep text throughout.
            object.__setattr__(self, "version", str(self.version))
        problem = _problem(self.name, self.version, self.alias)
        if problem:
            shown = f"ModelRef({self.name!r}, version={self.version!r}, alias={self.alias!r})"
            raise ModelRefError(f"invalid model reference {shown}: {problem}")

    @classmethod
    def parse(cls, text: str, default_alias: str = DEFAULT_ALIAS) -> ModelRef:
        """Read one of the forms in the module docstring; surrounding blanks are ignored.

        Args:
            text: the reference, e.g. ``adult``, ``adult@challenger``, ``models:/adult/3``.
            default_alias: the alias of a bare ``NAME``.

        Raises:
            ModelRefError: ``text`` is none of the forms; the message quotes it, says what
                is wrong and lists the forms.
        """
        try:
            name, version, alias = _split(text.strip(), default_alias)
        except _Malformed as malformed:
            raise _error(text, str(malformed), FORMS) from None
        return cls(name, version=version, alias=alias)

    @property
    def label(self) -> str:
        """``NAME/VERSION`` or ``NAME@ALIAS``."""
        if self.version is not None:
            return f"{self.name}/{self.version}"
        return f"{self.name}@{self.alias}"

    @property
    def uri(self) -> str:
        """The MLflow model URI: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
        return f"{SCHEME}{self.label}"

    @property
    def pinned(self) -> bool:
        """True when it names a version (which never moves), False for an alias."""
        return self.version is not None

    def at_version(self, version: str | int) -> ModelRef:
        """The same model at ``version`` (an alias pinned to the version it points to)."""
        return ModelRef(self.name, version=str(version))

    def __str__(self) -> str:
        return self.uri


def model_uri(text: str, default_alias: str = DEFAULT_ALIAS) -> str:
    """The MLflow URI of a model reference: ``runs:/RUN_ID/PATH`` unchanged, any other text
    as :meth:`ModelRef.parse` reads it (``adult`` -> ``models:/adult@champion``).

    Raises:
        ModelRefError: none of the forms (the message lists them, ``runs:/`` included).
    """
    value = text.strip()
    forms = (*FORMS, RUN_FORM)
    if value.startswith("runs:"):
        if not _RUN_URI.fullmatch(value):
            raise _error(text, f"a run's model is {RUN_FORM}", forms)
        return value
    try:
        name, version, alias = _split(value, default_alias)
    except _Malformed as malformed:
        raise _error(text, str(malformed), forms) from None
    return ModelRef(name, version=version, alias=alias).uri


class _Malformed(Exception):
    """What is wrong with a reference, before it is worded for the user."""


def _split(value: str, default_alias: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of a stripped reference.

    Raises:
        _Malformed: the problem, in words.
    """
    explicit = value.startswith(SCHEME)
    body = value.removeprefix(SCHEME)
    name, version, alias = body, None, None
    if ":/" in body:  # s3://..., runs:/..., file:///...
        raise _Malformed("it is a URI, not a registered model")
    if "@" in body:
        name, _, alias = body.partition("@")
        if "@" in alias or "/" in alias:
            raise _Malformed("it has more than one '@', or a '/' after the '@'")
    elif "/" in body:
        name, _, version = body.partition("/")
        if "/" in version:
            raise _Malformed("it has more than one '/'")
    elif explicit and body:
        raise _Malformed("a models:/ URI needs @ALIAS or /VERSION after the name")
    else:
        alias = default_alias
    problem = _problem(name, version, alias)
    if problem:
        raise _Malformed(problem)
    return name, version, alias


def _problem(name: str, version: str | None, alias: str | None) -> str | None:
    """What is wrong with these parts, or None."""
    if not name:
        return "it names no model"
    if not _NAME.fullmatch(name):
        return f"the model name {name!r} holds whitespace, '/', '@' or ':'"
    if (version is None) == (alias is None):
        return "give exactly one of a version and an alias"
    if version == "" or alias == "":
        return "nothing follows the '/'" if version == "" else "nothing follows the '@'"
    if version is not None and not _VERSION.fullmatch(version):
        return f"the version must be a whole number from 1, got {version!r}"
    if alias is not None and not _ALIAS.fullmatch(alias):
        return f"the alias {alias!r} may hold only letters, digits, '_' and '-'"
    return None


def _error(text: str, problem: str, forms: tuple[str, ...]) -> ModelRefError:
    listed = ", ".join(forms[:-1]) + f" or {forms[-1]}"
    return ModelRefError(f"invalid model reference {text!r}: {problem}; expected {listed}")
