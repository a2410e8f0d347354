"""Rollouts end to end on the local profile: ml_training starts them, ml_rollout decides and acts.

Real DAG runs (``dag.test()``), real training, a real MLflow registry and the real detached model server
on 127.0.0.1; live traffic is posted to the server and labelled from the landed data. The tests run in
order and share the profile: a weak first champion (a rollout without a champion falls back to direct), a
better candidate promoted in shadow, a barely trained one rolled back after a server restart, and a
canary stopped by an operator's forced rollback.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import requests

from tests.conftest import TEST_LATENCY_BUDGET_MS
from tests.integration.conftest import DAYS, LAST_DAY, run_dag, xcom_value

pytestmark = pytest.mark.integration

TRAINING = {
    "batch_size": 128,
    "training_window_days": DAYS,
    "training_window_end": LAST_DAY.isoformat(),
    "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
    # the comparisons here are the rollout's: the gate lets every version through
    "gate_min": 0.3,
    "max_regression": 1.0,
}
WEAK = {"epochs": 1, "learning_rate": 1e-4}
GOOD = {"epochs": 6}
BARELY_TRAINED = {"epochs": 1, "learning_rate": 1e-7}


@pytest.fixture(scope="module", autouse=True)
def rollout_spec(local_profile, tmp_path_factory):
    """The demo spec with a looser prediction-gap guardrail: the weak first champion's probabilities sit
    far from a trained model's, which the default 0.15 would (rightly) stop before any label."""
    import yaml

    settings, _ = local_profile
    raw = yaml.safe_load(Path(settings.dataset_spec).read_text())
    raw["rollout"] = {"mode": "direct", "min_labelled_rows": 200, "guardrails": {"max_prediction_gap": 0.6}}
    path = tmp_path_factory.mktemp("spec") / "customer_churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_DATASET_SPEC", str(path))
        yield path


def _registry(settings):
    from include import registry, tracking

    tracking.configure(settings)
    return registry


def _train(conf: dict) -> dict[str, str]:
    states = run_dag("ml_training", run_conf={**TRAINING, **conf})
    assert states["deploy"] == "success", states
    return states


def _traffic(settings, spec, rows: int = 1200) -> int:
    """Post landed rows to the server, then label every logged prediction; returns the rows labelled."""
    from include.monitoring.inference_log import read_window, write_labels

    frames = [pd.read_parquet(path) for path in sorted(Path(spec.location).glob("date=*/*.parquet"))]
    data = pd.concat(frames, ignore_index=True).head(rows)
    started = datetime.now(UTC)
    labels = {}
    for chunk in range(0, len(data), 100):
        part = data.iloc[chunk : chunk + 100]
        answer = requests.post(
            f"{settings.serving_url}/invocations",
            json={
                "dataframe_split": {"columns": spec.feature_names, "data": part[spec.feature_names].to_numpy().tolist()}
            },
            timeout=30,
        )
        answer.raise_for_status()
        labels.update(zip(answer.json()["request_ids"], part[spec.target].tolist(), strict=True))
    deadline = time.monotonic() + 120
    while True:  # the server's log writer flushes on its own schedule
        logged = read_window(settings.inference_log, started, datetime.now(UTC), with_labels=False)
        if logged["request_id"].isin(labels).sum() >= len(labels) or time.monotonic() > deadline:
            break
        time.sleep(1)
    logged = logged[logged["request_id"].isin(labels)]
    write_labels(
        settings.inference_log,
        pd.DataFrame(
            {
                "request_id": logged["request_id"],
                "label": logged["request_id"].map(labels).astype(int),
                "label_timestamp": datetime.now(UTC),
                "prediction_day": logged["timestamp"].dt.date,
            }
        ),
    )
    return len(logged)


def _rollout(conf: dict | None = None) -> tuple[dict[str, str], dict | None]:
    """Run ml_rollout once: the state of its task and the decision it returned (its XCom)."""
    states = run_dag("ml_rollout", run_conf=conf or {})
    return states, xcom_value("ml_rollout", run_dag.last_run_id, "decide_and_act")


def _served(settings) -> tuple[str, dict]:
    health = requests.get(f"{settings.serving_url}/health", timeout=10).json()
    rollout = requests.get(f"{settings.serving_url}/admin/rollout", timeout=10).json()
    return str(health["model_version"]), rollout


