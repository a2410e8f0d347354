"""The local deploy step with real server processes, real HTTP and a real MLflow registry."""

from __future__ import annotations

import numpy as np
import psutil
import pytest
import requests

from include.deployment import DeployFailed, deployer_for
from include.deployment.local import LocalServingDeployer, ServingError
from include.registry import CHAMPION, PREVIOUS_CHAMPION
from include.registry import alias_version as registry_alias_version
from include.settings import Settings
from scripts.local_stack import free_port
from tests.integration.servers import kill_serving_processes, serving_processes
from tests.unit.serving_models import (
    ChurnModel,
    GarbageModel,
    RaisingModel,
    UnloadableModel,
    forget_mlflow_uris,
    register,
    sample_frame,
)

pytestmark = pytest.mark.integration

MODEL_NAME = "customer_churn"


def alias_version(model_name: str, alias: str) -> str | None:
    # include.registry.alias_version hands back the store's int; the aliases are compared as strings here
    version = registry_alias_version(model_name, alias)
    return None if version is None else str(version)


def predict(url: str, sample) -> tuple[str, np.ndarray]:
    payload = {"dataframe_split": {"columns": list(sample.columns), "data": sample.to_numpy().tolist()}}
    response = requests.post(f"{url}/invocations", json=payload, timeout=10)
    response.raise_for_status()
    probabilities = np.array([item["probability"] for item in response.json()["predictions"]])
    return response.headers["X-Model-Version"], probabilities


def health_version(url: str) -> str:
    return requests.get(f"{url}/health", timeout=5).json()["model_version"]


def test_deployer_for_picks_the_profile(settings):
    assert isinstance(deployer_for(settings), LocalServingDeployer)
    # the kubernetes profile needs the cluster's API client (from the provider's KubernetesHook)
    with pytest.raises(ValueError, match="kubernetes_client"):
        deployer_for(settings.replace(profile="kubernetes"))


def test_first_deploy_starts_the_server_on_loopback_and_makes_it_champion(deployer, settings):
    model = ChurnModel()
    version = register(MODEL_NAME, model)
    sample = sample_frame(rows=6)

    result = deployer.deploy(MODEL_NAME, version, sample, expected=model.probabilities(sample))

    assert (result.version, result.previous_champion, result.url) == (version, None, settings.serving_url)
    assert alias_version(MODEL_NAME, CHAMPION) == version
    status = deployer.status()
    assert status.running and status.version == version
    served_version, probabilities = predict(result.url, sample)
    assert served_version == version
    np.testing.assert_allclose(probabilities, model.probabilities(sample), rtol=0, atol=1e-9)
    listening = [c for c in psutil.Process(status.pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert [(c.laddr.ip, c.laddr.port) for c in listening] == [("127.0.0.1", settings.serving_port)]

    # deploying the champion again only re-runs the smoke test on the same process
    again = deployer.deploy(MODEL_NAME, version, sample, expected=model.probabilities(sample))

    assert (again.version, again.previous_champion) == (version, None) and again.smoke.checks
    assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) is None
    assert deployer.status().pid == status.pid
    assert alias_version(MODEL_NAME, CHAMPION) == version


def test_a_second_version_is_reloaded_in_place_and_becomes_champion(deployer):
    first, second = ChurnModel(), ChurnModel(regularization=0.001, seed=7)
    first_version, second_version = register(MODEL_NAME, first), register(MODEL_NAME, second)
    sample = sample_frame(rows=6)
    assert not np.allclose(first.probabilities(sample), second.probabilities(sample), atol=1e-3)
    deployer.deploy(MODEL_NAME, first_version, sample, expected=first.probabilities(sample))
    pid = deployer.status().pid

    result = deployer.deploy(MODEL_NAME, second_version, sample, expected=second.probabilities(sample))

    assert result.previous_champion == first_version
    assert alias_version(MODEL_NAME, CHAMPION) == second_version
    assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) == first_version
    assert deployer.status().pid == pid, "the server was restarted instead of reloaded"
    again = deployer.deploy(MODEL_NAME, second_version, sample, expected=second.probabilities(sample))
    assert again.previous_champion == first_version
    assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) == first_version
    served_version, probabilities = predict(result.url, sample)
    assert served_version == second_version
    np.testing.assert_allclose(probabilities, second.probabilities(sample), rtol=0, atol=1e-9)


