"""Trigger ``ml_training`` when drift warrants it, and only then, at most once.

The decision (``include.monitoring.decision.decide``) and the trigger happen in
one task that runs in the ``retrain_trigger`` pool (one slot): concurrent
drift runs, e.g. a backfill with several active runs, take turns, so each sees
the training run the previous one created and none triggers a second. The
triggered run has a deterministic id per window, so a retried trigger finds
its run already there, creates nothing and ends as skipped.

The operator triggers the run the way Airflow 3's ``TriggerDagRunOperator``
does, by raising ``DagRunTriggerException`` for the task runner to act on, but
derives from the SDK's ``BaseOperator``: importing the provider's operator pulls
in ``airflow.models`` and the database layer, which would make every parse of
``drift_monitor`` several times slower. It does not wait for the training run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, BaseOperatorLink

TRAINING_DAG_ID = "ml_training"
RETRAIN_POOL = "retrain_trigger"
# the last window that triggered a retraining, for the cooldown (kept in data time)
LAST_TRIGGER_VARIABLE = "drift_monitor_last_retrain"
ACTIVE_STATES = ["queued", "running"]

# The rest of what the task runner reads from the exception, as TriggerDagRunOperator passes
# it for a run nobody waits for (so the states and the polling go unused): no logical date,
# and an existing run is never reset.
_TRIGGER_POLICY: dict[str, Any] = {
    "logical_date": None,
    "reset_dag_run": False,
    "skip_when_already_exists": True,
    "wait_for_completion": False,
    "allowed_states": ["success"],
    "failed_states": ["failed"],
    "poke_interval": 60,
    "deferrable": False,
}


def training_run_id(window_start) -> str:
    return f"drift__{window_start:%Y-%m-%d}"


class TrainingRunLink(BaseOperatorLink):
    """The task's "Retraining run" button: the URL pushed to XCom when the run was triggered.

    Airflow 3 serializes an operator link as its XCom key, and the UI reads the URL
    from that XCom, so nothing here runs on the API server.
    """

    name = "Retraining run"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return XCom.get_value(ti_key=ti_key, key=self.xcom_key) or ""


class RetrainOnDriftOperator(BaseOperator):
    """Reads the drift metrics of ``drift_task_id``, decides, and triggers ``ml_training`` or skips."""

    ui_color = "#fde2c8"
    operator_extra_links = (TrainingRunLink(),)

    def __init__(self, *, drift_task_id: str, **kwargs):
        kwargs.setdefault("pool", RETRAIN_POOL)
        super().__init__(**kwargs)
        self.drift_task_id = drift_task_id

    def execute(self, context) -> Any:
        from datetime import date

        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowSkipException, DagRunTriggerException

        from include.monitoring.decision import decide
        from include.monitoring.records import DriftMetrics
        from include.monitoring.window import checked_interval
        from mlops_airflow.alerts import alert_drift_retrain, dag_run_url

        ti, params, dag_run = context["ti"], context["params"], context["dag_run"]
        window_start, window_end = checked_interval(
            context.get("data_interval_start"), context.get("data_interval_end"), dag_run.run_after
        )
        metrics = ti.xcom_pull(task_ids=self.drift_task_id)
        last_trigger = Variable.get(LAST_TRIGGER_VARIABLE, default=None, deserialize_json=True)
        # the cooldown counts a trigger only once its run exists: a trigger that failed for good
        # (the Variable is written just before it) must not silence the next windows
        if last_trigger and not ti.get_dr_count(dag_id=TRAINING_DAG_ID, run_ids=[last_trigger["training_run_id"]]):
            self.log.info("the last trigger's run %s does not exist: no cooldown", last_trigger["training_run_id"])
            last_trigger = None
        last_window_end = date.fromisoformat(last_trigger["window_end"]) if last_trigger else None
        decision = decide(
            metrics,
            drift_share_threshold=params["drift_share_threshold"],
            performance_drop_threshold=params["performance_drop_threshold"],
            active_training_runs=ti.get_dr_count(dag_id=TRAINING_DAG_ID, states=ACTIVE_STATES),
            last_trigger_window_end=last_window_end,
            window_start=window_start.date(),
            window_end=window_end.date(),
            cooldown_days=params["cooldown_days"],
            is_backfill=str(dag_run.run_type) in ("backfill", "DagRunType.BACKFILL_JOB"),
            allow_backfill=params["allow_backfill_retrain"],
            estimated_drop_threshold=params.get("estimated_drop_threshold"),
        )
        self.log.info("decision for window %s..%s: %s: %s", window_start, window_end, decision.outcome, decision.reason)
        self._record(context, window_start, decision.to_dict())
        ti.xcom_push(key="decision", value=decision.to_dict())
        if not decision.retrain:
            raise AirflowSkipException(f"{decision.outcome}: {decision.reason}")

        # decide() has refused a result without a usable drift_share; the rest is passed on as found
        measured = DriftMetrics.from_partial(metrics)
        run_id = training_run_id(window_start)
        Variable.set(
            LAST_TRIGGER_VARIABLE,
            {
                "window_start": window_start.date().isoformat(),
                "window_end": window_end.date().isoformat(),
                "training_run_id": run_id,
                "drift_run_id": dag_run.run_id,
            },
            serialize_json=True,
        )
        conf = {
            "reason": f"drift in window {window_start.date()}..{window_end.date()}: {decision.reason}"[:500],
            # the retraining window ends with the drifted window, so it learns from the new data
            "training_window_end": (window_end - timedelta(days=1)).date().isoformat(),
            **_same_window_length(measured.reference_window_days),
            "drift": {
                "window_start": window_start.isoformat(),
                "window_end": window_end.isoformat(),
                "drift_share": measured.drift_share,
                "drifted_columns": measured.drifted_columns,
                "performance_drop": measured.performance_drop,
                "estimated_drop": measured.estimated_drop,
                "drift_run_id": dag_run.run_id,
            },
        }
        ti.xcom_push(key=TrainingRunLink().xcom_key, value=dag_run_url(TRAINING_DAG_ID, run_id))
        # once per champion and training run: a retried trigger or a later window of the same
        # drift finds the alert already sent
        alert_drift_retrain(
            champion_version=measured.champion_version,
            window_start=window_start.date().isoformat(),
            window_end=window_end.date().isoformat(),
            reason=decision.reason,
            drift=conf["drift"],
            training_dag_id=TRAINING_DAG_ID,
            training_run_id=run_id,
            context=context,
        )
        self.log.info("triggering %s run %s", TRAINING_DAG_ID, run_id)
        # The task runner creates the run; when it already exists (a retry, a cleared
        # task) it marks this task skipped instead of creating a second one.
        raise DagRunTriggerException(
            trigger_dag_id=TRAINING_DAG_ID,
            dag_run_id=run_id,
            conf=conf,
            note=f"retraining: {decision.reason}",
            **_TRIGGER_POLICY,
        )

    def _record(self, context, window_start, decision: dict) -> None:
        from include.monitoring.drift import record_decision
        from mlops_airflow.runtime import task_settings

        record_decision(task_settings(), window_start, decision)


def _same_window_length(days) -> dict:
    """The retraining learns from as many days as the champion did (``days``, the drift result's
    ``reference_window_days``): a low-traffic table (a row a day) would otherwise get ml_training's
    default window, too few rows to pass validation."""
    return {"training_window_days": min(int(days), 3660)} if isinstance(days, int) and days >= 1 else {}
