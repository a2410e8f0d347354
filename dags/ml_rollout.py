"""
## ml_rollout

Decides, every hour, on the rollout in progress (the version aliased `candidate`, served beside the
champion in `shadow` or as a `canary`), and carries the decision out. The numbers come from the dataset
spec's `rollout:` section (defaults in brackets):

- **rollback** at once when a guardrail breaks, labels or not: the candidate's error rate above
  `max_error_rate` [2 %], its p99 latency above `max_p99_latency_ms` [250 ms] (the server's `/metrics`), or
  the gap between its predictions and the champion's above `max_prediction_gap` [0.15];
- **continue** while either version has fewer than `min_labelled_rows` [200] labelled rows;
- then the gate metric's difference, candidate against champion, with a bootstrap confidence interval
  [`confidence` 95 %] overall and per slice (paired in shadow, two-sample in a canary):
  **rollback** when its upper bound is below `-margin` [0.01] overall or on a slice; **promote** (shadow) or
  **step** to the next `canary_steps` share [5 % → 25 % → 100 %], promote at the last, when its lower bound
  is above `-margin` overall, no slice's estimate is below `-margin`, and the current share has had
  `min_labelled_rows` of its own;
- **rollback** when still undecided after `max_duration_hours` [72].

A promotion serves the candidate alone, smoke-tests it, and only then moves `champion`. Every decision is
tagged on the candidate (`rollout.decision`, `rollout.reason`, `rollout.numbers`, ...); the returned XCom
is the decision with its numbers. A promotion or a rollback sends an alert (see the README's *Alerts*).
With no rollout in progress the run is skipped.

To stop or force a rollout, trigger this DAG with `force` = `rollback` or `promote` and a `reason` (the form,
or `POST /api/v2/dags/ml_rollout/dagRuns` with `{"conf": {"force": "rollback", "reason": "..."}}`).
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from mlops_airflow.dag_defaults import dag_defaults
from mlops_airflow.params import rollout_control_params


@dag(
    dag_id="ml_rollout",
    schedule="@hourly",
    tags=["ml", "deployment", "rollout", "customer_churn"],
    params=rollout_control_params(),
    doc_md=__doc__,
    **dag_defaults(retries=2, retry_delay_seconds=30, execution_timeout=timedelta(minutes=30)),
)
def ml_rollout():
    @task
    def decide_and_act(params=None, dag_run=None) -> dict:
        """Decide on the rollout in progress and carry the decision out; returns the decision dict."""
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from include.rollout.controller import RolloutPromotionFailed, run_controller
        from mlops_airflow.alerts import alert_rollout_decision
        from mlops_airflow.runtime import kubernetes_client, task_settings_and_spec

        settings, spec = task_settings_and_spec()
        try:
            decision = run_controller(
                settings,
                spec,
                # the run's own time, not the clock: a retry reads the same window and decides the same
                now=dag_run.run_after,
                airflow_run_id=dag_run.run_id,
                force=params["force"],
                force_reason=params["reason"],
                actor=getattr(dag_run, "triggering_user_name", None) or "airflow",
                kubernetes_client=kubernetes_client(settings),
            )
        except RolloutPromotionFailed as failed:
            # recorded as rolled back, the champion served again: a retry would find no rollout
            alert_rollout_decision(failed.decision)
            raise AirflowFailException(str(failed)) from None
        if decision is None:
            raise AirflowSkipException("no rollout in progress")
        # a promotion or a rollback alerts (once); a step or a wait for labels does not
        alert_rollout_decision(decision)
        return decision

    decide_and_act()


dag = ml_rollout()

if __name__ == "__main__":
    dag.test()
