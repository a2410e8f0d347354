"""Reading an ``/invocations`` request: its headers, its body's size and media type, and
:func:`parse_request`, which reads the body into columns checked against the model's signature.

The body's forms (MLflow's scoring protocol, CSV and Parquet) are read by
:mod:`include.serving.payload`; the signature's columns, and the typing of each column's
values, are :mod:`include.serving.columns`. The names other modules import from here
(:class:`RequestRejected`, :class:`FeatureColumn`, :func:`feature_columns`,
:func:`nullable_features`, :func:`parse_json`, ...) are re-exported from those modules.

Request ids and event times
    ``X-Request-ID`` (1-128 printable ASCII characters, no spaces) names the request,
    else a fresh uuid4 does; ``X-Request-Time`` (ISO 8601 with a UTC offset) stands for
    the time the request was received, which lets a replay log traffic at the times it
    stands for. A malformed header gets a 400.

Every check raises :class:`RequestRejected`, which carries the HTTP status and
``error_code`` the app answers with.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request

from include.serving.columns import FeatureColumn as FeatureColumn
from include.serving.columns import RequestRejected as RequestRejected
from include.serving.columns import _typed_column
from include.serving.columns import feature_columns as feature_columns
from include.serving.columns import nullable_features as nullable_features
from include.serving.payload import INPUT_FORMATS as INPUT_FORMATS
from include.serving.payload import PARAMS_KEY as PARAMS_KEY
from include.serving.payload import _columns, _params, _read_table, _table_columns
from include.serving.payload import parse_json as parse_json

JSON = "application/json"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
MEDIA_TYPES = (JSON, CSV, PARQUET)
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_TIME_HEADER = "X-Request-Time"
MAX_REQUEST_ID_LENGTH = 128


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


@dataclass(frozen=True)
class ParsedRequest:
    """A request's columns (see :func:`parse_request`) and its ``params`` (None when it sent none)."""

    columns: dict[str, Any]
    params: dict[str, Any] | None = None
    kept: list | None = None  # the raw values of the column asked for with ``keep``, when the request has it


def parse_columns(
    body: bytes, signature: tuple[FeatureColumn, ...] | None, max_rows: int, media_type: str = "application/json"
) -> dict[str, Any]:
    """The columns of :func:`parse_request`, without the ``params``."""
    return parse_request(body, signature, max_rows, media_type).columns


def parse_request(
    body: bytes,
    signature: tuple[FeatureColumn, ...] | None,
    max_rows: int,
    media_type: str = "application/json",
    keep: str | None = None,
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

    ``keep`` names a column whose values, as the request sent them (one per row), come back as
    ``kept`` whether or not the signature has it (a canary's sticky column); None when absent.
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
    kept = None if keep is None else values.get(keep)
    if signature is None:
        return ParsedRequest(values, params, kept)
    absent = [column.name for column in signature if column.name not in values]
    if absent:
        raise RequestRejected(
            422,
            "MISSING_COLUMNS",
            f"missing feature columns: {', '.join(absent)} "
            f"(the model needs {', '.join(column.name for column in signature)})",
        )
    typed = {column.name: _typed_column(column, values[column.name]) for column in signature}
    return ParsedRequest(typed, params, kept)


def row_count(columns: Mapping[str, Any]) -> int:
    """The number of rows in parsed ``columns`` (0 when there are no columns)."""
    return len(next(iter(columns.values()))) if columns else 0
