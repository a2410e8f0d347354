"""HTTP serving of one registered model version, with in-place reload: the app and its routes.

The request and response bodies follow MLflow's scoring server (every input form
of its protocol in, :mod:`include.serving.payload`; ``{"predictions": [...]}`` out),
so a client written against ``mlflow models serve`` works unchanged; the
response adds ``model_version`` (and the ``X-Model-Version`` header) so that a
caller always knows which version answered.

The server's jobs live in one module each:

- :mod:`include.serving.request`: the headers, the body's size and media type, and
  :func:`~include.serving.request.parse_request`, the body read into checked columns;
- :mod:`include.serving.payload`: the body's forms (MLflow's JSON inputs, CSV, Parquet)
  read into columns;
- :mod:`include.serving.columns`: the model signature's columns, and each column's values
  checked and typed against it (which values a feature accepts);
- :mod:`include.serving.model`: loading a version, its direct predictor, and the check
  every output passes (the columns a model answers with, per task);
- :mod:`include.serving.batching`: small concurrent requests sharing one model call;
- :mod:`include.serving.metrics`: ``GET /metrics`` (every metric is listed there);
- :mod:`include.serving.answer`: one request parsed, predicted and encoded, every
  outcome a response;
- this module: :func:`create_app` and the routes.

Every bad request gets a 4xx with ``{"error_code", "message"}``; a model that
fails while predicting gets a 500 with the same shape; neither stops the server.

Every ``/invocations`` request has an id (the client's ``X-Request-ID``, else a uuid4):
each predicted row gets one (:func:`~include.serving.answer.row_ids`), listed in the
response's ``request_ids``, and the id is echoed in ``X-Request-ID``. With an inference
log root, each answered row (features as the model received them, every output column,
ids and event time) goes to an :class:`~include.monitoring.inference_log.InferenceLogWriter`:
buffered in memory, written by a background thread, flushed on shutdown. A failing log
is logged and counted in the metrics; it never fails a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from include.registry import model_uri
from include.serving import validate_version
from include.serving.answer import Answered, answer, answer_batched, error_response, json_response
from include.serving.batching import MicroBatcher
from include.serving.metrics import ServingMetrics
from include.serving.model import ServedModel, load_served_model
from include.serving.request import (
    RequestRejected,
    event_time_of,
    media_type_of,
    parse_json,
    read_body,
    request_id_of,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
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
# a reload body is one small JSON object ({"version": "4"})
_RELOAD_MAX_BODY_BYTES = 64 * 1024


class ServingState:
    """What the routes of one app share, as ``app.state.serving``.

    The configuration is set once by :func:`create_app`; ``served`` (the
    :class:`~include.serving.model.ServedModel` answering, None while none is loaded)
    and ``log_writer`` (None without an inference log) are swapped by start-up,
    reload and shutdown, each by one reference assignment.
    """

    def __init__(
        self,
        model_name: str,
        version: str,
        tracking_uri: str,
        *,
        max_rows: int,
        max_body_bytes: int,
        inference_log: str | os.PathLike | None,
        flush_rows: int,
        flush_seconds: float,
    ) -> None:
        self.model_name, self.version, self.tracking_uri = model_name, version, tracking_uri
        self.max_rows, self.max_body_bytes = max_rows, max_body_bytes
        self.inference_log, self.flush_rows, self.flush_seconds = inference_log, flush_rows, flush_seconds
        self.served: ServedModel | None = None
        self.reload_lock = threading.Lock()
        self.log_writer = None  # an InferenceLogWriter while the app runs with an inference log
        self.log_append_errors = 0


def create_app(
    model_name: str,
    version: str,
    tracking_uri: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    enable_admin: bool = True,
    inference_log: str | os.PathLike | None = None,
    log_flush_rows: int | None = None,
    log_flush_seconds: float | None = None,
    batch_max_rows: int = DEFAULT_BATCH_MAX_ROWS,
    batch_max_wait_ms: float = DEFAULT_BATCH_MAX_WAIT_MS,
) -> FastAPI:
    """An app that serves ``models:/<model_name>/<version>``, loaded when the app starts.

    Routes: ``POST /invocations``, ``GET /health``, ``GET /metrics`` and, with
    ``enable_admin``, ``POST /admin/reload``; it has no authentication, so it is
    meant for a server bound to the loopback interface (the local profile).
    ``inference_log`` (a folder or an fsspec URL) turns on the inference log, flushed
    every ``log_flush_rows`` rows or ``log_flush_seconds`` seconds and when the app stops.
    Concurrent small requests for the project's model share a model call of at most
    ``batch_max_rows`` rows (1: every request alone), gathered for up to
    ``batch_max_wait_ms`` (default 0: only requests that are already waiting).

    Returns the app; nothing is loaded until it starts (its lifespan), when a model
    that cannot be loaded or an inference log that cannot be opened fails the start-up.
    Raises ``ValueError`` for a version that is not a positive integer, a non-positive
    ``max_rows``/``max_body_bytes``/flush setting, a blank ``inference_log``, or batch
    settings out of range (``batch_max_wait_ms`` above 10).
    """
    from include.monitoring.inference_log import DEFAULT_FLUSH_ROWS, DEFAULT_FLUSH_SECONDS, check_flush_settings

    version = validate_version(version)
    if max_rows < 1 or max_body_bytes < 1:
        raise ValueError("max_rows and max_body_bytes must be positive")
    if inference_log is not None and not str(os.fspath(inference_log)).strip():
        raise ValueError("inference_log must be a folder or a URL such as s3://bucket/prefix, or None")
    flush_rows = DEFAULT_FLUSH_ROWS if log_flush_rows is None else log_flush_rows
    flush_seconds = DEFAULT_FLUSH_SECONDS if log_flush_seconds is None else log_flush_seconds
    # checked here, not only by the writer: a bad setting fails now rather than at start-up
    check_flush_settings(flush_rows, flush_seconds, prefix="log_")
    if isinstance(batch_max_wait_ms, bool) or not isinstance(batch_max_wait_ms, (int, float)):
        raise ValueError(f"batch_max_wait_ms must be a number of milliseconds, got {batch_max_wait_ms!r}")
    state = ServingState(
        model_name,
        version,
        tracking_uri,
        max_rows=max_rows,
        max_body_bytes=max_body_bytes,
        inference_log=inference_log,
        flush_rows=flush_rows,
        flush_seconds=flush_seconds,
    )
    metrics = ServingMetrics(state)
    batcher = MicroBatcher(batch_max_rows, batch_max_wait_ms / 1000.0, metrics.batch)

    app = FastAPI(title=f"{model_name} model server", lifespan=_lifespan)
    app.state.serving = state
    app.state.metrics = metrics
    app.state.batcher = batcher
    app.get("/metrics")(metrics_endpoint)
    app.get("/health")(health)
    app.post("/invocations")(invocations)
    if enable_admin:
        app.post("/admin/reload")(reload)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI):
    state: ServingState = app.state.serving
    model_name, version, inference_log = state.model_name, state.version, state.inference_log
    try:
        state.served = await run_in_threadpool(load_served_model, model_name, version, state.tracking_uri)
    except Exception as exc:
        # one line that says why; uvicorn logs the traceback when start-up fails
        logger.error("could not load %s: %s: %s", model_uri(model_name, version), type(exc).__name__, exc)
        raise
    if inference_log is not None:
        from include.monitoring.inference_log import InferenceLogWriter

        try:
            state.log_writer = InferenceLogWriter(inference_log, model_name, state.flush_rows, state.flush_seconds)
        except Exception as exc:
            logger.error("cannot write the inference log to %s: %s: %s", inference_log, type(exc).__name__, exc)
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
            logger.info(
                "inference log closed: %d rows written, %d write errors, %d rows dropped",
                writer.rows_written,
                writer.write_errors,
                writer.rows_dropped,
            )


# ---------------------------------------------------------------------------- routes


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the server's metrics in the Prometheus text format (listed in include.serving.metrics)."""
    return request.app.state.metrics.exposition()


