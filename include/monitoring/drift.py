"""The nightly drift check: served traffic of one window against the data the champion learned from.

One window (a data interval of the inference log) is compared with a *reference*:
the training part of the exact dataset snapshot the current champion was trained
on, found through the champion's lineage tags, together with the champion's own
predicted probabilities on it. An Evidently 0.7 report measures

- data drift of every feature column (a per-column distance and a drifted flag),
  and the dataset drift share = drifted feature columns / feature columns;
- prediction drift: the distance between the reference's and the window's
  predictions (:func:`prediction_column`: the probability of a binary model, the
  predicted class of a multiclass one, the value of a regression one);
- when enough labels have arrived, the champion's score on the labelled rows in
  the task's metric (the spec's ``gate.metric``: ROC AUC, macro-F1, RMSE, ...)
  and how much worse it is than on the snapshot's held-out rows.

Per-column methods and verdicts
===============================
Evidently picks a method per column from the *reference size* (p-value tests at or
below 1000 reference rows), and p-value tests flag any window once it is large
enough. The methods here are the distances whatever the reference size:
normed Wasserstein (numeric) and Jensen-Shannon (categorical), or a feature's own
``psi`` (:mod:`include.monitoring.columns`). A distance, in turn, is mostly
sampling noise on a small window, so each score is judged against its null
distribution at the window's size (:mod:`include.monitoring.calibration`), with
Evidently's fixed 0.1 available as the spec's ``monitoring.verdict: fixed``.
Missing values are dropped before measuring; a column with no value at all is
refused (:class:`DriftInputError`).

Exact figures, sampled plots
============================
The scores, verdicts, drift share and ROC AUC are computed on *all* rows of the
window and the reference, with :mod:`include.monitoring.drift_stats` (the same
statistics Evidently's stattests compute, vectorised) and scikit-learn. The
Evidently report in ``report.html`` is drawn from a seeded sample of at most
:data:`REPORT_SAMPLE_ROWS` rows per side, which the page and ``metrics.json``
(``report_sample``) say; a window and a reference no larger than that are shown
whole. Evidently's own report on a million rows per side takes minutes and
gigabytes, because it recomputes each statistic several times and plots every row.

Nothing here decides whether to retrain (see :mod:`include.monitoring.decision`);
the thresholds passed in are recorded with the results and shown in the report
next to the numbers they apply to.

Modules
=======
This module runs the check (:func:`run_drift_check`, :func:`check_drift`) and is
where the rest of the code imports the check's names from. The pieces live beside
it: :mod:`include.monitoring.window` (can the window be compared at all),
:mod:`include.monitoring.reference` (the champion's training rows),
:mod:`include.monitoring.drift_report` (the sampled Evidently page) and
:mod:`include.monitoring.drift_store` (the reports folder and the MLflow runs).
"""

from __future__ import annotations

import logging
import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from include.monitoring.columns import (
    plan_columns,
)
from include.monitoring.drift_report import (
    REPORT_SAMPLE_ROWS,
    REPORT_SAMPLE_SEED,
    REPORT_SAMPLE_TOP_UP_ROWS,
    _drift_snapshot,
    _measurable,
    _performance_report,
    _report_html,
    report_sample,
)
from include.monitoring.drift_store import (
    DRIFT_EXPERIMENT,
    METRICS_JSON,
    REPORT_HTML,
    WINDOW_START_TAG,
    DriftRunNotFound,
    _as_utc,
    persist_results,
    record_decision,
)
from include.monitoring.profile import estimate_roc_auc
from include.monitoring.records import REFERENCE_DATA_KEYS, DriftMetrics, ReportSample
from include.monitoring.reference import (
    LABEL_COLUMN,
    LINEAGE_TAGS,
    PREDICTION_COLUMN,
    PROBABILITY_COLUMN,
    DriftReferenceError,
    Reference,
    _prediction_is_numeric,
    prediction_column,
    reference_for_champion,
    window_days_of,
)
from include.monitoring.verdicts import _finite, judge_columns, measure_drift
from include.monitoring.window import (
    DriftInputError,
    WindowCheck,
    _all_missing,
    _check_not_empty_columns,
    _check_structure,
    _label_values,
    check_window,
)
from include.util.fs import write_atomically

if TYPE_CHECKING:
    from include.data.spec import DatasetSpec
    from include.settings import Settings

