"""Reading an ``/invocations`` request: its body, its headers and its columns, checked
against the model's signature.

Bodies follow MLflow's scoring protocol (``mlflow models serve``), whole: a JSON object with
exactly one of ``dataframe_split`` (``{"columns", "data", "index"}``), ``dataframe_records``
(a list of ``{column: value}``), ``instances`` or ``inputs`` (each a list of records, an
object of columns ``{column: [values]}``, or one record ``{column: value}``; a record of
``instances`` must hold every column another one holds, as MLflow requires), and an optional
``params`` object; other keys are ignored, as MLflow ignores them. JSON's bare ``NaN`` (a
missing value), ``Infinity`` and ``-Infinity`` are read as MLflow's parser reads them. A
``text/csv`` body (header, then rows; an empty field, ``NA`` or ``NaN`` is missing) and a
Parquet body are read with pandas, as MLflow reads them.

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

Request ids and event times
    ``X-Request-ID`` (1-128 printable ASCII characters, no spaces) names the request,
    else a fresh uuid4 does; ``X-Request-Time`` (ISO 8601 with a UTC offset) stands for
    the time the request was received, which lets a replay log traffic at the times it
    stands for. A malformed header gets a 400.

Every check raises :class:`RequestRejected`, which carries the HTTP status and
``error_code`` the app answers with.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from fastapi import Request

from include.data.cast import CastError, categorical_column, numeric_column
from include.util.text import rows_text

INPUT_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"
JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES = (JSON, CSV, PARQUET)
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_TIME_HEADER = "X-Request-Time"
MAX_REQUEST_ID_LENGTH = 128


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


# ---------------------------------------------------------------------------- headers


def request_id_of(request: Request) -> str:
    """The client's ``X-Request-ID`` (the client then keeps it unique), or a fresh uuid4
    (36 characters) when it sent none.

    Raises :class:`RequestRejected` (400 ``BAD_REQUEST_ID``) for a header that is empty,
    longer than 128 characters, or holds spaces or non-printable or non-ASCII characters.
    """
    given = request.headers.get(REQUEST_ID_HEADER)
    if given is None:
        return str(uuid.uuid4())
    if not 0 < len(given) <= MAX_REQUEST_ID_LENGTH or not (given.isascii() and given.isprintable()) or " " in given:
        raise RequestRejected(
            400,
            "BAD_REQUEST_ID",
            f"{REQUEST_ID_HEADER} must be 1-{MAX_REQUEST_ID_LENGTH} "
            f"printable ASCII characters without spaces, got {given[:MAX_REQUEST_ID_LENGTH]!r}",
        )
    return given


def event_time_of(request: Request) -> datetime:
    """The client's ``X-Request-Time`` (to replay or simulate traffic), else now: an aware UTC datetime.

    Raises :class:`RequestRejected` (400 ``BAD_REQUEST_TIME``) when the header is not an
    ISO 8601 time with a UTC offset.
    """
    given = request.headers.get(REQUEST_TIME_HEADER)
    if given is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(given.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise RequestRejected(
            400,
            "BAD_REQUEST_TIME",
            f"{REQUEST_TIME_HEADER} must be an ISO 8601 time with a "
            f"UTC offset, such as 2026-11-10T08:30:00Z; got {given[:64]!r}",
        )
    return parsed.astimezone(UTC)


async def read_body(request: Request, max_body_bytes: int) -> bytes:
    """The whole request body, at most ``max_body_bytes`` bytes.

    Raises :class:`RequestRejected` (413 ``BODY_TOO_LARGE``) as soon as the declared
    ``Content-Length`` or the bytes read so far exceed the limit, without reading the rest.
    """
    too_large = RequestRejected(
        413, "BODY_TOO_LARGE", f"the request body is larger than {max_body_bytes} bytes; split it into smaller batches"
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    # a chunked upload declares no length, so the limit is enforced while reading
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


# ------------------------------------------------------------------------------- body


def media_type_of(request: Request) -> str:
    """The request body's media type: :data:`JSON`, :data:`CSV` or :data:`PARQUET` (no ``Content-Type``: JSON).

    Raises :class:`RequestRejected` (415 ``UNSUPPORTED_MEDIA_TYPE``) for another type, a
    ``charset`` other than UTF-8, or a parameter other than ``charset``, as MLflow's scoring
    server does.
    """
    content_type = request.headers.get("content-type")
    if not content_type:
        return JSON
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    media_type = media_type.lower()
    if media_type == "text/json":
        media_type = JSON
    if media_type not in MEDIA_TYPES:
        raise RequestRejected(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"the body must be {', '.join(MEDIA_TYPES)}, got {content_type[:100]!r}",
        )
    for parameter in filter(None, parameters):
        key, _, value = parameter.partition("=")
        key, value = key.strip().lower(), value.strip().strip('"').lower()
        if key != "charset":
            raise RequestRejected(
                415, "UNSUPPORTED_MEDIA_TYPE", f"unrecognised Content-Type parameter {key!r}; only charset is allowed"
            )
        if value not in ("utf-8", "utf8"):
            raise RequestRejected(415, "UNSUPPORTED_MEDIA_TYPE", f"the body must be UTF-8, got charset {value!r}")
    return media_type


def _json_constant(name: str) -> float | None:
    # MLflow's parser (Python's json) reads the bare tokens NaN, Infinity and -Infinity; NaN is a
    # missing value, as pandas makes it one in a float column (an infinity is refused by its column)
    return None if name == "NaN" else float(name)


def parse_json(body: bytes) -> Any:
    """The JSON value of ``body``; the bare tokens ``NaN`` (read as null), ``Infinity`` and
    ``-Infinity`` (read as floats) are accepted, as MLflow's parser accepts them.

    Raises :class:`RequestRejected`: 400 ``BAD_REQUEST`` for an empty body,
    400 ``MALFORMED_JSON`` for one that is not valid UTF-8 JSON.
    """
    if not body.strip():
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            f"request body is empty; send a JSON object with one of the keys {', '.join(INPUT_FORMATS)}",
        )
    try:
        return json.loads(body, parse_constant=_json_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRejected(400, "MALFORMED_JSON", f"request body is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class ParsedRequest:
    """A request's columns (see :func:`parse_request`) and its ``params`` (None when it sent none)."""

    columns: dict[str, Any]
    params: dict[str, Any] | None = None


