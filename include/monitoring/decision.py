"""Whether a drift check should retrain the model: a pure function of its numbers and the guards.

Rules, in order (the first that applies decides):

1. The window had too little data: ``skipped``. No verdict is drawn from it.
2. ``drift_share >= drift_share_threshold``, ``performance_drop >= performance_drop_threshold``
   or, with an ``estimated_drop_threshold``, ``estimated_drop`` (the ROC AUC lost by CBPE's
   estimate, before any label) at or above it means the model wants retraining; otherwise ``no_drift``. A missing or NaN
   ``drift_share`` is never "no drift": :func:`decide` raises (fail closed). A
   missing ``performance_drop`` (too few labels) only means performance was not measured.
3. A retraining wanted by a backfill run is ``skipped`` unless ``allow_backfill``.
4. A retraining wanted while ``ml_training`` is already queued or running is ``skipped``.
5. Cooldown, in data time: a window within ``cooldown_days`` of the window that last
   triggered, in either direction (a backfill walks back in time), is ``skipped``.
   The window that last triggered is not: deciding it again (a retried or cleared
   task) says ``retrain`` again, and the trigger, whose run id is fixed per window,
   finds the run it created instead of a second one, or creates it if the first
   attempt died before it could.
6. Otherwise ``retrain``.

Cooldown is measured on data-interval dates, never on the wall clock, so a
cleared or retried task decides the same way it did the first time.

The numbers are read with :meth:`DriftMetrics.from_partial
<include.monitoring.records.DriftMetrics.from_partial>`, which keeps what is there
(a NaN, a string) so that rule 2 can refuse an unusable ``drift_share`` by name
instead of the reader refusing the whole result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import Any

from include.monitoring.records import DriftMetrics
from include.util.fields import finite_or_none

OUTCOMES = ("retrain", "no_drift", "skipped")


@dataclass
class RetrainDecision:
    """Whether to ``retrain``, the ``outcome`` (``retrain``, ``no_drift`` or ``skipped``) and the
    ``reason`` with the numbers it compared."""

    retrain: bool
    outcome: str  # "retrain" | "no_drift" | "skipped"
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """The decision as a dict with keys ``retrain`` (bool), ``outcome`` and ``reason`` (str)."""
        return asdict(self)


def _check_threshold(name: str, value: Any) -> float:
    number = finite_or_none(value)
    if number is None or number <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _check_day(name: str, value: Any) -> date:
    # a datetime is a date too; comparing one with a plain date raises, so refuse it up front
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(f"{name} must be a datetime.date, got {value!r}")
    return value


def _drift_sentence(metrics: DriftMetrics, drift_share: float, threshold: float) -> str:
    columns = metrics.drifted_columns
    total = len(metrics.columns)
    if isinstance(columns, (list, tuple)) and columns:
        counted = f"{len(columns)} of {total} columns: " if total else ""
        detail = f" ({counted}{', '.join(str(column) for column in columns)})"
    else:
        detail = " (no drifted column)"
    relation = ">=" if drift_share >= threshold else "<"
    return f"drift share {drift_share:.2f} {relation} threshold {threshold:.2f}{detail}"


def _performance_sentence(metrics: DriftMetrics, drop: float | None, threshold: float) -> str:
    if drop is None:
        note = metrics.performance_note
        return f"performance not measured ({note})" if note else "performance not measured (no labels)"
    metric = metrics.metric or "score"
    window, reference = finite_or_none(metrics.score), finite_or_none(metrics.reference_score)
    scores = f" ({metric} {reference:.3f} -> {window:.3f})" if window is not None and reference is not None else ""
    relation = ">=" if drop >= threshold else "<"
    return f"{metric} drop {drop:.3f} {relation} threshold {threshold:.3f}{scores}"


def _estimated_sentence(metrics: DriftMetrics, drop: float | None, threshold: float | None) -> str | None:
    if threshold is None:
        return None
    if drop is None:
        return "estimated ROC AUC not available"
    relation = ">=" if drop >= threshold else "<"
    return (
        f"estimated ROC AUC drop {drop:.3f} {relation} threshold {threshold:.3f} "
        f"({finite_or_none(metrics.reference_roc_auc):.3f} -> {finite_or_none(metrics.estimated_roc_auc):.3f}, CBPE)"
    )


def decide(
    metrics: Mapping[str, Any],
    *,
    drift_share_threshold: float,
    performance_drop_threshold: float,
    active_training_runs: int,
    last_trigger_window_end: date | None,
    window_start: date,
    window_end: date,
    cooldown_days: int,
    is_backfill: bool,
    allow_backfill: bool,
    estimated_drop_threshold: float | None = None,
) -> RetrainDecision:
    """Apply the rules of this module, in order; every reason states the numbers it compared.

    ``metrics`` is ``check_drift``'s result: ``{"status": "insufficient_data", "rows": int,
    "reason": str}``, or ``{"status": "ok", ...}`` with the keys of
    :class:`~include.monitoring.records.DriftMetrics`. Returns a :class:`RetrainDecision`. Raises
    ``ValueError`` for a bad argument or a result without a usable ``drift_share`` (missing, NaN, not a number).
    """
    if not isinstance(metrics, Mapping):
        raise ValueError(f"metrics must be the drift check's result (a mapping), got {type(metrics).__name__}")
    drift_threshold = _check_threshold("drift_share_threshold", drift_share_threshold)
    if drift_threshold > 1:
        raise ValueError(f"drift_share_threshold is a share of columns and must be <= 1, got {drift_share_threshold!r}")
    drop_threshold = _check_threshold("performance_drop_threshold", performance_drop_threshold)
    estimated_threshold = (
        None
        if estimated_drop_threshold is None
        else _check_threshold("estimated_drop_threshold", estimated_drop_threshold)
    )
    if isinstance(active_training_runs, bool) or not isinstance(active_training_runs, int) or active_training_runs < 0:
        raise ValueError(f"active_training_runs must be an integer >= 0, got {active_training_runs!r}")
    if isinstance(cooldown_days, bool) or not isinstance(cooldown_days, int) or cooldown_days < 0:
        raise ValueError(f"cooldown_days must be an integer >= 0, got {cooldown_days!r}")
    start, end = _check_day("window_start", window_start), _check_day("window_end", window_end)
    if start >= end:
        raise ValueError(f"window_start {start} must be before window_end {end}")
    last = None if last_trigger_window_end is None else _check_day("last_trigger_window_end", last_trigger_window_end)

    if metrics.get("status") == "insufficient_data":
        rows = metrics.get("rows")
        return RetrainDecision(
            False,
            "skipped",
            f"insufficient data in window {start}..{end} ({rows} rows): {metrics.get('reason') or 'no reason given'}",
        )

    measured = DriftMetrics.from_partial(metrics)
    drift_share = finite_or_none(measured.drift_share)
    if drift_share is None:
        raise ValueError(
            f"the drift check's result has no usable drift_share (got {measured.drift_share!r}); "
            f"refusing to call window {start}..{end} undrifted"
        )
    drop = finite_or_none(measured.performance_drop)
    drift_part = _drift_sentence(measured, drift_share, drift_threshold)
    performance_part = _performance_sentence(measured, drop, drop_threshold)
    estimated_drop = finite_or_none(measured.estimated_drop)
    estimated_part = _estimated_sentence(measured, estimated_drop, estimated_threshold)
    drifted = drift_share >= drift_threshold
    degraded = drop is not None and drop >= drop_threshold
    estimated_degraded = estimated_threshold is not None and estimated_drop is not None
    estimated_degraded = estimated_degraded and estimated_drop >= estimated_threshold
    if not (drifted or degraded or estimated_degraded):
        parts = [drift_part, performance_part, *([estimated_part] if estimated_part else [])]
        return RetrainDecision(False, "no_drift", "; ".join(parts))

    trigger = "; ".join(
        part
        for part, hit in ((drift_part, drifted), (performance_part, degraded), (estimated_part, estimated_degraded))
        if hit
    )
    if is_backfill and not allow_backfill:
        return RetrainDecision(
            False,
            "skipped",
            f"{trigger}, but the run belongs to a backfill; set allow_backfill_retrain to retrain from backfills",
        )
    if active_training_runs > 0:
        return RetrainDecision(
            False,
            "skipped",
            f"{trigger}, but ml_training already queued/running ({active_training_runs} active run(s))",
        )
    if last is not None:
        cooldown = timedelta(days=cooldown_days)
        if last == end:
            return RetrainDecision(
                True,
                "retrain",
                f"{trigger}: retraining (this window decided so before; its retraining run is created once)",
            )
        if start < last + cooldown and end > last - cooldown:
            return RetrainDecision(
                False,
                "skipped",
                f"{trigger}, but retraining triggered from window ending "
                f"{last}, within cooldown of {cooldown_days} days "
                f"(this window: {start}..{end})",
            )
    return RetrainDecision(True, "retrain", f"{trigger}: retraining")
