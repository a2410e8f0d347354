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
- :mod:`include.serving.rollout`: a candidate beside the champion (shadow, canary);
- :mod:`include.serving.admin`: the admin routes (reload, rollout);
- this module: :func:`create_app` and the public routes.

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

from include.deployment.rollout_config import RolloutConfig
from include.registry import model_uri
from include.serving import admin, validate_version
from include.serving.answer import answer, answer_batched, error_response, json_response
from include.serving.batching import MicroBatcher
from include.serving.metrics import ServingMetrics
from include.serving.model import ServedModel, load_served_model
from include.serving.request import (
    RequestRejected,
    event_time_of,
    media_type_of,
    read_body,
    request_id_of,
)
from include.serving.rollout import Part, Rollout, answer_rollout, score_with_of

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


class ServingState:
    """What the routes of one app share, as ``app.state.serving``.

    The configuration is set once by :func:`create_app`; ``served`` (the
    :class:`~include.serving.model.ServedModel` answering, None while none is loaded)
    ``log_writer`` (None without an inference log) and ``rollout`` (a
    :class:`~include.serving.rollout.Rollout`, None without one) are swapped by start-up,
    reload, the rollout routes and shutdown, each by one reference assignment.
    ``startup_rollout`` is the rollout the app loads when it starts.
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
        self.rollout: Rollout | None = None
        self.startup_rollout: RolloutConfig | None = None
        self.allow_score_with = False


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
    candidate_version: str | None = None,
    rollout_mode: str | None = None,
    canary_share: float = 0.0,
    sticky_column: str | None = None,
    allow_score_with: bool | None = None,
) -> FastAPI:
    """An app that serves ``models:/<model_name>/<version>``, loaded when the app starts.

    Routes: ``POST /invocations``, ``GET /health``, ``GET /metrics`` and, with
    ``enable_admin``, ``POST /admin/reload`` and ``GET``/``POST``/``DELETE /admin/rollout``
    (:mod:`include.serving.admin`); they have no authentication, so they are meant for a
    server bound to the loopback interface (the local profile).
    ``candidate_version`` with ``rollout_mode`` (``"shadow"`` or ``"canary"``), ``canary_share``
    and ``sticky_column`` start a rollout (:mod:`include.serving.rollout`) with the app: the
    candidate is loaded at start-up beside the champion, and one that cannot be loaded fails it.
    ``allow_score_with`` (default: ``enable_admin``) honours ``X-Score-With`` during a rollout.
    ``inference_log`` (a folder or an fsspec URL) turns on the inference log, flushed
    every ``log_flush_rows`` rows or ``log_flush_seconds`` seconds and when the app stops.
    Concurrent small requests for the project's model share a model call of at most
    ``batch_max_rows`` rows (1: every request alone), gathered for up to
    ``batch_max_wait_ms`` (default 0: only requests that are already waiting).

    Returns the app; nothing is loaded until it starts (its lifespan), when a model
    that cannot be loaded or an inference log that cannot be opened fails the start-up.
    Raises ``ValueError`` for a version that is not a positive integer, a non-positive
    ``max_rows``/``max_body_bytes``/flush setting, a blank ``inference_log``, or batch
    settings out of range (``batch_max_wait_ms`` above 10), or a malformed rollout (a mode
    without a candidate, a candidate without a mode or equal to ``version``, a share out of range).
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
    if candidate_version is not None or rollout_mode is not None:
        if candidate_version is None or rollout_mode is None:
            raise ValueError("a rollout needs both candidate_version and rollout_mode (shadow or canary)")
        state.startup_rollout = RolloutConfig(candidate_version, rollout_mode, canary_share, sticky_column)
        if state.startup_rollout.candidate_version == version:
            raise ValueError(f"the candidate version {version} is the version served; a candidate must differ")
    state.allow_score_with = enable_admin if allow_score_with is None else allow_score_with
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
        app.post("/admin/reload")(admin.reload)
        app.get("/admin/rollout")(admin.get_rollout)
        app.post("/admin/rollout")(admin.post_rollout)
        app.delete("/admin/rollout")(admin.delete_rollout)
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
    config = state.startup_rollout
    if config is not None:
        try:
            candidate = await run_in_threadpool(
                load_served_model, model_name, config.candidate_version, state.tracking_uri
            )
        except Exception as exc:
            uri = model_uri(model_name, config.candidate_version)
            logger.error("could not load the candidate %s: %s: %s", uri, type(exc).__name__, exc)
            raise
        state.rollout = Rollout(config, candidate)
        logger.info("rollout: %s", config)
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
        state.served, state.rollout = None, None
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
    """``GET /health``: 200 ``{"status": "ok", "model_name", "model_version"}`` (and ``candidate_version`` and
    ``rollout_mode`` during a rollout), or 503 while no model is loaded."""
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
    body = {"status": "ok", "model_name": served.name, "model_version": served.version}
    rollout = state.rollout
    if rollout is not None:
        body.update(candidate_version=rollout.candidate.version, rollout_mode=rollout.config.mode)
    return json_response(body, 200, served.version)


# async so that the body can be read (and its size capped) as it streams in;
# the CPU-bound prediction then runs inline or in a thread depending on its size
async def invocations(request: Request) -> Response:
    """``POST /invocations``: the predictions for an MLflow-format body, or a 4xx/5xx error body."""
    started = time.perf_counter()
    response, versions = await _invoke(request)
    request.app.state.metrics.request(response.status_code, time.perf_counter() - started, versions)
    return response


async def _invoke(request: Request) -> tuple[Response, tuple[str, ...] | list[str]]:
    """The response, and the versions that answered (or failed) it."""
    state: ServingState = request.app.state.serving
    served, rollout = state.served, state.rollout
    version = served.version if served is not None else None
    versions = () if version is None else (version,)
    try:
        request_id = request_id_of(request)
    except RequestRejected as rejected:
        return error_response(rejected.status_code, rejected.error_code, rejected.message, version), versions
    if served is None:
        return error_response(503, "UNAVAILABLE", "no model is loaded", request_id=request_id), versions
    try:
        event_time = event_time_of(request)
        media_type = media_type_of(request)
        score_with = score_with_of(request.headers, state.allow_score_with, rollout)
        body = await read_body(request, state.max_body_bytes)
    except RequestRejected as rejected:
        response = error_response(rejected.status_code, rejected.error_code, rejected.message, version, request_id)
        return response, versions
    if rollout is not None:
        inline = len(body) <= INLINE_BODY_BYTES
        response, parts, answering, shadow_errors = await answer_rollout(
            body, served, rollout, state.max_rows, request_id, media_type, request.app.state.batcher, inline, score_with
        )
        metrics = request.app.state.metrics
        if shadow_errors:
            metrics.shadow_error(rollout.candidate.version)
        for part in parts:
            metrics.answered(part.answered.outputs, part.served.version)
            _log_rows(state, part, event_time)
        return response, answering
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
        request.app.state.metrics.answered(answered.outputs, served.version)
        _log_rows(state, Part(served, answered), event_time)
    return response, versions


def _log_rows(state: ServingState, part: Part, event_time: datetime) -> None:
    writer = state.log_writer
    if writer is None:
        return
    answered = part.answered
    try:
        writer.append(
            answered.features,
            answered.outputs,
            part.served.version,
            answered.row_ids,
            event_time,
            other_version=part.other_version,
            other_outputs=part.other_outputs,
        )
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
