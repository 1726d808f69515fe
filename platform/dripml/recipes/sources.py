"""A recipe run's data: ``{"train": FILE, "test": FILE}`` (``--data train=FILE``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dripml.errors import SpecError

__all__ = ["data_sources"]

KEYS = ("train", "test")


def data_sources(data: Mapping[str, str | Path]) -> tuple[str, str | None]:
    """``(train, test)`` from ``data``; a local path is made absolute (a rendered spec then
    runs from any folder), a URI (``s3://``, ``dataset://``) is kept as is.

    Raises:
        SpecError: a key other than train and test, or no train.
    """
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise SpecError(f"data takes train=FILE and optionally test=FILE, got {unknown}")
    if not data.get("train"):
        raise SpecError("data needs train=FILE (a CSV or Parquet file to learn from)")
    train = _absolute(data["train"])
    test = data.get("test")
    return train, (_absolute(test) if test else None)


def _absolute(source: str | Path) -> str:
    text = str(source)
    return text if "://" in text else str(Path(text).expanduser().resolve())
