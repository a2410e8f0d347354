"""The calibration behind CBPE (:mod:`include.monitoring.cbpe`), as NannyML 0.13.1 fits it, and the
input checks both modules share.

Calibration (what NannyML does, and so what :meth:`CBPEstimator.fit` does)
==========================================================================
The calibrator is fitted on the champion's own labelled held-out rows (the *reference*), and
only if calibrating helps (:func:`needs_calibration`):

1. a reference whose ROC AUC is above :data:`NO_CALIBRATION_ROC_AUC` (0.999) is left as it is;
2. otherwise :data:`CALIBRATION_CHECK_SPLITS` (10) stratified shuffle splits of the reference
   (10 % test rows, ``random_state=42``): on each, an isotonic regression is fitted on the 90 %
   and applied to the 10 %; the ten test parts are pooled, and the expected calibration error
   (ECE, :func:`expected_calibration_error`: :data:`ECE_BIN_COUNT` = 10 equal-count bins of the
   pooled rows sorted by score) of the raw scores is compared with that of the calibrated ones.
   Calibration is used when it lowers the pooled ECE (``ece_before > ece_after``). NannyML's
   docstring speaks of a per-fold check; its code compares the pooled ECEs, as here;
3. when used, the calibrator is ``sklearn.isotonic.IsotonicRegression(out_of_bounds="clip",
   increasing=True)`` fitted on *all* reference rows (:class:`IsotonicCalibrator`). That is the
   only clipping: a score outside the reference's range of scores gets the calibrated value of
   the nearest end; calibrated probabilities are not clipped away from 0 or 1. When not used,
   the scores are taken as calibrated already (NannyML's ``NoopCalibrator``; here
   ``calibrator=None``).

The fitted isotonic regression is a piecewise-linear function: its breakpoints
(``X_thresholds_``/``y_thresholds_``) are all that is stored (:meth:`IsotonicCalibrator.to_dict`),
and :meth:`IsotonicCalibrator.calibrate` evaluates them exactly as scikit-learn's ``predict``
does (clip to the end breakpoints, then ``numpy.interp``), so a calibrator stored beside a
champion version and loaded again gives bit-identical calibrated probabilities without refitting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedShuffleSplit

#: A reference scored better than this needs no calibration (``needs_calibration``).
NO_CALIBRATION_ROC_AUC = 0.999
#: Stratified shuffle splits that decide whether calibrating helps, their test share and seed.
CALIBRATION_CHECK_SPLITS = 10
CALIBRATION_CHECK_TEST_SIZE = 0.1
CALIBRATION_CHECK_SEED = 42
#: Equal-count bins of the expected calibration error.
ECE_BIN_COUNT = 10
#: Each class needs at least this many reference rows: the calibration check splits the
#: reference stratified, and the sampling error needs a minority-class row ranked above another row.
MIN_REFERENCE_ROWS_PER_CLASS = 2
#: ...and the reference this many rows, so that a 10 % test split holds a row of each class.
MIN_REFERENCE_ROWS = 11


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    return array


def _probabilities(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as a float64 vector of probabilities, or ValueError."""
    array = _vector(values, name)
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"{name} must be numbers in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(array)).sum())} NaN or infinite values")
    if array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got values from {array.min()!r} to {array.max()!r}")
    return array


def _labels(values: ArrayLike, name: str) -> np.ndarray:
    """``values`` as an int64 vector of 0/1 labels (bools and 0.0/1.0 accepted), or ValueError."""
    array = _vector(values, name)
    if array.dtype != bool and not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"{name} must be 0/1 labels, got dtype {array.dtype}")
    unexpected = ~np.isin(array, (0, 1))
    if unexpected.any():
        examples = sorted({repr(value) for value in array[unexpected][:5].tolist()})
        raise ValueError(
            f"{name} must be 0/1 labels, got {int(unexpected.sum())} other values, e.g. {', '.join(examples)}"
        )
    return array.astype(np.int64)


