"""airflow_settings.yaml: the checked-in file loads, a malformed one names its offending key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from scripts.airflow_settings import SettingsError, load_settings_file, parse_settings

ROOT = Path(__file__).resolve().parents[3]
ENV = {"MLOPS_HOME": "/srv/mlops"}


def test_checked_in_settings_parse_with_gpu_pool_and_mlflow_connection():
    settings = load_settings_file(ROOT / "airflow_settings.yaml", ENV)
    assert settings.pools["gpu"]["slots"] >= 1
    mlflow = settings.connections["mlflow_default"]
    assert json.loads(mlflow["extra"])["tracking_uri"] == "sqlite:////srv/mlops/mlflow/mlflow.db"
    assert json.loads(settings.variables["gpu_node_selector"]) == {"nvidia.com/gpu.present": "true"}
    assert "kubernetes_default" in settings.connections


def _with(mutate):
    raw = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    mutate(raw["airflow"])
    return raw


@pytest.mark.parametrize(
    "mutate, named",
    [
        (lambda a: a["pools"][0].pop("pool_name"), "pool_name"),
        (lambda a: a["pools"][0].update(pool_slot="two"), "pool_slot"),
        (lambda a: a["connections"][0].update(conn_prot=1), "conn_prot"),
        (lambda a: a["connections"][1].pop("conn_type"), "conn_type"),
        (lambda a: a["connections"][0].update(conn_port="http"), "conn_port"),
        (lambda a: a["connections"][0].update(conn_extra="{not json"), "conn_extra"),
        (lambda a: a["variables"][0].pop("variable_value"), "variable_value"),
        (lambda a: a.update(pool=[]), "airflow.pool"),
        (lambda a: a.update(connections={"mlflow_default": {}}), "airflow.connections"),
    ],
)
def test_malformed_settings_name_the_offending_key(mutate, named):
    with pytest.raises(SettingsError, match=named):
        parse_settings(_with(mutate), ENV)


def test_unset_environment_variable_is_named():
    with pytest.raises(SettingsError, match="MLOPS_HOME"):
        parse_settings(_with(lambda a: None), {})


def test_not_yaml_is_refused(tmp_path):
    path = tmp_path / "airflow_settings.yaml"
    path.write_text("airflow: [unclosed")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings_file(path, ENV)
