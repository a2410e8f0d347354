"""The inference log: every prediction the server made, and the labels that arrive later.

Layout under ``root``, a local folder or any fsspec URL (``s3://bucket/prefix``,
``gs://...``, ``memory://...``)::

    <root>/predictions/date=YYYY-MM-DD/<YYYYmmddTHHMMSS>-<uuid>.parquet
    <root>/labels/date=YYYY-MM-DD/<YYYYmmddTHHMMSS>-<uuid>.parquet

``predictions`` files hold one row per predicted row: ``request_id`` (str, unique per
row), ``timestamp`` (the event time, UTC), ``model_name``, ``model_version`` (str),
every feature column as the model received it (numbers float64, categoricals str),
then every output column the model answered with
(:func:`include.training.model.output_columns`):

- ``probability`` (float64) when the model gives one: P(positive class) for a binary
  model, the predicted class's for a multiclass one;
- ``prediction``, typed by the task: int64 (a binary label 0/1), str (a multiclass
  class name) or float64 (a regression value);
- ``probability_<class>`` (float64), one per class of a multiclass model.

The file's Parquet metadata (key ``inference_log.outputs``) lists its output columns
in order, so a reader tells them from the features; a file without it (written before
tasks existed) holds the binary ``probability`` and ``prediction``. The partition is
the UTC day of ``timestamp``; the file name starts with the UTC time the file was written.

``labels`` files hold ``request_id``, ``label`` and ``label_timestamp`` (when the label
became known, UTC). Labels are stored as the user gave them, one Parquet type per
file: int64 (integers; booleans as 0/1), float64 or str (``"yes"``, ``"Adelie"``);
the drift check types them for the task with :func:`include.data.cast.target_array`.
A label is stored in the partition of the *prediction* it labels, not of the day it
arrived, so a window's labels lie next to its predictions and :func:`read_window`
reads only the days of the window. A later label for the same request overrides an
earlier one (the latest ``label_timestamp`` wins).

Files are immutable: every flush adds new files and nothing is rewritten, so readers
need no lock. A file appears whole or not at all: on a local disk it is written
under a hidden temporary name and renamed; on an object store a single PUT is atomic.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
LABELS = "labels"
METADATA_COLUMNS = ("request_id", "timestamp", "model_name", "model_version")
PROBABILITY = "probability"
PREDICTION = "prediction"
PROBABILITY_PREFIX = "probability_"
# the output columns of a binary model, and of every file written before tasks existed
OUTPUT_COLUMNS = (PROBABILITY, PREDICTION)
# the Parquet metadata key listing a predictions file's output columns (a JSON list)
OUTPUTS_METADATA_KEY = b"inference_log.outputs"
LABEL_FILE_COLUMNS = ("request_id", "label", "label_timestamp")
LABEL_COLUMN = "label"
PREDICTION_DAY_COLUMN = "prediction_day"
# a feature with one of these names (or an output column's) would be overwritten by the log's own columns
RESERVED_COLUMNS = frozenset(METADATA_COLUMNS + OUTPUT_COLUMNS + (LABEL_COLUMN,))

DEFAULT_FLUSH_ROWS = 2000
DEFAULT_FLUSH_SECONDS = 2.0
# rows kept for another try while the store keeps failing; beyond this the oldest are
# dropped (and counted) rather than growing the server's memory without bound
DEFAULT_MAX_RETAINED_ROWS = 200_000
# reads are dominated by per-file latency on an object store; pyarrow releases the GIL
_READ_THREADS = 8
_NS_PER_SECOND = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_SECOND
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class InferenceLogError(Exception):
    """The inference log cannot be read: a file is corrupt, truncated or not a log file."""


# --------------------------------------------------------------------------- store


class _Store:
    """The log's root on a local disk or an object store, and the few operations the log needs."""

    def __init__(self, root: str | os.PathLike) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        text = os.fspath(root) if isinstance(root, os.PathLike) else root
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the inference log root must be a folder or a URL such as s3://bucket/prefix, "
                             f"got {root!r}")
        self.root = text
        self.fs, base = fsspec.core.url_to_fs(text)
        self.base = base.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def partition(self, kind: str, day: date) -> str:
        return f"{self.base.rstrip('/')}/{kind}/date={day:%Y-%m-%d}"

    def location(self, path: str) -> str:
        """``path`` as a user would type it: a plain path on a local disk, else a URL."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def write(self, path: str, payload: bytes) -> None:
        if not self.is_local:
            # an object store has no rename, but a single PUT never shows half an object
            self.fs.pipe_file(path, payload)
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        # the leading dot and the suffix keep readers away from the file until the rename
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(payload)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            try:
                os.unlink(temporary)
            except FileNotFoundError:
                pass
            raise

    def files(self, directory: str) -> list[str]:
        """The finished Parquet files of one partition, oldest name first; [] when it does not exist."""
        try:
            entries = self.fs.ls(directory, detail=False)
        except FileNotFoundError:
            return []
        names = []
        for entry in entries:
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name.endswith(".parquet") and not name.startswith("."):
                names.append(entry)
        return sorted(names)

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(path)


def _time_ordered_uuid() -> uuid.UUID:
    """A UUIDv7 (RFC 9562) with sub-millisecond precision: names written later sort later, so
    readers can break ties (two labels at the same label_timestamp) by write order."""
    now = time.time_ns()
    milliseconds, sub_millisecond = divmod(now, 1_000_000)
    fraction = sub_millisecond * 4096 // 1_000_000  # 12 bits
    random_bits = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=(milliseconds << 80) | (0x7 << 76) | (fraction << 64) | (0b10 << 62) | random_bits)


def _file_name() -> str:
    file_id = _time_ordered_uuid()
    written_at = datetime.fromtimestamp((file_id.int >> 80) / 1000, timezone.utc)
    return f"{written_at:%Y%m%dT%H%M%S}-{file_id.hex}.parquet"


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


# ---------------------------------------------------------------------- timestamps


def _aware_ns(value: datetime, what: str) -> int:
    """Nanoseconds since the epoch of a timezone-aware datetime; a naive one is refused, not guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value!r} has no timezone; pass a timezone-aware time (UTC)")
    if isinstance(value, pd.Timestamp):
        return int(value.as_unit("ns").value)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_SECOND + delta.microseconds * 1000


