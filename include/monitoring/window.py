"""Whether a window of served traffic can be compared at all, and what is wrong with it if not.

A window too small to measure is ``insufficient_data`` (no verdict, nothing written);
a window whose columns are missing, retyped or empty is a :class:`DriftInputError`
naming the column, since no verdict drawn from it could be trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.monitoring.reference import LABEL_COLUMN, PROBABILITY_COLUMN, _prediction_is_numeric, prediction_column

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec


class DriftInputError(ValueError):
    """The window cannot be compared: the message names the column and what was expected."""


@dataclass
class WindowCheck:
    """The verdict of :func:`check_window`: ``status`` ``"ok"`` or ``"insufficient_data"``, the window's
    ``rows`` and a one-line ``reason`` for the log."""

    status: str  # "ok" | "insufficient_data"
    rows: int
    reason: str

    @property
    def ok(self) -> bool:
        """True when ``status`` is ``ok``, False for ``insufficient_data``."""
        return self.status == "ok"


def _is_real_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _example(values: pd.Series) -> str:
    shown = values.dropna().head(3).tolist()
    return ", ".join(repr(value) for value in shown)


def _check_numeric(name: str, values: pd.Series, what: str) -> None:
    if pd.api.types.is_bool_dtype(values.dtype):
        raise DriftInputError(f"{what} {name!r} should be numeric but arrived as booleans")
    if pd.api.types.is_numeric_dtype(values.dtype):
        return
    present = values.dropna()
    if present.empty:
        return  # nothing to judge the type by: the all-empty check names it
    if values.dtype == object and all(_is_real_number(value) for value in present):
        return  # numbers held in an object column (e.g. ints mixed with None) compare fine
    raise DriftInputError(
        f"{what} {name!r} should be numeric but arrived as {values.dtype} (values like {_example(values)})"
    )


def _all_missing(values: pd.Series) -> bool:
    if values.dtype == object:
        # infer_dtype walks the objects in C, several times faster than isna() on a large window
        return pd.api.types.infer_dtype(values, skipna=True) == "empty"
    return bool(values.isna().all())


def _check_categorical(name: str, values: pd.Series) -> None:
    if pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        if _all_missing(values):
            return  # nothing to judge the type by: the all-empty check names it
        raise DriftInputError(
            f"categorical feature {name!r} should hold strings but arrived as {values.dtype} "
            f"(values like {_example(values)})"
        )
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = pd.Series(values.cat.categories)
    # "string": every present value is a str; "empty": none is present (the all-empty check names it)
    if pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        raise DriftInputError(
            f"categorical feature {name!r} should hold strings but arrived as {values.dtype} "
            f"(values like {_example(values)})"
        )


def _label_values(values: pd.Series, spec: DatasetSpec) -> np.ndarray:
    """The window's present labels typed for the task (see :func:`include.data.cast.target_array`)."""
    from include.data.cast import CastError, target_array

    try:
        return target_array(values.dropna(), spec)
    except CastError as exc:
        raise DriftInputError(f"column {LABEL_COLUMN!r}: {exc}") from None


def _check_structure(current: pd.DataFrame, spec: DatasetSpec) -> None:
    """Missing and retyped columns: wrong whatever the window's size."""
    predicted = prediction_column(spec)
    required = [*spec.feature_names, predicted]
    missing = [name for name in required if name not in current.columns]
    if missing:
        raise DriftInputError(
            f"window is missing column(s) {', '.join(repr(name) for name in missing)}; "
            f"expected every feature of spec {spec.name!r} and {predicted!r}"
        )
    for name in spec.numeric_features:
        _check_numeric(name, current[name], "numeric feature")
    for name in spec.categorical_features:
        _check_categorical(name, current[name])
    if _prediction_is_numeric(spec):
        _check_numeric(predicted, current[predicted], "column")
    else:
        _check_categorical(predicted, current[predicted])
    if PROBABILITY_COLUMN in current.columns and spec.task != "regression":
        _check_numeric(PROBABILITY_COLUMN, current[PROBABILITY_COLUMN], "column")
        probability = pd.to_numeric(current[PROBABILITY_COLUMN].dropna(), errors="coerce")
        outside = probability[(probability < 0) | (probability > 1) | probability.isna()]
        if not outside.empty:
            raise DriftInputError(
                f"column {PROBABILITY_COLUMN!r} should hold probabilities in [0, 1], "
                f"got values like {outside.head(3).tolist()}"
            )
    if LABEL_COLUMN in current.columns:
        _label_values(current[LABEL_COLUMN], spec)


def _check_not_empty_columns(current: pd.DataFrame, spec: DatasetSpec) -> None:
    predicted = prediction_column(spec)
    for name in [*spec.feature_names, predicted]:
        if _all_missing(current[name]):
            expected = "predictions" if name == predicted else f"{spec.feature(name).type} values"
            raise DriftInputError(
                f"column {name!r} is empty: all {len(current)} values are missing; "
                f"expected {expected} in at least some rows"
            )


def check_window(current: pd.DataFrame, spec: DatasetSpec, min_rows: int) -> WindowCheck:
    """Whether ``current`` can be compared at all.

    An empty window, or one below ``min_rows``, is ``insufficient_data`` (never a
    verdict). A window with a missing or retyped column raises
    :class:`DriftInputError` whatever its size; an all-empty column does so once
    the window is large enough to be judged (a few rows may well all lack an
    optional value). An empty window may lack the feature columns: the inference
    log does not know them when it holds no request.

    Returns a :class:`WindowCheck`: ``ok`` with the row count, or
    ``insufficient_data`` with the row count and why. Raises
    :class:`DriftInputError` for a ``current`` that is not a DataFrame or a column
    as above (including labels that cannot be typed for the task), and
    ``ValueError`` for a ``min_rows`` that is not an integer >= 1.
    """
    if not isinstance(current, pd.DataFrame):
        raise DriftInputError(f"the window must be a pandas DataFrame, got {type(current).__name__}")
    if isinstance(min_rows, bool) or not isinstance(min_rows, int) or min_rows < 1:
        raise ValueError(f"min_rows must be an integer >= 1, got {min_rows!r}")
    rows = len(current)
    if rows == 0:
        return WindowCheck("insufficient_data", 0, "the window holds no served prediction")
    _check_structure(current, spec)
    if rows < min_rows:
        return WindowCheck(
            "insufficient_data", rows, f"the window holds {rows} served prediction(s), fewer than min_rows={min_rows}"
        )
    _check_not_empty_columns(current, spec)
    return WindowCheck("ok", rows, f"{rows} served predictions (min_rows={min_rows})")


def checked_interval(start: datetime | None, end: datetime | None, run_after: datetime) -> tuple[datetime, datetime]:
    """The UTC day a drift run checks: its data interval ``[start, end)`` when it has one, else (a
    manual run without a logical date, which Airflow 3 gives no data interval) the last complete UTC
    day before ``run_after``, the time the run was created for.

    Returns ``(start, end)`` as aware datetimes. Raises ``ValueError`` when only one end is given or
    ``run_after`` is naive.
    """
    if (start is None) != (end is None):
        raise ValueError(f"a data interval needs both ends, got {start!r}..{end!r}")
    if start is not None:
        return start, end
    if run_after.tzinfo is None:
        raise ValueError(f"run_after must be timezone-aware, got {run_after!r}")
    after = datetime.fromtimestamp(run_after.timestamp(), UTC)
    day_end = datetime(after.year, after.month, after.day, tzinfo=UTC)
    return day_end - timedelta(days=1), day_end
