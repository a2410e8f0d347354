"""Case 12: a malformed ``airflow_settings.yaml``, or one that lacks what the DAGs need.

Fault: ``python -m scripts.local_stack setup`` (what ``make setup`` runs) is given a settings
file with one thing wrong: an unknown key, a pool size that is not a number, a connection
extra that is not JSON, the ``mlflow_default`` connection missing, a required pool missing,
the retraining trigger's pool with more than one slot.
Expected: the set-up exits non-zero with one line naming the offending key, no traceback.
State checked: nothing was set up: no Airflow home, no metadata DB.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.reliability.conftest import ROOT

pytestmark = pytest.mark.reliability


def _without(items: list, key: str, value: str) -> list:
    return [item for item in items if item.get(key) != value]


FAULTS = {
    "unknown_key": (lambda a: a["connections"][0].update(conn_hots="localhost"), "unknown key 'conn_hots'"),
    "pool_slot_not_a_number": (
        lambda a: a["pools"][0].update(pool_slot="two"),
        "pool 'gpu': pool_slot must be a non-negative integer",
    ),
    "conn_extra_not_json": (
        lambda a: a["connections"][0].update(conn_extra="{tracking_uri:"),
        "connection 'mlflow_default': conn_extra is not valid JSON",
    ),
    "missing_mlflow_connection": (
        lambda a: a.update(connections=_without(a["connections"], "conn_id", "mlflow_default")),
        "connection 'mlflow_default' is missing",
    ),
    "missing_tracking_uri": (
        lambda a: a["connections"][0].update(conn_extra={}),
        "connection 'mlflow_default': missing key 'conn_extra.tracking_uri'",
    ),
    "missing_pool": (
        lambda a: a.update(pools=_without(a["pools"], "pool_name", "retrain_trigger")),
        "pool 'retrain_trigger' is missing",
    ),
    "trigger_pool_with_two_slots": (
        lambda a: a["pools"][1].update(pool_slot=2),
        "pool 'retrain_trigger': pool_slot must be 1",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_setup_names_the_offending_key_and_changes_nothing(tmp_path, fault):
    raw = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())
    mutate, named = FAULTS[fault]
    mutate(raw["airflow"])
    settings_file = tmp_path / "airflow_settings.yaml"
    settings_file.write_text(yaml.safe_dump(raw))
    home = tmp_path / "home"
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONPATH": f"{ROOT}:{ROOT / 'plugins'}"}
    env.pop("MLFLOW_TRACKING_URI", None)

    result = subprocess.run(
        [sys.executable, "-m", "scripts.local_stack", "setup", "--settings-file", str(settings_file)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )

    assert result.returncode == 2, result.stderr[-3000:]
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (home / "airflow").exists(), "set-up went on after a malformed settings file"


def test_the_checked_in_settings_have_what_the_dags_need():
    from scripts.airflow_settings import load_settings_file

    settings = load_settings_file(ROOT / "airflow_settings.yaml", {"MLOPS_HOME": "/srv/mlops"})
    assert settings.pools["retrain_trigger"]["slots"] == 1
    assert "mlflow_default" in settings.connections
