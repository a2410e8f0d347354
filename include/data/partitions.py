"""Reading the landing zone: daily partitions ``<location>/date=YYYY-MM-DD/*.parquet``.

It also holds the one encoding every writer of the zone lands a partition in
(:func:`to_parquet_bytes`), so that re-landing the same rows gives the same bytes.

This module only finds and reads files. It neither fixes nor coerces types and
it does not insist that every partition holds every column: a broken batch must
reach the Great Expectations suite as it is, so that validation is what rejects
it, with a report that says why.
"""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pandas as pd

from include.data.spec import DatasetSpec

PARTITION_PREFIX = "date="


class DataError(ValueError):
    """The landing zone cannot give the data asked for; the message names what and where."""


class UnreadablePartition(DataError):
    """A partition file is not readable Parquet (empty, truncated, corrupt); the message names it."""


def _partition_folders(spec: DatasetSpec) -> dict[date, Path]:
    root = Path(spec.location)
    if not root.is_dir():
        return {}
    folders = {}
    for entry in root.iterdir():
        # Anything that is not a date= folder (markers such as _SUCCESS, hidden files) is not data.
        if not entry.is_dir() or not entry.name.startswith(PARTITION_PREFIX):
            continue
        try:
            day = date.fromisoformat(entry.name.removeprefix(PARTITION_PREFIX))
        except ValueError:
            raise DataError(
                f"partition folder {entry} of {spec.name} is not named {PARTITION_PREFIX}YYYY-MM-DD"
            ) from None
        # A folder holding only a half-written temp file is not a partition yet.
        if _partition_files(entry):
            folders[day] = entry
    return folders


def _partition_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.glob("*.parquet") if path.is_file())


def partition_dates(spec: DatasetSpec) -> list[date]:
    """Returns the days that have at least one parquet file, as a list of ``datetime.date``, oldest first."""
    return sorted(_partition_folders(spec))


def _read_file(path: Path, spec: DatasetSpec) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        # Reading through ParquetFile keeps pyarrow from turning the date= folder
        # name into an extra column: the frame holds exactly what the file holds.
        return pq.ParquetFile(path).read().to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise UnreadablePartition(
            f"partition file {path} of {spec.name} cannot be read as parquet (truncated or corrupt?): {exc}"
        ) from exc


def read_window(spec: DatasetSpec, start: date, end: date) -> pd.DataFrame:
    """Every row of the partitions with ``start <= day < end``, in date order, index 0..n-1.

    Returns a DataFrame of those rows. Raises :class:`DataError` when a bound is not a ``datetime.date``,
    when ``start`` is not before ``end``, or when no partition falls in the window; a partition
    that cannot be read raises :class:`UnreadablePartition`.
    """
    if not isinstance(start, date) or not isinstance(end, date):
        raise DataError(f"read_window needs two datetime.date bounds, got {start!r} and {end!r}")
    if start >= end:
        raise DataError(f"empty window for {spec.name}: start {start} is not before end {end}")
    folders = _partition_folders(spec)
    days = [day for day in sorted(folders) if start <= day < end]
    if not days:
        raise DataError(f"no partitions of {spec.name} between {start} and {end} in {spec.location}")
    frames = [_read_file(path, spec) for day in days for path in _partition_files(folders[day])]
    return pd.concat(frames, ignore_index=True, sort=False)


def to_parquet_bytes(frame: pd.DataFrame) -> bytes:
    """``frame`` as Parquet; the same frame always gives the same bytes (no index, no timestamps).

    Returns the file's bytes. Raises what pyarrow raises for a column it cannot
    store (``pyarrow.ArrowException``, ``TypeError`` or ``ValueError``).
    """
    buffer = io.BytesIO()
    frame.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()
