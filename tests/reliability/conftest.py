"""The real local stack the fault-injection suite breaks on purpose, shared by its modules.

One private MLOPS_HOME for the package, with:

- a real ``mlflow server`` process on a free port of 127.0.0.1 (SQLite store behind it),
  which the tasks reach over HTTP through the ``mlflow_default`` connection, so that a
  test can stop it mid-run and start it again;
- the session's Airflow DB (``airflow db migrate``), for ``dag.test()`` runs of the real DAGs;
- a DVC data registry, landed demo data, and the model server on a free port;
- canary secrets where a deployment keeps its secrets (the connection's password, the
  MLflow token, the object-store key): ``test_security`` scans what the other tests left
  behind for them.

Every process started here is stopped by pid in the fixtures' finalizers.
"""

from __future__ import annotations

import atexit
import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, date, timedelta
from pathlib import Path

import pytest

from scripts.local_stack import free_port
from tests.conftest import TEST_LATENCY_BUDGET_MS

ROOT = Path(__file__).resolve().parents[2]
FIRST_DAY = date(2026, 5, 1)
DAYS = 14
ROWS_PER_DAY = 200
LAST_DAY = FIRST_DAY + timedelta(days=DAYS - 1)
# values no log, XCom, MLflow param or pod spec may ever contain
CANARIES = {
    "connection password": "canary-conn-pw-7b3e91",
    "MLFLOW_TRACKING_TOKEN": "canary-mlflow-token-4d82c0",
    "AWS_SECRET_ACCESS_KEY": "canary-object-store-key-a19f55",
}
FAST_TRAINING = {
    "model_type": "sklearn_hgb",
    "epochs": 3,
    "training_window_days": DAYS,
    "training_window_end": LAST_DAY.isoformat(),
    "gate_min": 0.6,
    "latency_budget_ms": TEST_LATENCY_BUDGET_MS,
}


@dataclass
class Stack:
    home: Path
    settings: object
    spec: object
    mlflow: object  # scripts.mlflow_server.MlflowServer
    logs: Path  # what the dag.test runs printed, for the secret scan

    def client(self):
        import mlflow

        from include import tracking

        tracking.configure(self.settings)
        return mlflow.MlflowClient()

    def alias(self, alias: str, model_name: str | None = None) -> str | None:
        from include import registry, tracking

        tracking.configure(self.settings)
        return registry.alias_version(model_name or self.settings.model_name, alias)

    def aliases(self) -> dict[str, str | None]:
        from include import registry

        return {name: self.alias(name) for name in (registry.CHALLENGER, registry.CHAMPION, registry.PREVIOUS_CHAMPION)}

    def versions(self) -> list[str]:
        client = self.client()
        return sorted(
            (str(v.version) for v in client.search_model_versions(f"name='{self.settings.model_name}'")), key=int
        )

    def training_runs(self, airflow_run_id: str | None = None) -> list:
        from include.tracking import TRAINING_EXPERIMENT

        client = self.client()
        experiment = client.get_experiment_by_name(TRAINING_EXPERIMENT)
        if experiment is None:
            return []
        condition = f"tags.`airflow.run_id` = '{airflow_run_id}'" if airflow_run_id else ""
        return client.search_runs([experiment.experiment_id], filter_string=condition)


