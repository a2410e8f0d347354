"""The inference log's writer: predicted rows buffered in memory, written as Parquet from a thread.

:meth:`InferenceLogWriter.append` sits on the serving hot path, so it only checks
the rows and keeps them by reference; a background thread encodes them
(:mod:`~include.monitoring.inference_log.encode`) and writes them.
A store that fails is retried on every flush rather than failing a request, with a
bound on the rows kept for that (see :class:`InferenceLogWriter`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from include.monitoring.inference_log.encode import Batch, EncodedFile, encode
from include.monitoring.inference_log.store import (
    OTHER_PREFIX,
    OTHER_VERSION_COLUMN,
    OUTPUT_COLUMNS,
    PREDICTION,
    PROBABILITY,
    PROBABILITY_PREFIX,
    RESERVED_COLUMNS,
    InferenceLogError,
    _aware_ns,
    _Store,
)

logger = logging.getLogger(__name__)

DEFAULT_FLUSH_ROWS = 2000
DEFAULT_FLUSH_SECONDS = 2.0
# rows kept for another try while the store keeps failing; beyond this the oldest are
# dropped (and counted) rather than growing the server's memory without bound
DEFAULT_MAX_RETAINED_ROWS = 200_000


def check_flush_settings(flush_rows: Any, flush_seconds: Any, prefix: str = "") -> None:
    """Check when a writer flushes: every ``flush_rows`` rows, at the latest every ``flush_seconds`` seconds.

    Returns None. Raises ``ValueError`` naming ``<prefix>flush_rows`` unless it is a
    positive integer, or ``<prefix>flush_seconds`` unless it is a finite number > 0.
    """
    if isinstance(flush_rows, bool) or not isinstance(flush_rows, int) or flush_rows < 1:
        raise ValueError(f"{prefix}flush_rows must be a positive integer, got {flush_rows!r}")
    if (
        isinstance(flush_seconds, bool)
        or not isinstance(flush_seconds, (int, float))
        or not 0 < flush_seconds < float("inf")
    ):
        raise ValueError(f"{prefix}flush_seconds must be a positive number of seconds, got {flush_seconds!r}")


def _timestamps_ns(timestamps: Any, rows: int) -> int | np.ndarray:
    """One event time for every row (a datetime), or one per row (a sequence), as epoch nanoseconds."""
    if isinstance(timestamps, datetime):
        return _aware_ns(timestamps, "timestamp")
    if isinstance(timestamps, (str, bytes)) or not hasattr(timestamps, "__len__"):
        raise ValueError(
            "timestamps must be a timezone-aware datetime (for every row) or a sequence "
            f"of them (one per row), got {type(timestamps).__name__}"
        )
    if len(timestamps) != rows:
        raise ValueError(f"{len(timestamps)} timestamps for {rows} rows")
    try:
        index = pd.DatetimeIndex(timestamps)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"timestamps are not datetimes: {exc}") from None
    if index.tz is None:
        raise ValueError("timestamps have no timezone; pass timezone-aware times (UTC)")
    if index.hasnans:
        raise ValueError("timestamps hold missing values")
    return index.tz_convert("UTC").as_unit("ns").asi8.copy()


def _is_output_name(name: Any) -> bool:
    return name in OUTPUT_COLUMNS or (
        isinstance(name, str) and name.startswith(PROBABILITY_PREFIX) and len(name) > len(PROBABILITY_PREFIX)
    )


class InferenceLogWriter:
    """Buffers predicted rows in memory and writes them to the inference log from a background thread.

    A flush happens when ``flush_rows`` rows are buffered, at the latest ``flush_seconds``
    after the previous one, on :meth:`flush` and on :meth:`close`. :meth:`append` does no
    I/O and copies nothing, so it can sit on the serving hot path.

    A failed write never raises into the caller: it is logged and counted
    (``write_errors``), and the rows are kept and retried on the next flush, up to
    ``max_retained_rows``; past that the oldest are dropped and counted (``rows_dropped``).
    Rows the log cannot encode at all (say a column mixing strings and numbers) are
    dropped and counted at once, since retrying cannot help.

    ``root`` is a local folder or an fsspec URL; ``flush_seconds`` is in seconds. The
    counters ``rows_written``, ``write_errors`` and ``rows_dropped`` (ints) and
    ``last_error`` (``"<ExceptionType>: <message>"`` or None) are read by the server's
    metrics. Raises ``ValueError`` for an empty ``model_name``, a ``flush_rows`` or
    ``flush_seconds`` that is not positive, a negative ``max_retained_rows`` or a root
    that is not a folder or URL.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        model_name: str,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        *,
        max_retained_rows: int = DEFAULT_MAX_RETAINED_ROWS,
    ) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
        check_flush_settings(flush_rows, flush_seconds)
        if isinstance(max_retained_rows, bool) or not isinstance(max_retained_rows, int) or max_retained_rows < 0:
            raise ValueError(f"max_retained_rows must be a non-negative integer, got {max_retained_rows!r}")
        self._store = _Store(root)
        self.root = self._store.root
        self.model_name = model_name
        self.flush_rows = flush_rows
        self.flush_seconds = float(flush_seconds)
        self.max_retained_rows = max_retained_rows

        self.rows_written = 0
        self.write_errors = 0
        self.rows_dropped = 0
        self.last_error: str | None = None

        self._lock = threading.Lock()  # guards the buffer and _closed
        self._flush_lock = threading.Lock()  # one flush at a time, so _retry stays in order
        self._batches: list[Batch] = []
        self._buffered_rows = 0  # rows in _batches
        self._unwritten_rows = 0  # appended, neither written nor dropped yet
        self._retry: list[EncodedFile] = []
        self._closed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public

    def append(
        self,
        features: pd.DataFrame | Mapping[str, Any],
        outputs: Mapping[str, Any],
        model_version: str,
        request_ids: Sequence[str],
        timestamps: datetime | Sequence[datetime],
        *legacy: Any,
        other_version: str | None = None,
        other_outputs: Mapping[str, Any] | None = None,
    ) -> None:
        """Buffer one batch of predicted rows.

        ``features``: the model's input, a DataFrame or a mapping of column to values,
        one entry per row; ``outputs``: every output column the model answered with
        (``prediction``, and ``probability`` and ``probability_<class>`` when it gives
        them), one value per row; ``timestamps``: one timezone-aware event time for every
        row or a sequence with one per row. The arguments are kept by reference until
        the next flush: the caller must not change them in place afterwards.

        ``model_version`` is the version that answered the rows. ``other_version`` and
        ``other_outputs`` (both or neither) are a rollout's other model, the shadow candidate, and
        its output columns for the same rows: logged as ``other_version`` and ``other_<column>``;
        without them those columns are null.

        The binary form of earlier releases, ``append(features, probabilities,
        predictions, model_version, request_ids, timestamps)``, is still accepted.

        Returns None. Raises ``ValueError`` when the outputs lack ``prediction`` or name
        a column the log does not keep, when a column's length differs from the number
        of request ids, when a feature is named like one of the log's own columns, or
        when the timestamps are naive, missing or not one per row; ``TypeError`` for a
        wrong call shape; :class:`InferenceLogError` once the writer is closed.
        """
        if not isinstance(outputs, Mapping):
            if len(legacy) != 1:
                raise TypeError(
                    "append() takes the output columns as a mapping: append(features, "
                    "{'probability': ..., 'prediction': ...}, model_version, request_ids, timestamps)"
                )
            predictions = np.asarray(model_version, dtype=np.int64)  # a binary label, as it always was
            outputs, model_version, request_ids, timestamps = (
                {PROBABILITY: outputs, PREDICTION: predictions},
                request_ids,
                timestamps,
                legacy[0],
            )
        elif legacy:
            raise TypeError(f"append() takes 5 arguments after self, got {5 + len(legacy)}")
        rows = len(request_ids)
        names = list(outputs)
        if PREDICTION not in outputs:
            raise ValueError(f"the outputs lack the column {PREDICTION!r} (got {', '.join(map(str, names))})")
        unknown = [name for name in names if not _is_output_name(name)]
        if unknown:
            raise ValueError(
                f"unknown output column(s) {', '.join(map(repr, unknown))}: the log keeps "
                f"{PREDICTION!r}, {PROBABILITY!r} and {PROBABILITY_PREFIX}<class>"
            )
        for name, values in outputs.items():
            if len(values) != rows:
                raise ValueError(f"{len(values)} values of the output column {name!r} for {rows} request ids")
        if isinstance(features, pd.DataFrame):
            feature_names = features.columns
            if len(features) != rows:
                raise ValueError(f"{len(features)} feature rows for {rows} request ids")
        else:
            feature_names = features.keys()
            for name, values in features.items():
                if len(values) != rows:
                    raise ValueError(f"feature column {name!r} has {len(values)} values for {rows} request ids")
        if (other_version is None) != (other_outputs is None):
            raise ValueError("other_version and other_outputs go together: pass both or neither")
        other_names: list[str] = []
        if other_outputs is not None:
            other_names = list(other_outputs)
            if PREDICTION not in other_outputs or not all(map(_is_output_name, other_names)):
                raise ValueError(f"other_outputs must be output columns with {PREDICTION!r}, got {other_names}")
            for name, values in other_outputs.items():
                if len(values) != rows:
                    raise ValueError(f"{len(values)} values of the other output column {name!r} for {rows} request ids")
        reserved = RESERVED_COLUMNS.union(names).union(OTHER_PREFIX + name for name in [*names, *other_names])
        reserved = reserved.union((OTHER_VERSION_COLUMN,))
        if not reserved.isdisjoint(feature_names):
            clashing = sorted(reserved.intersection(feature_names))
            raise ValueError(f"feature column(s) {', '.join(clashing)} clash with the inference log's own columns")
        if rows == 0:
            return
        batch = Batch(
            features,
            outputs,
            str(model_version),
            request_ids,
            _timestamps_ns(timestamps, rows),
            rows,
            None if other_version is None else str(other_version),
            other_outputs,
        )
        with self._lock:
            if self._closed:
                raise InferenceLogError(f"the inference log writer for {self.root} is closed")
            self._batches.append(batch)
            self._buffered_rows += rows
            self._unwritten_rows += rows
            full = self._buffered_rows >= self.flush_rows
        if full:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        """The number of rows appended but not yet in the log (buffered, being written, or waiting for a retry)."""
        return self._unwritten_rows

    def flush(self) -> int:
        """Write every buffered row (and retry earlier failed writes) now.

        Returns the number of rows written by this flush (an int, 0 when the store
        fails). A failing store never raises here: see the class docstring.
        """
        with self._flush_lock:
            with self._lock:
                batches, self._batches = self._batches, []
                self._buffered_rows = 0
            return self._write(batches)

    def close(self, timeout: float = 30.0) -> int:
        """Stop the background thread and flush what is left.

        Returns the number of rows written by this last flush (0 when the writer was
        already closed). ``timeout`` (seconds) bounds the wait for the thread. Rows
        whose write still fails here are lost with the process: they are logged and
        counted in ``rows_dropped``. Raises nothing for a failing store.
        """
        with self._lock:
            already_closed, self._closed = self._closed, True
        if already_closed:
            return 0
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            logger.warning("the inference log writer thread did not stop within %.0fs", timeout)
        written = self.flush()
        if self._retry:
            lost = sum(item.rows for item in self._retry)
            self._count_dropped(lost)
            self._retry = []
            logger.error(
                "%d inference log rows could not be written to %s before shutdown and are lost: %s",
                lost,
                self.root,
                self.last_error,
            )
        return written

    def __enter__(self) -> InferenceLogWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ----------------------------------------------------------------- private

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            if self._closed:
                return  # close() does the last flush itself, after the thread is gone
            try:
                self.flush()
            except Exception:  # a bug here must not stop the logging for the server's lifetime
                logger.exception("the inference log flush failed unexpectedly")

    def _write(self, batches: list[Batch]) -> int:
        # earlier failures go first, so the files keep the order the rows arrived in
        pending, self._retry = self._retry, []
        pending.extend(encode(batches, self._store, self.model_name, self._drop_unencodable))
        written = 0
        for index, item in enumerate(pending):
            try:
                self._store.write(item.path, item.payload)
            except Exception as exc:
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "could not write %d inference log rows to %s (%s); will retry",
                    item.rows,
                    self._store.location(item.path),
                    self.last_error,
                )
                # the store is failing: keep this file and the rest for the next flush
                self._retry = pending[index:]
                break
            written += item.rows
            with self._lock:
                self.rows_written += item.rows
                self._unwritten_rows -= item.rows
        self._drop_excess_retries()
        return written

    def _count_dropped(self, rows: int) -> None:
        with self._lock:
            self.rows_dropped += rows
            self._unwritten_rows -= rows

    def _drop_excess_retries(self) -> None:
        retained = sum(item.rows for item in self._retry)
        while self._retry and retained > self.max_retained_rows:
            oldest = self._retry.pop(0)
            retained -= oldest.rows
            self._count_dropped(oldest.rows)
            logger.error(
                "dropped %d inference log rows: %s keeps failing (%s) and more than %d rows wait for a retry",
                oldest.rows,
                self.root,
                self.last_error,
                self.max_retained_rows,
            )

    def _drop_unencodable(self, batch: Batch, exc: Exception) -> None:
        self.write_errors += 1
        self._count_dropped(batch.rows)
        self.last_error = f"{type(exc).__name__}: {exc}"
        logger.error(
            "dropped %d inference log rows of model version %s that cannot be stored as Parquet: %s",
            batch.rows,
            batch.model_version,
            self.last_error,
        )
