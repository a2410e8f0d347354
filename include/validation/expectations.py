"""The expectations a dataset spec implies, in Great Expectations' JSON form, and the suite of them all.

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

The profiled suite (:mod:`include.validation.profile`) is built from the same
pieces: the table's checks, a feature's bounds and categories, the target's checks.

Values in a ``value_set`` are written as the data would hold them, because GX
compares the frame's values as they are: categories (and classes) that are all
integer text (``"1"``, ``"2"``) become the integers (``1`` also matches ``1.0``,
an integer column with nulls); classes ``true``/``false`` become booleans;
anything else stays text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from include.data.spec import DatasetSpec, Feature

MIN_ROWS = 100
CATEGORY_MOSTLY = 0.99
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


def expectation(kind: str, meta: dict | None = None, **kwargs) -> dict:
    """Returns one expectation as GX's JSON dict: ``{"type": kind, "kwargs": kwargs, "meta": meta or {}}``."""
    return {"type": kind, "kwargs": kwargs, "meta": meta or {}}


def bound(value: float) -> int | float:
    """Returns ``value`` as JSON should read it: an int for a whole number (``0`` rather than ``0.0``), else a float."""
    return int(value) if float(value).is_integer() else float(value)


def data_values(texts: Sequence[str], booleans: bool = False) -> list:
    """Returns canonical category/class texts as a frame holds them (see the module docstring):
    integers when all are integer text, booleans for ``true``/``false`` when ``booleans`` (a
    target's classes), else the texts."""
    texts = list(texts)
    if texts and all(_INTEGER_TEXT.fullmatch(text) for text in texts):
        return [int(text) for text in texts]
    if booleans and texts and set(texts) <= {"true", "false"}:
        return [text == "true" for text in texts]
    return texts


def common_checks(spec: DatasetSpec) -> list[dict]:
    """Returns the checks every suite of ``spec`` starts with: at least :data:`MIN_ROWS` rows, every
    column present, the id unique and not null, the timestamp not null."""
    expectations = [expectation("expect_table_row_count_to_be_between", min_value=MIN_ROWS)]
    expectations += [expectation("expect_column_to_exist", column=column) for column in spec.columns]
    expectations += [
        expectation("expect_column_values_to_not_be_null", column=spec.id_column),
        expectation("expect_column_values_to_be_unique", column=spec.id_column),
        expectation("expect_column_values_to_not_be_null", column=spec.timestamp_column),
    ]
    return expectations


def spec_bounds(feature: Feature) -> dict:
    """Returns the spec's ``min_value``/``max_value`` of a numeric ``feature``, only those it declares."""
    return {
        key: bound(value)
        for key, value in (("min_value", feature.min), ("max_value", feature.max))
        if value is not None
    }


def category_check(column: str, value_set: list) -> dict:
    """Returns the check that ``column`` holds values of ``value_set``, but for :data:`CATEGORY_MOSTLY`."""
    return expectation("expect_column_values_to_be_in_set", column=column, value_set=value_set, mostly=CATEGORY_MOSTLY)


def target_checks(spec: DatasetSpec, classes: list | None = None) -> list[dict]:
    """Returns the task's target checks (see the module docstring); ``classes`` (as the data
    holds them) overrides the spec's."""
    target = spec.target
    expectations = [expectation("expect_column_values_to_not_be_null", column=target)]
    if spec.task == "regression":
        expectations.append(
            expectation("expect_column_values_to_be_in_type_list", column=target, type_list=list(NUMERIC_TYPES))
        )
        return expectations
    if classes is None and spec.classes:
        classes = data_values(spec.classes, booleans=True)
    if spec.task == "binary":
        if classes:
            expectations += [
                expectation("expect_column_values_to_be_in_set", column=target, value_set=list(classes)),
                expectation("expect_column_distinct_values_to_contain_set", column=target, value_set=list(classes)),
            ]
        else:
            expectations += [
                expectation(
                    "expect_column_distinct_values_to_contain_set",
                    column=target,
                    value_set=data_values([spec.positive_class], booleans=True),
                ),
                expectation("expect_column_unique_value_count_to_be_between", column=target, min_value=2, max_value=2),
            ]
        return expectations
    expectations += [
        expectation("expect_column_values_to_be_in_set", column=target, value_set=list(classes or [])),
        expectation("expect_column_unique_value_count_to_be_between", column=target, min_value=2),
    ]
    return expectations


def build_suite_from_spec(spec: DatasetSpec) -> dict:
    """A GX Core 1.x ExpectationSuite (as its JSON dict) checking a batch against ``spec`` alone."""
    expectations = common_checks(spec)
    for feature in spec.features:
        if not feature.nullable:
            expectations.append(expectation("expect_column_values_to_not_be_null", column=feature.name))
        if feature.is_numeric:
            bounds = spec_bounds(feature)
            if bounds:
                expectations.append(expectation("expect_column_values_to_be_between", column=feature.name, **bounds))
        else:
            expectations.append(category_check(feature.name, data_values(feature.categories)))
    expectations += target_checks(spec)
    return {
        "name": spec.name,
        "expectations": expectations,
        "meta": {"dataset": spec.name, "generated_by": GENERATED_BY},
    }
