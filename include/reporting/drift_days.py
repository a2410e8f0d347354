"""Drift per day for the Models page: each judged window's figures, per-column scores and decision.

Two stores hold a window (:mod:`include.monitoring.drift_store`): the reports folder keeps
its ``metrics.json`` (every column's score and threshold, the CBPE estimate) and
``report.html`` under ``<reports>/drift/<day>/``; the ``drift_monitoring`` experiment keeps
one run per window with the retraining decision tagged on it
(:func:`~include.monitoring.drift_store.record_decision`). A day is listed when either holds
it; a figure neither holds is None.
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from include.monitoring.drift_store import DRIFT_EXPERIMENT, METRICS_JSON, REPORT_HTML
from include.reporting.drift_history import UNKNOWN, window_summary
from include.util.fields import finite_or_none

if TYPE_CHECKING:
    from include.settings import Settings

log = logging.getLogger(__name__)

# the newest days shown: the page stays small whatever the history
MAX_DAYS = 120
DAY_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _drift_folder(settings: Settings):
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(settings.reports)
    return filesystem, f"{root.rstrip('/')}/drift"


def report_file(settings: Settings, day: str, name: str = REPORT_HTML) -> bytes:
    """The bytes of one day's stored report file (``report.html`` or ``metrics.json``).

    Raises ``ValueError`` for a ``day`` that is not ``YYYY-MM-DD`` or a file name that is not one
    of those two (so no path can escape the reports folder), ``FileNotFoundError`` when the day
    has no such file.
    """
    if not DAY_PATTERN.match(str(day)):
        raise ValueError(f"a report day is a date such as 2026-03-01, got {day!r}")
    if name not in (REPORT_HTML, METRICS_JSON):
        raise ValueError(f"a report file is {REPORT_HTML} or {METRICS_JSON}, got {name!r}")
    filesystem, folder = _drift_folder(settings)
    path = f"{folder}/{day}/{name}"
    if not filesystem.exists(path):
        raise FileNotFoundError(f"no {name} stored for {day} under {settings.reports}")
    return filesystem.cat_file(path)


def _stored_days(settings: Settings) -> dict[str, dict[str, Any] | None]:
    """Each day folder of the reports store: its metrics.json (None when unreadable)."""
    try:
        filesystem, folder = _drift_folder(settings)
        if not filesystem.exists(folder):
            return {}
        names = [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in filesystem.ls(folder, detail=False)]
    except Exception as exc:  # noqa: BLE001 - the page shows what MLflow holds and says the store failed
        log.warning("drift reports under %s could not be listed: %s", settings.reports, exc)
        return {}
    days: dict[str, dict[str, Any] | None] = {}
    for day in sorted(name for name in names if DAY_PATTERN.match(name))[-MAX_DAYS:]:
        try:
            days[day] = json.loads(report_file(settings, day, METRICS_JSON))
        except (OSError, ValueError) as exc:
            log.warning("drift metrics of %s unreadable: %s", day, exc)
            days[day] = None
    return days


def _runs_by_day(client, model_name: str) -> dict[str, Any]:
    from mlflow.entities import ViewType

    experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.model_name = '{model_name}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=MAX_DAYS * 4,
        order_by=["attributes.start_time DESC"],
    )
    by_day: dict[str, Any] = {}
    for run in runs:
        day = str(run.data.tags.get("window_start", ""))[:10]
        if DAY_PATTERN.match(day):
            by_day.setdefault(day, run)
    return by_day


def _number(value: Any) -> float | None:
    return finite_or_none(value) if value not in (None, UNKNOWN) else None


def _day(day: str, metrics: dict[str, Any] | None, run, report_url: str | None) -> dict[str, Any]:
    metrics = metrics if isinstance(metrics, dict) else {}
    window = window_summary(run) if run is not None else {}
    tags = run.data.tags if run is not None else {}
    columns = metrics.get("columns") if isinstance(metrics.get("columns"), dict) else {}
    band = metrics.get("estimated_roc_auc_band")
    drifted = metrics.get("drifted_columns")
    if not isinstance(drifted, list):
        listed = window.get("drifted_columns", UNKNOWN)
        drifted = [] if listed in ("none", UNKNOWN) else [name.strip() for name in str(listed).split(",")]
    return {
        "day": day,
        "window_start": metrics.get("window_start") or window.get("window_start"),
        "window_end": metrics.get("window_end") or window.get("window_end"),
        "champion_version": metrics.get("champion_version") or tags.get("champion_version"),
        "rows": metrics.get("rows"),
        "labelled_rows": metrics.get("labelled_rows"),
        "drift_share": _number(metrics.get("drift_share", window.get("drift_share"))),
        "drift_share_threshold": _number(metrics.get("drift_share_threshold", window.get("drift_share_threshold"))),
        "drifted_columns": drifted,
        "columns": {
            name: {
                "score": _number(result.get("drift_score")),
                "threshold": _number(result.get("threshold")),
                "drifted": bool(result.get("drifted")),
                "method": result.get("method"),
            }
            for name, result in columns.items()
            if isinstance(result, dict)
        },
        "prediction_drift": _number((metrics.get("prediction_drift") or {}).get("drift_score")),
        "metric": metrics.get("metric"),
        "score": _number(metrics.get("score")),
        "reference_score": _number(metrics.get("reference_score")),
        "performance_drop": _number(metrics.get("performance_drop", window.get("performance_drop"))),
        "estimated_roc_auc": _number(metrics.get("estimated_roc_auc")),
        "estimated_roc_auc_band": [_number(x) for x in band] if isinstance(band, list) and len(band) == 2 else None,
        "reference_roc_auc": _number(metrics.get("reference_roc_auc")),
        "crossed": window.get("crossed"),
        "decision": tags.get("decision"),
        "decision_reason": tags.get("decision.reason"),
        "retrain_triggered": {"true": True, "false": False}.get(str(tags.get("retrain_triggered", "")).lower()),
        "mlflow_run_id": run.info.run_id if run is not None else None,
        "report_url": report_url,
    }


def drift_days(settings: Settings, client, report_url=None) -> dict[str, Any]:
    """Each judged day of ``settings.model_name``, oldest first, with the columns measured.

    ``client`` is an ``MlflowClient``; ``report_url(day)`` gives the link to a day's
    ``report.html`` (None: no link). Returns ``{"status": "known" | "unknown", "reason": str,
    "columns": [name, ...], "days": [day, ...]}``; a day: ``day`` (``YYYY-MM-DD``), window bounds,
    ``champion_version``, ``rows``, ``drift_share`` and its threshold, ``drifted_columns``,
    ``columns`` (name -> ``{"score", "threshold", "drifted", "method"}``), ``prediction_drift``,
    ``metric``, ``score`` (realised, on labels), ``reference_score``, ``performance_drop``,
    ``estimated_roc_auc`` and ``estimated_roc_auc_band`` (CBPE), ``reference_roc_auc``,
    ``crossed``, ``decision``, ``decision_reason``, ``retrain_triggered`` (bool | None),
    ``mlflow_run_id`` and ``report_url`` (None without a stored report). Only the newest
    :data:`MAX_DAYS` days are listed. Never raises: a store that cannot be read is ``unknown``.
    """
    reason = ""
    try:
        runs = _runs_by_day(client, settings.model_name)
    except Exception as exc:  # noqa: BLE001 - the page says unknown and why
        runs, reason = {}, f"the {DRIFT_EXPERIMENT} experiment could not be read: {exc}"
    stored = _stored_days(settings)
    days = []
    for day in sorted(set(runs) | set(stored))[-MAX_DAYS:]:
        run, metrics = runs.get(day), stored.get(day)
        link = report_url(day) if report_url is not None and day in stored else None
        days.append(_day(day, metrics, run, link))
    columns: list[str] = []
    for day in days:
        columns += [name for name in day["columns"] if name not in columns]
    return {"status": UNKNOWN if reason else "known", "reason": reason, "columns": columns, "days": days}
