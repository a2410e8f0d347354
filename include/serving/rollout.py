"""A rollout: the champion and a candidate served by one server, in shadow or canary mode.

While a rollout runs (:class:`Rollout`, ``app.state.serving.rollout``; started by the command
line or ``POST /admin/rollout``, ended by ``DELETE /admin/rollout`` or ``POST /admin/reload``):

- ``shadow``: the champion answers every request, byte for byte as without a rollout; the
  candidate scores the same rows in the same turn of the micro-batcher (one more model call
  per batch), and its outputs go to the inference log's ``other_*`` columns. A candidate that
  fails never fails the request: it is counted (``model_shadow_errors_total``) and its
  ``other_*`` values are null.
- ``canary``: each row has a key, its value of the ``sticky_column`` when the request carries
  that column, else the request id (all rows of a request then go together). The candidate
  answers the row iff :func:`bucket` ``(key) < canary_share``. The response keeps MLflow's
  ``predictions``, one record per row; ``model_versions`` lists the version that answered
  each row, and ``model_version`` (and ``X-Model-Version``) is the champion's unless the
  candidate answered every row. A request whose rows the two versions share is one model
  call each (both batched), and its rows are logged under the version that answered them.

``X-Score-With: candidate`` (or ``champion``) has that version answer the whole request alone,
with no shadow; the deploy step's smoke test of a candidate uses it. It is honoured only by a
server with admin routes or ``--allow-score-with`` (a 403 otherwise), and only during a
rollout (a 409 otherwise).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from include.deployment.rollout_config import CANARY, SHADOW, RolloutConfig
from include.serving.answer import (
    Answered,
    _answered,
    _failed,
    _rejected,
    answer,
    answer_batched,
    json_response,
    records,
    row_ids,
)
from include.serving.batching import MicroBatcher
from include.serving.model import ServedModel, checked_output
from include.serving.request import ParsedRequest, RequestRejected, parse_request, row_count

SCORE_WITH_HEADER = "X-Score-With"
_BUCKETS = float(2**64)

__all__ = ["CANARY", "SCORE_WITH_HEADER", "SHADOW", "Part", "Rollout", "answer_rollout", "bucket"]


def bucket(key: Any) -> float:
    """The canary bucket of ``key`` in [0, 1): the first 8 bytes of blake2b(``str(key)``, UTF-8) as a
    big-endian integer / 2**64. The same in every process and after every restart; raises nothing."""
    digest = hashlib.blake2b(str(key).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / _BUCKETS


@dataclass(frozen=True)
class Rollout:
    """A running rollout: its configuration and the loaded candidate. Replaced whole, never mutated."""

    config: RolloutConfig
    candidate: ServedModel

    def as_json(self, champion_version: str | None) -> dict[str, Any]:
        """The ``GET /admin/rollout`` body (with ``champion_version``)."""
        return {"champion_version": champion_version, **self.config.as_json()}


@dataclass(frozen=True)
class Part:
    """Rows of one request answered by one version: what the log and the metrics take of them.

    ``other_version``/``other_outputs``: the shadow candidate's outputs for the same rows (None
    when there was no shadow or it failed).
    """

    served: ServedModel
    answered: Answered
    other_version: str | None = None
    other_outputs: Mapping[str, np.ndarray] | None = None


async def answer_rollout(
    body: bytes,
    champion: ServedModel,
    rollout: Rollout,
    max_rows: int,
    request_id: str,
    media_type: str,
    batcher: MicroBatcher,
    inline: bool,
    score_with: str | None = None,
) -> tuple[Response, list[Part], list[str], int]:
    """One ``/invocations`` request during a rollout; every outcome is a response, never an exception.

    ``inline``: a small body, predicted on the event loop (batched when the model has a direct
    predictor) rather than in a worker thread. ``score_with`` is ``"candidate"`` or ``"champion"``
    to have that version answer alone. Returns the response, the answered parts (empty unless
    200), the versions that answered or failed (for the per-version metrics), and the number of
    shadow scoring failures (0 or 1).
    """
    if score_with is not None:
        served = rollout.candidate if score_with == "candidate" else champion
        if inline and served.direct is not None:
            response, answered = await answer_batched(body, served, max_rows, request_id, batcher, media_type)
        elif inline:
            response, answered = answer(body, served, max_rows, request_id, media_type)
        else:
            response, answered = await run_in_threadpool(answer, body, served, max_rows, request_id, media_type)
        return response, [] if answered is None else [Part(served, answered)], [served.version], 0
    config = rollout.config
    try:
        parsed = await _parse(body, champion, max_rows, media_type, config.sticky_column, inline)
    except RequestRejected as rejected:
        return _rejected(rejected, champion, request_id), [], [champion.version], 0
    if config.mode == SHADOW:
        return await _shadow(
            body, parsed, champion, rollout.candidate, max_rows, request_id, media_type, batcher, inline
        )
    return await _canary(body, parsed, champion, rollout, max_rows, request_id, media_type, batcher, inline)


async def _shadow(body, parsed, champion, candidate, max_rows, request_id, media_type, batcher, inline):
    columns = parsed.columns
    # both submitted before either is awaited: one flush of the batcher predicts both
    answer_future = _predict(champion, columns, parsed.params, batcher, inline)
    shadow_future = None
    try:
        shadow_columns = (
            columns
            if candidate.columns == champion.columns
            else (await _parse(body, candidate, max_rows, media_type, None, inline)).columns
        )
        shadow_future = _predict(candidate, shadow_columns, parsed.params, batcher, inline)
    except RequestRejected:
        pass
    try:
        outputs = await answer_future
    except Exception as exc:
        if shadow_future is not None:
            await asyncio.gather(shadow_future, return_exceptions=True)
        return _failed(exc, champion, request_id), [], [champion.version], 0
    other = None
    if shadow_future is not None:
        try:
            other = await shadow_future
        except Exception:
            other = None
    response, answered = _answered(columns, outputs, champion, request_id)
    part = Part(champion, answered, None if other is None else candidate.version, other)
    return response, [part], [champion.version], int(other is None)


async def _canary(body, parsed, champion, rollout, max_rows, request_id, media_type, batcher, inline):
    config, candidate = rollout.config, rollout.candidate
    columns = parsed.columns
    rows = row_count(columns)
    if parsed.kept is not None:
        to_candidate = np.fromiter((bucket(key) < config.canary_share for key in parsed.kept), dtype=bool, count=rows)
    else:
        to_candidate = np.full(rows, bucket(request_id) < config.canary_share)
    ids = row_ids(request_id, rows)
    candidate_rows = np.flatnonzero(to_candidate)
    champion_rows = np.flatnonzero(~to_candidate)
    candidate_columns = columns
    if len(candidate_rows) and candidate.columns != champion.columns:
        try:
            candidate_columns = (await _parse(body, candidate, max_rows, media_type, None, inline)).columns
        except RequestRejected as rejected:
            return _rejected(rejected, candidate, request_id), [], [candidate.version], 0
    plan = [
        (served, index, _take(cols, index, rows))
        for served, index, cols in ((champion, champion_rows, columns), (candidate, candidate_rows, candidate_columns))
        if len(index)
    ]
    futures = [_predict(served, cols, parsed.params, batcher, inline) for served, _, cols in plan]
    results = await asyncio.gather(*futures, return_exceptions=True)
    versions = [served.version for served, _, _ in plan]
    for (served, _, _), result in zip(plan, results, strict=True):
        if isinstance(result, Exception):
            return _failed(result, served, request_id), [], versions, 0
    predictions: list[Any] = [None] * rows
    answered_by: list[str | None] = [None] * rows
    parts = []
    for (served, index, cols), outputs in zip(plan, results, strict=True):
        part_ids = ids if len(index) == rows else [ids[position] for position in index.tolist()]
        for position, record in zip(index.tolist(), records(outputs), strict=True):
            predictions[position] = record
            answered_by[position] = served.version
        parts.append(Part(served, Answered(cols, outputs, part_ids)))
    version = candidate.version if len(candidate_rows) == rows else champion.version
    response = json_response(
        {"predictions": predictions, "model_version": version, "model_versions": answered_by, "request_ids": ids},
        200,
        version,
        request_id,
    )
    return response, parts, versions, 0


async def _parse(body, served, max_rows, media_type, keep, inline) -> ParsedRequest:
    if inline:
        return parse_request(body, served.columns, max_rows, media_type, keep)
    return await run_in_threadpool(parse_request, body, served.columns, max_rows, media_type, keep)


def _predict(served: ServedModel, columns, params, batcher: MicroBatcher, inline: bool) -> asyncio.Future:
    """The future of ``served``'s checked outputs for ``columns``: batched on the loop, else in a thread."""
    if inline and served.direct is not None:
        return batcher.submit(served, columns)
    return asyncio.ensure_future(run_in_threadpool(_predict_now, served, columns, params))


