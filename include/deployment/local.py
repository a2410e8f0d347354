"""The local profile's deploy step: one detached ``python -m include.serving`` process on 127.0.0.1.

The process outlives the Airflow task that started it, so everything needed to
find it again (pid, port, version) is kept in ``<MLOPS_HOME>/serving/state.json``.
A pid alone is not trusted: the process start time recorded next to it must match,
so a recycled pid is never signalled.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from include.deployment import DeployFailed, DeployResult, SmokeResult, promote
from include.deployment.smoke import MALFORMED_BODY  # noqa: F401 (kept importable from here)
from include.deployment.smoke import message as _message
from include.deployment.smoke import smoke_test as run_smoke_test
from include.deployment.smoke import split_payload as _split_payload  # noqa: F401 (kept importable from here)
from include.serving import validate_version
from include.settings import PROJECT_ROOT, Settings
from include.util.fs import write_atomically
from include.util.procs import ManagedProcess, ProcessExited, ProcessSurvived

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import requests

LOG_TAIL_LINES = 20


class ServingError(RuntimeError):
    """The local server could not be started, reloaded or reached."""


@dataclass(frozen=True)
class ServingStatus:
    pid: int
    url: str
    model_name: str
    version: str  # what /health reports when running, else the version recorded at start/reload
    running: bool  # the process is alive and /health answered
    started_at: str


@dataclass(frozen=True)
class _State:
    pid: int
    process_created: float
    host: str
    port: int
    model_name: str
    version: str
    started_at: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class LocalServingDeployer:
    def __init__(
        self,
        settings: Settings,
        *,
        start_timeout: float = 60.0,
        reload_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        request_timeout: float = 10.0,
    ):
        self.settings = settings
        self.start_timeout = start_timeout
        self.reload_timeout = reload_timeout
        self.stop_timeout = stop_timeout
        self.request_timeout = request_timeout
        self.state_path = settings.path("serving", "state.json")
        self.log_path = settings.path("serving", "server.log")
        self._lock_path = settings.path("serving", "deploy.lock")
        self._children: dict[int, ManagedProcess] = {}  # servers started here, by pid
        self._lock_depth = 0
        self._thread_lock = threading.RLock()
        self._session: requests.Session | None = None

    @property
    def url(self) -> str:
        """The base URL (a str) of the recorded server, else the configured serving URL."""
        state = self._read_state()
        return state.url if state else self.settings.serving_url

    # ----------------------------------------------------------------- process

    def status(self) -> ServingStatus | None:
        """The recorded server as a :class:`ServingStatus`, or None when no recorded process is alive."""
        state = self._read_state()
        if state is None or not self._alive(state):
            return None
        health = self._health(state.url)
        running = health is not None and health.get("model_name") == state.model_name
        version = str(health["model_version"]) if running else state.version
        return ServingStatus(state.pid, state.url, state.model_name, version, running, state.started_at)

    def start(self, version: str, model_name: str | None = None) -> ServingStatus:
        """Start a server for ``version`` and wait until /health reports it.

        Returns its :class:`ServingStatus` (the running one when it already serves that version). Raises
        :class:`ServingError` when a server for another version is running, or the port is taken by another process.
        """
        version = validate_version(version)
        model_name = model_name or self.settings.model_name
        with self._exclusive():
            current = self.status()
            if current is not None:
                if current.running and (current.model_name, current.version) == (model_name, version):
                    return current
                raise ServingError(
                    f"a server is already running (pid {current.pid}, {current.model_name} "
                    f"version {current.version}); stop or reload it instead of starting another"
                )
            return self._start(model_name, version)

    def stop(self) -> bool:
        """Stop the recorded server (SIGTERM, then SIGKILL).

        Returns True when a server was stopped, False when none was running. Raises :class:`ServingError`
        when the process survives SIGKILL.
        """
        with self._exclusive():
            state = self._read_state()
            if state is None:
                return False
            stopped = False
            if self._alive(state):
                try:
                    self._process(state).stop_group(self.stop_timeout)
                except ProcessSurvived:
                    raise ServingError(f"server pid {state.pid} survived SIGKILL") from None
                stopped = True
            self._children.pop(state.pid, None)
            self.state_path.unlink(missing_ok=True)
            return stopped

    def reload(self, version: str) -> ServingStatus:
        """Swap the running server to ``version`` in place; on failure it keeps its old version.

        Returns the new :class:`ServingStatus`. Raises :class:`ServingError` when no server is running,
        the reload is refused, or /health does not report ``version`` afterwards.
        """
        version = validate_version(version)
        with self._exclusive():
            current = self.status()
            if current is None or not current.running:
                raise ServingError("no server is running to reload; start one first")
            if current.version == version:
                return current
            response = self._request(
                "POST", f"{current.url}/admin/reload", json_body={"version": version}, timeout=self.reload_timeout
            )
            if response.status_code != 200:
                # the server's message already says which version it kept serving
                raise ServingError(
                    f"reload to version {version} failed (HTTP {response.status_code}): {_message(response)}"
                )
            state = self._read_state()
            self._write_state(replace(state, version=version))
            reloaded = self.status()
            if reloaded is None or not reloaded.running or reloaded.version != version:
                raise ServingError(f"after the reload /health does not report version {version}: {reloaded}")
            return reloaded

    # ------------------------------------------------------------------- smoke

    def smoke_test(
        self, version: str, sample: pd.DataFrame, expected: np.ndarray | None = None, tolerance: float = 1e-6
    ) -> SmokeResult:
        """Real requests against the served endpoint; returns a :class:`SmokeResult`, raises SmokeTestFailed listing
        every failed check."""
        # the checks are shared with the kubernetes deployer (include.deployment.smoke)
        return run_smoke_test(
            self.url, version, sample, expected, tolerance, session=self._http(), request_timeout=self.request_timeout
        )

    # ------------------------------------------------------------------ deploy

    def deploy(
        self,
        model_name: str,
        version: str,
        sample: pd.DataFrame,
        expected: np.ndarray | None = None,
        tolerance: float = 1e-6,
    ) -> DeployResult:
        """Serve ``version`` (reload or start), smoke-test it, then move ``champion`` to it.

        On any failure the previous champion is served again, the aliases are left as
        they were, and DeployFailed says what failed and what is served now. Returns a
        :class:`DeployResult`; raises ``ValueError`` for a malformed version.
        """
        from include.registry import CHAMPION, alias_version
        from include.tracking import configure

        version = validate_version(version)
        configure(self.settings)
        with self._exclusive():
            champion = alias_version(model_name, CHAMPION)
            # the registry store returns versions as int: compare and report them as strings
            champion = None if champion is None else str(champion)
            before = self.status()
            stage = "starting the server"
            try:
                if before is not None and before.running and before.model_name == model_name:
                    stage = "reloading the server"
                self._serve(model_name, version)
                stage = "running the smoke test"
                smoke = self.smoke_test(version, sample, expected, tolerance)
                stage = "moving the champion alias"
                previous_champion = promote(model_name, version, champion)
            except Exception as exc:
                served_now = self._restore(model_name, champion, before)
                raise DeployFailed(model_name, version, stage, f"{type(exc).__name__}: {exc}", served_now) from exc
            return DeployResult(version=version, previous_champion=previous_champion, url=self.url, smoke=smoke)

    def _serve(self, model_name: str, version: str) -> None:
        current = self.status()
        if current is not None and current.running and current.model_name == model_name:
            self.reload(version)
            return
        if current is not None:
            # alive but not answering, or serving another model: only a restart helps
            self.stop()
        self.start(version, model_name)

    def _restore(self, model_name: str, champion: str | None, before: ServingStatus | None) -> str:
        if champion is not None:
            target_name, target_version, what = model_name, champion, "the champion"
        elif before is not None and before.running:
            target_name, target_version, what = before.model_name, before.version, "what was served before"
        else:
            try:
                self.stop()
            except Exception as exc:
                return f"there is no champion and stopping the failed server also failed ({exc}); see {self.log_path}"
            return "nothing is served (there is no champion and no server was running before)"
        try:
            try:
                self._serve(target_name, target_version)
            except ServingError:
                # a server that cannot reload is restarted rather than left on the failed version
                self.stop()
                self.start(target_version, target_name)
        except Exception as exc:
            return (
                f"restoring {target_name} version {target_version} ({what}) failed too: {exc}; "
                f"the endpoint may be down, see {self.log_path}"
            )
        return f"{target_name} version {target_version} ({what}) is served at {self.url}"

    # ---------------------------------------------------------------- helpers

    def _start(self, model_name: str, version: str) -> ServingStatus:
        host, port = self.settings.serving_host, self.settings.serving_port
        if _port_in_use(host, port):
            # otherwise a foreign server on the port could answer our /health checks
            raise ServingError(
                f"port {port} on {host} is already in use by a process this deployer did not "
                "start; stop it or set MLOPS_SERVING_PORT to a free port"
            )
        env = dict(os.environ)
        env.update(
            {
                "MLFLOW_TRACKING_URI": self.settings.tracking_uri,
                # the parent's registry URI (set by tracking.configure) may point at another store
                "MLFLOW_REGISTRY_URI": self.settings.tracking_uri,
                "MLOPS_HOME": str(self.settings.home),
                "MLOPS_PROFILE": self.settings.profile,
                "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
                "PYTHONUNBUFFERED": "1",
            }
        )
        command = [
            sys.executable,
            "-m",
            "include.serving",
            "--model-name",
            model_name,
            "--version",
            version,
            "--host",
            host,
            "--port",
            str(port),
            "--inference-log",
            self.settings.inference_log,
        ]
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        # a new session: the server outlives the task that started it and gets no
        # signal meant for that task's process group
        process = ManagedProcess.start(
            command,
            log_path=self.log_path,
            env=env,
            cwd=PROJECT_ROOT,
            header=f"--- {started_at} starting {model_name} version {version} on {host}:{port}\n",
        )
        self._children[process.pid] = process
        state = _State(process.pid, process.create_time, host, port, model_name, version, started_at)
        self._write_state(state)

        def answers() -> ServingStatus | None:
            health = self._health(state.url)
            if health is None:
                return None
            if health.get("model_name") == model_name and str(health.get("model_version")) == version:
                return ServingStatus(state.pid, state.url, model_name, version, True, started_at)
            self.stop()
            raise ServingError(
                f"{state.url}/health answers for {health.get('model_name')} version "
                f"{health.get('model_version')}, not {model_name} version {version}: is another "
                f"server using port {port}?"
            )

        def timed_out() -> ServingError:
            self.stop()
            return ServingError(
                f"the server for {model_name} version {version} did not answer {state.url}/health "
                f"within {self.start_timeout:.0f}s; last lines of {self.log_path}:\n"
                f"{process.log_tail(LOG_TAIL_LINES)}"
            )

        try:
            return process.wait_healthy(answers, self.start_timeout, interval=0.2, on_timeout=timed_out)
        except ProcessExited as exited:
            self._children.pop(process.pid, None)
            self.state_path.unlink(missing_ok=True)
            raise ServingError(
                f"the server for {model_name} version {version} exited with code {exited.returncode} "
                f"before answering{_log_errors(process)}; last lines of {self.log_path}:\n"
                f"{process.log_tail(LOG_TAIL_LINES)}"
            ) from None

    def _process(self, state: _State) -> ManagedProcess:
        """The recorded server: the handle this deployer started it with (which reaps it), else re-attached."""
        child = self._children.get(state.pid)
        if child is not None and child.create_time == state.process_created:
            return child
        return ManagedProcess(state.pid, state.process_created, self.log_path)

    def _alive(self, state: _State) -> bool:
        process = self._process(state)
        if process.alive():
            return True
        if process.returncode is not None:
            self._children.pop(state.pid, None)  # ended and reaped: nothing left to track
        return False

    def _read_state(self) -> _State | None:
        try:
            raw = json.loads(self.state_path.read_text())
            return _State(
                int(raw["pid"]),
                float(raw["process_created"]),
                str(raw["host"]),
                int(raw["port"]),
                str(raw["model_name"]),
                str(raw["version"]),
                str(raw["started_at"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ServingError(
                f"{self.state_path} is unreadable ({exc}); stop the server by hand and delete it"
            ) from exc

    def _write_state(self, state: _State) -> None:
        # readers see the old or the new state, never half of one
        write_atomically(self.state_path, json.dumps(state.__dict__, indent=2))

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One deployer at a time per MLOPS_HOME (two DAG runs may deploy at once); re-entrant."""
        with self._thread_lock:
            if self._lock_depth:
                self._lock_depth += 1
                try:
                    yield
                finally:
                    self._lock_depth -= 1
                return
            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self._lock_path, "w") as lock_file:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
                self._lock_depth = 1
                try:
                    yield
                finally:
                    self._lock_depth = 0
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _http(self) -> requests.Session:
        import requests

        if self._session is None:
            self._session = requests.Session()
            # the server is on loopback: a proxy from the environment must not be used
            self._session.trust_env = False
        return self._session

    def _request(
        self, method: str, url: str, *, json_body: Any = None, body: bytes | None = None, timeout: float | None = None
    ) -> requests.Response:
        import requests

        data = json.dumps(json_body).encode() if json_body is not None else body
        try:
            return self._http().request(
                method,
                url,
                data=data,
                timeout=timeout or self.request_timeout,
                headers={"Content-Type": "application/json"} if data is not None else None,
            )
        except requests.RequestException as exc:
            raise ServingError(f"{method} {url} failed: {exc}") from exc

    def _health(self, url: str) -> dict | None:
        try:
            response = self._request("GET", f"{url}/health", timeout=2.0)
        except ServingError:
            return None
        if response.status_code != 200:
            return None
        try:
            payload = response.json()
        except ValueError:
            return None
        return payload if isinstance(payload, dict) else None


def _log_errors(process: ManagedProcess) -> str:
    """The server's own one-line errors (such as why the model did not load), which a traceback buries."""
    errors = [line.split(": ", 1)[-1] for line in process.log_lines() if " ERROR include.serving" in line]
    return f": {'; '.join(errors[-3:])}" if errors else ""


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0
