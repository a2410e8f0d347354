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

import pendulum
from airflow.sdk import Param, dag, task

from mlops_airflow.retries import retry_args

DEFAULT_ARGS = {
    "owner": "ml-platform",
    **retry_args(retries=1, default_delay_seconds=30),
    "execution_timeout": timedelta(minutes=30),
}


@dag(
    dag_id="ml_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["ml", "deployment", "rollback", "customer_churn"],
    params={
        "target": Param(
            "previous",
            type="string",
            pattern=r"^(previous|[1-9][0-9]*)$",
            section="Rollback",
            title="Version to serve",
            description='A registered version number, or "previous" for the previous champion.',
        ),
        "reason": Param(
            "rollback",
            type="string",
            minLength=1,
            maxLength=500,
            section="Rollback",
            description="Why; recorded on both model versions.",
        ),
    },
    default_args=DEFAULT_ARGS,
    doc_md=__doc__,
)
def ml_rollback():
    @task
    def rollback(params=None, dag_run=None) -> dict:
        from include import pipeline
        from include.data.spec import load_spec
        from mlops_airflow.runtime import kubernetes_client, task_settings

        settings = task_settings()
        actor = getattr(dag_run, "triggering_user_name", None) or "airflow"
        return pipeline.rollback(
            settings,
            load_spec(settings.dataset_spec),
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
