"""The Great Expectations suite and its runner, on real GX with generated data."""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from include.simulation.generate import generate_day
from include.validation.run import validate
from include.validation.suite import build_suite_from_spec
from include.validation.suite import main as suite_main


@pytest.fixture(scope="module", autouse=True)
def great_expectations_imported():
    # Importing GX costs seconds: pay it once per module rather than in the first test's timing.
    import great_expectations  # noqa: F401


@pytest.fixture
def clean(spec):
    """About 2000 rows of generated data, as validation sees it in the pipeline."""
    return pd.concat(
        [generate_day(spec, date(2026, 10, 1) + timedelta(days=offset), 400, 7) for offset in range(5)],
        ignore_index=True,
    )


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
    suite["expectations"].append(
        {"type": "expect_column_values_to_be_purple", "kwargs": {"column": "plan"}, "meta": {}}
    )
    path = tmp_path / "suite.json"
    path.write_text(json.dumps(suite))

    with pytest.raises(ValueError, match="expect_column_values_to_be_purple"):
        validate(clean, dataclasses.replace(spec, expectation_suite=path), tmp_path / "result.json")
    with pytest.raises(ValueError, match="does not exist"):
        validate(clean, dataclasses.replace(spec, expectation_suite=tmp_path / "none.json"), tmp_path / "r.json")


# ---- task-aware and profiled suites on datasets other than the demo ---------------------------------------


