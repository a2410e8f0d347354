"""send_alert with the providers' notifiers against real receivers on 127.0.0.1: once per event and
receiver, off when unconfigured, never raising for a dead or hanging receiver, never leaking a secret."""

from __future__ import annotations

import json
import socket

import pytest

from include.alerts import events
from mlops_airflow import alerts
from tests.alert_sinks import SECRETS, SLACK_TOKEN, Received, connections, free_port, http_sink, smtp_sink

ALL = {conn_id: "sent" for conn_id in alerts.RECEIVER_CONN_IDS}


@pytest.fixture
def configure(mlops_env, monkeypatch):
    """A function pointing the alert connections at an HTTP URL and an SMTP port."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        json.dumps({"conn_type": "generic", "extra": {"tracking_uri": mlops_env.tracking_uri}}),
    )

    def point(http_url: str, smtp_port: int, only: tuple[str, ...] = alerts.RECEIVER_CONN_IDS) -> None:
        for name, value in connections(http_url, smtp_port).items():
            if name.removeprefix("AIRFLOW_CONN_").lower() in only:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)

    return point


@pytest.fixture
def received(configure):
    with http_sink() as http, smtp_sink() as smtp:
        configure(http.url, smtp.port)
        yield Received(http, smtp)


def _failed_deploy(run_id="manual__1", message="deploy failed while starting the server: nothing is served"):
    return events.deploy_failed("churn", "4", run_id, message, "http://airflow/dags/ml_training/runs/" + run_id)


def test_each_receiver_gets_an_event_once(received):
    assert alerts.send_alert(_failed_deploy()) == ALL
    # a retry, a cleared task: the same event again
    assert alerts.send_alert(_failed_deploy()) == {conn_id: "already sent" for conn_id in alerts.RECEIVER_CONN_IDS}
    assert alerts.send_alert(_failed_deploy(run_id="manual__2")) == ALL
    title = "[churn v4] deploy failed and rolled back"
    assert received.titles() == {receiver: [title, title] for receiver in ("generic", "slack", "email")}
    generic = received.generic()[0]
    assert generic["type"] == "failure" and "nothing is served" in generic["message"]
    assert "http://airflow/dags/ml_training/runs/manual__1" in generic["message"]


def test_a_receiver_without_a_connection_is_off(configure):
    with http_sink() as http, smtp_sink() as smtp:
        configure(http.url, smtp.port, only=(alerts.SLACK_CONN_ID,))
        outcomes = alerts.send_alert(_failed_deploy())
        assert outcomes == {
            alerts.SLACK_CONN_ID: "sent",
            alerts.WEBHOOK_CONN_ID: "not configured",
            alerts.EMAIL_CONN_ID: "not configured",
        }
        assert len(http.bodies("/slack")) == 1 and http.bodies("/generic") == [] and smtp.messages == []


def test_no_secret_reaches_a_receiver(received):
    # an error message that quotes the receivers' own credentials and a database URL with a password
    leaky = f"POST {received.http.url}/slack/{SLACK_TOKEN} failed; db postgresql://mlflow:{SECRETS[2]}@db/mlflow"
    assert alerts.send_alert(_failed_deploy(message=leaky)) == ALL
    everything = received.everything()
    assert "failed; db postgresql://***@db/mlflow" in everything
    assert not [secret for secret in SECRETS if secret in everything]


def test_alert_text_is_not_a_template(received):
    assert alerts.send_alert(_failed_deploy(message="bad value {{ conn.alerts_slack.password }}")) == ALL
    assert "{{ conn.alerts_slack.password }}" in received.generic()[0]["message"]


def test_dead_receivers_are_reported_never_raised_and_retried_later(configure):
    configure(f"http://127.0.0.1:{free_port()}", free_port())
    outcomes = alerts.send_alert(_failed_deploy())
    assert set(outcomes) == set(alerts.RECEIVER_CONN_IDS)
    assert all(outcome.startswith("failed: ") for outcome in outcomes.values()), outcomes
    assert not [secret for secret in SECRETS if secret in json.dumps(outcomes)]
    # nothing was delivered, so nothing was marked sent: the next try sends
    with http_sink() as http, smtp_sink() as smtp:
        configure(http.url, smtp.port)
        assert alerts.send_alert(_failed_deploy()) == ALL


def test_a_hanging_receiver_is_given_up_on(configure, monkeypatch):
    monkeypatch.setattr(alerts, "SEND_TIMEOUT_S", 1.0)
    with socket.socket() as hanging, smtp_sink() as smtp:
        # accepts connections (the kernel's backlog) and never answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        configure(f"http://127.0.0.1:{hanging.getsockname()[1]}", smtp.port)
        outcomes = alerts.send_alert(_failed_deploy())
    # Apprise waits longer than the deadline; Slack's client gets the deadline as its own timeout
    assert outcomes[alerts.WEBHOOK_CONN_ID] == "timed out"
    assert outcomes[alerts.SLACK_CONN_ID] in ("timed out", "failed: TimeoutError: timed out")
    assert outcomes[alerts.EMAIL_CONN_ID] == "sent"


def test_a_broken_ledger_still_sends(received, monkeypatch):
    monkeypatch.setenv("MLOPS_ALERT_LEDGER", "not a url")
    assert alerts.send_alert(_failed_deploy()) == ALL


def test_rollout_alert_for_the_controller(received):
    outcomes = alerts.alert_rollout_ended(
        candidate_version="5",
        champion_version="3",
        outcome="rolled_back",
        reason="error rate 0.051 > max_error_rate 0.02 on 1200 rows",
        mode="canary",
        rollout_id="2026-03-01T00:00:00+00:00",
        numbers={"labelled rows (candidate)": 310},
        context={},
    )
    assert outcomes == ALL
    message = received.generic()[0]["message"]
    assert received.generic()[0]["title"] == "[customer_churn v5] rollout rolled back"
    assert "version 3 answers all traffic" in message and "0.051 > max_error_rate 0.02" in message
    assert "labelled rows (candidate): 310" in message
    # a bad outcome is logged, never raised
    assert (
        alerts.alert_rollout_ended(candidate_version="5", champion_version="3", outcome="x", reason="", context={})
        == {}
    )


def test_a_controller_decision_alerts_only_when_the_rollout_ends(received):
    running = {
        "action": "step",
        "state": "running",
        "reason": "non-inferior at 5 %",
        "numbers": {"labelled_rows_candidate": 240},
        "candidate_version": "6",
        "champion_version": "5",
        "mode": "canary",
        "started_at": "2026-03-02T00:00:00+00:00",
    }
    assert alerts.alert_rollout_decision(running, context={}) == {}
    promoted = {
        **running,
        "action": "promote",
        "state": "promoted",
        "reason": "roc_auc difference +0.031 [+0.012, +0.049] > -0.01 overall and on every slice",
        # per-slice tables stay in the tags and the Models page; the alert carries the flat numbers
        "numbers": {"labelled_rows_candidate": 1210, "slices": {"basic": {"low": 0.01}}, "forced": False},
    }
    assert alerts.alert_rollout_decision(promoted, context={}) == ALL
    # the next hourly run finds the same ended rollout: no second alert
    assert alerts.alert_rollout_decision(promoted, context={}) == {c: "already sent" for c in alerts.RECEIVER_CONN_IDS}
    (alert,) = received.generic()
    assert alert["title"].startswith("[customer_churn v6] rollout promoted")
    assert "labelled_rows_candidate: 1210" in alert["message"] and "slices" not in alert["message"]
