"""The model signature's feature columns, and the typing of a request's values against them.

:func:`feature_columns` reads the named input columns of a model's signature
(:class:`FeatureColumn`); :func:`_typed_column` checks and types one column of a request's
values as its signature column declares it. :class:`RequestRejected` is the error every
check of a request raises (here, in :mod:`include.serving.payload` and in
:mod:`include.serving.request`), carrying the HTTP status and ``error_code`` the app
answers with.

Request values
    A feature the signature declares a double or a string is typed by the one cast
    at the data boundary (:mod:`include.data.cast`), the very one that builds the
    registered model's input everywhere else: a numeric feature may come as a JSON
    number or a numeric string, a categorical one as a string or a number
    (``2``, ``2.0`` and ``"2"`` are the category ``"2"``). A column is ``nullable``
    when the dataset spec makes the feature ``nullable`` (the list travels with the version
    as the model metadata ``nullable_features``; a model without it: see
    :func:`feature_columns` and :func:`include.serving.model.load_served_model`). A missing
    value elsewhere (null, ``NaN``, a key a record leaves out, an empty CSV field), or a
    signature column the request leaves out, gets a 422 naming the column.
    Booleans, lists and objects, and a string that is not
    a number in a numeric feature, get a 422 naming the column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from include.data.cast import CastError, categorical_column, numeric_column
from include.util.text import rows_text


class RequestRejected(Exception):
    """A request the server refuses, with the HTTP status and a message for the client.

    ``status_code`` is a 4xx, ``error_code`` a constant such as ``"BAD_REQUEST"`` and
    ``message`` says what was wrong and how to fix it.
    """

    def __init__(self, status_code: int, error_code: str, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class FeatureColumn:
    """One named input column of a model's signature, as the server checks it."""

    name: str
    kind: str  # "float", "int", "bool", "str" or "other" (left to MLflow's schema enforcement)
    dtype: Any
    required: bool  # the request must hold the column
    nullable: bool = False  # null is a value the model answers for


_KINDS = {
    "double": ("float", np.float64),
    "float": ("float", np.float32),
    "long": ("int", np.int64),
    "integer": ("int", np.int32),
    "boolean": ("bool", np.bool_),
    "string": ("str", object),
}
_KIND_WORDS = {"float": "numbers", "int": "whole numbers", "bool": "true/false values", "str": "strings"}


def feature_columns(pyfunc_model) -> tuple[FeatureColumn, ...] | None:
    """The named input columns of ``pyfunc_model``'s signature, in signature order.

    Returns None when the model has no column signature to check against (none at
    all, a tensor spec, or unnamed inputs). A column is ``nullable`` when the model's
    metadata lists it among the dataset spec's nullable features (``nullable_features``,
    which the project's training logs); a model without that entry has its nullable
    columns from its signature, which marks them optional. Raises nothing of its own.
    """

    schema = pyfunc_model.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    nullable = nullable_features(pyfunc_model)
    columns = []
    for spec in schema.inputs:
        type_name = getattr(spec.type, "name", None)
        kind, dtype = _KINDS.get(type_name, ("other", object))
        required = bool(getattr(spec, "required", True))
        columns.append(
            FeatureColumn(
                spec.name, kind, dtype, required, nullable=not required if nullable is None else spec.name in nullable
            )
        )
    return tuple(columns)


def nullable_features(pyfunc_model) -> frozenset[str] | None:
    """The dataset spec's nullable features as the model's metadata records them, or None when it
    holds no such record (a model logged elsewhere, or before the record was logged)."""
    from include.training import NULLABLE_FEATURES_METADATA

    metadata = getattr(pyfunc_model.metadata, "metadata", None) or {}
    names = metadata.get(NULLABLE_FEATURES_METADATA)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return frozenset(names)


