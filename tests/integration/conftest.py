"""A private local profile for the integration tests: Airflow DB, MLflow, DVC, landed data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from scripts.local_stack import free_port

ROOT = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 3, 1)
DAYS = 16
LAST_DAY = FIRST_DAY + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def local_profile(tmp_path_factory):
    """A private local profile per test module, with DAYS days of demo data landed."""
    home = tmp_path_factory.mktemp("local-profile")
    with pytest.MonkeyPatch.context() as patch:
        tracking_uri = f"sqlite:///{home}/mlflow/mlflow.db"
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLOPS_PROFILE", "local")
        patch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
        patch.setenv("MLOPS_SERVING_PORT", str(free_port()))
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT", json.dumps({"conn_type": "generic", "extra": {"tracking_uri": tracking_uri}})
        )
        patch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'plugins'}")
        # the session's Airflow DB (tests/conftest.py), shared by the modules: run ids never clash
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

        from include.data.spec import load_spec
        from include.settings import Settings
        from include.simulation.generate import land_days

        settings = Settings.from_env()
        spec = load_spec(settings.dataset_spec)
        land_days(spec, FIRST_DAY, DAYS, rows_per_day=250)
        yield settings, spec

        from include.deployment.local import LocalServingDeployer

        LocalServingDeployer(settings).stop()


def run_dag(dag_id: str, **test_kwargs) -> dict[str, str]:
    """Run ``dag_id`` once with ``dag.test()``; the final state of each task (and ``run_id``)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
    assert bag.import_errors == {}
    run = bag.dags[dag_id].test(**test_kwargs)
    with create_session() as session:
        dag_run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run.run_id).one()
        states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances(session=session)}
    run_dag.last_run_id = run.run_id
    return states
