"""Drift verdicts calibrated to the window: each column's score against its own null distribution.

A fixed threshold (Evidently's 0.1 distance) ignores the window's size. A distance
between a small window and the reference is mostly sampling noise: 100 rows drawn
from the reference itself score well above 0.1 on many columns, while a million
rows score near 0 even after a real shift. So each column's score is judged
against what the *same statistic* gives on windows of the *same size* drawn from
the reference itself (its null distribution):

1. **Null draws.** For every window size of :data:`WINDOW_SIZES`, :data:`NULL_DRAWS`
   windows are drawn from the reference's distribution of the column (a multinomial
   over its distinct values, or over :data:`MAX_SUPPORT` equal-mass quantiles of a
   continuous column) and scored against the reference. Each draw is scaled by
   ``sqrt(1 + n / N)``: a served window and an ``N``-row reference are two samples,
   so the difference between them varies as ``1/n + 1/N``, while a draw from the
   reference varies as ``1/n`` alone.
2. **Tail.** The decision needs levels far below ``1 / draws``. Above the draws'
   90th percentile ``u`` the tail is taken as exponential, ``P(score > x) = 0.1 *
   exp(-(x - u) / beta)`` with ``beta`` the mean excess over ``u``: the
   peaks-over-threshold approximation of permutation p-values (Knijnenburg et al.,
   "Fewer permutations, more accurate P-values", Bioinformatics 2009), here with the
   generalised Pareto's shape fixed at 0. Distances between samples have tails no
   heavier than exponential, so the critical score errs on the quiet side. (A gamma
   fitted to the draws' moments, tried first, alarmed up to 3 times too often at the
   0.001 level.)
3. **Window size.** ``u`` and ``beta`` are interpolated between the grid's sizes on
   log-log axes, and beyond the largest size extended as ``sqrt(1/n + 1/N)``, the rate
   of a distance between a window of ``n`` rows and a reference of ``N``: once the
   window outgrows the reference, the reference's own sampling noise sets the scale.
4. **Many columns, one decision.** A column drifts when its score reaches the
   critical score at ``false_alarm_rate / m`` (Bonferroni over the ``m`` monitored
   feature columns), so that on a window without drift the chance that *any*
   column drifts, and hence that the drift share moves at all, is at most
   ``false_alarm_rate``. A ``min_score`` floor, when set, also requires the shift
   to be large enough to matter on big windows.

The null distributions depend only on the reference, so they are computed once
per champion version (:mod:`include.monitoring.profile`) and stored with it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from include.util import fields as read

# window sizes at which the null is drawn; checks between them interpolate
WINDOW_SIZES = (10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 1_000_000)
NULL_DRAWS = 600
# the share of null draws above the tail's start
TAIL_SHARE = 0.1
# a continuous column is represented by this many equal-mass quantiles in the null draws
MAX_SUPPORT = 1024
# above this many rows a window's shares are drawn from their normal limit (the multinomial's CLT)
EXACT_DRAW_ROWS = 2_000
NULL_SEED = 20_261_130
# the family-wise chance that a window without drift shows any drifted column
DEFAULT_FALSE_ALARM_RATE = 0.01


@dataclass(frozen=True)
class NullDistribution:
    """A column's drift score on windows without drift, per window size (rows): the 90th percentile
    ``tail_start`` and the mean excess above it ``tail_scale``, in the score's own units.
    ``sizes`` ascend."""

    sizes: tuple[int, ...]
    tail_start: tuple[float, ...]
    tail_scale: tuple[float, ...]
    # the reference's rows; None (a null stored without it): beyond the grid as n**-0.5
    reference_rows: int | None = None

    def tail(self, rows: int) -> tuple[float, float]:
        """``(tail_start, tail_scale)`` for a window of ``rows`` rows (log-log interpolation).

        Raises ``ValueError`` for ``rows`` < 1.
        """
        if rows < 1:
            raise ValueError(f"a window needs at least one row, got {rows}")
        log_sizes = np.log(self.sizes)
        log_n = math.log(rows)
        logs = [np.log(np.maximum(values, 1e-300)) for values in (self.tail_start, self.tail_scale)]
        if log_n >= log_sizes[-1]:
            # beyond the grid: a distance between n and N rows shrinks as sqrt(1/n + 1/N)
            last = self.sizes[-1]
            if self.reference_rows:
                factor = math.sqrt((1 / rows + 1 / self.reference_rows) / (1 / last + 1 / self.reference_rows))
            else:
                factor = math.sqrt(last / rows)
            return math.exp(logs[0][-1]) * factor, math.exp(logs[1][-1]) * factor
        start, scale = (math.exp(np.interp(log_n, log_sizes, values)) for values in logs)
        return start, scale

    def critical_score(self, rows: int, level: float) -> float:
        """The score a window of ``rows`` rows without drift reaches with probability ``level``.

        Returns a float >= 0 in the score's units. Raises ``ValueError`` for ``level`` outside (0, 1).
        """
        if not 0 < level < 1:
            raise ValueError(f"level must be within (0, 1), got {level!r}")
        start, scale = self.tail(rows)
        return max(0.0, start + scale * math.log(TAIL_SHARE / level))

    def p_value(self, rows: int, score: float) -> float:
        """The chance that a window of ``rows`` rows without drift scores ``score`` or more: a float in
        [0, 1], from the exponential tail (approximate above 0.1)."""
        start, scale = self.tail(rows)
        return float(min(1.0, TAIL_SHARE * math.exp(-(score - start) / scale)))

    def to_dict(self) -> dict[str, list]:
        """A JSON-ready dict: ``sizes`` (list of int), ``tail_start`` and ``tail_scale`` (lists of float) and
        ``reference_rows`` (int or None)."""
        return {
            "sizes": list(self.sizes),
            "tail_start": list(self.tail_start),
            "tail_scale": list(self.tail_scale),
            "reference_rows": self.reference_rows,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "null") -> NullDistribution:
        """Returns the :class:`NullDistribution` :meth:`to_dict` wrote. Raises ``ValueError`` naming the bad key."""
        data = read.mapping(data, where)
        lists = {key: read.key(data, key, where) for key in ("sizes", "tail_start", "tail_scale")}
        if not all(isinstance(value, list) for value in lists.values()) or len({len(v) for v in lists.values()}) != 1:
            raise ValueError(f"{where}: sizes, tail_start and tail_scale must be lists of one length")
        if not lists["sizes"] or sorted(lists["sizes"]) != lists["sizes"] or min(lists["sizes"]) < 1:
            raise ValueError(f"{where}.sizes must ascend from 1 or more, got {lists['sizes']!r}")
        if min(lists["tail_scale"]) <= 0:
            raise ValueError(f"{where}.tail_scale must be positive, got {lists['tail_scale']!r}")
        return cls(
            tuple(int(n) for n in lists["sizes"]),
            tuple(float(x) for x in lists["tail_start"]),
            tuple(float(x) for x in lists["tail_scale"]),
            read.integer(data, "reference_rows", where, optional=True) if "reference_rows" in data else None,
        )


def bonferroni_level(false_alarm_rate: float, columns: int) -> float:
    """Each column's level so that ``columns`` of them together alarm with at most ``false_alarm_rate``.

    Raises ``ValueError`` for a rate outside (0, 1) or fewer than one column.
    """
    if not 0 < false_alarm_rate < 1:
        raise ValueError(f"false_alarm_rate must be within (0, 1), got {false_alarm_rate!r}")
    if columns < 1:
        raise ValueError(f"at least one monitored column is needed, got {columns}")
    return false_alarm_rate / columns


def _scale(sizes: Sequence[int], reference_rows: int) -> np.ndarray:
    return np.sqrt(1.0 + np.asarray(sizes, dtype=np.float64) / reference_rows)


def _summarise(draws_by_size: list[np.ndarray], sizes: Sequence[int], reference_rows: int) -> NullDistribution:
    starts, scales = [], []
    for factor, draws in zip(_scale(sizes, reference_rows), draws_by_size, strict=True):
        scaled = draws * factor
        start = float(np.quantile(scaled, 1 - TAIL_SHARE))
        excess = scaled[scaled > start] - start
        # a degenerate null (every draw alike) still needs a positive scale: any larger score is a change
        starts.append(start)
        scales.append(max(float(excess.mean()) if len(excess) else 0.0, 1e-9))
    return NullDistribution(tuple(int(n) for n in sizes), tuple(starts), tuple(scales), int(reference_rows))


def numeric_support(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A finite numeric column as ``(points, weights)``: its distinct values with their shares, or
    :data:`MAX_SUPPORT` equal-mass quantiles when it has more distinct values than that.

    ``values`` is a 1-d float array without missing values. Returns two float64 arrays of one length,
    ``points`` ascending and ``weights`` summing to 1. Raises ``ValueError`` for an empty column.
    """
    if len(values) == 0:
        raise ValueError("a column without values has no null distribution")
    points, counts = np.unique(values, return_counts=True)
    if len(points) <= MAX_SUPPORT:
        return points.astype(np.float64), counts / counts.sum()
    ranks = (np.arange(MAX_SUPPORT) + 0.5) / MAX_SUPPORT
    return np.quantile(values, ranks), np.full(MAX_SUPPORT, 1.0 / MAX_SUPPORT)


