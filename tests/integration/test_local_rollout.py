"""Rollouts on the local profile: a real detached server, real HTTP, a real MLflow registry."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from include.deployment import DeployFailed
from include.deployment.local import LocalServingDeployer
from include.deployment.rollout_config import RolloutConfig
from include.settings import Settings
from scripts.local_stack import free_port
from tests.integration.servers import kill_serving_processes
from tests.unit.serving_models import ChurnModel, RaisingModel, forget_mlflow_uris, register, sample_frame

pytestmark = pytest.mark.integration

MODEL_NAME = "customer_churn"


def versions_of(url: str, keys: range) -> list[str]:
    """The version that answered each key's row (every row the champion's without a canary)."""
    frame = sample_frame(rows=len(keys), seed=3)
    frame["customer_id"] = list(keys)
    payload = {"dataframe_split": {"columns": list(frame.columns), "data": frame.to_numpy().tolist()}}
    response = requests.post(f"{url}/invocations", json=payload, timeout=10)
    response.raise_for_status()
    body = response.json()
    return body.get("model_versions", [response.headers["X-Model-Version"]] * len(keys))


def test_a_rollout_is_started_changed_survives_a_restart_and_ends(deployer):
    champion_model, candidate_model = ChurnModel(), ChurnModel(regularization=0.001, seed=7)
    champion, candidate = register(MODEL_NAME, champion_model), register(MODEL_NAME, candidate_model)
    sample = sample_frame(rows=5)
    deployer.deploy(MODEL_NAME, champion, sample, expected=champion_model.probabilities(sample))
    pid = deployer.status().pid
    shadow = RolloutConfig(candidate, "shadow")

    url = deployer.start_rollout(MODEL_NAME, shadow, sample, candidate_model.probabilities(sample))

    assert deployer.rollout_status(MODEL_NAME) == shadow
    assert deployer.status().pid == pid, "the champion was restarted to load the candidate"
    canary = RolloutConfig(candidate, "canary", 0.25, "customer_id")
    deployer.update_rollout(MODEL_NAME, canary)
    assert deployer.rollout_status(MODEL_NAME) == canary
    before = versions_of(url, range(400))
    assert set(before) == {champion, candidate}
    assert f'model_version_rows_total{{version="{candidate}"}}' in deployer.metrics_text(MODEL_NAME)

    deployer.stop()
    deployer.start(champion, MODEL_NAME)

    assert deployer.rollout_status(MODEL_NAME) == canary
    assert versions_of(url, range(400)) == before
    assert deployer.end_rollout(MODEL_NAME) == champion
    assert deployer.rollout_status(MODEL_NAME) is None
    assert set(versions_of(url, range(400))) == {champion}
    deployer.stop()
    deployer.start(champion, MODEL_NAME)
    assert deployer.rollout_status(MODEL_NAME) is None, "an ended rollout came back with a restart"


def test_a_candidate_failing_its_smoke_test_leaves_the_champion_alone(deployer):
    champion_model = ChurnModel()
    champion = register(MODEL_NAME, champion_model)
    broken, wrong = register(MODEL_NAME, RaisingModel()), register(MODEL_NAME, ChurnModel(regularization=0.001, seed=7))
    sample = sample_frame(rows=4)
    deployer.deploy(MODEL_NAME, champion, sample, expected=champion_model.probabilities(sample))

    for version, reason in ((broken, "HTTP 500"), (wrong, "differ from the expected")):
        with pytest.raises(DeployFailed, match=reason) as failed:
            deployer.start_rollout(
                MODEL_NAME, RolloutConfig(version, "canary", 0.5), sample, champion_model.probabilities(sample)
            )
        assert "smoke test" in failed.value.stage and "served alone" in failed.value.served_now
        assert deployer.rollout_status(MODEL_NAME) is None
    probabilities = [
        item["probability"]
        for item in requests.post(
            f"{deployer.url}/invocations",
            json={"dataframe_split": {"columns": list(sample.columns), "data": sample.to_numpy().tolist()}},
            timeout=10,
        ).json()["predictions"]
    ]
    np.testing.assert_allclose(probabilities, champion_model.probabilities(sample), rtol=0, atol=1e-9)