def _timestamps_ns(timestamps: Any, rows: int) -> int | np.ndarray:
    """One event time for every row (a datetime), or one per row (a sequence), as epoch nanoseconds."""
    if isinstance(timestamps, datetime):
        return _aware_ns(timestamps, "timestamp")
    if isinstance(timestamps, (str, bytes)) or not hasattr(timestamps, "__len__"):
        raise ValueError("timestamps must be a timezone-aware datetime (for every row) or a sequence "
                         f"of them (one per row), got {type(timestamps).__name__}")
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


def _as_day(value: Any, what: str) -> date:
    """A UTC calendar day from a date, an aware datetime or a 'YYYY-MM-DD' string."""
    if isinstance(value, datetime):
        return datetime.fromtimestamp(_aware_ns(value, what) // _NS_PER_SECOND, timezone.utc).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a date (or 'YYYY-MM-DD'), got {value!r}")


# -------------------------------------------------------------------------- writer


@dataclass(frozen=True, slots=True)
class _Batch:
    """The rows of one append() call, kept by reference until the next flush."""

    features: Any  # a DataFrame or a mapping of column name to a 1-D array
    outputs: Mapping[str, Any]  # output column name -> one value per row
    model_version: str
    request_ids: Sequence[str]
    timestamps: int | np.ndarray  # epoch ns: one for all rows, or one per row
    rows: int


@dataclass(frozen=True, slots=True)
class _EncodedFile:
    """A file ready to be written; its name is fixed so that a retry never writes it twice."""

    path: str
    payload: bytes
    rows: int


def _columns_of(features: Any) -> dict[str, np.ndarray]:
    if isinstance(features, pd.DataFrame):
        return {str(name): column.to_numpy() for name, column in features.items()}
    return {str(name): values if type(values) is np.ndarray else np.asarray(values)
            for name, values in features.items()}


def _is_output_name(name: Any) -> bool:
    return name in OUTPUT_COLUMNS or (isinstance(name, str) and name.startswith(PROBABILITY_PREFIX)
                                      and len(name) > len(PROBABILITY_PREFIX))


def _outputs_of(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The output columns typed as the log stores them; raises for values that cannot be."""
    typed = {}
    for name, values in outputs.items():
        array = values if type(values) is np.ndarray else np.asarray(values)
        if name != PREDICTION:
            typed[name] = array.astype(np.float64, copy=False)
        elif array.dtype.kind in "iub":
            typed[name] = array.astype(np.int64, copy=False)
        elif array.dtype.kind == "f":
            typed[name] = array.astype(np.float64, copy=False)
        elif array.dtype.kind in "OU":
            typed[name] = array.astype(object, copy=False)
        else:
            raise TypeError(f"the output column {PREDICTION!r} holds {array.dtype} values: the log stores "
                            "integer labels, numbers or class names")
    return typed


def _arrow_type(name: str, values: np.ndarray):
    import pyarrow as pa

    if name != PREDICTION or values.dtype.kind == "f":
        return pa.float64()
    return pa.int64() if values.dtype.kind == "i" else pa.string()


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
    """

    def __init__(self, root: str | os.PathLike, model_name: str, flush_rows: int = DEFAULT_FLUSH_ROWS,
                 flush_seconds: float = DEFAULT_FLUSH_SECONDS, *,
                 max_retained_rows: int = DEFAULT_MAX_RETAINED_ROWS) -> None:
        if not isinstance(model_name, str) or not model_name:
            raise ValueError(f"model_name must be a non-empty string, got {model_name!r}")
        if isinstance(flush_rows, bool) or not isinstance(flush_rows, int) or flush_rows < 1:
            raise ValueError(f"flush_rows must be a positive integer, got {flush_rows!r}")
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)) \
                or not 0 < flush_seconds < float("inf"):
            raise ValueError(f"flush_seconds must be a positive number, got {flush_seconds!r}")
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
        self._batches: list[_Batch] = []
        self._buffered_rows = 0  # rows in _batches
        self._unwritten_rows = 0  # appended, neither written nor dropped yet
        self._retry: list[_EncodedFile] = []
        self._closed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inference-log-writer", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ public

    def append(self, features: pd.DataFrame | Mapping[str, Any], outputs: Mapping[str, Any], model_version: str,
               request_ids: Sequence[str], timestamps: datetime | Sequence[datetime], *legacy: Any) -> None:
        """Buffer one batch of predicted rows.

        ``features``: the model's input, a DataFrame or a mapping of column to values,
        one entry per row; ``outputs``: every output column the model answered with
        (``prediction``, and ``probability`` and ``probability_<class>`` when it gives
        them), one value per row; ``timestamps``: one timezone-aware event time for every
        row or a sequence with one per row. The arguments are kept by reference until
        the next flush: the caller must not change them in place afterwards.

        The binary form of earlier releases, ``append(features, probabilities,
        predictions, model_version, request_ids, timestamps)``, is still accepted.
        """
        if not isinstance(outputs, Mapping):
            if len(legacy) != 1:
                raise TypeError("append() takes the output columns as a mapping: append(features, "
                                "{'probability': ..., 'prediction': ...}, model_version, request_ids, timestamps)")
            predictions = np.asarray(model_version, dtype=np.int64)  # a binary label, as it always was
            outputs, model_version, request_ids, timestamps = \
                {PROBABILITY: outputs, PREDICTION: predictions}, request_ids, timestamps, legacy[0]
        elif legacy:
            raise TypeError(f"append() takes 5 arguments after self, got {5 + len(legacy)}")
        rows = len(request_ids)
        names = list(outputs)
        if PREDICTION not in outputs:
            raise ValueError(f"the outputs lack the column {PREDICTION!r} (got {', '.join(map(str, names))})")
        unknown = [name for name in names if not _is_output_name(name)]
        if unknown:
            raise ValueError(f"unknown output column(s) {', '.join(map(repr, unknown))}: the log keeps "
                             f"{PREDICTION!r}, {PROBABILITY!r} and {PROBABILITY_PREFIX}<class>")
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
        reserved = RESERVED_COLUMNS.union(names)
        if not reserved.isdisjoint(feature_names):
            clashing = sorted(reserved.intersection(feature_names))
            raise ValueError(f"feature column(s) {', '.join(clashing)} clash with the inference log's own columns")
        if rows == 0:
            return
        batch = _Batch(features, outputs, str(model_version), request_ids, _timestamps_ns(timestamps, rows), rows)
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
        """Rows appended but not yet in the log (buffered, being written, or waiting for a retry)."""
        return self._unwritten_rows

    def flush(self) -> int:
        """Write every buffered row (and retry earlier failed writes) now; the number of rows written."""
        with self._flush_lock:
            with self._lock:
                batches, self._batches = self._batches, []
                self._buffered_rows = 0
            return self._write(batches)

    def close(self, timeout: float = 30.0) -> int:
        """Stop the background thread and flush what is left; the rows written by this last flush.

        Rows whose write still fails here are lost with the process: they are logged and
        counted in ``rows_dropped``.
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
            logger.error("%d inference log rows could not be written to %s before shutdown and are lost: %s",
                         lost, self.root, self.last_error)
        return written

    def __enter__(self) -> "InferenceLogWriter":
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

    def _write(self, batches: list[_Batch]) -> int:
        # earlier failures go first, so the files keep the order the rows arrived in
        pending, self._retry = self._retry, []
        pending.extend(self._encode(batches))
        written = 0
        for index, item in enumerate(pending):
            try:
                self._store.write(item.path, item.payload)
            except Exception as exc:
                self.write_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.error("could not write %d inference log rows to %s (%s); will retry",
                             item.rows, self._store.location(item.path), self.last_error)
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
            logger.error("dropped %d inference log rows: %s keeps failing (%s) and more than %d rows wait "
                         "for a retry", oldest.rows, self.root, self.last_error, self.max_retained_rows)

    def _encode(self, batches: list[_Batch]) -> list[_EncodedFile]:
        """One file per day per column layout; a model reload may change the features mid-buffer."""
        groups: dict[tuple, list[tuple[_Batch, dict[str, np.ndarray], dict[str, np.ndarray]]]] = {}
        for batch in batches:
            try:
                columns = _columns_of(batch.features)
                outputs = _outputs_of(batch.outputs)
                layout = (tuple(columns), tuple([values.dtype for values in columns.values()]),
                          tuple(outputs), tuple([values.dtype for values in outputs.values()]))
            except Exception as exc:
                self._drop_unencodable(batch, exc)
                continue
            groups.setdefault(layout, []).append((batch, columns, outputs))
        encoded = []
        for members in groups.values():
            try:
                encoded.extend(self._encode_group(members))
            except Exception as exc:
                if len(members) == 1:
                    self._drop_unencodable(members[0][0], exc)
                    continue
                # find the batches at fault, then write the others together as usual
                storable, one_by_one = [], []
                for member in members:
                    try:
                        one_by_one.extend(self._encode_group([member]))
                    except Exception as member_exc:
                        self._drop_unencodable(member[0], member_exc)
                    else:
                        storable.append(member)
                try:
                    encoded.extend(self._encode_group(storable) if storable else [])
                except Exception:
                    encoded.extend(one_by_one)
        return encoded

    def _drop_unencodable(self, batch: _Batch, exc: Exception) -> None:
        self.write_errors += 1
        self._count_dropped(batch.rows)
        self.last_error = f"{type(exc).__name__}: {exc}"
        logger.error("dropped %d inference log rows of model version %s that cannot be stored as Parquet: %s",
                     batch.rows, batch.model_version, self.last_error)

    def _encode_group(self, members: list[tuple[_Batch, dict[str, np.ndarray], dict[str, np.ndarray]]]
                      ) -> list[_EncodedFile]:
        import pyarrow as pa

        batches = [member[0] for member in members]
        counts = np.fromiter((batch.rows for batch in batches), dtype=np.int64, count=len(batches))
        if all(isinstance(batch.timestamps, int) for batch in batches):
            stamps = np.repeat(np.array([batch.timestamps for batch in batches], dtype=np.int64), counts)
        else:
            stamps = np.concatenate([
                np.full(batch.rows, batch.timestamps, dtype=np.int64) if isinstance(batch.timestamps, int)
                else batch.timestamps for batch in batches])
        request_ids: list[str] = []
        for batch in batches:
            request_ids.extend(batch.request_ids)
        versions = np.repeat(np.array([batch.model_version for batch in batches], dtype=object), counts)
        arrays = {
            "request_id": pa.array(request_ids, type=pa.string()),
            "timestamp": pa.array(stamps, type=pa.timestamp("ns", tz="UTC")),
            "model_name": pa.array(np.full(len(stamps), self.model_name, dtype=object), type=pa.string()),
            "model_version": pa.array(versions, type=pa.string()),
        }
        for name in members[0][1]:
            values = np.concatenate([member[1][name] for member in members])
            array = pa.array(values, from_pandas=values.dtype == object)
            if array.type == pa.null():  # a categorical feature null in every row is still text
                array = array.cast(pa.string())
            arrays[name] = array
        outputs = list(members[0][2])
        for name in outputs:
            values = np.concatenate([member[2][name] for member in members])
            arrays[name] = pa.array(values, type=_arrow_type(name, values))
        table = pa.table(arrays).replace_schema_metadata({OUTPUTS_METADATA_KEY: json.dumps(outputs).encode()})

        days = stamps // _NS_PER_DAY
        day_numbers = np.unique(days)
        files = []
        for day_number in day_numbers:
            day = (_EPOCH + timedelta(days=int(day_number))).date()
            part = table if len(day_numbers) == 1 else table.filter(pa.array(days == day_number))
            path = f"{self._store.partition(PREDICTIONS, day)}/{_file_name()}"
            files.append(_EncodedFile(path, _parquet_bytes(part), part.num_rows))
        return files


# -------------------------------------------------------------------------- labels


def write_labels(root: str | os.PathLike, labels: pd.DataFrame, *, day: date | None = None) -> list[str]:
    """Store labels next to the predictions they belong to; the files written.

    ``labels`` holds ``request_id`` (str), ``label`` (the user's label as it is: integers,
    booleans, floats or strings such as ``"yes"`` or ``"Adelie"``), ``label_timestamp``
    (timezone-aware: when the label became known) and, unless ``day`` is given,
    ``prediction_day`` (the UTC date of the prediction each label is for). ``day`` says
    that every label is for a prediction made that UTC day. Labels are stored as given,
    one Parquet type for the call: int64 (integers; booleans as 0/1), float64 (floats,
    or integers mixed with floats) or string; a call mixing text and numbers, or a
    label that is missing or not finite, is refused. Labels are appended, never
    merged: a request labelled twice keeps both, and readers take the latest.
    """
    if not isinstance(labels, pd.DataFrame):
        raise ValueError(f"labels must be a pandas DataFrame, got {type(labels).__name__}")
    required = list(LABEL_FILE_COLUMNS) + ([] if day is not None else [PREDICTION_DAY_COLUMN])
    absent = [name for name in required if name not in labels.columns]
    if absent:
        hint = " (or pass day=)" if absent == [PREDICTION_DAY_COLUMN] else ""
        raise ValueError(f"labels lack the column(s) {', '.join(absent)}{hint}; they need "
                         f"{', '.join(LABEL_FILE_COLUMNS)} and the day of the prediction they label")
    if day is not None and PREDICTION_DAY_COLUMN in labels.columns:
        raise ValueError(f"pass either day= or a {PREDICTION_DAY_COLUMN} column, not both")
    store = _Store(root)
    if labels.empty:
        return []

    request_ids = labels["request_id"].to_numpy(dtype=object)
    bad_ids = [index for index, value in enumerate(request_ids) if type(value) is not str or not value]
    if bad_ids:
        raise ValueError(f"request_id must be a non-empty string in every row; rows {_rows_text(bad_ids)} are not "
                         f"(e.g. {request_ids[bad_ids[0]]!r})")
    label_values = _stored_labels(labels["label"])
    label_times = _aware_times(labels["label_timestamp"], "label_timestamp")
    if day is not None:
        days = np.full(len(labels), _as_day(day, "day"), dtype=object)
    else:
        by_value = {value: _as_day(value, PREDICTION_DAY_COLUMN) for value in labels[PREDICTION_DAY_COLUMN].unique()}
        days = labels[PREDICTION_DAY_COLUMN].map(by_value).to_numpy(dtype=object)

    import pyarrow as pa

    table = pa.table({
        "request_id": pa.array(request_ids, type=pa.string()),
        "label": label_values,
        "label_timestamp": pa.array(label_times, type=pa.timestamp("ns", tz="UTC")),
    })
    written = []
    for label_day in sorted(set(days)):
        part = table.filter(pa.array(days == label_day))
        path = f"{store.partition(LABELS, label_day)}/{_file_name()}"
        store.write(path, _parquet_bytes(part))
        written.append(store.location(path))
    return written


def _rows_text(rows: list[int], shown: int = 5) -> str:
    text = ", ".join(str(row) for row in rows[:shown])
    return text + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def _stored_labels(column: pd.Series):
    """The labels as one Arrow array of the type they were given in: int64, float64 or string."""
    import pyarrow as pa

    missing = np.flatnonzero(column.isna().to_numpy())
    if len(missing):
        raise ValueError(f"label is missing in rows {_rows_text(missing.tolist())}; write only known labels")
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype(object)
    if pd.api.types.is_bool_dtype(column) or pd.api.types.is_integer_dtype(column):
        return pa.array(column.to_numpy(dtype=np.int64), type=pa.int64())
    if pd.api.types.is_float_dtype(column):
        return pa.array(_finite_labels(column.to_numpy(dtype=np.float64)), type=pa.float64())
    kind = pd.api.types.infer_dtype(column, skipna=False)
    if kind == "string":
        return pa.array(column.to_numpy(dtype=object), type=pa.string())
    if kind in ("integer", "boolean"):
        return pa.array(column.to_numpy(dtype=np.int64), type=pa.int64())
    if kind in ("floating", "mixed-integer-float", "decimal"):
        return pa.array(_finite_labels(column.to_numpy(dtype=np.float64)), type=pa.float64())
    values = column.to_numpy(dtype=object)
    texts = [index for index, value in enumerate(values) if isinstance(value, str)]
    if texts and len(texts) < len(values):
        others = [index for index, value in enumerate(values) if not isinstance(value, str)]
        raise ValueError(f"label mixes text (rows {_rows_text(texts)}) and other values (rows {_rows_text(others)}, "
                         f"e.g. {values[others[0]]!r}); write labels of one kind per call")
    raise ValueError(f"label must hold integers, booleans, floats or strings, got {kind} values "
                     f"such as {values[0]!r}")


def _finite_labels(values: np.ndarray) -> np.ndarray:
    infinite = np.flatnonzero(~np.isfinite(values))
    if len(infinite):
        raise ValueError(f"label must be a finite number; rows {_rows_text(infinite.tolist())} are not "
                         f"(e.g. {values[infinite[0]]!r})")
    return values


def _aware_times(column: pd.Series, what: str) -> np.ndarray:
    """Epoch ns of a column of timezone-aware times; naive or unparsable ones are refused."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        converted = column
    else:
        try:
            converted = pd.to_datetime(column)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must hold timezone-aware datetimes: {exc}") from None
        if not isinstance(converted.dtype, pd.DatetimeTZDtype):
            raise ValueError(f"{what} must hold timezone-aware datetimes (UTC), got {column.dtype} values "
                             "without a timezone")
    if converted.isna().any():
        raise ValueError(f"{what} is missing in rows {_rows_text(np.flatnonzero(converted.isna()).tolist())}")
    return converted.dt.tz_convert("UTC").dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)


