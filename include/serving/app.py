"""HTTP serving of one registered model version, with in-place reload.

The request and response bodies follow MLflow's scoring server
(``dataframe_records`` / ``dataframe_split`` in, ``{"predictions": [...]}`` out),
so a client written against ``mlflow models serve`` works unchanged; the
response adds ``model_version`` (and the ``X-Model-Version`` header) so that a
caller always knows which version answered.

Every bad request gets a 4xx with ``{"error_code", "message"}``; a model that
fails while predicting gets a 500 with the same shape; neither stops the server.
"""
from __future__ import annotations

import json
import logging
import math
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from include.registry import model_uri
from include.serving import validate_version

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
INPUT_FORMATS = ("dataframe_records", "dataframe_split")
# Prediction is CPU-bound and holds the GIL, so a worker thread buys no parallelism;
# it only keeps the event loop free. For a small body (a few rows: ~60 us of parsing,
# ~1-2 ms in the model) the hop to a thread and back (~60-80 us here) is pure
# overhead, so it runs inline; a larger body goes to a thread so that a big batch
# does not stall /health and the other connections while it is predicted.
INLINE_BODY_BYTES = 16 * 1024
_ERRORS_SHOWN = 5


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
    required: bool


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
        columns.append(FeatureColumn(spec.name, kind, dtype, bool(getattr(spec, "required", True))))
    return tuple(columns)


@dataclass(frozen=True)
class ServedModel:
    """One loaded version. Replaced as a whole on reload, never mutated, so a request
    that picked it up keeps a consistent model even while a reload swaps in another."""

    name: str
    version: str
    pyfunc: Any
    columns: tuple[FeatureColumn, ...] | None


def load_served_model(model_name: str, version: str, tracking_uri: str) -> ServedModel:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    pyfunc_model = mlflow.pyfunc.load_model(model_uri(model_name, version))
    return ServedModel(model_name, version, pyfunc_model, feature_columns(pyfunc_model))


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
    if column.kind in ("float", "int"):
        wrong = [index for index, value in enumerate(values)
                 if type(value) not in (int, float) and not (value is None and not column.required)]
    elif column.kind == "bool":
        wrong = [index for index, value in enumerate(values) if type(value) is not bool]
    else:
        wrong = [index for index, value in enumerate(values) if type(value) is not str]
    if wrong:
        absent = [index for index in wrong if values[index] is None]
        if absent:
            raise RequestRejected(422, "MISSING_VALUES", f"column {column.name!r} is missing or null in rows "
                                  f"{_rows_text(absent)}; the model needs a value in every row")
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
                        if not column.required else values, dtype=column.dtype)
    except (OverflowError, ValueError, TypeError) as exc:
        raise RequestRejected(422, "WRONG_TYPE", f"column {column.name!r}: {exc}") from None


def parse_request(body: bytes, served: ServedModel, max_rows: int) -> pd.DataFrame:
    """The model input described by an MLflow-format JSON body, checked against the model's signature."""
    values = _columns(parse_json(body), max_rows)
    if served.columns is None:
        return pd.DataFrame(values)
    absent = [column.name for column in served.columns if column.required and column.name not in values]
    if absent:
        raise RequestRejected(422, "MISSING_COLUMNS", f"missing feature columns: {', '.join(absent)} "
                              f"(the model needs {', '.join(column.name for column in served.columns)})")
    # columns the model does not know are dropped, as MLflow's schema enforcement does
    frame = {column.name: _typed_column(column, values[column.name])
             for column in served.columns if column.name in values}
    return pd.DataFrame(frame, copy=False)


# -------------------------------------------------------------------------- output


