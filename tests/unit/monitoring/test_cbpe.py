"""CBPE's ROC AUC estimates equal NannyML's, chunk by chunk, and behave as the method says.

The NannyML figures come from ``data/nannyml_cbpe_synthetic.json``, produced by
``data/make_nannyml_cbpe_reference.py`` (run by hand with NannyML 0.13.1) on NannyML's bundled
synthetic binary dataset, whose scores and labels are in ``data/nannyml_cbpe_synthetic.npz``.

Tolerances against NannyML:

- estimated and realised ROC AUC, and the isotonic breakpoints: :data:`TOLERANCE` (1e-9). The
  computation is NannyML's, operation for operation; the observed difference is 0.0.
- sampling error: relative :data:`SAMPLING_ERROR_RTOL` (1 %), and the band accordingly. NannyML
  ranks the reference with numpy's default (unstable) argsort, and the dataset's two-decimal
  scores are full of ties whose order decides each positive's count of negatives below it. The
  same numpy build on the same CPU orders them the same (observed difference 0.0), but another
  build or instruction set may not: over tie orders the figure moves by up to 0.3 %.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from include.monitoring.cbpe import (
    FORMAT,
    SAMPLING_ERROR_RANGE,
    CBPEstimate,
    CBPEstimator,
    IsotonicCalibrator,
    estimate_roc_auc,
    expected_calibration_error,
    needs_calibration,
    roc_auc_sampling_error,
    roc_auc_sampling_error_components,
)

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-9
SAMPLING_ERROR_RTOL = 1e-2

NANNYML = json.loads((DATA / "nannyml_cbpe_synthetic.json").read_text())
CHUNKS = [
    pytest.param(run["chunk_size"], period, chunk, id=f"{run['chunk_size']}-{period}-{chunk['start_index']}")
    for run in NANNYML["runs"]
    for period in ("reference", "analysis")
    for chunk in run[f"{period}_chunks"]
]


@pytest.fixture(scope="module")
def synthetic() -> dict[str, np.ndarray]:
    with np.load(DATA / "nannyml_cbpe_synthetic.npz") as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.fixture(scope="module")
def fitted(synthetic) -> CBPEstimator:
    return CBPEstimator.fit(synthetic["reference_probabilities"], synthetic["reference_labels"])


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


# --- agreement with NannyML 0.13.1 --------------------------------------------------------------


def test_fixture_is_what_nannyml_ran_on(synthetic):
    assert NANNYML["versions"]["nannyml"] == "0.13.1"
    assert {name: synthetic[name].shape for name in synthetic} == {
        "reference_probabilities": (50_000,),
        "reference_labels": (50_000,),
        "analysis_probabilities": (50_000,),
        "analysis_labels": (50_000,),
    }
    assert (DATA / "nannyml_cbpe_synthetic.npz").stat().st_size < 1_000_000


def test_calibration_decision_and_breakpoints_are_nannymls(fitted):
    for run in NANNYML["runs"]:
        assert run["needs_calibration"] is True
        assert fitted.calibrator is not None
        np.testing.assert_allclose(fitted.calibrator.x_thresholds, run["isotonic_x_thresholds"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(fitted.calibrator.y_thresholds, run["isotonic_y_thresholds"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize(("chunk_size", "period", "chunk"), CHUNKS)
def test_estimate_per_chunk_is_nannymls(synthetic, fitted, chunk_size, period, chunk):
    rows = slice(chunk["start_index"], chunk["end_index"] + 1)
    probabilities = synthetic[f"{period}_probabilities"][rows]
    assert fitted.estimate(probabilities) == pytest.approx(chunk["estimated_roc_auc"], abs=TOLERANCE)
    realised = roc_auc_score(synthetic[f"{period}_labels"][rows], probabilities)
    assert realised == pytest.approx(chunk["realized_roc_auc"], abs=TOLERANCE)

    band = fitted.estimate_with_band(probabilities)
    assert band.roc_auc == pytest.approx(chunk["estimated_roc_auc"], abs=TOLERANCE)
    assert band.rows == len(probabilities)
    assert band.sampling_error == pytest.approx(chunk["sampling_error"], rel=SAMPLING_ERROR_RTOL)
    band_tolerance = SAMPLING_ERROR_RANGE * SAMPLING_ERROR_RTOL * chunk["sampling_error"]
    assert band.lower == pytest.approx(chunk["lower_confidence_boundary"], abs=band_tolerance)
    assert band.upper == pytest.approx(chunk["upper_confidence_boundary"], abs=band_tolerance)


def test_analysis_chunks_after_the_shift_are_estimated_lower(fitted, synthetic):
    """NannyML's dataset drifts half-way through the analysis period; CBPE sees it without labels."""
    (run,) = [run for run in NANNYML["runs"] if run["chunk_size"] == 5000]
    estimates = [
        fitted.estimate(synthetic["analysis_probabilities"][chunk["start_index"] : chunk["end_index"] + 1])
        for chunk in run["analysis_chunks"]
    ]
    assert min(estimates[:5]) > max(estimates[5:]) + 0.005


