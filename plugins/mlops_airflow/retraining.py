"""Trigger ``ml_training`` when drift warrants it, and only then, at most once.

The decision (``include.monitoring.decision.decide``) and the trigger happen in
one task that runs in the ``retrain_trigger`` pool (one slot): concurrent
drift runs, e.g. a backfill with several active runs, take turns, so each sees
the training run the previous one created and none triggers a second. The
triggered run has a deterministic id per window, so a retried trigger finds
its run already there and creates nothing.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowSkipException

TRAINING_DAG_ID = "ml_training"
RETRAIN_POOL = "retrain_trigger"
# the last window that triggered a retraining, for the cooldown (kept in data time)
LAST_TRIGGER_VARIABLE = "drift_monitor_last_retrain"
ACTIVE_STATES = ["queued", "running"]


def training_run_id(window_start) -> str:
    return f"drift__{window_start:%Y-%m-%d}"


class RetrainOnDriftOperator(TriggerDagRunOperator):
    """Reads the drift metrics of ``drift_task_id``, decides, and triggers ``ml_training`` or skips."""

    ui_color = "#fde2c8"

    def __init__(self, *, drift_task_id: str, **kwargs):
        kwargs.setdefault("pool", RETRAIN_POOL)
        super().__init__(trigger_dag_id=TRAINING_DAG_ID, skip_when_already_exists=True, logical_date=None,
                         openlineage_inject_parent_info=False, **kwargs)
        self.drift_task_id = drift_task_id

    def execute(self, context) -> Any:
        from include.monitoring.decision import decide

        ti, params, dag_run = context["ti"], context["params"], context["dag_run"]
        window_start, window_end = context["data_interval_start"], context["data_interval_end"]
        metrics = ti.xcom_pull(task_ids=self.drift_task_id)
        last_trigger = Variable.get(LAST_TRIGGER_VARIABLE, default=None, deserialize_json=True)
        last_window_end = None
        if last_trigger:
            from datetime import date

            last_window_end = date.fromisoformat(last_trigger["window_end"])
        decision = decide(
            metrics,
            drift_share_threshold=params["drift_share_threshold"],
            performance_drop_threshold=params["performance_drop_threshold"],
            active_training_runs=ti.get_dr_count(dag_id=TRAINING_DAG_ID, states=ACTIVE_STATES),
            last_trigger_window_end=last_window_end,
            window_start=window_start.date(), window_end=window_end.date(),
            cooldown_days=params["cooldown_days"],
            is_backfill=str(dag_run.run_type) in ("backfill", "DagRunType.BACKFILL_JOB"),
            allow_backfill=params["allow_backfill_retrain"],
        )
        self.log.info("decision for window %s..%s: %s: %s", window_start, window_end, decision.outcome,
                      decision.reason)
        self._record(context, decision.to_dict())
        ti.xcom_push(key="decision", value=decision.to_dict())
        if not decision.retrain:
            raise AirflowSkipException(f"{decision.outcome}: {decision.reason}")

        run_id = training_run_id(window_start)
        Variable.set(LAST_TRIGGER_VARIABLE, {
            "window_start": window_start.date().isoformat(), "window_end": window_end.date().isoformat(),
            "training_run_id": run_id, "drift_run_id": dag_run.run_id,
        }, serialize_json=True)
        self.trigger_run_id = run_id
        self.note = f"retraining: {decision.reason}"
        self.conf = {
            "reason": f"drift in window {window_start.date()}..{window_end.date()}: {decision.reason}"[:500],
            # the retraining window ends with the drifted window, so it learns from the new data
            "training_window_end": (window_end - timedelta(days=1)).date().isoformat(),
            "drift": {
                "window_start": window_start.isoformat(), "window_end": window_end.isoformat(),
                "drift_share": metrics.get("drift_share"), "drifted_columns": metrics.get("drifted_columns"),
                "performance_drop": metrics.get("performance_drop"), "drift_run_id": dag_run.run_id,
            },
        }
        self.log.info("triggering %s run %s", TRAINING_DAG_ID, run_id)
        return super().execute(context)

    def _record(self, context, decision: dict) -> None:
        from include.monitoring.drift import record_decision
        from mlops_airflow.runtime import task_settings

        record_decision(task_settings(), context["data_interval_start"], decision)
