"""The expectation suite a dataset spec implies, in Great Expectations' own JSON form.

``build_suite_from_spec`` turns the spec's schema into the checks every training
batch must pass: all columns present, the id unique, no nulls in what the model
needs, numeric values within the spec's bounds, categories from the spec's list
(with a small tolerance: a rare new category is news, not a broken batch), a
binary target with a plausible positive rate, and enough rows to learn from.

The demo suite, include/validation/suites/customer_churn.json, is exactly what
this module produces for the demo spec (a unit test holds it to that); for your
own dataset, generate a starting suite and edit it::

    python -m include.validation.suite --spec path/to/spec.yaml > suite.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from include.data.spec import DatasetSpec

MIN_ROWS = 100
CATEGORY_MOSTLY = 0.99
TARGET_VALUES = [0, 1]
TARGET_MEAN_MIN = 0.02
TARGET_MEAN_MAX = 0.7


def _expectation(kind: str, **kwargs) -> dict:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


def build_suite_from_spec(spec: DatasetSpec) -> dict:
    """A GX Core 1.x ExpectationSuite (as its JSON dict) checking a batch against ``spec``."""
    expectations = [_expectation("expect_table_row_count_to_be_between", min_value=MIN_ROWS)]
    expectations += [_expectation("expect_column_to_exist", column=column) for column in spec.columns]
    expectations += [
        _expectation("expect_column_values_to_not_be_null", column=spec.id_column),
        _expectation("expect_column_values_to_be_unique", column=spec.id_column),
        _expectation("expect_column_values_to_not_be_null", column=spec.timestamp_column),
    ]
    for feature in spec.features:
        expectations.append(_expectation("expect_column_values_to_not_be_null", column=feature.name))
        if feature.is_numeric:
            bounds = {key: value for key, value in (("min_value", feature.min), ("max_value", feature.max))
                      if value is not None}
            if bounds:
                expectations.append(_expectation("expect_column_values_to_be_between",
                                                 column=feature.name, **bounds))
        else:
            expectations.append(_expectation("expect_column_values_to_be_in_set", column=feature.name,
                                             value_set=list(feature.categories), mostly=CATEGORY_MOSTLY))
    expectations += [
        _expectation("expect_column_values_to_not_be_null", column=spec.target),
        _expectation("expect_column_values_to_be_in_set", column=spec.target, value_set=list(TARGET_VALUES)),
        _expectation("expect_column_mean_to_be_between", column=spec.target,
                     min_value=TARGET_MEAN_MIN, max_value=TARGET_MEAN_MAX),
    ]
    return {
        "name": spec.name,
        "expectations": expectations,
        "meta": {"dataset": spec.name, "generated_by": "python -m include.validation.suite"},
    }


def suite_json(spec: DatasetSpec) -> str:
    return json.dumps(build_suite_from_spec(spec), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    from include.data.spec import SpecError, load_spec
    from include.settings import Settings

    parser = argparse.ArgumentParser(
        prog="python -m include.validation.suite",
        description="Print a starting Great Expectations suite (JSON) for a dataset spec.")
    parser.add_argument("--spec", type=Path, help="dataset spec (default: MLOPS_DATASET_SPEC or the demo spec)")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec or Settings.from_env().dataset_spec)
    except SpecError as exc:
        parser.error(str(exc))
    sys.stdout.write(suite_json(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
