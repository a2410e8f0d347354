"""The real scheduler through Airflow's REST API v2: trigger, refuse bad params, backfill drift.

Runs against the stack of tests/e2e/conftest.py (real api-server, scheduler,
dag-processor and triggerer on free ports), as a user of the REST API would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import (
    DRIFT_DAG_ID,
    DRIFT_FROM,
    FINISHED,
    RUN_TIMEOUT,
    TRAFFIC_DAYS,
    TRAFFIC_DAYS_LIST,
    TRAFFIC_ROWS_PER_DAY,
    TRAFFIC_START,
    TRAINING_DAG_ID,
    utc,
)

pytestmark = pytest.mark.e2e


def _mlflow_client(settings):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def test_rest_trigger_trains_and_registers(e2e, first_champion):
    run = first_champion["run"]
    run_id = run["dag_run_id"]
    assert run["state"] == "success", f"run {run_id} ended {run['state']}\n{e2e.diagnostics(TRAINING_DAG_ID, run_id)}"
    assert run["conf"]["reason"] == "e2e" and run["conf"]["epochs"] == 3
    states = first_champion["states"]
    assert states["deploy"] == "success" and states["register"] == "success", states

    version = _mlflow_client(e2e.settings).get_model_version_by_alias(e2e.settings.model_name, "champion")
    assert str(version.version) == str(e2e.xcom(TRAINING_DAG_ID, run_id, "register"))
    assert version.tags["airflow.run_id"] == run_id
    assert version.tags["airflow.dag_id"] == TRAINING_DAG_ID
    assert version.tags["params.reason"] == "e2e"
    assert version.tags["params.epochs"] == "3"
    # served for real on the stack's private port
    deployed = e2e.xcom(TRAINING_DAG_ID, run_id, "deploy")
    assert deployed["url"] == e2e.settings.serving_url and str(deployed["version"]) == str(version.version)


@pytest.mark.parametrize(
    "conf, message",
    [
        ({"model_type": "xgboost"}, "'xgboost' is not one of"),
        ({"epochs": 0}, "less than the minimum of 1"),
        ({"gate_metric": "accuracy"}, "'accuracy' is not one of"),
        ({"training_window_days": "many"}, "is not of type 'integer'"),
    ],
    ids=["unknown-model-type", "zero-epochs", "unknown-gate-metric", "window-not-an-integer"],
)
def test_invalid_params_are_refused_with_no_run(e2e, conf, message):
    before = e2e.run_count(TRAINING_DAG_ID)
    response = e2e.client.request("POST", f"/dags/{TRAINING_DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
    assert response.status_code == 400, f"{response.status_code}: {response.text[:1000]}"
    detail = response.json()["detail"]
    name = next(iter(conf))
    assert f"Invalid input for param {name}" in detail and message in detail, detail
    assert e2e.run_count(TRAINING_DAG_ID) == before


def test_backfill_drift_monitor_one_run_per_day_and_one_retraining(e2e, served_traffic, drift_backfill):
    """A backfill, one window at a time as the local profile's SQLite needs: one run and one
    report per day, and the drifted windows trigger exactly one retraining."""
    assert [day.drifted for day in served_traffic] == [day >= DRIFT_FROM for day in TRAFFIC_DAYS_LIST]
    drifted_days = [day.isoformat() for day in TRAFFIC_DAYS_LIST if day >= DRIFT_FROM]
    assert len(drifted_days) >= 2, "one retraining from several drifted windows needs several of them"
    runs = drift_backfill["runs"]
    assert e2e.client.call("GET", f"/dags/{DRIFT_DAG_ID}")["is_paused"] is False

    # exactly one run per day, each over exactly its day
    intervals = sorted((r["data_interval_start"][:10], r["data_interval_end"][:10]) for r in runs)
    assert intervals == [
        (day.isoformat(), (day + (TRAFFIC_DAYS_LIST[1] - TRAFFIC_DAYS_LIST[0])).isoformat())
        for day in TRAFFIC_DAYS_LIST
    ], intervals
    failed = [r["dag_run_id"] for r in runs if r["state"] != "success"]
    assert not failed, "\n".join(e2e.diagnostics(DRIFT_DAG_ID, run_id) for run_id in failed)
    reports = Path(e2e.settings.reports) / "drift"
    for day in TRAFFIC_DAYS_LIST:
        folder = reports / day.isoformat()
        assert (folder / "report.html").stat().st_size > 10_000, f"no Evidently report in {folder}"
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["rows"] == TRAFFIC_ROWS_PER_DAY, metrics
        if day < DRIFT_FROM:
            assert metrics["drift_share"] < 0.3, (day, metrics)
    decisions = drift_backfill["decisions"]
    # the first drifted window fires; the later ones find its run queued or running, or the cooldown
    fired = sorted(day for day, decision in decisions.items() if decision and decision["outcome"] == "retrain")
    assert len(fired) == 1 and fired[0] in drifted_days, decisions
    for day in drifted_days:
        if day != fired[0]:
            assert decisions[day]["outcome"] == "skipped", decisions

    # exactly one retraining, from the window that fired, followed to its end
    retraining = [r for r in e2e.runs(TRAINING_DAG_ID) if r["dag_run_id"].startswith("drift__")]
    assert [r["dag_run_id"] for r in retraining] == [f"drift__{fired[0]}"], retraining
    assert retraining[0]["conf"]["training_window_end"] == fired[0]
    finished = e2e.wait_for_run(TRAINING_DAG_ID, retraining[0]["dag_run_id"])
    assert finished["state"] == "success", e2e.diagnostics(TRAINING_DAG_ID, finished["dag_run_id"])
    # the gate decided, either way, with its reason: a rejection is an outcome, not a failure
    decision = e2e.xcom(TRAINING_DAG_ID, finished["dag_run_id"], "gate", "decision")
    assert decision and decision["reason"], decision