def _dataset(tmp_path, name, **spec):
    """A spec (YAML in tmp_path) whose suite lives at tmp_path/<name>.json; id/timestamp are derived."""
    import yaml

    from include.data.spec import load_spec

    body = {
        "name": name,
        "location": str(tmp_path / "landing" / name),
        "expectation_suite": str(tmp_path / f"{name}.json"),
        **spec,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return load_spec(path)


def _frame(spec, columns: dict, days: int = 3) -> pd.DataFrame:
    rows = len(next(iter(columns.values())))
    start = pd.Timestamp("2026-03-01", tz="UTC")
    return pd.DataFrame(
        {
            spec.id_column: np.arange(rows),
            spec.timestamp_column: start + pd.to_timedelta(np.arange(rows) % days, unit="D"),
            **columns,
        }
    )


def _check(suite, spec, frame, tmp_path):
    """Validate ``frame`` against ``suite`` (written where ``spec`` points, which must be under tmp_path)."""
    assert spec.expectation_suite.is_relative_to(tmp_path)
    spec.expectation_suite.write_text(json.dumps(suite))
    return validate(frame, spec, tmp_path / "results" / "result.json")


def _penguins(rows: int = 600, seed: int = 11) -> dict:
    rng = np.random.default_rng(seed)
    species = rng.choice(["Adelie", "Gentoo", "Chinstrap"], size=rows, p=[0.44, 0.36, 0.20])
    sex = rng.choice(["female", "male"], size=rows).astype(object)
    sex[rng.choice(rows, size=rows // 30, replace=False)] = None
    bill = rng.normal(44, 5, size=rows).round(1)
    bill[rng.choice(rows, size=2, replace=False)] = np.nan
    clutch = rng.choice([1.0, 2.0, 3.0], size=rows)  # integer codes, float64 because of the nulls
    clutch[rng.choice(rows, size=20, replace=False)] = np.nan
    return {
        "bill_length_mm": bill,
        "island": rng.choice(["Biscoe", "Dream", "Torgersen"], size=rows),
        "sex": sex,
        "year": rng.choice([2007, 2008, 2009], size=rows).astype(np.int64),
        "clutch": clutch,
        "species": species,
    }


PENGUIN_SPEC = dict(
    task="multiclass",
    target="species",
    classes=["Adelie", "Chinstrap", "Gentoo"],
    features=[
        {"name": "bill_length_mm", "type": "numeric", "min": 25, "max": 65, "nullable": True},
        {"name": "island", "type": "categorical", "categories": ["Biscoe", "Dream", "Torgersen"]},
        {"name": "sex", "type": "categorical", "categories": ["female", "male"], "nullable": True},
        {"name": "year", "type": "categorical", "categories": [2007, 2008, 2009]},
        {"name": "clutch", "type": "categorical", "categories": [1, 2, 3], "nullable": True},
    ],
    slice_feature="island",
)


@pytest.mark.parametrize("declared", [True, False], ids=["classes-declared", "positive-class-only"])
def test_a_string_binary_target_with_91_percent_positives_passes(tmp_path, declared):
    from include.validation.suite import build_suite_from_data

    spec = _dataset(
        tmp_path,
        "marketing",
        task="binary",
        target="subscribed",
        positive_class="yes",
        **({"classes": ["no", "yes"]} if declared else {}),
        features=[
            {"name": "age", "type": "numeric", "min": 18, "max": 100},
            {"name": "job", "type": "categorical", "categories": ["admin", "technician"]},
        ],
    )
    rng = np.random.default_rng(5)
    labels = np.where(np.arange(1000) < 910, "yes", "no").astype(object)
    data = _frame(
        spec,
        {
            "age": rng.integers(18, 90, size=1000),
            "job": rng.choice(["admin", "technician"], 1000),
            "subscribed": labels,
        },
    )

    spec_only = build_suite_from_spec(spec)
    assert _check(spec_only, spec, data, tmp_path).success
    profiled = build_suite_from_data(spec, data)
    assert _check(profiled, spec, data, tmp_path).success, "profiled suite rejects its own data"

    # a batch without the positive class fails both; a positive share far below the profile's fails that one
    no_positives = data.assign(subscribed="no")
    outcome = _check(spec_only, spec, no_positives, tmp_path)
    assert _failure(outcome, "expect_column_distinct_values_to_contain_set", "subscribed").observed == {
        "absent": ["yes"]
    }
    rare = data.assign(subscribed=np.where(np.arange(1000) < 200, "yes", "no"))  # 20 % < 91 % / 3
    assert _check(spec_only, spec, rare, tmp_path).success
    outcome = _check(profiled, spec, rare, tmp_path)
    share = _failure(outcome, "expect_column_values_to_be_in_set", "subscribed")
    assert "class 'yes' is at least 30.33% of the labels (observed 91.00%)" in share.describe()


def test_a_multiclass_target_with_nulls_and_integer_codes_passes(tmp_path):
    from include.validation.suite import build_suite_from_data

    spec = _dataset(tmp_path, "penguins", **PENGUIN_SPEC)
    data = _frame(spec, _penguins())
    suite = build_suite_from_spec(spec)
    by_column = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in suite["expectations"]}
    assert by_column[("expect_column_values_to_be_in_set", "year")]["value_set"] == [2007, 2008, 2009]
    assert by_column[("expect_column_values_to_be_in_set", "clutch")]["value_set"] == [1, 2, 3]
    assert ("expect_column_values_to_not_be_null", "sex") not in by_column  # declared nullable
    assert ("expect_column_values_to_not_be_null", "island") in by_column

    outcome = _check(suite, spec, data, tmp_path)
    assert outcome.success, outcome.summary()
    profiled = build_suite_from_data(spec, data)
    assert _check(profiled, spec, data, tmp_path).success

    emperor = data.copy()
    emperor.loc[7, "species"] = "Emperor"
    for checked in (suite, profiled):
        outcome = _check(checked, spec, emperor, tmp_path)
        failure = _failure(outcome, "expect_column_values_to_be_in_set", "species")
        assert failure.observed["unexpected_count"] == 1
        assert (
            "expect_column_values_to_be_in_set on column 'species': observed 1 of 600 values unexpected "
            "(0.17%), e.g. ['Emperor']; expected"
        ) in outcome.summary()


def test_a_regression_target_passes_and_text_in_it_fails(tmp_path):
    from include.validation.suite import build_suite_from_data

    spec = _dataset(
        tmp_path,
        "houses",
        task="regression",
        target="price",
        features=[
            {"name": "rooms", "type": "numeric", "min": 1},
            {"name": "area", "type": "categorical", "categories": ["a", "b"]},
        ],
    )
    rng = np.random.default_rng(3)
    data = _frame(
        spec,
        {
            "rooms": rng.integers(1, 8, size=500),
            "area": rng.choice(["a", "b"], size=500),
            "price": rng.lognormal(12, 0.4, size=500),
        },
    )
    suite, profiled = build_suite_from_spec(spec), build_suite_from_data(spec, data)
    assert _check(suite, spec, data, tmp_path).success
    assert _check(profiled, spec, data, tmp_path).success
    # integer-valued columns keep integer bounds, and the spec's own bound wins on its side
    rooms = next(
        e["kwargs"]
        for e in profiled["expectations"]
        if e["type"] == "expect_column_values_to_be_between" and e["kwargs"]["column"] == "rooms"
    )
    assert rooms["min_value"] == 1 and isinstance(rooms["max_value"], int) and rooms["max_value"] >= 7

    text = data.astype({"price": object})
    text.loc[42, "price"] = "n/a"
    for checked in (suite, profiled):
        outcome = _check(checked, spec, text, tmp_path)
        failure = _failure(outcome, "expect_column_values_to_be_in_type_list", "price")
        assert failure.observed["sample"] == ["n/a"]
        assert "1 of 500 values unexpected (0.20%), e.g. ['n/a']" in outcome.summary()
    too_high = data.copy()
    too_high.loc[3, "price"] = data["price"].max() * 10
    assert _check(suite, spec, too_high, tmp_path).success
    _failure(_check(profiled, spec, too_high, tmp_path), "expect_column_values_to_be_between", "price")


def test_a_profiled_null_share_tolerates_what_was_seen_not_more(tmp_path, capsys):
    from include.validation.suite import build_suite_from_data

    spec = _dataset(
        tmp_path,
        "loans",
        task="binary",
        target="default",
        positive_class=1,
        features=[
            {"name": "income", "type": "numeric", "nullable": True},
            {"name": "debt", "type": "numeric"},
            {"name": "purpose", "type": "categorical", "categories": ["car", "home"]},
        ],
    )
    rng = np.random.default_rng(8)
    income = rng.normal(50_000, 9_000, size=2000)
    income[rng.choice(2000, size=170, replace=False)] = np.nan  # 8.5 %
    purpose = rng.choice(["car", "home", "boat"], size=2000, p=[0.6, 0.395, 0.005])
    data = _frame(
        spec,
        {
            "income": income,
            "debt": rng.normal(9_000, 2_000, size=2000),
            "purpose": purpose,
            "default": (rng.random(2000) < 0.1).astype(np.int64),
        },
    )
    profiled = build_suite_from_data(spec, data)
    assert "'boat'" in capsys.readouterr().err  # seen in the data, not declared: reported, not added
    nulls = {
        e["kwargs"]["column"]: e["kwargs"]
        for e in profiled["expectations"]
        if e["type"] == "expect_column_values_to_not_be_null"
    }
    assert 0.85 <= nulls["income"]["mostly"] < 0.915 and "mostly" not in nulls["debt"]
    assert next(
        e
        for e in profiled["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "purpose"
    )["kwargs"]["value_set"] == ["car", "home"]
    assert profiled["meta"]["profiled"] == {"rows": 2000, "days": ["2026-03-01", "2026-03-02", "2026-03-03"]}
    assert _check(profiled, spec, data, tmp_path).success

    sparse = data.copy()
    sparse.loc[sparse.sample(frac=0.6, random_state=1).index, "income"] = np.nan
    outcome = _check(profiled, spec, sparse, tmp_path)
    failure = _failure(outcome, "expect_column_values_to_not_be_null", "income")
    assert failure.observed["unexpected_count"] == int(sparse["income"].isna().sum())
    assert "nulls (observed 8.50%)" in failure.describe()
    assert _check(build_suite_from_spec(spec), spec, sparse, tmp_path).success  # nullable: the spec allows it


def test_no_failure_line_is_longer_than_the_bound(tmp_path):
    from include.validation.run import MAX_LINE_CHARS, FailedExpectation

    categories = [f"code_{index:04d}" for index in range(3000)]
    spec = _dataset(
        tmp_path,
        "wide",
        task="binary",
        target="label",
        features=[
            {"name": "code", "type": "categorical", "categories": categories},
            {"name": "note", "type": "categorical", "categories": ["x"], "nullable": True},
        ],
    )
    rows = 4000
    data = _frame(
        spec,
        {
            "code": [f"unknown-{index}-" + "z" * 40 for index in range(rows)],
            "note": [f"a free-text note number {index} " * 3 for index in range(rows)],
            "label": np.arange(rows) % 2,
        },
    )
    suite = build_suite_from_spec(spec)
    # two more checks whose observed value is the whole column: GX lists every tied value / joins every text
    suite["expectations"] += [
        {
            "type": "expect_column_most_common_value_to_be_in_set",
            "kwargs": {"column": "code", "value_set": ["x"]},
            "meta": {},
        },
        {
            "type": "expect_column_distinct_values_to_equal_set",
            "kwargs": {"column": "note", "value_set": categories},
            "meta": {},
        },
    ]
    outcome = _check(suite, spec, data, tmp_path)

    assert not outcome.success and len(outcome.failures) >= 3
    lines = outcome.summary().splitlines()
    assert max(len(line) for line in lines[1:]) <= MAX_LINE_CHARS, outcome.summary()
    in_set = _failure(outcome, "expect_column_values_to_be_in_set", "code").describe()
    assert (
        "value_set=['code_0000'," in in_set
        and "more)]" in in_set
        and in_set.startswith(
            "expect_column_values_to_be_in_set on column 'code': observed 4000 of 4000 values unexpected"
        )
    )
    assert "more)]" in _failure(outcome, "expect_column_most_common_value_to_be_in_set", "code").describe()

    huge = FailedExpectation(
        "expect_column_sum_to_be_between",
        "note",
        "note " * 2000,
        {"expected": {"value_set": list(range(5000)), "mostly": 0.5}},
    )
    line = huge.describe()
    assert len(line) <= MAX_LINE_CHARS
    assert "... (+" in line and "chars)" in line and "more)]" in line and "mostly=0.5" in line


def test_profile_cli_needs_landed_data(tmp_path, capsys):
    spec = _dataset(tmp_path, "penguins", **PENGUIN_SPEC)

    assert suite_main(["--spec", str(spec.source), "--profile"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no landed data" in captured.err and "python -m include.data.ingest" in captured.err

    data = _frame(spec, _penguins(), days=2)
    for day, part in data.groupby(data[spec.timestamp_column].dt.date):
        folder = tmp_path / "landing" / "penguins" / f"date={day.isoformat()}"
        folder.mkdir(parents=True)
        part.to_parquet(folder / "part-0.parquet", index=False)
    assert suite_main(["--spec", str(spec.source), "--profile"]) == 0
    suite = json.loads(capsys.readouterr().out)
    assert suite["meta"]["profiled"] == {"rows": 600, "days": ["2026-03-01", "2026-03-02"]}
    assert _check(suite, spec, data, tmp_path).success


def test_a_profiled_demo_suite_passes_demo_data_and_fails_the_broken_batches(spec, clean, tmp_path):
    from include.validation.suite import build_suite_from_data

    spec = dataclasses.replace(spec, expectation_suite=tmp_path / "profiled.json")  # not the checked-in suite
    profiled = build_suite_from_data(spec, clean)
    assert _check(profiled, spec, clean, tmp_path).success
    broken = clean.copy()
    broken.loc[17, "monthly_charges"] = 999.0
    broken[spec.target] = 0
    outcome = _check(profiled, spec, broken, tmp_path)
    _failure(outcome, "expect_column_values_to_be_between", "monthly_charges")
    _failure(outcome, "expect_column_distinct_values_to_contain_set", spec.target)
