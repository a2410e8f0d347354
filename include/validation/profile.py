"""A suite profiled from landed data: the spec's checks, with ranges, null shares and class shares observed.

``build_suite_from_data(spec, frame)``, the second builder of :mod:`include.validation.suite`,
starts from the structure the spec implies (:mod:`include.validation.expectations`):

- per numeric feature, the observed min/max widened by :data:`RANGE_MARGIN` of the
  range (integer bounds for an integer-valued column; a side the spec bounds keeps
  the spec's bound, the contract, so the profile is never narrower than the spec);
- a column with nulls gets ``expect_column_values_to_not_be_null`` with
  ``mostly = 1 - (null share + NULL_MARGIN)``;
- categories stay the spec's list (categories seen in the data but not declared
  are reported on stderr);
- the target keeps the task's checks plus, for a binary task, a share check of the
  positive class of at least a third and at most three times its observed share (a
  multiclass target gets none: a window of a seasonal table may lack a class or see
  one far more often). GX has no "share of a value" expectation, but ``mostly``
  expresses one on any column type: ``expect_column_values_to_be_in_set([c],
  mostly=p/3)`` says at least p/3 of the labels are ``c`` and
  ``expect_column_values_to_not_be_in_set([c], mostly=1-3p)`` says at most 3p are
  (the latter only when 3p < 1); each carries ``meta.check`` with that sentence,
  which the failure report shows. A regression target gets the widened observed range.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from include.data.spec import DatasetSpec, Feature, category_text
from include.validation.expectations import (
    GENERATED_BY,
    bound,
    category_check,
    common_checks,
    data_values,
    expectation,
    spec_bounds,
    target_checks,
)

# numeric ranges widen by this share of the observed range on each side
RANGE_MARGIN = 0.1
# a column with nulls may hold this much more null share than observed
NULL_MARGIN = 0.05
# a class's share may fall to 1/SHARE_FACTOR of, or rise to SHARE_FACTOR times, the observed one
SHARE_FACTOR = 3.0


class ProfileError(ValueError):
    """Landed data cannot be profiled into a suite; the message names the column."""


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _native(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _distinct(series: pd.Series) -> list:
    """The distinct non-null values of ``series`` as plain Python values, in first-seen order."""
    present = series[series.notna()]
    if isinstance(present.dtype, pd.CategoricalDtype):
        present = present.astype(object)
    return [_native(value) for value in pd.unique(present.to_numpy(dtype=object))]


def _values_as_held(texts: Sequence[str], series: pd.Series, booleans: bool = False) -> list:
    """``texts`` as ``series`` holds them: every held value whose canonical text is declared, and
    the default representation (:func:`data_values`) of each declared text the data never holds."""
    held: dict[str, list] = {}
    for value in _distinct(series):
        held.setdefault(category_text(value), []).append(value)
    defaults = dict(zip(texts, data_values(texts, booleans=booleans), strict=False))
    values: list = []
    seen: set = set()
    for text in texts:
        for value in held.get(text) or [defaults[text]]:
            key = (type(value).__name__, value)
            if key not in seen:
                seen.add(key)
                values.append(value)
    return values


def _floor(value: float, places: int = 4) -> float:
    return math.floor(value * 10**places) / 10**places


def _ceil(value: float, places: int = 4) -> float:
    return math.ceil(value * 10**places) / 10**places


def _numbers(series: pd.Series, column: str) -> np.ndarray:
    from include.data.cast import CastError, numeric_column

    try:
        return numeric_column(series, column)
    except CastError as exc:
        raise ProfileError(f"cannot profile {column!r}: {exc}") from None


def _widened_range(values: np.ndarray, feature: Feature | None = None) -> dict:
    """min_value/max_value from the observed values widened by RANGE_MARGIN; a spec bound wins on its side."""
    present = values[np.isfinite(values)]
    bounds: dict = {}
    if present.size:
        low, high = float(present.min()), float(present.max())
        margin = RANGE_MARGIN * (high - low) or RANGE_MARGIN * abs(high) or 1.0
        if np.all(present == np.round(present)):
            bounds = {"min_value": math.floor(low - margin), "max_value": math.ceil(high + margin)}
        else:
            bounds = {"min_value": bound(_floor(low - margin)), "max_value": bound(_ceil(high + margin))}
    if feature is not None:
        bounds.update(spec_bounds(feature))
        if present.size and (
            (feature.min is not None and present.min() < feature.min)
            or (feature.max is not None and present.max() > feature.max)
        ):
            _warn(
                f"{feature.name}: landed values span {bound(float(present.min()))}..{bound(float(present.max()))}, "
                f"beyond the spec's min/max; the profiled suite keeps the spec's bounds"
            )
    return bounds


def _null_check(spec_nullable: bool, series: pd.Series, column: str) -> dict | None:
    share = float(series.isna().mean()) if len(series) else 0.0
    if share == 0.0:
        return None if spec_nullable else expectation("expect_column_values_to_not_be_null", column=column)
    if not spec_nullable:
        _warn(
            f"{column}: {share:.1%} of the landed values are null but the spec does not declare it "
            "nullable: true (the spec-only suite rejects them)"
        )
    mostly = _floor(1.0 - (share + NULL_MARGIN))
    if mostly <= 0:
        return None
    return expectation(
        "expect_column_values_to_not_be_null",
        column=column,
        mostly=mostly,
        meta={"check": f"at most {1 - mostly:.2%} nulls (observed {share:.2%})"},
    )


def _undeclared(texts: Iterable[str], series: pd.Series) -> list[str]:
    declared = set(texts)
    return sorted({category_text(value) for value in _distinct(series)} - declared)


def _share_checks(column: str, label: str, values: list, share: float) -> list[dict]:
    expectations = []
    low = _floor(share / SHARE_FACTOR)
    if low > 0:
        expectations.append(
            expectation(
                "expect_column_values_to_be_in_set",
                column=column,
                value_set=values,
                mostly=low,
                meta={"check": f"class {label!r} is at least {low:.2%} of the labels (observed {share:.2%})"},
            )
        )
    if share * SHARE_FACTOR < 1:
        high = _ceil(share * SHARE_FACTOR)
        expectations.append(
            expectation(
                "expect_column_values_to_not_be_in_set",
                column=column,
                value_set=values,
                mostly=bound(_floor(1 - high)),
                meta={"check": f"class {label!r} is at most {high:.2%} of the labels (observed {share:.2%})"},
            )
        )
    return expectations


def _profiled_target(spec: DatasetSpec, frame: pd.DataFrame) -> list[dict]:
    series = frame[spec.target]
    if spec.task == "regression":
        expectations = target_checks(spec)
        bounds = _widened_range(_numbers(series, spec.target))
        if bounds:
            expectations.append(expectation("expect_column_values_to_be_between", column=spec.target, **bounds))
        return expectations
    texts = list(spec.classes)
    if not texts:  # binary without declared classes: the positive class and whatever else the data holds
        texts = [spec.positive_class, *sorted({category_text(v) for v in _distinct(series)} - {spec.positive_class})]
        if len(texts) != 2:
            _warn(
                f"{spec.target}: a binary target needs the positive class {spec.positive_class!r} and one other "
                f"label; the landed data holds {texts}"
            )
    else:
        undeclared = _undeclared(texts, series)
        if undeclared:
            _warn(f"{spec.target}: the landed data holds label(s) outside the declared classes: {undeclared[:10]}")
    classes = _values_as_held(texts, series, booleans=True)
    expectations = target_checks(spec, classes=classes)
    labels = series[series.notna()]
    label_texts = pd.Series([category_text(value) for value in labels.to_numpy(dtype=object)], dtype=object)
    # Multiclass gets no share checks: a training window of a seasonal table may lack a class
    # (no snow in summer) or see one several times more often than the whole table does.
    checked = [spec.positive_class] if spec.task == "binary" else []
    for text in checked:
        share = float((label_texts == text).mean()) if len(label_texts) else 0.0
        if share == 0.0:
            _warn(f"{spec.target}: class {text!r} does not occur in the landed data; no share check for it")
            continue
        expectations += _share_checks(spec.target, text, _values_as_held([text], series, booleans=True), share)
    return expectations


def _days(spec: DatasetSpec, frame: pd.DataFrame) -> list[str]:
    try:
        stamps = pd.to_datetime(frame[spec.timestamp_column], errors="coerce")
    except (KeyError, TypeError, ValueError):
        return []
    return sorted({stamp.date().isoformat() for stamp in stamps.dropna()})


def build_suite_from_data(spec: DatasetSpec, frame: pd.DataFrame, days: Sequence[date] | None = None) -> dict:
    """A suite for ``spec`` whose ranges, null shares and class shares come from ``frame`` (landed data).

    ``days`` are the partitions ``frame`` was read from (for ``meta``); without
    them, the dates of the timestamp column. Raises :class:`ProfileError` for an
    empty frame, a missing column or a numeric column holding text. Categories
    in the data that the spec does not declare are reported on stderr.
    """
    if not isinstance(frame, pd.DataFrame) or frame.empty:
        raise ProfileError(f"no rows of {spec.name} to profile")
    missing = [column for column in [*spec.feature_names, spec.target] if column not in frame.columns]
    if missing:
        raise ProfileError(f"cannot profile {spec.name}: the landed data lacks column(s) {missing}")
    expectations = common_checks(spec)
    for feature in spec.features:
        series = frame[feature.name]
        null_check = _null_check(feature.nullable, series, feature.name)
        if null_check:
            expectations.append(null_check)
        if feature.is_numeric:
            bounds = _widened_range(_numbers(series, feature.name), feature)
            if bounds:
                expectations.append(expectation("expect_column_values_to_be_between", column=feature.name, **bounds))
        else:
            undeclared = _undeclared(feature.categories, series)
            if undeclared:
                _warn(
                    f"{feature.name}: the landed data holds categories the spec does not declare: "
                    f"{undeclared[:10]}{' ...' if len(undeclared) > 10 else ''} ({len(undeclared)}); "
                    "the suite keeps the spec's list"
                )
            expectations.append(category_check(feature.name, _values_as_held(feature.categories, series)))
    expectations += _profiled_target(spec, frame)
    profiled_days = [day.isoformat() for day in days] if days is not None else _days(spec, frame)
    return {
        "name": spec.name,
        "expectations": expectations,
        "meta": {
            "dataset": spec.name,
            "generated_by": f"{GENERATED_BY} --profile",
            "profiled": {"rows": int(len(frame)), "days": profiled_days},
        },
    }
