"""Land the user's own CSV / Parquet exports as the spec's daily partitions::

    python -m include.data.ingest --spec SPEC [--as-of YYYY-MM-DD] SOURCE [SOURCE ...]

A SOURCE is a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file, a folder (each such
file inside, recursively, in name order; names starting with ``.`` or ``_``, such as
``_SUCCESS``, are skipped) or an fsspec URL. Rows land as
``<location>/date=YYYY-MM-DD/part-<hash>.parquet`` by the UTC day of the timestamp.

Values land as the user gave them (validation must judge the real data); only their
types are made the same on every day: integers (also a CSV integer column with empty
cells) as ``Int64``, floats as ``float64``, booleans as ``boolean``, a ``category`` as
its values, text as ``object``, the timestamp as ``datetime64[ns, UTC]`` (naive = UTC).
Everything is checked before anything is written, and a failed write removes what this
run wrote: a bad batch leaves the landing zone as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from include.data.cast import CastError, categorical_column, numeric_column, target_array
from include.data.partitions import PARTITION_PREFIX, to_parquet_bytes
from include.data.spec import DatasetSpec, category_text, load_spec
from include.util.cli import parse_date_arg
from include.util.fs import write_atomically

SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq")
# what a missing value contributes to a derived row id (no real cell holds this text)
_NULL_TOKEN = "\x00NA"
_INTEGER_TEXT = re.compile(r"\s*[+-]?\d+\s*")
# the landed type of a category's values, by the numpy kind of its categories (text stays object)
_VALUE_TYPES = {"i": "Int64", "u": "Int64", "f": np.float64, "b": "boolean"}


class IngestError(ValueError):
    """The sources cannot be landed; the message names the source, the column and an example row."""


@dataclass
class IngestReport:
    """What one ingest did: per UTC day, the rows landed and the rows skipped as already landed."""

    landed: dict[date, int] = field(default_factory=dict)
    skipped: dict[date, int] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def total_landed(self) -> int:
        """The number of rows landed, over all days (an int)."""
        return sum(self.landed.values())

    @property
    def total_skipped(self) -> int:
        """The number of rows skipped as already landed, over all days (an int)."""
        return sum(self.skipped.values())


def _expand(sources: Iterable[str | Path]) -> list[tuple[str, object, str]]:
    """Every source file as ``(label for messages, fsspec filesystem, path)``."""
    import fsspec

    files = []
    for source in sources:
        try:
            fs, root = fsspec.core.url_to_fs(str(source))
            is_dir, exists = fs.isdir(root), fs.exists(root)
        except (ImportError, OSError, ValueError) as exc:
            raise IngestError(f"source {source} cannot be opened: {exc}") from exc
        if not exists:
            raise IngestError(f"source {source} does not exist")
        if not is_dir:
            if not str(root).lower().endswith(SUFFIXES):
                raise IngestError(f"source {source} is not a {'/'.join(SUFFIXES)} file")
            files.append((str(source), fs, root))
            continue
        found = [
            path
            for path in sorted(fs.find(root))
            if path.lower().endswith(SUFFIXES)
            and not any(part[:1] in "._" for part in path[len(root) :].split("/") if part)
        ]
        if not found:
            raise IngestError(f"folder {source} holds no {'/'.join(SUFFIXES)} files")
        files += [(path if "://" not in str(source) else fs.unstrip_protocol(path), fs, path) for path in found]
    return files


def _read(label: str, fs, path: str) -> pd.DataFrame:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with fs.open(path, "rb") as handle:
            payload = handle.read()
        if not path.lower().endswith((".csv", ".csv.gz")):
            return pq.ParquetFile(io.BytesIO(payload)).read().to_pandas()
        compression = "gzip" if path.lower().endswith(".gz") else None
        frame = pd.read_csv(io.BytesIO(payload), compression=compression)
        # pandas reads an integer column with empty cells as float64: when its text holds
        # only whole numbers it is an integer column, and lands as Int64 like the days
        # whose export happened to have no empty cell.
        floats = [name for name in frame.columns if frame[name].dtype == np.float64 and frame[name].isna().any()]
        if floats:
            text = pd.read_csv(io.BytesIO(payload), compression=compression, usecols=floats, dtype=str)
            for name in floats:
                present = text[name].dropna()
                if len(present) and present.map(lambda value: bool(_INTEGER_TEXT.fullmatch(value))).all():
                    frame[name] = pd.to_numeric(text[name]).astype("Int64")
        return frame
    except (ImportError, OSError, ValueError, pa.ArrowException) as exc:
        raise IngestError(f"source {label} cannot be read: {exc}") from exc


def _whole(series: pd.Series) -> bool:
    values = series.dropna().to_numpy(dtype=np.float64)
    return bool(np.isfinite(values).all() and (values == np.round(values)).all())


def _landed_types(frame: pd.DataFrame) -> pd.DataFrame:
    """One Parquet type per kind of column, whichever source or day the rows came from."""
    out = {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            # a category is written as its values: each day would otherwise carry its own dictionary
            kind = series.cat.categories.dtype.kind
            series = series.astype(object).where(series.notna(), None)
            if kind in _VALUE_TYPES:
                series = series.astype(_VALUE_TYPES[kind])
        dtype = series.dtype
        if pd.api.types.is_bool_dtype(dtype):
            series = series.astype("boolean")
        elif pd.api.types.is_integer_dtype(dtype):
            series = series.astype("Int64")  # a day with a null and a day without must agree
        elif pd.api.types.is_float_dtype(dtype):
            series = series.astype(np.float64)  # Float64 / float32 -> float64, NA -> NaN
        elif isinstance(dtype, pd.StringDtype):
            series = series.astype(object).where(series.notna(), None)
        out[name] = series
    return pd.DataFrame(out, index=frame.index)


def _align_to_landed(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Follow the number type already landed: whole numbers into a float column stay float, and back."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    landed = sorted(Path(spec.location).glob(f"{PARTITION_PREFIX}*/*.parquet"))
    try:
        schema = pq.read_schema(landed[-1]) if landed else None
    except (pa.ArrowException, OSError):
        return frame  # best effort: a broken partition is reported by validation, not here
    for name in frame.columns:
        if schema is None or name not in schema.names:
            continue
        kind, series = schema.field(name).type, frame[name]
        if pa.types.is_floating(kind) and series.dtype == "Int64":
            frame[name] = series.astype(np.float64)
        elif pa.types.is_integer(kind) and series.dtype == np.float64 and _whole(series):
            frame[name] = series.astype("Int64")
    return frame


def _timestamps(label: str, series: pd.Series, name: str) -> pd.Series:
    """``series`` as ``datetime64[ns, UTC]``; only ISO-8601 text, as ``01/02/2024`` is ambiguous."""
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series.dt.tz_localize("UTC") if series.dt.tz is None else series.dt.tz_convert("UTC")
    elif pd.api.types.is_numeric_dtype(series) and series.notna().any():
        raise IngestError(
            f"source {label}: timestamp column {name!r} holds numbers (row {series.index[0]} holds "
            f"{series.iloc[0]!r}); epoch numbers are ambiguous (s, ms or ns?): export ISO-8601 text"
        )
    else:
        text = series.astype(object).where(series.notna(), None)
        parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = series.index[int(np.flatnonzero(bad)[0])]
        problem = "is empty" if pd.isna(series[row]) else "holds a value that is not an ISO-8601 date/time"
        raise IngestError(f"source {label}: timestamp column {name!r} {problem}: row {row} holds {series[row]!r}")
    return parsed.dt.as_unit("ns")


def _derived_ids(frame: pd.DataFrame, spec: DatasetSpec, times: pd.Series) -> pd.Series:
    """``<sha1[:16]>-<n>``: the digest of the row's landed time and declared values, n counting identical rows.

    The landed time is part of the digest so one snapshot landed on two days keeps
    ids unique across days; the canonical text makes 1, 1.0 and "1" agree.
    """
    columns = [[time.isoformat() for time in times]]
    for name in (*spec.feature_names, spec.target):
        columns.append(
            [_NULL_TOKEN if pd.isna(value) else category_text(value) for value in frame[name].astype(object)]
        )
    digests = pd.Series(
        [hashlib.sha1("\x1f".join(row).encode()).hexdigest()[:16] for row in zip(*columns, strict=False)],
        index=frame.index,
        dtype=object,
    )
    return digests + "-" + digests.groupby(digests).cumcount().astype(str)


def _prepare(
    spec: DatasetSpec, label: str, frame: pd.DataFrame, as_of: date | None, seen: dict[str, tuple[str, int, object]]
) -> pd.DataFrame:
    """One source's rows as ``spec.columns``; records each class label's first row in ``seen``."""
    declared = [
        *([] if spec.derived_id else [spec.id_column]),
        *([] if spec.derived_timestamp else [spec.timestamp_column]),
        *spec.feature_names,
        spec.target,
    ]
    missing = [name for name in declared if name not in frame.columns]
    if missing:
        raise IngestError(f"source {label} lacks the declared column(s) {missing}; it has {list(frame.columns)}")
    # index = row number in the source (1 = first data row), so every message can name it
    frame = frame.set_axis(pd.RangeIndex(1, len(frame) + 1))
    # Only checks: the values land as given. A binary target's positive class may sit in
    # another source, so its two-value checks wait for all sources (_check_labels); here
    # target_array checks missing labels and declared classes, as it does for multiclass.
    labels_spec = replace(spec, task="multiclass") if spec.task == "binary" else spec
    try:
        for name in spec.numeric_features:
            numeric_column(frame[name], name)
        target_array(frame[spec.target], labels_spec)
    except CastError as exc:
        raise IngestError(f"source {label}: {exc}") from None
    if spec.is_classification:
        labels = pd.Series(categorical_column(frame[spec.target], spec.target), index=frame.index)
        for row, text in labels.drop_duplicates().items():
            seen.setdefault(text, (label, row, frame[spec.target][row]))
    if spec.derived_timestamp:
        times = pd.Series(pd.Timestamp(as_of, tz="UTC"), index=frame.index).dt.as_unit("ns")
    else:
        times = _timestamps(label, frame[spec.timestamp_column], spec.timestamp_column)
    if spec.derived_id:
        ids = _derived_ids(frame, spec, times)
    else:
        ids = frame[spec.id_column]
        if ids.isna().any():
            row = ids.index[int(np.flatnonzero(ids.isna().to_numpy())[0])]
            raise IngestError(f"source {label}: id column {spec.id_column!r} is empty in row {row}")
    values = {spec.id_column: ids, spec.timestamp_column: times}
    return pd.DataFrame({name: values[name] if name in values else frame[name] for name in spec.columns})


def _check_labels(spec: DatasetSpec, seen: dict[str, tuple[str, int, object]]) -> None:
    """A binary target needs its positive class and one other value across all sources together."""
    if spec.task != "binary":
        return
    if spec.positive_class not in seen:
        raise IngestError(
            f"target {spec.target!r}: positive_class {spec.positive_class!r} appears in no row "
            f"of the sources; their labels are {list(seen)[:10]}"
        )
    others = [text for text in seen if text != spec.positive_class]
    if len(others) > 1:
        label, row, value = seen[others[1]]
        raise IngestError(
            f"target {spec.target!r} of a binary task holds more than two values: "
            f"{spec.positive_class!r} and {others[:5]}; e.g. source {label} row {row} holds {value!r}"
        )


def _plan(spec: DatasetSpec, frame: pd.DataFrame) -> list[tuple[date, pd.DataFrame, int, bytes]]:
    """Per UTC day: the rows whose id is not landed yet, how many were skipped, their parquet bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    plan = []
    for day, rows in frame.groupby(frame[spec.timestamp_column].dt.date, sort=True):
        landed: set[str] = set()
        for path in sorted((Path(spec.location) / f"{PARTITION_PREFIX}{day:%Y-%m-%d}").glob("*.parquet")):
            try:
                landed.update(
                    map(
                        category_text,
                        pq.ParquetFile(path).read(columns=[spec.id_column]).column(0).drop_null().to_pylist(),
                    )
                )
            except (pa.ArrowException, OSError, ValueError, KeyError) as exc:
                raise IngestError(
                    f"landed partition {path} has no readable {spec.id_column!r} column, "
                    f"so rows already landed cannot be told apart: {exc}"
                ) from exc
        keys = rows[spec.id_column].map(category_text)
        fresh = (~keys.isin(landed) & ~keys.duplicated()).to_numpy()
        new = rows[fresh].reset_index(drop=True)
        try:  # converting here, not while writing, so a column pyarrow refuses writes nothing
            payload = to_parquet_bytes(new) if len(new) else b""
        except (pa.ArrowException, ValueError) as exc:
            raise IngestError(f"the rows of {day} cannot be written as parquet: {exc}") from exc
        plan.append((day, new, int((~fresh).sum()), payload))
    return plan


