"""Which columns the drift check measures, with which statistic, and how each score is judged.

Every feature is monitored unless its spec entry says ``drift: false`` (a calendar
feature that a short window cannot represent). A feature may name its own
``method`` (``wasserstein`` for numeric columns, ``jensenshannon`` for categorical
ones, ``psi`` for either) and its own fixed ``threshold``, as Evidently allows per
column; the prediction column is measured like a feature of its kind.

A score is judged in one of three ways (:attr:`ColumnDrift.judged_by
<include.monitoring.records.ColumnDrift>`):

- ``calibrated`` (the default): against the column's null distribution at the
  window's size (:mod:`include.monitoring.calibration`), at the Bonferroni level
  of the spec's ``monitoring.false_alarm_rate``;
- ``fixed``: against a fixed threshold, the feature's own or, with
  ``monitoring.verdict: fixed``, Evidently's default 0.1;
- ``constant``: a column that holds one value in the reference has no spread to
  measure a distance in (Evidently divides by a floor of 0.001, so 1 % of changed
  rows scores 100 times the threshold). Its score is the share of the window's
  rows that left the value, drifted at :data:`CONSTANT_SHARE_THRESHOLD` or the
  feature's own threshold.

What depends only on the reference (each column's null distribution, its constant
value, its PSI bins) is :class:`ColumnReference`, computed once per champion
(:mod:`include.monitoring.profile`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.monitoring import calibration
from include.monitoring.drift_stats import (
    JENSEN_SHANNON,
    MIN_NORM,
    PSI,
    WASSERSTEIN,
    EmptyColumnError,
    categorical_drift,
    category_counts,
    finite_values,
    numeric_drift,
)
from include.monitoring.records import ColumnDrift
from include.util import fields as read

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec

# Evidently's default threshold for the distances, used by the fixed verdict
FIXED_THRESHOLD = 0.1
CONSTANT_SHARE_THRESHOLD = 0.1
# PSI on a numeric column: shares of the reference's deciles
PSI_BINS = 10
CALIBRATED, FIXED, CONSTANT = "calibrated", "fixed", "constant"
# the method name recorded for a column judged by the share of rows that left its constant value
CONSTANT_SHARE_METHOD = "constant_share"


@dataclass(frozen=True)
class ColumnPlan:
    """How one column is measured: ``method`` on a ``numeric`` or categorical column, judged against
    ``threshold`` when one is fixed, else calibrated."""

    column: str
    method: str
    numeric: bool
    threshold: float | None = None


def plan_columns(spec: DatasetSpec, prediction: str, prediction_is_numeric: bool) -> dict[str, ColumnPlan]:
    """The monitored feature columns in spec order, then the prediction column ``prediction``.

    Returns ``{column: ColumnPlan}``; features with ``drift: false`` are left out. With the
    spec's ``monitoring.verdict`` ``fixed``, every column without its own threshold gets
    :data:`FIXED_THRESHOLD`. Raises nothing (the spec was checked when it was loaded).
    """
    fixed = spec.monitoring.verdict == FIXED

    def plan(name: str, numeric: bool, method: str | None, threshold: float | None) -> ColumnPlan:
        method = method or (WASSERSTEIN if numeric else JENSEN_SHANNON)
        if threshold is None and fixed:
            threshold = FIXED_THRESHOLD
        return ColumnPlan(name, method, numeric, threshold)

    plans = {
        feature.name: plan(feature.name, feature.is_numeric, feature.drift.method, feature.drift.threshold)
        for feature in spec.features
        if feature.drift.monitored
    }
    plans[prediction] = plan(prediction, prediction_is_numeric, None, None)
    return plans


@dataclass(frozen=True)
class ColumnReference:
    """What the reference fixes about a column: its ``null`` distribution (None for a constant column
    or one judged at a fixed threshold),
    its ``constant`` value's text (None unless it holds one value) and, for PSI on a numeric column,
    the bin ``edges`` (ascending floats)."""

    method: str
    null: calibration.NullDistribution | None
    constant: str | None = None
    edges: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``method``, ``null`` (dict or None), ``constant`` (str or None), ``edges`` (list)."""
        return {
            "method": self.method,
            "null": None if self.null is None else self.null.to_dict(),
            "constant": self.constant,
            "edges": list(self.edges),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ColumnReference:
        """Returns the :class:`ColumnReference` :meth:`to_dict` wrote; raises ``ValueError`` naming the bad key."""
        data = read.mapping(data, where)
        null = data.get("null")
        return cls(
            method=read.text(data, "method", where),
            null=None if null is None else calibration.NullDistribution.from_dict(null, f"{where}.null"),
            constant=data.get("constant"),
            edges=tuple(float(edge) for edge in data.get("edges") or ()),
        )


def _text_counts(values: pd.Series) -> pd.Series:
    """How often each category occurs, by its canonical text: the distinct values are turned into text,
    not every row (a million rows hold a handful of categories)."""
    from include.data.spec import category_text

    counts = category_counts(values)
    return counts.groupby(counts.index.map(category_text)).sum()


def _constant(values: pd.Series, numeric: bool) -> str | None:
    if numeric:
        finite = np.unique(finite_values(values))
        return repr(float(finite[0])) if len(finite) == 1 else None
    texts = _text_counts(values).index
    return str(texts[0]) if len(texts) == 1 else None


def psi_edges(values: np.ndarray) -> tuple[float, ...]:
    """The inner edges of :data:`PSI_BINS` equal-mass bins of a numeric reference column (finite floats,
    ascending, duplicates dropped): a tuple of floats. Raises ``ValueError`` for an empty column."""
    if len(values) == 0:
        raise ValueError("a column without values has no bins")
    return tuple(np.unique(np.quantile(values, np.arange(1, PSI_BINS) / PSI_BINS)))


def _binned_counts(values: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    return np.bincount(np.searchsorted(np.asarray(edges), values, side="right"), minlength=len(edges) + 1)


def reference_column(plan: ColumnPlan, values: pd.Series) -> ColumnReference:
    """What the reference column ``values`` fixes for ``plan`` (see :class:`ColumnReference`).

    Raises :class:`~include.monitoring.drift_stats.EmptyColumnError` when the column holds no value.
    """
    numeric_values = finite_values(values) if plan.numeric else None
    if (numeric_values is not None and len(numeric_values) == 0) or (not plan.numeric and values.notna().sum() == 0):
        raise EmptyColumnError(plan.column, "reference")
    constant = _constant(values, plan.numeric)
    if constant is not None:
        return ColumnReference(plan.method, None, constant)
    edges = psi_edges(numeric_values) if plan.numeric and plan.method == PSI else ()
    if plan.threshold is not None:
        # a fixed threshold needs no null distribution
        return ColumnReference(plan.method, None, edges=edges)
    if plan.method == WASSERSTEIN:
        norm = max(float(np.std(numeric_values)), MIN_NORM)
        return ColumnReference(plan.method, calibration.wasserstein_null(numeric_values, norm))
    if plan.numeric:
        return ColumnReference(
            plan.method, calibration.shares_null(_binned_counts(numeric_values, edges), PSI), edges=edges
        )
    counts = _text_counts(values).to_numpy()
    return ColumnReference(plan.method, calibration.shares_null(counts, plan.method))


def constant_share(constant: str, values: pd.Series, numeric: bool) -> tuple[float, int]:
    """``(share, rows)``: the share of the window's present values that differ from the reference's one
    value ``constant`` (its text), and how many present values there were. Raises
    :class:`~include.monitoring.drift_stats.EmptyColumnError` for a window without a value."""
    if numeric:
        present = finite_values(values)
        rows, changed = len(present), int(np.count_nonzero(present != float(constant)))
    else:
        counts = _text_counts(values)
        rows = int(counts.sum())
        changed = rows - int(counts.get(constant, 0))
    if rows == 0:
        raise EmptyColumnError(str(values.name), "current")
    return changed / rows, rows


def binned_shares_score(
    method: str, reference: pd.Series, current: pd.Series, numeric: bool, edges: tuple[float, ...]
) -> tuple[float, int]:
    """``(score, rows)``: ``method`` (``psi`` or ``jensenshannon``) between the two columns' shares over
    the reference's bins (numeric, ``edges``) or the union of categories, and the window's present values.

    Raises :class:`~include.monitoring.drift_stats.EmptyColumnError` when a side holds no value.
    """
    if numeric:
        sides = [finite_values(reference), finite_values(current)]
        counts = [_binned_counts(values, edges) for values in sides]
    else:
        reference_counts, current_counts = _text_counts(reference), _text_counts(current)
        categories = reference_counts.index.union(current_counts.index)
        counts = [c.reindex(categories, fill_value=0).to_numpy() for c in (reference_counts, current_counts)]
    for side, side_counts in zip(("reference", "current"), counts, strict=True):
        if side_counts.sum() == 0:
            raise EmptyColumnError(str(current.name), side)
    shares = [side_counts / side_counts.sum() for side_counts in counts]
    distance = calibration.SHARE_DISTANCES[method]
    return float(distance(shares[0], shares[1][np.newaxis, :])[0]), int(counts[1].sum())


def measure_column(plan: ColumnPlan, known: ColumnReference, reference: pd.Series, current: pd.Series) -> ColumnDrift:
    """The column's score by ``plan``'s method (or its constant share) and the window values it was
    measured on, as a :class:`ColumnDrift` whose threshold is still infinite (:func:`critical_score`
    sets it once the window's size is known). Raises
    :class:`~include.monitoring.drift_stats.EmptyColumnError` when a side holds no value."""
    if known.constant is not None:
        share, rows = constant_share(known.constant, current, plan.numeric)
        return ColumnDrift(plan.column, CONSTANT_SHARE_METHOD, math.inf, share, rows)
    if plan.method == WASSERSTEIN:
        result = numeric_drift(plan.column, reference, current, math.inf)
        return replace(result, rows=int(finite_values(current).size))
    if plan.method == JENSEN_SHANNON and not plan.numeric:
        result = categorical_drift(plan.column, reference, current, math.inf)
        return replace(result, rows=int(current.notna().sum()))
    score, rows = binned_shares_score(plan.method, reference, current, plan.numeric, known.edges)
    return ColumnDrift(plan.column, plan.method, math.inf, score, rows)


def critical_score(
    plan: ColumnPlan, reference: ColumnReference, rows: int, level: float, min_score: float
) -> tuple[float, str]:
    """``(threshold, judged_by)`` for a column score measured on ``rows`` window values.

    ``judged_by`` is :data:`FIXED` (the plan's threshold), :data:`CONSTANT` (the share of rows
    that left a constant value) or :data:`CALIBRATED` (the null's critical score at ``level``,
    at least ``min_score``). Raises ``ValueError`` for ``level`` outside (0, 1).
    """
    if reference.constant is not None:
        return (CONSTANT_SHARE_THRESHOLD if plan.threshold is None else plan.threshold), CONSTANT
    if plan.threshold is not None:
        return plan.threshold, FIXED
    if reference.null is None:
        raise ValueError(f"column {plan.column!r} has no null distribution to calibrate its verdict with")
    return max(reference.null.critical_score(rows, level), min_score), CALIBRATED
