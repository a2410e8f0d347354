"""Rollback: which version a target names, the redeploy through the profile's deployer, the audit tags.

The registry is real (SQLite). Most tests use a small deployer that implements the
Deployer protocol the way the real ones end (``promote_champion`` after a successful
serve); the last one rolls back through the KubernetesDeployer and its in-memory cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime, timezone

import pytest

from include.deployment import DeployFailed, DeployResult, SmokeResult
from include.deployment.rollback import RollbackRefused, resolve_target, rollback
from include.registry import CHAMPION, PREVIOUS_CHAMPION, alias_version, promote_champion, version_tags
from tests.unit.deployment.test_kubernetes_deployer import (  # noqa: F401 (fixtures used by name)
    NAME,
    cluster,
    empty_registry,
    make_deployer,
    promotions,
    service,
    settings,
)
from tests.unit.serving_models import ChurnModel, register, sample_frame

MODEL_NAME = "customer_churn"
AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


class RecordingDeployer:
    """Serves nothing; promotes like a real deployer after its (successful) serve, or fails like one."""

    url = "http://customer-churn-serving.ml-serving.svc.cluster.local"

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.deployed: list[tuple[str, str]] = []

    def deploy(self, model_name, version, sample, expected=None) -> DeployResult:
        self.deployed.append((model_name, version))
        if self.fail:
            raise DeployFailed(
                model_name,
                version,
                "running the smoke test",
                "HTTP 500",
                f"{model_name} version 2 (the champion) is served",
            )
        previous = promote_champion(model_name, version)
        smoke = SmokeResult(version=version, url=self.url, rows=len(sample), checks=("ok",), latency_ms=1.0)
        return DeployResult(version=version, previous_champion=previous, url=self.url, smoke=smoke)


@pytest.fixture
def versions(settings):
    """Three registered versions; 1 then 2 promoted, so 2 is champion and 1 previous champion."""
    registered = [register(MODEL_NAME, ChurnModel(seed=seed)) for seed in range(3)]
    promote_champion(MODEL_NAME, registered[0])
    promote_champion(MODEL_NAME, registered[1])
    return registered


def test_previous_is_the_previous_champion_alias(versions):
    assert resolve_target(MODEL_NAME, "previous") == versions[0]
    assert resolve_target(MODEL_NAME, " Previous ") == versions[0]


def test_previous_falls_back_on_the_champions_tag(versions):
    import mlflow

    mlflow.MlflowClient().delete_registered_model_alias(MODEL_NAME, PREVIOUS_CHAMPION)
    assert version_tags(MODEL_NAME, versions[1])["previous_champion_version"] == versions[0]

    assert resolve_target(MODEL_NAME, "previous") == versions[0]


def test_previous_is_refused_when_no_champion_came_before(settings):
    first = register(MODEL_NAME, ChurnModel())
    promote_champion(MODEL_NAME, first)

    with pytest.raises(RollbackRefused, match="no previous champion to roll back to"):
        resolve_target(MODEL_NAME, "previous")


def test_a_number_must_be_a_registered_version_other_than_the_champion(versions):
    assert resolve_target(MODEL_NAME, versions[2]) == versions[2]
    assert resolve_target(MODEL_NAME, f" {versions[0]} ") == versions[0]
    with pytest.raises(RollbackRefused, match="has no registered version 9"):
        resolve_target(MODEL_NAME, "9")
    with pytest.raises(RollbackRefused, match=f"version {versions[1]} .* is already the champion"):
        resolve_target(MODEL_NAME, versions[1])
    with pytest.raises(RollbackRefused, match="neither 'previous' nor a version number"):
        resolve_target(MODEL_NAME, "latest")


def test_nothing_to_roll_back_from_without_a_champion(settings):
    register(MODEL_NAME, ChurnModel())

    with pytest.raises(RollbackRefused, match="has no champion"):
        resolve_target(MODEL_NAME, "1")


def test_a_rollback_redeploys_the_target_and_tags_both_versions(settings, versions):
    deployer = RecordingDeployer()
    sample = sample_frame(rows=3)

    result = rollback(
        settings,
        deployer,
        MODEL_NAME,
        "previous",
        sample,
        None,
        actor="alice",
        reason="p95 latency doubled after the release",
        airflow_run_id="manual__2026-11-20T09:30:00",
        at=AT,
    )

    v1, v2 = versions[0], versions[1]
    assert result == {"from": v2, "to": v1, "url": deployer.url}
    assert deployer.deployed == [(MODEL_NAME, v1)]
    assert alias_version(MODEL_NAME, CHAMPION) == v1
    assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) == v2  # recorded by the deployer's alias move
    expected_tags = {
        "rollback.from": v2,
        "rollback.to": v1,
        "rollback.at": "2026-11-20T09:30:00+00:00",
        "rollback.by": "alice",
        "rollback.reason": "p95 latency doubled after the release",
        "rollback.url": deployer.url,
        "rollback.airflow_run_id": "manual__2026-11-20T09:30:00",
    }
    for version in (v1, v2):
        tags = version_tags(MODEL_NAME, version)
        assert {key: tags.get(key) for key in expected_tags} == expected_tags, version
    assert not any(key.startswith("rollback.") for key in version_tags(MODEL_NAME, versions[2]))


def test_a_retried_run_does_not_roll_back_twice(settings, versions):
    deployer = RecordingDeployer()
    arguments = dict(actor="drift_monitor", reason="drift", airflow_run_id="scheduled__2026-11-20", at=AT)
    first = rollback(settings, deployer, MODEL_NAME, "previous", sample_frame(rows=2), None, **arguments)

    again = rollback(settings, deployer, MODEL_NAME, "previous", sample_frame(rows=2), None, **arguments)

    assert again == first
    assert len(deployer.deployed) == 1, "the retry rolled 'previous' again, i.e. forward"
    assert alias_version(MODEL_NAME, CHAMPION) == versions[0]
    # another run asking for "previous" now means the version rolled back from
    rollback(
        settings, deployer, MODEL_NAME, "previous", sample_frame(rows=2), None, actor="bob", reason="false alarm", at=AT
    )
    assert alias_version(MODEL_NAME, CHAMPION) == versions[1]
    assert "rollback.airflow_run_id" not in version_tags(MODEL_NAME, versions[1])
    assert version_tags(MODEL_NAME, versions[1])["rollback.by"] == "bob"


def test_a_failed_rollback_changes_nothing_and_says_so(settings, versions):
    deployer = RecordingDeployer(fail=True)

    with pytest.raises(DeployFailed, match="the champion\\) is served"):
        rollback(
            settings,
            deployer,
            MODEL_NAME,
            "previous",
            sample_frame(rows=2),
            None,
            actor="alice",
            reason="bad release",
            at=AT,
        )

    assert deployer.deployed == [(MODEL_NAME, versions[0])]
    assert alias_version(MODEL_NAME, CHAMPION) == versions[1]
    for version in versions:
        assert not any(key.startswith("rollback.") for key in version_tags(MODEL_NAME, version))


@pytest.mark.parametrize(
    "target, actor, reason, refused",
    [
        ("previous", "", "why", "needs an actor"),
        ("previous", "alice", "  ", "needs an actor"),
        ("2", "alice", "why", "already the champion"),
        ("17", "alice", "why", "no registered version 17"),
    ],
)
def test_a_refused_rollback_never_reaches_the_deployer(settings, versions, target, actor, reason, refused):
    deployer = RecordingDeployer()

    with pytest.raises(RollbackRefused, match=refused):
        rollback(settings, deployer, MODEL_NAME, target, sample_frame(rows=2), None, actor=actor, reason=reason)

    assert deployer.deployed == []
    assert alias_version(MODEL_NAME, CHAMPION) == versions[1]


def test_a_rollback_through_the_kubernetes_deployer_brings_the_previous_replica_set_back(
    settings, cluster, service, promotions
):
    first, second = ChurnModel(), ChurnModel(regularization=0.001, seed=7)
    v1, v2 = register(MODEL_NAME, first), register(MODEL_NAME, second)
    sample = sample_frame(rows=4)
    deployer = make_deployer(settings, cluster, service)
    deployer.deploy(MODEL_NAME, v1, sample, first.probabilities(sample))
    v1_template = cluster.deployment()["spec"]["template"]
    deployer.deploy(MODEL_NAME, v2, sample, second.probabilities(sample))
    assert cluster.endpoint_version() == v2

    result = rollback(
        settings,
        deployer,
        MODEL_NAME,
        "previous",
        sample,
        first.probabilities(sample),
        actor="alice",
        reason="conversion dropped",
        at=AT,
    )

    assert result == {"from": v2, "to": v1, "url": service.url}
    assert cluster.deployment()["spec"]["template"] == v1_template
    assert len(cluster.replica_sets) == 2, "the rollback created a new ReplicaSet instead of reusing v1's"
    assert cluster.endpoint_version() == v1
    assert cluster.objects[("services", NAME)]["spec"]["selector"].items() <= v1_template["metadata"]["labels"].items()
    assert (alias_version(MODEL_NAME, CHAMPION), alias_version(MODEL_NAME, PREVIOUS_CHAMPION)) == (v1, v2)
    assert version_tags(MODEL_NAME, v1)["rollback.from"] == version_tags(MODEL_NAME, v2)["rollback.from"] == v2