def draw_shares(generator: np.random.Generator, rows: int, weights: np.ndarray, draws: int) -> np.ndarray:
    """``draws`` windows of ``rows`` rows drawn from a distribution over ``len(weights)`` points: each
    window's share per point, a ``(draws, len(weights))`` float array whose rows sum to 1.

    Up to :data:`EXACT_DRAW_ROWS` rows the rows are drawn one by one; above it, from the normal limit of
    the multinomial (mean ``weights``, covariance ``(diag(w) - w w') / rows``), which is what the
    distances, sums over many points, see of a large window, at a cost that does not grow with it.
    """
    points = len(weights)
    if rows <= EXACT_DRAW_ROWS:
        picks = generator.choice(points, size=(draws, rows), p=weights)
        picks += np.arange(draws)[:, np.newaxis] * points
        return np.bincount(picks.ravel(), minlength=draws * points).reshape(draws, points) / rows
    noise = generator.standard_normal((draws, points)) * np.sqrt(weights)
    noise -= weights * noise.sum(axis=1, keepdims=True)
    return weights + noise / math.sqrt(rows)


@dataclass(frozen=True)
class NullDraws:
    """How a null distribution is drawn: ``draws`` windows at each of ``sizes`` (rows), from ``seed``."""

    sizes: Sequence[int] = WINDOW_SIZES
    draws: int = NULL_DRAWS
    seed: int = NULL_SEED


