"""The demo data generator: schema, determinism, landing, realism and drift."""

from __future__ import annotations

import dataclasses
import os
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from include.simulation.generate import DriftConfig, generate_day, generate_days, land_days, main

DAY = date(2026, 10, 1)


def _days(spec, first: date, count: int, rows: int = 400, seed: int = 7, drift=None) -> pd.DataFrame:
    return generate_days(spec, first, count, rows, seed, drift)


def test_columns_dtypes_and_values_follow_the_spec(spec):
    frame = generate_day(spec, DAY, 500, seed=7)

    assert list(frame.columns) == spec.columns
    assert len(frame) == 500
    for name in spec.numeric_features:
        assert frame[name].dtype == np.float64, name
        feature = spec.feature(name)
        assert frame[name].between(feature.min, feature.max).all(), name
    for name in ("num_devices", "support_calls_30d", "tenure_months", "days_since_last_login"):
        assert (frame[name] == frame[name].round()).all(), f"{name} should hold whole numbers"
    for name in spec.categorical_features:
        assert frame[name].dtype == object, name
        assert set(frame[name]) <= set(spec.feature(name).categories), name
    assert frame[spec.id_column].dtype == object
    assert frame[spec.id_column].is_unique
    assert frame[spec.id_column].iloc[0] == "C20261001-000000"
    assert str(frame[spec.timestamp_column].dtype) == "datetime64[ns, UTC]"
    times = frame[spec.timestamp_column]
    assert times.is_monotonic_increasing
    assert times.min() >= pd.Timestamp("2026-10-01", tz="UTC") and times.max() < pd.Timestamp("2026-10-02", tz="UTC")
    assert frame[spec.target].dtype == np.int64
    assert set(frame[spec.target]) == {0, 1}
    assert not frame.isna().any().any()


def test_a_day_depends_only_on_its_arguments(spec):
    first = generate_day(spec, DAY, 300, seed=7)

    pd.testing.assert_frame_equal(first, generate_day(spec, DAY, 300, seed=7))
    assert not first.equals(generate_day(spec, DAY, 300, seed=8))
    assert not first[spec.feature_names].equals(
        generate_day(spec, DAY + timedelta(days=1), 300, seed=7)[spec.feature_names]
    )


def test_generated_days_are_each_days_frame_in_order(spec):
    drift = DriftConfig("covariate", date(2026, 10, 2))
    days = generate_days(spec, date(2026, 10, 1), 3, 40, seed=5, drift=drift)

    expected = [generate_day(spec, date(2026, 10, 1) + timedelta(days=offset), 40, 5, drift) for offset in range(3)]
    pd.testing.assert_frame_equal(days, pd.concat(expected, ignore_index=True))
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="days must be a positive integer"):
            generate_days(spec, date(2026, 10, 1), bad, 40)


def test_ids_are_unique_across_days(spec):
    frame = _days(spec, DAY, 3, rows=200)
    assert frame[spec.id_column].is_unique


def test_landing_writes_one_partition_per_day_and_relanding_is_byte_identical(spec):
    paths = land_days(spec, DAY, days=3, rows_per_day=150, seed=7)

    assert [p.relative_to(spec.location).as_posix() for p in paths] == [
        "date=2026-10-01/part-0.parquet",
        "date=2026-10-02/part-0.parquet",
        "date=2026-10-03/part-0.parquet",
    ]
    first_bytes = [p.read_bytes() for p in paths]
    mtimes = [p.stat().st_mtime_ns for p in paths]
    # the middle day read back equals that day generated alone: days are independent of each other
    pd.testing.assert_frame_equal(pd.read_parquet(paths[1]), generate_day(spec, DAY + timedelta(days=1), 150, seed=7))

    again = land_days(spec, DAY, days=3, rows_per_day=150, seed=7)

    assert again == paths
    assert [p.read_bytes() for p in again] == first_bytes
    assert [p.stat().st_mtime_ns for p in again] == mtimes, "an identical partition should not be rewritten"
    leftovers = [name for p in paths for name in os.listdir(p.parent) if name != "part-0.parquet"]
    assert leftovers == []


def test_relanding_repairs_a_damaged_partition(spec):
    (path,) = land_days(spec, DAY, days=1, rows_per_day=120)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])

    land_days(spec, DAY, days=1, rows_per_day=120)

    assert path.read_bytes() == good


def test_churn_rate_and_plan_slices_are_realistic(spec):
    frame = _days(spec, DAY, 20)

    assert 0.20 <= frame[spec.target].mean() <= 0.30
    by_plan = frame.groupby(spec.slice_feature)[spec.target].agg(["size", "sum"])
    assert set(by_plan.index) == set(spec.feature(spec.slice_feature).categories)
    assert (by_plan["size"] >= 0.15 * len(frame)).all(), by_plan
    assert (by_plan["sum"] >= 100).all(), by_plan


