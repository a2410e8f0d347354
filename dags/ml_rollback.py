"""
## ml_rollback

Puts a registered model version back in service, in either profile: redeploys it through
the same deployer as `ml_training` (smoke test included), moves `champion` to it (the
version it replaces becomes `previous_champion`), and leaves an audit trail as tags on both
versions: `rollback.from`, `rollback.to`, `rollback.at`, `rollback.by`, `rollback.reason`,
`rollback.airflow_run_id`.

Trigger it manually with `target` = a version number, or `previous` for the champion before
the current one. A target that does not exist, or is already the champion, is refused
before anything changes.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import dag, task

from mlops_airflow.dag_defaults import dag_defaults
from mlops_airflow.params import rollback_params


@dag(
    dag_id="ml_rollback",
    schedule=None,
    tags=["ml", "deployment", "rollback", "customer_churn"],
    params=rollback_params(),
    doc_md=__doc__,
    **dag_defaults(retries=1, retry_delay_seconds=30, execution_timeout=timedelta(minutes=30)),
)
def ml_rollback():
    @task
    def rollback(params=None, dag_run=None) -> dict:
        from include import pipeline
        from mlops_airflow.runtime import kubernetes_client, task_settings_and_spec

        settings, spec = task_settings_and_spec()
        actor = getattr(dag_run, "triggering_user_name", None) or "airflow"
        return pipeline.rollback(
            settings,
            spec,
            params["target"],
            actor=actor,
            reason=params["reason"],
            airflow_run_id=dag_run.run_id,
            kubernetes_client=kubernetes_client(settings),
        )

    rollback()


dag = ml_rollback()

if __name__ == "__main__":
    dag.test()
