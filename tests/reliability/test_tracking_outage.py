"""Case 4: the MLflow tracking server (a real ``mlflow server`` process) goes down.

Faults and expected outcomes:

- stopped while ``evaluate`` runs, started again meanwhile: the attempt fails naming the
  server, the task is retried after its backoff, and the run completes to a champion;
- down during training, evaluation, the gate, registration or the deploy: the step fails
  at once (MLflow's own client retries are bounded to seconds) with the server's address
  and "Connection refused" in the error; each of these tasks retries with exponential backoff.

State checked: no alias moved and no gate tag was written while the server was down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.reliability.conftest import ROOT, xcom

pytestmark = pytest.mark.reliability

MLFLOW_TASKS = ("snapshot", "train", "evaluate", "gate", "register", "deploy")


def test_outage_mid_run_is_retried_after_backoff_and_the_run_completes(stack, champion_run):
    result = champion_run["result"]
    assert champion_run["events"] == ["stopped", "evaluate up_for_retry", "restarted"]
    assert result.tries["evaluate"] >= 2, "evaluate was not retried"
    assert all(result.states[task] == "success" for task in MLFLOW_TASKS), result.states
    if result.output:  # empty under pytest -s (nothing captured)
        assert f"API request to {stack.mlflow.url}" in result.output and "Connection refused" in result.output
    assert champion_run["champion"] == "1"


def test_the_tasks_that_call_mlflow_retry_with_exponential_backoff(stack):
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "ml_training.py")).dags["ml_training"]
    for task_id in MLFLOW_TASKS:
        task = dag.get_task(task_id)
        assert task.retries >= 2, task_id
        assert task.retry_exponential_backoff == 2.0, task_id
        # the suite shortens the base delay through MLOPS_RETRY_DELAY_SECONDS; production keeps 20 s
        assert task.retry_delay == timedelta(seconds=float(os.environ["MLOPS_RETRY_DELAY_SECONDS"])), task_id
        assert task.max_retry_delay is not None, task_id
    # bad data is not retried: it stays bad
    assert dag.get_task("validate").retries == 0


def _expect_unreachable(stack, error: BaseException | str) -> None:
    text = str(error)
    assert stack.mlflow.url in text and "Connection refused" in text, text[-2000:]


def test_training_while_the_server_is_down_fails_clearly(stack, champion_run, request):
    data_ref = xcom("ml_training", champion_run["result"].run_id, "snapshot")
    runs_before = len(stack.training_runs())
    stack.mlflow.stop()
    try:
        # the training command line, as the pod or the local train task runs it
        training = subprocess.run(
            [
                sys.executable,
                "-m",
                "include.training.train",
                "--data-ref",
                json.dumps(data_ref),
                "--model-type",
                "sklearn_hgb",
                "--epochs",
                "1",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=300,
        )
    finally:
        stack.mlflow.start()
    assert training.returncode != 0
    _expect_unreachable(stack, training.stderr)
    assert len(stack.training_runs()) == runs_before


def test_evaluation_gate_register_and_deploy_fail_clearly_and_move_nothing(stack, champion_run):
    from mlflow.exceptions import MlflowException

    from include import pipeline

    run_id = champion_run["result"].run_id
    data_ref, training = xcom("ml_training", run_id, "snapshot"), xcom("ml_training", run_id, "train")
    evaluation = xcom("ml_training", run_id, "evaluate")
    validation = xcom("ml_training", run_id, "validate")
    decision = xcom("ml_training", run_id, "gate", key="decision")
    tags_before = dict(stack.client().get_run(training["run_id"]).data.tags)
    aliases_before = stack.aliases()
    settings, spec = stack.settings, stack.spec

    stack.mlflow.stop()
    try:
        steps = {
            "evaluate": lambda: pipeline.evaluate(settings, spec, data_ref, training, latency_budget_ms=500),
            "gate": lambda: pipeline.gate(settings, evaluation, training, minimum=0.99, max_regression=0.0),
            "register": lambda: pipeline.register(
                settings,
                training,
                data_ref,
                validation,
                decision,
                {"dag_id": "ml_training", "run_id": "outage", "params": {}},
                spec=spec,
            ),
            "deploy": lambda: pipeline.deploy(settings, spec, data_ref, "1"),
        }
        for step in steps.values():
            with pytest.raises(MlflowException) as failure:
                step()
            _expect_unreachable(stack, failure.value)
    finally:
        stack.mlflow.start()

    assert stack.aliases() == aliases_before
    # the gate's tags are still those of its real decision: the outage wrote none
    assert dict(stack.client().get_run(training["run_id"]).data.tags) == tags_before
