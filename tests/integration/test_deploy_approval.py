"""The optional approval before a deploy: approved, rejected (switched off: the other modules).

``dag.test()`` parks the approval task in ``awaiting_input`` and keeps the run alive;
a second thread answers it the way the UI and the REST API do (the HITL response
row plus the event that resumes the task), as user ``reviewer``.
"""

from __future__ import annotations

import pytest

from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.integration.conftest import DAYS, LAST_DAY, answer_approval_when_asked, run_dag

pytestmark = pytest.mark.integration

CONF = {
    "epochs": 4,
    "batch_size": 128,
    "training_window_days": DAYS,
    "training_window_end": LAST_DAY.isoformat(),
    "gate_min": 0.7,
    "max_regression": 0.05,
    "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
}


@pytest.fixture(scope="module")
def approval_on(local_profile):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_VAR_DEPLOY_APPROVAL_REQUIRED", "true")
        yield local_profile


def _champion(settings):
    from include import registry, tracking

    tracking.configure(settings)
    return registry.alias_version(settings.model_name, registry.CHAMPION)


def test_approved_deploy_is_served_and_the_approval_is_recorded(approval_on):
    settings, _ = approval_on
    answering = answer_approval_when_asked("Approve", "looks good")
    states = run_dag("ml_training", run_conf={**CONF, "reason": "approval: approve"})
    answering.join(timeout=5)
    assert states["approve_deploy"] == "success" and states["deploy"] == "success", states

    from include import registry

    champion = _champion(settings)
    tags = registry.version_tags(settings.model_name, champion)
    assert tags["approval.decision"] == "approved"
    assert tags["approval.by"] == "reviewer" and tags["approval.comment"] == "looks good"
    assert tags["approval.at"]


def test_rejected_deploy_deploys_nothing_and_records_who_and_why(approval_on):
    settings, _ = approval_on
    champion_before = _champion(settings)
    answering = answer_approval_when_asked("Reject", "not during the sale")
    states = run_dag("ml_training", run_conf={**CONF, "reason": "approval: reject"})
    answering.join(timeout=5)
    assert states["approve_deploy"] == "success", states
    assert states["deploy"] == "skipped", states
    assert _champion(settings) == champion_before

    from include import registry

    rejected = registry.alias_version(settings.model_name, registry.CHALLENGER)
    assert rejected != champion_before
    tags = registry.version_tags(settings.model_name, rejected)
    assert tags["approval.decision"] == "rejected"
    assert tags["approval.by"] == "reviewer" and tags["approval.comment"] == "not during the sale"


def test_rollback_dag_redeploys_a_version_and_leaves_an_audit_trail(approval_on):
    settings, _ = approval_on
    from include import registry

    champion = _champion(settings)
    other = registry.alias_version(settings.model_name, registry.CHALLENGER)
    states = run_dag("ml_rollback", run_conf={"target": other, "reason": "incident 42"})
    assert states == {"rollback": "success"}, states
    assert _champion(settings) == other
    assert registry.alias_version(settings.model_name, registry.PREVIOUS_CHAMPION) == champion
    import requests

    assert requests.get(f"{settings.serving_url}/health", timeout=10).json()["model_version"] == other
    for version in (champion, other):
        tags = registry.version_tags(settings.model_name, version)
        assert tags["rollback.from"] == champion and tags["rollback.to"] == other
        assert tags["rollback.reason"] == "incident 42" and tags["rollback.by"]

    # "previous" goes back to where we were
    assert run_dag("ml_rollback", run_conf={"target": "previous", "reason": "undo"}) == {"rollback": "success"}
    assert _champion(settings) == champion


def test_rollback_to_an_unknown_version_is_refused_and_changes_nothing(approval_on):
    settings, _ = approval_on
    champion = _champion(settings)
    states = run_dag("ml_rollback", run_conf={"target": "999", "reason": "typo"})
    assert states == {"rollback": "failed"} or states == {"rollback": "up_for_retry"}, states
    assert _champion(settings) == champion
