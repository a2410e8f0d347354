"""The settings model: defaults, variable names, explicit overrides, errors, the serving section."""

from __future__ import annotations

from pathlib import Path

import pytest

from include.deployment.serving_config import ServingConfig
from include.settings import PROJECT_ROOT, ServingSettings, Settings


def test_defaults_live_under_the_home_folder(tmp_path):
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path)})

    assert settings.profile == "local"
    assert settings.home == tmp_path.resolve()
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"
    assert settings.artifact_root == (tmp_path.resolve() / "mlflow" / "artifacts").as_uri()
    assert settings.model_name == "customer_churn"
    assert settings.dataset_spec == PROJECT_ROOT / "include/datasets/customer_churn.yaml"
    assert settings.data_registry == str(tmp_path.resolve() / "data-registry")
    assert settings.data_registry_remote is None
    assert settings.dvc_remote == str(tmp_path.resolve() / "dvc-remote")
    assert settings.inference_log == str(tmp_path.resolve() / "inference-log")
    assert settings.reports == str(tmp_path.resolve() / "reports")
    assert settings.promotion_lock == str(tmp_path.resolve() / "locks" / "promotion.lock")
    assert settings.serving_url == "http://127.0.0.1:5080"
    assert settings.path("serving", "x.log") == tmp_path.resolve() / "serving" / "x.log"


def test_the_home_defaults_to_local_in_the_checkout():
    assert Settings.from_env({}).home == (PROJECT_ROOT / ".local").resolve()


def test_every_field_comes_from_its_variable(tmp_path):
    settings = Settings.from_env(
        {
            "MLOPS_PROFILE": "kubernetes",
            "MLOPS_HOME": str(tmp_path),
            "MLFLOW_TRACKING_URI": "postgresql://mlflow@db/mlflow",
            "MLOPS_ARTIFACT_ROOT": "s3://bucket/artifacts",
            "MLOPS_MODEL_NAME": "fraud",
            "MLOPS_DATASET_SPEC": "include/datasets/other.yaml",
            "MLOPS_DATA_REGISTRY": "/srv/registry",
            "MLOPS_DATA_REGISTRY_REMOTE": "",
            "MLOPS_DVC_REMOTE": "s3://bucket/dvc",
            "MLOPS_INFERENCE_LOG": "s3://bucket/log",
            "MLOPS_REPORTS": "s3://bucket/reports",
            "MLOPS_SERVING_HOST": "0.0.0.0",
            "MLOPS_SERVING_PORT": "9000",
        }
    )

    assert settings.profile == "kubernetes"
    assert settings.tracking_uri == "postgresql://mlflow@db/mlflow"
    assert settings.artifact_root == "s3://bucket/artifacts"
    assert settings.model_name == "fraud"
    assert settings.dataset_spec == PROJECT_ROOT / "include/datasets/other.yaml"
    assert (settings.data_registry, settings.data_registry_remote) == ("/srv/registry", None)
    assert (settings.dvc_remote, settings.inference_log, settings.reports) == (
        "s3://bucket/dvc",
        "s3://bucket/log",
        "s3://bucket/reports",
    )
    # a PostgreSQL tracking store serialises promotions itself
    assert settings.promotion_lock == "postgresql://mlflow@db/mlflow"
    assert settings.serving_url == "http://0.0.0.0:9000"


def test_the_kubernetes_profile_has_no_default_artifact_root():
    assert Settings.from_env({"MLOPS_PROFILE": "kubernetes"}).artifact_root is None


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_SERVING_REPLICAS", "4")

    settings = Settings.from_env()

    assert settings.home == tmp_path.resolve()
    assert settings.serving.replicas == 4


def test_an_explicit_mapping_ignores_the_process_environment(monkeypatch):
    monkeypatch.setenv("MLOPS_MODEL_NAME", "from-the-process")

    assert Settings.from_env({}).model_name == "customer_churn"


def test_overrides_win_over_the_environment():
    settings = Settings.from_env(
        {"MLFLOW_TRACKING_URI": "http://env:5000", "MLOPS_SERVING_IMAGE": "env/image:1"},
        overrides={"tracking_uri": "http://connection:5000", "serving": {"image": "variable/image:2", "replicas": "5"}},
    )

    assert settings.tracking_uri == "http://connection:5000"
    assert settings.serving.image == "variable/image:2"
    assert settings.serving.replicas == 5


def test_settings_are_frozen_and_replace_gives_a_checked_copy():
    settings = Settings.from_env({})
    with pytest.raises(ValueError):  # pydantic refuses assignment to a frozen model
        settings.profile = "kubernetes"  # type: ignore[misc]

    assert settings.replace(profile="kubernetes").profile == "kubernetes"
    assert settings.replace(model_name="other").model_name == "other"
    with pytest.raises(ValueError, match="MLOPS_PROFILE='cloud'"):
        settings.replace(profile="cloud")


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"MLOPS_PROFILE": "cloud"}, "MLOPS_PROFILE='cloud' is not one of local, kubernetes"),
        ({"MLOPS_SERVING_PORT": "http"}, "MLOPS_SERVING_PORT='http' is not a whole number"),
        ({"MLOPS_SERVING_REPLICAS": "two"}, "MLOPS_SERVING_REPLICAS='two' is not a whole number"),
        ({"MLOPS_SERVING_HPA": "maybe"}, "MLOPS_SERVING_HPA='maybe' is not true or false"),
    ],
)
def test_a_bad_value_is_an_error_naming_its_variable(environ, message):
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ)


def test_a_bad_serving_override_names_its_variable():
    with pytest.raises(ValueError, match="MLOPS_SERVING_REPLICAS='lots' is not a whole number"):
        Settings.from_env({}, overrides={"serving": {"replicas": "lots"}})


def test_the_serving_section_reads_mlops_serving_variables():
    serving = ServingSettings.from_env(
        {
            "MLOPS_SERVING_NAMESPACE": " churn-prod ",
            "MLOPS_SERVING_HPA": "yes",
            "MLOPS_SERVING_MIN_REPLICAS": "3",
            "MLOPS_SERVING_CPU_LIMIT": "",
            "MLOPS_SERVING_IMAGE": "",
            "MLOPS_SERVING_TRACKING_URI": "",
        }
    )

    assert serving.namespace == "churn-prod"
    assert serving.hpa_enabled is True and serving.min_replicas == 3 and serving.max_replicas is None
    assert serving.cpu_limit is None  # set empty: none
    assert serving.image == "ghcr.io/example/churn-serving:latest"  # set empty: the default
    assert serving.tracking_uri == "" and serving.inference_log is None  # empty vs unset
    assert ServingSettings.from_env({}).credentials_secret == "mlops-serving-credentials"


def test_the_serving_config_is_a_view_of_the_section():
    settings = Settings.from_env(
        {
            "MLOPS_PROFILE": "kubernetes",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "MLOPS_INFERENCE_LOG": "s3://bucket/log",
        },
        overrides={"serving": {"namespace": "churn-prod", "replicas": "3"}},
    )

    config = ServingConfig.from_settings(settings)

    assert (config.namespace, config.replicas, config.min_replicas, config.max_replicas) == ("churn-prod", 3, 3, 9)
    assert config.tracking_uri == "http://mlflow:5000"
    assert config.inference_log == "s3://bucket/log"


def test_the_home_may_be_relative(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env({"MLOPS_HOME": "state"}).home == Path(tmp_path / "state").resolve()
