"""Case 11: a backfill of ``drift_monitor`` with several drifted windows active at once, on the real scheduler.

Fault: four windows of drifted traffic (the traffic simulator's requests to the served
champion) backfilled through the REST API with ``max_active_runs`` 4, so that their drift
checks run side by side and their triggers all find drift at about the same moment.
The Airflow here is the real one (scheduler, dag-processor, triggerer, api-server, the
LocalExecutor's workers) on a PostgreSQL metadata database: Airflow supports concurrent
backfill runs on PostgreSQL, not on the local profile's SQLite, which serialises writers.
``ml_training`` stays paused, so the retraining run, once created, waits queued.

Expected: every window checked; the triggers take turns in the one-slot ``retrain_trigger``
pool; the first creates the ``drift__<day>`` run, every other one skips it.
State checked: the ``ml_training`` runs (exactly one, named after a drifted window), each
window's decision, the checks' overlap in time (the concurrency was real) and the triggers'
(none: they took turns). The workers' task logs join the secret scan of ``test_security``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.reliability.conftest import LAST_DAY, free_port

pytestmark = pytest.mark.reliability

WINDOWS = [LAST_DAY + timedelta(days=40 + offset) for offset in range(4)]
TIMEOUT = 420


def _utc(day) -> str:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC).isoformat()


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _overlap(a: dict, b: dict) -> bool:
    return _when(a["start_date"]) < _when(b["end_date"]) and _when(b["start_date"]) < _when(a["end_date"])


@pytest.fixture(scope="module")
def scheduler(stack, champion_run, postgres):
    """The local stack's Airflow components on a PostgreSQL metadata DB, sharing the suite's home and MLflow."""
    from include.simulation.generate import DriftConfig
    from include.simulation.traffic import simulate
    from scripts.local_stack import LocalStack

    simulate(
        stack.settings,
        stack.spec,
        stack.settings.serving_url,
        WINDOWS[0],
        len(WINDOWS),
        250,
        drift=DriftConfig(kind="covariate", start=WINDOWS[0], strength=1.0),
        land_to_training_data=False,
    )
    airflow = LocalStack(
        home=stack.home,
        api_port=free_port(),
        extra_env={
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": postgres.create_database("airflow_backfill"),
            "MLFLOW_TRACKING_URI": stack.mlflow.url,
        },
    )
    try:
        airflow.setup()
        airflow.start(timeout=300)
        client = airflow.api()
        client.wait_for_dag("drift_monitor", timeout=240)
        client.wait_for_dag("ml_training", timeout=60)
        yield airflow, client
    finally:
        # the model server belongs to the suite: the other cases still use it
        airflow.stop_airflow()
        logs = sorted((airflow.airflow_home / "logs").rglob("*.log"))
        with open(stack.logs, "a") as scanned:
            for log in logs:
                scanned.write(log.read_text(errors="replace"))


def _wait_for_backfill(client, backfill_id: int) -> list[dict]:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        runs = client.call("GET", "/dags/drift_monitor/dagRuns", params={"run_type": "backfill", "limit": 100})[
            "dag_runs"
        ]
        done = client.call("GET", f"/backfills/{backfill_id}").get("completed_at")
        if done and len(runs) == len(WINDOWS) and all(run["state"] in ("success", "failed") for run in runs):
            return runs
        time.sleep(3)
    raise AssertionError(
        f"backfill {backfill_id} not finished after {TIMEOUT}s: {[(run['dag_run_id'], run['state']) for run in runs]}"
    )


def test_concurrent_drift_windows_trigger_one_retraining(stack, scheduler):
    airflow, client = scheduler
    backfill = client.create_backfill(
        "drift_monitor",
        _utc(WINDOWS[0]),
        _utc(WINDOWS[-1]),
        max_active_runs=len(WINDOWS),
        reprocess_behavior="completed",
        dag_run_conf={"allow_backfill_retrain": True, "min_rows": 100},
    )

    runs = _wait_for_backfill(client, backfill["id"])

    assert sorted(run["data_interval_start"][:10] for run in runs) == [day.isoformat() for day in WINDOWS]
    tasks = {
        run["dag_run_id"]: {ti["task_id"]: ti for ti in client.task_instances("drift_monitor", run["dag_run_id"])}
        for run in runs
    }
    states = {run_id: {task_id: ti["state"] for task_id, ti in tis.items()} for run_id, tis in tasks.items()}
    assert all(run["state"] == "success" for run in runs), states
    checks = [tis["check_drift"] for tis in tasks.values()]
    assert all(ti["state"] == "success" for ti in checks), states
    assert any(_overlap(a, b) for i, a in enumerate(checks) for b in checks[i + 1 :]), (
        "no two drift checks ran at the same time: the windows were not concurrent"
    )
    triggers = sorted((tis["trigger_retraining"] for tis in tasks.values()), key=lambda ti: ti["start_date"])
    assert not any(_overlap(a, b) for i, a in enumerate(triggers) for b in triggers[i + 1 :]), (
        "two retraining triggers ran at the same time"
    )

    retraining = client.call("GET", "/dags/ml_training/dagRuns", params={"limit": 100})["dag_runs"]
    assert len(retraining) == 1, [run["dag_run_id"] for run in retraining]
    (training_run,) = retraining
    assert training_run["dag_run_id"] in {f"drift__{day.isoformat()}" for day in WINDOWS}
    assert training_run["conf"]["drift"]["drift_run_id"] in tasks

    decisions = {}
    for run_id in tasks:
        response = client.request(
            "GET",
            f"/dags/drift_monitor/dagRuns/{run_id}/taskInstances/trigger_retraining/xcomEntries/decision",
            params={"deserialize": True},
        )
        assert response.status_code == 200, f"{run_id}: no decision recorded"
        decisions[run_id] = response.json()["value"]
    # every window found drift; the first to decide retrained, the others found its run queued
    assert all(">= threshold" in decision["reason"] for decision in decisions.values()), decisions
    first = training_run["conf"]["drift"]["drift_run_id"]
    assert decisions[first]["outcome"] == "retrain" and states[first]["trigger_retraining"] == "success", decisions
    for run_id, decision in decisions.items():
        if run_id != first:
            assert decision["outcome"] == "skipped" and "already queued/running" in decision["reason"], decision
            assert states[run_id]["trigger_retraining"] == "skipped", states

    reports = Path(stack.settings.reports) / "drift"
    assert all((reports / day.isoformat() / "metrics.json").is_file() for day in WINDOWS)