def test_estimate_roc_auc_orders_by_the_calibrated_probabilities_when_no_scores_are_given(fitted, synthetic):
    probabilities = synthetic["analysis_probabilities"][:5000]
    calibrated = fitted.calibrate(probabilities)
    assert estimate_roc_auc(calibrated) == pytest.approx(estimate_roc_auc(calibrated, probabilities), abs=TOLERANCE)


# --- calibration ----------------------------------------------------------------------------------


def test_isotonic_calibrator_is_scikit_learns_bit_for_bit():
    generator = np.random.default_rng(3)
    scores = np.round(generator.uniform(0.05, 0.95, 3000), 3)
    labels = generator.binomial(1, scores**2)
    regressor = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(scores, labels)
    calibrator = IsotonicCalibrator.fit(scores, labels)
    new_scores = np.r_[0.0, 0.01, 0.05, generator.uniform(0, 1, 5000), 0.95, 0.99, 1.0]
    np.testing.assert_array_equal(calibrator.calibrate(new_scores), regressor.predict(new_scores))
    # outside the reference's scores the ends hold: no extrapolation
    assert calibrator.calibrate([0.0])[0] == calibrator.y_thresholds[0]
    assert calibrator.calibrate([1.0])[0] == calibrator.y_thresholds[-1]


def test_a_near_perfect_reference_is_not_calibrated():
    generator = np.random.default_rng(4)
    labels = generator.binomial(1, 0.4, 2000)
    probabilities = np.clip(0.3 + 0.4 * labels + generator.normal(0, 0.02, 2000), 0, 1)
    assert roc_auc_score(labels, probabilities) > 0.999
    assert needs_calibration(probabilities, labels) is False
    estimator = CBPEstimator.fit(probabilities, labels)
    assert estimator.calibrator is None
    window = generator.uniform(0, 1, 100)
    np.testing.assert_array_equal(estimator.calibrate(window), window)
    assert estimator.estimate(window) == estimate_roc_auc(window)


def test_expected_calibration_error():
    # two bins of 5: mean scores 0.1 and 0.9, shares of positives 0.2 and 0.8
    scores = np.r_[np.full(5, 0.1), np.full(5, 0.9)]
    labels = np.array([1, 0, 0, 0, 0, 1, 1, 1, 1, 0])
    assert expected_calibration_error(scores, labels, bin_count=2) == pytest.approx(0.1)
    assert expected_calibration_error(scores, scores > 0.5, bin_count=2) == pytest.approx(0.1)


# --- the estimate ---------------------------------------------------------------------------------