def _reference(probabilities: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores = _probabilities(probabilities, "reference_probabilities")
    targets = _labels(labels, "reference_labels")
    if scores.shape != targets.shape:
        raise ValueError(f"reference_probabilities has {scores.size} rows but reference_labels has {targets.size}")
    positives = int(targets.sum())
    counts = {0: targets.size - positives, 1: positives}
    if min(counts.values()) == 0:
        raise ValueError(f"the reference holds a single class ({counts}): its ROC AUC, and so CBPE's, is undefined")
    if min(counts.values()) < MIN_REFERENCE_ROWS_PER_CLASS or targets.size < MIN_REFERENCE_ROWS:
        raise ValueError(
            f"the reference is too small to fit on: {counts} rows per class, needs at least "
            f"{MIN_REFERENCE_ROWS_PER_CLASS} of each and {MIN_REFERENCE_ROWS} in all"
        )
    return scores, targets


# --- calibration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsotonicCalibrator:
    """A fitted isotonic regression from model scores to calibrated probabilities.

    ``x_thresholds`` (strictly increasing scores) and ``y_thresholds`` (non-decreasing calibrated
    probabilities, the same count, at least one) are scikit-learn's ``X_thresholds_`` and
    ``y_thresholds_``; between them the mapping is linear, outside them it is the nearest end's.
    """

    x_thresholds: tuple[float, ...]
    y_thresholds: tuple[float, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.x_thresholds, dtype=np.float64)
        y = np.asarray(self.y_thresholds, dtype=np.float64)
        if x.ndim != 1 or y.ndim != 1 or x.size == 0 or x.size != y.size:
            raise ValueError(
                f"an isotonic calibrator needs as many x as y thresholds, at least one: {x.size}, {y.size}"
            )
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise ValueError("isotonic thresholds must be finite")
        if (np.diff(x) <= 0).any():
            raise ValueError("isotonic x thresholds must be strictly increasing")
        if (np.diff(y) < 0).any() or y[0] < 0.0 or y[-1] > 1.0:
            raise ValueError("isotonic y thresholds must be non-decreasing probabilities in [0, 1]")
        object.__setattr__(self, "x_thresholds", tuple(float(value) for value in x))
        object.__setattr__(self, "y_thresholds", tuple(float(value) for value in y))

    @classmethod
    def fit(cls, probabilities: ArrayLike, labels: ArrayLike) -> IsotonicCalibrator:
        """Fit ``IsotonicRegression(out_of_bounds="clip", increasing=True)`` (NannyML's ``IsotonicCalibrator``).

        ``probabilities``: shape (n,), the model's scores in [0, 1]; ``labels``: shape (n,), 0/1.
        Fits on whatever it is given (no check that calibration helps, see :func:`needs_calibration`).
        Raises ValueError on empty or mismatched inputs, scores outside [0, 1] or NaN, labels not 0/1.
        """
        scores = _probabilities(probabilities, "probabilities")
        targets = _labels(labels, "labels")
        if scores.shape != targets.shape:
            raise ValueError(f"probabilities has {scores.size} rows but labels has {targets.size}")
        regressor = IsotonicRegression(out_of_bounds="clip", increasing=True).fit(scores, targets)
        return cls(tuple(regressor.X_thresholds_.tolist()), tuple(regressor.y_thresholds_.tolist()))

    def calibrate(self, probabilities: ArrayLike) -> np.ndarray:
        """Calibrated probabilities, shape (n,), float64 in [0, 1], for scores of shape (n,) in [0, 1].

        Bit-identical to the fitted ``IsotonicRegression.predict``: clip to the end breakpoints,
        then linear interpolation (scipy's ``interp1d``, which scikit-learn uses, is ``numpy.interp``
        for float64). Raises ValueError as :meth:`fit` does.
        """
        scores = _probabilities(probabilities, "probabilities")
        x = np.asarray(self.x_thresholds, dtype=np.float64)
        y = np.asarray(self.y_thresholds, dtype=np.float64)
        return np.interp(np.clip(scores, x[0], x[-1]), x, y)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "isotonic", "x_thresholds": [...], "y_thresholds": [...]}``: plain JSON, floats exact."""
        return {"kind": "isotonic", "x_thresholds": list(self.x_thresholds), "y_thresholds": list(self.y_thresholds)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IsotonicCalibrator:
        """The calibrator :meth:`to_dict` wrote; ValueError on another kind or invalid thresholds."""
        if not isinstance(data, Mapping) or data.get("kind") != "isotonic":
            raise ValueError(f"not an isotonic calibrator: {data!r:.200}")
        try:
            return cls(tuple(data["x_thresholds"]), tuple(data["y_thresholds"]))
        except (KeyError, TypeError) as error:
            raise ValueError(f"an isotonic calibrator needs x_thresholds and y_thresholds lists: {error}") from None


def _ece_bin_edges(rows: int, bin_count: int) -> list[tuple[int, int]]:
    """NannyML's ``_get_bin_index_edges``: equal-count bins by position, the last takes the rest."""
    if rows <= 2 * bin_count:
        bin_count = rows // 2
        if bin_count < 2:
            raise ValueError(f"{rows} rows cannot be split into 2 calibration bins of at least 2 rows")
    width = rows // bin_count
    edges = np.asarray(range(0, rows + 1, width))
    edges[-1] = rows
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def expected_calibration_error(probabilities: ArrayLike, labels: ArrayLike, bin_count: int = ECE_BIN_COUNT) -> float:
    """Expected calibration error of scores against labels, as NannyML computes it.

    Rows sorted by score and cut into ``bin_count`` equal-count bins (fewer when there are at
    most ``2 × bin_count`` rows, the last bin taking the remainder); the ECE is the row-weighted
    mean of ``|mean score - share of positives|`` over the bins, a number in [0, 1].
    ``probabilities`` and ``labels`` have shape (n,). Raises ValueError on bad input or n < 4.
    """
    scores = _probabilities(probabilities, "probabilities")
    targets = _labels(labels, "labels")
    if scores.shape != targets.shape:
        raise ValueError(f"probabilities has {scores.size} rows but labels has {targets.size}")
    order = scores.argsort()
    scores, targets = scores[order], targets[order]
    terms = [
        (right - left) / scores.size * abs(np.mean(scores[left:right]) - np.mean(targets[left:right]))
        for left, right in _ece_bin_edges(scores.size, bin_count)
    ]
    return float(np.sum(terms))


