"""Scoring a window's columns and judging the scores: the drift check's figures of record.

:func:`measure_drift` scores every monitored column (:mod:`include.monitoring.columns`) on
all rows, in worker threads, and :func:`judge_columns` sets each column's threshold by the
spec's verdict (calibrated or fixed). :func:`include.monitoring.drift.run_drift_check`
checks the window, calls them and draws the report; a benchmark can judge one window's
scores under two verdicts without drawing anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from include.monitoring.calibration import bonferroni_level
from include.monitoring.columns import critical_score, measure_column, plan_columns
from include.monitoring.drift_stats import EmptyColumnError, column_drifts
from include.monitoring.profile import calibrate
from include.monitoring.records import ColumnDrift
from include.monitoring.reference import Reference, _prediction_is_numeric, prediction_column
from include.monitoring.window import DriftInputError

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        # an unmeasurable column must never count as "not drifted"
        raise RuntimeError(f"the drift check computed a non-finite {what}: {value!r}")
    return number


def measure_drift(
    current: pd.DataFrame,
    reference: Reference,
    spec: DatasetSpec,
    *,
    while_computing: Callable[[], Any] | None = None,
) -> tuple[dict[str, ColumnDrift], Any]:
    """Every monitored column of ``current`` scored against ``reference`` on all rows, and judged.

    The drift check's figures of record without its report: :func:`run_drift_check`
    checks the window, calls this and draws the page. ``reference`` gets its missing
    profile computed in place first (:func:`~include.monitoring.profile.calibrate`);
    ``while_computing``, if given, runs on the calling thread meanwhile.

    Returns ``(columns, side_result)``: ``{column: ColumnDrift}`` for the monitored
    features in spec order, then the prediction column (:func:`prediction_column`),
    each judged as :func:`judge_columns` says; and ``while_computing``'s result (None
    without it). Raises :class:`DriftInputError` for a window column without a value,
    ``ValueError`` for such a reference column, ``RuntimeError`` for a non-finite score.
    """
    predicted = prediction_column(spec)
    plans = plan_columns(spec, predicted, _prediction_is_numeric(spec))
    try:
        calibrate(reference, spec)
        results, side_result = column_drifts(
            list(plans),
            lambda name: measure_column(plans[name], reference.columns[name], reference.frame[name], current[name]),
            while_computing=while_computing,
        )
    except EmptyColumnError as empty:
        if empty.side == "current":
            raise DriftInputError(f"window: {empty}") from None
        raise ValueError(f"reference frame: {empty}") from None
    return judge_columns(results, reference, spec), side_result


def judge_columns(results: dict[str, ColumnDrift], reference: Reference, spec: DatasetSpec) -> dict[str, ColumnDrift]:
    """``results`` (column to measured :class:`ColumnDrift`, the planned columns) with each threshold set by
    the spec's verdict: :func:`~include.monitoring.columns.critical_score` at the Bonferroni level of
    ``monitoring.false_alarm_rate`` over the monitored features, at the rate itself for the prediction column.

    Judging again under another spec (e.g. ``monitoring.verdict: fixed``) replaces the thresholds; the
    scores stay. Returns a new dict in ``results``' order. Raises ``RuntimeError`` for a non-finite score,
    ``KeyError`` for a column ``reference`` has no profile of (see :func:`measure_drift`).
    """
    monitoring = spec.monitoring
    predicted = prediction_column(spec)
    plans = plan_columns(spec, predicted, _prediction_is_numeric(spec))
    features = [name for name in plans if name != predicted]
    # Bonferroni over the monitored features: an undrifted window moves the drift share with at most
    # the false alarm rate; the prediction column is a test of its own
    feature_level = bonferroni_level(monitoring.false_alarm_rate, len(features))
    judged = {}
    for name, result in results.items():
        level = monitoring.false_alarm_rate if name == predicted else feature_level
        threshold, judged_by = critical_score(
            plans[name], reference.columns[name], result.rows, level, monitoring.min_score
        )
        score_value = _finite(result.drift_score, f"drift score for column {name!r}")
        judged[name] = replace(result, threshold=threshold, drift_score=score_value, judged_by=judged_by)
    return judged
