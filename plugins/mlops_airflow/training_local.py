"""The ``train`` task of the local profile: the training command line as a subprocess.

The command writes its result JSON to a temporary file, which becomes the task's
XCom, the same ``{"run_id", "model_uri", "device"}`` the training pod returns.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from include.util.procs import ManagedProcess

# the command line both profiles run: here under the worker's interpreter, on a pod in the training image
TRAINING_MODULE = "include.training.train"
# how often the child's output is copied into the task log while it runs
_POLL_S = 0.5


def _airflow_run_tags(context) -> dict[str, str]:
    """The MLflow tags that tie a training run to the Airflow run that started it."""
    return {"airflow.dag_id": context["dag"].dag_id, "airflow.run_id": context["run_id"]}


class LocalTrainingOperator(BaseOperator):
    """Runs the training command line as a subprocess and returns what it wrote as XCom."""

    template_fields: Sequence[str] = ("arguments",)
    ui_color = "#e8f4d9"

    def __init__(self, *, arguments: list[str], **kwargs):
        super().__init__(**kwargs)
        self.arguments = arguments

    def execute(self, context) -> dict[str, Any]:
        """Train in a child process of the worker, streaming its output into the task log.

        Returns the JSON object the command wrote to its ``--xcom-path`` file. Raises
        ``RuntimeError`` when the command exits non-zero or writes no result; whatever stops
        the task (timeout, kill) is re-raised after the child's whole session is killed. Either
        way MLflow runs this attempt left RUNNING are marked KILLED first.
        """
        # imported at run time: it reads the task's settings, which parsing a DAG never needs
        from include.util.procs import ManagedProcess
        from mlops_airflow.runtime import task_settings

        settings = task_settings()
        with tempfile.TemporaryDirectory(prefix="train-") as tmp:
            xcom_path = os.path.join(tmp, "return.json")
            # the run carries the Airflow run it belongs to, which is how a failed attempt finds it
            run_tags = [arg for key, value in _airflow_run_tags(context).items() for arg in ("--tag", f"{key}={value}")]
            command = [sys.executable, "-m", TRAINING_MODULE, *self.arguments, *run_tags, "--xcom-path", xcom_path]
            self.log.info("running %s", " ".join(command))
            # the child's environment says where MLflow and the state folder are, from the settings
            env = {**os.environ, "MLOPS_HOME": str(settings.home), "MLFLOW_TRACKING_URI": settings.tracking_uri}
            # The child gets its own session so that killing it (timeout, task kill)
            # also ends anything it spawned, and never leaves a half-trained job behind.
            process = ManagedProcess.start(command, log_path=os.path.join(tmp, "train.log"), env=env)
            self._process = process
            try:
                returncode = self._follow(process)
            except BaseException:
                # the timeout or a kill of the task: the job goes with it, and so does its run
                _stop(process)
                self._end_orphaned_runs(settings, context, "the training task was stopped")
                raise
            if returncode != 0:
                self._end_orphaned_runs(settings, context, f"the training command exited with code {returncode}")
                raise RuntimeError(f"training command exited with code {returncode}; see the log above")
            try:
                with open(xcom_path) as handle:
                    return json.load(handle)
            except FileNotFoundError:
                raise RuntimeError("training command succeeded but wrote no result") from None

    def _follow(self, process: ManagedProcess) -> int:
        """Copy the child's output into the task log, line by line, until it exits; returns its exit status."""
        pending = ""
        with open(process.log_path, "rb") as log:
            log.seek(process.log_offset)
            while True:
                returncode = process.wait(timeout=_POLL_S)
                # read after the exit is seen: everything the child wrote is in the file by then
                lines = (pending + log.read().decode(errors="replace")).splitlines(keepends=True)
                pending = lines.pop() if lines and not lines[-1].endswith(("\n", "\r")) else ""
                for line in lines:
                    self.log.info("%s", line.rstrip())
                if returncode is not None:
                    if pending:
                        self.log.info("%s", pending.rstrip())
                    return returncode

    def _end_orphaned_runs(self, settings, context, reason: str) -> None:
        """A killed trainer cannot end its MLflow run; end it here, so that a retry starts clean
        and nothing reads the half-trained run as one in progress."""
        from include.tracking import TRAINING_EXPERIMENT, end_orphaned_runs

        try:
            ended = end_orphaned_runs(settings, TRAINING_EXPERIMENT, _airflow_run_tags(context), reason)
        except Exception as exc:  # the tracking server may be what failed: keep the original error
            self.log.warning("could not end the training run(s) left RUNNING by this attempt: %s", exc)
            return
        if ended:
            self.log.warning("marked MLflow run(s) %s KILLED: %s", ", ".join(ended), reason)

    def on_kill(self) -> None:
        # the task was stopped from outside (UI, timeout): the training job goes with it
        process = getattr(self, "_process", None)
        if process is not None and process.alive():
            _stop(process)


def _stop(process: ManagedProcess) -> None:
    """End the child's whole session at once (no grace: a half-trained job has nothing to save)."""
    process.stop_group(timeout=0.0)
