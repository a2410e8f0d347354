"""Alerts end to end: real DAG runs send each event to three real receivers on 127.0.0.1.

The receivers are a generic JSON webhook (Apprise ``json://``), a Slack incoming webhook
(both an HTTP sink) and an SMTP server (aiosmtpd), configured as the alert connections
with credentials that must never appear in what they receive. The runs are the scenarios
of the ml_training and drift_monitor tests: a batch failing validation, a deploy that
fails (its port taken) after a person approved it, a champion, a worse challenger, and
drifted traffic checked window by window. Then the receivers die and nothing changes.
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from tests.alert_sinks import SECRETS, Received, connections, free_port, http_sink, smtp_sink
from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.integration.conftest import (
    FAST_TRAINING,
    LAST_DAY,
    answer_approval_when_asked,
    finish_retraining_runs,
    run_dag,
    xcom_value,
)

pytestmark = pytest.mark.integration

CONF = FAST_TRAINING
TRAFFIC_START = LAST_DAY + timedelta(days=1)
DRIFT_FROM = TRAFFIC_START + timedelta(days=1)
BAD_DAY = LAST_DAY + timedelta(days=10)


@pytest.fixture(scope="module", autouse=True)
def leave_no_drift_state(local_profile):
    """The session's Airflow DB is shared: the drift runs, the retraining runs and the cooldown record this
    module creates are removed afterwards, so that the drift_monitor tests start from none of them."""
    from airflow.models.dagrun import DagRun
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    from mlops_airflow.retraining import LAST_TRIGGER_VARIABLE

    def drift_runs(session) -> list:
        return (
            session.query(DagRun)
            .filter(
                (DagRun.dag_id == "drift_monitor") | ((DagRun.dag_id == "ml_training") & DagRun.run_id.like("drift__%"))
            )
            .all()
        )

    with create_session() as session:
        before = {(run.dag_id, run.run_id) for run in drift_runs(session)}
    last_trigger = Variable.get(LAST_TRIGGER_VARIABLE, default_var=None)
    yield
    with create_session() as session:
        for run in drift_runs(session):
            if (run.dag_id, run.run_id) not in before:
                session.delete(run)
    if last_trigger is None:
        Variable.delete(LAST_TRIGGER_VARIABLE)
    else:
        Variable.set(LAST_TRIGGER_VARIABLE, last_trigger)


@pytest.fixture(scope="module")
def received(local_profile):
    """The three receivers, live, with the alert connections pointing at them."""
    with http_sink() as http, smtp_sink() as smtp, pytest.MonkeyPatch.context() as patch:
        for name, value in connections(http.url, smtp.port).items():
            patch.setenv(name, value)
        # a failed deploy is retried: a second, not twenty, between tries
        patch.setenv("MLOPS_RETRY_DELAY_SECONDS", "1")
        yield Received(http, smtp)


def _new(received: Received, before: dict[str, list[str]]) -> dict[str, list[str]]:
    """The titles each receiver got since ``before`` (a :meth:`Received.titles`)."""
    return {receiver: titles[len(before[receiver]) :] for receiver, titles in received.titles().items()}


def _everywhere(title: str) -> dict[str, list[str]]:
    return {"generic": [title], "slack": [title], "email": [title]}


def _no_secrets(received: Received) -> None:
    everything = received.everything()
    assert not [secret for secret in SECRETS if secret in everything]


def _bad_batch(spec, day) -> Path:
    from include.simulation.generate import generate_day

    frame = generate_day(spec, day, 250, seed=7).drop(columns=["contract"])
    partition = Path(spec.location) / f"date={day.isoformat()}"
    partition.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(partition / "part-0.parquet", index=False)
    return partition


def _validation_failure(spec) -> dict[str, str]:
    partition = _bad_batch(spec, BAD_DAY)
    try:
        return run_dag("ml_training", run_conf={**CONF, "training_window_end": BAD_DAY.isoformat(), "reason": "bad"})
    finally:
        (partition / "part-0.parquet").unlink()
        partition.rmdir()


def test_a_batch_failing_validation_alerts_each_receiver_once(local_profile, received):
    _, spec = local_profile
    before = received.titles()
    states = _validation_failure(spec)
    assert states["validate"] == "failed", states
    assert _new(received, before) == _everywhere("[customer_churn] data validation failed")
    alert = received.generic()[-1]
    assert alert["type"] == "failure" and "expectations met" in alert["message"] and "contract" in alert["message"]
    assert f"/dags/ml_training/runs/{run_dag.last_run_id}" in alert["message"].replace("%3A", ":").replace("%2B", "+")
    _no_secrets(received)


def test_approval_then_a_failed_deploy_alert_once_each(local_profile, received):
    settings, _ = local_profile
    before = received.titles()
    # something else listens on the serving port: the server cannot start, every try rolls back
    blocker = socket.socket()
    blocker.bind((settings.serving_host, settings.serving_port))
    blocker.listen()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_VAR_DEPLOY_APPROVAL_REQUIRED", "true")
        answering = answer_approval_when_asked("Approve", "ship it")
        try:
            states = run_dag("ml_training", run_conf={**CONF, "reason": "alerts: deploy fails"})
        finally:
            blocker.close()
        answering.join(timeout=5)
    assert states["approve_deploy"] == "success" and states["deploy"] in ("failed", "up_for_retry"), states
    assert _new(received, before) == {
        receiver: [
            "[customer_churn v1] deploy waiting for approval",
            "[customer_churn v1] deploy failed and rolled back",
        ]
        for receiver in ("generic", "slack", "email")
    }
    waiting, failed = received.generic()[-2:]
    # the gate's numbers come with the question, and the failure says what is served now
    assert "passed the gate" in waiting["message"] and "roc_auc" in waiting["message"]
    assert "port" in failed["message"] and "nothing is served" in failed["message"]
    slack = received.slack()[-1]
    assert slack["blocks"][0]["text"]["text"] == "[customer_churn v1] deploy failed and rolled back"
    _no_secrets(received)


def test_a_champion_alerts_nothing_and_a_worse_challenger_alerts_its_numbers(local_profile, received):
    before = received.titles()
    states = run_dag("ml_training", run_conf={**CONF, "reason": "champion"})
    assert states["deploy"] == "success", states
    assert _new(received, before) == {"generic": [], "slack": [], "email": []}

    states = run_dag(
        "ml_training",
        run_conf={
            **CONF,
            "epochs": 1,
            "learning_rate": 1e-6,
            "gate_min": 0.5,
            "max_regression": 0.0,
            "reason": "worse",
        },
    )
    assert states["gate"] == "success" and states["register"] == "skipped", states
    assert _new(received, before) == _everywhere("[customer_churn] challenger rejected by the gate")
    message = received.generic()[-1]["message"]
    assert "rejected" in message and "regressed" in message and "max_regression" in message
    assert "challenger roc_auc: 0." in message and "champion roc_auc: 0." in message
    mail = received.smtp.mails()[-1]
    assert mail["to"] == "ml-oncall@example.com" and "regressed" in mail["body"]
    _no_secrets(received)


def test_drifted_windows_send_one_drift_alert(local_profile, received):
    settings, spec = local_profile
    from include.simulation.generate import DriftConfig
    from include.simulation.traffic import simulate

    simulate(
        settings,
        spec,
        settings.serving_url,
        TRAFFIC_START,
        3,
        300,
        drift=DriftConfig(kind="covariate", start=DRIFT_FROM, strength=1.0),
    )
    before = received.titles()
    # the two drifted windows, then the first one again (a cleared task: its trigger runs again)
    states = [_drift_check(DRIFT_FROM), _drift_check(DRIFT_FROM + timedelta(days=1))]
    finish_retraining_runs()
    states.append(_drift_check(DRIFT_FROM))
    assert states[0]["trigger_retraining"] == "success", states
    # the repeat decided to retrain again and reached the trigger: only the ledger kept the alert from going twice
    assert _retrain_outcome(run_dag.last_run_id) == "retrain"
    assert _new(received, before) == _everywhere("[customer_churn v2] drift: retraining triggered")
    message = received.generic()[-1]["message"]
    assert f"drift__{DRIFT_FROM.isoformat()}" in message and "drift share: 0." in message
    _no_secrets(received)


def test_dead_receivers_change_no_task_state(local_profile, received):
    _, spec = local_profile
    from include.alerts.ledger import AlertLedger

    settings, _ = local_profile
    with pytest.MonkeyPatch.context() as patch:
        for name, value in connections(f"http://127.0.0.1:{free_port()}", free_port()).items():
            patch.setenv(name, value)
        states = _validation_failure(spec)
    assert states["snapshot"] == "success" and states["validate"] == "failed", states
    assert states["train"] in ("upstream_failed", "None"), states
    # nothing was delivered, so nothing is marked sent: a later try may send it
    keys = AlertLedger(settings.alert_ledger).keys()
    assert not [key for key in keys if run_dag.last_run_id in key], keys


def _drift_check(day) -> dict[str, str]:
    logical_date = datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)
    return run_dag("drift_monitor", logical_date=logical_date, run_conf={"min_rows": 100})


def _retrain_outcome(run_id: str) -> str | None:
    return xcom_value("drift_monitor", run_id, "trigger_retraining", "decision")["outcome"]