def _predictions(output: Any, rows: int) -> list[dict]:
    if not isinstance(output, pd.DataFrame):
        raise ValueError(f"the model returned {type(output).__name__}, not a DataFrame with "
                         "'probability' and 'prediction' columns")
    absent = [name for name in ("probability", "prediction") if name not in output.columns]
    if absent:
        raise ValueError(f"the model output lacks the column(s) {', '.join(absent)}")
    if len(output) != rows:
        raise ValueError(f"the model returned {len(output)} predictions for {rows} rows")
    try:
        probabilities = output["probability"].to_numpy(dtype=np.float64)
        labels = output["prediction"].to_numpy()
        if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
            labels = labels.astype(np.int64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the model output is not numeric: {exc}") from None
    if labels.dtype.kind not in "iub":
        raise ValueError(f"the model's 'prediction' column holds {labels.dtype} values, not integer labels")
    probabilities = probabilities.tolist()
    if not all(math.isfinite(value) for value in probabilities):
        raise ValueError("the model returned non-finite probabilities (NaN or infinity)")
    return [{"probability": probability, "prediction": int(label)}
            for probability, label in zip(probabilities, labels.tolist())]


def _json_response(content: dict, status_code: int = 200, version: str | None = None) -> Response:
    headers = {"X-Model-Version": version} if version else None
    return Response(json.dumps(content, separators=(",", ":")), status_code=status_code,
                    media_type="application/json", headers=headers)


def _error(status_code: int, error_code: str, message: str, version: str | None = None) -> Response:
    return _json_response({"error_code": error_code, "message": message}, status_code, version)


def predict(body: bytes, served: ServedModel, max_rows: int) -> Response:
    """Parse, predict and encode one request; every outcome is a response, never an exception."""
    from mlflow.exceptions import MlflowException

    try:
        frame = parse_request(body, served, max_rows)
    except RequestRejected as rejected:
        logger.info("rejected a request (%s): %s", rejected.status_code, rejected.message)
        return _error(rejected.status_code, rejected.error_code, rejected.message, served.version)
    try:
        output = served.pyfunc.predict(frame)
    except MlflowException as exc:
        # raised by MLflow's schema enforcement before the model runs: the input is at fault
        if getattr(exc, "error_class", None) == "SCHEMA_ENFORCEMENT_FAILED":
            logger.info("input does not match the model signature: %s", exc.message)
            return _error(422, "SCHEMA_MISMATCH", f"the input does not match the model's signature: "
                          f"{exc.message}", served.version)
        logger.exception("model version %s failed to predict", served.version)
        return _error(500, "MODEL_ERROR", f"the model failed to predict: {exc.message}", served.version)
    except Exception as exc:
        logger.exception("model version %s failed to predict", served.version)
        return _error(500, "MODEL_ERROR", f"the model failed to predict: {type(exc).__name__}: {exc}",
                      served.version)
    try:
        predictions = _predictions(output, len(frame))
    except ValueError as exc:
        logger.error("model version %s returned an unusable output: %s", served.version, exc)
        return _error(500, "MODEL_OUTPUT_INVALID", str(exc), served.version)
    return _json_response({"predictions": predictions, "model_version": served.version}, 200, served.version)


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


# ----------------------------------------------------------------------------- app


class _ServingState:
    def __init__(self) -> None:
        self.served: ServedModel | None = None
        self.reload_lock = threading.Lock()


def create_app(model_name: str, version: str, tracking_uri: str, *,
               max_rows: int = DEFAULT_MAX_ROWS, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               enable_admin: bool = True) -> FastAPI:
    """An app that serves ``models:/<model_name>/<version>``, loaded when the app starts.

    ``enable_admin`` adds ``POST /admin/reload``; it has no authentication, so it is
    meant for a server bound to the loopback interface (the local profile).
    """
    version = validate_version(version)
    if max_rows < 1 or max_body_bytes < 1:
        raise ValueError("max_rows and max_body_bytes must be positive")
    state = _ServingState()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        try:
            state.served = await run_in_threadpool(load_served_model, model_name, version, tracking_uri)
        except Exception as exc:
            # one line that says why; uvicorn logs the traceback when start-up fails
            logger.error("could not load %s: %s: %s", model_uri(model_name, version), type(exc).__name__, exc)
            raise
        logger.info("serving %s", model_uri(model_name, version))
        yield
        state.served = None

    app = FastAPI(title=f"{model_name} model server", lifespan=lifespan)
    app.state.serving = state

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
        served = state.served
        if served is None:
            return _error(503, "UNAVAILABLE", "no model is loaded")
        if not _content_type_is_json(request):
            return _error(415, "UNSUPPORTED_MEDIA_TYPE", "only application/json bodies are accepted, got "
                          f"{request.headers.get('content-type')!r}", served.version)
        try:
            body = await _read_body(request, max_body_bytes)
        except RequestRejected as rejected:
            return _error(rejected.status_code, rejected.error_code, rejected.message, served.version)
        if len(body) <= INLINE_BODY_BYTES:
            return predict(body, served, max_rows)
        return await run_in_threadpool(predict, body, served, max_rows)

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
