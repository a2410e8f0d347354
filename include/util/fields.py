"""Typed reads of one key of a JSON mapping, for the records' ``from_dict`` (evaluation, drift),
and checks of one field or argument.

Each reader returns the value when it has the declared type and raises ``ValueError``
naming ``where.key`` and the value otherwise, so a malformed XCom payload says which key
is wrong. ``optional=True`` lets the value be null (None). Each check (:func:`one_of`,
:func:`integer_at_least`) returns the value it was given when it passes and raises the
caller's error class, a ``ValueError``, with ``"<name> must be ..., got <value>"`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def mapping(data: Any, where: str) -> Mapping[str, Any]:
    """``data`` itself; raises ``ValueError`` unless it is a mapping."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where} must be a mapping, got {type(data).__name__}")
    return data


def key(data: Mapping[str, Any], name: str, where: str) -> Any:
    """``data[name]``; raises ``ValueError`` naming the key and the keys present when it is missing."""
    if name not in data:
        raise ValueError(f"{where} is missing {name!r} (got keys {sorted(map(str, data))})")
    return data[name]


def is_number(value: Any) -> bool:
    """True for a finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finite_or_none(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is missing, not a number (text, a bool) or NaN/infinite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        converted = float(value)
    except (TypeError, ValueError):
        return None
    return converted if math.isfinite(converted) else None


def number(data: Mapping[str, Any], name: str, where: str, *, optional: bool = False) -> float | None:
    """A finite number (or None when ``optional``); raises ``ValueError`` otherwise."""
    return _typed(data, name, where, optional, is_number, "a finite number")


def integer(data: Mapping[str, Any], name: str, where: str, *, optional: bool = False) -> int | None:
    """An int that is not a bool (or None when ``optional``); raises ``ValueError`` otherwise."""
    return _typed(data, name, where, optional, _is_integer, "an integer")


def text(data: Mapping[str, Any], name: str, where: str, *, optional: bool = False) -> str | None:
    """A str (or None when ``optional``); raises ``ValueError`` otherwise."""
    return _typed(data, name, where, optional, lambda value: isinstance(value, str), "a string")


def flag(data: Mapping[str, Any], name: str, where: str) -> bool:
    """A bool; raises ``ValueError`` otherwise."""
    return _typed(data, name, where, False, lambda value: isinstance(value, bool), "true or false")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed(
    data: Mapping[str, Any], name: str, where: str, optional: bool, accepts: Callable[[Any], bool], kind: str
) -> Any:
    """``data[name]`` when ``accepts`` it (or it is None and ``optional``); else ``ValueError`` saying it must be ``kind``."""
    value = key(data, name, where)
    if value is None and optional:
        return None
    if not accepts(value):
        raise ValueError(f"{where}.{name} must be {kind}{' or null' if optional else ''}, got {value!r}")
    return value


def one_of(value: Any, name: str, choices: Sequence[str], error: type[ValueError] = ValueError) -> Any:
    """``value`` when it is one of ``choices``; raises ``error`` naming ``name`` and the choices otherwise."""
    if value not in choices:
        raise error(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def integer_at_least(value: Any, name: str, minimum: int, error: type[ValueError] = ValueError) -> int:
    """``value`` when it is an int (not a bool) >= ``minimum``; raises ``error`` naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class ScalarRecord:
    """A dataclass of scalar fields whose JSON is its fields by name: :meth:`to_dict` writes it and
    :meth:`from_dict` reads it back, each field by its annotation (``float``, ``int``, ``str`` or
    ``bool``). A subclass sets ``WHERE``, the name its errors give the record."""

    WHERE = "record"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, one key per field."""
        from dataclasses import asdict

        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Any, where: str | None = None):
        """Returns the record :meth:`to_dict` wrote; raises ``ValueError`` naming the missing or bad key."""
        from dataclasses import fields

        where = where or cls.WHERE
        data = mapping(data, where)
        readers = {"float": number, "int": integer, "str": text, "bool": flag}
        return cls(**{field.name: readers[str(field.type)](data, field.name, where) for field in fields(cls)})
