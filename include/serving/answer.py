"""One request's answer: parse, predict and encode, every outcome a response rather than an exception.

A 200 carries ``predictions`` (one record per row with every output column),
``model_version`` and ``request_ids``, with the ``X-Model-Version`` and
``X-Request-ID`` headers; every refusal or failure carries ``{"error_code",
"message"}`` (:func:`error_response`): 4xx for a request the server refuses, 500
``MODEL_ERROR`` or ``MODEL_OUTPUT_INVALID`` when the model fails.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi.responses import Response

from include.serving.batching import MicroBatcher
from include.serving.model import PREDICTION, PROBABILITY, InvalidModelOutput, ServedModel, checked_output
from include.serving.request import JSON, REQUEST_ID_HEADER, RequestRejected, parse_request, row_count

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answered:
    """A request that got its predictions: what the inference log and the metrics need of it."""

    features: Any  # the model's input columns (a mapping of arrays, or the frame itself)
    outputs: Mapping[str, np.ndarray]  # every output column, in answer order, one value per row
    row_ids: list[str]


def row_ids(request_id: str, rows: int) -> list[str]:
    """One id per predicted row (``rows`` ids): the request's own for a single row, else
    ``<id>-<row>`` with the row counted from 0."""
    if rows == 1:
        return [request_id]
    return [f"{request_id}-{index}" for index in range(rows)]


def answer(
    body: bytes, served: ServedModel, max_rows: int, request_id: str, media_type: str = JSON
) -> tuple[Response, Answered | None]:
    """Parse, predict and encode one request (a ``media_type`` body); every outcome is a response, never an exception.

    Returns the response (200 with ``predictions``, ``model_version`` and
    ``request_ids``; 4xx for a request the server refuses; 500 ``MODEL_ERROR`` or
    ``MODEL_OUTPUT_INVALID`` when the model fails) and, only for a 200, the
    :class:`Answered` the log and metrics take; None otherwise.
    """
    try:
        parsed = parse_request(body, served.columns, max_rows, media_type)
    except RequestRejected as rejected:
        return _rejected(rejected, served, request_id), None
    columns = parsed.columns
    if served.direct is not None:
        # the project's model takes no params: they are accepted and left unused, as MLflow leaves them
        try:
            outputs = checked_output(served.direct(columns), row_count(columns))
        except Exception as exc:
            return _failed(exc, served, request_id), None
        return _answered(columns, outputs, served, request_id)
    frame = _as_frame(columns)
    try:
        # params go to the pyfunc as MLflow's scoring server passes them (checked against its params schema)
        output = (
            served.pyfunc.predict(frame)
            if parsed.params is None
            else served.pyfunc.predict(frame, params=parsed.params)
        )
    except Exception as exc:
        return _model_failed(exc, served, request_id), None
    try:
        outputs = checked_output(output, len(frame))
    except ValueError as exc:
        return _output_invalid(exc, served, request_id), None
    # the log keeps the typed columns, or the frame itself for a model without a signature
    return _answered(frame if served.columns is None else columns, outputs, served, request_id)


async def answer_batched(
    body: bytes, served: ServedModel, max_rows: int, request_id: str, batcher: MicroBatcher, media_type: str = JSON
) -> tuple[Response, Answered | None]:
    """:func:`answer` for a model with a direct predictor, its prediction shared with concurrent requests.

    Returns what :func:`answer` returns; raises nothing.
    """
    try:
        columns = parse_request(body, served.columns, max_rows, media_type).columns
    except RequestRejected as rejected:
        return _rejected(rejected, served, request_id), None
    try:
        outputs = await batcher.predict(served, columns)
    except Exception as exc:
        return _failed(exc, served, request_id), None
    return _answered(columns, outputs, served, request_id)


def _as_frame(columns: dict[str, Any]) -> pd.DataFrame:
    # the frame shares the typed arrays; MLflow's schema enforcement hands the model a copy,
    # so they still hold what the client sent when the log writes them
    return pd.DataFrame(columns, copy=False)


def _rejected(rejected: RequestRejected, served: ServedModel, request_id: str) -> Response:
    logger.info("rejected request %s (%s): %s", request_id, rejected.status_code, rejected.message)
    return error_response(rejected.status_code, rejected.error_code, rejected.message, served.version, request_id)


def _failed(exc: Exception, served: ServedModel, request_id: str) -> Response:
    """A direct prediction that failed: its output was unusable, or the model raised."""
    if isinstance(exc, InvalidModelOutput):
        return _output_invalid(exc, served, request_id)
    return _model_failed(exc, served, request_id)


def _model_failed(exc: Exception, served: ServedModel, request_id: str) -> Response:
    from mlflow.exceptions import MlflowException

    version = served.version
    if isinstance(exc, MlflowException):
        # raised by MLflow's schema enforcement before the model runs: the input is at fault
        if getattr(exc, "error_class", None) == "SCHEMA_ENFORCEMENT_FAILED":
            logger.info("input of request %s does not match the model signature: %s", request_id, exc.message)
            return error_response(
                422,
                "SCHEMA_MISMATCH",
                f"the input does not match the model's signature: {exc.message}",
                version,
                request_id,
            )
        logger.error("model version %s failed to predict request %s", version, request_id, exc_info=exc)
        return error_response(500, "MODEL_ERROR", f"the model failed to predict: {exc.message}", version, request_id)
    logger.error("model version %s failed to predict request %s", version, request_id, exc_info=exc)
    return error_response(
        500, "MODEL_ERROR", f"the model failed to predict: {type(exc).__name__}: {exc}", version, request_id
    )


def _output_invalid(exc: ValueError, served: ServedModel, request_id: str) -> Response:
    logger.error("model version %s returned an unusable output for request %s: %s", served.version, request_id, exc)
    return error_response(500, "MODEL_OUTPUT_INVALID", str(exc), served.version, request_id)


def _answered(
    features: Any, outputs: Mapping[str, np.ndarray], served: ServedModel, request_id: str
) -> tuple[Response, Answered]:
    ids = row_ids(request_id, len(outputs[PREDICTION]))
    predictions = records(outputs)
    response = json_response(
        {"predictions": predictions, "model_version": served.version, "request_ids": ids},
        200,
        served.version,
        request_id,
    )
    return response, Answered(features, outputs, ids)


def records(outputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """The ``predictions`` of a response: one ``{column: value}`` per row, in the outputs' column order."""
    names = list(outputs)
    if names == [PROBABILITY, PREDICTION]:  # binary, the common case: no per-row zip of names
        return [
            {PROBABILITY: probability, PREDICTION: label}
            for probability, label in zip(outputs[PROBABILITY].tolist(), outputs[PREDICTION].tolist(), strict=False)
        ]
    return [
        dict(zip(names, row, strict=False)) for row in zip(*(outputs[name].tolist() for name in names), strict=False)
    ]


def json_response(
    content: dict, status_code: int = 200, version: str | None = None, request_id: str | None = None
) -> Response:
    """Returns ``content`` as compact JSON with ``status_code``, and the ``X-Model-Version`` and
    ``X-Request-ID`` headers when ``version`` and ``request_id`` are given. Raises ``TypeError``
    when ``content`` holds a value JSON cannot encode."""
    headers = {"X-Model-Version": version} if version else {}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    return Response(
        json.dumps(content, separators=(",", ":")),
        status_code=status_code,
        media_type="application/json",
        headers=headers or None,
    )


def error_response(
    status_code: int, error_code: str, message: str, version: str | None = None, request_id: str | None = None
) -> Response:
    """Returns the error body ``{"error_code", "message"}`` with ``status_code`` and the headers
    :func:`json_response` sets. Raises nothing."""
    return json_response({"error_code": error_code, "message": message}, status_code, version, request_id)
