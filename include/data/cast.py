"""The one cast at the data boundary: a landed or requested frame -> the model's input.

Real tables store a numeric feature as int8..int64, nullable ``Int64``, float32
or bool, and a categorical one as strings, a pandas ``category``, a Parquet
dictionary or integer codes. Every path that feeds a model (training,
evaluation, the smoke test, rollback, serving and the drift reference) goes
through :func:`model_input` (or, column by column, :func:`numeric_column` and
:func:`categorical_column`), so they all see one representation:

- numeric features: ``float64``, a missing value is ``NaN``;
- categorical features: ``object`` holding the category's canonical text
  (:func:`include.data.spec.category_text`: ``1``, ``1.0`` and ``"1"`` are ``"1"``)
  or ``None``;
- the target (:func:`target_array`): ``int64`` 0/1 for binary (1 is
  ``positive_class``), the class text for multiclass, ``float64`` for regression.

Errors are :class:`CastError` and name the column and an example row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from include.data.spec import DatasetSpec, category_text


class CastError(ValueError):
    """A column cannot take the type the spec declares; the message names the column and an example row."""


def _as_series(values: Any) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(values)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _example(series: pd.Series, bad: np.ndarray) -> str:
    position = int(np.flatnonzero(bad)[0])
    return f"row {_plain(series.index[position])!r} holds {_plain(series.iloc[position])!r}"


def numeric_column(values: Any, name: str) -> np.ndarray:
    """``values`` (any numeric dtype, bool, or objects that are all numbers/None) as ``float64``, NaN for missing.

    Returns a ``float64`` array of shape (rows,). Raises :class:`CastError` naming ``name`` and the
    first row that is not a number.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        return values.astype(np.float64, copy=False)
    series = _as_series(values)
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    coerced = pd.to_numeric(series.where(series.notna(), None), errors="coerce")
    bad = (coerced.isna() & series.notna()).to_numpy()
    # bools inside an object column are numbers to to_numeric, and are 0/1 here too
    if bad.any():
        raise CastError(f"numeric feature {name!r} holds non-numeric values, e.g. {_example(series, bad)}")
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def _canonical(values: pd.Series) -> np.ndarray:
    present = values.notna().to_numpy()
    out = np.full(len(values), None, dtype=object)
    out[present] = [category_text(value) for value in values.to_numpy(dtype=object)[present]]
    return out


def categorical_column(values: Any, name: str) -> np.ndarray:
    """``values`` as an ``object`` array of canonical category text, ``None`` for missing.

    Strings pass through untouched (the serving path's fast case); integer codes,
    integral floats, booleans and pandas categories become their canonical text.
    Returns an ``object`` array of shape (rows,) holding ``str`` or ``None``; raises nothing itself.
    """
    if isinstance(values, np.ndarray) and values.dtype == object:
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind in ("string", "empty"):
            return values
        values = pd.Series(values)
    series = _as_series(values)
    if isinstance(series.dtype, pd.CategoricalDtype):
        texts = np.array([category_text(value) for value in series.cat.categories], dtype=object)
        codes = series.cat.codes.to_numpy()
        out = np.where(codes >= 0, texts[np.maximum(codes, 0)] if len(texts) else None, None)
        return out.astype(object)
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series.to_numpy(dtype=object, na_value=None)
    return _canonical(series)


def model_input(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The spec's feature columns of ``frame``, in spec order, typed as the model's signature declares.

    Returns a new frame with ``len(frame)`` rows and the same index. Raises
    :class:`CastError` for a missing feature column or a value of the wrong kind.
    """
    missing = [name for name in spec.feature_names if name not in frame.columns]
    if missing:
        raise CastError(f"input is missing required feature column(s): {', '.join(missing)}")
    columns = {}
    for feature in spec.features:
        values = frame[feature.name]
        columns[feature.name] = (
            numeric_column(values, feature.name) if feature.is_numeric else categorical_column(values, feature.name)
        )
    return pd.DataFrame(columns, index=frame.index)


def target_array(values: Any, spec: DatasetSpec) -> np.ndarray:
    """The target column typed for the task: binary ``int64`` 0/1 (1 = ``positive_class``),
    multiclass ``object`` class text, regression ``float64``.

    Returns an array of shape (rows,) of that dtype. Raises :class:`CastError` for a missing label,
    a label outside the declared classes, a third value in a binary target, or a non-number in a regression one.
    """
    series = _as_series(values)
    missing = series.isna().to_numpy()
    if missing.any():
        raise CastError(
            f"target {spec.target!r} has {int(missing.sum())} missing label(s): {_example(series, missing)}"
        )
    if spec.task == "regression":
        return numeric_column(series, spec.target)
    texts = categorical_column(series, spec.target)
    if spec.classes:
        outside = ~np.isin(texts, np.array(spec.classes, dtype=object))
        if outside.any():
            raise CastError(
                f"target {spec.target!r} holds a label outside the declared classes "
                f"{list(spec.classes)}: {_example(series, outside)}"
            )
    if spec.task == "multiclass":
        return texts
    distinct = set(texts.tolist())
    if len(distinct - {spec.positive_class}) > 1:
        others = sorted(distinct - {spec.positive_class})
        raise CastError(
            f"target {spec.target!r} of a binary task holds more than two values: "
            f"positive_class {spec.positive_class!r} and {others[:5]}"
        )
    return (texts == spec.positive_class).astype(np.int64)


def class_names(spec: DatasetSpec) -> list[str]:
    """The model's classes in output order: multiclass the spec's ``classes``; binary ``["0", "1"]``.

    Returns a list of str, empty for regression.
    """
    if spec.task == "multiclass":
        return list(spec.classes)
    if spec.task == "binary":
        return ["0", "1"]
    return []