def parse_columns(
    body: bytes, signature: tuple[FeatureColumn, ...] | None, max_rows: int, media_type: str = "application/json"
) -> dict[str, Any]:
    """The columns of :func:`parse_request`, without the ``params``."""
    return parse_request(body, signature, max_rows, media_type).columns


def parse_request(
    body: bytes, signature: tuple[FeatureColumn, ...] | None, max_rows: int, media_type: str = "application/json"
) -> ParsedRequest:
    """The request's columns, one entry per column, each with one value per row (1 to ``max_rows`` rows),
    and its ``params``.

    ``body`` is a JSON body in one of MLflow's forms (:data:`INPUT_FORMATS`, see the module
    docstring), a CSV table (``text/csv``) or a Parquet file, as ``media_type`` says.
    With a ``signature`` (:func:`feature_columns`), the columns come in signature order,
    each a numpy array typed as the signature declares it (float64 with NaN for a
    null numeric value, object holding str or None for a categorical one; ``other``
    columns stay lists); columns the signature does not name are dropped, as MLflow's
    schema enforcement drops them. Without one, each column is the list of values,
    in the order the request first names them.

    Raises :class:`RequestRejected`: 400 for a body that is not one of the forms or
    has no rows, 413 ``TOO_MANY_ROWS`` above ``max_rows``, 422 ``MISSING_COLUMNS``,
    ``MISSING_VALUES`` or ``WRONG_TYPE`` for values the signature does not allow.
    """
    params = None
    if media_type == CSV:
        values = _table_columns(_read_table(body, "csv"), max_rows, signature)
    elif media_type == PARQUET:
        values = _table_columns(_read_table(body, "parquet"), max_rows, signature)
    else:
        payload = parse_json(body)
        values = _columns(payload, max_rows)
        params = _params(payload)
    if signature is None:
        return ParsedRequest(values, params)
    absent = [column.name for column in signature if column.name not in values]
    if absent:
        raise RequestRejected(
            422,
            "MISSING_COLUMNS",
            f"missing feature columns: {', '.join(absent)} "
            f"(the model needs {', '.join(column.name for column in signature)})",
        )
    return ParsedRequest({column.name: _typed_column(column, values[column.name]) for column in signature}, params)