def test_estimate_roc_auc_small_cases():
    assert estimate_roc_auc([1.0, 0.0]) == 1.0
    assert estimate_roc_auc([0.5, 0.5, 0.5]) == 0.5
    # scores rank a surely-negative row first: the expected curve is below the diagonal
    assert estimate_roc_auc([0.0, 1.0], model_probabilities=[0.9, 0.1]) == 0.0
    assert math.isnan(estimate_roc_auc([0.0, 0.0]))
    assert math.isnan(estimate_roc_auc([1.0, 1.0]))


def test_estimate_follows_realised_under_covariate_shift_when_calibrated():
    """Labels drawn from the probabilities themselves: calibration holds, only the inputs shift.

    What is left is the isotonic fit's own noise and the realised figure's: over seeds 0-39 the
    estimate was at most 0.018 from the realised ROC AUC (0.004 on average).
    """
    generator = np.random.default_rng(5)
    reference_scores = _sigmoid(2.5 * generator.normal(0, 1, 20_000))
    reference_labels = generator.binomial(1, reference_scores)
    estimator = CBPEstimator.fit(reference_scores, reference_labels)

    window_scores = _sigmoid(2.5 * generator.normal(0.8, 0.5, 20_000))
    window_labels = generator.binomial(1, window_scores)
    realised = roc_auc_score(window_labels, window_scores)
    assert realised < roc_auc_score(reference_labels, reference_scores) - 0.05  # the shift does move ROC AUC
    assert estimator.estimate(window_scores) == pytest.approx(realised, abs=0.025)


def test_cbpe_is_blind_to_concept_drift():
    """The label relation flips, the probabilities do not move: the estimate stays, the real ROC AUC collapses."""
    generator = np.random.default_rng(6)
    reference_scores = _sigmoid(3.0 * generator.normal(0, 1, 20_000))
    reference_labels = generator.binomial(1, reference_scores)
    estimator = CBPEstimator.fit(reference_scores, reference_labels)

    window_scores = _sigmoid(3.0 * generator.normal(0, 1, 20_000))
    flipped_labels = generator.binomial(1, 1.0 - window_scores)
    estimate = estimator.estimate_with_band(window_scores)
    realised = roc_auc_score(flipped_labels, window_scores)

    assert estimator.reference_roc_auc > 0.85
    assert estimate.roc_auc == pytest.approx(estimator.reference_roc_auc, abs=0.01)
    assert realised < 0.2
    assert not estimate.lower <= realised <= estimate.upper


def test_breast_cancer_covariate_shifted_window():
    """A logistic regression on scikit-learn's breast cancer data; the window is the rows of high texture.

    Train 25 % of the rows, calibrate on 40 % of the rest (170 rows), estimate on the remaining
    rows whose ``worst texture`` is above the reference's 40th percentile (159 rows, about
    0.6 reference standard deviations higher on that feature, 45 % benign against 63 %). Over
    split seeds 0-99 the estimate was within 0.021 of the realised ROC AUC every time (0.005 on average).
    """
    features, labels = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = labels.to_numpy()
    train_x, rest_x, train_y, rest_y = train_test_split(
        features, labels, train_size=0.25, random_state=0, stratify=labels
    )
    reference_x, pool_x, reference_y, pool_y = train_test_split(
        rest_x, rest_y, train_size=0.4, random_state=0, stratify=rest_y
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)).fit(train_x, train_y)

    shifted = (pool_x["worst texture"] > reference_x["worst texture"].quantile(0.4)).to_numpy()
    window_x, window_y = pool_x[shifted], pool_y[shifted]
    assert len(window_y) >= 130
    texture = reference_x["worst texture"]
    assert (window_x["worst texture"].mean() - texture.mean()) / texture.std() > 0.5
    assert window_y.mean() < reference_y.mean() - 0.1

    estimator = CBPEstimator.fit(model.predict_proba(reference_x)[:, 1], reference_y)
    window_scores = model.predict_proba(window_x)[:, 1]
    realised = roc_auc_score(window_y, window_scores)
    assert estimator.estimate(window_scores) == pytest.approx(realised, abs=0.03)


