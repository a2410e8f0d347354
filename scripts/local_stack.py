"""The local profile's Airflow: set-up, start, stop, and a small REST client.

Every process started here is recorded (pid and start time) under
``<MLOPS_HOME>/run/`` and started in a session of its own, so ``stop`` ends it
together with the workers it spawned, and never touches a process it did not start.

    python -m scripts.local_stack setup|start|stop|status|env
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import requests

from include.settings import PROJECT_ROOT, Settings
from include.util.fs import write_atomically
from include.util.procs import ManagedProcess, log_tail
from include.util.wait import wait_until
from scripts.airflow_client import AirflowClient

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"


@dataclass
class ProcessRecord:
    name: str
    pid: int
    create_time: float
    command: list[str]


def _process(record: ProcessRecord) -> ManagedProcess:
    # pid and start time together: a recycled pid belongs to somebody else and is left alone
    return ManagedProcess(record.pid, record.create_time)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalStack:
    """The local Airflow (api-server, scheduler, dag-processor, triggerer) of one MLOPS_HOME."""

    def __init__(self, home: Path | None = None, api_port: int | None = None, extra_env: dict[str, str] | None = None):
        base_env = dict(os.environ)
        if home is not None:
            base_env["MLOPS_HOME"] = str(home)
            base_env.pop("MLFLOW_TRACKING_URI", None)
        self.extra_env = extra_env or {}
        # the settings are those the stack's processes see: the local profile, extra_env included
        self.settings = Settings.from_env({**base_env, "MLOPS_PROFILE": "local", **self.extra_env})
        self.home = self.settings.home
        self.api_port = api_port or int(os.environ.get("AIRFLOW_PORT", "8080"))
        self.run_dir = self.home / "run"
        self.airflow_home = self.home / "airflow"

    # ----------------------------------------------------------------- environment
    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
                "PYTHONPATH": str(PROJECT_ROOT),
                "MLOPS_PROFILE": "local",
                "MLOPS_HOME": str(self.home),
                "MLFLOW_TRACKING_URI": self.settings.tracking_uri,
                "AIRFLOW_HOME": str(self.airflow_home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                # LocalExecutor starts one worker process per slot: 32 by default, far too
                # many for a laptop; the training step is the only heavy task anyway.
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
                "AIRFLOW__API__BASE_URL": self.api_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                "GIT_PYTHON_REFRESH": "quiet",
                "NO_PROXY": "127.0.0.1,localhost",
            }
        )
        env.update(self.extra_env)
        if "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN" not in self.extra_env:
            # The scheduler, dag-processor, triggerer, api-server and workers all write to one
            # SQLite file. SQLite's default 5 s wait for its write lock runs out when the machine
            # is busy training, and the API then answers 503 "database is locked"; 30 s rides it out.
            database = Path(env["AIRFLOW_HOME"]) / "airflow.db"
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{database}?timeout=30"
        return env

    def airflow(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command against this stack's home."""
        result = subprocess.run(["airflow", *args], env=self.env(), text=True, capture_output=capture, cwd=PROJECT_ROOT)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"`airflow {shlex.join(args)}` failed ({result.returncode}):\n"
                f"{(result.stderr or '')[-3000:]}{(result.stdout or '')[-2000:]}"
            )
        return result

    # ----------------------------------------------------------------- set-up
    def setup(self, settings_file: Path = PROJECT_ROOT / "airflow_settings.yaml") -> None:
        """Create what is missing: Airflow DB, settings, MLflow folders, DVC data registry."""
        from scripts.airflow_settings import load_settings_file

        # validate before touching anything, so a malformed file names its key and changes nothing
        settings = load_settings_file(settings_file, self.env())
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        (self.home / "mlflow").mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        settings.apply(self)
        from include.data.versioning import DataRegistry

        DataRegistry(self.settings.data_registry, self.settings.dvc_remote).ensure()

    # ----------------------------------------------------------------- processes
    def _record_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.json"

    def _read_record(self, name: str) -> ProcessRecord | None:
        try:
            return ProcessRecord(**json.loads(self._record_path(name).read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    def running(self) -> dict[str, ProcessRecord]:
        records = {}
        for name in COMPONENTS:
            record = self._read_record(name)
            if record and _process(record).alive():
                records[name] = record
        return records

    def start(self, timeout: float = 180) -> None:
        """Start every component that is not running yet, each in its own session and recorded
        under ``run_dir``, then wait up to ``timeout`` seconds for Airflow to report healthy.

        Returns nothing. Raises ``RuntimeError`` when another program holds the api-server's
        port or a component exits while starting, ``TimeoutError`` when Airflow is not healthy
        in time, and ``OSError`` when a log or record cannot be written.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        running = self.running()
        if "api-server" not in running and not port_is_free(self.api_port):
            raise RuntimeError(
                f"port {self.api_port} on 127.0.0.1 is taken by another program; set AIRFLOW_PORT to a free port"
            )
        for name in COMPONENTS:
            if name in running:
                continue
            command = self.command(name)
            process = ManagedProcess.start(
                command, log_path=self.run_dir / f"{name}.log", env=self.env(), cwd=PROJECT_ROOT
            )
            record = ProcessRecord(name, process.pid, process.create_time, command)
            # stop and status read this record from another process: it is whole or absent
            write_atomically(self._record_path(name), json.dumps(record.__dict__))
        self.wait_healthy(timeout)

    def command(self, name: str) -> list[str]:
        """The command line of one component; the api-server listens on 127.0.0.1 only."""
        command = ["airflow", name]
        if name == "api-server":
            command += ["--host", "127.0.0.1", "--port", str(self.api_port), "--workers", "1"]
        return command

    def wait_healthy(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds until Airflow reports its metadatabase, scheduler and
        dag-processor healthy. Returns nothing. Raises ``RuntimeError`` with their log tails when
        a component has exited, ``TimeoutError`` with the last answer (or error) otherwise."""
        last_error = "no answer"

        def healthy() -> bool:
            nonlocal last_error
            dead = [name for name in COMPONENTS if name not in self.running()]
            if dead:
                logs = "\n".join(f"--- {n}.log ---\n{log_tail(self.run_dir / f'{n}.log')}" for n in dead)
                raise RuntimeError(f"Airflow component(s) exited: {', '.join(dead)}\n{logs}")
            try:
                health = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=5).json()
                scheduler = health.get("scheduler", {}).get("status")
                dag_processor = health.get("dag_processor", {}).get("status")
                if (
                    health.get("metadatabase", {}).get("status") == "healthy"
                    and scheduler == "healthy"
                    and dag_processor == "healthy"
                ):
                    return True
                last_error = json.dumps(health)
            except (requests.RequestException, ValueError) as exc:
                last_error = str(exc)
            return False

        wait_until(
            healthy,
            timeout,
            interval=2,
            on_timeout=lambda: TimeoutError(
                f"Airflow at {self.api_url} not healthy after {timeout:.0f}s: {last_error}"
            ),
        )

    def stop(self, timeout: float = 20) -> list[str]:
        """Stop every process this stack started (Airflow components and the model server)."""
        stopped = self.stop_airflow(timeout)
        from include.deployment.local import LocalServingDeployer

        deployer = LocalServingDeployer(self.settings)
        if deployer.status() is not None:
            deployer.stop()
            stopped.append("model-server")
        else:
            deployer.stop()  # clears a stale state file, if any
        return stopped

    def stop_airflow(self, timeout: float = 20) -> list[str]:
        """Stop the Airflow components only: a model server keeps serving."""
        stopped = []
        for name in COMPONENTS:
            record = self._read_record(name)
            if record is None:
                continue
            process = _process(record)
            if process.alive():
                process.stop_group(timeout)
                stopped.append(name)
            self._record_path(name).unlink(missing_ok=True)
        return stopped

    # ----------------------------------------------------------------- REST API
    def admin_password(self) -> str:
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        # the api-server writes the file once it is up; if it never does, reading it below
        # raises FileNotFoundError naming the file, which says more than a timeout would
        with contextlib.suppress(TimeoutError):
            wait_until(path.exists, 30, interval=0.5, what=f"{path} not written")
        return json.loads(path.read_text())[ADMIN_USER]

    def api(self) -> AirflowClient:
        return AirflowClient(self.api_url, ADMIN_USER, self.admin_password())


def models_page_url(stack: LocalStack) -> str:
    """The Models page of ``stack``'s Airflow UI (``http://127.0.0.1:<port>/plugin/models``): a str."""
    from mlops_airflow.models_page import page_url

    return page_url(stack.api_url)


def stop_process_group(pid: int, timeout: float) -> None:
    """SIGTERM to the process group ``pid`` leads, SIGKILL after ``timeout`` seconds; see
    :meth:`include.util.procs.ManagedProcess.stop_group`, which this calls for a bare pid."""
    ManagedProcess(pid, None).stop_group(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "start", "stop", "status", "env"])
    parser.add_argument(
        "--settings-file",
        type=Path,
        default=PROJECT_ROOT / "airflow_settings.yaml",
        help="connections, variables and pools to load (setup; default: airflow_settings.yaml)",
    )
    args = parser.parse_args(argv)
    stack = LocalStack()
    if args.command == "setup":
        from scripts.airflow_settings import SettingsError

        try:
            stack.setup(args.settings_file)
        except SettingsError as exc:
            # the message names the offending key; a traceback would only bury it
            print(f"setup failed, nothing was changed: {exc}", file=sys.stderr)
            return 2
        print(f"local profile ready under {stack.home}")
    elif args.command == "start":
        stack.start()
        print(f"Airflow running at {stack.api_url}")
    elif args.command == "stop":
        stopped = stack.stop()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    elif args.command == "status":
        running = stack.running()
        for name in COMPONENTS:
            record = running.get(name)
            print(f"{name:14} {'running pid ' + str(record.pid) if record else 'stopped'}")
    elif args.command == "env":
        # `eval "$(python -m scripts.local_stack env)"` gives a shell the stack's airflow CLI
        keys = ("PATH", "PYTHONPATH", "AIRFLOW_HOME", "MLOPS_HOME", "MLOPS_PROFILE", "MLFLOW_TRACKING_URI")
        env = stack.env()
        for key in sorted(k for k in env if k in keys or k.startswith("AIRFLOW__")):
            print(f"export {key}={shlex.quote(env[key])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