@pytest.fixture(scope="package")
def stack(tmp_path_factory) -> Stack:
    from scripts.mlflow_server import MlflowServer

    home = tmp_path_factory.mktemp("reliability")
    (home / "mlflow").mkdir()
    server = MlflowServer(
        f"sqlite:///{home}/mlflow/mlflow.db",
        (home / "mlflow" / "artifacts").as_uri(),
        free_port(),
        home / "run" / "mlflow-server.log",
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLOPS_PROFILE", "local")
        patch.setenv("MLFLOW_TRACKING_URI", server.url)
        patch.setenv("MLOPS_SERVING_PORT", str(free_port()))
        patch.setenv(
            "AIRFLOW_CONN_MLFLOW_DEFAULT",
            json.dumps(
                {
                    "conn_type": "generic",
                    "password": CANARIES["connection password"],
                    "extra": {"tracking_uri": server.url},
                }
            ),
        )
        patch.setenv("MLFLOW_TRACKING_TOKEN", CANARIES["MLFLOW_TRACKING_TOKEN"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", CANARIES["AWS_SECRET_ACCESS_KEY"])
        patch.setenv("PYTHONPATH", f"{ROOT}:{ROOT / 'plugins'}")
        # a retried task waits about a second, not the production 20 s (read when a DAG file is parsed)
        patch.setenv("MLOPS_RETRY_DELAY_SECONDS", "1")
        # the session's Airflow DB (tests/conftest.py): dag.test() runs record their task instances there
        subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
        server.start()
        # a test run killed from outside (SIGTERM, Ctrl-C) skips the finalizer below: not the server
        atexit.register(server.stop)
        from include.data.spec import load_spec
        from include.deployment.local import LocalServingDeployer
        from include.settings import Settings
        from include.simulation.generate import land_days

        settings = Settings.from_env()
        try:
            spec = load_spec(settings.dataset_spec)
            land_days(spec, FIRST_DAY, DAYS, rows_per_day=ROWS_PER_DAY)
            yield Stack(home, settings, spec, server, home / "run" / "dag-test-output.log")
        finally:
            try:
                LocalServingDeployer(settings).stop()
            finally:
                server.stop()
                atexit.unregister(server.stop)


# ---------------------------------------------------------------------------- DAG runs
@dataclass
class DagRunResult:
    run_id: str
    states: dict[str, str]
    tries: dict[str, int]
    output: str  # everything the run printed and logged (task logs included)


def run_dag(stack: Stack, dag_id, request=None, adjust=None, **test_kwargs) -> DagRunResult:
    """Run ``dag_id`` once with ``dag.test()``: final state and try number of each task, and its output.

    The DAG file is parsed here, so environment set before the call (e.g. the retry delay)
    applies to this run; ``adjust`` is then called with the parsed DAG (to hook a fault onto it). The task logs are what pytest captured meanwhile (``request``
    gives access to it; with ``-s`` nothing is captured); they are also appended to
    ``stack.logs`` for the secret scan.
    """
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    if isinstance(dag_id, str):
        bag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py"))
        assert bag.import_errors == {}
        dag = bag.dags[dag_id]
        if adjust is not None:
            adjust(dag)
    else:  # a DAG object built by the test around a real operator, registered as a parsed one would be
        from airflow.dag_processing.dagbag import sync_bag_to_db

        dag, dag_id = dag_id, dag_id.dag_id
        bag = DagBag(dag_folder=str(ROOT / "dags" / "ml_training.py"))
        bag.bag_dag(dag)
        sync_bag_to_db(bag, "dags-folder", None)
    capture = request.config.pluginmanager.getplugin("capturemanager") if request is not None else None
    capturing = capture is not None and capture.is_globally_capturing()
    if capturing:
        before = capture.read_global_capture()
        sys.stdout.write(before.out)
        sys.stderr.write(before.err)
    run = dag.test(**test_kwargs)
    output = ""
    if capturing:
        captured = capture.read_global_capture()
        output = captured.out + captured.err
        # shown again with the test's report, as if it had never been read
        sys.stdout.write(captured.out)
        sys.stderr.write(captured.err)
    stack.logs.parent.mkdir(parents=True, exist_ok=True)
    with open(stack.logs, "a") as log:
        log.write(output)
    with create_session() as session:
        dag_run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run.run_id).one()
        tis = dag_run.get_task_instances(session=session)
        states = {ti.task_id: str(ti.state) for ti in tis}
        tries = {ti.task_id: ti.try_number for ti in tis}
    return DagRunResult(run.run_id, states, tries, output)


def xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
            .first()
        )
        if row is None:
            return None
        return json.loads(row.value) if isinstance(row.value, str) else row.value


def task_state(dag_id: str, task_id: str, since) -> tuple[str | None, int] | None:
    """(state, try_number) of the newest task instance of ``dag_id.task_id`` whose run started after
    ``since`` (an aware datetime), from the metadata DB; None before there is one."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .join(DagRun, (DagRun.dag_id == TaskInstance.dag_id) & (DagRun.run_id == TaskInstance.run_id))
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id, DagRun.start_date >= since)
            .order_by(DagRun.start_date.desc())
            .first()
        )
        return None if ti is None else (None if ti.state is None else str(ti.state), ti.try_number)


class Watcher(threading.Thread):
    """Runs ``action`` once ``condition()`` holds, polling while a dag.test() run goes on in the main thread."""

    def __init__(self, condition, action, timeout: float = 600):
        super().__init__(daemon=True)
        self.condition, self.action, self.timeout = condition, action, timeout
        self.fired = threading.Event()
        self.error: BaseException | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._stop_event.is_set() and time.monotonic() < deadline:
                if self.condition():
                    self.action()
                    self.fired.set()
                    return
                time.sleep(0.2)
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


# ---------------------------------------------------------------------------- the champion
@pytest.fixture(scope="package")
def champion_run(stack: Stack, request) -> dict:
    """The first champion, trained through ml_training while the MLflow server goes down and comes back.

    The server is stopped the moment ``train`` has succeeded (its success callback), so
    that ``evaluate`` always starts against a dead server, however fast it would be; it is
    started again once that attempt has failed, and the retry (after its backoff) finds it
    back. The retry delay is raised for this run so that the restart always fits before the retry.
    """
    from datetime import datetime, timezone

    events: list[str] = []
    since = datetime.now(UTC)

    def evaluate_failed_once() -> bool:
        state = task_state("ml_training", "evaluate", since)
        return state is not None and state[0] in ("up_for_retry", "failed")

    def stop_server(context) -> None:
        stack.mlflow.stop()
        events.append("stopped")

    def restart_server() -> None:
        events.append(f"evaluate {task_state('ml_training', 'evaluate', since)[0]}")
        stack.mlflow.start()
        events.append("restarted")

    def stop_after_train(dag) -> None:
        dag.get_task("train").on_success_callback = [stop_server]

    # Airflow's models are imported here, in the main thread: importing them from the watcher
    # thread while dag.test() imports them too deadlocks on the import lock
    task_state("ml_training", "evaluate", since)
    restarter = Watcher(lambda: "stopped" in events and evaluate_failed_once(), restart_server)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_RETRY_DELAY_SECONDS", "10")
        restarter.start()
        try:
            result = run_dag(
                stack,
                "ml_training",
                request,
                adjust=stop_after_train,
                run_conf={**FAST_TRAINING, "reason": "first champion"},
            )
        finally:
            restarter.stop()
            if not stack.mlflow.running:
                stack.mlflow.start()
    if restarter.error is not None:
        raise restarter.error
    return {"result": result, "events": events, "champion": stack.alias("champion")}


# ---------------------------------------------------------------------------- PostgreSQL
@dataclass
class Postgres:
    host: str
    port: int

    def url(self, database: str) -> str:
        # the driver the project ships (SQLAlchemy's default for postgresql:// is psycopg 3)
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new, empty database on this server; its URL."""
        import sqlalchemy as sa

        engine = sa.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        return self.url(name)


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL is not installed: `make test` installs Debian's postgresql (target system-deps)")
    return found[-1].parent


@pytest.fixture(scope="package")
def postgres(tmp_path_factory) -> Postgres:
    """A throwaway PostgreSQL server on a free port of 127.0.0.1, stopped (by pg_ctl) at the end.

    As root, PostgreSQL refuses to run: it then runs as the ``postgres`` user of Debian's package.
    """
    import os
    import pwd
    import shutil
    import tempfile

    binaries = _postgres_bin()
    as_postgres: list[str] = []
    owner = None
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    # outside pytest's tmp folders, which the postgres user cannot enter
    base = Path(tempfile.mkdtemp(prefix="mlops-reliability-pg-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    if owner is not None:
        for path in (base, sockets):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    port = free_port()
    log = base / "server.log"
    subprocess.run(
        [
            *as_postgres,
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        ],
        check=True,
        capture_output=True,
    )
    pg_ctl = [*as_postgres, str(binaries / "pg_ctl"), "-D", str(data)]
    subprocess.run(
        [
            *pg_ctl,
            "-l",
            str(log),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h 127.0.0.1 -p {port} -k {sockets} -c fsync=off -c max_connections=50",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        server = Postgres("127.0.0.1", port)
        server.create_database("mlflow")
        yield server
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
