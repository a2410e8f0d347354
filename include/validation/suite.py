"""The expectation suite a dataset spec implies, in Great Expectations' own JSON form.

Two builders, both returning a GX Core 1.x ExpectationSuite as its JSON dict:

``build_suite_from_spec(spec)`` needs no data (a dataset that has not landed yet).
It turns the spec's schema into the checks every training batch must pass: enough
rows to learn from, all columns present, the id unique and not null, the
timestamp not null, no nulls in a feature unless the spec declares it
``nullable``, numeric values within the spec's ``min``/``max`` where given,
categories from the spec's list (with a small tolerance, ``mostly``: a rare new
category is news, not a broken batch), and a target that fits the task:

- binary: not null; with ``classes`` declared, every label one of them and both
  present (``expect_column_values_to_be_in_set`` and
  ``expect_column_distinct_values_to_contain_set``); without, the positive class
  present and exactly two distinct labels
  (``expect_column_unique_value_count_to_be_between`` 2..2), which is what the
  training cast accepts. No positive-rate range: 91 % positives is a dataset, not
  a broken batch.
- multiclass: not null, every label one of ``classes``, at least two present.
- regression: not null and numeric. ``expect_column_values_to_be_between`` needs
  a bound (GX refuses one with neither) and raises a type error rather than
  naming the bad value on a text column, so the check is
  ``expect_column_values_to_be_in_type_list`` with every numeric dtype pandas
  has (:data:`NUMERIC_TYPES`): on a numeric column it compares the dtype, on an
  ``object`` column it checks each value and reports the text ones.

Values in a ``value_set`` are written as the data would hold them, because GX
compares the frame's values as they are: categories (and classes) that are all
integer text (``"1"``, ``"2"``) become the integers (``1`` also matches ``1.0``,
an integer column with nulls); classes ``true``/``false`` become booleans;
anything else stays text.

``build_suite_from_data(spec, frame)`` profiles landed data on top of the same
structure: per numeric feature the observed min/max widened by
:data:`RANGE_MARGIN` of the range (integer bounds for an integer-valued
column; a side the spec bounds keeps the spec's bound, the contract, so the
profile is never narrower than the spec); a column with nulls gets
``expect_column_values_to_not_be_null`` with ``mostly = 1 - (null share +
NULL_MARGIN)``; categories stay the spec's list (categories seen in the data but
not declared are reported on stderr); the target keeps the task's checks plus,
for a binary task, a share check of the positive class of at least a third
and at most three times its observed share (a multiclass target gets none: a
window of a seasonal table may lack a class or see one far more often). GX has no "share of a value"
expectation, but ``mostly`` expresses one on any column type:
``expect_column_values_to_be_in_set([c], mostly=p/3)`` says at least p/3 of
the labels are ``c`` and ``expect_column_values_to_not_be_in_set([c],
mostly=1-3p)`` says at most 3p are (the latter only when 3p < 1); each carries
``meta.check`` with that sentence, which the failure report shows. A regression
target gets the widened observed range.

The demo suite, include/validation/suites/customer_churn.json, is exactly what
``build_suite_from_spec`` produces for the demo spec (a unit test holds it to
that); for your own dataset, generate a starting suite and edit it::

    python -m include.validation.suite --spec path/to/spec.yaml > suite.json
    python -m include.validation.suite --spec path/to/spec.yaml --profile > suite.json  # from landed data
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from include.data.spec import DatasetSpec, Feature, category_text

MIN_ROWS = 100
CATEGORY_MOSTLY = 0.99
# profiling: numeric ranges widen by this share of the observed range on each side
RANGE_MARGIN = 0.1
# profiling: a column with nulls may hold this much more null share than observed
NULL_MARGIN = 0.05
# profiling: a class's share may fall to 1/SHARE_FACTOR of, or rise to SHARE_FACTOR times, the observed one
SHARE_FACTOR = 3.0
# every numeric dtype a pandas column can have, as expect_column_values_to_be_in_type_list names them
NUMERIC_TYPES = [
    "int",
    "float",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
    "UInt8Dtype",
    "UInt16Dtype",
    "UInt32Dtype",
    "UInt64Dtype",
    "Float32Dtype",
    "Float64Dtype",
]
GENERATED_BY = "python -m include.validation.suite"
_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")


class ProfileError(ValueError):
    """Landed data cannot be profiled into a suite; the message names the column."""


def _expectation(kind: str, meta: dict | None = None, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": meta or {}}


def _bound(value: float) -> int | float:
    """A bound as JSON should read it: ``0`` rather than ``0.0``."""
    return int(value) if float(value).is_integer() else float(value)


def data_values(texts: Sequence[str], booleans: bool = False) -> list:
    """Canonical category/class texts as a frame holds them: integers when all are integer text,
    booleans for ``true``/``false`` when ``booleans`` (a target's classes), else the texts."""
    texts = list(texts)
    if texts and all(_INTEGER_TEXT.fullmatch(text) for text in texts):
        return [int(text) for text in texts]
    if booleans and texts and set(texts) <= {"true", "false"}:
        return [text == "true" for text in texts]
    return texts


def _common(spec: DatasetSpec) -> list[dict]:
    expectations = [_expectation("expect_table_row_count_to_be_between", min_value=MIN_ROWS)]
    expectations += [_expectation("expect_column_to_exist", column=column) for column in spec.columns]
    expectations += [
        _expectation("expect_column_values_to_not_be_null", column=spec.id_column),
        _expectation("expect_column_values_to_be_unique", column=spec.id_column),
        _expectation("expect_column_values_to_not_be_null", column=spec.timestamp_column),
    ]
    return expectations


def _spec_bounds(feature: Feature) -> dict:
    return {
        key: _bound(value)
        for key, value in (("min_value", feature.min), ("max_value", feature.max))
        if value is not None
    }


def _category_check(column: str, value_set: list) -> dict:
    return _expectation("expect_column_values_to_be_in_set", column=column, value_set=value_set, mostly=CATEGORY_MOSTLY)


def _target_checks(spec: DatasetSpec, classes: list | None = None) -> list[dict]:
    """The task's target checks; ``classes`` (as the data holds them) overrides the spec's."""
    target = spec.target
    expectations = [_expectation("expect_column_values_to_not_be_null", column=target)]
    if spec.task == "regression":
        expectations.append(
            _expectation("expect_column_values_to_be_in_type_list", column=target, type_list=list(NUMERIC_TYPES))
        )
        return expectations
    if classes is None and spec.classes:
        classes = data_values(spec.classes, booleans=True)
    if spec.task == "binary":
        if classes:
            expectations += [
                _expectation("expect_column_values_to_be_in_set", column=target, value_set=list(classes)),
                _expectation("expect_column_distinct_values_to_contain_set", column=target, value_set=list(classes)),
            ]
        else:
            expectations += [
                _expectation(
                    "expect_column_distinct_values_to_contain_set",
                    column=target,
                    value_set=data_values([spec.positive_class], booleans=True),
                ),
                _expectation("expect_column_unique_value_count_to_be_between", column=target, min_value=2, max_value=2),
            ]
        return expectations
    expectations += [
        _expectation("expect_column_values_to_be_in_set", column=target, value_set=list(classes or [])),
        _expectation("expect_column_unique_value_count_to_be_between", column=target, min_value=2),
    ]
    return expectations


def build_suite_from_spec(spec: DatasetSpec) -> dict:
    """A GX Core 1.x ExpectationSuite (as its JSON dict) checking a batch against ``spec`` alone."""
    expectations = _common(spec)
    for feature in spec.features:
        if not feature.nullable:
            expectations.append(_expectation("expect_column_values_to_not_be_null", column=feature.name))
        if feature.is_numeric:
            bounds = _spec_bounds(feature)
            if bounds:
                expectations.append(_expectation("expect_column_values_to_be_between", column=feature.name, **bounds))
        else:
            expectations.append(_category_check(feature.name, data_values(feature.categories)))
    expectations += _target_checks(spec)
    return {
        "name": spec.name,
        "expectations": expectations,
        "meta": {"dataset": spec.name, "generated_by": GENERATED_BY},
    }


# ---- profiling -------------------------------------------------------------------------------------------


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
            bounds = {"min_value": _bound(_floor(low - margin)), "max_value": _bound(_ceil(high + margin))}
    if feature is not None:
        bounds.update(_spec_bounds(feature))
        if present.size and (
            (feature.min is not None and present.min() < feature.min)
            or (feature.max is not None and present.max() > feature.max)
        ):
            _warn(
                f"{feature.name}: landed values span {_bound(float(present.min()))}..{_bound(float(present.max()))}, "
                f"beyond the spec's min/max; the profiled suite keeps the spec's bounds"
            )
    return bounds


def _null_check(spec_nullable: bool, series: pd.Series, column: str) -> dict | None:
    share = float(series.isna().mean()) if len(series) else 0.0
    if share == 0.0:
        return None if spec_nullable else _expectation("expect_column_values_to_not_be_null", column=column)
    if not spec_nullable:
        _warn(
            f"{column}: {share:.1%} of the landed values are null but the spec does not declare it "
            "nullable: true (the spec-only suite rejects them)"
        )
    mostly = _floor(1.0 - (share + NULL_MARGIN))
    if mostly <= 0:
        return None
    return _expectation(
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
            _expectation(
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
            _expectation(
                "expect_column_values_to_not_be_in_set",
                column=column,
                value_set=values,
                mostly=_bound(_floor(1 - high)),
                meta={"check": f"class {label!r} is at most {high:.2%} of the labels (observed {share:.2%})"},
            )
        )
    return expectations


def _profiled_target(spec: DatasetSpec, frame: pd.DataFrame) -> list[dict]:
    series = frame[spec.target]
    if spec.task == "regression":
        expectations = _target_checks(spec)
        bounds = _widened_range(_numbers(series, spec.target))
        if bounds:
            expectations.append(_expectation("expect_column_values_to_be_between", column=spec.target, **bounds))
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
    expectations = _target_checks(spec, classes=classes)
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
    expectations = _common(spec)
    for feature in spec.features:
        series = frame[feature.name]
        null_check = _null_check(feature.nullable, series, feature.name)
        if null_check:
            expectations.append(null_check)
        if feature.is_numeric:
            bounds = _widened_range(_numbers(series, feature.name), feature)
            if bounds:
                expectations.append(_expectation("expect_column_values_to_be_between", column=feature.name, **bounds))
        else:
            undeclared = _undeclared(feature.categories, series)
            if undeclared:
                _warn(
                    f"{feature.name}: the landed data holds categories the spec does not declare: "
                    f"{undeclared[:10]}{' ...' if len(undeclared) > 10 else ''} ({len(undeclared)}); "
                    "the suite keeps the spec's list"
                )
            expectations.append(_category_check(feature.name, _values_as_held(feature.categories, series)))
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


def suite_json(spec: DatasetSpec) -> str:
    """The spec-only suite (:func:`build_suite_from_spec`) as indented JSON text ending in a newline."""
    return json.dumps(build_suite_from_spec(spec), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print a suite for a spec; returns the exit status (0, or 2 when the data cannot be read or profiled).

    A bad spec or option exits through ``argparse`` (``SystemExit`` with status 2).
    """
    from include.data.partitions import DataError, partition_dates, read_window
    from include.data.spec import SpecError, load_spec
    from include.settings import Settings

    parser = argparse.ArgumentParser(
        prog=GENERATED_BY, description="Print a starting Great Expectations suite (JSON) for a dataset spec."
    )
    parser.add_argument("--spec", type=Path, help="dataset spec (default: MLOPS_DATASET_SPEC or the demo spec)")
    parser.add_argument(
        "--profile", action="store_true", help="infer ranges, null shares and class shares from every landed partition"
    )
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec or Settings.from_env().dataset_spec)
    except SpecError as exc:
        parser.error(str(exc))
    if not args.profile:
        sys.stdout.write(suite_json(spec))
        return 0
    try:
        days = partition_dates(spec)
        if not days:
            print(
                f"error: no landed data for {spec.name} in {spec.location} to profile; "
                f"land it first: run `python -m include.data.ingest --spec {spec.source} SOURCE...`, "
                "then profile again",
                file=sys.stderr,
            )
            return 2
        frame = read_window(spec, days[0], days[-1] + timedelta(days=1))
        suite = build_suite_from_data(spec, frame, days=days)
    except (DataError, ProfileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(suite, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
