"""Labels that arrive after the predictions: stored beside the predictions they label."""

from __future__ import annotations

import os
from datetime import date

import numpy as np
import pandas as pd

from include.monitoring.inference_log.store import (
    LABEL_FILE_COLUMNS,
    LABELS,
    PREDICTION_DAY_COLUMN,
    _as_day,
    _file_name,
    _parquet_bytes,
    _Store,
)
from include.util.text import rows_text


def write_labels(root: str | os.PathLike, labels: pd.DataFrame, *, day: date | None = None) -> list[str]:
    """Store labels next to the predictions they belong to.

    ``labels`` holds ``request_id`` (str), ``label`` (the user's label as it is: integers,
    booleans, floats or strings such as ``"yes"`` or ``"Adelie"``), ``label_timestamp``
    (timezone-aware: when the label became known) and, unless ``day`` is given,
    ``prediction_day`` (the UTC date of the prediction each label is for). ``day`` says
    that every label is for a prediction made that UTC day. Labels are stored as given,
    one Parquet type for the call: int64 (integers; booleans as 0/1), float64 (floats,
    or integers mixed with floats) or string; a call mixing text and numbers, or a
    label that is missing or not finite, is refused. Labels are appended, never
    merged: a request labelled twice keeps both, and readers take the latest.

    Returns the locations of the files written, one per prediction day, in day order
    (plain paths on a local disk, URLs on an object store); ``[]`` for no label.
    Raises ``ValueError`` for a missing column, both ``day`` and ``prediction_day``,
    an empty or non-string ``request_id``, a bad day, naive or missing
    ``label_timestamp`` values, or labels as described above; ``OSError`` (or the
    store's own error) when a file cannot be written.
    """
    if not isinstance(labels, pd.DataFrame):
        raise ValueError(f"labels must be a pandas DataFrame, got {type(labels).__name__}")
    required = list(LABEL_FILE_COLUMNS) + ([] if day is not None else [PREDICTION_DAY_COLUMN])
    absent = [name for name in required if name not in labels.columns]
    if absent:
        hint = " (or pass day=)" if absent == [PREDICTION_DAY_COLUMN] else ""
        raise ValueError(
            f"labels lack the column(s) {', '.join(absent)}{hint}; they need "
            f"{', '.join(LABEL_FILE_COLUMNS)} and the day of the prediction they label"
        )
    if day is not None and PREDICTION_DAY_COLUMN in labels.columns:
        raise ValueError(f"pass either day= or a {PREDICTION_DAY_COLUMN} column, not both")
    store = _Store(root)
    if labels.empty:
        return []

    request_ids = labels["request_id"].to_numpy(dtype=object)
    bad_ids = [index for index, value in enumerate(request_ids) if type(value) is not str or not value]
    if bad_ids:
        raise ValueError(
            f"request_id must be a non-empty string in every row; rows {rows_text(bad_ids)} are not "
            f"(e.g. {request_ids[bad_ids[0]]!r})"
        )
    label_values = _stored_labels(labels["label"])
    label_times = _aware_times(labels["label_timestamp"], "label_timestamp")
    if day is not None:
        days = np.full(len(labels), _as_day(day, "day"), dtype=object)
    else:
        by_value = {value: _as_day(value, PREDICTION_DAY_COLUMN) for value in labels[PREDICTION_DAY_COLUMN].unique()}
        days = labels[PREDICTION_DAY_COLUMN].map(by_value).to_numpy(dtype=object)

    import pyarrow as pa

    table = pa.table(
        {
            "request_id": pa.array(request_ids, type=pa.string()),
            "label": label_values,
            "label_timestamp": pa.array(label_times, type=pa.timestamp("ns", tz="UTC")),
        }
    )
    written = []
    for label_day in sorted(set(days)):
        part = table.filter(pa.array(days == label_day))
        path = f"{store.partition(LABELS, label_day)}/{_file_name()}"
        store.write(path, _parquet_bytes(part))
        written.append(store.location(path))
    return written


def _stored_labels(column: pd.Series):
    """The labels as one Arrow array of the type they were given in: int64, float64 or string."""
    import pyarrow as pa

    missing = np.flatnonzero(column.isna().to_numpy())
    if len(missing):
        raise ValueError(f"label is missing in rows {rows_text(missing.tolist())}; write only known labels")
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
        raise ValueError(
            f"label mixes text (rows {rows_text(texts)}) and other values (rows {rows_text(others)}, "
            f"e.g. {values[others[0]]!r}); write labels of one kind per call"
        )
    raise ValueError(f"label must hold integers, booleans, floats or strings, got {kind} values such as {values[0]!r}")


def _finite_labels(values: np.ndarray) -> np.ndarray:
    infinite = np.flatnonzero(~np.isfinite(values))
    if len(infinite):
        raise ValueError(
            f"label must be a finite number; rows {rows_text(infinite.tolist())} are not (e.g. {values[infinite[0]]!r})"
        )
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
            raise ValueError(
                f"{what} must hold timezone-aware datetimes (UTC), got {column.dtype} values without a timezone"
            )
    if converted.isna().any():
        raise ValueError(f"{what} is missing in rows {rows_text(np.flatnonzero(converted.isna()).tolist())}")
    return converted.dt.tz_convert("UTC").dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
