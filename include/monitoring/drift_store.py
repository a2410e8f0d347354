"""Where a window's drift results are kept: the reports folder (fsspec) and the MLflow experiment.

Each window has one folder, ``<reports>/drift/<window start date>/``, and one run in
the :data:`DRIFT_EXPERIMENT` experiment, found by its ``window_start`` tag
(:func:`_window_key`). Both are overwritten by a re-run of the window, so a retried or
backfilled task leaves one answer per window, never two.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from include.util.fs import write_atomically
from include.util.text import metric_key

if TYPE_CHECKING:
    from include.settings import Settings

log = logging.getLogger(__name__)

DRIFT_EXPERIMENT = "drift_monitoring"
WINDOW_START_TAG = "window_start"
REPORT_HTML = "report.html"
METRICS_JSON = "metrics.json"


class DriftRunNotFound(LookupError):
    """No ``drift_monitoring`` run exists for the window."""


def _as_utc(value: datetime | date, what: str) -> datetime:
    if isinstance(value, datetime):
        # a naive datetime is a data-interval bound in UTC, as Airflow's are
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=UTC)
    raise ValueError(f"{what} must be a datetime, got {value!r}")


def _window_key(window_start: datetime | date) -> str:
    """The ``window_start`` tag: one spelling per instant, whatever timezone the caller used."""
    start = _as_utc(window_start, "window_start")
    return datetime(
        start.year,
        start.month,
        start.day,
        start.hour,
        start.minute,
        start.second,
        start.microsecond,
        tzinfo=UTC,
    ).isoformat()


def _reports_folder(settings: Settings, window_start: datetime | date):
    import fsspec

    filesystem, root = fsspec.core.url_to_fs(settings.reports)
    day = _as_utc(window_start, "window_start").date().isoformat()
    return filesystem, f"{root.rstrip('/')}/drift/{day}"


def _is_local(filesystem) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(filesystem, LocalFileSystem)


def _put_atomically(filesystem, source: Path, target: str) -> None:
    if not _is_local(filesystem):
        # object stores have no folders, but some create here what a write needs (s3fs: a missing bucket)
        filesystem.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
    # temp + rename on a local disk; one PUT on an object store: readers see the old file or the new one
    write_atomically(target, source.read_bytes(), filesystem=filesystem)


def _shown(filesystem, path: str) -> str:
    return path if _is_local(filesystem) else filesystem.unstrip_protocol(path)


def _flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    flat = {
        "drift_share": metrics["drift_share"],
        "drifted_columns": len(metrics["drifted_columns"]),
        "prediction_drift_score": metrics["prediction_drift"]["drift_score"],
        "prediction_drifted": float(metrics["prediction_drift"]["drifted"]),
        "rows": metrics["rows"],
        "labelled_rows": metrics["labelled_rows"],
    }
    for name, result in metrics["columns"].items():
        flat[metric_key("drift_score", name)] = result["drift_score"]
    # logged under the metric's own name (e.g. roc_auc, reference_roc_auc), as the gate's are
    metric = metrics.get("metric", "score")
    for key, name in (
        ("score", metric),
        ("reference_score", f"reference_{metric}"),
        ("performance_drop", "performance_drop"),
    ):
        if metrics.get(key) is not None:
            flat[name] = metrics[key]
    return {key: float(value) for key, value in flat.items()}


def _find_runs(client, experiment_id: str, window_key: str) -> list:
    from mlflow.entities import ViewType

    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.{WINDOW_START_TAG} = '{window_key}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
    )


def _window_run(client, experiment_id: str, window_key: str, run_name: str):
    """The one run of this window: found, or created; a concurrent twin is folded into the oldest."""
    runs = _find_runs(client, experiment_id, window_key)
    if not runs:
        created = client.create_run(experiment_id, run_name=run_name, tags={WINDOW_START_TAG: window_key})
        runs = _find_runs(client, experiment_id, window_key) or [created]
    keep, *extra = runs
    for duplicate in extra:
        # two writers raced past the search above: both keep the oldest, the others go
        client.delete_run(duplicate.info.run_id)
    return keep


def persist_results(
    settings: Settings, window_start: datetime, window_end: datetime, metrics: dict[str, Any], html_path: str | Path
) -> dict[str, str]:
    """Store one window's report and metrics, replacing whatever an earlier attempt stored.

    ``<reports>/drift/<window start date>/`` gets ``report.html`` and ``metrics.json``;
    the ``drift_monitoring`` experiment gets exactly one run per window (found by its
    ``window_start`` tag and overwritten). Descriptive values are tags, not params:
    MLflow refuses to change a logged param, and a re-run after the champion moved
    must be able to record the new champion version.

    ``metrics`` is :func:`include.monitoring.drift.run_drift_check`'s result; a naive
    ``window_start``/``window_end`` is taken as UTC. Returns ``{"report_html": ...,
    "metrics_json": ..., "mlflow_run_id": ...}``: the two files' locations (plain
    paths on a local disk, URLs on an object store) and the run's id. Raises
    ``FileNotFoundError`` when ``html_path`` is not a file, ``ValueError`` when the
    window does not start before it ends or ``metrics`` holds a non-finite number,
    ``KeyError`` when ``metrics`` lacks a key of that result, and the filesystem's
    or MLflow's errors when storing fails (a retry overwrites what was stored).
    """
    import mlflow
    from mlflow.entities import Metric, RunTag

    from include import tracking

    html_path = Path(html_path)
    if not html_path.is_file():
        raise FileNotFoundError(f"drift report {html_path} does not exist")
    start, end = _as_utc(window_start, "window_start"), _as_utc(window_end, "window_end")
    if start >= end:
        raise ValueError(f"window_start {start.isoformat()} must be before window_end {end.isoformat()}")
    window_key = _window_key(start)
    document = {"window_start": window_key, "window_end": _window_key(end), **metrics}
    metrics_text = json.dumps(document, indent=2, sort_keys=True, allow_nan=False)

    filesystem, folder = _reports_folder(settings, start)
    with tempfile.TemporaryDirectory(prefix="mlops-drift-") as staging:
        staged_html, staged_json = Path(staging, REPORT_HTML), Path(staging, METRICS_JSON)
        shutil.copyfile(html_path, staged_html)
        staged_json.write_text(metrics_text, encoding="utf-8")
        _put_atomically(filesystem, staged_html, f"{folder}/{REPORT_HTML}")
        _put_atomically(filesystem, staged_json, f"{folder}/{METRICS_JSON}")

        experiment_id = tracking.ensure_experiment(settings, DRIFT_EXPERIMENT)
        client = mlflow.MlflowClient()
        run = _window_run(client, experiment_id, window_key, f"drift {start.date().isoformat()}")
        run_id = run.info.run_id
        flat = _flat_metrics(metrics)
        # a value the earlier attempt logged but this one has not (e.g. labels gone) must not linger
        stale = sorted(set(run.data.metrics) - set(flat))
        timestamp = int(datetime.now(UTC).timestamp() * 1000)
        logged = [Metric(key, value, timestamp, 0) for key, value in flat.items()]
        logged += [Metric(key, float("nan"), timestamp, 0) for key in stale]
        reference = metrics["reference_data"]
        tags = {
            WINDOW_START_TAG: window_key,
            "window_end": _window_key(end),
            "model_name": settings.model_name,
            "champion_version": metrics["champion_version"],
            "reference_data.path": reference["path"],
            "reference_data.md5": reference["md5"],
            "reference_data.rev": reference["rev"],
            "drifted_columns": ", ".join(metrics["drifted_columns"]) or "none",
            "drift_share_threshold": repr(metrics.get("drift_share_threshold")),
            "performance_drop_threshold": repr(metrics.get("performance_drop_threshold")),
            "performance_note": metrics.get("performance_note", ""),
            **{metric_key("drift_method", name): result["method"] for name, result in metrics["columns"].items()},
            "drift_method.prediction": metrics["prediction_drift"]["method"],
        }
        # MLflow takes at most 1000 metrics per batch; a dataset with more columns is split
        for offset in range(0, max(len(logged), 1), 1000):
            client.log_batch(
                run_id,
                metrics=logged[offset : offset + 1000],
                tags=[RunTag(key, str(value)) for key, value in tags.items()] if offset == 0 else [],
            )
        client.log_artifacts(run_id, staging)
        client.set_terminated(run_id, "FINISHED")
    paths = {
        "report_html": _shown(filesystem, f"{folder}/{REPORT_HTML}"),
        "metrics_json": _shown(filesystem, f"{folder}/{METRICS_JSON}"),
        "mlflow_run_id": run_id,
    }
    log.info("drift results for window %s: %s", window_key, json.dumps(paths))
    return paths


def record_decision(settings: Settings, window_start: datetime, decision: dict[str, Any]) -> str:
    """Tag the window's run with the retraining decision.

    ``decision`` holds ``outcome``, ``reason`` and ``retrain`` (and optionally
    ``retrain_triggered``, which wins over ``retrain`` for the ``retrain_triggered``
    tag), as :meth:`include.monitoring.decision.RetrainDecision.to_dict` gives them.
    Returns the run id (str). Raises ``ValueError`` when a key is missing and
    :class:`DriftRunNotFound` when the window has no run yet.
    """
    import mlflow

    from include import tracking

    for key in ("outcome", "reason", "retrain"):
        if key not in decision:
            raise ValueError(f"decision is missing {key!r} (got keys {sorted(decision)})")
    window_key = _window_key(window_start)
    experiment_id = tracking.ensure_experiment(settings, DRIFT_EXPERIMENT)
    client = mlflow.MlflowClient()
    runs = _find_runs(client, experiment_id, window_key)
    if not runs:
        raise DriftRunNotFound(
            f"no {DRIFT_EXPERIMENT} run for the window starting {window_key}: "
            f"the drift check must persist its results first"
        )
    run_id = runs[0].info.run_id
    triggered = decision.get("retrain_triggered", decision["retrain"])
    client.set_tag(run_id, "decision", str(decision["outcome"]))
    client.set_tag(run_id, "decision.reason", str(decision["reason"])[:4000])
    client.set_tag(run_id, "retrain_triggered", str(bool(triggered)).lower())
    return run_id
