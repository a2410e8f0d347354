"""Each move of ``champion`` is recorded on the versions involved (``champion.history``), on a real SQLite registry."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from include.registry import (
    CHAMPION_HISTORY_TAG,
    ChampionChanged,
    champion_history,
    promote_champion,
    set_version_tags,
    version_tags,
)

NAME = "customer_churn"


@pytest.fixture
def versions(mlops_env, monkeypatch):
    """Four registered versions (no model files needed to move aliases), inside an Airflow task's environment."""
    import mlflow

    from include import tracking

    tracking.configure(mlops_env)
    client = mlflow.MlflowClient()
    client.create_registered_model(NAME)
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "ml_training")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__1")
    return [str(client.create_model_version(NAME, f"file:///nowhere/{n}").version) for n in range(4)]


def history(version: str) -> list[dict]:
    return champion_history(version_tags(NAME, version))


def test_a_gate_promotion_opens_a_period_with_the_airflow_run_that_did_it(versions):
    set_version_tags(NAME, versions[0], {"gate.passed": True, "gate.reason": "accepted: roc_auc 0.81 >= 0.75"})

    promote_champion(NAME, versions[0], expected_champion=None)

    [period] = history(versions[0])
    assert period["to"] is None and datetime.fromisoformat(period["from"]).tzinfo is not None
    assert (period["how"], period["by"], period["dag_id"], period["run_id"]) == (
        "gate",
        "gate (automatic)",
        "ml_training",
        "manual__1",
    )
    assert period["reason"] == "accepted: roc_auc 0.81 >= 0.75"
    # the tag is plain JSON, readable without this module
    assert json.loads(version_tags(NAME, versions[0])[CHAMPION_HISTORY_TAG]) == [period]


def test_the_next_promotion_closes_the_previous_champions_period_where_its_own_starts(versions, monkeypatch):
    promote_champion(NAME, versions[0])
    set_version_tags(NAME, versions[1], {"gate.passed": True, "approval.decision": "approved", "approval.by": "alice"})
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__2")

    assert promote_champion(NAME, versions[1], expected_champion=versions[0]) == versions[0]

    [old] = history(versions[0])
    [new] = history(versions[1])
    assert old["to"] == new["from"] and new["to"] is None
    assert (new["how"], new["by"], new["run_id"]) == ("approval", "alice", "manual__2")


def test_a_refused_move_records_nothing(versions):
    promote_champion(NAME, versions[0])
    promote_champion(NAME, versions[1])
    before = history(versions[1])

    with pytest.raises(ChampionChanged):
        promote_champion(NAME, versions[2], expected_champion=versions[0])

    assert history(versions[2]) == [] and history(versions[1]) == before


def test_a_rollout_promotion_and_one_outside_airflow(versions, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CTX_DAG_ID")
    monkeypatch.delenv("AIRFLOW_CTX_DAG_RUN_ID")
    promote_champion(NAME, versions[0])
    set_version_tags(NAME, versions[1], {"rollout.decision": "promote", "rollout.reason": "canary 0.25: AUC +0.02"})
    promote_champion(NAME, versions[1])

    [outside] = history(versions[0])
    [rollout] = history(versions[1])
    assert (outside["how"], outside["dag_id"], outside["run_id"]) == ("unknown", "unknown", "unknown")
    assert (rollout["how"], rollout["reason"]) == ("rollout", "canary 0.25: AUC +0.02")


def test_a_rollback_is_recorded_as_such_with_who_and_why(versions, monkeypatch):
    from include.deployment import DeployResult, SmokeResult, promote
    from include.deployment.rollback import rollback
    from include.settings import Settings
    from tests.unit.serving_models import sample_frame

    class Deployer:
        """Serves nothing; promotes the way the real deployers end a successful deploy."""

        def deploy(self, model_name, version, sample, expected=None):
            previous = promote(model_name, version, _champion())
            smoke = SmokeResult(version=version, url="http://127.0.0.1:1", rows=1, checks=("ok",), latency_ms=1.0)
            return DeployResult(version=version, previous_champion=previous, url="http://127.0.0.1:1", smoke=smoke)

    def _champion():
        from include.registry import CHAMPION, alias_version

        return alias_version(NAME, CHAMPION)

    set_version_tags(NAME, versions[0], {"gate.passed": True})
    promote_champion(NAME, versions[0])
    promote_champion(NAME, versions[1])
    monkeypatch.setenv("AIRFLOW_CTX_DAG_ID", "ml_rollback")
    monkeypatch.setenv("AIRFLOW_CTX_DAG_RUN_ID", "manual__rb")

    rollback(
        Settings.from_env(), Deployer(), NAME, "previous", sample_frame(1), None, actor="bob", reason="p95 doubled"
    )

    first, second = history(versions[0])
    assert first["to"] is not None and first["how"] == "gate"
    assert (second["how"], second["by"], second["reason"], second["dag_id"], second["run_id"]) == (
        "rollback",
        "bob",
        "p95 doubled",
        "ml_rollback",
        "manual__rb",
    )
    assert second["to"] is None and history(versions[1])[-1]["to"] == second["from"]


def test_a_retried_promotion_completes_a_record_a_failure_left_out(versions):
    import mlflow

    promote_champion(NAME, versions[0])
    # as if the process died between the alias move and the record
    mlflow.MlflowClient().delete_model_version_tag(NAME, versions[0], CHAMPION_HISTORY_TAG)

    promote_champion(NAME, versions[0])

    [period] = history(versions[0])
    assert period["to"] is None


def test_an_unreadable_history_reads_as_none_and_is_started_afresh(versions):
    set_version_tags(NAME, versions[0], {CHAMPION_HISTORY_TAG: "not json"})
    assert history(versions[0]) == []

    promote_champion(NAME, versions[0])

    assert len(history(versions[0])) == 1
