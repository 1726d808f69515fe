"""Every problem of a spec at once: a collector that turns many checks into one error.

:func:`dripml.api.validate` runs each check (fields, algorithms, metrics, data) inside
:meth:`Problems.catch`, which records what the check raised under the spec field it is about
and goes on; :meth:`Problems.raise_if_any` then raises one :class:`~dripml.errors.SpecError`
with one line per problem::

    the spec has 2 problems:
      data.label: column 'incme' is not in 'train.csv' (did you mean 'income'?); ...
      algorithms[1].name: unknown algorithm 'xgboostt'; ... (did you mean 'xgboost'?)
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from dripml.errors import DataError, PretrainedModelError, SpecError

__all__ = ["Problems", "close_matches", "shown_columns"]

_FIELD_PREFIX = re.compile(r"^[A-Za-z_][\w.\[\]-]*( \([^)]*\))?: ")
"""A message that already starts with its field path (``algorithms[1].params.x: ...``)."""


class Problems:
    """Problems found so far, one ``field: message`` line each, in the order found."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)

    def add(self, field: str | None, message: str) -> None:
        """Record one problem about spec ``field`` (a dotted path such as ``data.label``;
        None, or a message that already starts with a field path, adds no prefix)."""
        message = message.strip()
        if field is None or _FIELD_PREFIX.match(message):
            self._lines.append(message)
        else:
            self._lines.append(f"{field}: {message}")

    def extend(self, lines: Iterable[str]) -> None:
        """Record lines that already name their field (pydantic's, formatted by the spec)."""
        self._lines.extend(line.strip() for line in lines if line.strip())

    @contextmanager
    def catch(self, field: str | None) -> Iterator[None]:
        """Run the block; a SpecError, DataError or PretrainedModelError it raises becomes
        a problem about ``field`` instead of propagating."""
        try:
            yield
        except (SpecError, DataError, PretrainedModelError) as error:
            self.add(field, str(error))

    def raise_if_any(self, footer: str = "") -> None:
        """Raise one SpecError listing every problem (nothing when there is none).

        Raises:
            SpecError: ``the spec has N problem(s):`` then one indented line per problem,
                then ``footer`` when given.
        """
        if not self._lines:
            return
        count = len(self._lines)
        body = "\n".join(f"  {line}" for line in self._lines)
        raise SpecError(f"the spec has {count} problem{'s' if count > 1 else ''}:\n{body}"
                        + (f"\n{footer}" if footer else ""))


def close_matches(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` of ``choices`` close to ``name`` (difflib, case-insensitive), best first."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(str(choice).lower(), str(choice))
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=n)
    return [by_lower[f] for f in found]


def shown_columns(columns: Iterable[str], limit: int = 30) -> str:
    """A column list for a message: all of them up to ``limit``, then how many more."""
    listed = [str(c) for c in columns]
    if len(listed) <= limit:
        return str(listed)
    return f"{listed[:limit]} and {len(listed) - limit} more"
