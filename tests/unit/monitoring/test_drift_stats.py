"""The drift scores computed on all rows equal Evidently's, column by column, verdict by verdict."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from include.data.spec import MonitoringSpec
from include.monitoring import drift_stats
from include.monitoring.drift import DriftInputError, Reference, report_sample, run_drift_check

# the champion (a fitted model and its 8000-row reference) and its traffic, as in test_drift
from tests.unit.monitoring.test_drift import REFERENCE_START, THRESHOLDS, champion, demo_spec, served  # noqa: F401

TOLERANCE = 1e-9


def _evidently_wasserstein(reference: pd.Series, current: pd.Series) -> float:
    from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
    from evidently.legacy.core import ColumnType

    clean = lambda values: values.replace([-np.inf, np.inf], np.nan).dropna()  # noqa: E731 (as Evidently does)
    return _wasserstein_distance_norm(clean(reference), clean(current), ColumnType.Numerical, 0.1)[0]


def _evidently_jensenshannon(reference: pd.Series, current: pd.Series) -> float:
    from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
    from evidently.legacy.core import ColumnType

    return _jensenshannon(reference.dropna(), current.dropna(), ColumnType.Categorical, 0.1)[0]


@pytest.mark.parametrize("sizes", [(7, 5), (1000, 1000), (1200, 3500), (20_000, 5_000)])
def test_wasserstein_distance_is_scipys_exactly(sizes):
    generator = np.random.default_rng(sum(sizes))
    reference = generator.normal(0, 1, sizes[0])
    # rounded: many ties within and across the samples
    current = np.round(generator.normal(0.3, 1.4, sizes[1]), 1)

    assert drift_stats.wasserstein_distance(reference, current) == pytest.approx(
        stats.wasserstein_distance(reference, current), rel=TOLERANCE, abs=TOLERANCE
    )
    assert drift_stats.wasserstein_distance(reference, reference) == 0.0


def test_a_column_of_few_distinct_values_is_counted_and_the_distance_stays_exact():
    generator = np.random.default_rng(11)
    reference = generator.poisson(6.0, 50_000).astype(np.float64)
    current = generator.poisson(7.0, 40_000).astype(np.float64)
    # the first rows look like counts, the rest are not: only the speed may depend on that guess
    current[30_000:] += generator.normal(0, 1, 10_000)
    assert drift_stats._looks_discrete(reference) and drift_stats._looks_discrete(current)

    assert drift_stats.wasserstein_distance(reference, current) == pytest.approx(
        stats.wasserstein_distance(reference, current), rel=TOLERANCE
    )
    assert drift_stats.wasserstein_distance(reference, current) == pytest.approx(
        drift_stats._wasserstein_from_sorted(np.sort(reference), np.sort(current)), rel=TOLERANCE
    )


def test_numeric_scores_equal_evidentlys_with_missing_and_infinite_values():
    generator = np.random.default_rng(3)
    reference = pd.Series(generator.gamma(2.0, 10.0, 3000))
    current = pd.Series(generator.gamma(2.3, 11.0, 2000))
    reference[::17] = np.nan
    current[::11] = np.nan
    current[5] = np.inf
    reference[8] = -np.inf

    result = drift_stats.numeric_drift("charges", reference, current, threshold=0.1)

    assert result.method == "wasserstein"
    assert result.drift_score == pytest.approx(_evidently_wasserstein(reference, current), abs=TOLERANCE)
    # a constant reference: Evidently's 0.001 floor on the standard deviation, not a division by zero
    constant = pd.Series(np.full(500, 4.0))
    assert drift_stats.numeric_drift("devices", constant, current, 0.1).drift_score == pytest.approx(
        _evidently_wasserstein(constant, current), rel=TOLERANCE
    )


def test_categorical_scores_equal_evidentlys_with_missing_values_and_unseen_categories():
    generator = np.random.default_rng(5)
    reference = pd.Series(
        generator.choice(["basic", "standard", "premium", None], 4000, p=[0.5, 0.3, 0.15, 0.05]), dtype=object
    )
    # a category the reference never saw, and one it saw that the window lacks
    current = pd.Series(
        generator.choice(["basic", "standard", "enterprise", None], 2500, p=[0.3, 0.4, 0.2, 0.1]), dtype=object
    )

    result = drift_stats.categorical_drift("plan", reference, current, threshold=0.1)

    assert result.method == "jensenshannon"
    assert result.drift_score == pytest.approx(_evidently_jensenshannon(reference, current), abs=TOLERANCE)
    as_category = drift_stats.categorical_drift("plan", reference.astype("category"), current.astype("category"), 0.1)
    assert as_category.drift_score == pytest.approx(result.drift_score, abs=TOLERANCE)


def test_a_column_with_nothing_measurable_is_refused_never_scored():
    with pytest.raises(drift_stats.EmptyColumnError, match="'usage'.*current"):
        drift_stats.numeric_drift("usage", pd.Series([1.0, 2.0]), pd.Series([np.nan, np.inf]), 0.1)
    with pytest.raises(drift_stats.EmptyColumnError, match="'plan'.*reference"):
        drift_stats.categorical_drift("plan", pd.Series([None, None], dtype=object), pd.Series(["a"]), 0.1)


def test_verdict_is_score_at_or_above_threshold():
    assert drift_stats.ColumnDrift("a", "wasserstein", 0.1, 0.1).drifted is True
    assert drift_stats.ColumnDrift("a", "wasserstein", 0.1, 0.0999999).drifted is False


# ---------------------------------------------------------------------------------------- the whole check
def _evidently_full_report(window: pd.DataFrame, reference: Reference, spec) -> dict[str, tuple[float, bool]]:
    """Evidently's own report on every row of both sides: per column, its score and drifted verdict."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    from include.monitoring.drift_report import _comparable

    definition = DataDefinition(
        numerical_columns=[*spec.numeric_features, "probability"], categorical_columns=spec.categorical_features
    )
    snapshot = (
        Report(
            [
                DataDriftPreset(
                    columns=spec.feature_names,
                    num_method="wasserstein",
                    num_threshold=0.1,
                    cat_method="jensenshannon",
                    cat_threshold=0.1,
                ),
                ValueDrift(column="probability", method="wasserstein", threshold=0.1),
            ],
            include_tests=True,
        )
        .run(
            current_data=Dataset.from_pandas(_comparable(window, spec), data_definition=definition),
            reference_data=Dataset.from_pandas(_comparable(reference.frame, spec), data_definition=definition),
        )
        .dict()
    )
    verdicts = {
        test["metric_config"]["params"]["column"]: test["status"] == "FAIL"
        for test in snapshot["tests"]
        if test["metric_config"]["params"].get("type") == "evidently:metric_v2:ValueDrift"
    }
    return {
        metric["config"]["column"]: (metric["value"], verdicts[metric["config"]["column"]])
        for metric in snapshot["metrics"]
        if metric["config"].get("type") == "evidently:metric_v2:ValueDrift"
    }