def test_broken_versions_are_refused_and_the_champion_stays_served(deployer):
    """One server, three kinds of broken version: each deploy must leave the champion in place."""
    good = ChurnModel()
    champion = register(MODEL_NAME, good)
    sample = sample_frame(rows=4)
    deployer.deploy(MODEL_NAME, champion, sample, expected=good.probabilities(sample))
    pid = deployer.status().pid
    broken = {
        "predict raises": (register(MODEL_NAME, RaisingModel()), "smoke test", "HTTP 500"),
        "garbage output": (register(MODEL_NAME, GarbageModel()), "smoke test", "not finite in [0, 1]"),
        "does not load": (register(MODEL_NAME, UnloadableModel()), "reloading", "corrupt"),
        "wrong expectation": (
            register(MODEL_NAME, ChurnModel(regularization=0.001, seed=7)),
            "smoke test",
            "differ from the expected",
        ),
    }

    for kind, (version, stage, reason) in broken.items():
        with pytest.raises(DeployFailed) as failed:
            deployer.deploy(MODEL_NAME, version, sample, expected=good.probabilities(sample))

        message = str(failed.value)
        assert stage in message and reason in message, f"{kind}: {message}"
        assert f"version {champion} (the champion) is served" in message, f"{kind}: {message}"
        assert alias_version(MODEL_NAME, CHAMPION) == champion, kind
        assert alias_version(MODEL_NAME, PREVIOUS_CHAMPION) is None, kind
        assert health_version(deployer.url) == champion, kind
        served_version, probabilities = predict(deployer.url, sample)
        assert served_version == champion, kind
        np.testing.assert_allclose(probabilities, good.probabilities(sample), rtol=0, atol=1e-9)
    assert deployer.status().pid == pid


def test_a_failed_deploy_restarts_the_champion_when_no_server_was_running(deployer):
    good = ChurnModel()
    champion = register(MODEL_NAME, good)
    sample = sample_frame(rows=3)
    deployer.deploy(MODEL_NAME, champion, sample)
    deployer.stop()  # e.g. the machine rebooted since the last deploy
    broken = register(MODEL_NAME, RaisingModel())

    with pytest.raises(DeployFailed, match=f"version {champion} \\(the champion\\) is served"):
        deployer.deploy(MODEL_NAME, broken, sample)

    assert deployer.status().running and health_version(deployer.url) == champion
    assert alias_version(MODEL_NAME, CHAMPION) == champion


def test_a_failed_first_deploy_leaves_nothing_running(deployer, settings):
    broken = register(MODEL_NAME, RaisingModel())

    with pytest.raises(DeployFailed, match="nothing is served"):
        deployer.deploy(MODEL_NAME, broken, sample_frame(rows=3))

    assert deployer.status() is None
    assert serving_processes() == []
    assert alias_version(MODEL_NAME, CHAMPION) is None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{settings.serving_url}/health", timeout=2)


def test_stop_leaves_no_process_behind(deployer, settings):
    version = register(MODEL_NAME, ChurnModel())
    pid = deployer.start(version, MODEL_NAME).pid
    assert psutil.pid_exists(pid)

    assert deployer.stop() is True

    assert not psutil.pid_exists(pid)
    assert serving_processes() == []
    assert deployer.status() is None and not deployer.state_path.exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{settings.serving_url}/health", timeout=2)
    assert deployer.stop() is False


def test_a_server_that_cannot_load_its_model_fails_start_with_the_log(deployer):
    register(MODEL_NAME, ChurnModel())

    with pytest.raises(ServingError, match="exited with code") as failed:
        deployer.start("42", MODEL_NAME)

    assert "not found" in str(failed.value)  # the tail of server.log explains why
    assert deployer.status() is None and serving_processes() == []
