"""Bootstrap confidence intervals of how much better a candidate is than the champion on live labelled rows.

The difference is oriented so that a positive value means "the candidate is better", in the metric's own
units: ``candidate - champion`` for a metric where larger is better (ROC AUC, macro-F1, R²) and
``champion - candidate`` for a loss (log loss, RMSE, MAE).

Two designs (Efron & Tibshirani, *An Introduction to the Bootstrap*, 1993, ch. 8 and 13):

- **paired** (shadow): both models answered the same rows, so one resample of the rows gives both
  metrics, and the difference keeps the rows' shared difficulty out of its spread;
- **two-sample** (canary): each version answered its own rows, so each arm is resampled on its own.

Intervals are percentile intervals at ``confidence`` (two-sided), from ``RESAMPLES`` resamples drawn with a
fixed seed, so the same rows always give the same interval.

Vectorised: rows that the metric cannot tell apart (same slice, label and score) are one *cell*, and a
resample is a count per cell, drawn as independent Poisson(count) frequencies (the Poisson bootstrap: Hanley
& MacGibbon, "Creating non-parametric bootstrap samples using Poisson frequencies", Comput. Methods Programs
Biomed. 2006; Chamandy et al., "Estimating uncertainty for massive data streams", Google 2012). Every metric
is then a handful of (resamples x cells) numpy passes. Up to ``MAX_CELLS`` distinct rows the cells are the
rows themselves and the bootstrap is exact; beyond, continuous scores and losses are cut at their quantiles
into the largest number of bins that keeps the cells under ``MAX_CELLS``: a mean loss keeps each cell's exact
mean, a ranking metric (ROC AUC, PR AUC) counts the pairs inside one bin as ties. The interval is then
moved by the gap between the exact difference (computed on the raw rows by
:func:`include.evaluation.metrics.score`, as the gate does) and the binned one, so the binning changes the
spread, never the centre. 100k rows x 2000 resamples take a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from include.evaluation.metrics import higher_is_better
from include.evaluation.metrics import score as exact_score
from include.training import PROBABILITY_PREFIX

RESAMPLES = 2000
SEED = 20260301
MAX_CELLS = 2000
_BINS = (1024, 512, 256, 128, 64, 32, 16, 8, 4)
# a probability of exactly 0 or 1 has an infinite log loss; sklearn clips the same way
_EPS = np.finfo(np.float64).eps


@dataclass(frozen=True)
class Interval:
    """One comparison: the ``candidate`` and ``champion`` metric values (None: undefined on these rows), the
    oriented ``difference`` (positive: the candidate is better) and its confidence bounds ``low``/``high``
    (None when undefined), and the labelled rows each side had."""

    candidate: float | None
    champion: float | None
    difference: float | None
    low: float | None
    high: float | None
    candidate_rows: int
    champion_rows: int

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict, floats rounded to 6 decimals."""
        return {key: round(value, 6) if isinstance(value, float) else value for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Scored:
    """Rows scored by one model: ``labels`` typed by :func:`include.data.cast.target_array`, ``outputs``
    (the served output columns, arrays of the rows' length) and ``slices`` (the slice feature's text per
    row, or None without a slice feature)."""

    labels: np.ndarray
    outputs: Mapping[str, np.ndarray]
    slices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------- what each metric needs per row
@dataclass
class _Parts:
    """A model's rows reduced to what the metric reads: discrete keys, continuous keys, values to average."""

    discrete: dict[str, np.ndarray]
    continuous: dict[str, np.ndarray]
    values: dict[str, np.ndarray]


def _parts(task: str, metric: str, rows: Scored, classes: Sequence[str]) -> _Parts:
    labels = rows.labels
    if metric in ("roc_auc", "pr_auc"):
        label = np.asarray(labels, dtype=np.int64)
        return _Parts({"y": label}, {"score": np.asarray(rows.outputs["probability"], dtype=np.float64)}, {})
    if metric == "log_loss" and task == "binary":
        label = np.asarray(labels, dtype=np.float64)
        p = np.clip(np.asarray(rows.outputs["probability"], dtype=np.float64), _EPS, 1 - _EPS)
        loss = -(label * np.log(p) + (1 - label) * np.log(1 - p))
        return _Parts({}, {"loss": loss}, {"loss": loss})
    if metric == "log_loss":
        matrix = np.column_stack(
            [np.asarray(rows.outputs[f"{PROBABILITY_PREFIX}{name}"], dtype=np.float64) for name in classes]
        )
        matrix = matrix / matrix.sum(axis=1, keepdims=True)
        index = {name: position for position, name in enumerate(classes)}
        true = matrix[np.arange(len(labels)), [index[str(label)] for label in labels]]
        loss = -np.log(np.clip(true, _EPS, 1 - _EPS))
        return _Parts({}, {"loss": loss}, {"loss": loss})
    if metric == "macro_f1":
        index = {name: position for position, name in enumerate(classes)}
        label = np.array([index[str(value)] for value in labels], dtype=np.int64)
        predicted = np.array([index.get(str(value), -1) for value in rows.outputs["prediction"]], dtype=np.int64)
        return _Parts({"y": label, "predicted": predicted}, {}, {})
    if metric in ("rmse", "mae", "r2"):
        label = np.asarray(labels, dtype=np.float64)
        error = np.asarray(rows.outputs["prediction"], dtype=np.float64) - label
        if metric == "mae":
            return _Parts({}, {"loss": np.abs(error)}, {"loss": np.abs(error)})
        if metric == "rmse":
            return _Parts({}, {"loss": error**2}, {"loss": error**2})
        return _Parts({}, {"loss": error**2, "y": label}, {"loss": error**2, "y": label, "y2": label**2})
    raise ValueError(f"no live comparison for metric {metric!r} of a {task} task")


# ---------------------------------------------------------------------- cells
@dataclass
class _Cells:
    counts: np.ndarray  # (cells,)
    keys: dict[str, np.ndarray]  # (cells,) integer code per key column
    values: dict[str, np.ndarray]  # (cells,) mean of each value column
    bins: int | None  # None: exact (one cell per distinct row)


def _codes(values: np.ndarray, bins: int | None) -> np.ndarray:
    if bins is None:
        return np.unique(values, return_inverse=True)[1].astype(np.int64)
    edges = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.searchsorted(edges, values, side="right").astype(np.int64)


def _cells(discrete: dict[str, np.ndarray], continuous: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> _Cells:
    """Group rows into cells, binning the continuous keys only as much as :data:`MAX_CELLS` requires."""
    for bins in (None, *_BINS):
        keys = {**discrete, **{name: _codes(column, bins) for name, column in continuous.items()}}
        combined = np.zeros(len(next(iter(keys.values()))), dtype=np.int64)
        for column in keys.values():
            offset = column - column.min() if len(column) else column
            combined = combined * (int(offset.max(initial=0)) + 1) + offset
        unique, first, inverse, counts = np.unique(combined, return_index=True, return_inverse=True, return_counts=True)
        if len(unique) <= MAX_CELLS or bins == _BINS[-1]:
            means = {name: np.bincount(inverse, weights=column) / counts for name, column in values.items()}
            return _Cells(counts.astype(np.float64), {k: v[first] for k, v in keys.items()}, means, bins)
    raise AssertionError("unreachable")


def _weighted(metric: str, weights: np.ndarray, cells: _Cells, prefix: str, classes: int) -> np.ndarray:
    """The metric of every resample at once: ``weights`` (resamples x cells) -> (resamples,), NaN where undefined."""
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric in ("log_loss", "mae", "rmse", "r2"):
            loss = weights @ cells.values[f"{prefix}loss"] / total
            if metric == "rmse":
                return np.sqrt(loss)
            if metric != "r2":
                return loss
            y, y2 = weights @ cells.values[f"{prefix}y"], weights @ cells.values[f"{prefix}y2"]
            spread = y2 / total - (y / total) ** 2
            return np.where(spread > 1e-12, 1 - loss / spread, np.nan)
        if metric == "macro_f1":
            label, predicted = cells.keys[f"{prefix}y"], cells.keys[f"{prefix}predicted"]
            scores = []
            present = np.zeros((len(weights), 1))
            for k in range(classes):
                tp = weights @ ((label == k) & (predicted == k)).astype(np.float64)
                fp = weights @ ((label != k) & (predicted == k)).astype(np.float64)
                fn = weights @ ((label == k) & (predicted != k)).astype(np.float64)
                denominator = 2 * tp + fp + fn
                scores.append(np.where(denominator > 0, 2 * tp / np.where(denominator > 0, denominator, 1), 0.0))
                present = present + (denominator > 0)[:, None]
            return np.sum(scores, axis=0) / np.where(present[:, 0] > 0, present[:, 0], np.nan)
        # ranking metrics: cells in the order of the model's score, ties (one code) grouped
        code, label = cells.keys[f"{prefix}score"], cells.keys[f"{prefix}y"]
        order = np.argsort(code, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(code[order]) != 0])
        ordered = weights[:, order]
        positives = np.add.reduceat(ordered * label[order], starts, axis=1)
        negatives = np.add.reduceat(ordered * (1 - label[order]), starts, axis=1)
        n_pos, n_neg = positives.sum(axis=1), negatives.sum(axis=1)
        if metric == "roc_auc":
            below = np.cumsum(negatives, axis=1) - negatives
            return np.where(
                (n_pos > 0) & (n_neg > 0), (positives * (below + 0.5 * negatives)).sum(axis=1) / (n_pos * n_neg), np.nan
            )
        # average precision, from the highest score down (sklearn's definition: sum of dR x P)
        tp = np.cumsum(positives[:, ::-1], axis=1)
        fp = np.cumsum(negatives[:, ::-1], axis=1)
        precision = tp / np.where(tp + fp > 0, tp + fp, 1)
        return np.where(n_pos > 0, (positives[:, ::-1] * precision).sum(axis=1) / n_pos, np.nan)


def _exact(task: str, metric: str, rows: Scored, classes: Sequence[str], mask: np.ndarray) -> float | None:
    if not mask.any():
        return None
    value = exact_score(task, rows.labels[mask], {k: np.asarray(v)[mask] for k, v in rows.outputs.items()}, classes)
    found = value.get(metric)
    return None if found is None else float(found)


# ---------------------------------------------------------------------- the two designs
def _interval(
    metric: str, candidate: float | None, champion: float | None, boot: np.ndarray, binned: float, confidence: float
) -> tuple[float | None, float | None, float | None]:
    if candidate is None or champion is None:
        return None, None, None
    sign = 1.0 if higher_is_better(metric) else -1.0
    difference = sign * (candidate - champion)
    boot = boot[np.isfinite(boot)]
    if len(boot) < 0.9 * RESAMPLES or not np.isfinite(binned):
        # the metric is undefined on most resamples (e.g. one class only): no interval
        return difference, None, None
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    shift = difference - binned
    return difference, float(low + shift), float(high + shift)


def paired(
    task: str,
    metric: str,
    champion: Scored,
    candidate_outputs: Mapping[str, np.ndarray],
    *,
    classes: Sequence[str] = (),
    confidence: float = 0.95,
    seed: int = SEED,
) -> tuple[Interval, dict[str, Interval]]:
    """Paired bootstrap (shadow): ``champion`` rows with the candidate's ``candidate_outputs`` for the same rows.

    Returns the overall :class:`Interval` and one per slice value (empty without slices). Raises
    ``ValueError`` for a metric the task does not have.
    """
    candidate = Scored(champion.labels, candidate_outputs, champion.slices)
    first, second = _parts(task, metric, champion, classes), _parts(task, metric, candidate, classes)
    slices = champion.slices
    discrete = {f"a.{k}": v for k, v in first.discrete.items()} | {f"b.{k}": v for k, v in second.discrete.items()}
    if slices is not None:
        discrete["slice"] = np.unique(slices, return_inverse=True)[1]
    continuous = {f"a.{k}": v for k, v in first.continuous.items()} | {
        f"b.{k}": v for k, v in second.continuous.items()
    }
    values = {f"a.{k}": v for k, v in first.values.items()} | {f"b.{k}": v for k, v in second.values.items()}
    cells = _cells(discrete, continuous, values)
    weights = np.random.default_rng(seed).poisson(cells.counts, size=(RESAMPLES, len(cells.counts))).astype(np.float64)
    names = _slice_names(slices)

    def one(mask_rows: np.ndarray, mask_cells: np.ndarray) -> Interval:
        exact_a = _exact(task, metric, champion, classes, mask_rows)
        exact_b = _exact(task, metric, candidate, classes, mask_rows)
        sub = _Cells(
            cells.counts[mask_cells],
            {k: v[mask_cells] for k, v in cells.keys.items()},
            {k: v[mask_cells] for k, v in cells.values.items()},
            cells.bins,
        )
        w = weights[:, mask_cells]
        boot = _weighted(metric, w, sub, "b.", len(classes)) - _weighted(metric, w, sub, "a.", len(classes))
        counts = sub.counts[None, :]
        binned = float(
            (_weighted(metric, counts, sub, "b.", len(classes)) - _weighted(metric, counts, sub, "a.", len(classes)))[0]
        )
        sign = 1.0 if higher_is_better(metric) else -1.0
        rows = int(mask_rows.sum())
        return Interval(
            exact_b, exact_a, *_interval(metric, exact_b, exact_a, sign * boot, sign * binned, confidence), rows, rows
        )

    everything = np.ones(len(champion), dtype=bool)
    overall = one(everything, np.ones(len(cells.counts), dtype=bool))
    per_slice = {}
    for code, name in enumerate(names):
        per_slice[name] = one(slices == name, cells.keys["slice"] == code)
    return overall, per_slice


def two_sample(
    task: str,
    metric: str,
    champion: Scored,
    candidate: Scored,
    *,
    classes: Sequence[str] = (),
    confidence: float = 0.95,
    seed: int = SEED,
) -> tuple[Interval, dict[str, Interval]]:
    """Two-sample bootstrap (canary): the rows each version answered, each arm resampled on its own.

    Returns the overall :class:`Interval` and one per slice value seen in either arm (empty without
    slices). Raises ``ValueError`` for a metric the task does not have.
    """
    rng = np.random.default_rng(seed)
    names = _slice_names(None if champion.slices is None else np.concatenate([champion.slices, candidate.slices]))
    arms = []
    for rows in (champion, candidate):
        parts = _parts(task, metric, rows, classes)
        discrete = dict(parts.discrete)
        if rows.slices is not None:
            discrete["slice"] = np.searchsorted(np.array(names, dtype=object), rows.slices)
        cells = _cells(discrete, parts.continuous, parts.values) if len(rows) else None
        weights = (
            None if cells is None else rng.poisson(cells.counts, size=(RESAMPLES, len(cells.counts))).astype(np.float64)
        )
        arms.append((rows, cells, weights))

    def side(arm, slice_code: int | None) -> tuple[float | None, np.ndarray, float, int]:
        rows, cells, weights = arm
        mask_rows = np.ones(len(rows), dtype=bool) if slice_code is None else rows.slices == names[slice_code]
        exact = _exact(task, metric, rows, classes, mask_rows)
        if cells is None or not mask_rows.any():
            return exact, np.full(RESAMPLES, np.nan), float("nan"), int(mask_rows.sum())
        mask = np.ones(len(cells.counts), dtype=bool) if slice_code is None else cells.keys["slice"] == slice_code
        sub = _Cells(
            cells.counts[mask],
            {k: v[mask] for k, v in cells.keys.items()},
            {k: v[mask] for k, v in cells.values.items()},
            cells.bins,
        )
        boot = _weighted(metric, weights[:, mask], sub, "", len(classes))
        binned = float(_weighted(metric, sub.counts[None, :], sub, "", len(classes))[0])
        return exact, boot, binned, int(mask_rows.sum())

    def one(slice_code: int | None) -> Interval:
        exact_a, boot_a, binned_a, rows_a = side(arms[0], slice_code)
        exact_b, boot_b, binned_b, rows_b = side(arms[1], slice_code)
        sign = 1.0 if higher_is_better(metric) else -1.0
        bounds = _interval(metric, exact_b, exact_a, sign * (boot_b - boot_a), sign * (binned_b - binned_a), confidence)
        return Interval(exact_b, exact_a, *bounds, rows_b, rows_a)

    return one(None), {name: one(code) for code, name in enumerate(names)}


def _slice_names(slices: np.ndarray | None) -> list[str]:
    if slices is None:
        return []
    return sorted({str(value) for value in slices.tolist()})
