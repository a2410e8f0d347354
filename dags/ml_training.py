"""
## ml_training

Trains, evaluates and deploys the model of the dataset spec (`MLOPS_DATASET_SPEC`; the demo: churn),
one version per run:

1. **snapshot**: the training window's daily partitions become a DVC-tracked dataset version
   (XCom carries its path, content hash and git rev, never the data).
2. **validate**: the dataset's Great Expectations suite runs on that snapshot; a failure stops
   the run before training and the log lists every failed expectation with its observed value.
3. **train**: `python -m include.training.train` on a GPU pod (kubernetes profile) or as a local
   subprocess (local profile); the model, with its preprocessing, is logged to MLflow.
4. **evaluate**: challenger and current champion scored on the same held-out rows, overall and
   per slice; the challenger must answer within the latency budget.
5. **gate**: the challenger must reach the bar on the gate metric (the dataset spec's `gate`, or the
   form's `gate_metric` / `gate_min`) and may not lose more than `max_regression` against the
   champion, overall or on any slice. A rejection skips the rest: nothing is promoted.
6. **register**: a model version with its lineage tags and alias `challenger`, and its model card
   (`model_card/model_card.md` and `.json` in the version's MLflow run).
7. **approval** (optional, Variable `deploy_approval_required`): a person approves or rejects
   the deploy in the UI; who, when and their comment are tagged on the model version.
8. **deploy**: as the form's `rollout` says (default: the dataset spec's `rollout.mode`). `direct`: served,
   smoke-tested with real requests, and only then aliased `champion`. `shadow` / `canary`: served beside the
   champion, smoke-tested, aliased `candidate`; `ml_rollout` then promotes or rolls it back from live labels.
   Without a champion yet, a rollout falls back to `direct`.

Trigger it from the UI (the form explains each param), the REST API, or the `drift_monitor` DAG.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from airflow.sdk import dag, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops_airflow.alerts import alert_gate_rejected, on_deploy_failed, on_validation_failed
from mlops_airflow.approval import APPROVAL_VARIABLE, DeployApprovalOperator
from mlops_airflow.dag_defaults import dag_defaults
from mlops_airflow.params import training_params
from mlops_airflow.training import training_task

log = logging.getLogger(__name__)


@dag(
    dag_id="ml_training",
    schedule=None,
    tags=["ml", "training", "customer_churn"],
    params=training_params(),
    doc_md=__doc__,
    **dag_defaults(retries=2, retry_delay_seconds=20, execution_timeout=timedelta(minutes=20)),
)
def ml_training():
    @task
    def snapshot(params=None, dag_run=None) -> dict:
        from include import pipeline
        from include.data.partitions import UnreadablePartition
        from mlops_airflow.runtime import task_settings_and_spec

        settings, spec = task_settings_and_spec()
        start, end = pipeline.training_window(
            params["training_window_end"], params["training_window_days"], dag_run.run_after.date()
        )
        try:
            return pipeline.snapshot(settings, spec, start, end)
        except UnreadablePartition as broken:
            # a truncated or corrupt file stays broken on a retry: fail now, before any training
            raise AirflowFailException(f"snapshot refused: {broken}") from None

    @task(retries=0, on_failure_callback=on_validation_failed)
    def validate(data_ref: dict) -> dict:
        from include import pipeline
        from mlops_airflow.runtime import task_settings_and_spec

        try:
            return pipeline.validate(*task_settings_and_spec(), data_ref)
        except pipeline.ValidationFailed as failed:
            # bad data stays bad on a retry: fail now, before any training
            raise AirflowFailException(f"data validation failed:\n{failed}") from None

    train = training_task(
        arguments=[
            "--data-ref",
            "{{ ti.xcom_pull(task_ids='snapshot') | tojson }}",
            "--model-type",
            "{{ params.model_type }}",
            "--epochs",
            "{{ params.epochs }}",
            "--learning-rate",
            "{{ params.learning_rate or 'auto' }}",
            "--batch-size",
            "{{ params.batch_size }}",
            "--tag",
            "airflow.dag_id={{ dag.dag_id }}",
            "--tag",
            "airflow.run_id={{ run_id }}",
            "--tag",
            "reason={{ params.reason }}",
        ],
        execution_timeout=timedelta(minutes=60),
    )

    @task
    def evaluate(data_ref: dict, training: dict, params=None) -> dict:
        from include import pipeline
        from mlops_airflow.runtime import task_settings_and_spec

        return pipeline.evaluate(
            *task_settings_and_spec(),
            data_ref,
            training,
            latency_budget_ms=params["latency_budget_ms"],
            metric=params["gate_metric"],
        )

    @task.short_circuit
    def gate(evaluation: dict, training: dict, params=None, ti=None) -> bool:
        from include import pipeline
        from mlops_airflow.runtime import task_settings_and_spec

        settings, spec = task_settings_and_spec()
        metric, minimum, max_regression = pipeline.gate_thresholds(
            spec, params["gate_metric"], params["gate_min"], params["max_regression"]
        )
        decision = pipeline.gate(settings, evaluation, training, minimum, max_regression, metric=metric)
        ti.xcom_push(key="decision", value=decision)
        if not decision["passed"]:
            alert_gate_rejected(decision)
        # False skips register and deploy: a rejected challenger is an outcome, not a failure
        return decision["passed"]

    @task
    def register(training: dict, data_ref: dict, validation: dict, params=None, dag_run=None, ti=None) -> str:
        from include import pipeline
        from mlops_airflow.runtime import task_settings_and_spec

        settings, spec = task_settings_and_spec()
        decision = ti.xcom_pull(task_ids="gate", key="decision")
        run_context = {"dag_id": dag_run.dag_id, "run_id": dag_run.run_id, "params": dict(params)}
        return pipeline.register(settings, training, data_ref, validation, decision, run_context, spec=spec)

    @task.branch
    def approval_required() -> str:
        from airflow.sdk import Variable

        from include.util.text import parse_bool

        value = Variable.get(APPROVAL_VARIABLE, default="false")
        try:
            required = parse_bool(value, f"Variable {APPROVAL_VARIABLE}")
        except ValueError as unknown:
            # an unrecognised value has always meant "no approval"; the log says it was not understood
            log.warning("%s; deploying without approval", unknown)
            required = False
        return "approve_deploy" if required else "deploy"

    # a rejection skips deploy; without approval the branch goes straight to deploy
    # rollout, smoke test and a possible rollback each wait up to 10 minutes on a cluster
    # the first try that fails with DeployFailed alerts (what failed, what is served now); later tries do not repeat it
    @task(
        trigger_rule="none_failed_min_one_success",
        execution_timeout=timedelta(minutes=30),
        on_retry_callback=on_deploy_failed,
        on_failure_callback=on_deploy_failed,
    )
    def deploy(data_ref: dict, version: str, params=None, dag_run=None) -> dict:
        from include import pipeline
        from include.rollout.controller import deploy_version
        from mlops_airflow.runtime import kubernetes_client, task_settings_and_spec

        settings, spec = task_settings_and_spec()
        try:
            return deploy_version(
                settings,
                spec,
                data_ref,
                version,
                mode=params.get("rollout", "spec"),
                canary_share=params.get("canary_share"),
                airflow_run_id=dag_run.run_id,
                kubernetes_client=kubernetes_client(settings),
            )
        except pipeline.PromotionRefused as refused:
            # another run promoted a better champion meanwhile: an outcome, like a gate rejection
            raise AirflowSkipException(f"not promoted: {refused}") from None

    data_ref = snapshot()
    validation = validate(data_ref)
    validation >> train
    evaluation = evaluate(data_ref, train.output)
    decision = gate(evaluation, train.output)
    version = register(train.output, data_ref, validation)
    decision >> version
    approval = DeployApprovalOperator(task_id="approve_deploy", version_task_id="register")
    deployed = deploy(data_ref, version)
    version >> approval_required() >> [approval, deployed]
    approval >> deployed


dag = ml_training()

if __name__ == "__main__":
    dag.test()
