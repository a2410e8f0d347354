"""Every test runs against its own state folder, never the checkout's .local/."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The latency budget of the runs that tests train to get a champion. The gate's latency
# check has tests of its own; on a busy 2-core machine a single-row predict can take
# hundreds of milliseconds, and that must not decide whether those runs deploy.
TEST_LATENCY_BUDGET_MS = 5000
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="mlops-test-home-"))
os.environ["MLOPS_HOME"] = str(_SESSION_HOME)
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_SESSION_HOME}/mlflow/mlflow.db"
os.environ.pop("MLOPS_PROFILE", None)
# Airflow reads its configuration at import: point it at a private home first
os.environ["AIRFLOW_HOME"] = str(_SESSION_HOME / "airflow")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT_ROOT / "plugins")
os.environ["GIT_PYTHON_REFRESH"] = "quiet"


@pytest.fixture
def mlops_env(tmp_path, monkeypatch):
    """Settings for an empty, private local profile under tmp_path."""
    from include.settings import Settings

    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow/mlflow.db")
    monkeypatch.setenv("MLOPS_PROFILE", "local")
    return Settings.from_env()


@pytest.fixture
def spec(mlops_env):
    from include.data.spec import load_spec

    return load_spec(mlops_env.dataset_spec)
