"""Micro-batching: small concurrent requests for the project's model share one model call.

Under load the model then runs once per turn of the event loop rather than once per
request. Each request still gets exactly its own answer, logs its own rows and counts
in the metrics as one request. Only a model with a direct predictor is batched
(:class:`~include.serving.model.ServedModel`); other pyfuncs are predicted one request
at a time through MLflow's ``predict``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from include.serving.model import ServedModel, checked_output
from include.serving.request import row_count

# the most a request may be held for others to join its call (``--batch-max-wait-ms``):
# the wait is added to every batched request's latency
MAX_BATCH_WAIT_SECONDS = 0.010


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

    ``max_rows`` caps the rows of one call (a request larger than that is still
    predicted, alone); ``observe(requests, rows)`` is called after each successful
    call. Raises ``ValueError`` for a ``max_rows`` that is not a positive integer or
    a ``max_wait`` outside [0, :data:`MAX_BATCH_WAIT_SECONDS`] seconds.
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
        """The output columns for ``columns``' rows, predicted with whatever else is queued.

        Returns one array per output column with one value per row of ``columns``,
        checked by :func:`~include.serving.model.checked_output`. Raises
        :class:`~include.serving.model.InvalidModelOutput` for an output that fails
        the check, or whatever ``served.direct`` raises on this request's rows alone.
        Must be awaited on the event loop that runs the app.
        """
        return await self.submit(served, columns)

    def submit(self, served: ServedModel, columns: dict[str, np.ndarray]) -> asyncio.Future:
        """Queue ``columns`` for ``served`` and return the future of :meth:`predict`'s answer, without waiting.

        Requests for several models (a rollout's champion and candidate) submitted on one turn of
        the event loop are predicted in the same flush, one model call per model. Must be called
        on the event loop that runs the app.
        """
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((served, columns, row_count(columns), future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self.max_wait > 0:
                loop.call_later(self.max_wait, self._flush)
            else:
                loop.call_soon(self._flush)
        return future

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
            outputs = checked_output(served.direct(merged), batch_rows)
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
            _settle(future, result={name: values[offset : offset + rows] for name, values in outputs.items()})
            offset += rows


def _settle(future, *, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)