def test_a_rollout_without_a_champion_deploys_directly(local_profile):
    settings, _ = local_profile
    _train({**WEAK, "rollout": "shadow", "reason": "first, weak champion"})
    registry = _registry(settings)
    assert registry.alias_version(settings.model_name, registry.CHAMPION) == "1"
    assert registry.alias_version(settings.model_name, registry.CANDIDATE) is None
    states, decision = _rollout()
    assert states["decide_and_act"] == "skipped" and decision is None


def test_a_better_candidate_in_shadow_is_promoted_once_it_serves_alone(local_profile):
    settings, spec = local_profile
    _train({**GOOD, "rollout": "shadow", "reason": "better candidate"})
    registry = _registry(settings)
    name = settings.model_name
    assert registry.alias_version(name, registry.CANDIDATE) == "2"
    assert registry.alias_version(name, registry.CHAMPION) == "1", "a rollout moves no champion"
    assert _served(settings)[1]["candidate_version"] == "2"
    tags = registry.version_tags(name, "2")
    assert tags["rollout.state"] == "running" and tags["rollout.mode"] == "shadow"
    assert tags["rollout.champion_version"] == "1"

    _traffic(settings, spec)
    states, decision = _rollout()

    assert states["decide_and_act"] == "success"
    assert decision["action"] == "promote", decision["reason"]
    assert registry.alias_version(name, registry.CHAMPION) == "2"
    assert registry.alias_version(name, registry.CANDIDATE) is None
    version, rollout = _served(settings)
    assert version == "2" and rollout["candidate_version"] is None, "the champion serves alone"
    tags = registry.version_tags(name, "2")
    assert tags["rollout.state"] == "promoted" and tags["rollout.decision"] == "promote" and tags["rollout.ended_at"]
    assert '"overall"' in tags["rollout.numbers"]
    assert registry.version_tags(name, "1")["rollout.last_challenge"] == "2: promote"


def test_a_worse_candidate_is_rolled_back_and_a_server_restart_mid_rollout_changes_nothing(local_profile):
    settings, spec = local_profile
    from include.deployment.local import LocalServingDeployer

    _train({**BARELY_TRAINED, "rollout": "shadow", "reason": "worse candidate"})
    registry = _registry(settings)
    name = settings.model_name
    assert registry.alias_version(name, registry.CANDIDATE) == "3"
    server = LocalServingDeployer(settings)
    server.stop()
    server.start("2", name)
    assert _served(settings)[1]["candidate_version"] == "3", "the restart lost the rollout"

    _traffic(settings, spec)
    states, decision = _rollout()

    assert decision["action"] == "rollback", decision["reason"]
    assert decision["server"] == "consistent"
    assert registry.alias_version(name, registry.CHAMPION) == "2"
    assert registry.alias_version(name, registry.CANDIDATE) is None
    version, rollout = _served(settings)
    assert version == "2" and rollout["candidate_version"] is None
    assert registry.version_tags(name, "3")["rollout.state"] == "rolled_back"
    assert registry.version_tags(name, "2")["rollout.last_challenge"] == "3: rollback"


def test_a_canary_lost_by_the_server_is_reapplied_then_stopped_by_a_forced_rollback(local_profile):
    settings, _ = local_profile
    from include.deployment.local import LocalServingDeployer

    _train({**GOOD, "rollout": "canary", "canary_share": 0.1, "reason": "canary"})
    registry = _registry(settings)
    name = settings.model_name
    assert _served(settings)[1] == {
        "champion_version": "2",
        "candidate_version": "4",
        "mode": "canary",
        "canary_share": 0.1,
        "sticky_column": spec_id(settings),
    }
    # the server forgets the rollout (a replacement without it): the controller re-applies the registry's
    LocalServingDeployer(settings).end_rollout(name)

    states, decision = _rollout()
    assert decision["action"] == "continue" and decision["server"].startswith("re-applied")
    assert _served(settings)[1]["candidate_version"] == "4"

    states, decision = _rollout({"force": "rollback", "reason": "operator stop"})
    assert decision["action"] == "rollback" and "operator stop" in decision["reason"]
    assert registry.alias_version(name, registry.CANDIDATE) is None
    assert _served(settings)[1]["candidate_version"] is None
    tags = registry.version_tags(name, "4")
    assert tags["rollout.state"] == "rolled_back" and "forced by" in tags["rollout.reason"]


def spec_id(settings) -> str:
    from include.data.spec import load_spec

    return load_spec(settings.dataset_spec).id_column
