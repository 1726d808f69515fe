"""Knob values: coerce what a user gave (a string from a form or ``--set k=v``, or a JSON
value) to a param's type, and check it against the param's rules.

Every failure is a :class:`~dripml.errors.KnobError` whose message starts with
``knob '<key>': `` and says the rule broken, the value got and what is accepted.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dripml.errors import KnobError

if TYPE_CHECKING:
    from dripml.recipes.model import Param

__all__ = ["DURATION_UNITS", "coerce", "is_empty", "to_spec_value"]

DURATION_UNITS: dict[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0}
"""Seconds in one unit of a ``duration`` param."""
_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f"}
_WITH_UNIT = re.compile(r"^\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*$")
_STEP_TOLERANCE = 1e-9


def is_empty(value: Any) -> bool:
    """No value given: None, or a string of spaces only (an empty form field)."""
    return value is None or (isinstance(value, str) and not value.strip())


def coerce(param: Param, value: Any, *, columns: Sequence[str] | None = None) -> Any:
    """``value`` as ``param``'s type, checked against its rules.

    Args:
        value: a string (``"60"``, ``"true"``, ``"lightgbm,xgboost"``, ``"2min"``) or a JSON
            value (number, bool, list of strings); not empty (see :func:`is_empty`).
        columns: the uploaded data's columns; a ``column`` param's value must be one of them
            (None: not checked).

    Returns:
        float (number, duration in the param's unit, latency in ms), int, bool, str (choice,
        column) or list[str] (multichoice, in the order given, repeats dropped).

    Raises:
        KnobError: the value is of the wrong type, out of bounds, off the step grid, not one
            of the choices or columns.
    """
    kind = param.type
    if kind == "boolean":
        return _boolean(param, value)
    if kind == "choice":
        return _choice(param, value)
    if kind == "multichoice":
        return _multichoice(param, value)
    if kind == "column":
        return _column(param, value, columns)
    if kind in ("duration", "latency"):
        number = _with_unit(param, value)
    else:
        number = _number(param, value, integer=kind == "integer")
    _check_bounds(param, number)
    return number


def to_spec_value(param: Param, value: Any) -> Any:
    """The coerced ``value`` as the spec takes it: a duration in seconds, the rest as is."""
    if param.type == "duration" and value is not None:
        return float(value) * DURATION_UNITS[param.unit or "s"]
    return value


def _fail(param: Param, message: str) -> KnobError:
    return KnobError(param.key, message)


def _number(param: Param, value: Any, *, integer: bool) -> float | int:
    wanted = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(param, f"must be {wanted}, got {json.dumps(value, default=str)}")
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _fail(param, f"must be {wanted}, got {value!r}") from None
    else:
        number = float(value)
    if not math.isfinite(number):
        raise _fail(param, f"must be a finite number, got {value!r}")
    if integer:
        if not number.is_integer():
            raise _fail(param, f"must be a whole number, got {value!r}")
        return int(number)
    return number


def _with_unit(param: Param, value: Any) -> float:
    """A duration or latency: a number in the param's unit, or a string with a unit suffix
    (``"90s"``, ``"2min"``, ``"1h"``; a latency takes ``"ms"`` only)."""
    unit = param.unit or ("ms" if param.type == "latency" else "s")
    if isinstance(value, str):
        found = _WITH_UNIT.match(value)
        if found is None:
            raise _fail(param, f"must be a number of {unit}, got {value!r}")
        number, given = float(found.group(1)), found.group(2) or unit
        if param.type == "latency":
            if given != "ms":
                raise _fail(param, f"takes milliseconds (ms), got {value!r}")
        elif given not in DURATION_UNITS:
            raise _fail(param, f"unknown unit {given!r} in {value!r}; use s, min or h")
        else:
            number = number * DURATION_UNITS[given] / DURATION_UNITS[unit]
    else:
        number = _number(param, value, integer=False)
    if not math.isfinite(number) or number <= 0:
        raise _fail(param, f"must be more than 0 {unit}, got {value!r}")
    return number


def _check_bounds(param: Param, number: float) -> None:
    unit = f" {param.unit}" if param.unit else ""
    if param.min is not None and number < param.min:
        raise _fail(param, f"must be at least {param.min:g}{unit}, got {number:g}")
    if param.max is not None and number > param.max:
        raise _fail(param, f"must be at most {param.max:g}{unit}, got {number:g}")
    if param.step is not None:
        origin = param.min if param.min is not None else 0.0
        steps = (number - origin) / param.step
        if abs(steps - round(steps)) > _STEP_TOLERANCE * max(1.0, abs(steps)):
            below = origin + math.floor(steps) * param.step
            raise _fail(param, f"must be on the grid {origin:g} + k * {param.step:g}, got "
                               f"{number:g}; the nearest are {below:g} and "
                               f"{below + param.step:g}")


def _boolean(param: Param, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(param, f"must be true or false, got {json.dumps(value, default=str)}")


def _one_of(param: Param, value: Any) -> str:
    choices = param.choices or []
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(param, f"must be one of {choices}, got {json.dumps(value, default=str)}")
    text = str(value).strip()
    if text not in choices:
        raise _fail(param, f"unknown choice {text!r}{_closest(text, choices)}; choose one of "
                           f"{choices}")
    return text


def _choice(param: Param, value: Any) -> str:
    return _one_of(param, value)


def _multichoice(param: Param, value: Any) -> list[str]:
    items: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                items = json.loads(text)
            except json.JSONDecodeError:
                raise _fail(param, f"is not a JSON list: {value!r}") from None
        else:
            items = [part for part in text.split(",") if part.strip()]
    if not isinstance(items, list | tuple):
        raise _fail(param, f"must be a list of {param.choices}, got "
                           f"{json.dumps(value, default=str)}")
    chosen: list[str] = []
    for item in items:
        name = _one_of(param, item)
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise _fail(param, f"choose at least one of {param.choices}")
    return chosen


def _column(param: Param, value: Any, columns: Sequence[str] | None) -> str:
    if not isinstance(value, str):
        raise _fail(param, f"must be a column name, got {json.dumps(value, default=str)}")
    name = value.strip()
    if columns is not None and name not in columns:
        shown = list(columns) if len(columns) <= 30 else [*columns[:30], "..."]
        raise _fail(param, f"column {name!r} is not in the data{_closest(name, columns)}; "
                           f"its columns are {shown}")
    return name


def _closest(name: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
