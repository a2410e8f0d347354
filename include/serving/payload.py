"""The bodies of an ``/invocations`` request, read into columns: MLflow's JSON input forms,
a CSV table and a Parquet file.

Bodies follow MLflow's scoring protocol (``mlflow models serve``), whole: a JSON object with
exactly one of ``dataframe_split`` (``{"columns", "data", "index"}``), ``dataframe_records``
(a list of ``{column: value}``), ``instances`` or ``inputs`` (each a list of records, an
object of columns ``{column: [values]}``, or one record ``{column: value}``; a record of
``instances`` must hold every column another one holds, as MLflow requires), and an optional
``params`` object; other keys are ignored, as MLflow ignores them. JSON's bare ``NaN`` (a
missing value), ``Infinity`` and ``-Infinity`` are read as MLflow's parser reads them. A
``text/csv`` body (header, then rows; an empty field, ``NA`` or ``NaN`` is missing) and a
Parquet body are read with pandas, as MLflow reads them.

Each reader returns the values of each column as a list, in the order the request names
them; typing them against the signature is :mod:`include.serving.columns`' job. Every check
raises :class:`~include.serving.columns.RequestRejected`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from include.serving.columns import _KIND_WORDS, FeatureColumn, RequestRejected
from include.util.text import rows_text

INPUT_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"


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
