"""What an alert says: the events' paragraphs and numbers, the dedup keys, and no secret in any rendering."""

from __future__ import annotations

import json

import pytest

from include.alerts import events
from include.alerts.message import Alert, scrub

DECISION = {
    "passed": False,
    "reason": "rejected: overall regressed 0.0400 > max_regression 0.0000 (roc_auc 0.712 vs champion 0.752)",
    "metric": "roc_auc",
    "minimum": 0.5,
    "max_regression": 0.0,
    "challenger_score": 0.712,
    "champion_score": 0.752,
    "latency_p95_ms": 3.25,
    "latency_budget_ms": 50.0,
    "checks": [{"name": "min_roc_auc", "passed": True}, {"name": "regression_overall", "passed": False}],
}


def test_scrub_removes_given_secrets_url_credentials_and_token_parameters():
    text = "POST https://bot:hunter22@hooks.example.com/x?token=abc123&mode=1 failed; key s3cr3tvalue"
    clean = scrub(text, ["s3cr3tvalue"])
    assert clean == "POST https://***@hooks.example.com/x?token=***&mode=1 failed; key ***"


def test_gate_rejection_carries_the_numbers_and_one_key_per_run():
    alert = events.gate_rejected("churn", "manual__1", DECISION, "http://airflow/dags/ml_training/runs/manual__1")
    assert alert.title == "[churn] challenger rejected by the gate" and alert.severity == "warning"
    text = alert.text()
    assert "regressed 0.0400 > max_regression 0.0000" in text
    assert "challenger roc_auc: 0.712" in text and "champion roc_auc: 0.752" in text
    assert "failed checks: regression_overall" in text and "latency p95 / budget (ms): 3.2 / 50" in text
    assert alert.dedup_key == events.gate_rejected("churn", "manual__1", {}, None).dedup_key
    assert alert.dedup_key != events.gate_rejected("churn", "manual__2", DECISION).dedup_key


def test_drift_alerts_share_a_key_per_champion_and_training_run():
    def drift(window, run):
        return events.drift_retrain("churn", "3", window, "w", "drift share 0.6 >= 0.3", {"drift_share": 0.6}, run)

    assert drift("2026-03-01", "drift__2026-03-01").dedup_key == drift("2026-03-02", "drift__2026-03-01").dedup_key
    assert drift("2026-03-01", "drift__2026-03-01").dedup_key != drift("2026-03-09", "drift__2026-03-09").dedup_key
    assert "drift share: 0.6" in drift("a", "r").text()


def test_rollout_outcomes_say_what_is_served_and_refuse_others():
    promoted = events.rollout_ended(
        "churn", "5", "3", "promoted", "roc_auc +0.02 [0.01, 0.03]", mode="canary", rollout_id="2026-03-01T00:00:00Z"
    )
    assert promoted.title == "[churn v5] rollout promoted the candidate"
    assert "version 5 answers all traffic" in promoted.why
    rolled_back = events.rollout_ended(
        "churn", "5", "3", "rolled_back", "error rate 0.05 > 0.02", numbers={"rows": 900}
    )
    assert rolled_back.severity == "failure" and "version 3 answers all traffic" in rolled_back.why
    assert "rows: 900" in rolled_back.text()
    with pytest.raises(ValueError, match="rollout outcome"):
        events.rollout_ended("churn", "5", "3", "continue", "")


def test_renderings_escape_markup_and_keep_a_long_paragraph_short():
    alert = Alert("deploy_failed", "churn", "2", "<b>x</b> & " + "y" * 3000, "k", run_url="http://a/b")
    assert "&lt;b&gt;" in alert.html() and "<b>x" not in alert.html()
    blocks = alert.slack_blocks()
    assert blocks[0]["text"]["text"] == "[churn v2] deploy failed and rolled back"
    assert len(blocks[1]["text"]["text"]) <= 2900 and len(alert.text().splitlines()[0]) <= 1500
    assert "<http://a/b|open>" in json.dumps(blocks)


def test_scrubbed_alert_has_no_secret_in_any_field():
    alert = Alert(
        "deploy_failed", "churn", "2", "db postgresql://u:pw-123456@db failed", "k", facts={"token": "tok-abcdef"}
    )
    clean = alert.scrubbed(["tok-abcdef"])
    rendered = clean.text() + clean.html() + json.dumps(clean.slack_blocks())
    assert "pw-123456" not in rendered and "tok-abcdef" not in rendered


def test_an_unknown_kind_or_empty_key_is_refused():
    with pytest.raises(ValueError, match="unknown alert kind"):
        Alert("paging", "churn", None, "why", "k")
    with pytest.raises(ValueError, match="dedup_key"):
        Alert("deploy_failed", "churn", None, "why", " ")