# --- sampling error ---------------------------------------------------------------------------------


def test_sampling_error_components_and_scaling():
    labels = np.array([0, 0, 1, 0, 1, 1, 0, 0, 0, 0, 1, 0])
    scores = np.linspace(0.05, 0.95, labels.size)
    std, fraction = roc_auc_sampling_error_components(scores, labels)
    # positives at ranks 2, 4, 5, 10 have 2, 3, 3, 7 of the 8 negatives below them
    assert std == pytest.approx(np.std(np.array([2, 3, 3, 7]) / 8))
    assert fraction == pytest.approx(4 / 12)
    # a majority of positives is flipped to the minority
    flipped_std, flipped_fraction = roc_auc_sampling_error_components(1 - scores, 1 - labels)
    assert (flipped_std, flipped_fraction) == pytest.approx((std, fraction))
    assert roc_auc_sampling_error(std, fraction, 400) == pytest.approx(std / math.sqrt(400 * fraction))
    assert roc_auc_sampling_error(std, fraction, 100) == pytest.approx(2 * roc_auc_sampling_error(std, fraction, 400))


def test_band_is_clipped_to_the_unit_interval():
    estimator = CBPEstimator(
        None, sampling_error_std=0.4, positive_fraction=0.5, reference_rows=1000, reference_roc_auc=0.9
    )
    # expected curve through (0, 0), (0.1, 0.9), (1, 1): area 0.9; sampling error 0.4 / sqrt(2 x 0.5)
    band = estimator.estimate_with_band([0.9, 0.1])
    assert (band.roc_auc, band.sampling_error) == pytest.approx((0.9, 0.4))
    assert (band.lower, band.upper) == (0.0, 1.0)
    wide = estimator.estimate_with_band(np.tile([0.9, 0.1], 2500))
    assert wide.sampling_error == pytest.approx(0.4 / 50)
    assert (wide.lower, wide.upper) == pytest.approx((0.9 - 0.024, 0.9 + 0.024))


# --- persistence --------------------------------------------------------------------------------------


def test_json_round_trip_gives_identical_estimates(fitted, synthetic):
    stored = json.dumps(fitted.to_dict())
    loaded = CBPEstimator.from_dict(json.loads(stored))
    assert loaded == fitted
    assert json.loads(stored)["format"] == FORMAT
    window = synthetic["analysis_probabilities"][30_000:35_000]
    assert loaded.estimate_with_band(window) == fitted.estimate_with_band(window)
    np.testing.assert_array_equal(loaded.calibrate(window), fitted.calibrate(window))


def test_json_round_trip_without_calibrator():
    estimator = CBPEstimator(None, 0.1, 0.4, 1000, 0.95)
    assert estimator.to_dict()["calibrator"] is None
    assert CBPEstimator.from_dict(json.loads(json.dumps(estimator.to_dict()))) == estimator
    assert isinstance(estimator.estimate_with_band([0.2, 0.8]), CBPEstimate)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "cbpe-roc-auc/0"}, "not a cbpe-roc-auc/1"),
        ({"calibrator": {"kind": "platt"}}, "not an isotonic calibrator"),
        ({"calibrator": {"kind": "isotonic", "x_thresholds": [0.2, 0.1], "y_thresholds": [0, 1]}}, "strictly"),
        ({"calibrator": {"kind": "isotonic", "x_thresholds": [0.1, 0.2], "y_thresholds": [1, 0]}}, "non-decreasing"),
        ({"calibrator": {"kind": "isotonic", "x_thresholds": [0.1], "y_thresholds": []}}, "as many"),
        ({"calibrator": {"kind": "isotonic", "x_thresholds": [0.1]}}, "needs x_thresholds"),
        ({"reference_rows": 0}, "reference_rows"),
        ({"positive_fraction": 0.0}, "invalid"),
        ({"sampling_error_std": float("nan")}, "invalid"),
        ({"reference_roc_auc": None}, "incomplete"),
    ],
)
def test_from_dict_refuses_a_bad_estimator(fitted, change, message):
    with pytest.raises(ValueError, match=message):
        CBPEstimator.from_dict({**fitted.to_dict(), **change})


