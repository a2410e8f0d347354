"""Reading the inference log back: the predictions of one time window, joined with their labels."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from include.monitoring.inference_log.store import (
    LABEL_COLUMN,
    LABEL_FILE_COLUMNS,
    LABELS,
    METADATA_COLUMNS,
    OTHER_OUTPUTS_METADATA_KEY,
    OTHER_PREFIX,
    OTHER_VERSION_COLUMN,
    OUTPUT_COLUMNS,
    OUTPUTS_METADATA_KEY,
    PREDICTION,
    PREDICTIONS,
    InferenceLogError,
    _aware_ns,
    _Store,
)

# reads are dominated by per-file latency on an object store; pyarrow releases the GIL
_READ_THREADS = 8


def _empty_predictions(with_labels: bool) -> pd.DataFrame:
    columns = {
        "request_id": pd.Series(dtype=object),
        "timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
        "model_name": pd.Series(dtype=object),
        "model_version": pd.Series(dtype=object),
        "probability": pd.Series(dtype=np.float64),
        "prediction": pd.Series(dtype=np.int64),
        OTHER_VERSION_COLUMN: pd.Series(dtype=object),
        OTHER_PREFIX + "probability": pd.Series(dtype=np.float64),
        OTHER_PREFIX + "prediction": pd.Series(dtype="Int64"),
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


def _file_other_columns(table) -> list[str]:
    """The columns of a rollout's other model a predictions file holds (``other_version``, then
    ``other_<column>``); a file written before rollouts existed holds none."""
    listed = (table.schema.metadata or {}).get(OTHER_OUTPUTS_METADATA_KEY)
    if listed is None:
        return []
    names = json.loads(listed)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"its {OTHER_OUTPUTS_METADATA_KEY.decode()} metadata is not a list of column names")
    return [OTHER_VERSION_COLUMN] + [OTHER_PREFIX + name for name in names]


def _read_files(
    store: _Store, paths: list[str], required: tuple[str, ...], kind: str
) -> list[tuple[pd.DataFrame, list[str], list[str]]]:
    """Each file as a frame, with its output and other model's columns (predictions files; [] for labels)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def read(path: str) -> tuple[pd.DataFrame, list[str], list[str]]:
        location = store.location(path)
        try:
            table = pq.read_table(pa.BufferReader(store.read(path)))
        except FileNotFoundError:
            return pd.DataFrame(), [], []  # removed between listing and reading (e.g. a retention job)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise InferenceLogError(
                f"{location} is not a readable Parquet file (corrupt or truncated?): {exc}"
            ) from exc
        try:
            outputs = _file_outputs(table) if kind == PREDICTIONS else []
            others = _file_other_columns(table) if kind == PREDICTIONS else []
        except ValueError as exc:
            raise InferenceLogError(f"{location} is not an inference log {kind} file: {exc}") from None
        absent = [name for name in (*required, *outputs, *others) if name not in table.column_names]
        if absent:
            raise InferenceLogError(
                f"{location} is not an inference log {kind} file: it lacks the column(s) {', '.join(absent)}"
            )
        return table.to_pandas(), outputs, others

    if len(paths) <= 1:
        return [read(path) for path in paths]
    with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(paths))) as pool:
        return list(pool.map(read, paths))


def read_window(root: str | os.PathLike, start: datetime, end: datetime, *, with_labels: bool = True) -> pd.DataFrame:
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
    log's own columns), not an error.

    ``start`` and ``end`` must be timezone-aware; ``root`` is a folder or an fsspec URL.
    Returns a DataFrame with one row per logged prediction in the window. Raises
    ``ValueError`` for naive bounds or ``end <= start``, and
    :class:`InferenceLogError` naming a file that is not a readable log file.
    """
    start_at, end_at = _window_bound(start, "start"), _window_bound(end, "end")
    if end_at <= start_at:
        raise ValueError(f"the window is empty or reversed: end {end_at} is not after start {start_at}")
    store = _Store(root)
    days = _days(start_at, end_at)
    paths = [path for day in days for path in store.files(store.partition(PREDICTIONS, day))]
    files = [
        (frame, names, others)
        for frame, names, others in _read_files(store, paths, METADATA_COLUMNS + (PREDICTION,), PREDICTIONS)
        if len(frame.columns)
    ]
    if not files:
        return _empty_predictions(with_labels)

    outputs: list[str] = []  # in the order the files list them
    other_columns = [OTHER_VERSION_COLUMN]
    for _, names, others in files:
        outputs.extend(name for name in names if name not in outputs)
        other_columns.extend(name for name in others if name not in other_columns)
    other_columns.extend(OTHER_PREFIX + name for name in outputs if OTHER_PREFIX + name not in other_columns)
    window = []
    for frame, _, _ in files:
        frame["timestamp"] = _utc_ns(frame["timestamp"])
        window.append(frame[(frame["timestamp"] >= start_at) & (frame["timestamp"] < end_at)])
    non_empty = [frame for frame in window if len(frame)] or window[:1]
    predictions = pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]
    predictions = predictions.sort_values("timestamp", kind="stable", ignore_index=True)
    kept = set(METADATA_COLUMNS).union(outputs, other_columns)
    features = [name for name in predictions.columns if name not in kept]
    predictions = _with_other_columns(predictions, other_columns)
    predictions = predictions[list(METADATA_COLUMNS) + features + outputs + other_columns]
    if not with_labels:
        return predictions
    labels = _latest_labels(store, days, predictions["request_id"])
    label_dtype = _label_dtype(labels[LABEL_COLUMN])
    joined = predictions.merge(labels, on="request_id", how="left", validate="many_to_one")
    if label_dtype is object:
        joined[LABEL_COLUMN] = joined[LABEL_COLUMN].astype(object).where(joined[LABEL_COLUMN].notna(), None)
    else:
        joined[LABEL_COLUMN] = joined[LABEL_COLUMN].astype(label_dtype)
    return joined


def _with_other_columns(predictions: pd.DataFrame, other_columns: list[str]) -> pd.DataFrame:
    """Every other-model column present (null where a file lacks it), typed as its own column is:
    ``other_version`` object (str or None), ``other_prediction`` ``Int64`` for integer labels,
    float64 for values, object for class names; probabilities float64."""
    predictions = predictions.copy() if any(name not in predictions for name in other_columns) else predictions
    for name in other_columns:
        column = predictions[name] if name in predictions else pd.Series([None] * len(predictions), dtype=object)
        own = name.removeprefix(OTHER_PREFIX)
        if name == OTHER_VERSION_COLUMN:
            typed = column.astype(object).where(column.notna(), None)
        elif own == PREDICTION and own in predictions and pd.api.types.is_integer_dtype(predictions[own]):
            typed = pd.to_numeric(column, errors="coerce").astype("Int64")
        elif own == PREDICTION and (
            pd.api.types.is_object_dtype(column) or pd.api.types.is_object_dtype(predictions.get(own, column))
        ):
            typed = column.astype(object).where(column.notna(), None)
        else:
            typed = pd.to_numeric(column, errors="coerce").astype(np.float64)
        predictions[name] = (
            typed.to_numpy() if not isinstance(typed.dtype, pd.api.extensions.ExtensionDtype) else typed.array
        )
    return predictions


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
    frames = [
        frame[list(LABEL_FILE_COLUMNS)]
        for frame, _, _ in _read_files(store, paths, LABEL_FILE_COLUMNS, LABELS)
        if len(frame.columns)
    ]
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
