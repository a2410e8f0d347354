"""A private local profile for the integration tests: Airflow DB, MLflow, DVC, landed data."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from scripts.local_stack import free_port
from tests.conftest import TEST_LATENCY_BUDGET_MS

ROOT = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 3, 1)
DAYS = 16
LAST_DAY = FIRST_DAY + timedelta(days=DAYS - 1)
# ml_training's form for a quick model on the landed days (a few seconds of training)
FAST_TRAINING = {
    "epochs": 4,
    "batch_size": 128,
    "training_window_days": DAYS,
    "training_window_end": LAST_DAY.isoformat(),
    "gate_min": 0.7,
    "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
}


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


def xcom_value(dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    """The XCom ``key`` of ``task_id`` in run ``run_id`` of ``dag_id``, deserialised; None when there is none."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(
                XComModel.dag_id == dag_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
                XComModel.run_id == run_id,
            )
            .first()
        )
        return None if row is None else (json.loads(row.value) if isinstance(row.value, str) else row.value)


def finish_retraining_runs() -> None:
    """Mark the retraining runs drift_monitor created (``drift__<day>``) done: no scheduler runs them here."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        for run in session.query(DagRun).filter(DagRun.dag_id == "ml_training", DagRun.run_id.like("drift__%")):
            run.state = DagRunState.SUCCESS


@pytest.fixture
def settings(mlops_env, monkeypatch):
    """The local profile's settings on the test's private home, serving on a free port of 127.0.0.1."""
    from include.settings import Settings
    from include.tracking import configure
    from tests.unit.serving_models import forget_mlflow_uris

    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # a free port: the default one may be taken on this machine
    monkeypatch.setenv("MLOPS_SERVING_PORT", str(free_port()))
    settings = Settings.from_env()
    configure(settings)
    yield settings
    forget_mlflow_uris()


@pytest.fixture
def deployer(settings):
    """The local deployer of ``settings``; no server it started outlives the test."""
    from include.deployment.local import LocalServingDeployer
    from tests.integration.servers import kill_serving_processes

    deployer = LocalServingDeployer(settings, start_timeout=60)
    yield deployer
    # the deployer's own stop first, then anything it lost track of
    try:
        deployer.stop()
    finally:
        leftovers = kill_serving_processes()
    assert not leftovers, f"servers left running after the test: {leftovers}"


def answer_approval_when_asked(option: str, comment: str, timeout: float = 300) -> threading.Thread:
    """Answer ml_training's ``approve_deploy`` with ``option`` ("Approve"/"Reject") and ``comment`` as user
    ``reviewer``, the way the UI and the REST API do (the HITL response row plus the event that resumes
    the task), from a thread that waits up to ``timeout`` seconds for the question. Returns the thread."""
    # imported here, in the main thread: two threads importing Airflow's ORM models at once deadlock
    import airflow.dag_processing.dagbag  # noqa: F401
    from airflow._shared.timezones import timezone
    from airflow.models.hitl import HITLDetail
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import handle_event_submit
    from airflow.triggers.base import TriggerEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    def answer():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with create_session() as session:
                ti = (
                    session.query(TaskInstance)
                    .filter(
                        TaskInstance.dag_id == "ml_training",
                        TaskInstance.task_id == "approve_deploy",
                        TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                    )
                    .first()
                )
                if ti is not None:
                    detail = session.query(HITLDetail).filter(HITLDetail.ti_id == ti.id).one()
                    detail.responded_by = {"id": "reviewer", "name": "reviewer"}
                    detail.responded_at = timezone.utcnow()
                    detail.chosen_options = [option]
                    detail.params_input = {"comment": comment}
                    session.add(detail)
                    handle_event_submit(
                        TriggerEvent(detail.as_resume_event_payload()), task_instance=ti, session=session
                    )
                    return
            time.sleep(1)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread
