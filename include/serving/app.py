"""HTTP serving of one registered model version, with in-place reload.

The request and response bodies follow MLflow's scoring server
(``dataframe_records`` / ``dataframe_split`` in, ``{"predictions": [...]}`` out),
so a client written against ``mlflow models serve`` works unchanged; the
response adds ``model_version`` (and the ``X-Model-Version`` header) so that a
caller always knows which version answered.

Answers
    ``predictions`` holds one record per row with every output column of the model
    (:func:`include.training.model.output_columns`): ``{"probability", "prediction"}``
    for a binary model (P(positive class), label 0/1); ``{"prediction", "probability",
    "probability_<class>"...}`` for a multiclass one (the class name, its probability,
    then every class's); ``{"prediction"}`` for a regression one. Another pyfunc's
    output frame is answered column for column (``prediction``, ``probability`` and
    ``probability_<class>``; other columns are left out), once checked: one row per
    input row, finite numbers, probabilities in [0, 1], and a label in {0, 1} when
    it has the binary shape (``probability`` without ``probability_<class>``).

Request values
    A feature the signature declares a double or a string is typed by the one cast
    at the data boundary (:mod:`include.data.cast`), the very one that builds the
    registered model's input everywhere else: a numeric feature may come as a JSON
    number or a numeric string, a categorical one as a string or a number
    (``2``, ``2.0`` and ``"2"`` are the category ``"2"``). The project's own model
    answers null in any feature (it imputes a missing number and encodes a missing
    category as none of them, exactly as on the cast frame); another pyfunc gets
    null only where its signature marks a column optional. Booleans, lists and
    objects, and a string that is not a number in a numeric feature, get a 422
    naming the column.

Every bad request gets a 4xx with ``{"error_code", "message"}``; a model that
fails while predicting gets a 500 with the same shape; neither stops the server.

Request ids and event times
    Every ``/invocations`` request has an id: the client's ``X-Request-ID`` header
    (1-128 printable ASCII characters, no spaces; the client then keeps it unique),
    else a fresh uuid4. Each predicted row gets ``<id>`` in a one-row request and
    ``<id>-<row>`` (row counted from 0) otherwise; the response lists them in
    ``request_ids`` and echoes the id in ``X-Request-ID``. The row's event time is
    when the server received the request, or the client's ``X-Request-Time`` header:
    an ISO 8601 time with a UTC offset (``2026-11-10T08:30:00Z``), which lets a
    replay or a simulation log traffic at the times it stands for. A malformed
    header gets a 400.

Inference log
    With an inference log root, each answered row (features as the model received
    them, every output column, ids and event time) goes to an
    :class:`~include.monitoring.inference_log.InferenceLogWriter`: buffered in
    memory, written by a background thread, flushed on shutdown. A failing log is
    logged and counted in the metrics; it never fails a request.

Batching
    The project's own model is called on the parsed columns directly (the server has
    checked them against the signature; see :class:`ServedModel`), and small requests
    that arrive together share one model call (:class:`MicroBatcher`): under load the
    model runs once per turn of the event loop rather than once per request. Each
    request still gets exactly its own answer, logs its own rows and counts in the
    metrics as one request. Other pyfunc models are predicted one request at a time
    through MLflow's ``predict``.

Metrics
    ``GET /metrics`` answers in the Prometheus text format from a registry of the
    app's own (several apps in one process do not clash):
    ``model_requests_total{status}`` (by HTTP status code),
    ``model_request_errors_total`` (requests answered without predictions, 4xx and
    5xx alike; the status label tells them apart), ``model_request_latency_seconds``,
    ``model_prediction_probability`` (each row's ``probability``: P(positive class)
    for a binary model, the predicted class's for a multiclass one; a regression
    model observes nothing), ``model_predictions_total{prediction}`` (rows by
    predicted label or class; a regression model's values are not counted),
    ``model_served_version{model_name,version}`` (1 for the version now served),
    ``model_batch_requests`` (requests answered by each shared model call),
    ``inference_log_enabled``, ``inference_log_rows_written_total``,
    ``inference_log_write_errors_total``, ``inference_log_rows_dropped_total`` and
    ``inference_log_rows_pending``.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from bisect import bisect_left
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from include.data.cast import CastError, categorical_column, numeric_column
from include.registry import model_uri
from include.serving import validate_version

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
INPUT_FORMATS = ("dataframe_records", "dataframe_split")
# Prediction is CPU-bound and holds the GIL, so a worker thread buys no parallelism;
# it only keeps the event loop free. For a small body (a few rows: ~60 us of parsing,
# well under a millisecond in the model) the hop to a thread and back (~60-80 us here)
# is pure overhead, so it runs inline; a larger body goes to a thread so that a big
# batch does not stall /health and the other connections while it is predicted.
INLINE_BODY_BYTES = 16 * 1024
# Concurrent small requests for the project's model share one model call (MicroBatcher):
# at most this many rows per call, gathered without waiting unless a wait is configured
DEFAULT_BATCH_MAX_ROWS = 256
DEFAULT_BATCH_MAX_WAIT_MS = 0.0
MAX_BATCH_WAIT_SECONDS = 0.010
_ERRORS_SHOWN = 5
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_TIME_HEADER = "X-Request-Time"
MAX_REQUEST_ID_LENGTH = 128
# serving latencies are a few milliseconds: the client library's default buckets start at 5 ms
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0)
PROBABILITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class RequestRejected(Exception):
    """A request the server refuses, with the HTTP status and a message for the client."""

    def __init__(self, status_code: int, error_code: str, message: str):
        super().__init__(message)
        self.status_code = status_code
        self.error_code = error_code
        self.message = message


@dataclass(frozen=True)
class FeatureColumn:
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
    """The named input columns of the model's signature, or None when it has none to check against."""
    schema = pyfunc_model.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    columns = []
    for spec in schema.inputs:
        type_name = getattr(spec.type, "name", None)
        kind, dtype = _KINDS.get(type_name, ("other", object))
        required = bool(getattr(spec, "required", True))
        columns.append(FeatureColumn(spec.name, kind, dtype, required, nullable=not required))
    return tuple(columns)


# the output columns, in order (one array each, one value per row), for a mapping of typed columns
DirectPredictor = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class ServedModel:
    """One loaded version. Replaced as a whole on reload, never mutated, so a request
    that picked it up keeps a consistent model even while a reload swaps in another.

    ``direct`` is set when the version is the project's own model
    (:class:`~include.training.model.TabularModel`, any task) and the server checks and
    types every column of its signature itself: the model's ``predict_columns`` is then
    called on the typed columns, without the pyfunc wrapper's DataFrame and schema
    enforcement (which would repeat those checks and cost more than the prediction),
    and, since it predicts every row independently of the others, concurrent requests
    may share one call (:class:`MicroBatcher`). Its columns are then ``nullable``: the
    model answers a missing value as it does on the cast frame.
    """

    name: str
    version: str
    pyfunc: Any
    columns: tuple[FeatureColumn, ...] | None
    direct: DirectPredictor | None = None


def direct_predictor(pyfunc_model, columns: tuple[FeatureColumn, ...] | None) -> DirectPredictor | None:
    """The project model's own predict for ``pyfunc_model``, or None when the pyfunc path must be used."""
    if columns is None or any(column.kind == "other" or not column.required for column in columns):
        return None  # a column the server does not fully check is left to MLflow's schema enforcement
    try:
        python_model = pyfunc_model.unwrap_python_model()
    except Exception:  # not a PythonModel pyfunc: MLflow raises for other flavors
        return None
    from include.training.model import TabularModel

    if not isinstance(python_model, TabularModel) or not python_model.is_fitted:
        return None
    return python_model.predict_columns


def load_served_model(model_name: str, version: str, tracking_uri: str) -> ServedModel:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    pyfunc_model = mlflow.pyfunc.load_model(model_uri(model_name, version))
    columns = feature_columns(pyfunc_model)
    direct = direct_predictor(pyfunc_model, columns)
    if direct is not None:
        # the project's preprocessor imputes a missing number and encodes a missing category as
        # none of them: null is answered in every feature, as the registered model answers it
        columns = tuple(replace(column, nullable=True) for column in columns)
    return ServedModel(model_name, version, pyfunc_model, columns, direct)


# --------------------------------------------------------------------------- input


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(row) for row in rows[:_ERRORS_SHOWN])
    return shown + (f" and {len(rows) - _ERRORS_SHOWN} more" if len(rows) > _ERRORS_SHOWN else "")


def _reject_json_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (send null for a missing value)")


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise RequestRejected(400, "BAD_REQUEST", "request body is empty; send a JSON object with "
                              "'dataframe_records' or 'dataframe_split'")
    try:
        return json.loads(body, parse_constant=_reject_json_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestRejected(400, "MALFORMED_JSON", f"request body is not valid JSON: {exc}") from None


def _columns(payload: Any, max_rows: int) -> dict[str, list]:
    """The values of each column, in request order, from either input format."""
    if not isinstance(payload, dict):
        raise RequestRejected(400, "BAD_REQUEST", "expected a JSON object with one of the keys "
                              f"{', '.join(INPUT_FORMATS)}, got a JSON {type(payload).__name__}")
    formats = [key for key in INPUT_FORMATS if key in payload]
    unknown = sorted(set(payload) - set(INPUT_FORMATS))
    if len(formats) != 1 or unknown:
        found = ", ".join(sorted(payload)) or "none"
        raise RequestRejected(400, "BAD_REQUEST", f"expected exactly one of the keys {', '.join(INPUT_FORMATS)} "
                              f"(the MLflow scoring format), found keys: {found}")
    input_format = formats[0]
    body = payload[input_format]

    if input_format == "dataframe_records":
        if not isinstance(body, list):
            raise RequestRejected(400, "BAD_REQUEST", "'dataframe_records' must be a list of objects, "
                                  "one per row, such as [{\"feature\": 1.0}]")
        _check_row_count(len(body), max_rows)
        not_objects = [index for index, row in enumerate(body) if type(row) is not dict]
        if not_objects:
            raise RequestRejected(400, "BAD_REQUEST", "each entry of 'dataframe_records' must be an object "
                                  f"of column: value; rows {_rows_text(not_objects)} are not")
        names: dict[str, None] = {}
        for row in body:
            names.update(dict.fromkeys(row))
        values = {name: [row.get(name) for row in body] for name in names}
        return values

    if not isinstance(body, dict) or not isinstance(body.get("columns"), list) \
            or not isinstance(body.get("data"), list):
        raise RequestRejected(400, "BAD_REQUEST", "'dataframe_split' must be an object with 'columns' "
                              "(a list of names) and 'data' (a list of rows, each a list of values)")
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
        raise RequestRejected(400, "BAD_REQUEST", f"each row of 'dataframe_split.data' must be a list of "
                              f"{len(columns)} values (one per column); rows {_rows_text(wrong_width)} are not")
    by_column = list(zip(*data)) if columns else []
    return {name: list(column) for name, column in zip(columns, by_column)}


def _check_row_count(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise RequestRejected(400, "BAD_REQUEST", "the request has no rows to predict")
    if rows > max_rows:
        raise RequestRejected(413, "TOO_MANY_ROWS", f"the request has {rows} rows, more than the "
                              f"{max_rows} this server accepts in one request; split it into batches")


def _typed_column(column: FeatureColumn, values: list) -> Any:
    if column.kind == "other":
        return values
    if column.kind in ("float", "str"):
        return _cast_column(column, values)
    if column.kind == "int":
        wrong = [index for index, value in enumerate(values)
                 if type(value) not in (int, float) and not (value is None and column.nullable)]
    else:  # "bool"
        wrong = [index for index, value in enumerate(values) if type(value) is not bool]
    if wrong:
        absent = [index for index in wrong if values[index] is None]
        if absent:
            raise _missing_values(column, absent)
        example = values[wrong[0]]
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r} must hold {_KIND_WORDS[column.kind]}; "
                              f"rows {_rows_text(wrong)} do not (e.g. {example!r})")
    if column.kind == "int":
        fractional = [index for index, value in enumerate(values) if type(value) is float and not value.is_integer()]
        if fractional:
            raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r} must hold whole numbers; rows "
                                  f"{_rows_text(fractional)} do not")
    try:
        return np.array([np.nan if value is None else value for value in values]
                        if column.nullable else values, dtype=column.dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r}: {exc}") from None


def _missing_values(column: FeatureColumn, rows: list[int]) -> RequestRejected:
    return RequestRejected(422, "MISSING_VALUES", f"column {column.name!r} is missing or null in rows "
                           f"{_rows_text(rows)}; the model needs a value in every row")


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
    wrong = [] if kinds <= _JSON_FEATURE_VALUES else \
        [index for index, value in enumerate(values) if type(value) not in _JSON_FEATURE_VALUES]
    if absent and not column.nullable:
        raise _missing_values(column, [index for index, value in enumerate(values) if value is None])
    if wrong:
        words = "numbers" if numeric else "strings (or numbers, for integer-coded categories)"
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r} must hold {words}"
                              f"{' or null' if column.nullable else ''}; rows {_rows_text(wrong)} do not "
                              f"(e.g. {values[wrong[0]]!r})")
    try:
        if numeric:
            # JSON numbers are already numbers: a float64 array is what the cast makes of them (its
            # fast path); text and nulls go through its general path
            container = np.array(values, dtype=np.float64) if numbers else _object_array(values)
            return numeric_column(container, column.name).astype(column.dtype, copy=False)
        return categorical_column(_object_array(values), column.name)
    except CastError as exc:
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r} must hold numbers"
                              f"{' or null' if column.nullable else ''}: {exc}") from None
    except (OverflowError, ValueError, TypeError) as exc:
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r}: {exc}") from None


def _object_array(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def parse_request(body: bytes, served: ServedModel, max_rows: int) -> pd.DataFrame:
    """The model input described by an MLflow-format JSON body, checked against the model's signature."""
    return _as_frame(_parse_columns(body, served, max_rows))


def _parse_columns(body: bytes, served: ServedModel, max_rows: int) -> dict[str, Any]:
    """The request's columns: typed and checked against the model's signature when it has one
    (in signature order, unknown columns dropped as MLflow's schema enforcement drops them)."""
    values = _columns(parse_json(body), max_rows)
    if served.columns is None:
        return values
    absent = [column.name for column in served.columns if column.required and column.name not in values]
    if absent:
        raise RequestRejected(422, "MISSING_COLUMNS", f"missing feature columns: {', '.join(absent)} "
                              f"(the model needs {', '.join(column.name for column in served.columns)})")
    return {column.name: _typed_column(column, values[column.name])
            for column in served.columns if column.name in values}


def _as_frame(columns: dict[str, Any]) -> pd.DataFrame:
    # the frame shares the typed arrays; MLflow's schema enforcement hands the model a copy,
    # so they still hold what the client sent when the log writes them
    return pd.DataFrame(columns, copy=False)


# -------------------------------------------------------------------------- output


PROBABILITY = "probability"
PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"


def _is_output_column(name: Any) -> bool:
    return name in (PROBABILITY, PREDICTION) or (isinstance(name, str) and name.startswith(PROBABILITY_PREFIX)
                                                 and len(name) > len(PROBABILITY_PREFIX))


def _checked_output(output: Any, rows: int) -> dict[str, np.ndarray]:
    """The output columns of a pyfunc's frame (``probability``, ``prediction``, ``probability_<class>``,
    in its order), typed and checked; ValueError saying what is wrong."""
    if not isinstance(output, pd.DataFrame):
        raise ValueError(f"the model returned {type(output).__name__}, not a DataFrame with a "
                         "'prediction' column (and 'probability' for a classifier)")
    if PREDICTION not in output.columns:
        absent = [name for name in (PROBABILITY, PREDICTION) if name not in output.columns]
        raise ValueError(f"the model output lacks the column(s) {', '.join(absent)}")
    if len(output) != rows:
        raise ValueError(f"the model returned {len(output)} predictions for {rows} rows")
    names = [name for name in output.columns if _is_output_column(name)]
    if len(set(names)) != len(names):
        raise ValueError("the model output names a column twice")
    binary = _is_binary_shape(names)
    columns: dict[str, np.ndarray] = {}
    try:
        for name in names:
            if name != PREDICTION:
                columns[name] = output[name].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the model output is not numeric: {exc}") from None
    columns[PREDICTION] = _prediction_array(output[PREDICTION], binary)
    return _checked_columns({name: columns[name] for name in names}, rows)


def _is_binary_shape(names) -> bool:
    return PROBABILITY in names and not any(name.startswith(PROBABILITY_PREFIX) for name in names)


def _prediction_array(column: pd.Series, binary: bool) -> np.ndarray:
    """A pyfunc's ``prediction`` column: int64 labels, float64 values, or class names (object)."""
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(column):
        values = column.to_numpy(dtype=np.float64)
        if binary and np.isfinite(values).all() and np.all(np.mod(values, 1) == 0):
            return values.astype(np.int64)
        if binary:
            raise ValueError(f"the model's 'prediction' column holds {values.dtype} values, not integer labels")
        return values
    kind = pd.api.types.infer_dtype(column, skipna=False)
    if kind == "string":
        if binary:
            raise ValueError("the model's 'prediction' column holds text, not the integer labels 0/1 "
                             "of a binary output")
        return column.to_numpy(dtype=object)
    if kind == "integer":
        return column.to_numpy(dtype=np.int64)
    raise ValueError(f"the model's 'prediction' column holds {kind} values, not labels, class names or numbers")


def _checked_columns(columns: Mapping[str, np.ndarray], rows: int) -> Mapping[str, np.ndarray]:
    """``columns`` (the model's output) when it holds one finite value per row, probabilities
    in [0, 1] and, in the binary shape, labels in {0, 1}; InvalidModelOutput otherwise."""
    if PREDICTION not in columns:
        raise InvalidModelOutput(f"the model output lacks the column {PREDICTION!r}")
    for name, values in columns.items():
        if len(values) != rows:
            raise InvalidModelOutput(f"the model returned {len(values)} predictions for {rows} rows")
        if name == PREDICTION:
            continue
        within = (values >= 0) & (values <= 1)  # False for NaN
        if not within.all():
            bad = np.flatnonzero(~within).tolist()
            raise InvalidModelOutput(f"the model returned probabilities not finite in [0, 1] in column {name!r}, "
                                     f"rows {_rows_text(bad)} (e.g. {values[bad[0]]!r})")
    predictions = columns[PREDICTION]
    kind = predictions.dtype.kind
    if _is_binary_shape(columns):
        if kind not in "iub":
            raise InvalidModelOutput(f"the model's 'prediction' column holds {predictions.dtype} values, "
                                     "not integer labels")
        if not ((predictions == 0) | (predictions == 1)).all():
            bad = np.flatnonzero((predictions != 0) & (predictions != 1)).tolist()
            raise InvalidModelOutput(f"the model returned predictions not in {{0, 1}} in rows {_rows_text(bad)} "
                                     f"(e.g. {predictions[bad[0]]!r})")
    elif kind == "f":
        if not np.isfinite(predictions).all():
            raise InvalidModelOutput("the model returned non-finite predictions (NaN or infinity)")
    elif kind == "O":
        if not all(type(value) is str for value in predictions.tolist()):
            raise InvalidModelOutput("the model's 'prediction' column holds values that are not class names")
    elif kind not in "iu":
        raise InvalidModelOutput(f"the model's 'prediction' column holds {predictions.dtype} values")
    return columns


def _json_response(content: dict, status_code: int = 200, version: str | None = None,
                   request_id: str | None = None) -> Response:
    headers = {"X-Model-Version": version} if version else {}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return Response(json.dumps(content, separators=(",", ":")), status_code=status_code,
                    media_type="application/json", headers=headers or None)


def _error(status_code: int, error_code: str, message: str, version: str | None = None,
           request_id: str | None = None) -> Response:
    return _json_response({"error_code": error_code, "message": message}, status_code, version, request_id)


@dataclass(frozen=True)
class Answered:
    """A request that got its predictions: what the inference log and the metrics need of it."""

    features: Any  # the model's input columns (a mapping of arrays, or the frame itself)
    outputs: Mapping[str, np.ndarray]  # every output column, in answer order, one value per row
    row_ids: list[str]


def row_ids(request_id: str, rows: int) -> list[str]:
    """One id per predicted row: the request's own for a single row, ``<id>-<row>`` otherwise."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}-{index}" for index in range(rows)]


def answer(body: bytes, served: ServedModel, max_rows: int, request_id: str) -> tuple[Response, Answered | None]:
    """Parse, predict and encode one request; every outcome is a response, never an exception.

    The second item is None unless the request was answered with predictions.
    """
    try:
        columns = _parse_columns(body, served, max_rows)
    except RequestRejected as rejected:
        return _rejected(rejected, served, request_id), None
    if served.direct is not None:
        try:
            outputs = _checked_columns(served.direct(columns), _row_count(columns))
        except InvalidModelOutput as exc:
            return _output_invalid(exc, served, request_id), None
        except Exception as exc:
            return _model_failed(exc, served, request_id), None
        return _answered(columns, outputs, served, request_id)
    frame = _as_frame(columns)
    try:
        output = served.pyfunc.predict(frame)
    except Exception as exc:
        return _model_failed(exc, served, request_id), None
    try:
        outputs = _checked_output(output, len(frame))
    except ValueError as exc:
        return _output_invalid(exc, served, request_id), None
    # the log keeps the typed columns, or the frame itself for a model without a signature
    return _answered(frame if served.columns is None else columns, outputs, served, request_id)


async def answer_batched(body: bytes, served: ServedModel, max_rows: int, request_id: str,
                         batcher: "MicroBatcher") -> tuple[Response, Answered | None]:
    """:func:`answer` for a model with a direct predictor, its prediction shared with concurrent requests."""
    try:
        columns = _parse_columns(body, served, max_rows)
    except RequestRejected as rejected:
        return _rejected(rejected, served, request_id), None
    try:
        outputs = await batcher.predict(served, columns)
    except InvalidModelOutput as exc:
        return _output_invalid(exc, served, request_id), None
    except Exception as exc:
        return _model_failed(exc, served, request_id), None
    return _answered(columns, outputs, served, request_id)


def _rejected(rejected: RequestRejected, served: ServedModel, request_id: str) -> Response:
    logger.info("rejected request %s (%s): %s", request_id, rejected.status_code, rejected.message)
    return _error(rejected.status_code, rejected.error_code, rejected.message, served.version, request_id)


def _model_failed(exc: Exception, served: ServedModel, request_id: str) -> Response:
    from mlflow.exceptions import MlflowException

    version = served.version
    if isinstance(exc, MlflowException):
        # raised by MLflow's schema enforcement before the model runs: the input is at fault
        if getattr(exc, "error_class", None) == "SCHEMA_ENFORCEMENT_FAILED":
            logger.info("input of request %s does not match the model signature: %s", request_id, exc.message)
            return _error(422, "SCHEMA_MISMATCH", f"the input does not match the model's signature: "
                          f"{exc.message}", version, request_id)
        logger.error("model version %s failed to predict request %s", version, request_id, exc_info=exc)
        return _error(500, "MODEL_ERROR", f"the model failed to predict: {exc.message}", version, request_id)
    logger.error("model version %s failed to predict request %s", version, request_id, exc_info=exc)
    return _error(500, "MODEL_ERROR", f"the model failed to predict: {type(exc).__name__}: {exc}",
                  version, request_id)


def _output_invalid(exc: ValueError, served: ServedModel, request_id: str) -> Response:
    logger.error("model version %s returned an unusable output for request %s: %s", served.version, request_id, exc)
    return _error(500, "MODEL_OUTPUT_INVALID", str(exc), served.version, request_id)


def _answered(features: Any, outputs: Mapping[str, np.ndarray], served: ServedModel,
              request_id: str) -> tuple[Response, Answered]:
    names = list(outputs)
    ids = row_ids(request_id, len(outputs[PREDICTION]))
    if names == [PROBABILITY, PREDICTION]:  # binary, the common case: no per-row zip of names
        predictions = [{PROBABILITY: probability, PREDICTION: label} for probability, label
                       in zip(outputs[PROBABILITY].tolist(), outputs[PREDICTION].tolist())]
    else:
        predictions = [dict(zip(names, row)) for row in zip(*(outputs[name].tolist() for name in names))]
    response = _json_response({"predictions": predictions, "model_version": served.version, "request_ids": ids},
                              200, served.version, request_id)
    return response, Answered(features, outputs, ids)


class MicroBatcher:
    """Predicts the rows of concurrent requests in one model call, and hands each request its own rows.

    A request's parsed columns wait in a queue that is predicted as one batch on the
    event loop's next turn (or ``max_wait`` seconds later, when set, to let more
    requests join): the requests that arrived while the loop was reading, parsing
    or predicting the previous batch go together. One request alone is predicted
    at once, with no wait. The model predicts each row independently of the others,
    so every request gets exactly the answer it would get alone; if the shared call
    fails, each request of the batch is predicted alone, so that one request's bad
    input is never another request's error.
    """

    def __init__(self, max_rows: int, max_wait: float = 0.0, observe: Callable[[int, int], None] | None = None):
        if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
            raise ValueError(f"batch max_rows must be a positive integer, got {max_rows!r}")
        if not 0 <= max_wait <= MAX_BATCH_WAIT_SECONDS:
            raise ValueError(f"batch max_wait must be between 0 and {MAX_BATCH_WAIT_SECONDS} s, got {max_wait!r}")
        self.max_rows = max_rows
        self.max_wait = max_wait
        self._observe = observe or (lambda requests, rows: None)
        self._queue: list[tuple[ServedModel, dict[str, np.ndarray], int, Any]] = []
        self._flush_scheduled = False

    async def predict(self, served: ServedModel, columns: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """The output columns of ``columns``' rows (checked), predicted with whatever else is queued."""
        import asyncio

        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((served, columns, _row_count(columns), future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self.max_wait > 0:
                loop.call_later(self.max_wait, self._flush)
            else:
                loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        queue, self._queue = self._queue, []
        while queue:
            # one call per model object and column set (a reload may swap the model mid-queue), max_rows each
            served, columns, rows, _ = queue[0]
            keys = tuple(columns)
            batch, rest, batch_rows = [], [], 0
            for item in queue:
                fits = not batch or batch_rows + item[2] <= self.max_rows
                if item[0] is served and tuple(item[1]) == keys and fits:
                    batch.append(item)
                    batch_rows += item[2]
                else:
                    rest.append(item)
            queue = rest
            self._predict(batch, batch_rows)

    def _predict(self, batch: list, batch_rows: int) -> None:
        served = batch[0][0]
        try:
            if len(batch) == 1:
                merged = batch[0][1]
            else:
                merged = {name: np.concatenate([item[1][name] for item in batch]) for name in batch[0][1]}
            outputs = _checked_columns(served.direct(merged), batch_rows)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][3], exception=exc)
                return
            for item in batch:
                self._predict([item], item[2])
            return
        self._observe(len(batch), batch_rows)
        if len(batch) == 1:
            _settle(batch[0][3], result=outputs)
            return
        offset = 0
        for _, _, rows, future in batch:
            _settle(future, result={name: values[offset:offset + rows] for name, values in outputs.items()})
            offset += rows


def _settle(future, *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


class InvalidModelOutput(ValueError):
    """The model answered, but not with one well-formed value per output column and row."""


def _row_count(columns: Mapping[str, Any]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def predict(body: bytes, served: ServedModel, max_rows: int) -> Response:
    """Parse, predict and encode one request under a fresh request id."""
    return answer(body, served, max_rows, str(uuid.uuid4()))[0]


async def _read_body(request: Request, max_body_bytes: int) -> bytes:
    too_large = RequestRejected(413, "BODY_TOO_LARGE", f"the request body is larger than {max_body_bytes} "
                                "bytes; split it into smaller batches")
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


def _content_type_is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type")
    if not content_type:
        return True
    return content_type.split(";", 1)[0].strip().lower() in ("application/json", "text/json")


def request_id_of(request: Request) -> str:
    """The client's ``X-Request-ID``, or a fresh uuid4 when it sent none."""
    given = request.headers.get(REQUEST_ID_HEADER)
    if given is None:
        return str(uuid.uuid4())
    if not 0 < len(given) <= MAX_REQUEST_ID_LENGTH or not (given.isascii() and given.isprintable()) \
            or " " in given:
        raise RequestRejected(400, "BAD_REQUEST_ID", f"{REQUEST_ID_HEADER} must be 1-{MAX_REQUEST_ID_LENGTH} "
                              f"printable ASCII characters without spaces, got {given[:MAX_REQUEST_ID_LENGTH]!r}")
    return given


def event_time_of(request: Request) -> datetime:
    """The client's ``X-Request-Time`` (to replay or simulate traffic), else the time it arrived."""
    given = request.headers.get(REQUEST_TIME_HEADER)
    if given is None:
        return datetime.now(timezone.utc)
    try:
        parsed = datetime.fromisoformat(given.strip())
    except ValueError:
        parsed = None
    if parsed is None or parsed.utcoffset() is None:
        raise RequestRejected(400, "BAD_REQUEST_TIME", f"{REQUEST_TIME_HEADER} must be an ISO 8601 time with a "
                              f"UTC offset, such as 2026-11-10T08:30:00Z; got {given[:64]!r}")
    return parsed.astimezone(timezone.utc)


# ------------------------------------------------------------------------- metrics


class _ProbabilityHistogram:
    """The histogram of predicted probabilities, observed a whole request at a time.

    prometheus_client's Histogram takes one value per call (with a lock each); a
    batch of thousands of rows is counted here in one numpy pass instead.
    """

    def __init__(self, name: str, documentation: str, bounds: tuple[float, ...]) -> None:
        self.name, self.documentation, self.bounds = name, documentation, bounds
        self._bounds_array = np.array(bounds)
        self._lock = threading.Lock()
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._sum = 0.0

    def observe(self, values: np.ndarray) -> None:
        if len(values) <= 16:
            # a bucket's bound is inclusive ("le"): bisect_left finds the first bound >= value
            indices = [bisect_left(self.bounds, value) for value in values.tolist()]
            total = float(sum(values.tolist()))
            with self._lock:
                for index in indices:
                    self._counts[index] += 1
                self._sum += total
            return
        counts = np.bincount(np.searchsorted(self._bounds_array, values, side="left"),
                             minlength=len(self.bounds) + 1).tolist()
        total = float(values.sum())
        with self._lock:
            for index, count in enumerate(counts):
                self._counts[index] += count
            self._sum += total

    def collect(self):
        from prometheus_client.core import HistogramMetricFamily

        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts):
            cumulative += count
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


class _StateCollector:
    """Metrics read from the server's state when scraped, so they can never disagree with it."""

    def __init__(self, state: "_ServingState") -> None:
        self._state = state

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        served = self._state.served
        version = GaugeMetricFamily("model_served_version", "1 for the model version this server answers with",
                                    labels=["model_name", "version"])
        if served is not None:
            version.add_metric([served.name, served.version], 1)
        yield version
        writer = self._state.log_writer
        yield GaugeMetricFamily("inference_log_enabled", "1 when answered rows are written to an inference log",
                                value=1 if writer is not None else 0)
        yield CounterMetricFamily("inference_log_rows_written", "rows written to the inference log",
                                  value=writer.rows_written if writer else 0)
        yield CounterMetricFamily("inference_log_write_errors",
                                  "failed inference log writes (each retried), rows it could not store, "
                                  "and rows it refused", value=(writer.write_errors if writer else 0)
                                  + self._state.log_append_errors)
        yield CounterMetricFamily("inference_log_rows_dropped", "rows the inference log gave up on",
                                  value=writer.rows_dropped if writer else 0)
        yield GaugeMetricFamily("inference_log_rows_pending", "rows waiting to be written to the inference log",
                                value=writer.pending_rows if writer else 0)


class ServingMetrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, state: "_ServingState") -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        self._requests = Counter("model_requests", "/invocations requests by HTTP status code", ["status"],
                                 registry=self.registry)
        self._errors = Counter("model_request_errors", "/invocations requests answered without predictions "
                               "(4xx and 5xx)", registry=self.registry)
        self._latency = Histogram("model_request_latency_seconds", "time to answer an /invocations request",
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._predictions = Counter("model_predictions", "predicted rows by predicted label (binary) or class "
                                    "(multiclass)", ["prediction"], registry=self.registry)
        self.probabilities = _ProbabilityHistogram("model_prediction_probability",
                                                   "predicted probabilities, one per row: P(positive class) "
                                                   "(binary) or the predicted class's (multiclass)",
                                                   PROBABILITY_BUCKETS)
        self.registry.register(self.probabilities)
        self._batch_requests = Histogram("model_batch_requests", "requests answered by one shared model call",
                                         buckets=BATCH_BUCKETS, registry=self.registry)
        self.registry.register(_StateCollector(state))
        # children looked up once: labels() takes a lock and builds a key on every call
        self._by_status: dict[int, Any] = {}
        self._by_label: dict[int | str, Any] = {}

    def batch(self, requests: int, rows: int) -> None:
        self._batch_requests.observe(requests)

    def request(self, status_code: int, seconds: float) -> None:
        child = self._by_status.get(status_code)
        if child is None:
            child = self._by_status.setdefault(status_code, self._requests.labels(status=str(status_code)))
        child.inc()
        if status_code >= 400:
            self._errors.inc()
        self._latency.observe(seconds)

    def answered(self, answered: Answered) -> None:
        probabilities = answered.outputs.get(PROBABILITY)
        if probabilities is not None:
            self.probabilities.observe(probabilities)
        labels = answered.outputs[PREDICTION]
        if labels.dtype.kind == "f":  # a regression model's values: not labels to count
            return
        if len(labels) <= 16 or labels.dtype.kind == "O":
            counts: dict[int | str, int] = {}
            for label in labels.tolist():
                counts[label] = counts.get(label, 0) + 1
        else:
            values, frequencies = np.unique(labels, return_counts=True)
            counts = dict(zip(values.tolist(), frequencies.tolist()))
        for label, count in counts.items():
            child = self._by_label.get(label)
            if child is None:
                child = self._by_label.setdefault(label, self._predictions.labels(prediction=str(label)))
            child.inc(count)

    def exposition(self) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


# ----------------------------------------------------------------------------- app


class _ServingState:
    def __init__(self) -> None:
        self.served: ServedModel | None = None
        self.reload_lock = threading.Lock()
        self.log_writer = None  # an InferenceLogWriter while the app runs with an inference log
        self.log_append_errors = 0


def create_app(model_name: str, version: str, tracking_uri: str, *,
               max_rows: int = DEFAULT_MAX_ROWS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               enable_admin: bool = True, inference_log: str | os.PathLike | None = None,
               log_flush_rows: int | None = None, log_flush_seconds: float | None = None,
               batch_max_rows: int = DEFAULT_BATCH_MAX_ROWS,
               batch_max_wait_ms: float = DEFAULT_BATCH_MAX_WAIT_MS) -> FastAPI:
    """An app that serves ``models:/<model_name>/<version>``, loaded when the app starts.

    ``enable_admin`` adds ``POST /admin/reload``; it has no authentication, so it is
    meant for a server bound to the loopback interface (the local profile).
    ``inference_log`` (a folder or an fsspec URL) turns on the inference log, flushed
    every ``log_flush_rows`` rows or ``log_flush_seconds`` seconds and when the app stops.
    Concurrent small requests for the project's model share a model call of at most
    ``batch_max_rows`` rows (1: every request alone), gathered for up to
    ``batch_max_wait_ms`` (default 0: only requests that are already waiting).
    """
    from include.monitoring.inference_log import DEFAULT_FLUSH_ROWS, DEFAULT_FLUSH_SECONDS

    version = validate_version(version)
    if max_rows < 1 or max_body_bytes < 1:
        raise ValueError("max_rows and max_body_bytes must be positive")
    if inference_log is not None and not str(os.fspath(inference_log)).strip():
        raise ValueError("inference_log must be a folder or a URL such as s3://bucket/prefix, or None")
    flush_rows = DEFAULT_FLUSH_ROWS if log_flush_rows is None else log_flush_rows
    flush_seconds = DEFAULT_FLUSH_SECONDS if log_flush_seconds is None else log_flush_seconds
    if isinstance(flush_rows, bool) or not isinstance(flush_rows, int) or flush_rows < 1:
        raise ValueError(f"log_flush_rows must be a positive integer, got {flush_rows!r}")
    if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)) \
            or not 0 < flush_seconds < float("inf"):
        raise ValueError(f"log_flush_seconds must be a positive number of seconds, got {flush_seconds!r}")
    if isinstance(batch_max_wait_ms, bool) or not isinstance(batch_max_wait_ms, (int, float)):
        raise ValueError(f"batch_max_wait_ms must be a number of milliseconds, got {batch_max_wait_ms!r}")
    state = _ServingState()
    metrics = ServingMetrics(state)
    batcher = MicroBatcher(batch_max_rows, batch_max_wait_ms / 1000.0, metrics.batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            state.served = await run_in_threadpool(load_served_model, model_name, version, tracking_uri)
        except Exception as exc:
            # one line that says why; uvicorn logs the traceback when start-up fails
            logger.error("could not load %s: %s: %s", model_uri(model_name, version), type(exc).__name__, exc)
            raise
        if inference_log is not None:
            from include.monitoring.inference_log import InferenceLogWriter

            try:
                state.log_writer = InferenceLogWriter(inference_log, model_name, flush_rows, flush_seconds)
            except Exception as exc:
                logger.error("cannot write the inference log to %s: %s: %s", inference_log, type(exc).__name__,
                             exc)
                raise
            logger.info("logging predictions to %s", state.log_writer.root)
        logger.info("serving %s", model_uri(model_name, version))
        try:
            yield
        finally:
            state.served = None
            writer, state.log_writer = state.log_writer, None
            if writer is not None:
                # requests have drained by now: this last flush is the whole log
                await run_in_threadpool(writer.close)
                logger.info("inference log closed: %d rows written, %d write errors, %d rows dropped",
                            writer.rows_written, writer.write_errors, writer.rows_dropped)

    app = FastAPI(title=f"{model_name} model server", lifespan=lifespan)
    app.state.serving = state
    app.state.metrics = metrics

    def log_rows(answered: Answered, served: ServedModel, event_time: datetime) -> None:
        writer = state.log_writer
        if writer is None:
            return
        try:
            writer.append(answered.features, answered.outputs, served.version, answered.row_ids, event_time)
        except Exception as exc:
            # the prediction was made and answered: losing its log row must not fail the request
            state.log_append_errors += 1
            if state.log_append_errors == 1 or state.log_append_errors % 1000 == 0:
                logger.error("could not log request %s (%d such errors so far): %s: %s", answered.row_ids[0],
                             state.log_append_errors, type(exc).__name__, exc)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return metrics.exposition()

    @app.get("/health")
    async def health() -> Response:
        served = state.served
        if served is None:
            return _json_response({"status": "unavailable", "model_name": model_name, "model_version": None,
                                   "message": "no model is loaded"}, 503)
        return _json_response({"status": "ok", "model_name": served.name, "model_version": served.version},
                              200, served.version)

    # async so that the body can be read (and its size capped) as it streams in;
    # the CPU-bound prediction then runs inline or in a thread depending on its size
    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        started = time.perf_counter()
        response = await invoke(request)
        metrics.request(response.status_code, time.perf_counter() - started)
        return response

    async def invoke(request: Request) -> Response:
        served = state.served
        version = served.version if served is not None else None
        try:
            request_id = request_id_of(request)
        except RequestRejected as rejected:
            return _error(rejected.status_code, rejected.error_code, rejected.message, version)
        if served is None:
            return _error(503, "UNAVAILABLE", "no model is loaded", request_id=request_id)
        try:
            event_time = event_time_of(request)
            if not _content_type_is_json(request):
                raise RequestRejected(415, "UNSUPPORTED_MEDIA_TYPE", "only application/json bodies are accepted, "
                                      f"got {request.headers.get('content-type')!r}")
            body = await _read_body(request, max_body_bytes)
        except RequestRejected as rejected:
            return _error(rejected.status_code, rejected.error_code, rejected.message, version, request_id)
        if len(body) <= INLINE_BODY_BYTES:
            if served.direct is not None:
                response, answered = await answer_batched(body, served, max_rows, request_id, batcher)
            else:
                response, answered = answer(body, served, max_rows, request_id)
        else:
            response, answered = await run_in_threadpool(answer, body, served, max_rows, request_id)
        if answered is not None:
            metrics.answered(answered)
            log_rows(answered, served, event_time)
        return response

    if enable_admin:
        @app.post("/admin/reload")
        async def reload(request: Request) -> Response:
            try:
                payload = parse_json(await _read_body(request, 64 * 1024))
                if not isinstance(payload, dict) or "version" not in payload:
                    raise RequestRejected(400, "BAD_REQUEST", 'expected a JSON object such as {"version": "4"}')
                new_version = validate_version(payload["version"])
            except RequestRejected as rejected:
                return _error(rejected.status_code, rejected.error_code, rejected.message)
            except ValueError as exc:
                return _error(422, "INVALID_VERSION", str(exc))
            if not state.reload_lock.acquire(blocking=False):
                return _error(409, "RELOAD_IN_PROGRESS", "another reload is in progress; retry when it is done")
            try:
                previous = state.served
                if previous is not None and previous.version == new_version:
                    return _json_response({"status": "ok", "model_name": model_name, "model_version": new_version,
                                           "previous_version": new_version}, 200, new_version)
                try:
                    # loading takes seconds: a worker thread keeps the old version answering meanwhile
                    loaded = await run_in_threadpool(load_served_model, model_name, new_version, tracking_uri)
                except Exception as exc:
                    logger.exception("reload to %s failed", model_uri(model_name, new_version))
                    kept = previous.version if previous else None
                    return _json_response({
                        "error_code": "RELOAD_FAILED",
                        "message": f"could not load {model_uri(model_name, new_version)}: "
                                   f"{type(exc).__name__}: {exc}; still serving version {kept}",
                        "model_version": kept}, 500, kept)
                # one reference assignment: requests already running keep the ServedModel they read
                state.served = loaded
                logger.info("reloaded: now serving %s (was version %s)", model_uri(model_name, new_version),
                            previous.version if previous else None)
                return _json_response({"status": "ok", "model_name": model_name, "model_version": new_version,
                                       "previous_version": previous.version if previous else None},
                                      200, new_version)
            finally:
                state.reload_lock.release()

    return app
