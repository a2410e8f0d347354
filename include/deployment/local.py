"""The local profile's deploy step: the detached model server on 127.0.0.1 (:mod:`include.deployment.local_server`),
reloaded (or started) with the new version, smoke-tested, then promoted.

The sequence is :meth:`include.deployment.Deployer.deploy`; this module says how the
local profile serves a version and how it puts the previous one back. One deploy at a
time per ``MLOPS_HOME``: the server's own lock is held for the whole deploy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from include.deployment import Deployer, SmokeResult, Stage
from include.deployment.local_server import LocalServer
from include.deployment.local_server import ServingError as ServingError
from include.deployment.local_server import ServingStatus as ServingStatus
from include.deployment.rollout_config import RolloutConfig
from include.deployment.smoke import json_or_none
from include.deployment.smoke import message as _message

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


class LocalServingDeployer(LocalServer, Deployer):
    """Deploys to the local model server: reload in place when it serves the model, else (re)start it.

    Takes the :class:`~include.deployment.local_server.LocalServer` options; a failed deploy
    serves the champion again (or what was served before, or nothing when neither exists).
    """

    def smoke_test(
        self, version: str, sample: pd.DataFrame, expected: np.ndarray | None = None, tolerance: float = 1e-6
    ) -> SmokeResult:
        """Real requests against the served endpoint; returns a :class:`SmokeResult`, raises SmokeTestFailed listing
        every failed check."""
        return self._smoke(self.url, version, sample, expected, tolerance)

    def server_rollout(self) -> RolloutConfig | None:
        """What the running server's ``GET /admin/rollout`` reports (None: no rollout, or no server running).

        Raises :class:`ServingError` when the server answers with an error.
        """
        current = self.status()
        if current is None or not current.running:
            return None
        response = self._request("GET", f"{current.url}/admin/rollout")
        if response.status_code != 200:
            raise ServingError(f"GET /admin/rollout answered HTTP {response.status_code}: {_message(response)}")
        return RolloutConfig.from_json(json_or_none(response))

    def apply_rollout(self, config: RolloutConfig | None) -> RolloutConfig | None:
        """Have the running server serve ``config`` beside its version (None: its version alone), and record it.

        Returns what the server reports afterwards. Raises :class:`ServingError` when no server is
        running or the server refuses (say the candidate does not load: it keeps what it served).
        """
        with self._exclusive():
            current = self.status()
            if current is None or not current.running:
                raise ServingError("no server is running; start one first")
            url = f"{current.url}/admin/rollout"
            if config is None:
                response = self._request("DELETE", url)
            else:
                response = self._request("POST", url, json_body=config.as_json(), timeout=self.reload_timeout)
            if response.status_code != 200:
                raise ServingError(
                    f"the server refused the rollout (HTTP {response.status_code}): {_message(response)}"
                )
            reported = RolloutConfig.from_json(json_or_none(response))
            self.record_rollout(current.version, reported)
            return reported

    def rollout_status(self, model_name: str) -> RolloutConfig | None:
        """What the running server's ``GET /admin/rollout`` reports; None without a rollout or a running server."""
        return self.server_rollout()

    def endpoint_url(self, model_name: str) -> str:
        return self.url

    def _serve_rollout(self, model_name: str, champion: str, config: RolloutConfig | None, stage: Stage) -> str:
        current = self.status()
        if current is None or not current.running:
            # recorded first, so that the start comes up with the candidate loaded
            stage.name = f"starting the server with {'the candidate' if config else 'the champion alone'}"
            if current is not None:
                self.stop()
            self.record_rollout(champion, config)
            self.start(champion, model_name)
        elif (current.model_name, current.version) != (model_name, champion):
            raise ServingError(
                f"the server serves {current.model_name} version {current.version}, not the champion "
                f"{model_name} version {champion}; deploy the champion before a rollout"
            )
        else:
            self.apply_rollout(config)
        reported = self.server_rollout()
        if reported != config:
            raise ServingError(f"the server reports the rollout {reported}, not {config}")
        return self.url

    def _current(self, model_name: str, version: str, champion: str | None) -> ServingStatus | None:
        return self.status()

    def _roll_out(self, model_name: str, version: str, before: ServingStatus | None, stage: Stage) -> str:
        reloading = before is not None and before.running and before.model_name == model_name
        stage.name = "reloading the server" if reloading else "starting the server"
        self._serve(model_name, version)
        return self.url

    def _serve(self, model_name: str, version: str) -> None:
        current = self.status()
        if current is not None and current.running and current.model_name == model_name:
            self.reload(version)
            return
        if current is not None:
            # alive but not answering, or serving another model: only a restart helps
            self.stop()
        # a deploy serves its version alone: a rollout kept for a restart ends here
        self.record_rollout(version, None)
        self.start(version, model_name)

    def _revert(self, model_name: str, champion: str | None, before: ServingStatus | None) -> str:
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