def _typed_column(column: FeatureColumn, values: list) -> Any:
    if column.kind == "other":
        return values
    if column.kind in ("float", "str"):
        return _cast_column(column, values)
    if column.kind == "int":
        wrong = [
            index
            for index, value in enumerate(values)
            if type(value) not in (int, float) and not (value is None and column.nullable)
        ]
    else:  # "bool"
        wrong = [index for index, value in enumerate(values) if type(value) is not bool]
    if wrong:
        absent = [index for index in wrong if values[index] is None]
        if absent:
            raise _missing_values(column, absent)
        example = values[wrong[0]]
        raise RequestRejected(
            422,
            "WRONG_TYPE",
            f"column {column.name!r} must hold {_KIND_WORDS[column.kind]}; "
            f"rows {rows_text(wrong)} do not (e.g. {example!r})",
        )
    if column.kind == "int":
        fractional = [index for index, value in enumerate(values) if type(value) is float and not value.is_integer()]
        if fractional:
            raise RequestRejected(
                422,
                "WRONG_TYPE",
                f"column {column.name!r} must hold whole numbers; rows {rows_text(fractional)} do not",
            )
    try:
        return np.array(
            [np.nan if value is None else value for value in values] if column.nullable else values, dtype=column.dtype
        )
    except (OverflowError, ValueError, TypeError) as exc:
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r}: {exc}") from None


def _missing_values(column: FeatureColumn, rows: list[int]) -> RequestRejected:
    return RequestRejected(
        422,
        "MISSING_VALUES",
        f"column {column.name!r} is missing or null in rows {rows_text(rows)}; it is not a nullable feature, "
        "so every row needs a value",
    )


_JSON_NUMBERS = frozenset((int, float))
_JSON_FEATURE_VALUES = frozenset((int, float, str, type(None)))


def _cast_column(column: FeatureColumn, values: list) -> np.ndarray:
    """A numeric (double) or categorical (string) feature typed by :mod:`include.data.cast`, the cast
    that builds the registered model's input everywhere else, so that ``2``, ``2.0`` and ``"2"``
    are one category and ``12`` and ``"12"`` one number, here as in training."""
    numeric = column.kind == "float"
    # JSON's scalars: only numbers, text and null can be a feature's value
    kinds = set(map(type, values))
    numbers = kinds <= _JSON_NUMBERS
    absent = type(None) in kinds
    wrong = (
        []
        if kinds <= _JSON_FEATURE_VALUES
        else [index for index, value in enumerate(values) if type(value) not in _JSON_FEATURE_VALUES]
    )
    if absent and not column.nullable:
        raise _missing_values(column, [index for index, value in enumerate(values) if value is None])
    if wrong:
        words = "numbers" if numeric else "strings (or numbers, for integer-coded categories)"
        raise RequestRejected(
            422,
            "WRONG_TYPE",
            f"column {column.name!r} must hold {words}"
            f"{' or null' if column.nullable else ''}; rows {rows_text(wrong)} do not "
            f"(e.g. {values[wrong[0]]!r})",
        )
    try:
        if numeric:
            # JSON numbers are already numbers: a float64 array is what the cast makes of them (its
            # fast path); text and nulls go through its general path
            container = np.array(values, dtype=np.float64) if numbers else _object_array(values)
            typed = numeric_column(container, column.name)
        else:
            return categorical_column(_object_array(values), column.name)
    except CastError as exc:
        raise RequestRejected(
            422, "WRONG_TYPE", f"column {column.name!r} must hold numbers{' or null' if column.nullable else ''}: {exc}"
        ) from None
    except (OverflowError, ValueError, TypeError) as exc:
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r}: {exc}") from None
    finite = np.isfinite(typed)
    if not finite.all():
        # NaN: a null, or text that spells one ("NaN", a CSV's empty field); else an infinity
        missing = np.isnan(typed)
        if missing.any() and not column.nullable:
            raise _missing_values(column, np.flatnonzero(missing).tolist())
        infinite = np.flatnonzero(~finite & ~missing).tolist()
        if infinite:
            raise RequestRejected(
                422,
                "WRONG_TYPE",
                f"column {column.name!r} must hold finite numbers; rows {rows_text(infinite)} do not "
                f"(e.g. {values[infinite[0]]!r})",
            )
    return typed.astype(column.dtype, copy=False)


def _object_array(values: list) -> np.ndarray:
    # np.array would turn a list of equal-length strings into a fixed-width str dtype
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