def test_from_dict_refuses_a_missing_field(fitted):
    data = fitted.to_dict()
    del data["sampling_error_std"]
    with pytest.raises(ValueError, match="incomplete"):
        CBPEstimator.from_dict(data)
    with pytest.raises(ValueError, match="not a"):
        CBPEstimator.from_dict([1, 2])


# --- bad input ------------------------------------------------------------------------------------------

GOOD_SCORES = np.linspace(0.05, 0.95, 40)
GOOD_LABELS = np.tile([0, 1], 20)


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([], [], "empty"),
        (GOOD_SCORES.reshape(20, 2), GOOD_LABELS, "one-dimensional"),
        (np.r_[GOOD_SCORES[:-1], 1.2], GOOD_LABELS, r"in \[0, 1\]"),
        (np.r_[-0.1, GOOD_SCORES[1:]], GOOD_LABELS, r"in \[0, 1\]"),
        (np.r_[np.nan, GOOD_SCORES[1:]], GOOD_LABELS, "NaN"),
        (np.r_[np.inf, GOOD_SCORES[1:]], GOOD_LABELS, "NaN or infinite"),
        (GOOD_SCORES.astype(str), GOOD_LABELS, "numbers"),
        (GOOD_SCORES, np.r_[GOOD_LABELS[:-1], 2], "0/1 labels"),
        (GOOD_SCORES, np.r_[GOOD_LABELS[:-1], 0.5], "0/1 labels"),
        (GOOD_SCORES, np.r_[GOOD_LABELS[:-1], np.nan], "0/1 labels"),
        (GOOD_SCORES, np.where(GOOD_LABELS == 1, "yes", "no"), "0/1 labels"),
        (GOOD_SCORES, GOOD_LABELS[:-1], "rows"),
        (GOOD_SCORES, np.zeros(40, dtype=int), "single class"),
        (GOOD_SCORES, np.ones(40, dtype=int), "single class"),
        (GOOD_SCORES, np.r_[1, np.zeros(39, dtype=int)], "too small"),
        (GOOD_SCORES[:10], GOOD_LABELS[:10], "too small"),
    ],
)
def test_fit_refuses_bad_input(scores, labels, message):
    with pytest.raises(ValueError, match=message):
        CBPEstimator.fit(scores, labels)


def test_fit_accepts_booleans_and_float_labels():
    as_int = CBPEstimator.fit(GOOD_SCORES, GOOD_LABELS)
    assert CBPEstimator.fit(GOOD_SCORES, GOOD_LABELS.astype(bool)) == as_int
    assert CBPEstimator.fit(pd.Series(GOOD_SCORES), pd.Series(GOOD_LABELS, dtype=float)) == as_int


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ([], "empty"),
        ([[0.2, 0.3]], "one-dimensional"),
        ([0.2, 1.5], r"in \[0, 1\]"),
        ([0.2, float("nan")], "NaN"),
        ([True, False], "numbers"),
    ],
)
def test_estimate_refuses_a_bad_window(fitted, window, message):
    with pytest.raises(ValueError, match=message):
        fitted.estimate(window)
    with pytest.raises(ValueError, match=message):
        fitted.estimate_with_band(window)


def test_estimate_roc_auc_refuses_mismatched_scores():
    with pytest.raises(ValueError, match="rows"):
        estimate_roc_auc([0.2, 0.4], model_probabilities=[0.1])
    with pytest.raises(ValueError, match="rows must be a positive integer"):
        roc_auc_sampling_error(0.1, 0.5, 0)
