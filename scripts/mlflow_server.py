"""An MLflow tracking server (and UI) for the local profile, bound to 127.0.0.1 only.

The local profile's tasks write to the SQLite store directly; this server puts the same
store behind HTTP, for the MLflow UI or for processes that should use it the way a
production deployment does (``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``)::

    python -m scripts.mlflow_server [--port 5000]      # in the foreground, until Ctrl-C

The server runs in a session of its own, so :meth:`MlflowServer.stop` ends it together
with the workers it spawned, and nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import requests

from include.settings import Settings
from include.util.procs import ManagedProcess

LOOPBACK = "127.0.0.1"


class MlflowServer:
    """One ``mlflow server`` process: started, health-checked, stopped (and restartable)."""

    def __init__(
        self,
        backend_store_uri: str,
        artifact_root: str,
        port: int,
        log_path: Path,
        workers: int = 1,
        start_timeout: float = 120.0,
    ):
        self.backend_store_uri = backend_store_uri
        self.artifact_root = artifact_root
        self.port = port
        self.log_path = Path(log_path)
        self.workers = workers
        self.start_timeout = start_timeout
        self.process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--backend-store-uri",
            self.backend_store_uri,
            "--default-artifact-root",
            self.artifact_root,
            "--no-serve-artifacts",
        ]

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def start(self) -> MlflowServer:
        """Start the server unless it runs, and wait until ``/health`` answers.

        Returns this server. Raises ``ProcessExited`` (a ``RuntimeError``) with the log tail
        when it exits while starting, and ``TimeoutError`` when it does not answer within
        ``start_timeout`` seconds (it is stopped then).
        """
        if self.running:
            return self
        # MLflow's background job runner (GenAI scoring, trace archival) is a handful of worker
        # processes this project never uses
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        self.process = process = ManagedProcess.start(self.command, log_path=self.log_path, env=env)

        def timed_out() -> TimeoutError:
            self.stop()
            return TimeoutError(
                f"mlflow server did not answer {self.url}/health within {self.start_timeout:.0f}s; "
                f"see {self.log_path}:\n{process.log_tail()}"
            )

        process.wait_healthy(self.healthy, self.start_timeout, interval=0.3, what="mlflow server", on_timeout=timed_out)
        return self

    def healthy(self) -> bool:
        try:
            session = requests.Session()
            session.trust_env = False  # loopback: never through a proxy from the environment
            return session.get(f"{self.url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM to the server's process group (its workers too), SIGKILL if it lingers;
        a no-op when it is not running."""
        process, self.process = self.process, None
        if process is not None:
            process.stop_group(timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if settings.tracking_uri.startswith(("http://", "https://")):
        parser.error(f"MLFLOW_TRACKING_URI is already a server ({settings.tracking_uri})")
    server = MlflowServer(
        settings.tracking_uri,
        settings.artifact_root or settings.path("mlflow", "artifacts").as_uri(),
        args.port,
        settings.path("run", "mlflow-server.log"),
    )
    server.start()
    print(f"MLflow at {server.url} (store {settings.tracking_uri}); Ctrl-C stops it", flush=True)
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
