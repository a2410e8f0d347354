"""Per-column drift scores on all rows, the same statistics Evidently 0.7 computes, vectorised.

Evidently's report computes each column's statistic several times (its drift
table, then one ``ValueDrift`` per column) and builds plots from every row, which
on a window of a million rows takes minutes and gigabytes. The scores here are
the very quantities its stattests return, computed once per column:

- ``wasserstein`` (numeric): the first Wasserstein distance between the two
  samples divided by the reference's standard deviation (population, ``ddof=0``),
  floored at 0.001 (``evidently.legacy.calculations.stattests.wasserstein_distance_norm``).
- ``jensenshannon`` (categorical): the Jensen-Shannon distance (natural log) between
  the two columns' category frequencies, over the union of the categories seen on
  either side (``...stattests.jensenshannon`` with ``get_binned_data``).

As in Evidently, missing values (and infinities) are dropped before measuring,
and a column is drifted when its score is at or above its threshold.

The Wasserstein distance is exact: both samples are sorted once (or, for a column
of few distinct values, counted) and the area between their quantile functions
(or CDFs) is summed over pieces whose widths are whole numbers, so no rounding
accumulates over a million steps.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from include.monitoring.records import ColumnDrift

WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensenshannon"
PSI = "psi"
METHODS = (WASSERSTEIN, JENSEN_SHANNON, PSI)
# Evidently's floor for the reference's standard deviation (a constant column would divide by zero)
MIN_NORM = 0.001


class EmptyColumnError(ValueError):
    """A side of a column holds no measurable value once missing values are dropped."""

    def __init__(self, column: str, side: str):
        super().__init__(
            f"column {column!r} holds no value to measure in the {side} data (every value is missing or infinite)"
        )
        self.column = column
        self.side = side


def finite_values(values: pd.Series | np.ndarray) -> np.ndarray:
    """The column as a 1-d float64 array without its missing and infinite values (no copy when there are none).

    Raises ``ValueError`` for a Series that holds non-numbers.
    """
    array = np.asarray(pd.to_numeric(values, errors="raise") if isinstance(values, pd.Series) else values)
    if array.dtype != np.float64:
        array = array.astype(np.float64)
    finite = np.isfinite(array)
    return array if finite.all() else array[finite]


def wasserstein_distance(reference: np.ndarray, current: np.ndarray) -> float:
    """The first Wasserstein distance (a float, in the values' units) between two samples of finite values,
    as ``scipy.stats.wasserstein_distance`` computes it.
    """
    if _looks_discrete(reference) and _looks_discrete(current):
        return _wasserstein_from_counts(reference, current)
    return _wasserstein_from_sorted(np.sort(reference), np.sort(current))


# A column whose first rows hold at most this share of distinct values is counted rather than
# sorted (counts, levels, flags: a hash count of a million rows is ~10x cheaper than sorting them).
# Only the speed depends on this guess: both paths compute the same exact distance.
_DISCRETE_PROBE_ROWS = 2_000
_DISCRETE_PROBE_SHARE = 0.05


def _looks_discrete(values: np.ndarray) -> bool:
    probe = values[:_DISCRETE_PROBE_ROWS]
    return len(values) > _DISCRETE_PROBE_ROWS and len(np.unique(probe)) <= _DISCRETE_PROBE_SHARE * len(probe)


def _wasserstein_from_counts(reference: np.ndarray, current: np.ndarray) -> float:
    reference_counts = pd.Series(reference).value_counts(sort=False)
    current_counts = pd.Series(current).value_counts(sort=False)
    support = np.union1d(reference_counts.index.to_numpy(np.float64), current_counts.index.to_numpy(np.float64))
    n, m = len(reference), len(current)
    # n*m*(F_reference - F_current) at each support value, in whole numbers
    below_reference = np.zeros(len(support), dtype=np.int64)
    below_reference[np.searchsorted(support, reference_counts.index.to_numpy(np.float64))] = reference_counts
    below_current = np.zeros(len(support), dtype=np.int64)
    below_current[np.searchsorted(support, current_counts.index.to_numpy(np.float64))] = current_counts
    cdf_gap = np.abs(m * np.cumsum(below_reference) - n * np.cumsum(below_current))
    area = float(np.dot(cdf_gap[:-1].astype(np.float64), np.diff(support)))
    return area / (float(n) * float(m))


def _wasserstein_from_sorted(reference_sorted: np.ndarray, current_sorted: np.ndarray) -> float:
    """The area between the two quantile functions, ``integral over (0, 1] of |Q_ref(t) - Q_cur(t)| dt``.

    ``Q_ref`` steps at ``i/n``, ``Q_cur`` at ``j/m``. In units of ``1/(n*m)`` the steps are
    the whole numbers ``i*m`` and ``j*n``; they cut ``(0, 1]`` into pieces on which both
    functions are constant, and each piece is named by the step that ends it. Where a
    piece starts, and which sorted value each function takes on it, follow from integer
    arithmetic: the distance needs no merge of the two samples, and no rounding
    accumulates in the widths.
    """
    n, m = len(reference_sorted), len(current_sorted)
    return (
        _pieces_area(reference_sorted, current_sorted, own_step=m, other_step=n, ties_first=True)
        + _pieces_area(current_sorted, reference_sorted, own_step=n, other_step=m, ties_first=False)
    ) / (float(n) * float(m))


def _pieces_area(own: np.ndarray, other: np.ndarray, own_step: int, other_step: int, ties_first: bool) -> float:
    """``sum(width * |own - other|)`` over the pieces ended by ``own``'s steps ``k*own_step``.

    At a step both functions share, ``own``'s piece comes first when ``ties_first``
    (the other one then has width 0), so that every piece is counted once.
    """
    ends = np.arange(1, len(own) + 1, dtype=np.int64)
    ends *= own_step
    # the other function's steps before this end: its last one, and the index of its value here
    other_index = ends - 1
    other_index //= other_step
    starts = other_index * other_step if ties_first else (ends // other_step) * other_step
    np.maximum(starts, ends - own_step, out=starts)
    np.subtract(ends, starts, out=starts)
    del ends
    gaps = other[other_index]
    del other_index
    gaps -= own
    np.abs(gaps, out=gaps)
    return float(np.dot(starts.astype(np.float64), gaps))


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's ``wasserstein`` drift score: the distance in units of the reference's standard deviation
    (a float >= 0).
    """
    norm = max(float(np.std(reference)), MIN_NORM)
    return wasserstein_distance(reference, current) / norm


def category_counts(values: pd.Series) -> pd.Series:
    """How often each category occurs, missing values left out: an int Series indexed by category."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    counts = values.value_counts(dropna=True, sort=False)
    return counts[counts > 0]


def jensen_shannon(reference_counts: pd.Series, current_counts: pd.Series) -> float:
    """Evidently's ``jensenshannon`` drift score from each side's category counts: a float in [0, 1]."""
    from scipy.spatial import distance

    categories = reference_counts.index.union(current_counts.index)
    reference = reference_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    current = current_counts.reindex(categories, fill_value=0).to_numpy(dtype=np.float64)
    return float(distance.jensenshannon(reference / reference.sum(), current / current.sum()))


def numeric_drift(
    column: str, reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, threshold: float
) -> ColumnDrift:
    """The Wasserstein drift of a numeric column, as a :class:`ColumnDrift` judged against ``threshold``.

    Raises :class:`EmptyColumnError` when a side has no finite value.
    """
    reference_values, current_values = finite_values(reference), finite_values(current)
    for side, values in (("reference", reference_values), ("current", current_values)):
        if len(values) == 0:
            raise EmptyColumnError(column, side)
    return ColumnDrift(column, WASSERSTEIN, float(threshold), wasserstein_norm(reference_values, current_values))


def categorical_drift(column: str, reference: pd.Series, current: pd.Series, threshold: float) -> ColumnDrift:
    """The Jensen-Shannon drift of a categorical column, as a :class:`ColumnDrift` judged against ``threshold``.

    Raises :class:`EmptyColumnError` when a side has no category.
    """
    reference_counts, current_counts = category_counts(reference), category_counts(current)
    for side, counts in (("reference", reference_counts), ("current", current_counts)):
        if counts.sum() == 0:
            raise EmptyColumnError(column, side)
    return ColumnDrift(column, JENSEN_SHANNON, float(threshold), jensen_shannon(reference_counts, current_counts))


def _workers() -> int:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(available, 4))


def column_drifts(
    columns: list[str],
    measure: Callable[[str], ColumnDrift],
    *,
    while_computing: Callable[[], object] | None = None,
) -> tuple[dict[str, ColumnDrift], object]:
    """Each column's drift, ``measure`` scoring one column.

    Columns are measured in worker threads (sorting and counting release the GIL);
    ``while_computing``, if given, runs meanwhile on the calling thread and its
    result is returned alongside, so that work which holds the GIL (rendering a
    report) overlaps with the measurements rather than following them.
    Returns ``(drifts, side_result)``: a dict of column to :class:`ColumnDrift` in ``columns``' order, and
    ``while_computing``'s result (None without it). A column's error (e.g. :class:`EmptyColumnError`)
    passes through.
    """
    with ThreadPoolExecutor(
        max_workers=min(_workers(), max(len(columns), 1)), thread_name_prefix="drift-column"
    ) as pool:
        futures = {column: pool.submit(measure, column) for column in columns}
        side_result = while_computing() if while_computing is not None else None
        results = {column: future.result() for column, future in futures.items()}
    return results, side_result