def _predict_now(served: ServedModel, columns, params) -> Mapping[str, np.ndarray]:
    if served.direct is not None:
        return checked_output(served.direct(columns), row_count(columns))
    frame = pd.DataFrame(columns, copy=False)
    output = served.pyfunc.predict(frame) if params is None else served.pyfunc.predict(frame, params=params)
    return checked_output(output, len(frame))


def _take(columns: dict[str, Any], index: np.ndarray, rows: int) -> dict[str, Any]:
    """The rows ``index`` of every column (all of them as they are when ``index`` covers every row)."""
    if len(index) == rows:
        return columns
    return {
        name: values[index] if isinstance(values, np.ndarray) else [values[position] for position in index.tolist()]
        for name, values in columns.items()
    }


def score_with_of(headers: Mapping[str, str], allowed: bool, rollout: Rollout | None) -> str | None:
    """The version ``X-Score-With`` asks for (``"candidate"`` or ``"champion"``), None without the header.

    Raises :class:`RequestRejected`: 400 for another value, 403 ``SCORE_WITH_DISABLED`` on a server
    that does not honour it, 409 ``NO_ROLLOUT`` when no rollout runs.
    """
    wanted = headers.get(SCORE_WITH_HEADER)
    if wanted is None:
        return None
    wanted = wanted.strip().lower()
    if wanted not in ("candidate", "champion"):
        raise RequestRejected(400, "BAD_SCORE_WITH", f"{SCORE_WITH_HEADER} must be candidate or champion")
    if not allowed:
        raise RequestRejected(
            403, "SCORE_WITH_DISABLED", f"this server does not honour {SCORE_WITH_HEADER} (admin routes are off)"
        )
    if rollout is None:
        raise RequestRejected(409, "NO_ROLLOUT", f"{SCORE_WITH_HEADER} needs a rollout; none runs")
    return wanted