def wasserstein_null(values: np.ndarray, norm: float, how: NullDraws = NullDraws()) -> NullDistribution:
    """The null of the normed Wasserstein score (:func:`include.monitoring.drift_stats.wasserstein_norm`) of a
    numeric column whose finite reference values are ``values`` (1-d float64), ``norm`` the divisor the score uses.

    Each draw is the area between the draw's CDF and the reference's over the support
    (:func:`numeric_support`), divided by ``norm``. Returns a :class:`NullDistribution`.
    Raises ``ValueError`` for an empty column.
    """
    points, weights = numeric_support(values)
    generator = np.random.default_rng(how.seed)
    widths = np.diff(points)
    reference_cdf = np.cumsum(weights)[:-1]
    by_size = []
    for rows in how.sizes:
        window_cdf = np.cumsum(draw_shares(generator, rows, weights, how.draws), axis=1)[:, :-1]
        by_size.append(np.abs(window_cdf - reference_cdf) @ widths / norm)
    return _summarise(by_size, how.sizes, len(values))


def jensen_shannon_from_shares(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The Jensen-Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``) between the
    reference's shares (1-d, summing to 1) and each row of ``window`` (2-d, rows summing to 1): a 1-d array."""
    middle = (reference + window) / 2

    def kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / q), 0.0)
        return terms.sum(axis=-1)

    return np.sqrt(np.maximum((kl(reference, middle) + kl(window, middle)) / 2, 0.0))


def psi_from_shares(reference: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The population stability index between the reference's shares (1-d) and each row of ``window`` (2-d):
    ``sum((w - r) * ln(w / r))`` with empty shares floored at 0.0001, as Evidently's ``psi`` stattest."""
    reference = np.where(reference == 0, 0.0001, reference)
    window = np.where(window == 0, 0.0001, window)
    return ((window - reference) * np.log(window / reference)).sum(axis=-1)


SHARE_DISTANCES = {"jensenshannon": jensen_shannon_from_shares, "psi": psi_from_shares}


def shares_null(counts: np.ndarray, method: str, how: NullDraws = NullDraws()) -> NullDistribution:
    """The null of a distance between category (or bin) shares, ``counts`` being the reference's count per
    category (1-d ints) and ``method`` one of :data:`SHARE_DISTANCES`. Returns a :class:`NullDistribution`.

    Raises ``ValueError`` for an unknown method or a reference without counts.
    """
    if method not in SHARE_DISTANCES:
        raise ValueError(f"unknown share distance {method!r}; expected one of {sorted(SHARE_DISTANCES)}")
    total = int(np.sum(counts))
    if total == 0:
        raise ValueError("a column without values has no null distribution")
    shares = np.asarray(counts, dtype=np.float64) / total
    generator = np.random.default_rng(how.seed)
    distance = SHARE_DISTANCES[method]
    # the shares' normal limit can dip below 0 for a rare category: the distances need shares >= 0
    by_size = []
    for rows in how.sizes:
        window = np.clip(draw_shares(generator, rows, shares, how.draws), 0, None)
        by_size.append(distance(shares, window / window.sum(axis=1, keepdims=True)))
    return _summarise(by_size, how.sizes, total)
