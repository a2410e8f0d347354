"""One detached ``python -m include.serving`` process on 127.0.0.1 (local profile): start, reload, stop, status.

The process outlives the Airflow task that started it, so everything needed to
find it again (pid, port, version) is kept in ``<MLOPS_HOME>/serving/state.json``.
The file also records a running rollout (``"rollout"``: the champion it runs beside and
the :class:`~include.deployment.rollout_config.RolloutConfig`), and keeps that record when
the server stops, so that :meth:`LocalServer.start` of the same champion comes back with
the same candidate, mode and share; a reload (which ends any rollout) drops it.
A pid alone is not trusted: the process start time recorded next to it must match,
so a recycled pid is never signalled. The deploy step on top of it is
:class:`include.deployment.local.LocalServingDeployer`.
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
from functools import cached_property
from typing import TYPE_CHECKING, Any

from include.deployment.rollout_config import RolloutConfig
from include.deployment.smoke import EndpointError, json_or_none, new_session, request
from include.deployment.smoke import message as _message
from include.registry import validate_version
from include.settings import PROJECT_ROOT, Settings
from include.util.fs import write_atomically
from include.util.procs import ManagedProcess, ProcessExited, ProcessSurvived

if TYPE_CHECKING:
    import requests

LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class ServingStatus:
    """The recorded server as :meth:`LocalServer.status` finds it; ``started_at`` is an ISO 8601 UTC time."""

    pid: int
    url: str
    model_name: str
    version: str  # what /health reports when running, else the version recorded at start/reload
    running: bool  # the process is alive and /health answered
    started_at: str


@dataclass(frozen=True)
class _State:
    """What the state file records: the process (pid and start time), where it listens, what it serves."""

    pid: int
    process_created: float
    host: str
    port: int
    model_name: str
    version: str
    started_at: str
    # {"champion_version": "3", "candidate_version": "5", "mode": ..., "canary_share": ..., "sticky_column": ...}
    rollout: dict | None = None

    @property
    def url(self) -> str:
        """``http://<host>:<port>``, where this server answers."""
        return f"http://{self.host}:{self.port}"

    def status(self, version: str, running: bool) -> ServingStatus:
        """This server as :meth:`LocalServer.status` reports it, serving ``version``."""
        return ServingStatus(self.pid, self.url, self.model_name, version, running, self.started_at)


class ServingError(RuntimeError):
    """The local server could not be started, reloaded or reached."""


class LocalServer:
    """The local model server: one per ``MLOPS_HOME``, found again through its state file.

    ``start_timeout``, ``reload_timeout`` and ``stop_timeout`` bound those operations
    (seconds); ``request_timeout`` bounds one request to the server.
    """

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
        return state.status(version, running)

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
            if state.rollout is not None:
                # kept for the next start of the same champion: a restart resumes the rollout
                write_atomically(self.state_path, json.dumps({"rollout": state.rollout}, indent=2))
            else:
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
            # the server ended any rollout with the reload: the record goes with it
            self._write_state(replace(state, version=version, rollout=None))
            reloaded = self.status()
            if reloaded is None or not reloaded.running or reloaded.version != version:
                raise ServingError(f"after the reload /health does not report version {version}: {reloaded}")
            return reloaded

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
        rollout = self._recorded_rollout(model_name, version)
        if rollout is not None:
            command += rollout.server_args()
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
        state = _State(
            process.pid,
            process.create_time,
            host,
            port,
            model_name,
            version,
            started_at,
            None if rollout is None else {"champion_version": version, **rollout.as_json()},
        )
        self._write_state(state)

        def answers() -> ServingStatus | None:
            health = self._health(state.url)
            if health is None:
                return None
            if health.get("model_name") == model_name and str(health.get("model_version")) == version:
                return state.status(version, running=True)
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

    def _read_raw(self) -> dict | None:
        try:
            raw = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise ServingError(
                f"{self.state_path} is unreadable ({exc}); stop the server by hand and delete it"
            ) from exc
        if not isinstance(raw, dict):
            raise ServingError(f"{self.state_path} is not a JSON object; stop the server by hand and delete it")
        return raw

    def _read_state(self) -> _State | None:
        raw = self._read_raw()
        if raw is None or "pid" not in raw:  # nothing runs (at most a rollout kept for the next start)
            return None
        try:
            return _State(
                int(raw["pid"]),
                float(raw["process_created"]),
                str(raw["host"]),
                int(raw["port"]),
                str(raw["model_name"]),
                str(raw["version"]),
                str(raw["started_at"]),
                raw.get("rollout"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ServingError(
                f"{self.state_path} is unreadable ({exc}); stop the server by hand and delete it"
            ) from exc

    def _write_state(self, state: _State) -> None:
        # readers see the old or the new state, never half of one
        write_atomically(self.state_path, json.dumps(state.__dict__, indent=2))

    # ----------------------------------------------------------------- rollout

    def _recorded_rollout(self, model_name: str, champion: str) -> RolloutConfig | None:
        """The rollout the state file keeps for ``champion`` of ``model_name``, else None (another champion's
        rollout is stale: the champion it ran beside is no longer started)."""
        raw = self._read_raw() or {}
        record = raw.get("rollout")
        if not isinstance(record, dict) or record.get("champion_version") != champion:
            return None
        if raw.get("model_name", model_name) != model_name:
            return None
        try:
            return RolloutConfig.from_json(record)
        except ValueError as exc:
            raise ServingError(
                f"{self.state_path} records a malformed rollout ({exc}); delete its 'rollout' entry"
            ) from None

    def record_rollout(self, champion: str, config: RolloutConfig | None) -> None:
        """Record ``config`` (None: no rollout) as what runs beside ``champion``, for this and later starts."""
        with self._exclusive():
            rollout = None if config is None else {"champion_version": champion, **config.as_json()}
            state = self._read_state()
            if state is not None:
                self._write_state(replace(state, rollout=rollout))
            elif rollout is not None:
                write_atomically(self.state_path, json.dumps({"rollout": rollout}, indent=2))
            else:
                self.state_path.unlink(missing_ok=True)

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

    @cached_property
    def _session(self) -> requests.Session:
        # the server is on loopback: a proxy from the environment must not be used
        return new_session()

    def _request(
        self, method: str, url: str, *, json_body: Any = None, timeout: float | None = None
    ) -> requests.Response:
        try:
            return request(self._session, method, url, json_body=json_body, timeout=timeout or self.request_timeout)
        except EndpointError as exc:
            raise ServingError(str(exc)) from exc

    def _health(self, url: str) -> dict | None:
        try:
            response = self._request("GET", f"{url}/health", timeout=2.0)
        except ServingError:
            return None
        payload = json_or_none(response) if response.status_code == 200 else None
        return payload if isinstance(payload, dict) else None


def _log_errors(process: ManagedProcess) -> str:
    """The server's own one-line errors (such as why the model did not load), which a traceback buries."""
    errors = [line.split(": ", 1)[-1] for line in process.log_lines() if " ERROR include.serving" in line]
    return f": {'; '.join(errors[-3:])}" if errors else ""


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0
