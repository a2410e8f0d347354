"""Case 8: the training subprocess (the pod's command line) is killed mid-run, or runs past its timeout.

The real ``train`` operator of the local profile (``LocalTrainingOperator``) runs in a
one-task DAG whose timeout and retries the test chooses, on the champion's real snapshot.

Faults and expected outcomes:

- killed (SIGKILL) once its MLflow run has started: the attempt fails with the exit code,
  the killed run is marked KILLED, and the retry trains from scratch to a new, finished run;
- past its ``execution_timeout`` on every attempt: the task fails; the process group is
  gone and each attempt's run is marked KILLED.

State checked: no model version is registered (training never registers; the gate does),
no run is left RUNNING, no training process outlives its task, and the retry's run id is
not the killed one.
"""

from __future__ import annotations

import json
import os
import signal
from datetime import timedelta

import pendulum
import psutil
import pytest

from tests.reliability.conftest import Watcher, run_dag, xcom

pytestmark = pytest.mark.reliability

TRAINING_COMMAND = "include.training.train"


def _training_processes() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if TRAINING_COMMAND in " ".join(process.cmdline()):
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def _training_dag(dag_id: str, data_ref: dict, model_type: str, epochs: int, timeout: timedelta, *extra_arguments: str):
    from airflow.sdk import DAG

    from mlops_airflow.training import LocalTrainingOperator

    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False) as dag:
        LocalTrainingOperator(
            task_id="train",
            retries=1,
            retry_delay=timedelta(seconds=1),
            execution_timeout=timeout,
            arguments=[
                "--data-ref",
                json.dumps(data_ref),
                "--model-type",
                model_type,
                "--epochs",
                str(epochs),
                *extra_arguments,
            ],
        )
    return dag


def _runs(stack, airflow_run_id: str) -> dict[str, str]:
    return {run.info.run_id: run.info.status for run in stack.training_runs(airflow_run_id)}


def test_killed_training_fails_the_attempt_and_the_retry_starts_clean(stack, champion_run, request):
    data_ref = xcom("ml_training", champion_run["result"].run_id, "snapshot")
    versions_before = stack.versions()
    dag = _training_dag("reliability_train_killed", data_ref, "sklearn_hgb", 2, timedelta(minutes=10))
    killed: list[int] = []

    def first_run_started() -> bool:
        run_id = _current_run_id()
        return run_id is not None and "RUNNING" in _runs(stack, run_id).values()

    def kill_trainer() -> None:
        for process in _training_processes():
            os.kill(process.pid, signal.SIGKILL)
            killed.append(process.pid)

    def _current_run_id():
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            run = session.query(DagRun).filter(DagRun.dag_id == dag.dag_id).order_by(DagRun.id.desc()).first()
            return None if run is None else run.run_id

    _current_run_id()  # imports Airflow's models here, not in the watcher thread
    watcher = Watcher(first_run_started, kill_trainer)
    watcher.start()
    try:
        result = run_dag(stack, dag, request)
    finally:
        watcher.stop()
    if watcher.error is not None:
        raise watcher.error

    assert killed, "the training process was never seen running"
    assert result.states["train"] == "success" and result.tries["train"] == 2, result
    runs = _runs(stack, result.run_id)
    assert sorted(runs.values()) == ["FINISHED", "KILLED"], runs
    finished = next(run_id for run_id, status in runs.items() if status == "FINISHED")
    assert xcom(dag.dag_id, result.run_id, "train")["run_id"] == finished
    if result.output:
        assert "training command exited with code -9" in result.output
    assert stack.versions() == versions_before, "training registered a model"
    assert _training_processes() == []


def test_training_past_its_timeout_fails_and_leaves_nothing_running(stack, champion_run, request):
    data_ref = xcom("ml_training", champion_run["result"].run_id, "snapshot")
    versions_before = stack.versions()
    # one optimiser step per row: thousands of steps an epoch, so that no machine, however fast,
    # finishes these epochs within the timeout
    dag = _training_dag(
        "reliability_train_timeout", data_ref, "torch_mlp", 1000, timedelta(seconds=20), "--batch-size", "1"
    )

    result = run_dag(stack, dag, request)

    assert result.states["train"] == "failed" and result.tries["train"] == 2, result
    if result.output:
        assert "Timeout" in result.output or "timed out" in result.output
    assert "RUNNING" not in _runs(stack, result.run_id).values()
    assert stack.versions() == versions_before
    assert _training_processes() == [], "a training process outlived its task"