__all__ = [
    "DRIFT_EXPERIMENT",
    "LABEL_COLUMN",
    "LINEAGE_TAGS",
    "METRICS_JSON",
    "MIN_LABELLED_ROWS",
    "PREDICTION_COLUMN",
    "PROBABILITY_COLUMN",
    "REPORT_HTML",
    "REPORT_SAMPLE_ROWS",
    "REPORT_SAMPLE_SEED",
    "REPORT_SAMPLE_TOP_UP_ROWS",
    "WINDOW_START_TAG",
    "DriftInputError",
    "DriftReferenceError",
    "DriftRunNotFound",
    "Reference",
    "WindowCheck",
    "check_drift",
    "check_window",
    "judge_columns",
    "measure_drift",
    "persist_results",
    "prediction_column",
    "record_decision",
    "reference_for_champion",
    "report_sample",
    "run_drift_check",
]

log = logging.getLogger(__name__)

# below this many labelled rows (or with one class only) the window's score is noise, not a measurement
MIN_LABELLED_ROWS = 50


def _any_measurable(values: pd.Series) -> bool:
    if values.dtype == object:
        return not _all_missing(values)
    return bool(_measurable(values).any())


def run_drift_check(
    current: pd.DataFrame,
    reference: Reference,
    spec: DatasetSpec,
    *,
    drift_share_threshold: float,
    performance_drop_threshold: float,
    html_path: str | Path,
    min_labelled_rows: int = MIN_LABELLED_ROWS,
    report_sample_rows: int = REPORT_SAMPLE_ROWS,
    estimated_drop_threshold: float | None = None,
) -> dict[str, Any]:
    """Measure ``current`` against ``reference`` on all rows; save the Evidently report's HTML; return the numbers.

    The thresholds are recorded in the result (and shown in the report); whether to act
    on them is :func:`include.monitoring.decision.decide`'s call. The page written to
    ``html_path`` (replaced atomically, folders created) shows Evidently's reports
    drawn from at most ``report_sample_rows`` rows per side; the window's score needs
    at least ``min_labelled_rows`` labelled rows.

    Returns :meth:`DriftMetrics.to_dict <include.monitoring.records.DriftMetrics.to_dict>`,
    a JSON-ready dict, key by key (a "column result" is ``{"drift_score": float,
    "method": str, "threshold": float, "drifted": bool}``, drifted meaning score >=
    threshold):

    - ``rows`` (int): rows in the window; ``labelled_rows`` (int): those with a label;
    - ``drift_share`` (float, 0..1): drifted feature columns / feature columns;
    - ``drifted_columns`` (list[str]): the drifted feature columns, in spec order;
    - ``columns`` (dict[str, column result]): every feature column, in spec order;
    - ``prediction_column`` (str) and ``prediction_drift`` (its column result);
    - ``metric`` (str): the reference's metric (the spec's ``gate.metric``);
    - ``score`` (float | None): that metric on the window's labelled rows, None when
      not measured (too few labelled rows, or undefined on them);
    - ``reference_score`` (float | None): the champion's score on the held-out rows;
    - ``performance_drop`` (float | None): how much worse ``score`` is than
      ``reference_score``, in the metric's units (negative: better); None unless both exist;
    - ``performance_note`` (str): how the score was measured, or why it was not;
    - ``champion_version`` (str); ``reference_data`` (``{"path", "md5", "rev"}``, str);
    - ``reference_rows`` (int); ``reference_window_days`` (int | None): how many days
      the champion's snapshot spans, None when its lineage does not say;
    - ``drift_share_threshold``, ``performance_drop_threshold`` (float): as passed in;
    - ``report_sample`` (dict): ``sampled`` (bool), ``seed`` (int), ``current_rows``,
      ``current_rows_total``, ``reference_rows``, ``reference_rows_total`` (int):
      what the page's Evidently part was drawn from.

    Raises :class:`DriftInputError` for an empty window, a missing, retyped or empty
    window column, one with no finite value, or labels that cannot be typed for the
    task; ``ValueError`` for a threshold that is not a finite number, a
    ``report_sample_rows`` that is not a positive integer, a ``reference`` that is
    not a :class:`Reference`, or a reference frame lacking a column or a measurable
    value; ``RuntimeError`` when a statistic comes out non-finite; ``OSError`` when
    the page cannot be written.
    """
    from include.evaluation.metrics import loss_against, score

    for name, value in (
        ("drift_share_threshold", drift_share_threshold),
        ("performance_drop_threshold", performance_drop_threshold),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if estimated_drop_threshold is not None and not (
        isinstance(estimated_drop_threshold, (int, float)) and 0 < estimated_drop_threshold < math.inf
    ):
        raise ValueError(f"estimated_drop_threshold must be a number > 0 or None, got {estimated_drop_threshold!r}")
    if isinstance(report_sample_rows, bool) or not isinstance(report_sample_rows, int) or report_sample_rows < 1:
        raise ValueError(f"report_sample_rows must be a positive integer, got {report_sample_rows!r}")
    if not isinstance(reference, Reference):
        raise ValueError(f"reference must be a Reference, got {type(reference).__name__}")
    if len(current) == 0:
        raise DriftInputError(
            "the window holds no served prediction: nothing to compare (check_window reports this as insufficient_data)"
        )
    _check_structure(current, spec)
    _check_not_empty_columns(current, spec)
    predicted = prediction_column(spec)
    measured = [*spec.feature_names, predicted]
    missing = [name for name in measured if name not in reference.frame.columns]
    if missing:
        raise ValueError(f"reference frame is missing column(s) {', '.join(missing)}")

    numeric = {*spec.numeric_features, *([predicted] if _prediction_is_numeric(spec) else [])}
    for frame, side, names in (
        (current, "window", [name for name in measured if name in numeric]),
        (reference.frame, "reference", measured),
    ):
        # the window's all-missing columns are refused above; here: a numeric one with only infinities
        unmeasurable = [name for name in names if not _any_measurable(frame[name])]
        if unmeasurable:
            # e.g. only infinities: nothing to measure, which must never read as "no drift"
            message = (
                f"{side} column(s) {', '.join(repr(name) for name in unmeasurable)} hold no finite value to measure"
            )
            raise DriftInputError(message) if side == "window" else ValueError(message)

    current_sample = report_sample(current, measured, report_sample_rows)
    reference_sample = report_sample(reference.frame, measured, report_sample_rows)
    plans = plan_columns(spec, predicted, _prediction_is_numeric(spec))
    # the exact measurements run in worker threads while this one draws the (sampled) report
    per_column, drift_snapshot = measure_drift(
        current,
        reference,
        spec,
        while_computing=lambda: _drift_snapshot(current_sample, reference_sample, spec, plans, numeric),
    )
    features = [name for name in plans if name != predicted]
    columns = {name: per_column[name] for name in features}
    drifted_columns = [name for name, result in columns.items() if result.drifted]

    labels = current[LABEL_COLUMN] if LABEL_COLUMN in current.columns else pd.Series(pd.NA, index=current.index)
    labelled = current.loc[labels.notna().to_numpy()]
    label_values = _label_values(labelled[LABEL_COLUMN], spec) if len(labelled) else np.zeros(0)
    metric = reference.metric
    window_score, performance_snapshot = None, None
    if len(labelled) < min_labelled_rows:
        performance_note = (
            f"not measured: {len(labelled)} labelled row(s) in the window, fewer than {min_labelled_rows}"
        )
    else:
        outputs = {name: labelled[name].to_numpy() for name in labelled.columns}
        window_score = score(spec.task, label_values, outputs, spec.classes).get(metric)
        if window_score is None:
            performance_note = (
                f"not measured: {metric} is undefined on the {len(labelled)} labelled rows "
                f"(all labels {label_values[0]!r}; ROC AUC needs both classes)"
            )
        else:
            window_score = _finite(window_score, metric)
            performance_snapshot, shown = _performance_report(labelled, label_values, spec, report_sample_rows)
            performance_note = f"measured on {len(labelled)} labelled rows"
            if shown < len(labelled):
                performance_note += f" (the report below plots a seeded sample of {shown})"
    reference_score = None if reference.holdout_score is None else float(reference.holdout_score)
    performance_drop = (
        loss_against(metric, window_score, reference_score)
        if window_score is not None and reference_score is not None
        else None
    )

    estimate = estimate_roc_auc(reference, current)
    metrics = DriftMetrics(
        rows=int(len(current)),
        labelled_rows=int(len(labelled)),
        drift_share=len(drifted_columns) / len(features),
        drifted_columns=drifted_columns,
        columns=columns,
        prediction_column=predicted,
        prediction_drift=per_column[predicted],
        metric=metric,
        score=window_score,
        reference_score=reference_score,
        performance_drop=performance_drop,
        performance_note=performance_note,
        champion_version=str(reference.model_version),
        reference_data={key: str(reference.data_ref.get(key, "")) for key in REFERENCE_DATA_KEYS},
        reference_rows=int(len(reference.frame)),
        # how many days the champion learned from: a retraining it triggers learns from as many
        reference_window_days=window_days_of(reference.data_ref),
        drift_share_threshold=float(drift_share_threshold),
        performance_drop_threshold=float(performance_drop_threshold),
        # what the HTML report's Evidently part is drawn from; every figure above uses all rows
        report_sample=ReportSample(
            sampled=len(current_sample) < len(current) or len(reference_sample) < len(reference.frame),
            seed=REPORT_SAMPLE_SEED,
            current_rows=int(len(current_sample)),
            current_rows_total=int(len(current)),
            reference_rows=int(len(reference_sample)),
            reference_rows_total=int(len(reference.frame)),
        ),
        estimated_roc_auc=None if estimate is None else estimate.roc_auc,
        estimated_roc_auc_band=None if estimate is None else [estimate.lower, estimate.upper],
        reference_roc_auc=reference.holdout_roc_auc,
        estimated_drop=(
            None
            if estimate is None or reference.holdout_roc_auc is None
            else float(reference.holdout_roc_auc - estimate.roc_auc)
        ),
        estimated_drop_threshold=None if estimated_drop_threshold is None else float(estimated_drop_threshold),
    ).to_dict()
    write_atomically(html_path, _report_html(metrics, drift_snapshot, performance_snapshot, performance_note))
    return metrics


def check_drift(
    settings: Settings,
    spec: DatasetSpec,
    window_start: datetime,
    window_end: datetime,
    *,
    min_rows: int,
    drift_share_threshold: float,
    performance_drop_threshold: float,
    window_days: int = 1,
    estimated_drop_threshold: float | None = None,
) -> dict[str, Any]:
    """The nightly step for ``[window_start, window_end)``: read, check, compare, persist.

    With ``window_days`` above 1 the traffic compared is that of the ``window_days``
    days ending at ``window_end`` (for a model that serves a few rows a day); the
    results are still kept under ``window_start``, the run's own window.
    A naive ``window_start``/``window_end`` is taken as UTC.

    Returns ``{"status": "insufficient_data", "rows": int, "reason": str}`` when the
    window is too small (nothing is written), else ``{"status": "ok", **metrics,
    "report_html": str, "metrics_json": str, "mlflow_run_id": str}``: the keys of
    :func:`run_drift_check` and of :func:`persist_results`.

    Raises ``ValueError`` when the window does not start before it ends or
    ``window_days`` is not an integer >= 1; :class:`DriftInputError` for a window
    that cannot be compared (see :func:`check_window`);
    :class:`DriftReferenceError` when the champion's reference cannot be built;
    :class:`~include.monitoring.inference_log.InferenceLogError` for an unreadable
    log file; and what :func:`run_drift_check` and :func:`persist_results` raise.
    """
    from include.monitoring.inference_log import read_window

    start, end = _as_utc(window_start, "window_start"), _as_utc(window_end, "window_end")
    if start >= end:
        raise ValueError(f"window_start {start.isoformat()} must be before window_end {end.isoformat()}")
    if isinstance(window_days, bool) or not isinstance(window_days, int) or window_days < 1:
        raise ValueError(f"window_days must be an integer >= 1, got {window_days!r}")
    # plain datetimes: Airflow hands in pendulum ones, whose arithmetic may drop the zone
    traffic_start = datetime.fromtimestamp(end.timestamp(), UTC) - timedelta(days=window_days)
    if traffic_start.timestamp() > start.timestamp():
        traffic_start = start
    current = read_window(settings.inference_log, traffic_start, end, with_labels=True)
    verdict = check_window(current, spec, min_rows)
    if not verdict.ok:
        log.info("window %s..%s: insufficient data: %s", start.isoformat(), end.isoformat(), verdict.reason)
        return {"status": verdict.status, "rows": verdict.rows, "reason": verdict.reason}
    reference = reference_for_champion(settings, spec)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-report-") as staging:
        html_path = Path(staging, REPORT_HTML)
        metrics = run_drift_check(
            current,
            reference,
            spec,
            drift_share_threshold=drift_share_threshold,
            performance_drop_threshold=performance_drop_threshold,
            html_path=html_path,
            estimated_drop_threshold=estimated_drop_threshold,
        )
        paths = persist_results(settings, start, end, metrics, html_path)
    log.info(
        "window %s..%s: drift share %.2f (%s), prediction drift %.4f, %s %s, drop %s",
        start.isoformat(),
        end.isoformat(),
        metrics["drift_share"],
        ", ".join(metrics["drifted_columns"]) or "no drifted column",
        metrics["prediction_drift"]["drift_score"],
        metrics["metric"],
        metrics["score"],
        metrics["performance_drop"],
    )
    return {"status": "ok", **metrics, **paths}
