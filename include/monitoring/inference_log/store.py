"""Where the inference log lives: its layout, its file names and the few storage operations it needs.

The root is a local folder or any fsspec URL; the layout and the file contract are
described in :mod:`include.monitoring.inference_log`. This module holds what the
writer, the label writer and the reader share: the column names, the partition
paths, the time-ordered file names, and the UTC day of a time.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from include.training import PROBABILITY_PREFIX
from include.util.fs import write_atomically

# the file contract's names, re-exported by the package
__all__ = [
    "LABELS",
    "LABEL_COLUMN",
    "LABEL_FILE_COLUMNS",
    "METADATA_COLUMNS",
    "OTHER_OUTPUTS_METADATA_KEY",
    "OTHER_PREFIX",
    "OTHER_VERSION_COLUMN",
    "OUTPUTS_METADATA_KEY",
    "OUTPUT_COLUMNS",
    "PREDICTION",
    "PREDICTIONS",
    "PREDICTION_DAY_COLUMN",
    "PROBABILITY",
    "PROBABILITY_PREFIX",
    "RESERVED_COLUMNS",
    "InferenceLogError",
]

PREDICTIONS = "predictions"
LABELS = "labels"
METADATA_COLUMNS = ("request_id", "timestamp", "model_name", "model_version")
PROBABILITY = "probability"
PREDICTION = "prediction"
# the output columns of a binary model, and of every file written before tasks existed
OUTPUT_COLUMNS = (PROBABILITY, PREDICTION)
# the Parquet metadata key listing a predictions file's output columns (a JSON list)
OUTPUTS_METADATA_KEY = b"inference_log.outputs"
# ... and the output columns it holds of a rollout's other model, each as ``other_<column>``
OTHER_OUTPUTS_METADATA_KEY = b"inference_log.other_outputs"
# a rollout's other model: the version (null when it did not score the row) and its output columns
OTHER_VERSION_COLUMN = "other_version"
OTHER_PREFIX = "other_"
LABEL_FILE_COLUMNS = ("request_id", "label", "label_timestamp")
LABEL_COLUMN = "label"
PREDICTION_DAY_COLUMN = "prediction_day"
# a feature with one of these names (or an output column's) would be overwritten by the log's own columns
RESERVED_COLUMNS = frozenset(
    METADATA_COLUMNS
    + OUTPUT_COLUMNS
    + (LABEL_COLUMN, OTHER_VERSION_COLUMN)
    + tuple(OTHER_PREFIX + n for n in OUTPUT_COLUMNS)
)

_NS_PER_SECOND = 1_000_000_000
_NS_PER_DAY = 86_400 * _NS_PER_SECOND
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InferenceLogError(Exception):
    """The inference log cannot be read: a file is corrupt, truncated or not a log file."""


class _Store:
    """The log's root on a local disk or an object store, and the few operations the log needs."""

    def __init__(self, root: str | os.PathLike) -> None:
        import fsspec
        from fsspec.implementations.local import LocalFileSystem

        text = os.fspath(root) if isinstance(root, os.PathLike) else root
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"the inference log root must be a folder or a URL such as s3://bucket/prefix, got {root!r}"
            )
        self.root = text
        self.fs, base = fsspec.core.url_to_fs(text)
        self.base = base.rstrip("/") or "/"
        self.is_local = isinstance(self.fs, LocalFileSystem)

    def partition(self, kind: str, day: date) -> str:
        """The folder (a path or URL, str) of ``kind``'s files for UTC ``day``: ``<base>/<kind>/date=YYYY-MM-DD``."""
        return f"{self.base.rstrip('/')}/{kind}/date={day:%Y-%m-%d}"

    def location(self, path: str) -> str:
        """``path`` as a user would type it: a plain path on a local disk, else a URL."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def write(self, path: str, payload: bytes) -> None:
        """Write ``payload`` to ``path`` whole or not at all; the filesystem's ``OSError`` passes through."""
        # locally: a hidden temporary file (readers skip names starting with '.') renamed over
        # the target; on an object store, which has no rename, a single PUT never shows half an object
        write_atomically(path, payload, filesystem=None if self.is_local else self.fs)

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
        """The bytes of the file at ``path``; the filesystem's ``OSError`` (e.g. FileNotFoundError) passes through."""
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
    written_at = datetime.fromtimestamp((file_id.int >> 80) / 1000, UTC)
    return f"{written_at:%Y%m%dT%H%M%S}-{file_id.hex}.parquet"


def _parquet_bytes(table) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _aware_ns(value: datetime, what: str) -> int:
    """Nanoseconds since the epoch of a timezone-aware datetime; a naive one is refused, not guessed."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value!r} has no timezone; pass a timezone-aware time (UTC)")
    if isinstance(value, pd.Timestamp):
        return int(value.as_unit("ns").value)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * _NS_PER_SECOND + delta.microseconds * 1000


def _as_day(value: Any, what: str) -> date:
    """A UTC calendar day from a date, an aware datetime or a 'YYYY-MM-DD' string."""
    if isinstance(value, datetime):
        return datetime.fromtimestamp(_aware_ns(value, what) // _NS_PER_SECOND, UTC).date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{what} must be a date (or 'YYYY-MM-DD'), got {value!r}")
