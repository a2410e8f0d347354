"""A version's drift history, for its model card: the windows judged while it was champion.

Each window the nightly check judged is one run of the ``drift_monitoring`` experiment
(:mod:`include.monitoring.drift_store`), tagged with the ``champion_version`` that served it
and the thresholds it was judged by. A window crossed a limit when its drift share reached
its ``drift_share_threshold``, or its measured performance drop reached its
``performance_drop_threshold`` (the same ``>=`` rules as the retraining decision).
"""

from __future__ import annotations

import math
from typing import Any

from include.monitoring.drift_store import DRIFT_EXPERIMENT, WINDOW_START_TAG

UNKNOWN = "unknown"
MAX_WINDOWS = 5000


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def window_summary(run) -> dict[str, Any]:
    """One window's figures (a ``drift_monitoring`` run's) and whether (and why) it crossed a limit.

    Returns a dict: ``window_start``, ``window_end``, ``drift_share`` and ``drift_share_threshold``,
    ``drifted_columns``, ``performance_drop`` and its threshold, ``decision``, ``run_id``, ``crossed``
    (None when it cannot be told) and ``reasons`` (list of str); a figure the run lacks is ``"unknown"``.
    """
    metrics, tags = run.data.metrics, run.data.tags
    drift_share, drift_threshold = _float(metrics.get("drift_share")), _float(tags.get("drift_share_threshold"))
    drop, drop_threshold = _float(metrics.get("performance_drop")), _float(tags.get("performance_drop_threshold"))
    reasons = []
    if drift_share is not None and drift_threshold is not None and drift_share >= drift_threshold:
        reasons.append(f"drift share {drift_share:.2f} >= threshold {drift_threshold:.2f}")
    if drop is not None and drop_threshold is not None and drop >= drop_threshold:
        reasons.append(f"performance drop {drop:.4f} >= threshold {drop_threshold:.4f}")
    judged = drift_share is not None and drift_threshold is not None
    return {
        "window_start": tags.get(WINDOW_START_TAG, UNKNOWN),
        "window_end": tags.get("window_end", UNKNOWN),
        "drift_share": UNKNOWN if drift_share is None else drift_share,
        "drift_share_threshold": UNKNOWN if drift_threshold is None else drift_threshold,
        "drifted_columns": tags.get("drifted_columns", UNKNOWN),
        "performance_drop": UNKNOWN if drop is None else drop,
        "performance_drop_threshold": UNKNOWN if drop_threshold is None else drop_threshold,
        "decision": tags.get("decision", UNKNOWN),
        "run_id": run.info.run_id,
        "crossed": bool(reasons) if judged or reasons else None,
        "reasons": reasons,
    }


def drift_history(client, model_name: str, version: str) -> dict[str, Any]:
    """The drift windows judged with ``version`` of ``model_name`` as champion, read with ``client`` (an MlflowClient).

    Returns ``{"status": "known", "windows_checked": int, "windows_unjudged": int,
    "windows_over_threshold": [window, ...]}`` (each window: start, end, drift share and
    threshold, drifted columns, performance drop and threshold, decision, run id and the
    reasons it crossed), oldest first; or ``{"status": "unknown", "reason": str}`` when the
    experiment cannot be read.
    """
    from mlflow.entities import ViewType

    try:
        experiment = client.get_experiment_by_name(DRIFT_EXPERIMENT)
        runs = (
            []
            if experiment is None
            else client.search_runs(
                [experiment.experiment_id],
                filter_string=f"tags.champion_version = '{version}' and tags.model_name = '{model_name}'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=MAX_WINDOWS,
            )
        )
    except Exception as exc:  # noqa: BLE001 - the card says unknown and why
        return {"status": UNKNOWN, "reason": f"the {DRIFT_EXPERIMENT} experiment could not be read: {exc}"}
    windows = sorted((window_summary(run) for run in runs), key=lambda window: str(window["window_start"]))
    return {
        "status": "known",
        "windows_checked": len(windows),
        "windows_unjudged": sum(window["crossed"] is None for window in windows),
        "windows_over_threshold": [window for window in windows if window["crossed"]],
    }


def summary(drift: dict[str, Any]) -> str:
    """One sentence on ``drift`` (:func:`drift_history`'s result) for the card."""
    if drift.get("status") != "known":
        return f"unknown: {drift.get('reason', 'the drift history was not read')}"
    checked, crossed = drift["windows_checked"], len(drift["windows_over_threshold"])
    if checked == 0:
        return "none known yet: no drift window has been judged with this version as champion"
    unjudged = drift.get("windows_unjudged", 0)
    tail = f"; {unjudged} window(s) could not be judged (figures missing)" if unjudged else ""
    return f"{crossed} of {checked} window(s) judged with this version as champion crossed a threshold{tail}"