async def health(request: Request) -> Response:
    """``GET /health``: 200 ``{"status": "ok", "model_name", "model_version"}``, or 503 while no model is loaded."""
    state: ServingState = request.app.state.serving
    served = state.served
    if served is None:
        return json_response(
            {
                "status": "unavailable",
                "model_name": state.model_name,
                "model_version": None,
                "message": "no model is loaded",
            },
            503,
        )
    return json_response(
        {"status": "ok", "model_name": served.name, "model_version": served.version}, 200, served.version
    )


# async so that the body can be read (and its size capped) as it streams in;
# the CPU-bound prediction then runs inline or in a thread depending on its size
async def invocations(request: Request) -> Response:
    """``POST /invocations``: the predictions for an MLflow-format body, or a 4xx/5xx error body."""
    started = time.perf_counter()
    response = await _invoke(request)
    request.app.state.metrics.request(response.status_code, time.perf_counter() - started)
    return response


async def _invoke(request: Request) -> Response:
    state: ServingState = request.app.state.serving
    served = state.served
    version = served.version if served is not None else None
    try:
        request_id = request_id_of(request)
    except RequestRejected as rejected:
        return error_response(rejected.status_code, rejected.error_code, rejected.message, version)
    if served is None:
        return error_response(503, "UNAVAILABLE", "no model is loaded", request_id=request_id)
    try:
        event_time = event_time_of(request)
        media_type = media_type_of(request)
        body = await read_body(request, state.max_body_bytes)
    except RequestRejected as rejected:
        return error_response(rejected.status_code, rejected.error_code, rejected.message, version, request_id)
    if len(body) <= INLINE_BODY_BYTES:
        if served.direct is not None:
            response, answered = await answer_batched(
                body, served, state.max_rows, request_id, request.app.state.batcher, media_type
            )
        else:
            response, answered = answer(body, served, state.max_rows, request_id, media_type)
    else:
        response, answered = await run_in_threadpool(answer, body, served, state.max_rows, request_id, media_type)
    if answered is not None:
        request.app.state.metrics.answered(answered.outputs)
        _log_rows(state, answered, served, event_time)
    return response


