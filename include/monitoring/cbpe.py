"""Confidence-based performance estimation (CBPE): a binary classifier's ROC AUC without labels.

Labels arrive late, or never; the champion's predicted probabilities arrive with every request.
CBPE estimates what the ROC AUC of a window *would be* from those probabilities alone, provided
they are calibrated: if a row's calibrated probability is ``p``, it counts as ``p`` of a positive
and ``1 - p`` of a negative, and the expected true- and false-positive rates across thresholds
trace an expected ROC curve whose area is the estimate.

This module is NannyML's method, re-implemented on numpy and scikit-learn and written to give the
same figures as NannyML 0.13.1 (``nannyml.CBPE(problem_type='classification_binary',
metrics=['roc_auc'])``):

- method: https://nannyml.readthedocs.io/en/stable/how_it_works/performance_estimation.html
  (section "Confidence-based Performance Estimation (CBPE)");
- source followed: ``nannyml/calibration.py`` (``needs_calibration``, ``IsotonicCalibrator``),
  ``nannyml/performance_estimation/confidence_based/cbpe.py`` (``CBPE._fit_binary``,
  ``CBPE._estimate``), ``nannyml/performance_estimation/confidence_based/metrics.py``
  (``estimate_roc_auc``, ``BinaryClassificationAUROC``) and
  ``nannyml/sampling_error/binary_classification.py`` (``auroc_sampling_error_components``,
  ``auroc_sampling_error``), all NannyML 0.13.1, Apache License 2.0.

Calibration is NannyML's too: see :mod:`include.monitoring.cbpe_calibration`.

Estimation (:func:`estimate_roc_auc`, NannyML's ``estimate_roc_auc``)
=====================================================================
Rows sorted by the model's (uncalibrated) score, highest first; expected true positives
``tps = cumsum(p)`` and false positives ``fps = (1, 2, ..., n) - tps`` over the calibrated
probabilities ``p``, with a leading 0; both rounded to 5 decimals (as NannyML does); expected
``tpr = tps / tps[-1]`` and ``fpr = fps / fps[-1]``; the estimate is the trapezoidal area under
(fpr, tpr) (``sklearn.metrics.auc``). Rows with tied scores are not merged, which changes
nothing: tied scores have equal calibrated probabilities, so their points are collinear.

Confidence band (NannyML's sampling error)
==========================================
NannyML's band is ``estimate ± 3 × sampling error``, clipped to [0, 1]. The sampling error of
a window of ``n`` rows is ``std / sqrt(n × fraction)``, with ``std`` and ``fraction`` taken once
from the reference (:func:`roc_auc_sampling_error_components`: ROC AUC as a Mann-Whitney U
statistic, ``std`` the standard deviation of each minority-class row's share of majority-class
rows ranked below it, ``fraction`` the minority class's share of rows). It is a sampling error
of the *estimate* on a window of that size drawn from the reference's distribution; it says
nothing about how wrong CBPE is under concept drift.

What CBPE cannot see
====================
CBPE assumes the calibration learned on the reference still holds, i.e. that only the
distribution of the inputs changed (covariate shift), not ``P(label | inputs)``. Under concept
drift (the same inputs now mean a different label) the scores do not move, so neither does the
estimate, while the realised ROC AUC can collapse. Pair it with realised performance whenever
labels do arrive.

Differences from NannyML, all in what is refused rather than in any figure: NannyML drops rows
with a missing score from an analysis chunk and estimates on the rest; here a NaN, an infinite
value or a value outside [0, 1] raises :class:`ValueError`, as do empty inputs, labels other
than 0/1, and a reference with fewer than :data:`MIN_REFERENCE_ROWS_PER_CLASS` rows of either
class or :data:`MIN_REFERENCE_ROWS` rows in all (NannyML skips calibration for a single-class
reference, which cannot give a ROC AUC, and fails inside scikit-learn on a tiny one).

No Airflow and no NannyML import: this is plain numpy / scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import auc, roc_auc_score

from include.monitoring.cbpe_calibration import (
    MIN_REFERENCE_ROWS as MIN_REFERENCE_ROWS,
)
from include.monitoring.cbpe_calibration import (
    MIN_REFERENCE_ROWS_PER_CLASS as MIN_REFERENCE_ROWS_PER_CLASS,
)
from include.monitoring.cbpe_calibration import (
    IsotonicCalibrator,
    _probabilities,
    _reference,
    expected_calibration_error,
    needs_calibration,
)

__all__ = [
    "CBPEstimate",
    "CBPEstimator",
    "IsotonicCalibrator",
    "estimate_roc_auc",
    "expected_calibration_error",
    "needs_calibration",
    "roc_auc_sampling_error",
    "roc_auc_sampling_error_components",
]

#: The method's source, written into every serialised estimator.
METHOD = "NannyML 0.13.1 CBPE (confidence-based performance estimation), binary classification, ROC AUC"
#: The layout of :meth:`CBPEstimator.to_dict`; :meth:`CBPEstimator.from_dict` refuses any other.
FORMAT = "cbpe-roc-auc/1"

#: Decimals that the expected true/false positive counts are rounded to before the area.
EXPECTED_COUNT_DECIMALS = 5
#: The confidence band is the estimate plus or minus this many sampling errors.
SAMPLING_ERROR_RANGE = 3


def estimate_roc_auc(calibrated_probabilities: ArrayLike, model_probabilities: ArrayLike | None = None) -> float:
    """The expected ROC AUC of a window, from its calibrated probabilities alone (NannyML's ``estimate_roc_auc``).

    ``calibrated_probabilities``: shape (n,), each row's calibrated probability of being positive,
    in [0, 1]. ``model_probabilities``: shape (n,), the model's scores that were calibrated, which
    order the rows (NannyML sorts by them); when omitted the rows are ordered by the calibrated
    probabilities, which gives the same figure whenever the calibration is non-decreasing (an
    isotonic one, or none). Returns a ROC AUC in [0, 1] (unitless); NaN when the window's expected
    positives or expected negatives round to zero (every calibrated probability 0, or every one
    1): the expected curve is then undefined, as in NannyML. See the module docstring for the
    computation. Raises ValueError on empty or mismatched inputs or values outside [0, 1] or NaN.
    """
    calibrated = _probabilities(calibrated_probabilities, "calibrated_probabilities")
    scores = calibrated if model_probabilities is None else _probabilities(model_probabilities, "model_probabilities")
    if scores.shape != calibrated.shape:
        raise ValueError(
            f"calibrated_probabilities has {calibrated.size} rows but model_probabilities has {scores.size}"
        )
    order = np.argsort(scores)[::-1]
    calibrated = calibrated[order]
    with np.errstate(divide="ignore", invalid="ignore"):
        tps = np.cumsum(calibrated)
        fps = 1 + np.arange(len(calibrated)) - tps
        tps = np.round(np.r_[0, tps], EXPECTED_COUNT_DECIMALS)
        fps = np.round(np.r_[0, fps], EXPECTED_COUNT_DECIMALS)
        if tps[-1] == 0 or fps[-1] == 0:
            return math.nan
        return float(auc(fps / fps[-1], tps / tps[-1]))


def roc_auc_sampling_error_components(probabilities: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """``(std, fraction)`` of a reference, from which the sampling error of any window size follows.

    NannyML's ``auroc_sampling_error_components``: if positives are the majority, classes and
    scores are flipped (label ``1 - y``, score ``1 - p``) so that the minority class counts as
    positive; rows sorted by score (``numpy.argsort``'s default order among ties, as NannyML);
    for each positive, the number of negatives ranked below it over the number of negatives;
    ``std`` is their population standard deviation and ``fraction`` the positives' share of rows.
    ``probabilities``: the model's (uncalibrated) scores, shape (n,); ``labels``: 0/1, shape (n,).
    Raises ValueError as :meth:`CBPEstimator.fit` does.
    """
    scores, targets = _reference(probabilities, labels)
    if np.mean(targets) > 0.5:
        targets = 1 - targets
        scores = 1 - scores
    order = np.argsort(scores)
    targets = targets[order]
    positive_ranks = targets * np.arange(targets.size)
    # as NannyML: the distinct nonzero ranks of positives (a positive ranked first is left out)
    indexes = np.unique(positive_ranks)[1:]
    negatives_below = indexes - np.arange(indexes.size)
    positives = np.sum(targets)
    negatives = targets.size - positives
    return float(np.std(negatives_below / negatives)), float(positives / targets.size)


def roc_auc_sampling_error(std: float, fraction: float, rows: int) -> float:
    """The sampling error of a ROC AUC on ``rows`` rows: ``std / sqrt(rows × fraction)`` (NannyML's ``auroc_sampling_error``).

    ``std`` and ``fraction`` come from :func:`roc_auc_sampling_error_components`. Unitless (ROC AUC
    points). Raises ValueError unless ``rows`` >= 1, ``fraction`` in (0, 1] and ``std`` finite >= 0.
    """
    if isinstance(rows, bool) or not isinstance(rows, int | np.integer) or rows < 1:
        raise ValueError(f"rows must be a positive integer, got {rows!r}")
    if not (0.0 < fraction <= 1.0) or not (math.isfinite(std) and std >= 0.0):
        raise ValueError(f"invalid sampling error components: std={std!r}, fraction={fraction!r}")
    return float(std / np.sqrt(rows * fraction))


@dataclass(frozen=True)
class CBPEstimate:
    """One window's estimate: ``roc_auc`` and its band ``[lower, upper]`` (``roc_auc ± 3 × sampling_error``
    clipped to [0, 1], NannyML's confidence boundaries), for ``rows`` rows. NaN throughout when the
    estimate is undefined (see :func:`estimate_roc_auc`)."""

    roc_auc: float
    sampling_error: float
    lower: float
    upper: float
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict of floats and an int."""
        return {
            "roc_auc": self.roc_auc,
            "sampling_error": self.sampling_error,
            "lower": self.lower,
            "upper": self.upper,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class CBPEstimator:
    """CBPE of ROC AUC for one champion: its calibrator and its reference's sampling-error components.

    Build it with :meth:`fit` on the champion's labelled held-out predictions, store it with
    :meth:`to_dict` (plain JSON) beside the champion version, load it with :meth:`from_dict`,
    and :meth:`estimate` any window of the champion's predicted probabilities.

    ``calibrator`` is None when NannyML's check found that calibrating would not help (the scores
    are then used as they are). ``sampling_error_std`` and ``positive_fraction`` are
    :func:`roc_auc_sampling_error_components` of the reference; ``reference_rows`` its size and
    ``reference_roc_auc`` its realised ROC AUC (a yardstick for the estimates).
    """

    calibrator: IsotonicCalibrator | None
    sampling_error_std: float
    positive_fraction: float
    reference_rows: int
    reference_roc_auc: float

    @classmethod
    def fit(cls, reference_probabilities: ArrayLike, reference_labels: ArrayLike) -> CBPEstimator:
        """Fit on the reference: the champion's predicted probabilities of the positive class on
        labelled held-out rows, shape (n,), in [0, 1], and those rows' labels, shape (n,), 0/1.

        As NannyML's ``CBPE.fit``: :func:`needs_calibration` decides, and if it says so an
        :class:`IsotonicCalibrator` is fitted on all rows. Raises ValueError on empty or
        mismatched inputs, NaN or values outside [0, 1], labels other than 0/1, a single-class
        reference, or fewer than :data:`MIN_REFERENCE_ROWS_PER_CLASS` rows of a class or
        :data:`MIN_REFERENCE_ROWS` rows in all.
        """
        scores, targets = _reference(reference_probabilities, reference_labels)
        calibrator = IsotonicCalibrator.fit(scores, targets) if needs_calibration(scores, targets) else None
        std, fraction = roc_auc_sampling_error_components(scores, targets)
        return cls(
            calibrator=calibrator,
            sampling_error_std=std,
            positive_fraction=fraction,
            reference_rows=int(scores.size),
            reference_roc_auc=float(roc_auc_score(targets, scores)),
        )

    def calibrate(self, probabilities: ArrayLike) -> np.ndarray:
        """The calibrated probabilities of a window's scores (shape (n,) in, shape (n,) float64 out)."""
        scores = _probabilities(probabilities, "window_probabilities")
        return scores.copy() if self.calibrator is None else self.calibrator.calibrate(scores)

    def estimate(self, window_probabilities: ArrayLike) -> float:
        """The estimated ROC AUC, in [0, 1], of a window of the champion's predicted probabilities (shape (n,), in [0, 1]).

        NaN when undefined (every calibrated probability 0, or every one 1). Raises ValueError
        on an empty window, NaN or values outside [0, 1].
        """
        scores = _probabilities(window_probabilities, "window_probabilities")
        return estimate_roc_auc(self.calibrate(scores), scores)

    def estimate_with_band(self, window_probabilities: ArrayLike) -> CBPEstimate:
        """:meth:`estimate` with NannyML's sampling error and confidence band for the window's size."""
        scores = _probabilities(window_probabilities, "window_probabilities")
        roc_auc = estimate_roc_auc(self.calibrate(scores), scores)
        sampling_error = roc_auc_sampling_error(self.sampling_error_std, self.positive_fraction, int(scores.size))
        if math.isnan(roc_auc):
            return CBPEstimate(math.nan, sampling_error, math.nan, math.nan, int(scores.size))
        spread = SAMPLING_ERROR_RANGE * sampling_error
        return CBPEstimate(
            roc_auc=roc_auc,
            sampling_error=sampling_error,
            lower=max(0.0, roc_auc - spread),
            upper=min(1.0, roc_auc + spread),
            rows=int(scores.size),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (``json.dumps`` round-trips every float exactly): format, method, calibrator, components."""
        return {
            "format": FORMAT,
            "method": METHOD,
            "calibrator": None if self.calibrator is None else self.calibrator.to_dict(),
            "sampling_error_std": self.sampling_error_std,
            "positive_fraction": self.positive_fraction,
            "reference_rows": self.reference_rows,
            "reference_roc_auc": self.reference_roc_auc,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CBPEstimator:
        """The estimator :meth:`to_dict` wrote, without refitting; ValueError on another format or a bad field."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise ValueError(f"not a {FORMAT} estimator (format {found!r})")
        try:
            calibrator = None if data["calibrator"] is None else IsotonicCalibrator.from_dict(data["calibrator"])
            std = float(data["sampling_error_std"])
            fraction = float(data["positive_fraction"])
            rows = data["reference_rows"]
            reference_roc_auc = float(data["reference_roc_auc"])
        except (KeyError, TypeError) as error:
            raise ValueError(f"incomplete {FORMAT} estimator: {error}") from None
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise ValueError(f"reference_rows must be a positive integer, got {rows!r}")
        if not (math.isfinite(std) and std >= 0.0 and 0.0 < fraction <= 0.5 and 0.0 <= reference_roc_auc <= 1.0):
            raise ValueError(
                f"invalid {FORMAT} estimator: sampling_error_std={std!r}, positive_fraction={fraction!r}, "
                f"reference_roc_auc={reference_roc_auc!r}"
            )
        return cls(calibrator, std, fraction, rows, reference_roc_auc)
