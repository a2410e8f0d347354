"""
## drift_monitor

Every night, checks the previous day's served traffic for drift against the data the
current champion learned from, and triggers `ml_training` when the drift warrants it.

**Which day a run checks.** A run checks its data interval, one UTC day: the nightly run
created just after midnight checks the day that just closed, and a run triggered with logical
date *D* checks the day before *D* (`[D-1, D)`). A run triggered without a logical date
(`POST /api/v2/dags/drift_monitor/dagRuns` with `"logical_date": null`) checks the last
complete UTC day before it was triggered. With `window_days` above 1 it compares the traffic
of the `window_days` days ending with that day (a low-volume model is still monitored every night).

1. **check_drift**: loads the window's inference log and the champion's monitoring profile
   (its training rows, the null distribution of each column's drift score, its CBPE
   calibration; stored when it was deployed). Each column's drift score is judged against
   what windows of the same size drawn from the training data score (calibrated verdicts,
   with at most the spec's `monitoring.false_alarm_rate` of false alarms over all columns), or
   against Evidently's fixed 0.1 with `monitoring.verdict: fixed`. It reports the dataset drift
   share, prediction drift, the task's metric on labelled requests, and for a binary model the
   ROC AUC estimated before any label (CBPE). The HTML report and metrics JSON go under
   `reports/drift/<day>/` and to one MLflow run per window in the `drift_monitoring` experiment.
   Re-running a window replaces its results. An empty window, or one below `min_rows`, ends as
   *skipped: insufficient data*; a window with a missing, retyped or all-empty column fails.
   In the kubernetes profile the check runs as a pod (`python -m include.monitoring.nightly`,
   sized by the Variables `drift_cpu` / `drift_memory`), so no window loads a worker.
2. **trigger_retraining**: retrains when the drift share, the performance drop or (when set)
   the estimated ROC AUC drop crosses its threshold, unless `ml_training` is already queued or
   running, a retraining run was triggered from a window within the cooldown, or the run
   belongs to a backfill (unless `allow_backfill_retrain`). The triggered run (id
   `drift__<day>`) carries the reason, the window and the numbers, and trains on a window
   ending with the drifted day.

Backfill a range from the UI (*Trigger* ▸ *Backfill*) or the REST API (`POST /api/v2/backfills`).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag

from mlops_airflow.dag_defaults import dag_defaults
from mlops_airflow.drift_check import drift_check_task
from mlops_airflow.params import drift_params
from mlops_airflow.retraining import RetrainOnDriftOperator


@dag(
    dag_id="drift_monitor",
    # one run per UTC day, started just after the day closes
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    tags=["ml", "monitoring", "drift", "customer_churn"],
    params=drift_params(),
    doc_md=__doc__,
    **dag_defaults(
        retries=2,
        retry_delay_seconds=30,
        execution_timeout=timedelta(minutes=30),
        # early, so that a backfill can check replayed history (a user's own table may start years
        # back); catchup stays off, so nothing before the latest closed day runs unless asked
        start_date=pendulum.datetime(2000, 1, 1, tz="UTC"),
        max_active_runs=4,
    ),
)
def drift_monitor():
    check_drift = drift_check_task(execution_timeout=timedelta(minutes=30))
    trigger_retraining = RetrainOnDriftOperator(
        task_id="trigger_retraining", drift_task_id=check_drift.task_id, execution_timeout=timedelta(minutes=5)
    )
    check_drift >> trigger_retraining


dag = drift_monitor()

if __name__ == "__main__":
    dag.test()