def _log_rows(state: ServingState, answered: Answered, served: ServedModel, event_time: datetime) -> None:
    writer = state.log_writer
    if writer is None:
        return
    try:
        writer.append(answered.features, answered.outputs, served.version, answered.row_ids, event_time)
    except Exception as exc:
        # the prediction was made and answered: losing its log row must not fail the request
        state.log_append_errors += 1
        if state.log_append_errors == 1 or state.log_append_errors % 1000 == 0:
            logger.error(
                "could not log request %s (%d such errors so far): %s: %s",
                answered.row_ids[0],
                state.log_append_errors,
                type(exc).__name__,
                exc,
            )


async def reload(request: Request) -> Response:
    """``POST /admin/reload`` with ``{"version": "4"}``: serve that version from now on. Returns a JSON Response:
    200 ``{"status": "ok", "model_name", "model_version", "previous_version"}`` once the
    new version answers (at once when it already does); 400/422 for a bad body or
    version, 409 while another reload runs, 500 ``RELOAD_FAILED`` when the version
    cannot be loaded, in which case the previous version keeps answering. Never raises.
    """
    state: ServingState = request.app.state.serving
    model_name = state.model_name
    try:
        payload = parse_json(await read_body(request, _RELOAD_MAX_BODY_BYTES))
        if not isinstance(payload, dict) or "version" not in payload:
            raise RequestRejected(400, "BAD_REQUEST", 'expected a JSON object such as {"version": "4"}')
        new_version = validate_version(payload["version"])
    except RequestRejected as rejected:
        return error_response(rejected.status_code, rejected.error_code, rejected.message)
    except ValueError as exc:
        return error_response(422, "INVALID_VERSION", str(exc))
    if not state.reload_lock.acquire(blocking=False):
        return error_response(409, "RELOAD_IN_PROGRESS", "another reload is in progress; retry when it is done")
    try:
        previous = state.served
        if previous is not None and previous.version == new_version:
            return json_response(
                {
                    "status": "ok",
                    "model_name": model_name,
                    "model_version": new_version,
                    "previous_version": new_version,
                },
                200,
                new_version,
            )
        try:
            # loading takes seconds: a worker thread keeps the old version answering meanwhile
            loaded = await run_in_threadpool(load_served_model, model_name, new_version, state.tracking_uri)
        except Exception as exc:
            logger.exception("reload to %s failed", model_uri(model_name, new_version))
            kept = previous.version if previous else None
            return json_response(
                {
                    "error_code": "RELOAD_FAILED",
                    "message": f"could not load {model_uri(model_name, new_version)}: "
                    f"{type(exc).__name__}: {exc}; still serving version {kept}",
                    "model_version": kept,
                },
                500,
                kept,
            )
        # one reference assignment: requests already running keep the ServedModel they read
        state.served = loaded
        logger.info(
            "reloaded: now serving %s (was version %s)",
            model_uri(model_name, new_version),
            previous.version if previous else None,
        )
        return json_response(
            {
                "status": "ok",
                "model_name": model_name,
                "model_version": new_version,
                "previous_version": previous.version if previous else None,
            },
            200,
            new_version,
        )
    finally:
        state.reload_lock.release()