# -------------------------------------------------------------------------- reader


def _empty_predictions(with_labels: bool) -> pd.DataFrame:
    columns = {
        "request_id": pd.Series(dtype=object),
        "timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
        "model_name": pd.Series(dtype=object),
        "model_version": pd.Series(dtype=object),
        "probability": pd.Series(dtype=np.float64),
        "prediction": pd.Series(dtype=np.int64),
    }
    if with_labels:
        columns[LABEL_COLUMN] = pd.Series(dtype="Int64")
    return pd.DataFrame(columns)


def _window_bound(value: Any, what: str) -> pd.Timestamp:
    if not isinstance(value, datetime):
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return pd.Timestamp(_aware_ns(value, what), unit="ns", tz="UTC")


def _days(start: pd.Timestamp, end: pd.Timestamp) -> list[date]:
    first, last = start.date(), (end - pd.Timedelta(1, "ns")).date()
    return [first + timedelta(days=offset) for offset in range((last - first).days + 1)]


def _file_outputs(table) -> list[str]:
    """The output columns a predictions file lists in its metadata; a file written before tasks
    existed lists none and holds the binary ones."""
    listed = (table.schema.metadata or {}).get(OUTPUTS_METADATA_KEY)
    if listed is None:
        return [name for name in OUTPUT_COLUMNS if name in table.column_names]
    names = json.loads(listed)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"its {OUTPUTS_METADATA_KEY.decode()} metadata is not a list of column names")
    return names


