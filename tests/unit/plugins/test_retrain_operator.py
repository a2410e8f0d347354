"""The retraining trigger task: what it asks Airflow to create, and what it costs to parse.

The whole path through Airflow (a real drift_monitor run creating a real ml_training
run, a retry finding it, the guards) is tests/integration/test_drift_monitor_dag.py;
here the operator runs against a stand-in task instance, so each field of the
trigger it raises can be checked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timezone
from pathlib import Path

import pytest

from mlops_airflow import retraining

ROOT = Path(__file__).resolve().parents[3]
WINDOW_START = datetime(2026, 3, 19, tzinfo=UTC)
WINDOW_END = datetime(2026, 3, 20, tzinfo=UTC)
PARAMS = {
    "drift_share_threshold": 0.3,
    "performance_drop_threshold": 0.05,
    "cooldown_days": 7,
    "allow_backfill_retrain": False,
    "min_rows": 200,
}


class TaskInstance:
    def __init__(self, metrics: dict, active_training_runs: int = 0, existing_runs: tuple[str, ...] = ()):
        self.metrics = metrics
        self.active_training_runs = active_training_runs
        self.existing_runs = existing_runs
        self.pushed: dict[str, object] = {}

    def xcom_pull(self, task_ids: str):
        assert task_ids == "check_drift"
        return self.metrics

    def get_dr_count(self, dag_id: str, states: list[str] | None = None, run_ids: list[str] | None = None) -> int:
        assert dag_id == "ml_training"
        if run_ids is not None:
            return sum(run_id in self.existing_runs for run_id in run_ids)
        assert states == ["queued", "running"]
        return self.active_training_runs

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value


class DagRun:
    run_id = "scheduled__2026-03-19T00:00:00+00:00"
    run_type = "scheduled"
    run_after = WINDOW_END


@pytest.fixture
def variables(monkeypatch):
    from airflow.sdk import Variable

    stored: dict[str, object] = {}
    monkeypatch.setattr(
        Variable, "get", staticmethod(lambda key, default=None, deserialize_json=False: stored.get(key, default))
    )
    monkeypatch.setattr(
        Variable, "set", staticmethod(lambda key, value, serialize_json=False: stored.__setitem__(key, value))
    )
    return stored


@pytest.fixture
def recorded(monkeypatch):
    decisions: list[dict] = []
    monkeypatch.setattr(
        retraining.RetrainOnDriftOperator,
        "_record",
        lambda self, context, window_start, decision: decisions.append(decision),
    )
    return decisions


def _context(ti: TaskInstance) -> dict:
    return {
        "ti": ti,
        "params": {**PARAMS, "estimated_drop_threshold": None},
        "dag_run": DagRun(),
        "data_interval_start": WINDOW_START,
        "data_interval_end": WINDOW_END,
    }


def _metrics(drift_share: float) -> dict:
    drifted = [f"c{index}" for index in range(round(drift_share * 10))]
    return {
        "status": "ok",
        "drift_share": drift_share,
        "drifted_columns": drifted,
        "columns": {f"c{index}": {} for index in range(10)},
        "performance_drop": None,
        "score": None,
        "reference_score": None,
        "reference_window_days": 183,
    }


def test_a_drifted_window_asks_airflow_for_one_deterministic_training_run(variables, recorded):
    from airflow.sdk.exceptions import DagRunTriggerException

    operator = retraining.RetrainOnDriftOperator(task_id="trigger_retraining", drift_task_id="check_drift")
    ti = TaskInstance(_metrics(0.5))

    with pytest.raises(DagRunTriggerException) as raised:
        operator.execute(_context(ti))

    trigger = raised.value
    assert trigger.trigger_dag_id == "ml_training"
    assert trigger.dag_run_id == "drift__2026-03-19"
    # a retry or a cleared task finds the run and ends skipped: never a second training
    assert trigger.skip_when_already_exists is True and trigger.reset_dag_run is False
    assert trigger.logical_date is None and trigger.wait_for_completion is False
    assert trigger.conf["training_window_end"] == "2026-03-19"
    # as many days as the champion learned from: a row-a-day table keeps enough rows to validate
    assert trigger.conf["training_window_days"] == 183
    assert trigger.conf["drift"]["drift_share"] == 0.5 and trigger.conf["drift"]["drift_run_id"] == DagRun.run_id
    assert "drift in window 2026-03-19..2026-03-20" in trigger.conf["reason"]
    assert json.loads(json.dumps(trigger.conf)) == trigger.conf
    assert trigger.note.startswith("retraining: ")
    assert variables[retraining.LAST_TRIGGER_VARIABLE]["training_run_id"] == "drift__2026-03-19"
    assert ti.pushed["decision"]["retrain"] is True and recorded[0]["outcome"] == "retrain"
    assert ti.pushed[retraining.TrainingRunLink().xcom_key].endswith("/dags/ml_training/runs/drift__2026-03-19")
    assert operator.pool == retraining.RETRAIN_POOL


def test_no_drift_or_a_queued_training_skips_and_triggers_nothing(variables, recorded):
    from airflow.sdk.exceptions import AirflowSkipException

    operator = retraining.RetrainOnDriftOperator(task_id="trigger_retraining", drift_task_id="check_drift")

    with pytest.raises(AirflowSkipException, match="no_drift"):
        operator.execute(_context(TaskInstance(_metrics(0.1))))
    with pytest.raises(AirflowSkipException, match="already"):
        operator.execute(_context(TaskInstance(_metrics(0.5), active_training_runs=1)))
    assert retraining.LAST_TRIGGER_VARIABLE not in variables
    assert [decision["retrain"] for decision in recorded] == [False, False]


def test_the_operator_module_loads_nothing_of_airflows_database_layer():
    # importing the provider's TriggerDagRunOperator made every parse of drift_monitor ~250 ms slower
    code = (
        "import sys, mlops_airflow.retraining\n"
        "print([m for m in ('airflow.models.dag', 'airflow.models.dagrun', "
        "'airflow.providers.standard.operators.trigger_dagrun') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def _last_trigger(window_end: str, run_id: str) -> dict:
    return {"window_start": "2026-03-15", "window_end": window_end, "training_run_id": run_id, "drift_run_id": "x"}


def test_the_cooldown_counts_a_trigger_only_once_its_training_run_exists(variables, recorded):
    from airflow.sdk.exceptions import AirflowSkipException, DagRunTriggerException

    operator = retraining.RetrainOnDriftOperator(task_id="trigger_retraining", drift_task_id="check_drift")
    variables[retraining.LAST_TRIGGER_VARIABLE] = _last_trigger("2026-03-16", "drift__2026-03-15")

    # the run exists: a window three days later is within the 7-day cooldown
    with pytest.raises(AirflowSkipException, match="cooldown"):
        operator.execute(_context(TaskInstance(_metrics(0.5), existing_runs=("drift__2026-03-15",))))
    # the trigger never created its run (it failed for good): no cooldown, this window retrains
    with pytest.raises(DagRunTriggerException):
        operator.execute(_context(TaskInstance(_metrics(0.5))))


def test_a_manual_run_without_a_logical_date_decides_on_the_last_complete_day(variables, recorded):
    from airflow.sdk.exceptions import DagRunTriggerException

    class ManualRun(DagRun):
        run_id = "manual__2026-03-20T09:30:00+00:00"
        run_type = "manual"
        run_after = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)

    operator = retraining.RetrainOnDriftOperator(task_id="trigger_retraining", drift_task_id="check_drift")
    context = {**_context(TaskInstance(_metrics(0.5))), "dag_run": ManualRun()}
    context.update(data_interval_start=None, data_interval_end=None)

    with pytest.raises(DagRunTriggerException) as raised:
        operator.execute(context)

    assert raised.value.dag_run_id == "drift__2026-03-19"
    assert "drift in window 2026-03-19..2026-03-20" in raised.value.conf["reason"]


def test_an_estimated_drop_retrains_only_when_its_threshold_is_set(variables, recorded):
    from airflow.sdk.exceptions import AirflowSkipException, DagRunTriggerException

    operator = retraining.RetrainOnDriftOperator(task_id="trigger_retraining", drift_task_id="check_drift")
    metrics = {**_metrics(0.0), "estimated_drop": 0.08, "estimated_roc_auc": 0.78, "reference_roc_auc": 0.86}

    with pytest.raises(AirflowSkipException, match="no_drift"):
        operator.execute(_context(TaskInstance(metrics)))
    context = _context(TaskInstance(metrics))
    context["params"]["estimated_drop_threshold"] = 0.05
    with pytest.raises(DagRunTriggerException) as raised:
        operator.execute(context)
    assert "estimated ROC AUC drop 0.080 >= threshold 0.050" in raised.value.conf["reason"]
    assert raised.value.conf["drift"]["estimated_drop"] == 0.08
