"""The Great Expectations suite and its runner, on real GX with generated data."""
from __future__ import annotations

import dataclasses
import json
import os
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from include.data.generate import generate_day
from include.validation.suite import build_suite_from_spec, main as suite_main
from include.validation.run import validate


@pytest.fixture(scope="module", autouse=True)
def great_expectations_imported():
    # Importing GX costs seconds: pay it once per module rather than in the first test's timing.
    import great_expectations  # noqa: F401


@pytest.fixture
def clean(spec):
    """About 2000 rows of generated data, as validation sees it in the pipeline."""
    return pd.concat([generate_day(spec, date(2026, 10, 1) + timedelta(days=offset), 400, 7)
                      for offset in range(5)], ignore_index=True)


@pytest.fixture
def result_path(tmp_path):
    return tmp_path / "validation" / "result.json"


def _failure(outcome, expectation, column):
    matches = [f for f in outcome.failures if f.expectation == expectation and f.column == column]
    assert matches, f"expected {expectation} on {column} to fail; summary:\n{outcome.summary()}"
    return matches[0]


def test_clean_generated_data_passes(spec, clean, result_path):
    outcome = validate(clean, spec, result_path)

    suite = json.loads(spec.expectation_suite.read_text())
    assert outcome.success, outcome.summary()
    assert outcome.failures == []
    assert outcome.evaluated == outcome.successful == len(suite["expectations"])
    written = json.loads(result_path.read_text())
    assert written["success"] is True and len(written["results"]) == outcome.evaluated
    assert os.listdir(result_path.parent) == ["result.json"]
    assert json.loads(json.dumps(outcome.to_dict()))["result_path"] == str(result_path)
    assert "passed" in outcome.summary()


def test_nulls_in_a_required_column_fail(spec, clean, result_path):
    broken = clean.copy()
    broken.loc[broken.sample(frac=0.1, random_state=3).index, "usage_hours_30d"] = np.nan

    outcome = validate(broken, spec, result_path)

    assert not outcome.success
    failure = _failure(outcome, "expect_column_values_to_not_be_null", "usage_hours_30d")
    assert failure.observed["unexpected_count"] == 200
    summary = outcome.summary()
    assert "expect_column_values_to_not_be_null on column 'usage_hours_30d'" in summary
    assert "200 of 2000" in summary
    assert json.loads(result_path.read_text())["success"] is False


def test_an_out_of_range_value_fails(spec, clean, result_path):
    broken = clean.copy()
    broken.loc[17, "monthly_charges"] = 999.0

    outcome = validate(broken, spec, result_path)

    assert not outcome.success
    failure = _failure(outcome, "expect_column_values_to_be_between", "monthly_charges")
    assert failure.observed["sample"] == [999.0]
    assert failure.details["expected"] == {"min_value": 5, "max_value": 250}
    summary = outcome.summary()
    assert "monthly_charges" in summary and "999.0" in summary and "max_value=250" in summary


def test_a_missing_column_is_a_failed_expectation_not_a_crash(spec, clean, result_path):
    outcome = validate(clean.drop(columns=["contract"]), spec, result_path)

    assert not outcome.success
    assert _failure(outcome, "expect_column_to_exist", "contract").observed == "column missing"
    in_set = _failure(outcome, "expect_column_values_to_be_in_set", "contract")
    assert "does not exist" in in_set.details["error"]
    assert "expect_column_to_exist on column 'contract': observed column missing" in outcome.summary()
    # nothing else fails because of it
    assert {f.column for f in outcome.failures} == {"contract"}


def test_unseen_categories_fail_beyond_the_tolerance_only(spec, clean, result_path):
    a_few = clean.copy()
    a_few.loc[a_few.sample(n=10, random_state=4).index, "plan"] = "enterprise"  # 0.5 %
    assert validate(a_few, spec, result_path).success

    many = clean.copy()
    many.loc[many.sample(frac=0.05, random_state=4).index, "plan"] = "enterprise"
    outcome = validate(many, spec, result_path)

    assert not outcome.success
    failure = _failure(outcome, "expect_column_values_to_be_in_set", "plan")
    assert failure.observed["unexpected_count"] == 100
    assert "'enterprise'" in outcome.summary()


def test_table_level_checks(spec, clean, result_path):
    broken = clean.copy()
    broken.loc[5, spec.id_column] = broken.loc[4, spec.id_column]
    broken[spec.target] = 0
    outcome = validate(broken, spec, result_path)
    _failure(outcome, "expect_column_values_to_be_unique", spec.id_column)
    # no positive-rate range any more (91 % positives is a dataset), but a batch without positives is broken
    assert _failure(outcome, "expect_column_distinct_values_to_contain_set", spec.target).observed == {"absent": [1]}
    assert "value(s) absent from the data: [1]" in outcome.summary()

    outcome = validate(clean.head(50), spec, result_path)
    failure = _failure(outcome, "expect_table_row_count_to_be_between", None)
    assert failure.observed == 50
    assert "observed 50; expected min_value=100" in outcome.summary()

    labels = clean.copy()
    labels.loc[0, spec.target] = 2
    _failure(validate(labels, spec, result_path), "expect_column_values_to_be_in_set", spec.target)


def test_checked_in_suite_is_the_one_the_spec_implies(spec, capsys):
    assert json.loads(spec.expectation_suite.read_text()) == build_suite_from_spec(spec)

    assert suite_main(["--spec", str(spec.source)]) == 0
    assert capsys.readouterr().out == spec.expectation_suite.read_text()


def test_suite_covers_every_column_of_the_spec(spec):
    suite = build_suite_from_spec(spec)
    kinds = {(e["type"], e["kwargs"].get("column")) for e in suite["expectations"]}
    for column in spec.columns:
        assert ("expect_column_to_exist", column) in kinds
        assert ("expect_column_values_to_not_be_null", column) in kinds
    for name in spec.numeric_features:
        assert ("expect_column_values_to_be_between", name) in kinds
    for name in spec.categorical_features:
        assert ("expect_column_values_to_be_in_set", name) in kinds


def test_a_suite_gx_cannot_load_is_an_error_not_a_weaker_check(spec, clean, tmp_path):
    suite = build_suite_from_spec(spec)
    suite["expectations"].append({"type": "expect_column_values_to_be_purple", "kwargs": {"column": "plan"},
                                  "meta": {}})
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))

    with pytest.raises(ValueError, match="expect_column_values_to_be_purple"):
        validate(clean, dataclasses.replace(spec, expectation_suite=path), tmp_path / "result.json")
    with pytest.raises(ValueError, match="does not exist"):
        validate(clean, dataclasses.replace(spec, expectation_suite=tmp_path / "none.json"), tmp_path / "r.json")