def needs_calibration(probabilities: ArrayLike, labels: ArrayLike) -> bool:
    """Whether isotonic calibration of the reference's scores lowers their calibration error.

    NannyML's ``needs_calibration`` (see the module docstring): False for a reference with ROC AUC
    above :data:`NO_CALIBRATION_ROC_AUC`, otherwise whether the pooled out-of-fold ECE of 10 seeded
    stratified shuffle splits is lower after isotonic calibration than before. ``probabilities``
    and ``labels``: shape (n,). Raises ValueError on bad input or a reference that is too small
    or of a single class.
    """
    scores, targets = _reference(probabilities, labels)
    if roc_auc_score(targets, scores) > NO_CALIBRATION_ROC_AUC:
        return False
    splits = StratifiedShuffleSplit(
        n_splits=CALIBRATION_CHECK_SPLITS, test_size=CALIBRATION_CHECK_TEST_SIZE, random_state=CALIBRATION_CHECK_SEED
    )
    test_targets, test_scores, test_calibrated = [], [], []
    for train, test in splits.split(scores, targets):
        calibrator = IsotonicCalibrator.fit(scores[train], targets[train])
        test_targets.append(targets[test])
        test_scores.append(scores[test])
        test_calibrated.append(calibrator.calibrate(scores[test]))
    pooled_targets = np.concatenate(test_targets)
    before = expected_calibration_error(np.concatenate(test_scores), pooled_targets)
    after = expected_calibration_error(np.concatenate(test_calibrated), pooled_targets)
    return bool(before > after)


# --- estimation -------------------------------------------------------------------------------