def _features(frame, spec):
    features = frame[spec.feature_names].copy()
    for name in spec.categorical_features:
        features[name] = pd.Categorical(features[name], categories=spec.feature(name).categories)
    return features


def test_a_model_learns_the_label_and_concept_drift_degrades_it(spec):
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    history = _days(spec, DAY, 20)  # rows are in time order
    cut = int(len(history) * 0.8)
    train, held_out = history.iloc[:cut], history.iloc[cut:]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(_features(train, spec), train[spec.target])

    def auc(frame):
        return roc_auc_score(frame[spec.target], model.predict_proba(_features(frame, spec))[:, 1])

    later = DAY + timedelta(days=20)
    held_out_auc = auc(held_out)
    drifted_auc = auc(_days(spec, later, 5, drift=DriftConfig("concept", start=later)))

    assert 0.78 <= held_out_auc <= 0.92
    assert drifted_auc < held_out_auc - 0.15, (held_out_auc, drifted_auc)


def test_covariate_drift_moves_the_features_from_its_start_day(spec):
    start = DAY + timedelta(days=2)
    drift = DriftConfig("covariate", start=start)
    before = _days(spec, DAY, 2)
    pd.testing.assert_frame_equal(before, _days(spec, DAY, 2, drift=drift))

    plain = _days(spec, start, 3)
    drifted = _days(spec, start, 3, drift=drift)

    assert drifted["usage_hours_30d"].mean() < 0.8 * plain["usage_hours_30d"].mean()
    assert drifted["support_calls_30d"].mean() > 1.3 * plain["support_calls_30d"].mean()
    # prices rise within each plan (overall the mean also feels the shift towards cheaper plans)
    price_rise = drifted.groupby("plan")["monthly_charges"].mean() / plain.groupby("plan")["monthly_charges"].mean()
    assert (price_rise > 1.08).all(), price_rise
    basic_share = (drifted["plan"] == "basic").mean() - (plain["plan"] == "basic").mean()
    assert basic_share > 0.08
    assert drifted[spec.target].mean() > plain[spec.target].mean() + 0.05


def test_concept_drift_changes_the_label_relation_only(spec):
    drift = DriftConfig("concept", start=DAY)
    plain = _days(spec, DAY, 5)
    drifted = _days(spec, DAY, 5, drift=drift)

    pd.testing.assert_frame_equal(plain.drop(columns=spec.target), drifted.drop(columns=spec.target))

    def churn_heavy_minus_light(frame):
        heavy = frame["usage_hours_30d"] >= frame["usage_hours_30d"].quantile(0.75)
        light = frame["usage_hours_30d"] <= frame["usage_hours_30d"].quantile(0.25)
        return frame.loc[heavy, spec.target].mean() - frame.loc[light, spec.target].mean()

    # before: heavy users stay; after: heavy users are the ones who leave
    assert churn_heavy_minus_light(plain) < -0.15
    assert churn_heavy_minus_light(drifted) > 0.10
    half = _days(spec, DAY, 5, drift=dataclasses.replace(drift, strength=0.5))
    assert churn_heavy_minus_light(plain) < churn_heavy_minus_light(half) < churn_heavy_minus_light(drifted)


def test_bad_drift_and_arguments_are_rejected_by_name(spec):
    with pytest.raises(ValueError, match="'seasonal'"):
        DriftConfig("seasonal", start=DAY)
    with pytest.raises(ValueError, match="strength"):
        DriftConfig("concept", start=DAY, strength=-1)
    with pytest.raises(ValueError, match="start"):
        DriftConfig("concept", start="2026-10-01")
    with pytest.raises(ValueError, match="rows"):
        generate_day(spec, DAY, 0, seed=7)
    with pytest.raises(ValueError, match="days"):
        land_days(spec, DAY, days=0, rows_per_day=10)
    other = dataclasses.replace(spec, name="other", features=spec.features[:-1])
    with pytest.raises(ValueError, match="contract"):
        generate_day(other, DAY, 10, seed=7)


def test_cli_lands_days_and_says_what_it_wrote(spec, capsys):
    assert (
        main(
            [
                "--start",
                "2026-10-01",
                "--days",
                "2",
                "--rows-per-day",
                "50",
                "--drift",
                "covariate",
                "--drift-from",
                "2026-10-02",
            ]
        )
        == 0
    )

    out = capsys.readouterr().out
    assert "2 days" in out and "100 rows" in out and spec.location in out
    drifted = pd.read_parquet(f"{spec.location}/date=2026-10-02/part-0.parquet")
    pd.testing.assert_frame_equal(
        drifted, generate_day(spec, date(2026, 10, 2), 50, 7, DriftConfig("covariate", date(2026, 10, 2)))
    )

    with pytest.raises(SystemExit):
        main(["--start", "2026-10-01", "--days", "2", "--rows-per-day", "50", "--drift", "concept"])
    assert "--drift-from" in capsys.readouterr().err