def row_count(columns: Mapping[str, Any]) -> int:
    """The number of rows in parsed ``columns`` (0 when there are no columns)."""
    return len(next(iter(columns.values()))) if columns else 0


def _params(payload: dict) -> dict[str, Any] | None:
    params = payload.get(PARAMS_KEY)
    if params is not None and not isinstance(params, dict):
        raise RequestRejected(
            400, "BAD_REQUEST", f"'params' must be an object of name: value, got a JSON {type(params).__name__}"
        )
    return params


def _read_table(body: bytes, kind: str):
    """A CSV or Parquet body as a DataFrame, read as MLflow's scoring server reads it (pandas' reader)."""
    import io

    import pandas as pd

    if not body.strip():
        raise RequestRejected(400, "BAD_REQUEST", f"request body is empty; send a {kind.upper()} table with a header")
    try:
        if kind == "csv":
            # every value as its text (an empty field, NA or NaN: missing), typed by the feature's own cast
            return pd.read_csv(io.BytesIO(body), dtype=str, encoding="utf-8")
        return pd.read_parquet(io.BytesIO(body))
    except Exception as exc:  # pandas' and pyarrow's parse errors share no base class
        raise RequestRejected(
            400, "BAD_REQUEST", f"request body is not a {kind.upper()} table: {type(exc).__name__}: {exc}"
        ) from None


def _table_columns(frame, max_rows: int, signature: tuple[FeatureColumn, ...] | None) -> dict[str, list]:
    names = [str(name) for name in frame.columns]
    if len(set(names)) != len(names):
        raise RequestRejected(400, "BAD_REQUEST", "the table names a column twice")
    _check_row_count(len(frame), max_rows)
    kinds = {column.name: column.kind for column in signature or ()}
    columns = {}
    for name, label in zip(names, frame.columns, strict=True):
        series = frame[label]
        if series.dtype == object and kinds.get(name) in ("int", "bool"):
            series = _text_values(series, name, kinds[name])
        # a missing value (an empty field, NA, NaN, None) is null, as a JSON null is
        columns[name] = series.astype(object).where(series.notna(), None).tolist()
    return columns


def _text_values(series, name: str, kind: str):
    """A CSV column of text as the whole numbers or true/false values a signature's column declares."""
    import pandas as pd

    present = series.notna()
    if kind == "bool":
        typed = series.str.strip().str.lower().map({"true": True, "false": False})
    else:
        typed = pd.to_numeric(series, errors="coerce").astype(object)
    wrong = np.flatnonzero((present & typed.isna()).to_numpy()).tolist()
    if wrong:
        raise RequestRejected(
            422,
            "WRONG_TYPE",
            f"column {name!r} must hold {_KIND_WORDS[kind]}; rows {rows_text(wrong)} do not "
            f"(e.g. {series.iloc[wrong[0]]!r})",
        )
    return typed.where(present, None)


def _columns(payload: Any, max_rows: int) -> dict[str, list]:
    """The values of each column, in request order, from any of the JSON input forms."""
    if not isinstance(payload, dict):
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            "expected a JSON object with one of the keys "
            f"{', '.join(INPUT_FORMATS)}, got a JSON {type(payload).__name__}",
        )
    formats = [key for key in INPUT_FORMATS if key in payload]
    if len(formats) != 1:
        found = ", ".join(sorted(payload)) or "none"
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            f"expected exactly one of the keys {', '.join(INPUT_FORMATS)} "
            f"(MLflow's scoring protocol), found keys: {found}",
        )
    input_format = formats[0]
    body = payload[input_format]
    if input_format == "dataframe_split":
        return _split_columns(body, max_rows)
    if input_format == "dataframe_records":
        if not isinstance(body, list):
            raise RequestRejected(
                400,
                "BAD_REQUEST",
                "'dataframe_records' must be a list of objects, one per row, such as [{\"feature\": 1.0}]",
            )
        return _record_columns(body, input_format, max_rows)
    # "instances" and "inputs": a list of records, an object of columns, or one record
    if isinstance(body, list):
        return _record_columns(body, input_format, max_rows, same_keys=input_format == "instances")
    if isinstance(body, dict):
        return _object_columns(body, input_format, max_rows)
    raise RequestRejected(
        400,
        "BAD_REQUEST",
        f"'{input_format}' must be a list of objects (one per row), an object of columns "
        f"(column: list of values) or one object (one row); got a JSON {type(body).__name__}",
    )


