"""The alert ledger: a claim is an insert, so of many processes claiming one key exactly one wins."""

from __future__ import annotations

import multiprocessing

import pytest

from include.alerts.ledger import AlertLedger


def _claim(url: str, key: str) -> bool:
    return AlertLedger(url).claim(key)


def test_a_key_is_claimed_once_released_and_claimed_again(tmp_path):
    ledger = AlertLedger(f"sqlite:///{tmp_path}/deep/sent.db")
    assert ledger.claim("gate_rejected:churn:run1|alerts_slack")
    assert not ledger.claim("gate_rejected:churn:run1|alerts_slack")
    assert ledger.claim("gate_rejected:churn:run1|alerts_email")
    ledger.release("gate_rejected:churn:run1|alerts_slack")
    assert ledger.claim("gate_rejected:churn:run1|alerts_slack")
    assert sorted(ledger.keys()) == ["gate_rejected:churn:run1|alerts_email", "gate_rejected:churn:run1|alerts_slack"]


def test_concurrent_processes_claim_a_key_exactly_once(tmp_path):
    url = f"sqlite:///{tmp_path}/sent.db"
    AlertLedger(url).keys()  # the table exists before the race, as it does after the first alert
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        won = pool.starmap(_claim, [(url, "drift_retrain:churn:3:drift__2026-03-03|alerts_webhook")] * 8)
    assert sorted(won) == [False] * 7 + [True]


def test_a_long_key_and_a_new_ledger_on_the_same_database_agree(tmp_path):
    url = f"sqlite:///{tmp_path}/sent.db"
    key = "x" * 5000
    assert AlertLedger(url).claim(key)
    assert not AlertLedger(url).claim(key)


def test_a_malformed_url_is_refused_by_name():
    with pytest.raises(ValueError, match="alert ledger URL"):
        AlertLedger("not a url")