def test_scores_and_verdicts_equal_evidentlys_full_report_though_the_page_is_drawn_from_a_sample(
    demo_spec, champion, tmp_path
):
    from include.simulation.generate import DriftConfig

    model, reference = champion
    window = served(demo_spec, model, 2, 1500, drift=DriftConfig("covariate", REFERENCE_START, 0.5))
    # some missing values, as a real log may have in an optional column
    window.loc[window.index[::13], "usage_hours_30d"] = np.nan
    window.loc[window.index[::29], "payment_method"] = None

    # Evidently's verdicts are its fixed thresholds: the spec's fixed verdict must reproduce them
    fixed = dataclasses.replace(demo_spec, monitoring=MonitoringSpec(verdict="fixed"))
    metrics = run_drift_check(
        window, reference, fixed, html_path=tmp_path / "report.html", report_sample_rows=400, **THRESHOLDS
    )
    evidently = _evidently_full_report(window, reference, demo_spec)

    measured = {**metrics["columns"], "probability": metrics["prediction_drift"]}
    assert set(measured) == set(evidently) == {*demo_spec.feature_names, "probability"}
    for name, result in measured.items():
        score, drifted = evidently[name]
        assert result["drift_score"] == pytest.approx(score, abs=1e-6), name
        assert result["drifted"] is drifted, name
    assert metrics["drifted_columns"], "the case must hold drifted columns for the verdicts to mean something"
    assert len(metrics["drifted_columns"]) < len(demo_spec.feature_names)
    assert metrics["report_sample"] == {
        "sampled": True,
        "seed": metrics["report_sample"]["seed"],
        "current_rows": 400,
        "current_rows_total": 3000,
        "reference_rows": 400,
        "reference_rows_total": len(reference.frame),
    }
    page = (tmp_path / "report.html").read_text()
    assert "Drift per column, on all rows" in page and "seeded sample" in page
    assert json.loads(json.dumps(metrics, allow_nan=False)) == metrics


def test_a_window_no_larger_than_the_sample_is_reported_whole(demo_spec, champion, tmp_path):
    model, reference = champion
    window = served(demo_spec, model, 1, 300)
    small = Reference(
        frame=reference.frame.head(900),
        model_version="3",
        data_ref=reference.data_ref,
        holdout_score=reference.holdout_score,
    )

    metrics = run_drift_check(
        window, small, demo_spec, html_path=tmp_path / "report.html", report_sample_rows=1000, **THRESHOLDS
    )

    assert metrics["report_sample"]["sampled"] is False
    assert "drawn from all rows" in (tmp_path / "report.html").read_text()


def test_an_infinite_only_window_column_fails_as_a_broken_window(demo_spec, champion, tmp_path):
    model, reference = champion
    window = served(demo_spec, model, 1, 300).assign(monthly_charges=np.inf)

    with pytest.raises(DriftInputError, match="monthly_charges"):
        run_drift_check(window, reference, demo_spec, html_path=tmp_path / "report.html", **THRESHOLDS)


def test_report_sample_is_seeded_bounded_and_keeps_every_measurable_column():
    frame = pd.DataFrame({"x": np.arange(10_000, dtype=np.float64), "rare": np.nan})
    frame.loc[[17, 4242], "rare"] = 1.0

    first, second = report_sample(frame, ["x", "rare"], rows=500), report_sample(frame, ["x", "rare"], rows=500)

    assert first.index.equals(second.index)
    assert 500 <= len(first) <= 502 and first.index.is_unique
    assert first["rare"].notna().sum() >= 1
    assert report_sample(frame, ["x"], rows=20_000) is frame