def _record_columns(body: list, input_format: str, max_rows: int, same_keys: bool = False) -> dict[str, list]:
    _check_row_count(len(body), max_rows)
    not_objects = [index for index, row in enumerate(body) if type(row) is not dict]
    if not_objects:
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            f"each entry of '{input_format}' must be an object of column: value; rows {rows_text(not_objects)} are not",
        )
    names: dict[str, None] = {}
    for row in body:
        names.update(dict.fromkeys(row))
    if same_keys:
        # MLflow turns 'instances' records into columns and refuses columns of unequal length
        short = [name for name in names if any(name not in row for row in body)]
        if short:
            raise RequestRejected(
                400,
                "BAD_REQUEST",
                f"every record of 'instances' must hold the same columns; {', '.join(short)} "
                "are missing from some (send null for a missing value)",
            )
    # a key a record leaves out is a missing value, as pandas makes it one
    return {name: [row.get(name) for row in body] for name in names}


def _object_columns(body: dict, input_format: str, max_rows: int) -> dict[str, list]:
    """An object of columns (each a list of values), or one record (each a scalar)."""
    if not body:
        raise RequestRejected(400, "BAD_REQUEST", "the request has no rows to predict")
    lists = [type(value) is list for value in body.values()]
    if not any(lists):
        return {name: [value] for name, value in body.items()}
    if not all(lists):
        scalars = [name for name, value in body.items() if type(value) is not list]
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            f"'{input_format}' mixes columns (lists) and single values ({', '.join(scalars)}); "
            "send every column as a list of values, one per row",
        )
    lengths = {len(value) for value in body.values()}
    if len(lengths) != 1:
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            f"the columns of '{input_format}' must hold one value per row each; their lengths differ: "
            + ", ".join(f"{name} {len(value)}" for name, value in body.items()),
        )
    _check_row_count(lengths.pop(), max_rows)
    return dict(body)


def _split_columns(body: Any, max_rows: int) -> dict[str, list]:
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("columns"), list)
        or not isinstance(body.get("data"), list)
    ):
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            "'dataframe_split' must be an object with 'columns' "
            "(a list of names) and 'data' (a list of rows, each a list of values)",
        )
    extra = sorted(set(body) - {"columns", "data", "index"})
    if extra:
        raise RequestRejected(400, "BAD_REQUEST", f"'dataframe_split' has unexpected keys: {', '.join(extra)}")
    columns, data = body["columns"], body["data"]
    if not all(isinstance(name, str) for name in columns):
        raise RequestRejected(400, "BAD_REQUEST", "'dataframe_split.columns' must be a list of strings")
    if len(set(columns)) != len(columns):
        raise RequestRejected(400, "BAD_REQUEST", "'dataframe_split.columns' names a column twice")
    _check_row_count(len(data), max_rows)
    wrong_width = [index for index, row in enumerate(data) if type(row) is not list or len(row) != len(columns)]
    if wrong_width:
        raise RequestRejected(
            400,
            "BAD_REQUEST",
            f"each row of 'dataframe_split.data' must be a list of "
            f"{len(columns)} values (one per column); rows {rows_text(wrong_width)} are not",
        )
    by_column = list(zip(*data, strict=False)) if columns else []
    return {name: list(column) for name, column in zip(columns, by_column, strict=False)}


def _check_row_count(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestRejected(400, "BAD_REQUEST", "the request has no rows to predict")
    if rows > max_rows:
        raise RequestRejected(
            413,
            "TOO_MANY_ROWS",
            f"the request has {rows} rows, more than the "
            f"{max_rows} this server accepts in one request; split it into batches",
        )


# ------------------------------------------------------------------------------ types


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