def _write(spec: DatasetSpec, plan: list[tuple[date, pd.DataFrame, int, bytes]], report: IngestReport) -> None:
    """Write each day's new rows as one file; if one write fails, remove what this run wrote."""
    written: list[Path] = []
    created: set[Path] = set()
    try:
        for day, rows, skipped, payload in plan:
            report.landed[day], report.skipped[day] = len(rows), skipped
            if rows.empty:
                continue  # nothing new: no file
            # named by the rows' content: an interrupted run, redone, lands the same name
            digest = hashlib.sha1(pd.util.hash_pandas_object(rows, index=False).to_numpy().tobytes()).hexdigest()
            path = Path(spec.location) / f"{PARTITION_PREFIX}{day:%Y-%m-%d}" / f"part-{digest[:16]}.parquet"
            created.update(folder for folder in (path.parent, *path.parent.parents) if not folder.exists())
            if not path.exists():
                write_atomically(path, payload)
                written.append(path)
            report.files.append(path)
    except BaseException as exc:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in sorted(created, key=lambda folder: len(folder.parts), reverse=True):
            try:
                folder.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise IngestError(
                f"writing the partitions of {spec.name} failed ({exc}); removed the "
                f"{len(written)} file(s) this run had written"
            ) from exc
        raise


def ingest(
    spec: DatasetSpec | str | Path, sources: Iterable[str | Path] | str | Path, as_of: date | str | None = None
) -> IngestReport:
    """Land ``sources`` (files, folders or fsspec URLs) as the daily partitions of ``spec``.

    Each landed file holds exactly ``spec.columns`` for one UTC day of the timestamp
    column; a spec without ``timestamp_column`` is a snapshot landed on ``as_of``
    (required then, refused otherwise). Rows whose id is already in their day's
    partition (or earlier in this batch) are skipped, so re-ingesting lands nothing.

    Returns an :class:`IngestReport`: ``landed`` and ``skipped`` map each day to a
    row count, ``files`` lists the files written. Raises :class:`IngestError`,
    naming the source, column and an example row (1 = first data row), for an
    unreadable source, a missing declared column, an empty or non-ISO timestamp,
    text in a numeric feature, a missing or undeclared label, a third value in or
    no ``positive_class`` across a binary target, or a failed write; nothing is
    left written then. New categorical values are not errors: validation judges them.
    """
    spec = spec if isinstance(spec, DatasetSpec) else load_spec(spec)
    if spec.derived_timestamp and as_of is None:
        raise IngestError(
            f"spec {spec.name} has no timestamp_column: it is a snapshot, and --as-of YYYY-MM-DD "
            f"must name the day it lands on"
        )
    if not spec.derived_timestamp and as_of is not None:
        raise IngestError(
            f"--as-of is only for snapshots: this spec has a timestamp column "
            f"({spec.timestamp_column!r}) and rows land on its days"
        )
    try:
        day = None if as_of is None else pd.Timestamp(as_of).date()
    except ValueError:
        raise IngestError(f"--as-of {as_of!r} is not a date in YYYY-MM-DD form") from None
    sources = [sources] if isinstance(sources, (str, Path)) else list(sources)
    if not sources:
        raise IngestError("no sources to ingest")
    seen: dict[str, tuple[str, int, object]] = {}
    # every source is read and checked before anything is written
    frames = [
        _landed_types(_prepare(spec, label, _read(label, fs, path), day, seen)) for label, fs, path in _expand(sources)
    ]
    frame = _align_to_landed(_landed_types(pd.concat(frames, ignore_index=True)), spec)
    if frame.empty:
        raise IngestError(f"the sources {[str(source) for source in sources]} hold no rows")
    _check_labels(spec, seen)
    report = IngestReport()
    _write(spec, _plan(spec, frame), report)
    return report


def main(argv: list[str] | None = None) -> int:
    """The command line; returns 0, or 2 after printing the error for a bad spec or bad input."""
    import sys

    from include.data.spec import SpecError

    parser = argparse.ArgumentParser(
        prog="python -m include.data.ingest", description="Land CSV/Parquet exports as the spec's daily partitions."
    )
    parser.add_argument("--spec", type=Path, required=True, help="dataset spec (YAML)")
    parser.add_argument("--as-of", type=parse_date_arg, help="snapshot specs only: the day the rows land on")
    parser.add_argument("sources", nargs="+", metavar="SOURCE", help="CSV/Parquet file, folder or fsspec URL")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        report = ingest(spec, args.sources, as_of=args.as_of)
    except (IngestError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for day in sorted(report.landed):
        print(f"{day}: landed {report.landed[day]} row(s), skipped {report.skipped[day]} already landed")
    print(
        f"total: landed {report.total_landed} row(s), skipped {report.total_skipped}, "
        f"wrote {len(report.files)} file(s) under {spec.location}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