def _read_files(store: _Store, paths: list[str], required: tuple[str, ...],
                kind: str) -> list[tuple[pd.DataFrame, list[str]]]:
    """Each file as a frame, with its output columns (predictions files; [] for labels)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(path: str) -> tuple[pd.DataFrame, list[str]]:
        location = store.location(path)
        try:
            table = pq.read_table(pa.BufferReader(store.read(path)))
        except FileNotFoundError:
            return pd.DataFrame(), []  # removed between listing and reading (e.g. a retention job)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InferenceLogError(f"{location} is not a readable Parquet file (corrupt or truncated?): "
                                    f"{exc}") from exc
        try:
            outputs = _file_outputs(table) if kind == PREDICTIONS else []
        except ValueError as exc:
            raise InferenceLogError(f"{location} is not an inference log {kind} file: {exc}") from None
        absent = [name for name in (*required, *outputs) if name not in table.column_names]
        if absent:
            raise InferenceLogError(f"{location} is not an inference log {kind} file: it lacks "
                                    f"the column(s) {', '.join(absent)}")
        return table.to_pandas(), outputs

    if len(paths) <= 1:
        return [read(path) for path in paths]
    with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(paths))) as pool:
        return list(pool.map(read, paths))


def read_window(root: str | os.PathLike, start: datetime, end: datetime, *,
                with_labels: bool = True) -> pd.DataFrame:
    """The predictions with ``start <= timestamp < end``, in time order, with their labels.

    Columns: the log's own (``request_id``, ``timestamp``, ``model_name``,
    ``model_version``), the features, then the output columns the files hold
    (``probability``, ``prediction``, ``probability_<class>``; files of a binary model,
    including those written before tasks existed, hold the first two).
    Only the date partitions the window touches are read. With ``with_labels`` the
    column ``label`` holds each row's label as it was stored, missing while none arrived:
    pandas ``Int64`` when every label is an integer (and when there is none), float64
    when one is a float, else ``object`` (strings; None for missing). Of several labels
    for a request the one with the latest ``label_timestamp`` wins.
    Feature columns come back with the types they were logged with: a feature whose
    type changed between files comes back as an ``object`` column holding both kinds,
    for the drift check to see. An empty window gives an empty frame (with at least the
    log's own columns), not an error. A file that cannot be read raises
    :class:`InferenceLogError` naming it.
    """
    start_at, end_at = _window_bound(start, "start"), _window_bound(end, "end")
    if end_at <= start_at:
        raise ValueError(f"the window is empty or reversed: end {end_at} is not after start {start_at}")
    store = _Store(root)
    days = _days(start_at, end_at)
    paths = [path for day in days for path in store.files(store.partition(PREDICTIONS, day))]
    files = [(frame, names) for frame, names in _read_files(store, paths, METADATA_COLUMNS + (PREDICTION,),
                                                             PREDICTIONS) if len(frame.columns)]
    if not files:
        return _empty_predictions(with_labels)

    outputs: list[str] = []  # in the order the files list them
    for _, names in files:
        outputs.extend(name for name in names if name not in outputs)
    window = []
    for frame, _ in files:
        frame["timestamp"] = _utc_ns(frame["timestamp"])
        window.append(frame[(frame["timestamp"] >= start_at) & (frame["timestamp"] < end_at)])
    non_empty = [frame for frame in window if len(frame)] or window[:1]
    predictions = pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]
    predictions = predictions.sort_values("timestamp", kind="stable", ignore_index=True)
    features = [name for name in predictions.columns if name not in METADATA_COLUMNS and name not in outputs]
    predictions = predictions[list(METADATA_COLUMNS) + features + outputs]
    if not with_labels:
        return predictions
    labels = _latest_labels(store, days, predictions["request_id"])
    label_dtype = _label_dtype(labels[LABEL_COLUMN])
    joined = predictions.merge(labels, on="request_id", how="left", validate="many_to_one")
    if label_dtype == object:
        joined[LABEL_COLUMN] = joined[LABEL_COLUMN].astype(object).where(joined[LABEL_COLUMN].notna(), None)
    else:
        joined[LABEL_COLUMN] = joined[LABEL_COLUMN].astype(label_dtype)
    return joined


def _label_dtype(labels: pd.Series) -> Any:
    """The dtype the window's labels come back in: as stored (see :func:`read_window`)."""
    if pd.api.types.is_bool_dtype(labels) or pd.api.types.is_integer_dtype(labels):
        return "Int64"
    if pd.api.types.is_float_dtype(labels):
        return np.float64
    kind = pd.api.types.infer_dtype(labels, skipna=True)
    if kind in ("integer", "empty"):
        return "Int64"
    if kind in ("floating", "mixed-integer-float"):
        return np.float64
    return object


def _utc_ns(column: pd.Series) -> pd.Series:
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        # written by hand without a timezone: the log's times are UTC by definition
        column = pd.to_datetime(column).dt.tz_localize("UTC")
    return column.dt.tz_convert("UTC").dt.as_unit("ns")


def _latest_labels(store: _Store, days: list[date], request_ids: pd.Series) -> pd.DataFrame:
    paths = [path for day in days for path in store.files(store.partition(LABELS, day))]
    frames = [frame[list(LABEL_FILE_COLUMNS)] for frame, _ in _read_files(store, paths, LABEL_FILE_COLUMNS, LABELS)
              if len(frame.columns)]
    if not frames or request_ids.empty:
        return pd.DataFrame({"request_id": pd.Series(dtype=object), LABEL_COLUMN: pd.Series(dtype="Int64")})
    if len({str(frame[LABEL_COLUMN].dtype) for frame in frames}) > 1:
        # files of different label types (say int64 and float64): each label keeps its own type
        # rather than concat's common one, so that the labels that win are typed as they were stored
        frames = [frame.astype({LABEL_COLUMN: object}) for frame in frames]
    labels = pd.concat(frames, ignore_index=True)
    labels = labels[labels["request_id"].isin(request_ids)]
    labels["label_timestamp"] = _utc_ns(labels["label_timestamp"])
    # files are read oldest first and the sort is stable: of two labels at the same time the later file wins
    labels = labels.sort_values("label_timestamp", kind="stable").drop_duplicates("request_id", keep="last")
    return labels[["request_id", LABEL_COLUMN]]
